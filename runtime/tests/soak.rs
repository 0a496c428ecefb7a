//! Soak: thousands of training batches of the synthetic dataset with rotation, mirroring,
//! transposition and value transforms. RSS, sampled every 100 batches after a warm-up, must stay
//! within 5% of its value at the end of the warm-up; the process's thread count must not change.
//!
//! A separate test binary (no libtest harness) so that no other test shares the process. CI runs
//! the short form (`cargo test -p cellmap-runtime --test soak`: 500 batches); the long form is
//! `cargo test -p cellmap-runtime --release --test soak -- --batches 10000`.
//!
//! Being alone in its process, it also checks that a loader whose worker panics (injected through
//! `LoaderOptions::fault_hook`) leaves no thread behind once dropped.

use std::sync::Arc;
use std::time::Instant;

use cellmap_runtime::{
    FaultHook, Loader, LoaderOptions, PipelineError, diagnostics::rss_bytes, diagnostics::thread_count,
    synth::SynthOptions, synth::SynthSize, synth::SynthVariant, synth::write_synthetic,
};

const SPEC: &str = r#"version: 1
name: soak
classes: [mito, er, nuc, pm]
arrays:
  inputs:
    raw: { shape: [24, 24, 24], scale: [8, 8, 8] }
  targets:
    labels: { shape: [20, 20, 20], scale: [8, 8, 8] }
data:
  csv: datasplit.csv
sampling:
  seed: 7
  iterations_per_epoch: 64
augment:
  spatial:
    mirror: { z: 0.5, y: 0.5, x: 0.5 }
    transpose: [y, x]
    rotate: { z: [-180, 180], y: [-20, 20] }
  inputs:
    - normalize: { shift: 0, scale: 255 }
    - gaussian_noise: { std: 0.05 }
  targets:
    - binarize: { threshold: 0 }
loader:
  batch_size: 4
  workers: 2
  prefetch: 4
"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let batches: u64 = args
        .iter()
        .position(|a| a == "--batches")
        .and_then(|i| args.get(i + 1))
        .map_or(500, |v| v.parse().expect("--batches N"));
    let warm_up = (batches / 10).max(100);

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("synth");
    let options = SynthOptions {
        seed: 5,
        size: SynthSize::Small,
        variants: vec![SynthVariant::V2],
        force: false,
        ..SynthOptions::default()
    };
    write_synthetic(&dir, &options).expect("synthetic dataset");
    let spec_path = dir.join("soak.yaml");
    std::fs::write(&spec_path, SPEC).expect("spec");
    let spec = cellmap_schema::load(&spec_path).expect("valid soak spec").spec;

    let options = || {
        let mut o = LoaderOptions::train().expect("rank");
        o.dist = cellmap_runtime::DistInfo::single();
        o
    };
    let mut loader = Loader::open(spec.clone(), options()).expect("loader");
    let started = Instant::now();
    let mut threads = None;
    let mut warm_rss = 0u64;
    let mut max_rss = 0u64;
    let mut last_rss = 0u64;
    let mut checksum = 0f64;
    for n in 1..=batches {
        let batch = loader.next_batch().expect("endless").expect("batch");
        assert_eq!(batch.len(), 4);
        checksum += f64::from(batch.array(0)[n as usize % 100]);
        drop(batch);
        if n % 100 != 0 {
            continue;
        }
        let rss = rss_bytes().expect("/proc/self/status");
        let t = thread_count().expect("/proc/self/task");
        assert_eq!(*threads.get_or_insert(t), t, "thread count changed at batch {n}");
        if n == warm_up {
            warm_rss = rss;
        } else if n > warm_up {
            max_rss = max_rss.max(rss);
            assert!(
                rss as f64 <= warm_rss as f64 * 1.05,
                "RSS grew from {warm_rss} B after warm-up to {rss} B at batch {n}"
            );
        }
        last_rss = rss;
    }
    assert_eq!(loader.skipped_samples(), 0);
    let workers = loader.worker_count();
    drop(loader);
    // After the soak: a panic's backtrace loads debug info, which would distort the RSS figures.
    panicking_worker_leaves_no_thread(&spec, options());
    println!(
        "soak: {batches} batches in {:.1} s; RSS after warm-up ({warm_up} batches) {:.1} MiB, max {:.1} MiB, end {:.1} MiB; threads {} (workers {}); checksum {checksum:.3}",
        started.elapsed().as_secs_f64(),
        warm_rss as f64 / 1048576.0,
        max_rss as f64 / 1048576.0,
        last_rss as f64 / 1048576.0,
        threads.unwrap_or(0),
        workers,
    );
}

/// A worker panic is reported, and dropping the loader ends every thread it started.
fn panicking_worker_leaves_no_thread(spec: &cellmap_schema::Spec, mut o: LoaderOptions) {
    let before = thread_count().expect("/proc/self/task");
    o.fault_hook = Some(FaultHook(Arc::new(|batch, position| {
        if batch == 2 && position == 1 {
            panic!("injected");
        }
    })));
    // The fetch pool's threads start with the loader; the fetch-ahead pool's on first use (off
    // here, so the count is exact).
    o.fetch_concurrency = Some(16);
    o.fetch_ahead = Some(0);
    let mut loader = Loader::open(spec.clone(), o).expect("loader");
    assert_eq!(
        thread_count(),
        Some(before + 2 + 16),
        "two workers and 16 fetch threads started"
    );
    let err = loop {
        match loader.next_batch().expect("endless") {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, PipelineError::WorkerPanicked { ref message, .. } if message == "injected"),
        "{err:?}"
    );
    drop(loader);
    assert_eq!(thread_count(), Some(before), "every worker thread has ended");
    println!("worker panic: reported, threads back to {before} after drop");
}
