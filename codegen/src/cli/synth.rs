//! `cellmap-compile synth DIR`: write a small synthetic CellMap-layout dataset with a spec.

use std::path::PathBuf;
use std::process::ExitCode;

use cellmap_runtime::{
    synth::SynthCodec, synth::SynthMany, synth::SynthOptions, synth::SynthSize, synth::SynthVariant,
    synth::write_synthetic,
};

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
    /// Compressor of every array.
    #[arg(long, value_enum, default_value_t = CodecArg::BloscZstd)]
    codec: CodecArg,
    /// Formats to write (the datasplit CSV points at the first).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [VariantArg::V2, VariantArg::V3])]
    variants: Vec<VariantArg>,
    /// Many raw volumes instead of one (with --crops and --classes): data at the scale of real
    /// training sets, for benchmarks.
    #[arg(long)]
    volumes: Option<usize>,
    /// Label crops in all, spread over the volumes (with --volumes; default 300).
    #[arg(long, requires = "volumes")]
    crops: Option<usize>,
    /// Classes per crop (with --volumes; default 4: mito, er, nuc, pm, then c4, c5, ...).
    #[arg(long, requires = "volumes")]
    classes: Option<usize>,
    /// Crop edge in s0 voxels (with --volumes; default 64).
    #[arg(long, requires = "volumes")]
    crop_size: Option<u64>,
}

/// `--codec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CodecArg {
    BloscZstd,
    BloscLz4,
    Gzip,
}

/// `--variants`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum VariantArg {
    V2,
    V3,
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
        variants: args
            .variants
            .iter()
            .map(|v| match v {
                VariantArg::V2 => SynthVariant::V2,
                VariantArg::V3 => SynthVariant::V3,
            })
            .collect(),
        codec: match args.codec {
            CodecArg::BloscZstd => SynthCodec::BloscZstd,
            CodecArg::BloscLz4 => SynthCodec::BloscLz4,
            CodecArg::Gzip => SynthCodec::Gzip,
        },
        many: args.volumes.map(|volumes| {
            let d = SynthMany::default();
            SynthMany {
                volumes,
                crops: args.crops.unwrap_or(d.crops),
                classes: args.classes.unwrap_or(d.classes),
                crop_vox: args.crop_size.unwrap_or(d.crop_vox),
            }
        }),
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
pub(crate) fn describe(r: &cellmap_runtime::synth::SynthReport) -> String {
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
    const LISTED: usize = 8;
    for c in r.crops.iter().take(LISTED) {
        let _ = writeln!(
            s,
            "  {:<9} {} split, classes [{}]",
            c.name,
            c.split,
            c.classes.join(", ")
        );
    }
    if r.crops.len() > LISTED {
        let validate = r.crops.iter().filter(|c| c.split == "validate").count();
        let _ = writeln!(
            s,
            "  ... {} crops in all ({} train, {validate} validate)",
            r.crops.len(),
            r.crops.len() - validate
        );
    }
    let _ = writeln!(s, "  datasplit {}", r.datasplit_csv.display());
    let _ = writeln!(s, "  spec      {}", r.spec_yaml.display());
    s
}
