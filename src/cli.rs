//! The `icnr-upscale` command line. (To be filled in.)

/// Runs the CLI with the process arguments; returns the exit code.
pub fn main() -> i32 {
    eprintln!("usage: icnr-upscale <serve|upscale|kernel|bench|healthcheck> ...");
    2
}
