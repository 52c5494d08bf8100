//! What the API tests share: the harness and helpers of `tests/support` (one each for the server, raw HTTP,
//! `/metrics`, problem documents, PNG chunks and test images), and the API tests' own server arguments.

use icnr_upscale::server::ServeArgs;

pub use crate::support::http;
pub use crate::support::images::{decode_png, encode, gray16, png, png_with_icc, rgb8, rgba16, rgba8, small_png};
pub use crate::support::metrics::{metric, metric_with};
pub use crate::support::png::{png_header_bomb, png_icc, png_info};
pub use crate::support::problem::{assert_problem, check_problem, detail};
pub use crate::support::server::TestServer;

/// The API tests' server: the documented defaults with two job slots, on loopback.
pub fn args() -> ServeArgs {
    ServeArgs { max_concurrent_jobs: 2, ..crate::support::server::args() }
}

/// A server with [`args`].
pub async fn spawn_app() -> TestServer {
    TestServer::start(args()).await
}
