//! The plan and the loader on the synthetic dataset, checked voxel for voxel against direct
//! zarrs reads of the expected windows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cellmap_runtime::{
    ClassPlan, Loader, LoaderOptions, NextOwned, PlanOptions, Planned, Reader, SampleKey, SampleRequest, SynthOptions,
    SynthSize, SynthVariant, plan, write_synthetic,
};
use cellmap_schema::{Spec, Split};
use serde_json::{Value, json};
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

pub(crate) const RAW_T0: [f64; 3] = [40.0, 24.0, 16.0];
pub(crate) const CROP1_T: [f64; 3] = [136.0, 184.0, 240.0];
pub(crate) const CROP2_T: [f64; 3] = [280.0, 232.0, 176.0];
pub(crate) const CLASSES: [&str; 4] = ["mito", "er", "nuc", "pm"];

pub(crate) struct Fixture {
    pub(crate) _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
}

pub(crate) fn synth(variant: SynthVariant) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("synth");
    write_synthetic(
        &dir,
        &SynthOptions {
            seed: 3,
            size: SynthSize::Small,
            variants: vec![variant],
            force: false,
        },
    )
    .unwrap();
    let sub = match variant {
        SynthVariant::V2 => "v2",
        SynthVariant::V3 => "v3",
    };
    Fixture {
        dir: dir.join(sub).join("synth.zarr"),
        _tmp: tmp,
    }
}

/// The fixture spec's document: JSON, which is YAML, so tests edit it (see [`spec_with`]) and the
/// result is validated like any spec a user writes.
pub(crate) fn spec_doc(zarr: &Path) -> Value {
    let root = zarr.display().to_string();
    let dataset = |split: &str, crop: &str, classes: &[&str]| {
        json!({
            "split": split,
            "raw": format!("{root}/recon-1/em/fibsem-uint8"),
            "targets": format!("{root}/recon-1/labels/groundtruth/{crop}/{{class}}"),
            "classes": classes,
        })
    };
    json!({
        "version": 1,
        "name": "synth",
        "classes": CLASSES,
        "arrays": {
            "inputs": {"raw": {"shape": [16, 16, 16], "scale": [8, 8, 8]}},
            "targets": {"labels": {"shape": [12, 12, 12], "scale": [8, 8, 8]}},
        },
        "data": {"datasets": [
            dataset("train", "crop1", &CLASSES),
            dataset("validate", "crop2", &["mito", "er", "nuc"]),
        ]},
        "sampling": {"seed": 11, "iterations_per_epoch": 8, "weighting": "uniform", "pad": false},
        "augment": {"targets": [{"binarize": {"threshold": 0}}]},
        "loader": {
            "batch_size": 3,
            "workers": 2,
            "prefetch": 2,
            "device": "cpu",
            "pin_memory": false,
            "cache_bytes": 64 << 20,
            "on_error": "fail",
        },
    })
}

/// A spec document validated (as the YAML text `test.yaml`) into a spec.
pub(crate) fn spec_of(doc: &Value) -> Spec {
    let text = serde_json::to_string_pretty(doc).unwrap();
    match cellmap_schema::parse(&text, Path::new("test.yaml")) {
        Ok(checked) => checked.spec,
        Err(e) => panic!("{}\n{text}", cellmap_schema::render_human(&e.0)),
    }
}

/// The fixture spec over the synthetic dataset at `zarr`.
pub(crate) fn spec(zarr: &Path) -> Spec {
    spec_of(&spec_doc(zarr))
}

/// The fixture spec with `edit` applied to its document first.
pub(crate) fn spec_with(zarr: &Path, edit: impl FnOnce(&mut Value)) -> Spec {
    let mut doc = spec_doc(zarr);
    edit(&mut doc);
    spec_of(&doc)
}

pub(crate) fn options(split: Split) -> LoaderOptions {
    let mut o = match split {
        Split::Train => LoaderOptions::train(),
        Split::Validate => LoaderOptions::validate(),
        Split::Test => LoaderOptions::test(),
    }
    .unwrap();
    assert_eq!(o.split, split);
    o.dist = cellmap_runtime::DistInfo::single();
    o
}

/// A direct zarrs read of `shape` voxels from `start` of `group/s0`, as f32; NaN outside the array.
pub(crate) fn direct(group: &Path, start: [i64; 3], shape: [usize; 3]) -> Vec<f32> {
    direct_level(group, "s0", start, shape)
}

/// A direct zarrs read of `shape` voxels from `start` of `group/level`, as f32; NaN outside the array.
fn direct_level(group: &Path, level: &str, start: [i64; 3], shape: [usize; 3]) -> Vec<f32> {
    let store = Arc::new(FilesystemStore::new(group).unwrap());
    let array = Array::open(store, &format!("/{level}")).unwrap();
    let dims = array.shape().to_vec();
    let mut out = vec![f32::NAN; shape.iter().product()];
    let lo: Vec<u64> = (0..3).map(|a| start[a].clamp(0, dims[a] as i64) as u64).collect();
    let hi: Vec<u64> = (0..3)
        .map(|a| (start[a] + shape[a] as i64).clamp(0, dims[a] as i64) as u64)
        .collect();
    if (0..3).any(|a| hi[a] <= lo[a]) {
        return out;
    }
    let ranges: Vec<std::ops::Range<u64>> = (0..3).map(|a| lo[a]..hi[a]).collect();
    let subset = ArraySubset::new_with_ranges(&ranges);
    // Labels are uint8 except `nuc` of crop1 (uint64 instance ids).
    let values: Vec<f64> = match array.retrieve_array_subset::<Vec<u8>>(&subset) {
        Ok(v) => v.into_iter().map(f64::from).collect(),
        Err(_) => array
            .retrieve_array_subset::<Vec<u64>>(&subset)
            .unwrap()
            .into_iter()
            .map(|v| v as f64)
            .collect(),
    };
    let e: Vec<usize> = (0..3).map(|a| (hi[a] - lo[a]) as usize).collect();
    for z in 0..e[0] {
        for y in 0..e[1] {
            for x in 0..e[2] {
                let oz = (lo[0] as i64 - start[0]) as usize + z;
                let oy = (lo[1] as i64 - start[1]) as usize + y;
                let ox = (lo[2] as i64 - start[2]) as usize + x;
                out[(oz * shape[1] + oy) * shape[2] + ox] = values[(z * e[1] + y) * e[2] + x] as f32;
            }
        }
    }
    out
}

/// The crop window start of the documented geometry: `floor((c − t)/s − (N − 1)/2 + 0.5)`.
pub(crate) fn start(centre: [f64; 3], t: [f64; 3], n: usize) -> [i64; 3] {
    std::array::from_fn(|a| ((centre[a] - t[a]) / 8.0 - (n as f64 - 1.0) / 2.0 + 0.5).floor() as i64)
}

pub(crate) fn binarize(v: &[f32]) -> Vec<f32> {
    v.iter()
        .map(|x| {
            if x.is_nan() {
                f32::NAN
            } else if *x > 0.0 {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

pub(crate) fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

#[test]
fn plan_has_the_documented_grid_tiles_and_bytes() {
    let f = synth(SynthVariant::V2);
    let s = spec(&f.dir);
    let planned = plan(&s, PlanOptions { count_classes: true }).unwrap();
    let p = &planned.plan;
    // raw 16³ + labels 4 × 12³, batch 3, float32.
    assert_eq!(p.batch_bytes, 3 * (16 * 16 * 16 + 4 * 12 * 12 * 12) * 4);
    assert_eq!(p.ring_bytes, 2 * p.batch_bytes);
    assert_eq!(p.datasets.len(), 2);
    let train = &p.datasets[0];
    // 64 label voxels per axis, 12-voxel crops: 53 centres, the first at t + 5·8 (voxel 5 ↔ window 0..12).
    assert_eq!(train.grid.shape, [53, 53, 53]);
    assert_eq!(
        train.grid.origin_nm,
        [CROP1_T[0] + 40.0, CROP1_T[1] + 40.0, CROP1_T[2] + 40.0]
    );
    assert_eq!(
        train.bbox_nm.lo_nm,
        [CROP1_T[0] - 4.0, CROP1_T[1] - 4.0, CROP1_T[2] - 4.0]
    );
    assert_eq!(
        train.bbox_nm.hi_nm,
        [CROP1_T[0] + 508.0, CROP1_T[1] + 508.0, CROP1_T[2] + 508.0]
    );
    let val = &p.datasets[1];
    // Without padding 5 whole 12-voxel tiles fit in 64 voxels per axis.
    assert_eq!(val.tiles.shape, [5, 5, 5]);
    assert_eq!(
        val.tiles.origin_nm,
        [CROP2_T[0] + 44.0, CROP2_T[1] + 44.0, CROP2_T[2] + 44.0]
    );
    assert_eq!(val.tiles.step_nm, [96.0; 3]);
    assert!(
        matches!(val.targets[0][3], ClassPlan::Unknown),
        "crop2 does not annotate pm"
    );
    let counts = train.class_counts.as_ref().unwrap();
    assert!(
        counts
            .iter()
            .all(|c| c.total == 64 * 64 * 64 && c.foreground > 0 && c.foreground < c.total)
    );
}

#[test]
fn training_batches_equal_direct_reads_voxel_for_voxel() {
    for variant in [SynthVariant::V2, SynthVariant::V3] {
        let f = synth(variant);
        let s = spec(&f.dir);
        let mut loader = Loader::open(s, options(Split::Train)).unwrap();
        assert_eq!(loader.ring_bytes(), loader.plan().ring_bytes);
        let raw_group = f.dir.join("recon-1/em/fibsem-uint8");
        for _ in 0..3 {
            let batch = loader.next_batch().unwrap().unwrap();
            let metas: Vec<_> = batch.meta().collect();
            assert_eq!(metas.len(), 3);
            for (b, m) in metas.iter().enumerate() {
                assert_eq!(m.dataset, 0);
                let raw = &batch.array(0)[b * 4096..(b + 1) * 4096];
                assert!(
                    same(raw, &direct(&raw_group, start(m.centre_nm, RAW_T0, 16), [16; 3])),
                    "{variant:?} raw"
                );
                for (c, class) in CLASSES.iter().enumerate() {
                    let group = f.dir.join("recon-1/labels/groundtruth/crop1").join(class);
                    let want = binarize(&direct(&group, start(m.centre_nm, CROP1_T, 12), [12; 3]));
                    let got = &batch.array(1)[(b * 4 + c) * 1728..(b * 4 + c + 1) * 1728];
                    assert!(same(got, &want), "{variant:?} class {class}");
                    assert!(
                        got.iter().all(|v| *v == 0.0 || *v == 1.0),
                        "no NaN inside the crop without padding"
                    );
                }
            }
        }
    }
}

#[test]
fn validation_tiles_cover_the_crop_and_mark_unknown_classes() {
    let f = synth(SynthVariant::V2);
    // pm is mutually exclusive with nuc: in crop2 (no pm) it is 0 where nuc is 1, NaN elsewhere.
    let s = spec_with(&f.dir, |d| d["class_relations"] = json!({"nuc": ["pm"], "pm": ["nuc"]}));
    let mut loader = Loader::open(s, options(Split::Validate)).unwrap();
    assert_eq!(loader.batches_per_epoch(), 42, "125 tiles in batches of 3");
    let mut seen = Vec::new();
    let mut inferred_zeros = 0;
    while let Some(batch) = loader.next_batch() {
        let batch = batch.unwrap();
        for (b, m) in batch.meta().enumerate() {
            if m.idx < 0 {
                assert!(
                    batch.array(1)[(b * 4) * 1728..(b * 4 + 4) * 1728]
                        .iter()
                        .all(|v| v.is_nan())
                );
                continue;
            }
            let w = start(m.centre_nm, CROP2_T, 12);
            seen.push(w);
            let nuc = binarize(&direct(&f.dir.join("recon-1/labels/groundtruth/crop2/nuc"), w, [12; 3]));
            let pm = &batch.array(1)[(b * 4 + 3) * 1728..(b * 4 + 4) * 1728];
            for (p, n) in pm.iter().zip(&nuc) {
                if *n == 1.0 {
                    assert_eq!(*p, 0.0);
                    inferred_zeros += 1;
                } else {
                    assert!(p.is_nan());
                }
            }
        }
    }
    assert_eq!(seen.len(), 125);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 125, "tiles are distinct");
    let starts: BTreeSet<i64> = seen.iter().map(|w| w[2]).collect();
    assert_eq!(
        starts,
        BTreeSet::from([0, 12, 24, 36, 48]),
        "tiles step by their size from the crop corner"
    );
    assert!(inferred_zeros > 0);
}

#[test]
fn batches_are_identical_for_any_worker_count_and_resume_exactly() {
    let f = synth(SynthVariant::V2);
    let s = spec_with(&f.dir, |d| {
        d["augment"]["spatial"] = json!({
            "mirror": {"z": 0.5, "y": 0.5, "x": 0.5},
            "transpose": ["y", "x"],
            "rotate": {"z": [-30, 30]},
        });
        d["augment"]["inputs"] = json!([{"gaussian_noise": {"mean": 0, "std": 2}}]);
    });
    let run = |workers: usize, epoch: u64, step: u64, n: usize| -> Vec<Vec<u32>> {
        let mut o = options(Split::Train);
        o.workers = Some(workers);
        o.epoch = epoch;
        o.step = step;
        let mut loader = Loader::open(s.clone(), o).unwrap();
        (0..n)
            .map(|_| {
                let b = loader.next_batch().unwrap().unwrap();
                (0..2)
                    .flat_map(|i| b.array(i).iter().map(|v| v.to_bits()).collect::<Vec<_>>())
                    .collect()
            })
            .collect()
    };
    let one = run(1, 0, 0, 5);
    let two = run(2, 0, 0, 5);
    assert_eq!(one, two, "bit-identical with 1 and 2 workers");
    // iterations 8, batch 3: 2 batches per epoch, so batch 3 is epoch 1, step 1.
    let resumed = run(2, 1, 1, 2);
    assert_eq!(resumed, one[3..5].to_vec());
    assert_ne!(one[0], one[1]);
}

#[test]
fn a_validation_pass_resumes_at_its_step_whatever_the_epoch() {
    let f = synth(SynthVariant::V2);
    let s = spec(&f.dir);
    let run = |epoch: u64, step: u64| -> Vec<(Vec<i64>, Vec<u32>)> {
        let mut o = options(Split::Validate);
        o.epoch = epoch;
        o.step = step;
        let mut loader = Loader::open(s.clone(), o).unwrap();
        let mut out = Vec::new();
        while let Some(b) = loader.next_batch() {
            let b = b.unwrap();
            let idx = b.meta().map(|m| m.idx).collect();
            out.push((idx, b.array(0).iter().map(|v| v.to_bits()).collect()));
        }
        out
    };
    let pass = run(0, 0);
    let idx = |batches: &[(Vec<i64>, Vec<u32>)]| batches.iter().map(|b| b.0.clone()).collect::<Vec<_>>();
    assert!(pass.len() >= 2, "the pass needs two batches for this test");
    let from1 = run(0, 1);
    assert!(from1 == pass[1..], "resuming at step 1: {:?}", idx(&from1));
    // Epoch 3 is the same pass: it resumes at step 1 too, with real tiles (not padding).
    let later = run(3, 1);
    assert!(later == pass[1..], "epoch 3, step 1: {:?}", idx(&later));
    assert!(later[0].0.iter().all(|&i| i >= 0));
}

#[test]
fn mirror_folds_into_the_read() {
    let f = synth(SynthVariant::V2);
    let s = spec_with(&f.dir, |d| d["augment"]["spatial"] = json!({"mirror": {"x": 1}}));
    let s = Arc::new(s);
    let planned = Arc::new(plan(&s, PlanOptions::default()).unwrap());
    let reader = Reader::new(Arc::clone(&s), Arc::clone(&planned), None);
    let centre = planned.plan.datasets[0].grid.centre([7, 9, 11]);
    let mut out: Vec<Vec<f32>> = planned
        .plan
        .batch
        .arrays
        .iter()
        .map(|a| vec![0.0; a.sample_len()])
        .collect();
    let request = SampleRequest {
        dataset: 0,
        centre_nm: centre,
        key: SampleKey {
            seed: 1,
            epoch: 0,
            rank: 0,
            index: 0,
        },
        spatial: true,
        values: true,
    };
    let info = reader.read(&mut reader.scratch(), &request, &mut out).unwrap();
    assert_eq!(info.gathered, 0, "a mirror is a strided copy");
    let want = direct(
        &f.dir.join("recon-1/em/fibsem-uint8"),
        start(centre, RAW_T0, 16),
        [16; 3],
    );
    for z in 0..16 {
        for y in 0..16 {
            for x in 0..16 {
                assert_eq!(out[0][(z * 16 + y) * 16 + x], want[(z * 16 + y) * 16 + (15 - x)]);
            }
        }
    }
}

#[test]
fn padding_fills_outside_the_data() {
    let f = synth(SynthVariant::V2);
    let s = spec_with(&f.dir, |d| d["sampling"]["pad"] = json!(true));
    let s = Arc::new(s);
    let planned = Arc::new(plan(&s, PlanOptions::default()).unwrap());
    // With padding any centre whose crop touches the box is valid: 64 + 11 centres per axis.
    assert_eq!(planned.plan.datasets[0].grid.shape, [75, 75, 75]);
    assert_eq!(planned.plan.datasets[1].tiles.shape, [6, 6, 6]);
    let reader = Reader::new(Arc::clone(&s), Arc::clone(&planned), None);
    let centre = planned.plan.datasets[0].grid.centre([0, 0, 0]);
    let mut out: Vec<Vec<f32>> = planned
        .plan
        .batch
        .arrays
        .iter()
        .map(|a| vec![0.0; a.sample_len()])
        .collect();
    let request = SampleRequest {
        dataset: 0,
        centre_nm: centre,
        key: SampleKey {
            seed: 1,
            epoch: 0,
            rank: 0,
            index: 0,
        },
        spatial: false,
        values: true,
    };
    reader.read(&mut reader.scratch(), &request, &mut out).unwrap();
    let w = start(centre, CROP1_T, 12);
    assert_eq!(
        w,
        [-11, -11, -11],
        "only the last voxel of the crop is inside the label array"
    );
    let labels = &out[1][..1728];
    let want = binarize(&direct(
        &f.dir.join("recon-1/labels/groundtruth/crop1/mito"),
        w,
        [12; 3],
    ));
    assert!(same(labels, &want));
    assert_eq!(labels.iter().filter(|v| !v.is_nan()).count(), 1);
}

#[test]
fn packed_label_gather_equals_per_class_reads_under_rotation_and_resampling() {
    let f = synth(SynthVariant::V2);
    for (voxel_nm, rotate) in [(8.0, Some((-40.0, 40.0))), (12.0, None), (8.0, None)] {
        let s = spec_with(&f.dir, |d| {
            d["arrays"]["targets"]["labels"]["scale"] = json!([voxel_nm, voxel_nm, voxel_nm]);
            let rotate = rotate.map(|(lo, hi)| json!({"z": [lo, hi], "x": [lo, hi]}));
            d["augment"]["spatial"] = json!({
                "mirror": {"z": 0.5, "y": 0.5, "x": 0.5},
                "rotate": rotate.unwrap_or_else(|| json!({})),
            });
        });
        let s = Arc::new(s);
        let planned = Arc::new(plan(&s, PlanOptions::default()).unwrap());
        let packed = Reader::new(Arc::clone(&s), Arc::clone(&planned), None);
        let single = Reader::new(Arc::clone(&s), Arc::clone(&planned), None).without_packed_labels();
        for (dataset, index) in [(0usize, [3u64, 20, 40]), (1, [0, 0, 0]), (0, [52, 52, 52])] {
            let grid = &planned.plan.datasets[dataset].grid;
            let index = index.map(|i| i.min(grid.shape[0] - 1));
            let request = SampleRequest {
                dataset,
                centre_nm: grid.centre(index),
                key: SampleKey {
                    seed: 5,
                    epoch: 0,
                    rank: 0,
                    index: index[0],
                },
                spatial: true,
                values: true,
            };
            let mut a: Vec<Vec<f32>> = planned
                .plan
                .batch
                .arrays
                .iter()
                .map(|l| vec![0.0; l.sample_len()])
                .collect();
            let mut b = a.clone();
            let info = packed.read(&mut packed.scratch(), &request, &mut a).unwrap();
            single.read(&mut single.scratch(), &request, &mut b).unwrap();
            assert!(
                same(&a[1], &b[1]),
                "voxel {voxel_nm} rotate {rotate:?} dataset {dataset}"
            );
            // Raw (at 8 nm) is interpolated only under rotation; the labels, whenever they need
            // interpolation, in one packed gather for all classes.
            match (rotate.is_some(), voxel_nm != 8.0) {
                (true, _) => assert_eq!((info.strided, info.gathered), (0, 2)),
                (false, true) => assert_eq!((info.strided, info.gathered), (1, 1)),
                (false, false) => assert_eq!((info.strided, info.gathered), (if dataset == 0 { 5 } else { 4 }, 0)),
            }
        }
    }
}

#[test]
fn without_value_transforms_rotated_labels_keep_their_stored_values() {
    // crop1's `nuc` holds instance ids 1 and 2; the packed gather binarizes, so it must not
    // stand in for a read without value transforms (`sample --raw-values`).
    let f = synth(SynthVariant::V2);
    let s = spec_with(&f.dir, |d| d["augment"]["spatial"] = json!({"rotate": {"z": [20, 20]}}));
    let s = Arc::new(s);
    let planned = Arc::new(plan(&s, PlanOptions::default()).unwrap());
    let packed = Reader::new(Arc::clone(&s), Arc::clone(&planned), None);
    let single = Reader::new(Arc::clone(&s), Arc::clone(&planned), None).without_packed_labels();
    let grid = &planned.plan.datasets[0].grid;
    let mut found = 0;
    for k in (0..grid.shape[0]).step_by(4) {
        for j in (0..grid.shape[1]).step_by(4) {
            for i in (0..grid.shape[2]).step_by(4) {
                let request = SampleRequest {
                    dataset: 0,
                    centre_nm: grid.centre([k, j, i]),
                    key: SampleKey {
                        seed: 5,
                        epoch: 0,
                        rank: 0,
                        index: 0,
                    },
                    spatial: true,
                    values: false,
                };
                let mut a: Vec<Vec<f32>> = planned
                    .plan
                    .batch
                    .arrays
                    .iter()
                    .map(|l| vec![0.0; l.sample_len()])
                    .collect();
                let mut b = a.clone();
                single.read(&mut single.scratch(), &request, &mut b).unwrap();
                if !b[1][2 * 1728..3 * 1728].contains(&2.0) {
                    continue;
                }
                packed.read(&mut packed.scratch(), &request, &mut a).unwrap();
                assert!(same(&a[1], &b[1]), "centre {:?}", request.centre_nm);
                found += 1;
            }
        }
    }
    assert!(found > 0, "some crop shows nucleus 2");
}

#[test]
fn foreground_bias_one_puts_every_centre_on_the_class() {
    let f = synth(SynthVariant::V2);
    let s = spec_with(&f.dir, |d| {
        d["sampling"]["foreground"] = json!({"class": "mito", "fraction": 1});
        d["sampling"]["iterations_per_epoch"] = json!(30);
    });
    let mut loader = Loader::open(s, options(Split::Train)).unwrap();
    let mito = f.dir.join("recon-1/labels/groundtruth/crop1/mito");
    let mut centres = BTreeSet::new();
    for _ in 0..10 {
        let batch = loader.next_batch().unwrap().unwrap();
        for m in batch.meta() {
            let v: [i64; 3] = std::array::from_fn(|a| ((m.centre_nm[a] - CROP1_T[a]) / 8.0).round() as i64);
            assert_eq!(
                direct(&mito, v, [1, 1, 1]),
                vec![1.0],
                "centre {:?} is on mito",
                m.centre_nm
            );
            centres.insert(v);
        }
    }
    assert!(centres.len() > 10, "centres vary: {}", centres.len());
}

#[test]
fn class_counts_come_from_metadata_when_present() {
    let f = synth(SynthVariant::V2);
    let attrs = f.dir.join("recon-1/labels/groundtruth/crop1/er/s0/.zattrs");
    let mut value: serde_json::Value = std::fs::read_to_string(&attrs)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::json!({}));
    value["cellmap"] = serde_json::json!({ "annotation": { "complement_counts": { "absent": 262_000 } } });
    std::fs::write(&attrs, value.to_string()).unwrap();
    let planned = plan(&spec(&f.dir), PlanOptions { count_classes: true }).unwrap();
    let counts = planned.plan.datasets[0].class_counts.as_ref().unwrap();
    assert_eq!(counts[1].foreground, 64 * 64 * 64 - 262_000, "er from metadata");
    assert_eq!(counts[1].total, 64 * 64 * 64);
    // Without metadata the count is read from the data: equal to a direct count.
    let mito = direct(&f.dir.join("recon-1/labels/groundtruth/crop1/mito"), [0; 3], [64; 3]);
    assert_eq!(counts[0].foreground, mito.iter().filter(|v| **v > 0.0).count() as u64);
}

#[test]
fn resampled_arrays_equal_nearest_reads_of_the_chosen_level() {
    let f = synth(SynthVariant::V2);
    // Raw at 16 nm reads s1 exactly; labels at 4 nm are finer than s0 (8 nm): nearest from s0.
    let s = spec_with(&f.dir, |d| {
        d["arrays"]["inputs"]["raw"] = json!({"shape": [6, 6, 6], "scale": [16, 16, 16]});
        d["arrays"]["targets"]["labels"] = json!({"shape": [10, 10, 10], "scale": [4, 4, 4]});
    });
    let s = Arc::new(s);
    let planned = Arc::new(plan(&s, PlanOptions::default()).unwrap());
    let d = &planned.plan.datasets[0];
    assert_eq!((d.inputs[0].path.as_str(), d.inputs[0].resampled), ("s1", false));
    let ClassPlan::Annotated(labels) = &d.targets[0][0] else {
        panic!("mito is annotated")
    };
    assert_eq!((labels.path.as_str(), labels.resampled), ("s0", true));
    assert!(
        planned.plan.warnings.iter().any(|w| w.contains("finest level")),
        "{:?}",
        planned.plan.warnings
    );
    let reader = Reader::new(Arc::clone(&s), Arc::clone(&planned), None);
    for index in [[0u64, 0, 0], [5, 17, 3], [d.grid.shape[0] - 1, 0, d.grid.shape[2] - 1]] {
        let centre = d.grid.centre(index);
        let mut out: Vec<Vec<f32>> = planned
            .plan
            .batch
            .arrays
            .iter()
            .map(|a| vec![0.0; a.sample_len()])
            .collect();
        let request = SampleRequest {
            dataset: 0,
            centre_nm: centre,
            key: SampleKey {
                seed: 1,
                epoch: 0,
                rank: 0,
                index: 0,
            },
            spatial: false,
            values: true,
        };
        reader.read(&mut reader.scratch(), &request, &mut out).unwrap();
        // Raw: the integer window of s1 (t = t0 + 4 nm, s = 16 nm).
        let t1 = [RAW_T0[0] + 4.0, RAW_T0[1] + 4.0, RAW_T0[2] + 4.0];
        let start1: [i64; 3] = std::array::from_fn(|a| ((centre[a] - t1[a]) / 16.0 - 2.5 + 0.5).floor() as i64);
        assert!(same(
            &out[0],
            &direct_level(&f.dir.join("recon-1/em/fibsem-uint8"), "s1", start1, [6; 3])
        ));
        // Labels: output voxel j samples c + (j − 4.5)·4 nm; nearest s0 voxel floor((x − t)/8 + 0.5).
        let nearest =
            |a: usize, j: usize| ((centre[a] + (j as f64 - 4.5) * 4.0 - CROP1_T[a]) / 8.0 + 0.5).floor() as i64;
        let lo: [i64; 3] = std::array::from_fn(|a| nearest(a, 0));
        let window = binarize(&direct(
            &f.dir.join("recon-1/labels/groundtruth/crop1/mito"),
            lo,
            [6; 3],
        ));
        for z in 0..10 {
            for y in 0..10 {
                for x in 0..10 {
                    let (wz, wy, wx) = (
                        (nearest(0, z) - lo[0]) as usize,
                        (nearest(1, y) - lo[1]) as usize,
                        (nearest(2, x) - lo[2]) as usize,
                    );
                    let want = window[(wz * 6 + wy) * 6 + wx];
                    let got = out[1][(z * 10 + y) * 10 + x];
                    assert!(
                        got.to_bits() == want.to_bits(),
                        "{index:?} voxel {z},{y},{x}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn validation_tiles_of_four_ranks_are_disjoint_and_complete() {
    let f = synth(SynthVariant::V2);
    let s = spec(&f.dir);
    let mut all = Vec::new();
    for rank in 0..4 {
        let mut o = options(Split::Validate);
        o.dist = cellmap_runtime::DistInfo {
            rank,
            world_size: 4,
            local_rank: rank,
        };
        let mut loader = Loader::open(s.clone(), o).unwrap();
        let mut mine = Vec::new();
        while let Some(batch) = loader.next_batch() {
            mine.extend(
                batch
                    .unwrap()
                    .meta()
                    .filter(|m| m.idx >= 0)
                    .map(|m| m.centre_nm.map(f64::to_bits)),
            );
        }
        assert!(
            mine.len() == 31 || mine.len() == 32,
            "125 tiles over 4 ranks: {}",
            mine.len()
        );
        all.extend(mine);
    }
    let distinct: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!((all.len(), distinct.len()), (125, 125));
}

#[test]
fn a_split_whose_datasets_are_all_excluded_is_an_error_naming_each_reason() {
    let f = synth(SynthVariant::V2);
    let s = spec_with(&f.dir, |d| {
        d["arrays"]["targets"]["labels"]["shape"] = json!([80, 12, 12])
    });
    let err = plan(&s, PlanOptions::default()).err().unwrap().to_string();
    assert!(err.contains("no train dataset can produce a sample"), "{err}");
    assert!(
        err.contains(&s.datasets()[0].origin) && err.contains("80-voxel crop") && err.contains("sampling.pad"),
        "{err}"
    );
}

/// One sample of train dataset 0 read without spatial augmentation (value transforms applied),
/// centred where `centre` says once the spec is planned; every array of the batch layout.
fn read_unaugmented(s: Spec, centre: impl FnOnce(&Planned) -> [f64; 3]) -> Vec<Vec<f32>> {
    let s = Arc::new(s);
    let planned = Arc::new(plan(&s, PlanOptions::default()).unwrap());
    let reader = Reader::new(Arc::clone(&s), Arc::clone(&planned), None);
    let request = SampleRequest {
        dataset: 0,
        centre_nm: centre(&planned),
        key: SampleKey {
            seed: 1,
            epoch: 0,
            rank: 0,
            index: 0,
        },
        spatial: false,
        values: true,
    };
    let mut out: Vec<Vec<f32>> = planned
        .plan
        .batch
        .arrays
        .iter()
        .map(|a| vec![0.0; a.sample_len()])
        .collect();
    reader.read(&mut reader.scratch(), &request, &mut out).unwrap();
    out
}

#[test]
fn a_leading_nan_to_num_is_applied_by_the_copy_to_data_and_padding() {
    let f = synth(SynthVariant::V2);
    let s = spec_with(&f.dir, |d| {
        d["augment"]["inputs"] = json!([{"nan_to_num": {"nan": 7}}, {"normalize": {"shift": 0, "scale": 2}}]);
        d["sampling"]["pad_value"] = json!({"inputs": "nan"});
    });
    // Centred on raw voxel 0: the window reaches 8 voxels past the volume's lower faces (NaN fill).
    let centre = RAW_T0;
    let out = read_unaugmented(s, |_| centre);
    let raw = direct(
        &f.dir.join("recon-1/em/fibsem-uint8"),
        start(centre, RAW_T0, 16),
        [16; 3],
    );
    assert!(raw.iter().any(|v| v.is_nan()) && raw.iter().any(|v| !v.is_nan()));
    let want: Vec<f32> = raw.iter().map(|&v| if v.is_nan() { 7.0 } else { v } / 2.0).collect();
    assert!(same(&out[0], &want));
}

#[test]
fn a_leading_normalize_is_applied_by_the_copy_bit_for_bit() {
    let f = synth(SynthVariant::V3);
    let s = spec_with(&f.dir, |d| {
        d["augment"]["inputs"] = json!([{"normalize": {"shift": 10, "scale": 255}}, {"binarize": {"threshold": 0.25}}]);
    });
    let mut centre = [0.0; 3];
    let out = read_unaugmented(s, |planned| {
        centre = planned.plan.datasets[0].grid.centre([4, 8, 12]);
        centre
    });
    let raw = direct(
        &f.dir.join("recon-1/em/fibsem-uint8"),
        start(centre, RAW_T0, 16),
        [16; 3],
    );
    let want: Vec<f32> = raw
        .iter()
        .map(|v| (v - 10.0) / 255.0)
        .map(|v| if f64::from(v) > 0.25 { 1.0 } else { 0.0 })
        .collect();
    assert!(same(&out[0], &want));
    assert!(want.contains(&1.0) && want.contains(&0.0));
}

#[test]
fn owned_batches_equal_borrowed_ones_and_end_a_validation_pass() {
    let f = synth(SynthVariant::V2);
    let s = spec(&f.dir);
    for split in [Split::Train, Split::Validate] {
        let mut borrowed = Loader::open(s.clone(), options(split)).unwrap();
        let mut owned = Loader::open(s.clone(), options(split)).unwrap();
        let passes = borrowed.batches_per_epoch();
        let n = if split == Split::Train { 3 } else { passes };
        let mut kept = Vec::new();
        for k in 0..n {
            let want = borrowed.next_batch().unwrap().unwrap();
            let got = loop {
                match owned.next_owned(std::time::Duration::from_secs(10)) {
                    NextOwned::Batch(b) => break b,
                    NextOwned::Pending { slot_held: false } => continue,
                    NextOwned::Pending { slot_held: true } => panic!("a slot is held"),
                    NextOwned::Failed(e) => panic!("{e}"),
                    NextOwned::End => panic!("ended after {k} batches"),
                }
            };
            assert_eq!((got.epoch(), got.step()), (want.epoch(), want.step()));
            let key = |m: cellmap_runtime::SampleMeta| (m.idx, m.dataset, m.centre_nm.map(f64::to_bits));
            assert_eq!(
                got.meta().map(key).collect::<Vec<_>>(),
                want.meta().map(key).collect::<Vec<_>>()
            );
            for i in 0..2 {
                assert!(same(got.array(i), want.array(i)), "{split:?} batch {k} array {i}");
            }
            assert_eq!(got.layout().arrays.len(), 2);
            // Keep the last owned batch alive past its loader.
            if k + 1 == n {
                kept.push((got, want.array(0).to_vec()));
            }
        }
        if split == Split::Validate {
            assert!(matches!(
                owned.next_owned(std::time::Duration::from_secs(10)),
                NextOwned::End
            ));
        }
        drop(owned);
        drop(borrowed);
        let (last, data) = kept.pop().unwrap();
        assert_eq!(last.step(), (n - 1) % passes);
        assert!(same(last.array(0), &data));
    }
}

#[test]
fn a_loader_over_an_earlier_plan_equals_one_that_plans_and_a_stale_plan_is_refused() {
    let f = synth(SynthVariant::V2);
    let edit = |d: &mut Value| {
        d["sampling"]["weighting"] = json!("voxel_weighted");
        d["augment"]["spatial"] = json!({"rotate": {"z": [-30, 30]}});
    };
    let s = spec_with(&f.dir, edit);
    let earlier = plan(&s, PlanOptions::default()).unwrap().plan;
    assert!(
        earlier.datasets[0].class_counts.is_some(),
        "voxel weighting plans class counts"
    );
    let bits = |loader: &mut Loader| -> Vec<Vec<u32>> {
        (0..3)
            .map(|_| {
                let b = loader.next_batch().unwrap().unwrap();
                (0..2).flat_map(|i| b.array(i).iter().map(|v| v.to_bits())).collect()
            })
            .collect()
    };
    for split in [Split::Train, Split::Validate] {
        let mut planning = Loader::open(s.clone(), options(split)).unwrap();
        let mut planned = Loader::open_planned(s.clone(), earlier.clone(), options(split)).unwrap();
        assert_eq!(planned.plan(), planning.plan());
        assert_eq!(bits(&mut planned), bits(&mut planning), "{split:?}");
    }

    // A level whose shape changed since the plan was made.
    let mut changed = earlier.clone();
    let ClassPlan::Annotated(level) = &mut changed.datasets[0].targets[0][1] else {
        panic!("er is annotated in crop1")
    };
    level.shape_vox[0] += 1;
    let err = Loader::open_planned(s.clone(), changed, options(Split::Train))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!(
            "{}: the data changed since this plan was made",
            s.datasets()[0].origin
        )),
        "{err}"
    );
    assert!(err.contains("crop1/er"), "{err}");
    assert!(err.contains("cellmap-compile build"), "{err}");

    // A class annotated now but inferred in the plan.
    let mut changed = earlier.clone();
    changed.datasets[0].targets[0][3] = ClassPlan::Inferred(vec![2]);
    let err = Loader::open_planned(s.clone(), changed, options(Split::Train))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("class `pm` is annotated in the data, inferred from [\"nuc\"] in the plan"),
        "{err}"
    );

    // A spec with another batch size than the plan's.
    let other = spec_with(&f.dir, |d| {
        edit(d);
        d["loader"]["batch_size"] = json!(4);
    });
    let err = Loader::open_planned(other, earlier, options(Split::Train))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("batch size"), "{err}");
}

#[test]
fn class_balanced_epochs_drawn_into_recycled_memory_equal_a_fresh_start() {
    let f = synth(SynthVariant::V2);
    let s = spec_with(&f.dir, |d| {
        d["sampling"]["weighting"] = json!("class_balanced");
        d["sampling"]["iterations_per_epoch"] = json!(6); // batch 3: 2 batches per epoch
        // Two training crops with different classes, so the epoch's crop sequence matters.
        let mut second = d["data"]["datasets"][1].clone();
        second["split"] = json!("train");
        second["classes"] = json!(["nuc"]);
        d["data"]["datasets"].as_array_mut().unwrap().push(second);
    });
    let metas = |loader: &mut Loader, n: usize| -> Vec<Vec<cellmap_runtime::SampleMeta>> {
        (0..n)
            .map(|_| loader.next_batch().unwrap().unwrap().meta().collect())
            .collect()
    };
    // Epochs 0–4 from the start: epochs 2, 3 and 4 reuse the memory of older ones.
    let mut running = Loader::open(s.clone(), options(Split::Train)).unwrap();
    let all = metas(&mut running, 10);
    for epoch in [2u64, 4] {
        let mut o = options(Split::Train);
        o.epoch = epoch;
        let mut fresh = Loader::open(s.clone(), o).unwrap();
        let at = (epoch * 2) as usize;
        assert_eq!(metas(&mut fresh, 2), all[at..at + 2].to_vec(), "epoch {epoch}");
    }
    assert_ne!(all[0..2], all[2..4], "epochs draw different samples");
    let crops: BTreeSet<i32> = all.iter().flatten().map(|m| m.dataset).collect();
    assert_eq!(crops.len(), 2, "both crops are drawn: {crops:?}");
}
