//! Where samples come from: foreground bias, class counts, resampled levels, rank shards, exclusions.

use super::*;
use crate::common::sample_request;

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
            spatial: false,
            ..sample_request(0, centre, 1, 0)
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

#[test]
fn crops_of_one_raw_volume_share_its_opened_levels_and_chunk_cache_entries() {
    let f = synth(SynthVariant::V2);
    let s = spec(&f.dir);
    let planned = plan(&s, PlanOptions::default()).unwrap();
    let (a, b) = (&planned.sources[0], &planned.sources[1]);
    assert_eq!(a.spec.raw, b.spec.raw);
    // One opened raw group: the same level ids, so a raw chunk is cached once for both crops.
    let ids = |d: &cellmap_runtime::sources::DatasetSources| d.raw.levels.iter().map(|l| l.id).collect::<Vec<_>>();
    assert_eq!(ids(a), ids(b));
    // Opening a plan made earlier shares them too.
    let reopened = Planned::open(&s, planned.plan.clone()).unwrap();
    assert_eq!(ids(&reopened.sources[0]), ids(&reopened.sources[1]));
    // Label groups stay distinct per crop.
    let class_id = |d: &cellmap_runtime::sources::DatasetSources| match &d.classes[0] {
        cellmap_runtime::sources::ClassSource::Annotated(m) => m.levels[0].id,
        other => panic!("{}", other.kind()),
    };
    assert_ne!(class_id(a), class_id(b));
}
