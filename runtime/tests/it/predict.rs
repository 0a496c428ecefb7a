//! Tiled prediction: identity round trips (voxel for voxel, several tiles, contexts, scales,
//! formats), resume after a stopped writer, rank sharding, and zarr-python reading the output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cellmap_runtime::{
    DistInfo, kernels::StridedDest, predict::PredictError, predict::PredictPlan, predict::Writer,
    predict::run_identity, read::WindowRequest, read::read_window, sampler::shard, store::Multiscale,
    synth::SynthOptions, synth::SynthSize, synth::SynthVariant, synth::write_synthetic,
};
use cellmap_schema::Spec;

/// A small synthetic dataset (raw 96³ at 8 nm, 48³ at 16 nm, 24³ at 32 nm; translation
/// `[40, 24, 16]` at s0), v2 only. Returns the raw location.
fn synth(dir: &Path) -> String {
    let options = SynthOptions {
        seed: 3,
        size: SynthSize::Small,
        variants: vec![SynthVariant::V2],
        force: false,
        ..SynthOptions::default()
    };
    write_synthetic(&dir.join("synth"), &options).unwrap();
    dir.join("synth/v2/synth.zarr/recon-1/em/fibsem-uint8")
        .display()
        .to_string()
}

/// A spec whose single input `raw` is at `scale` nm, with the given `predict` section.
fn spec(dir: &Path, raw: &str, scale: f64, predict: &str, input_transforms: &str) -> Spec {
    let labels = raw.replace("em/fibsem-uint8", "labels/groundtruth");
    let text = format!(
        "version: 1\nname: p\nclasses: [mito, er, nuc, pm]\narrays:\n  inputs:\n    raw: {{ shape: [8, 8, 8], scale: [{scale}, {scale}, {scale}] }}\n  targets:\n    labels: {{ shape: [8, 8, 8], scale: [{scale}, {scale}, {scale}] }}\ndata:\n  datasets:\n    - {{ split: train, raw: {raw}, targets: \"{labels}/crop1/{{class}}\" }}\n    - {{ split: validate, raw: {raw}, targets: \"{labels}/crop2/{{class}}\" }}\naugment:\n  inputs: {input_transforms}\npredict:\n{predict}"
    );
    match cellmap_schema::parse(&text, &dir.join("spec.yaml")) {
        Ok(c) => c.spec,
        Err(e) => panic!("{e}\n{text}"),
    }
}

/// Every voxel of level 0 of a group as f32, with its shape.
fn read_group(group: &str) -> (Multiscale, Vec<f32>) {
    let ms = Multiscale::open(group).unwrap();
    let l = &ms.levels[0];
    let s = l.shape_vox.map(|v| v as usize);
    let mut out = vec![0f32; s[0] * s[1] * s[2]];
    read_window(
        l,
        None,
        &WindowRequest {
            start_vox: [0; 3],
            fill: -1.0,
        },
        StridedDest::new(&mut out, 0, [(s[1] * s[2]) as isize, s[2] as isize, 1], s).unwrap(),
    )
    .unwrap();
    (ms, out)
}

/// The raw voxels at `scale` where the output array lies (world-aligned), pad value 0 outside.
fn expected_raw(raw: &str, scale: f64, translation_nm: [f64; 3], shape: [u64; 3]) -> Vec<f32> {
    let ms = Multiscale::open(raw).unwrap();
    let l = ms.levels.iter().find(|l| l.scale_nm == [scale; 3]).unwrap();
    let start: [i64; 3] = std::array::from_fn(|a| {
        let v = (translation_nm[a] - l.translation_nm[a]) / scale;
        assert_eq!(v, v.round(), "output grid aligned with the raw grid");
        v as i64
    });
    let s = shape.map(|v| v as usize);
    let mut out = vec![0f32; s[0] * s[1] * s[2]];
    read_window(
        l,
        None,
        &WindowRequest {
            start_vox: start,
            fill: 0.0,
        },
        StridedDest::new(&mut out, 0, [(s[1] * s[2]) as isize, s[2] as isize, 1], s).unwrap(),
    )
    .unwrap();
    out
}

/// Every file under `dir` except completion markers, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != ".cellmap-done") {
                    stack.push(p);
                }
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn run_all(spec: &Spec, batch: usize) -> (Arc<PredictPlan>, cellmap_runtime::predict::PredictRun) {
    let plan = Arc::new(PredictPlan::new(spec).unwrap());
    let writer = Writer::create(plan.clone()).unwrap();
    let run = run_identity(spec, &writer, DistInfo::single(), batch, 0).unwrap();
    (plan, run)
}

struct Case {
    scale: f64,
    tile: [usize; 3],
    context: [usize; 3],
    format: u8,
    region: &'static str,
}

#[test]
fn identity_round_trips_voxel_for_voxel() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = synth(tmp.path());
    let cases = [
        // 96³ at 8 nm in 16³ tiles: an exact multiple.
        Case {
            scale: 8.0,
            tile: [16, 16, 16],
            context: [0, 0, 0],
            format: 2,
            region: "raw",
        },
        // Not a multiple of the tile on any axis, context on every side, v3.
        Case {
            scale: 8.0,
            tile: [20, 24, 28],
            context: [3, 2, 1],
            format: 3,
            region: "raw",
        },
        // 48³ at 16 nm, tiles 10×12×14 (the last ones clipped).
        Case {
            scale: 16.0,
            tile: [10, 12, 14],
            context: [2, 2, 2],
            format: 2,
            region: "raw",
        },
        // A world box reaching past the raw data (padded with 0) at 32 nm, v3.
        Case {
            scale: 32.0,
            tile: [7, 5, 6],
            context: [1, 0, 2],
            format: 3,
            region: "{ bounds_nm: [[-60, -12, 268], [900, 1000, 1200]] }",
        },
        // 2D-shaped tiles.
        Case {
            scale: 8.0,
            tile: [1, 32, 40],
            context: [0, 4, 4],
            format: 2,
            region: "raw",
        },
    ];
    for (k, c) in cases.iter().enumerate() {
        let out = tmp.path().join(format!("out{k}.zarr"));
        let predict = format!(
            "  output: {}/{{dataset}}/{{class}}\n  model_classes: [mito, er]\n  classes: [er]\n  zarr_format: {}\n  region: {}\n  tile: {:?}\n  context: {:?}\n",
            out.display(),
            c.format,
            c.region,
            c.tile,
            c.context
        );
        let s = spec(tmp.path(), &raw, c.scale, &predict, "[]");
        let (plan, run) = run_all(&s, 3);
        assert_eq!(plan.units.len(), 1);
        let unit = &plan.units[0];
        assert_eq!(unit.name, "synth");
        let group = out.join("synth/er");
        assert_eq!(unit.groups, [group.display().to_string()]);
        assert_eq!(run.tiles_total, unit.tiles());
        assert_eq!(run.tiles_written as usize, unit.tiles());
        for a in 0..3 {
            assert_eq!(unit.tile_grid[a], unit.shape_vox[a].div_ceil(c.tile[a] as u64));
        }
        let (ms, got) = read_group(&group.display().to_string());
        assert_eq!(ms.zarr_format, c.format);
        let l = &ms.levels[0];
        assert_eq!(l.scale_nm, [c.scale; 3], "case {k}");
        assert_eq!(l.translation_nm, unit.translation_nm, "case {k}");
        assert_eq!(l.shape_vox, unit.shape_vox, "case {k}");
        assert_eq!(l.chunk_shape_vox, c.tile.map(|v| v as u64), "case {k}");
        // The translation is the centre of voxel 0 of the region.
        for a in 0..3 {
            assert_eq!(unit.translation_nm[a], unit.region_nm.lo_nm[a] + c.scale / 2.0);
        }
        let want = expected_raw(&raw, c.scale, unit.translation_nm, unit.shape_vox);
        assert_eq!(got.len(), want.len());
        let diff = got.iter().zip(&want).filter(|(g, w)| g != w).count();
        assert_eq!(diff, 0, "case {k}: {diff} voxels differ");
        assert!(want.iter().filter(|v| **v != 0.0).count() > want.len() / 4, "case {k}");
    }
}

#[test]
fn raw_region_shape_and_translation() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = synth(tmp.path());
    let out = tmp.path().join("o.zarr");
    let s = spec(
        tmp.path(),
        &raw,
        16.0,
        &format!(
            "  output: {}/{{class}}\n  classes: [nuc]\n  tile: [10, 12, 14]\n",
            out.display()
        ),
        "[]",
    );
    let plan = PredictPlan::new(&s).unwrap();
    let u = &plan.units[0];
    // Raw s0 covers [t − 4, t + 95.5·8] = [36, 804] nm on z; at 16 nm: 48 voxels, voxel 0 at 44 nm =
    // the raw s1 translation.
    assert_eq!(u.shape_vox, [48, 48, 48]);
    assert_eq!(u.translation_nm, [44.0, 28.0, 20.0]);
    assert_eq!(u.tile_grid, [5, 4, 4]);
    assert_eq!(plan.tile_count(), 80);
    assert_eq!(plan.inputs[0].window_vox, [10, 12, 14]);
    assert_eq!(plan.output_bytes, 48 * 48 * 48 * 4);
    let last = plan.tile(79).unwrap();
    assert_eq!(
        (last.index, last.start_vox, last.shape_vox),
        ([4, 3, 3], [40, 36, 42], [8, 12, 6])
    );
    // Unclipped centre: voxels 40..50 at 16 nm from 44 → centre 44 + 44.5·16.
    assert_eq!(last.centre_nm[0], 44.0 + 44.5 * 16.0);
    assert!(matches!(
        plan.tile(80),
        Err(PredictError::UnknownTile { tile: 80, tiles: 80 })
    ));
}

#[test]
fn uint8_output_scales_and_validation_crops_get_their_own_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = synth(tmp.path());
    let out = tmp.path().join("val.zarr");
    let predict = format!(
        "  output: {}/{{dataset}}/{{class}}\n  classes: [mito, pm]\n  dtype: uint8\n  region: validation\n  tile: [16, 16, 16]\n  context: [4, 4, 4]\n",
        out.display()
    );
    let s = spec(
        tmp.path(),
        &raw,
        8.0,
        &predict,
        "[{ normalize: { shift: 0, scale: 255 } }]",
    );
    let (plan, _) = run_all(&s, 2);
    assert_eq!(plan.units.len(), 1);
    let u = &plan.units[0];
    assert_eq!(u.name, "synth_crop2");
    // The crop's labelled box, on the raw s0 grid.
    let crop = Multiscale::open(&format!(
        "{}/crop2/mito",
        raw.replace("em/fibsem-uint8", "labels/groundtruth")
    ))
    .unwrap();
    assert_eq!(u.translation_nm, crop.levels[0].translation_nm);
    assert_eq!(u.shape_vox, crop.levels[0].shape_vox);
    for class in ["mito", "pm"] {
        let group = out.join("synth_crop2").join(class).display().to_string();
        let (ms, got) = read_group(&group);
        assert_eq!(ms.levels[0].dtype, cellmap_runtime::store::SourceDtype::U8);
        assert_eq!(ms.levels[0].translation_nm, u.translation_nm);
        // raw/255 → round(·255) = raw.
        assert_eq!(got, expected_raw(&raw, 8.0, u.translation_nm, u.shape_vox), "{class}");
    }
    // The container and the dataset folder are groups too.
    assert!(out.join(".zgroup").exists() && out.join("synth_crop2/.zgroup").exists());
}

#[test]
fn a_stopped_writer_resumes_to_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = synth(tmp.path());
    for format in [2u8, 3] {
        let make = |name: &str| {
            let out = tmp.path().join(format!("{name}{format}.zarr"));
            let predict = format!(
                "  output: {}/{{class}}\n  classes: [mito, er]\n  zarr_format: {format}\n  tile: [20, 32, 40]\n  context: [2, 2, 2]\n",
                out.display()
            );
            (out, spec(tmp.path(), &raw, 8.0, &predict, "[]"))
        };
        let (reference_dir, reference) = make("reference");
        let (plan, _) = run_all(&reference, 4);
        let n = plan.tile_count();
        assert_eq!(n, 5 * 3 * 3);

        let (resumed_dir, resumed) = make("resumed");
        let plan = Arc::new(PredictPlan::new(&resumed).unwrap());
        let k = 7u64;
        let writer = Writer::create(plan.clone())
            .unwrap()
            .with_hook(Arc::new(move |done| done < k));
        let err = run_identity(&resumed, &writer, DistInfo::single(), 1, 0).unwrap_err();
        assert!(matches!(err, PredictError::Stopped { tiles } if tiles == k), "{err}");
        drop(writer);
        // A chunk left half-written by a killed process (no marker) must not count as complete.
        let victim = plan.tile(k as usize).unwrap();
        let key = if format == 2 { "s0" } else { "s0/c" };
        let chunk = resumed_dir.join(format!(
            "mito/{key}/{}/{}/{}",
            victim.index[0], victim.index[1], victim.index[2]
        ));
        std::fs::create_dir_all(chunk.parent().unwrap()).unwrap();
        std::fs::write(&chunk, b"half a chunk").unwrap();

        let writer = Writer::create(plan.clone()).unwrap();
        assert_eq!(writer.pending(DistInfo::single()).len(), n - k as usize);
        assert!(!writer.is_done(victim.id) && writer.is_done(0));
        let run = run_identity(&resumed, &writer, DistInfo::single(), 4, 0).unwrap();
        assert_eq!((run.tiles_skipped, run.tiles_written), (k as usize, n as u64 - k));
        let (a, b) = (files(&reference_dir), files(&resumed_dir));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        assert!(a == b, "format {format}: bytes differ");
        // Nothing is left to do; temporary files are gone.
        assert!(Writer::create(plan).unwrap().pending(DistInfo::single()).is_empty());
        assert!(b.keys().all(|p| !p.to_string_lossy().contains(".tmp-")));
    }
}

#[test]
fn ranks_write_disjoint_complete_shares() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = synth(tmp.path());
    let make = |name: &str| {
        let out = tmp.path().join(format!("{name}.zarr"));
        let predict = format!(
            "  output: {}/{{class}}\n  classes: [nuc]\n  tile: [32, 20, 48]\n  context: [0, 1, 0]\n",
            out.display()
        );
        (out, spec(tmp.path(), &raw, 8.0, &predict, "[]"))
    };
    let (reference_dir, reference) = make("single");
    let (plan, _) = run_all(&reference, 2);
    let n = plan.tile_count();
    let mut seen = vec![0u32; n];
    for rank in 0..3 {
        let ids = plan.shard(rank, 3);
        let via_shard: Vec<usize> = shard(&(0..n).collect::<Vec<_>>(), rank, 3).copied().collect();
        assert_eq!(ids, via_shard);
        for id in ids {
            seen[id] += 1;
        }
    }
    assert!(seen.iter().all(|&c| c == 1), "{seen:?}");

    let (ranks_dir, ranks) = make("ranks");
    let plan = Arc::new(PredictPlan::new(&ranks).unwrap());
    let mut written = 0;
    for rank in 0..3 {
        let writer = Writer::create(plan.clone()).unwrap();
        let dist = DistInfo {
            rank,
            world_size: 3,
            local_rank: rank,
        };
        let run = run_identity(&ranks, &writer, dist, 2, 0).unwrap();
        assert_eq!(run.tiles_skipped, 0);
        written += run.tiles_written;
    }
    assert_eq!(written as usize, n);
    assert!(files(&reference_dir) == files(&ranks_dir));
}

#[test]
fn changed_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = synth(tmp.path());
    let out = tmp.path().join("o.zarr");
    let p = |tile: &str| {
        format!(
            "  output: {}/{{class}}\n  classes: [nuc]\n  tile: {tile}\n",
            out.display()
        )
    };
    let (plan, _) = run_all(&spec(tmp.path(), &raw, 8.0, &p("[32, 32, 32]"), "[]"), 1);
    assert_eq!(plan.tile_count(), 27);
    let other = PredictPlan::new(&spec(tmp.path(), &raw, 8.0, &p("[16, 16, 16]"), "[]")).unwrap();
    let err = Writer::create(Arc::new(other)).unwrap_err();
    assert!(
        matches!(err, PredictError::Incompatible { ref path } if path.ends_with("s0/.zarray")),
        "{err}"
    );
}

/// zarr-python (2.18, from `~/.cache/cellmap-compile/zarr-venv`, created by `.ci/run`) opens the
/// written v2 group with the right scale, translation and voxels. Skipped when the venv is absent.
#[test]
fn zarr_python_reads_the_output() {
    let python = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/cellmap-compile/zarr-venv/bin/python");
    if !python.exists() {
        eprintln!("skipped: {} not found (run .ci/run to create it)", python.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let raw = synth(tmp.path());
    let out = tmp.path().join("py.zarr");
    let predict = format!(
        "  output: {}/{{dataset}}/{{class}}\n  classes: [er]\n  tile: [10, 12, 14]\n  context: [1, 1, 1]\n",
        out.display()
    );
    let s = spec(tmp.path(), &raw, 16.0, &predict, "[]");
    let (plan, _) = run_all(&s, 4);
    let u = &plan.units[0];
    let want = expected_raw(&raw, 16.0, u.translation_nm, u.shape_vox);
    let script = r#"
import sys, json, zarr, numpy as np
g = zarr.open_group(sys.argv[1], mode="r")
ms = g.attrs["multiscales"][0]
ct = ms["datasets"][0]["coordinateTransformations"]
a = g[ms["datasets"][0]["path"]]
v = a[:]
print(json.dumps({"version": ms["version"], "axes": [x["name"] for x in ms["axes"]],
    "scale": ct[0]["scale"], "translation": ct[1]["translation"], "shape": list(a.shape),
    "chunks": list(a.chunks), "dtype": str(a.dtype), "sum": float(v.astype(np.float64).sum()),
    "first": float(v[0, 0, 0]), "last": float(v[-1, -1, -1])}))
"#;
    let output = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(out.join("synth/er"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(v["version"], "0.4");
    assert_eq!(v["axes"], serde_json::json!(["z", "y", "x"]));
    assert_eq!(v["scale"], serde_json::json!([16.0, 16.0, 16.0]));
    assert_eq!(v["translation"], serde_json::json!(u.translation_nm));
    assert_eq!(v["translation"], serde_json::json!([44.0, 28.0, 20.0]));
    assert_eq!(v["shape"], serde_json::json!([48, 48, 48]));
    assert_eq!(v["chunks"], serde_json::json!([10, 12, 14]));
    assert_eq!(v["dtype"], "float32");
    let sum: f64 = want.iter().map(|&x| f64::from(x)).sum();
    assert_eq!(v["sum"].as_f64().unwrap(), sum);
    assert_eq!(v["first"].as_f64().unwrap(), f64::from(want[0]));
    assert_eq!(v["last"].as_f64().unwrap(), f64::from(*want.last().unwrap()));
}

/// Write throughput of [`Writer::write_batch`] against plain zarrs `store_chunk` calls (same
/// metadata, same chunks, same data, same thread pool) in one run. Prints both; run with
/// `cargo test -p cellmap-runtime --test it write_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: prints MB/s"]
fn write_throughput_vs_plain_zarrs() {
    use rayon::prelude::*;
    use zarrs::array::Array;
    use zarrs::filesystem::FilesystemStore;

    let tmp = tempfile::tempdir().unwrap();
    let raw = synth(tmp.path());
    for format in [2u8, 3] {
        let (mut best_writer, mut best_plain) = (f64::MAX, f64::MAX);
        let mut summary = (0usize, 0f64);
        // Alternate the two writers (plain first on even rounds) and keep each one's best time.
        for round in 0..4 {
            let out = tmp.path().join(format!("bench{format}-{round}.zarr"));
            let predict = format!(
                "  output: {}/{{class}}\n  classes: [mito]\n  zarr_format: {format}\n  region: {{ bounds_nm: [[0, 0, 0], [2048, 2048, 2048]] }}\n  tile: [64, 64, 64]\n",
                out.display()
            );
            let s = spec(tmp.path(), &raw, 8.0, &predict, "[]");
            let plan = Arc::new(PredictPlan::new(&s).unwrap());
            let tiles: Vec<usize> = (0..plan.tile_count()).collect();
            let per_tile = plan.model_channels * plan.tile_voxels();
            // Smooth, prediction-like values (compressible, not constant), different per tile.
            let data: Vec<f32> = (0..tiles.len() * per_tile)
                .map(|i| {
                    let x = i as f32;
                    1.0 / (1.0 + (-(x * 0.0013).sin() * 6.0 - (x * 0.00007).cos() * 3.0).exp())
                })
                .collect();
            let bytes = (tiles.len() * plan.tile_voxels() * 4) as f64;

            let writer = Writer::create(plan.clone()).unwrap();
            // Plain zarrs: a copy of the same group metadata, chunks stored with `store_chunk`.
            let plain = tmp.path().join(format!("plain{format}-{round}.zarr/mito"));
            let group = out.join("mito");
            let meta: &[&str] = if format == 2 {
                &[".zgroup", ".zattrs", "s0/.zarray"]
            } else {
                &["zarr.json", "s0/zarr.json"]
            };
            for f in meta {
                std::fs::create_dir_all(plain.join(f).parent().unwrap()).unwrap();
                std::fs::copy(group.join(f), plain.join(f)).unwrap();
            }
            let array = Array::open(Arc::new(FilesystemStore::new(&plain).unwrap()), "/s0").unwrap();
            let time_writer = || {
                let t0 = std::time::Instant::now();
                for (ids, chunk) in tiles.chunks(8).zip(data.chunks(8 * per_tile)) {
                    writer.write_batch(ids, chunk).unwrap();
                }
                t0.elapsed().as_secs_f64()
            };
            let time_plain = || {
                let t0 = std::time::Instant::now();
                tiles.par_iter().for_each(|&id| {
                    let t = plan.tile(id).unwrap();
                    // The written class `mito` is model channel 0.
                    let chunk = &data[id * per_tile..id * per_tile + plan.tile_voxels()];
                    array.store_chunk(&t.index, chunk).unwrap();
                });
                t0.elapsed().as_secs_f64()
            };
            let (writer_s, plain_s) = if round % 2 == 0 {
                let p = time_plain();
                (time_writer(), p)
            } else {
                let w = time_writer();
                (w, time_plain())
            };
            best_writer = best_writer.min(writer_s);
            best_plain = best_plain.min(plain_s);
            summary = (tiles.len(), bytes);
            assert!(files(&group) == files(&plain));
        }
        let (tiles, bytes) = summary;
        let (writer_s, plain_s) = (best_writer, best_plain);
        println!(
            "zarr v{format}: {} tiles of 64³ f32 ({:.0} MB): Writer {:.1} MB/s ({:.2} s), plain zarrs {:.1} MB/s ({:.2} s), ratio {:.2}",
            tiles,
            bytes / 1e6,
            bytes / 1e6 / writer_s,
            writer_s,
            bytes / 1e6 / plain_s,
            plain_s,
            plain_s / writer_s
        );
    }
}
