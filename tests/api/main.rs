//! Black-box tests of the HTTP service over real TCP: each test starts its own server on 127.0.0.1:0 through
//! `server::run` and talks to it with reqwest (or a raw socket where a client has to misbehave).
//!
//! Where each behaviour is tested (one obvious place each): here = the HTTP contract of each route and status, one
//! request -> one answer, including every 4xx validation (bad queries, kernels, multipart bodies, body limits);
//! `tests/corpus.rs` = the hostile-file corpus, driven by `tests/corpus/manifest.json`; `tests/robustness.rs` =
//! load, concurrency, disconnects, timeouts, shutdown and signals.

#[path = "../support/mod.rs"]
mod support;

mod errors;
mod helpers;
mod kernel;
mod lifecycle;
mod metrics;
mod models;
mod openapi;
mod upload;
