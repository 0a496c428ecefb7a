//! Outputs are never clobbered (`synth` refuses to overwrite without `--force`; a `synth --force`
//! killed mid-way leaves every entry either entirely old or entirely new) and two processes read
//! the same store at once with identical results.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::bin;

fn synth(dir: &Path, seed: u64, force: bool) -> Command {
    let mut c = bin();
    c.args(["synth", "--small", "--seed", &seed.to_string()]).arg(dir);
    if force {
        c.arg("--force");
    }
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Every file under `dir` (relative path → bytes).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.is_dir() {
        walk(dir, dir, &mut out);
    } else if dir.exists() {
        out.insert(String::new(), std::fs::read(dir).unwrap());
    }
    out
}

const ENTRIES: [&str; 4] = ["datasplit.csv", "spec.yaml", "v2", "v3"];

/// The decoded voxels of every level of every multiscale group under `dir` (zarr v3 shards are
/// compared decoded: zstd's multithreaded encoder does not give the same bytes on every run).
fn decoded(dir: &Path) -> BTreeMap<String, Vec<f32>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<f32>>) {
        if dir.join("s0").is_dir() {
            let ms = cellmap_runtime::store::Multiscale::open(&dir.display().to_string()).unwrap();
            for level in &ms.levels {
                let shape = level.shape_vox.map(|v| v as usize);
                let mut voxels = vec![0f32; shape.iter().product()];
                let strides = [(shape[1] * shape[2]) as isize, shape[2] as isize, 1];
                cellmap_runtime::read::read_window(
                    level,
                    None,
                    &cellmap_runtime::read::WindowRequest {
                        start_vox: [0; 3],
                        fill: f32::NAN,
                    },
                    cellmap_runtime::kernels::StridedDest::new(&mut voxels, 0, strides, shape).unwrap(),
                )
                .unwrap();
                let rel = dir.strip_prefix(base).unwrap().join(&*level.path);
                out.insert(rel.display().to_string(), voxels);
            }
            return;
        }
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.is_dir() {
        walk(dir, dir, &mut out);
    }
    out
}

/// `entry` of `dir` equals `entry` of `reference`: bytes, or decoded voxels for `v3`.
fn same_entry(dir: &Path, reference: &Path, entry: &str) -> bool {
    if entry == "v3" {
        let got = decoded(&dir.join(entry));
        !got.is_empty() && got == decoded(&reference.join(entry))
    } else {
        tree(&dir.join(entry)) == tree(&reference.join(entry))
    }
}

#[test]
fn synth_refuses_to_overwrite_and_an_interrupted_force_leaves_old_or_new_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new, dir) = (tmp.path().join("old"), tmp.path().join("new"), tmp.path().join("dir"));
    assert!(synth(&old, 1, false).status().unwrap().success());
    let started = Instant::now();
    assert!(synth(&new, 2, false).status().unwrap().success());
    let full = started.elapsed();
    assert!(
        !same_entry(&old, &new, "v2") && !same_entry(&old, &new, "v3"),
        "the seeds differ"
    );

    // Without --force an existing dataset is refused and left alone.
    assert!(synth(&dir, 1, false).status().unwrap().success());
    let out = synth(&dir, 2, false).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    for e in ENTRIES {
        assert!(same_entry(&dir, &old, e), "{e}");
    }

    // `--force` killed at several points of its run: each entry is whole, old or new.
    for fraction in [0.2, 0.5, 0.8, 0.95] {
        let mut child = synth(&dir, 2, true).spawn().unwrap();
        std::thread::sleep(full.mul_f64(fraction));
        let _ = child.kill();
        child.wait().unwrap();
        for e in ENTRIES {
            assert!(
                same_entry(&dir, &old, e) || same_entry(&dir, &new, e),
                "`{e}` after a kill at {fraction} of the run is neither the old nor the new version"
            );
        }
        let visible: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert!(visible.iter().all(|n| ENTRIES.contains(&n.as_str())), "{visible:?}");
        // Back to the old dataset for the next round.
        assert!(synth(&dir, 1, true).status().unwrap().success());
    }
    // An uninterrupted --force replaces everything.
    assert!(synth(&dir, 2, true).status().unwrap().success());
    for e in ENTRIES {
        assert!(same_entry(&dir, &new, e), "{e}");
    }
}

#[test]
fn two_processes_sample_the_same_store_at_once_with_identical_results() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert!(synth(&data, 3, false).status().unwrap().success());
    let spec = data.join("spec.yaml");
    // The centre of crop1 (translation [136, 184, 240] nm, 64³ voxels of 8 nm).
    let sample = |out: &Path| {
        let mut c = bin();
        c.arg("sample")
            .arg(&spec)
            .args(["--center", "388,436,492", "--out"])
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let (a, b, alone) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("alone"));
    let first = sample(&a).spawn().unwrap();
    let second = sample(&b).spawn().unwrap();
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = sample(&alone).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in ["raw.npy", "labels.npy"] {
        let reference = std::fs::read(alone.join(name)).unwrap();
        assert!(reference.len() > 64 * 64 * 64, "{name}");
        assert_eq!(std::fs::read(a.join(name)).unwrap(), reference, "{name} of process a");
        assert_eq!(std::fs::read(b.join(name)).unwrap(), reference, "{name} of process b");
    }
}
