//! Running a test over every CPU path this machine has, and saying which ran.
//!
//! A multi-path test records each path it ran with [`PathsRan::add`]; when it ends without panicking it prints
//! `paths-ran <binary>::<test>: <names>` and a `SKIP path <name> in <binary>::<test>: ...` line for each kernel
//! set this machine cannot run. The lines bypass the test harness's output capture, so they show in
//! `cargo test`'s output; CI (`.ci/run`) checks that every `paths-ran` line names every path the machine supports.

use std::io::Write as _;

use icnr_upscale::engine::{Options, PATH_NAMES};

/// Writes `line` past the test harness's output capture, on its own line. One write: stderr is unbuffered, and
/// the harness's own `test NAME ... ` on stdout (the same pipe in CI) must not land inside the line.
pub fn report(line: &str) {
    let _ = std::io::stderr().lock().write_all(format!("\n{line}\n").as_bytes());
}

/// Options for every kernel set this machine runs, best first ([`Options::every_supported`]), with
/// `allow_fast_path` as given.
pub fn every_path(allow_fast_path: bool) -> Vec<Options> {
    Options::every_supported().into_iter().map(|o| Options { allow_fast_path, ..o }).collect()
}

/// The paths one test ran; reported when it is dropped, unless the test is panicking.
pub struct PathsRan {
    test: String,
    ran: Vec<&'static str>,
}

impl PathsRan {
    /// `test`: the test function's name (the binary's is added).
    pub fn new(test: &str) -> PathsRan {
        PathsRan { test: format!("{}::{test}", env!("CARGO_CRATE_NAME")), ran: Vec::new() }
    }
    /// Records that the test ran `opts`'s kernels (call it once the path's checks passed).
    pub fn add(&mut self, opts: &Options) {
        let name = opts.path_name();
        if !self.ran.contains(&name) {
            self.ran.push(name);
        }
    }
}

impl Drop for PathsRan {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let supported: Vec<&str> = Options::every_supported().iter().map(|o| o.path_name()).collect();
        let mut ran: Vec<&str> = PATH_NAMES.into_iter().filter(|n| self.ran.contains(n)).collect();
        ran.extend(self.ran.iter().filter(|n| !PATH_NAMES.contains(n)));
        report(&format!("paths-ran {}: {}", self.test, ran.join(" ")));
        for name in PATH_NAMES {
            if self.ran.contains(&name) {
                continue;
            }
            let why = if supported.contains(&name) {
                "supported by this CPU, but the test did not run it"
            } else {
                "not supported by this CPU"
            };
            report(&format!("SKIP path {name} in {}: {why}", self.test));
        }
    }
}
