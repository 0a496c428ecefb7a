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
    let options = SynthOptions {
        seed: args.seed,
        force: args.force,
        size: if args.small {
            SynthSize::Small
        } else {
            SynthSize::Default
        },
        ..SynthOptions::default()
    };
    match write_synthetic(&args.dir, &options) {
        Ok(report) => {
            print!("{}", describe(&report));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// What was written, for people.
pub(crate) fn describe(r: &cellmap_runtime::SynthReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "synthetic dataset in {} ({:.1} s)", r.dir.display(), r.seconds);
    for z in &r.zarr_paths {
        let _ = writeln!(s, "  zarr      {}", z.display());
    }
    for (k, ((shape, scale), t)) in r
        .raw_shape_vox
        .iter()
        .zip(&r.raw_scale_nm)
        .zip(&r.raw_translation_nm)
        .enumerate()
    {
        let _ = writeln!(
            s,
            "  raw s{k}    {shape:?} voxels at {scale:?} nm, translation {t:?} nm"
        );
    }
    for c in &r.crops {
        let _ = writeln!(
            s,
            "  {:<9} {} split, classes [{}]",
            c.name,
            c.split,
            c.classes.join(", ")
        );
    }
    let _ = writeln!(s, "  datasplit {}", r.datasplit_csv.display());
    let _ = writeln!(s, "  spec      {}", r.spec_yaml.display());
    s
}
