//! The synthetic dataset: layout, geometry, classes, determinism, refusal of non-empty folders.

use cellmap_runtime::{
    kernels::StridedDest, read::WindowRequest, read::read_window, store::ChunkCache, store::Multiscale,
    store::SourceDtype, store::count_nonzero, synth::SynthError, synth::SynthOptions, synth::SynthSize,
    synth::SynthVariant, synth::write_synthetic,
};

fn small(force: bool) -> SynthOptions {
    SynthOptions {
        seed: 7,
        size: SynthSize::Small,
        variants: vec![SynthVariant::V2, SynthVariant::V3],
        force,
        ..SynthOptions::default()
    }
}

fn read_all(level: &cellmap_runtime::store::Level) -> Vec<f32> {
    let s = level.shape_vox.map(|v| v as usize);
    let mut out = vec![0f32; s[0] * s[1] * s[2]];
    read_window(
        level,
        None,
        &WindowRequest {
            start_vox: [0; 3],
            fill: -1.0,
        },
        StridedDest::new(&mut out, 0, [(s[1] * s[2]) as isize, s[2] as isize, 1], s).unwrap(),
    )
    .unwrap();
    out
}

#[test]
fn writes_reopens_and_matches_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("synth");
    let report = write_synthetic(&dir, &small(false)).unwrap();
    assert_eq!(report.raw_shape_vox, vec![[96; 3], [48; 3], [24; 3]]);
    assert_eq!(
        report.raw_translation_nm,
        vec![[40.0, 24.0, 16.0], [44.0, 28.0, 20.0], [52.0, 36.0, 28.0]]
    );
    assert_eq!(report.crops.len(), 2);
    assert_eq!(report.crops[0].classes, ["mito", "er", "nuc", "pm"]);
    assert_eq!(report.crops[1].classes, ["mito", "er", "nuc"]);
    // crop1 starts at raw voxel [12, 20, 28]: t = t0 + 8·start.
    assert_eq!(report.crops[0].translation_nm, [136.0, 184.0, 240.0]);
    for c in &report.crops {
        for (class, fg) in c.classes.iter().zip(&c.foreground_vox) {
            assert!(*fg > 0, "{} {class} has no foreground", c.name);
        }
    }
    let csv = std::fs::read_to_string(&report.datasplit_csv).unwrap();
    assert_eq!(
        csv,
        "\"train\",\"v2/synth.zarr\",\"recon-1/em/fibsem-uint8\",\"v2/synth.zarr\",\"recon-1/labels/groundtruth/crop1/[mito,er,nuc,pm]\"\n\
         \"validate\",\"v2/synth.zarr\",\"recon-1/em/fibsem-uint8\",\"v2/synth.zarr\",\"recon-1/labels/groundtruth/crop2/[mito,er,nuc]\"\n"
    );
    assert!(
        std::fs::read_to_string(&report.spec_yaml)
            .unwrap()
            .contains("classes: [mito, er, nuc, pm]")
    );
    assert!(!dir.join("v3/synth.zarr/recon-1/labels/groundtruth/crop2/pm").exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary folder left behind");

    let mut raw_s0 = Vec::new();
    for v in ["v2", "v3"] {
        let zarr = dir.join(v).join("synth.zarr");
        let raw = Multiscale::open(zarr.join("recon-1/em/fibsem-uint8").to_str().unwrap()).unwrap();
        assert_eq!(raw.zarr_format, if v == "v2" { 2 } else { 3 });
        assert_eq!(raw.levels.len(), 3);
        for (k, l) in raw.levels.iter().enumerate() {
            assert_eq!(*l.path, format!("s{k}"));
            assert_eq!(l.scale_nm, report.raw_scale_nm[k]);
            assert_eq!(l.translation_nm, report.raw_translation_nm[k]);
            assert_eq!(l.shape_vox, report.raw_shape_vox[k]);
            assert_eq!(l.dtype, SourceDtype::U8);
        }
        if v == "v3" {
            assert!(raw.levels[0].shard_shape_vox.is_some());
        }
        raw_s0.push(read_all(&raw.levels[0]));
        for c in &report.crops {
            for (class, fg) in c.classes.iter().zip(&c.foreground_vox) {
                let loc = zarr.join(format!("recon-1/labels/groundtruth/{}/{class}", c.name));
                let ms = Multiscale::open(loc.to_str().unwrap()).unwrap();
                assert_eq!(ms.levels.len(), 2);
                assert_eq!(ms.levels[0].translation_nm, c.translation_nm);
                assert_eq!(ms.levels[1].translation_nm, c.translation_nm.map(|t| t + 4.0));
                assert_eq!(ms.levels[0].shape_vox, c.shape_vox);
                let want = if c.name == "crop1" && class == "nuc" {
                    SourceDtype::U64
                } else {
                    SourceDtype::U8
                };
                assert_eq!(ms.levels[0].dtype, want);
                assert_eq!(count_nonzero(&ms.levels[0]).unwrap(), *fg);
            }
        }
    }
    assert_eq!(raw_s0[0], raw_s0[1], "v2 and v3 raw agree");
    // Raw depends on the labels: mean raw over crop1's mito voxels is dark, over nuc light.
    let zarr = dir.join("v2/synth.zarr");
    let raw = Multiscale::open(zarr.join("recon-1/em/fibsem-uint8").to_str().unwrap()).unwrap();
    let cache = ChunkCache::new(16 << 20);
    let mut raw_crop = vec![0f32; 64 * 64 * 64];
    read_window(
        &raw.levels[0],
        Some(&cache),
        &WindowRequest {
            start_vox: [12, 20, 28],
            fill: 0.0,
        },
        StridedDest::new(&mut raw_crop, 0, [4096, 64, 1], [64; 3]).unwrap(),
    )
    .unwrap();
    let mean_where = |class: &str| {
        let ms = Multiscale::open(
            zarr.join(format!("recon-1/labels/groundtruth/crop1/{class}"))
                .to_str()
                .unwrap(),
        )
        .unwrap();
        let lab = read_all(&ms.levels[0]);
        let (sum, n) = lab
            .iter()
            .zip(&raw_crop)
            .filter(|(l, _)| **l != 0.0)
            .fold((0.0, 0.0), |(s, n), (_, r)| (s + r, n + 1.0));
        sum / n
    };
    let (mito, nuc, pm) = (mean_where("mito"), mean_where("nuc"), mean_where("pm"));
    assert!(mito < 95.0 && nuc > 175.0 && pm < 75.0, "mito {mito} nuc {nuc} pm {pm}");
}

#[test]
fn deterministic_and_refuses_non_empty_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let opts = SynthOptions {
        variants: vec![SynthVariant::V2],
        ..small(false)
    };
    let a = write_synthetic(&dir, &opts).unwrap();
    let err = write_synthetic(&dir, &opts).unwrap_err();
    assert!(matches!(&err, SynthError::NotEmpty { dir: d } if *d == dir), "{err}");
    let chunk = dir.join("v2/synth.zarr/recon-1/em/fibsem-uint8/s0/1/2/0");
    let before = std::fs::read(&chunk).unwrap();
    let b = write_synthetic(
        &dir,
        &SynthOptions {
            force: true,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(std::fs::read(&chunk).unwrap(), before, "same seed, same bytes");
    assert_eq!(a.crops, b.crops);
    let other = write_synthetic(&tmp.path().join("seed8"), &SynthOptions { seed: 8, ..opts }).unwrap();
    assert_ne!(other.crops, a.crops);
    assert!(matches!(
        write_synthetic(
            &tmp.path().join("x"),
            &SynthOptions {
                variants: vec![],
                ..small(false)
            }
        ),
        Err(SynthError::NoVariant)
    ));
}

#[test]
fn many_volumes_crops_and_classes_are_written_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("many");
    let options = SynthOptions {
        seed: 11,
        size: SynthSize::Small,
        variants: vec![SynthVariant::V2, SynthVariant::V3],
        codec: cellmap_runtime::synth::SynthCodec::Gzip,
        many: Some(cellmap_runtime::synth::SynthMany {
            volumes: 2,
            crops: 7,
            classes: 6,
            crop_vox: 32,
        }),
        ..SynthOptions::default()
    };
    let report = write_synthetic(&dir, &options).unwrap();
    // 7 crops over 2 volumes: 4 then 3, numbered across volumes; every 5th validates.
    let names: Vec<&str> = report.crops.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "vol0/crop1",
            "vol0/crop2",
            "vol0/crop3",
            "vol0/crop4",
            "vol1/crop5",
            "vol1/crop6",
            "vol1/crop7"
        ]
    );
    let splits: Vec<&str> = report.crops.iter().map(|c| c.split.as_str()).collect();
    assert_eq!(
        splits,
        ["train", "train", "train", "train", "validate", "train", "train"]
    );
    let csv = std::fs::read_to_string(dir.join("datasplit.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7);
    assert!(csv.lines().nth(4).unwrap().starts_with(
        "\"validate\",\"v2/vol1.zarr\",\"recon-1/em/fibsem-uint8\",\"v2/vol1.zarr\",\"recon-1/labels/groundtruth/crop5/[mito,er,nuc,pm,c4,c5]\""
    ));
    for variant in ["v2", "v3"] {
        for crop in &report.crops {
            let (volume, name) = crop.name.split_once('/').unwrap();
            let group = |class: &str| {
                Multiscale::open(&format!(
                    "{}/{variant}/{volume}.zarr/recon-1/labels/groundtruth/{name}/{class}",
                    dir.display()
                ))
                .unwrap()
            };
            let mut labels = Vec::new();
            for (k, class) in crop.classes.iter().enumerate() {
                let g = group(class);
                assert_eq!(g.levels[0].shape_vox, [32; 3]);
                assert_eq!(g.levels[0].translation_nm, crop.translation_nm);
                let data = read_all(&g.levels[0]);
                assert!(data.iter().all(|v| *v == 0.0 || *v == 1.0));
                assert_eq!(
                    count_nonzero(&g.levels[0]).unwrap(),
                    crop.foreground_vox[k],
                    "{variant} {name} {class}"
                );
                labels.push(data);
            }
            // c4 and c5 are parts of mito and er: never outside them.
            for (derived, material) in [(4, 0), (5, 1)] {
                assert!(labels[derived].iter().zip(&labels[material]).all(|(d, m)| *d <= *m));
            }
        }
    }
    // The spec over it plans every crop (padding on, so centres cover each crop).
    let spec = cellmap_schema::load(&dir.join("spec.yaml")).unwrap().spec;
    let planned = cellmap_runtime::plan(&spec, cellmap_runtime::PlanOptions::default()).unwrap();
    assert_eq!(planned.plan.datasets.len(), 7);
    assert!(planned.plan.excluded.is_empty());
    assert_eq!(spec.classes(), ["mito", "er", "nuc", "pm", "c4", "c5"]);
}
