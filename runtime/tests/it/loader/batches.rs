//! Batches against direct reads: training, validation tiles, resume, mirror, padding, packed labels.

use super::*;
use crate::common::sample_request;

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
    let request = sample_request(0, centre, 1, 0);
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
        spatial: false,
        ..sample_request(0, centre, 1, 0)
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
            let request = sample_request(dataset, grid.centre(index), 5, index[0]);
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
fn a_raw_only_spec_reads_raw_everywhere_in_the_volume() {
    let f = synth(SynthVariant::V2);
    let s = spec_with(&f.dir, |d| {
        let o = d.as_object_mut().unwrap();
        o.remove("classes");
        o["arrays"].as_object_mut().unwrap().remove("targets");
        o.remove("augment");
        for ds in o["data"]["datasets"].as_array_mut().unwrap() {
            let ds = ds.as_object_mut().unwrap();
            ds.remove("targets");
            ds.remove("classes");
        }
    });
    assert!(s.classes().is_empty());
    let planned = plan(&s, PlanOptions::default()).unwrap();
    // Centres span the whole raw volume (96³ voxels), not a labelled crop.
    assert_eq!(planned.plan.datasets[0].grid.shape, [81, 81, 81]);
    let mut loader = Loader::open(s, options(Split::Train)).unwrap();
    assert_eq!(loader.plan().batch.arrays.len(), 1);
    let raw_group = f.dir.join("recon-1/em/fibsem-uint8");
    for _ in 0..3 {
        let batch = loader.next_batch().unwrap().unwrap();
        assert_eq!(batch.arrays(), 1);
        for (b, m) in batch.meta().enumerate() {
            let raw = &batch.array(0)[b * 4096..(b + 1) * 4096];
            assert!(same(raw, &direct(&raw_group, start(m.centre_nm, RAW_T0, 16), [16; 3])));
        }
    }
}
