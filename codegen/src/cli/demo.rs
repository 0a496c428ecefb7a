//! `cellmap-compile demo`: the whole flow on synthetic data.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Folder the demo writes into (its own: replaced on every run).
    #[arg(long, default_value = "cellmap-demo")]
    dir: PathBuf,
}

pub(crate) fn run(args: &DemoArgs) -> ExitCode {
    let _ = args;
    ExitCode::SUCCESS
}
