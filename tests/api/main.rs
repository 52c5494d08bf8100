//! Black-box tests of the HTTP service over real TCP: each test starts its own server on 127.0.0.1:0 through
//! `server::run` and talks to it with reqwest (or a raw socket where a client has to misbehave).
//!
//! Where each behaviour is tested (one obvious place each): the route modules here (errors, kernel, lifecycle,
//! metrics, models, openapi, upload) = the HTTP contract of each route and status, one request -> one answer,
//! including every 4xx validation (bad queries, kernels, multipart bodies, body limits); `corpus` = the hostile-file
//! corpus, driven by `tests/corpus/manifest.json`; `robustness` = load, concurrency, disconnects, timeouts,
//! shutdown and signals. They are one test binary so that the server harness and the HTTP client build once.

#[path = "../support/mod.rs"]
mod support;

mod corpus;
mod errors;
mod helpers;
mod kernel;
mod lifecycle;
mod metrics;
mod models;
mod openapi;
// Its SIGTERM tests run the `icnr-upscale` binary.
#[cfg(feature = "cli")]
mod robustness;
mod upload;
