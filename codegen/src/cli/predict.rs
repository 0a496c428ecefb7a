//! `cellmap-compile predict SPEC --identity`: run the prediction loop with the identity "model" (an
//! input's voxels become every class), to test an output path end to end without a network.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use cellmap_runtime::{DistInfo, predict::PredictPlan, predict::Writer, predict::run_identity};

use super::{EXIT_INVALID, EXIT_USAGE, load_spec};

/// Arguments of `predict`.
#[derive(Debug, clap::Args)]
pub(crate) struct PredictArgs {
    /// The spec (with a `predict` section).
    spec: PathBuf,
    /// Use the identity model: write input INPUT (default: the first predicted input) as every
    /// class. It must have the output voxel size.
    #[arg(long, value_name = "INPUT", num_args = 0..=1, default_missing_value = "")]
    identity: Option<String>,
    /// Tiles per batch.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
}

pub(crate) fn run(args: &PredictArgs) -> ExitCode {
    let Some(identity) = &args.identity else {
        eprintln!(
            "error: no model given; pass `--identity` to write an input as the prediction (networks run \
             through `cellmap_runtime::predict::run_model`)"
        );
        return ExitCode::from(EXIT_USAGE);
    };
    let checked = match load_spec(&args.spec) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_INVALID)
    };
    let dist = match DistInfo::from_env() {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let plan = match PredictPlan::new(&checked.spec) {
        Ok(p) => Arc::new(p),
        Err(e) => return fail(&e),
    };
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    let input = if identity.is_empty() {
        0
    } else {
        match plan.inputs.iter().position(|i| i.name == *identity) {
            Some(i) => i,
            None => {
                let names: Vec<&str> = plan.inputs.iter().map(|i| i.name.as_str()).collect();
                return fail(&format!(
                    "`{identity}` is not a predicted input; expected one of: {}",
                    names.join(", ")
                ));
            }
        }
    };
    let writer = match Writer::create(plan.clone()) {
        Ok(w) => w,
        Err(e) => return fail(&e),
    };
    match run_identity(&checked.spec, &writer, dist, args.batch_size, input) {
        Ok(run) => {
            println!(
                "rank {}/{}: wrote {} tiles, skipped {} already complete ({} tiles in the plan), {:.1} MB in {:.2} s ({:.1} MB/s)",
                dist.rank,
                dist.world_size,
                run.tiles_written,
                run.tiles_skipped,
                run.tiles_total,
                run.bytes_written as f64 / 1e6,
                run.seconds,
                run.bytes_written as f64 / 1e6 / run.seconds.max(1e-9)
            );
            for u in &plan.units {
                for g in &u.groups {
                    println!("  {g}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}
