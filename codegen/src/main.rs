//! `cellmap-compile`: checks cellmap specs and prints their JSON Schema.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
