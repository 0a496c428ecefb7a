//! Integration tests of the `cellmap-compile` binary.

mod build;
mod cache;
mod check;
mod datasplit;
mod golden;
mod house;
mod import;
mod intensity;
mod memory;
mod predict;
mod reliability;
mod sample;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The workspace root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `cellmap-compile` binary, as a command to configure.
fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cellmap-compile"))
}

/// Runs the binary in the workspace root.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cellmap-compile"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}
