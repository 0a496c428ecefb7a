//! `cellmap-compile cache SPEC`: write the spec's training cache (see
//! [`cellmap_runtime::training_cache`]).

use std::path::PathBuf;
use std::process::ExitCode;

use cellmap_runtime::training_cache::{CacheCodec, CacheOptions, write};

use super::{EXIT_INVALID, load_spec};

/// Arguments of `cache`.
#[derive(Debug, clap::Args)]
pub(crate) struct CacheArgs {
    /// The spec.
    spec: PathBuf,
    /// The cache folder. Default: the spec's `loader.training_cache`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Codec of the cached arrays.
    #[arg(long, value_enum, default_value_t = CodecArg::Lz4)]
    codec: CodecArg,
    /// Chunk edge of the cached arrays in voxels (all three axes). Default: 32 for 3D samples; one
    /// plane of 128² for 2D samples sliced along one axis.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    chunk: Option<u64>,
    /// Binary classes packed into one array (8: a byte a voxel; up to 64: `uint64`).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    classes_per_pack: u64,
    /// Remove the array folders the manifest no longer names (replaced by this run or earlier
    /// ones). Only while no loader reads the cache.
    #[arg(long)]
    prune: bool,
}

/// `--codec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CodecArg {
    None,
    Lz4,
    Zstd,
}

pub(crate) fn run(args: &CacheArgs) -> ExitCode {
    let checked = match load_spec(&args.spec) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let spec = checked.spec;
    let Some(dir) = args
        .out
        .clone()
        .or_else(|| spec.loader().training_cache.as_ref().map(PathBuf::from))
    else {
        eprintln!(
            "error: {}: no cache folder: pass --out DIR, or set `training_cache: DIR` under `loader:` in the spec",
            args.spec.display()
        );
        return ExitCode::from(EXIT_INVALID);
    };
    let mut options = CacheOptions::for_spec(&spec);
    options.prune = args.prune;
    options.classes_per_pack = usize::try_from(args.classes_per_pack).unwrap_or(8);
    if let Some(edge) = args.chunk {
        options.chunk = [edge; 3];
    }
    options.codec = match args.codec {
        CodecArg::None => CacheCodec::None,
        CodecArg::Lz4 => CacheCodec::Lz4,
        CodecArg::Zstd => CacheCodec::Zstd,
    };
    match write(&spec, &dir, &options) {
        Ok(r) => {
            println!(
                "training cache {}: {} arrays copied, {} packs ({} classes) written, {} current and kept; {} chunks of {:?} ({}), {:.1} MB read from the data, {:.1} MB on disk, {:.1} s",
                r.dir.display(),
                r.copies_written,
                r.packs_written,
                r.classes_packed,
                r.kept,
                r.chunks_written,
                options.chunk,
                options.codec.name(),
                r.source_bytes as f64 / 1e6,
                r.disk_bytes as f64 / 1e6,
                r.elapsed.as_secs_f64()
            );
            if !r.unreferenced.is_empty() && !args.prune {
                println!(
                    "{} array folders are no longer named by the manifest (replaced); remove them with --prune once no loader reads this cache",
                    r.unreferenced.len()
                );
            }
            if spec.loader().training_cache.is_none() {
                println!(
                    "read through it: add `training_cache: {}` under `loader:` in {}",
                    r.dir.display(),
                    args.spec.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}
