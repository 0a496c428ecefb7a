//! `cellmap-compile cache SPEC`: write the spec's training cache (see
//! [`cellmap_runtime::training_cache`]).

use std::path::PathBuf;
use std::process::ExitCode;

use cellmap_runtime::training_cache::{CacheCodec, CacheOptions, write_with_progress};

use super::{EXIT_INVALID, load_spec};

/// Arguments of `cache`.
#[derive(Debug, clap::Args)]
pub(crate) struct CacheArgs {
    /// The spec.
    spec: PathBuf,
    /// The cache folder. Default: the spec's `loader.training_cache`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Codec of the cached arrays: `auto` compresses with lz4 the arrays where it saves a tenth of
    /// the bytes (packed classes always), and leaves the others (raw EM, mostly) uncompressed.
    #[arg(long, value_enum, default_value_t = CodecArg::Auto)]
    codec: CodecArg,
    /// Chunk edge of the cached arrays in voxels (all three axes). Default: 32 for 3D samples; one
    /// plane of 128² for 2D samples sliced along one axis.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    chunk: Option<u64>,
    /// Binary classes packed into one array (8: a byte a voxel; up to 64: `uint64`).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    classes_per_pack: u64,
    /// Arrays written at once. Default: the spec's `loader.fetch_concurrency`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Copy every array again, even those already current (after relabelling a crop in place:
    /// contents are not compared, only metadata).
    #[arg(long)]
    force: bool,
    /// Remove the array folders the manifest no longer names (replaced by this run or earlier
    /// ones). Only while no loader reads the cache.
    #[arg(long)]
    prune: bool,
}

/// `--codec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CodecArg {
    Auto,
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
    options.force = args.force;
    if let Some(n) = args.threads {
        options.threads = usize::try_from(n).unwrap_or(1);
    }
    options.classes_per_pack = usize::try_from(args.classes_per_pack).unwrap_or(8);
    if let Some(edge) = args.chunk {
        options.chunk = [edge; 3];
    }
    options.codec = match args.codec {
        CodecArg::Auto => CacheCodec::Auto,
        CodecArg::None => CacheCodec::None,
        CodecArg::Lz4 => CacheCodec::Lz4,
        CodecArg::Zstd => CacheCodec::Zstd,
    };
    let bar = (!args.quiet).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} arrays  {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let progress = |done: usize, total: usize| {
        if let Some(bar) = &bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    };
    let result = write_with_progress(&spec, &dir, &options, &progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match result {
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
