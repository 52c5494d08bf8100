//! Helpers shared by the test binaries that include this module (`mod support;`, or `#[path]` from a test
//! directory). Each thing has one helper here:
//! - [`server`]: the one server harness of the API and hostile-input tests ([`server::TestServer`]);
//! - [`http`]: raw HTTP/1.1 over a socket; [`metrics`]: scraping `/metrics`; [`problem`]: problem+json checks;
//! - [`png`]: CRC-32, PNG chunks and answers' header facts; [`images`]: test images and the corpus;
//! - [`paths`]: running a test over every CPU path, and saying which ran.
#![allow(dead_code)] // each test binary uses its own subset

// The HTTP helpers serve the service's tests only (with the `server` feature, whose dev-dependencies they use).
#[cfg(feature = "server")]
pub mod http;
pub mod images;
#[cfg(feature = "server")]
pub mod metrics;
pub mod paths;
pub mod png;
#[cfg(feature = "server")]
pub mod problem;
#[cfg(feature = "server")]
pub mod server;
#[allow(unused_imports)] // for the binaries that import it from here
pub use images::jpeg_with_orientation;
