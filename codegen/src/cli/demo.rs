//! `cellmap-compile demo`: the whole flow on synthetic data, as a newcomer would run it.
//!
//! 1. write a synthetic CellMap-layout dataset (`DIR/data`) with its datasplit CSV and spec;
//! 2. validate the spec and print the plan;
//! 3. compile the spec into a loader crate (`DIR/crate`) and, unless `--no-cargo`, build and run
//!    its `stream` example (the generated, specialised loader) with cargo;
//! 4. stream batches through the generic loader with a progress bar;
//! 5. write the spec's training cache (`DIR/training-cache`) and compare cold reads (no chunk
//!    cache) from the data and through it;
//! 6. draw one batch as `DIR/preview.png`; print a summary.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::generate::generate;
use cellmap_runtime::{
    LoaderOptions, PlanOptions, plan, synth::SynthOptions, synth::SynthSize, synth::write_synthetic,
};

use super::bench::bench;
use super::build::{default_runtime, write_crate};
use super::{EXIT_INVALID, load_spec};

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Folder the demo writes into. It is the demo's own: its `data/` and `crate/` are replaced.
    #[arg(long, default_value = "cellmap-demo")]
    dir: PathBuf,
    /// Batches to stream.
    #[arg(long, default_value_t = 40)]
    batches: u64,
    /// Skip building and running the generated crate with cargo.
    #[arg(long)]
    no_cargo: bool,
    /// Use the small dataset (faster; one sample centre per crop).
    #[arg(long)]
    small: bool,
}

pub(crate) fn run(args: &DemoArgs) -> ExitCode {
    match demo(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn step(n: u32, what: &str) {
    println!("\n[{n}/6] {what}");
}

fn demo(args: &DemoArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("cannot create `{}`: {e}", args.dir.display()))?;
    let data = args.dir.join("data");

    step(1, "synthetic dataset");
    let options = SynthOptions {
        size: if args.small {
            SynthSize::Small
        } else {
            SynthSize::Default
        },
        force: true,
        ..SynthOptions::default()
    };
    let report = write_synthetic(&data, &options).map_err(|e| e.to_string())?;
    print!("{}", super::synth::describe(&report));
    let spec_path = write_demo_spec(&data)?;

    step(2, "check and plan");
    let checked = load_spec(&spec_path).map_err(|_| format!("`{}` is not valid", spec_path.display()))?;
    println!("{}: valid", spec_path.display());
    let planned = plan(&checked.spec, PlanOptions { count_classes: true }).map_err(|e| e.to_string())?;
    print!("{}", super::plan::render(&planned.plan, checked.spec.classes()));

    step(3, "compile the spec into a loader crate");
    let crate_dir = args.dir.join("crate");
    let text = std::fs::read_to_string(&spec_path).map_err(|e| e.to_string())?;
    let embedded = super::build::plan_for_crate(&checked.spec);
    let files = generate(&checked.spec, &text, "demo.yaml", &default_runtime(), embedded.as_ref())
        .map_err(|e| e.to_string())?;
    write_crate(&crate_dir, &files, true)?;
    println!("wrote {} ({} files)", crate_dir.display(), files.len());
    let generated = if args.no_cargo {
        None
    } else {
        run_generated(&crate_dir, args.batches)?
    };

    step(4, "stream batches through the loader");
    let mut options = LoaderOptions::train().map_err(|e| e.to_string())?;
    options.dist = cellmap_runtime::DistInfo::single();
    // The same 20 warm-up batches as the generated crate's `stream` example.
    let report = bench(checked.spec.clone(), options, 20, args.batches, true)?;
    println!(
        "{} batches, {:.1} samples/s, {:.0} MB/s, {:.2} allocations/batch, peak RSS {:.0} MiB, cache hits {:.0}%",
        report.batches,
        report.samples_per_s,
        report.mb_per_s,
        report.allocations_per_batch,
        report.peak_rss_bytes.unwrap_or(0) as f64 / 1048576.0,
        report.cache_hit_rate.unwrap_or(0.0) * 100.0
    );

    step(5, "training cache: cold reads from the data and through it");
    let cold = cold_reads(&checked.spec, &args.dir.join("training-cache"), args.batches)?;

    step(6, "preview");
    let png = args.dir.join("preview.png");
    super::preview::preview(checked.spec.clone(), cellmap_schema::Split::Train, 0, &png)?;
    println!("wrote {}", png.display());

    println!("\nsummary");
    println!("  spec            {}", spec_path.display());
    println!(
        "  batch           {} samples, {} bytes",
        report.batch_size, report.batch_bytes
    );
    println!("  generic loader  {:.1} samples/s", report.samples_per_s);
    match generated {
        Some(s) => println!("  generated crate {s:.1} samples/s ({})", crate_dir.display()),
        None => println!("  generated crate {} (not built: --no-cargo)", crate_dir.display()),
    }
    println!(
        "  cold reads      {:.1} samples/s from the data, {:.1} through the training cache ({:.1}×)",
        cold.0,
        cold.1,
        cold.1 / cold.0.max(1e-9)
    );
    println!("  preview         {}", png.display());
    Ok(())
}

/// Write `spec`'s training cache in `dir`, then stream batches with no chunk cache from the data
/// and through the cache: `(samples/s from the data, samples/s through the cache)`.
fn cold_reads(spec: &cellmap_schema::Spec, dir: &Path, batches: u64) -> Result<(f64, f64), String> {
    use cellmap_runtime::training_cache::{CacheOptions, write};
    let written = write(spec, dir, &CacheOptions::for_spec(spec)).map_err(|e| e.to_string())?;
    println!(
        "wrote {} ({} arrays copied, {} packs ({} classes), {:.1} MB) in {:.2} s",
        written.dir.display(),
        written.copies_written,
        written.packs_written,
        written.classes_packed,
        written.disk_bytes as f64 / 1e6,
        written.elapsed.as_secs_f64()
    );
    let cold = |spec: cellmap_schema::Spec| -> Result<f64, String> {
        let mut options = LoaderOptions::train().map_err(|e| e.to_string())?;
        options.dist = cellmap_runtime::DistInfo::single();
        options.no_cache = true;
        Ok(bench(spec, options, 4, batches.div_ceil(2), false)?.samples_per_s)
    };
    let direct = cold(spec.clone().with_training_cache(None))?;
    let through = cold(
        spec.clone()
            .with_training_cache(Some(written.dir.display().to_string())),
    )?;
    println!("no chunk cache: {direct:.1} samples/s from the data, {through:.1} through the training cache");
    Ok((direct, through))
}

/// The demo spec: the synthetic data's CSV, 64³ crops at 8 nm, mirror/transpose/rotate.
fn write_demo_spec(data: &Path) -> Result<PathBuf, String> {
    let spec = "\
version: 1
name: demo
classes: [mito, er, nuc, pm]
class_relations: { nuc: [pm], pm: [nuc] }
arrays:
  inputs:
    raw: { shape: [48, 48, 48], scale: [8, 8, 8] }
  targets:
    labels: { shape: [48, 48, 48], scale: [8, 8, 8] }
data:
  csv: datasplit.csv
sampling:
  seed: 42
  iterations_per_epoch: 64
  weighting: class_balanced
  pad: { train: false, validate: true }
augment:
  spatial:
    mirror: { z: 0.5, y: 0.5, x: 0.5 }
    transpose: [y, x]
    rotate: { z: [-30, 30] }
  inputs:
    - normalize: { shift: 0, scale: 255 }
    - gaussian_noise: { std: 0.02 }
loader:
  batch_size: 4
  workers: 2
  prefetch: 3
";
    let path = data.join("demo.yaml");
    std::fs::write(&path, spec).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    Ok(path)
}

/// Build and run the generated crate's `stream` example; its samples/s.
fn run_generated(crate_dir: &Path, batches: u64) -> Result<Option<f64>, String> {
    println!("building the generated crate with cargo (the first build compiles its dependencies)…");
    // Reuse this tool's dependency versions and build folder, so that only the crate and the
    // runtime are compiled again.
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    if lock.is_file() && !crate_dir.join("Cargo.lock").exists() {
        let _ = std::fs::copy(&lock, crate_dir.join("Cargo.lock"));
    }
    let mut cargo = Command::new("cargo");
    cargo
        .args([
            "run",
            "--quiet",
            "--release",
            "--example",
            "stream",
            "--",
            &batches.to_string(),
        ])
        .current_dir(crate_dir)
        .env("CELLMAP_STREAM_JSON", "1");
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        // This binary lives in <target>/release/.
        if let Some(target) = std::env::current_exe()
            .ok()
            .and_then(|e| Some(e.parent()?.parent()?.to_path_buf()))
        {
            cargo.env("CARGO_TARGET_DIR", target);
        }
    }
    let status = cargo.output();
    let out = match status {
        Ok(o) => o,
        Err(e) => {
            println!("cargo is not available ({e}); skipping the generated crate");
            return Ok(None);
        }
    };
    if !out.status.success() {
        return Err(format!(
            "the generated crate failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    let value: serde_json::Value =
        serde_json::from_str(last).map_err(|e| format!("unexpected output `{last}`: {e}"))?;
    Ok(value.get("samples_per_s").and_then(serde_json::Value::as_f64))
}
