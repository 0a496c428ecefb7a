//! The plan and the loader on the synthetic dataset, checked voxel for voxel against direct
//! zarrs reads of the expected windows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cellmap_runtime::{
    ClassPlan, Loader, LoaderOptions, PlanOptions, Reader, SampleKey, SampleRequest, SynthOptions, SynthSize,
    SynthVariant, plan, write_synthetic,
};
use cellmap_schema::{
    ArraySpec, Augment, DatasetSpec, Device, ErrorPolicy, Interpolation, LoaderSpec, OutputDtype, PadPolicy, Sampling,
    Spatial, Spec, Split, TargetTemplate, ValueTransform, Weighting,
};
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

const RAW_T0: [f64; 3] = [40.0, 24.0, 16.0];
const CROP1_T: [f64; 3] = [136.0, 184.0, 240.0];
const CROP2_T: [f64; 3] = [280.0, 232.0, 176.0];
const CLASSES: [&str; 4] = ["mito", "er", "nuc", "pm"];

pub(crate) struct Fixture {
    _tmp: tempfile::TempDir,
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

fn array(name: &str, n: usize, interpolation: Interpolation) -> ArraySpec {
    ArraySpec {
        name: name.into(),
        shape_vox: [n; 3],
        voxel_size_nm: [8.0; 3],
        interpolation,
        dtype: OutputDtype::Float32,
    }
}

pub(crate) fn spec(zarr: &Path) -> Spec {
    let root = zarr.display().to_string();
    let dataset = |split, index, crop: &str, annotated: &[&str]| DatasetSpec {
        split,
        index,
        raw: format!("{root}/recon-1/em/fibsem-uint8"),
        targets: Some(TargetTemplate {
            template: format!("{root}/recon-1/labels/groundtruth/{crop}/{{class}}"),
            annotated: Some(annotated.iter().map(|s| s.to_string()).collect()),
        }),
        origin: format!("test.yaml:{index}:1"),
    };
    Spec {
        version: 1,
        name: "synth".into(),
        source: PathBuf::from("test.yaml"),
        classes: CLASSES.iter().map(|s| s.to_string()).collect(),
        class_relations: BTreeMap::new(),
        inputs: vec![array("raw", 16, Interpolation::Linear)],
        targets: vec![array("labels", 12, Interpolation::Nearest)],
        datasets: vec![
            dataset(Split::Train, 0, "crop1", &CLASSES),
            dataset(Split::Validate, 0, "crop2", &["mito", "er", "nuc"]),
        ],
        sampling: Sampling {
            seed: 11,
            iterations_per_epoch: 8,
            weighting: Weighting::Uniform,
            foreground: None,
            pad: PadPolicy {
                train: false,
                validate: false,
            },
            pad_value_inputs: 0.0,
            pad_value_targets: f32::NAN,
            validation_tiling: true,
        },
        augment: Augment {
            spatial: Spatial::default(),
            inputs: vec![],
            targets: vec![ValueTransform::Binarize { threshold: 0.0 }],
            per_class: BTreeMap::new(),
        },
        loader: LoaderSpec {
            batch_size: 3,
            workers: 2,
            prefetch: 2,
            device: Device::Cpu,
            pin_memory: false,
            cache_bytes: 64 << 20,
            on_error: ErrorPolicy::Fail,
        },
    }
}

pub(crate) fn options(split: Split) -> LoaderOptions {
    let mut o = if split == Split::Train {
        LoaderOptions::train()
    } else {
        LoaderOptions::validate()
    }
    .unwrap();
    o.dist = cellmap_runtime::DistInfo::single();
    o
}

/// A direct zarrs read of `shape` voxels from `start` of `group/s0`, as f32; NaN outside the array.
fn direct(group: &Path, start: [i64; 3], shape: [usize; 3]) -> Vec<f32> {
    let store = Arc::new(FilesystemStore::new(group).unwrap());
    let array = Array::open(store, "/s0").unwrap();
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
fn start(centre: [f64; 3], t: [f64; 3], n: usize) -> [i64; 3] {
    std::array::from_fn(|a| ((centre[a] - t[a]) / 8.0 - (n as f64 - 1.0) / 2.0 + 0.5).floor() as i64)
}

fn binarize(v: &[f32]) -> Vec<f32> {
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

fn same(a: &[f32], b: &[f32]) -> bool {
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
    let mut s = spec(&f.dir);
    // pm is mutually exclusive with nuc: in crop2 (no pm) it is 0 where nuc is 1, NaN elsewhere.
    s.class_relations = BTreeMap::from([
        ("nuc".to_owned(), BTreeSet::from(["pm".to_owned()])),
        ("pm".to_owned(), BTreeSet::from(["nuc".to_owned()])),
    ]);
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
    let mut s = spec(&f.dir);
    s.augment.spatial = Spatial {
        mirror: [0.5; 3],
        transpose: vec![cellmap_schema::Axis::Y, cellmap_schema::Axis::X],
        rotate: [Some((-30.0, 30.0)), None, None],
        elastic: None,
    };
    s.augment.inputs = vec![ValueTransform::GaussianNoise { mean: 0.0, std: 2.0 }];
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
fn mirror_folds_into_the_read() {
    let f = synth(SynthVariant::V2);
    let mut s = spec(&f.dir);
    s.augment.spatial.mirror = [0.0, 0.0, 1.0];
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
    let mut s = spec(&f.dir);
    s.sampling.pad = PadPolicy {
        train: true,
        validate: true,
    };
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
