//! What the API tests share: the harness and helpers of `tests/support` (one each for the server, raw HTTP,
//! `/metrics`, problem documents, PNG chunks and test images), and the API tests' own server arguments.

use icnr_upscale::server::ServeArgs;

pub use crate::support::http::{self, RawAnswer};
pub use crate::support::images::{decode_png, encode, gray16, png, png_with_icc, rgb8, rgba16, rgba8};
pub use crate::support::metrics::{metric, metric_with};
pub use crate::support::png::{png_header_bomb, png_icc};
pub use crate::support::problem::assert_problem;
pub use crate::support::server::TestServer;

/// The API tests' server: the documented defaults with two job slots, on loopback.
pub fn args() -> ServeArgs {
    ServeArgs { max_concurrent_jobs: 2, ..crate::support::server::args() }
}

/// A server with [`args`].
pub async fn spawn_app() -> TestServer {
    TestServer::start(args()).await
}

/// A request that must have been admitted (given a place in the job pool) after an earlier one freed it, on a server
/// with a 1 s request timeout: 200, or that timeout's 504 when the machine is too slow for the budget (admitted all
/// the same). A 503 (shed: the place was never freed) or anything else fails.
pub async fn assert_admitted(res: reqwest::Response) {
    let status = res.status().as_u16();
    let body = res.text().await.unwrap_or_default();
    match status {
        200 => {}
        504 => eprintln!("note: admitted, but the machine was too slow for the 1 s budget (504): {body}"),
        s => panic!("expected the request to be admitted (200, or 504 on a slow machine), got {s}: {body}"),
    }
}
