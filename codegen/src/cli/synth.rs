//! `cellmap-compile synth DIR`: write a small synthetic CellMap-layout dataset with a spec.

use std::path::PathBuf;
use std::process::ExitCode;

use cellmap_runtime::{SynthOptions, SynthSize, write_synthetic};

use super::EXIT_INVALID;

/// Arguments of `synth`.
#[derive(Debug, clap::Args)]
pub(crate) struct SynthArgs {
    /// Output folder (must be empty or absent unless --force).
    dir: PathBuf,
    /// Seed of the scene.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The small variant (for tests).
    #[arg(long)]
    small: bool,
    /// Replace an existing non-empty folder.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: &SynthArgs) -> ExitCode {
    let mut options = SynthOptions::default();
    options.seed = args.seed;
    options.force = args.force;
    if args.small {
        options.size = SynthSize::Small;
    }
    match write_synthetic(&args.dir, &options) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}
