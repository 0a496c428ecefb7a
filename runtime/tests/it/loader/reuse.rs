//! Reuse without change: leading value transforms in the copy, owned batches, earlier plans, recycled epochs.

use super::*;
use crate::common::sample_request;

/// One sample of train dataset 0 read without spatial augmentation (value transforms applied),
/// centred where `centre` says once the spec is planned; every array of the batch layout.
fn read_unaugmented(s: Spec, centre: impl FnOnce(&Planned) -> [f64; 3]) -> Vec<Vec<f32>> {
    let s = Arc::new(s);
    let planned = Arc::new(plan(&s, PlanOptions::default()).unwrap());
    let reader = Reader::new(Arc::clone(&s), Arc::clone(&planned), None);
    let request = SampleRequest {
        spatial: false,
        ..sample_request(0, centre(&planned), 1, 0)
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
