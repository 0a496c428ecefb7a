//! Command-line interface: arguments (clap derive) and dispatch to one module per subcommand.

mod bench;
mod build;
mod cache;
mod check;
mod data_check;
mod demo;
mod import;
mod plan;
mod predict;
mod predict_plan;
mod preview;
mod sample;
mod synth;

pub use preview::preview;

/// What `check --data` finds wrong with the data a valid spec names, as diagnostics: missing or
/// malformed groups, and a batch ring and chunk cache that do not fit in this machine's memory.
pub fn data_diagnostics(spec: &cellmap_schema::Spec) -> Vec<cellmap_schema::Diagnostic> {
    data_check::check(spec)
        .into_iter()
        .map(|e| e.into_diagnostic())
        .chain(data_check::memory(spec))
        .chain(data_check::training_cache(spec))
        .collect()
}
pub use sample::{ExplicitTransform, SampleOptions, SampleOut, read_sample};

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Compiles cellmap specs into specialised data-loader crates.
#[derive(Debug, Parser)]
#[command(name = "cellmap-compile", version, about)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands; each has its module in `cli/`.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate specs (and optionally the data they name); exit 0 when all are valid, 1 otherwise.
    Check(check::CheckArgs),
    /// Print the spec's JSON Schema.
    Schema,
    /// Print the plan: chosen levels, boxes, sample centres, tiles and exact batch bytes.
    Plan(plan::PlanArgs),
    /// Print the prediction plan: output volumes, tiles, shapes and bytes.
    PredictPlan(predict_plan::PredictPlanArgs),
    /// Write predictions tile by tile (resumable; ranks from torchrun's environment).
    Predict(predict::PredictArgs),
    /// Write one sample (unaugmented, as training draws it with `--augment`, or with an explicit
    /// rotation, mirror or transpose) as `.npy` files plus `sample.json`.
    Sample(sample::SampleArgs),
    /// Write a small synthetic CellMap-layout dataset with its datasplit CSV and spec.
    Synth(synth::SynthArgs),
    /// Draw one batch as a PNG grid (raw mid-slices, classes as coloured overlays).
    Preview(preview::PreviewArgs),
    /// Measure the loader: samples/s, MB/s, peak RSS, allocations per batch, cache hit rate.
    Bench(bench::BenchArgs),
    /// Write the specialised loader crate of a spec.
    Build(build::BuildArgs),
    /// Write the spec's training cache: the arrays its plan reads, copied into a local folder
    /// rechunked for sample windows, binary classes packed as bits (`loader.training_cache`).
    Cache(cache::CacheArgs),
    /// Turn a cellmap-data configuration (JSON) and its datasplit CSV into a spec.
    Import(import::ImportArgs),
    /// Run everything end to end on synthetic data: synth, check, plan, build, bench, preview.
    Demo(demo::DemoArgs),
}

/// A split, as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SplitArg {
    /// Training data.
    Train,
    /// Validation data.
    Validate,
    /// Held-out test data (read like validation data).
    Test,
}

impl From<SplitArg> for cellmap_schema::Split {
    fn from(s: SplitArg) -> Self {
        match s {
            SplitArg::Train => cellmap_schema::Split::Train,
            SplitArg::Validate => cellmap_schema::Split::Validate,
            SplitArg::Test => cellmap_schema::Split::Test,
        }
    }
}

/// Load and validate a spec; on failure print its diagnostics (as `check` does) and return the exit code.
pub(crate) fn load_spec(path: &std::path::Path) -> Result<cellmap_schema::Checked, ExitCode> {
    match cellmap_schema::load(path) {
        Ok(checked) => {
            if !checked.warnings.is_empty() {
                eprint!("{}", cellmap_schema::render_human(&checked.warnings));
            }
            Ok(checked)
        }
        Err(errors) => {
            eprint!("{}", cellmap_schema::render_human(&errors.0));
            Err(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// How diagnostics are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// `file:line:column: error: message`, with expected and hint lines.
    Human,
    /// A JSON array of diagnostics.
    Json,
    /// GitHub Actions annotations (`::error file=…,line=…,col=…::message`).
    Github,
}

/// Exit code of a run that found invalid input.
pub(crate) const EXIT_INVALID: u8 = 1;
/// Exit code of a usage error.
pub(crate) const EXIT_USAGE: u8 = 2;

/// Parses the process's arguments and runs the subcommand.
pub fn run() -> ExitCode {
    run_from(std::env::args_os())
}

/// Parses `args` (the first is the program name) and runs the subcommand.
pub fn run_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Schema => {
            print!("{}", cellmap_schema::json_schema_string());
            ExitCode::SUCCESS
        }
        Command::Plan(args) => plan::run(&args),
        Command::PredictPlan(args) => predict_plan::run(&args),
        Command::Predict(args) => predict::run(&args),
        Command::Sample(args) => sample::run(&args),
        Command::Synth(args) => synth::run(&args),
        Command::Preview(args) => preview::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Build(args) => build::run(&args),
        Command::Cache(args) => cache::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Import(args) => import::run(&args),
    }
}
