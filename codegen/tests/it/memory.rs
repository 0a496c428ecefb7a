//! Issue #16: `plan`, `check --data` and `bench` refuse a batch ring and chunk cache that do not
//! fit in memory (exit 1 with the numbers and the keys), and a ring the system refuses ends
//! `bench` with exit 1, not an abort (134).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The small synthetic dataset and its spec with `batch_size`; returns the spec's path.
fn synth_spec(dir: &Path, batch_size: u64) -> PathBuf {
    let o = super::run(&["synth", dir.to_str().unwrap(), "--small"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let path = dir.join("spec.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("  batch_size: 4\n"), "{text}");
    let text = text.replace(
        "  batch_size: 4\n",
        &format!("  batch_size: {batch_size}\n  prefetch: 2\n"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn run_with_limit(args: &[&str], limit: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cellmap-compile"))
        .args(args)
        .current_dir(super::root())
        .env(cellmap_runtime::memory::MEMORY_LIMIT_ENV, limit)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// 64³ raw + 4 classes × 64³ float32 per sample, 1000 samples, 2 slots; the default 1 GiB cache.
const REFUSAL: &str = "not enough memory for the loader: the batch ring needs 10485760000 bytes (10000.0 MiB = `loader.prefetch` 2 × 5242880000 bytes per batch of `loader.batch_size` 1000) and the chunk cache up to 1073741824 bytes (1024.0 MiB, `loader.cache_bytes`), 11559501824 bytes in all, but 100000000 bytes (95.4 MiB) are available (`CELLMAP_MEMORY_LIMIT_BYTES`); lower `loader.batch_size`, `loader.prefetch` or `loader.cache_bytes`";

#[test]
fn issue16_check_data_plan_and_bench_refuse_a_ring_larger_than_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = synth_spec(tmp.path(), 1000);
    let spec = spec.to_str().unwrap();

    let o = run_with_limit(&["check", "--data", spec], "100000000");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // At the `batch_size` key of the spec (line 14 once `prefetch` follows it).
    let want = format!("{spec}:14:3: error: {REFUSAL} (at `/loader`)");
    assert!(text(&o).contains(&want), "expected\n{want}\nin\n{}", text(&o));
    // Without the limit, this machine may hold it; with plenty, it is valid.
    let o = run_with_limit(&["check", "--data", spec], "1000000000000");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let o = run_with_limit(&["plan", spec], "100000000");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("ring: 2 slots = 10485760000 bytes"),
        "the plan is still printed:\n{out}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("error: {REFUSAL}")),
        "{}",
        text(&o)
    );

    let o = run_with_limit(
        &["bench", spec, "--quiet", "--batches", "1", "--warmup", "0"],
        "100000000",
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("error: {REFUSAL}")),
        "{}",
        text(&o)
    );
}

#[test]
fn issue16_bench_over_a_ring_the_system_refuses_exits_1_not_134() {
    let tmp = tempfile::tempdir().unwrap();
    // 65536 samples of 16384³ padded voxels: 2^60 bytes of raw per batch, more than any address
    // space maps (47 or 57 bits), whatever the kernel's overcommit policy.
    let spec = synth_spec(tmp.path(), 65536);
    let yaml = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("[64, 64, 64]", "[16384, 16384, 16384]")
        .replace("sampling:\n", "sampling:\n  pad: true\n");
    std::fs::write(&spec, yaml).unwrap();
    let o = run_with_limit(
        &[
            "bench",
            spec.to_str().unwrap(),
            "--quiet",
            "--batches",
            "1",
            "--warmup",
            "0",
        ],
        "off",
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("error: cannot allocate 1152921504606846976 bytes") && err.contains("`loader.batch_size`"),
        "{err}"
    );
}
