//! `cellmap-compile import CONFIG.json --csv datasplit.csv -o spec.yaml`: a cellmap-data
//! configuration (the arguments of `CellMapDataSplit` / `CellMapDataLoader`, as JSON) or a CellMap
//! segmentation challenge train config (its names, as JSON) plus its datasplit CSV → a spec,
//! validated before it is written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::import::{ConfigKind, ImportOptions, IterationUnit, import_with, name_from_path};

use super::EXIT_INVALID;

/// How `iterations_per_epoch` counts, as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum UnitArg {
    /// Samples per epoch (cellmap-data 2026.3).
    Samples,
    /// Batches per epoch (cellmap-data 2025, segmentation-challenge configs).
    Batches,
}

/// The kind of configuration, as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum KindArg {
    /// A challenge config when it uses a name only those have (`input_array_info`, `model`, …).
    Auto,
    /// Keyword arguments of `CellMapDataSplit` / `CellMapDataLoader`.
    CellmapData,
    /// A CellMap segmentation challenge train config.
    Challenge,
}

/// Arguments of `import`.
#[derive(Debug, clap::Args)]
pub(crate) struct ImportArgs {
    /// The configuration: a JSON object of cellmap-data keyword arguments or of a challenge train
    /// config's names.
    config: PathBuf,
    /// The datasplit CSV (default: the configuration's `csv_path` or `datasplit_path`).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// The spec to write.
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
    /// The spec's name (default: the configuration file's stem).
    #[arg(long)]
    name: Option<String>,
    /// How the configuration's `iterations_per_epoch` counts (default: samples for cellmap-data,
    /// batches for a challenge config).
    #[arg(long, value_enum)]
    iterations: Option<UnitArg>,
    /// The kind of configuration.
    #[arg(long = "from", value_enum, default_value_t = KindArg::Auto)]
    kind: KindArg,
    /// Replace an existing spec file.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: &ImportArgs) -> ExitCode {
    match run_import(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn run_import(args: &ImportArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.config).map_err(|e| format!("`{}`: {e}", args.config.display()))?;
    let csv = args.csv.as_deref().map(|c| csv_reference(c, &args.out));
    let name = args.name.clone().unwrap_or_else(|| name_from_path(&args.config));
    let options = ImportOptions {
        csv: csv.as_deref(),
        name: &name,
        kind: match args.kind {
            KindArg::Auto => None,
            KindArg::CellmapData => Some(ConfigKind::CellmapData),
            KindArg::Challenge => Some(ConfigKind::Challenge),
        },
        unit: args.iterations.map(|u| match u {
            UnitArg::Samples => IterationUnit::Samples,
            UnitArg::Batches => IterationUnit::Batches,
        }),
    };
    let imported = import_with(&text, &options).map_err(|e| format!("`{}`: {e}", args.config.display()))?;
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    if args.out.exists() && !args.force {
        return Err(format!("`{}` exists; pass --force to replace it", args.out.display()));
    }
    // Validate as `check` would (the datasplit is read relative to the spec's folder).
    if let Err(errors) = cellmap_schema::parse(&imported.yaml, &args.out) {
        return Err(format!(
            "the imported spec is not valid:\n{}",
            cellmap_schema::render_human(&errors.0)
        ));
    }
    std::fs::write(&args.out, &imported.yaml).map_err(|e| format!("`{}`: {e}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

/// How the spec names the CSV: its file name when it lies beside the spec, else its absolute path.
fn csv_reference(csv: &Path, spec: &Path) -> String {
    let dir = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            .canonicalize()
            .ok()
    };
    match (dir(csv), dir(spec), csv.file_name()) {
        (Some(a), Some(b), Some(f)) if a == b => f.to_string_lossy().into_owned(),
        _ => csv
            .canonicalize()
            .unwrap_or_else(|_| csv.to_path_buf())
            .display()
            .to_string(),
    }
}
