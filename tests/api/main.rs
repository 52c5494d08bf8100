//! Black-box tests of the HTTP service over real TCP: each test starts its own server on 127.0.0.1:0 through
//! `server::run` and talks to it with reqwest (or a raw socket where a client has to misbehave).

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
