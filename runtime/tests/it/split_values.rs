//! Value transforms per split: validation (and test) batches get `augment.validate`, by default only
//! the deterministic entries of the training lists, checked voxel for voxel against direct reads.

use std::path::Path;

use cellmap_runtime::{Loader, synth::SynthVariant};
use cellmap_schema::{Spec, Split};

use super::loader::{CLASSES, CROP1_T, CROP2_T, RAW_T0, binarize, direct, options, same, start, synth};

/// The loader tests' synthetic layout (raw 16³, labels 12³ at 8 nm, one train crop, one validation crop
/// and the same crop again as the test split) as a YAML spec with `augment`, parsed so
/// `augment.validate` is resolved by the schema.
fn spec_with(zarr: &Path, augment: &str) -> Spec {
    let root = zarr.display();
    let text = format!(
        "version: 1\nname: synth\nclasses: [mito, er, nuc, pm]\narrays:\n  inputs:\n    raw: {{ shape: [16, 16, 16], scale: [8, 8, 8] }}\n  targets:\n    labels: {{ shape: [12, 12, 12], scale: [8, 8, 8] }}\ndata:\n  datasets:\n    - {{ split: train, raw: \"{root}/recon-1/em/fibsem-uint8\", targets: \"{root}/recon-1/labels/groundtruth/crop1/{{class}}\", classes: [mito, er, nuc, pm] }}\n    - {{ split: validate, raw: \"{root}/recon-1/em/fibsem-uint8\", targets: \"{root}/recon-1/labels/groundtruth/crop2/{{class}}\", classes: [mito, er, nuc] }}\n    - {{ split: test, raw: \"{root}/recon-1/em/fibsem-uint8\", targets: \"{root}/recon-1/labels/groundtruth/crop2/{{class}}\", classes: [mito, er, nuc] }}\nsampling: {{ seed: 11, iterations_per_epoch: 8 }}\naugment:\n{augment}loader: {{ batch_size: 3, workers: 2, prefetch: 2, cache_bytes: 67108864 }}\n"
    );
    match cellmap_schema::parse(&text, &zarr.join("spec.yaml")) {
        Ok(checked) => checked.spec,
        Err(e) => panic!("{}", cellmap_schema::render_human(&e.0)),
    }
}

/// `normalize: {scale: 255}` as the copy computes it.
fn normalized(raw: &[f32]) -> Vec<f32> {
    raw.iter().map(|v| (v - 0.0) / 255.0).collect()
}

/// Per sample of the first `batches` batches of `split`: (raw as read, raw normalized from a direct
/// read, class `c` as read, class `c` binarized from a direct read).
#[allow(clippy::type_complexity)]
fn read(
    spec: &Spec,
    split: Split,
    zarr: &Path,
    batches: usize,
    c: usize,
) -> Vec<(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)> {
    let (crop, crop_t) = match split {
        Split::Train => ("crop1", CROP1_T),
        Split::Validate | Split::Test => ("crop2", CROP2_T),
    };
    let mut loader = Loader::open(spec.clone(), options(split)).unwrap();
    let mut out = Vec::new();
    for _ in 0..batches {
        let batch = loader.next_batch().unwrap().unwrap();
        for (b, m) in batch.meta().enumerate() {
            assert!(m.idx >= 0);
            let raw = batch.array(0)[b * 4096..(b + 1) * 4096].to_vec();
            let want = normalized(&direct(
                &zarr.join("recon-1/em/fibsem-uint8"),
                start(m.centre_nm, RAW_T0, 16),
                [16; 3],
            ));
            let class = batch.array(1)[(b * 4 + c) * 1728..(b * 4 + c + 1) * 1728].to_vec();
            let group = zarr.join("recon-1/labels/groundtruth").join(crop).join(CLASSES[c]);
            let labels = binarize(&direct(&group, start(m.centre_nm, crop_t, 12), [12; 3]));
            out.push((raw, want, class, labels));
        }
    }
    out
}

/// Standard deviation of `a − b`.
fn residual_std(a: &[f32], b: &[f32]) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| f64::from(x - y)).collect();
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    (d.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d.len() as f64).sqrt()
}

#[test]
fn validation_batches_get_only_the_deterministic_training_transforms() {
    let f = synth(SynthVariant::V2);
    let s = spec_with(
        &f.dir,
        "  inputs:\n    - normalize: { scale: 255 }\n    - gaussian_noise: { std: 0.5 }\n  per_class:\n    er: [ { binarize: {} }, { gaussian_noise: { std: 0.5 } } ]\n",
    );
    let er = 1;
    // Validation: exactly normalize(raw), er exactly binarized (its per-class noise is training-only).
    let validation = read(&s, Split::Validate, &f.dir, 4, er);
    assert_eq!(validation.len(), 12);
    for (raw, want, class, labels) in &validation {
        assert!(same(raw, want), "validation raw is normalize(raw), voxel for voxel");
        assert!(same(class, labels), "validation er is binarized, no noise");
    }
    // Training: the same spec adds noise to raw and to er.
    for (raw, want, class, labels) in read(&s, Split::Train, &f.dir, 2, er) {
        let std = residual_std(&raw, &want);
        assert!((0.45..0.55).contains(&std), "training raw noise std {std}");
        assert!(residual_std(&class, &labels) > 0.4, "training er has its noise");
    }
}

#[test]
fn an_explicit_validate_list_applies_its_noise_on_validation_only() {
    let f = synth(SynthVariant::V2);
    let s = spec_with(
        &f.dir,
        "  inputs:\n    - normalize: { scale: 255 }\n  validate:\n    inputs:\n      - normalize: { scale: 255 }\n      - gaussian_noise: { std: 0.5 }\n",
    );
    let first = read(&s, Split::Validate, &f.dir, 2, 0);
    for (raw, want, class, labels) in &first {
        let std = residual_std(raw, want);
        assert!((0.45..0.55).contains(&std), "validation raw noise std {std}");
        assert!(same(class, labels), "targets keep the training binarize");
    }
    let again = read(&s, Split::Validate, &f.dir, 2, 0);
    assert!(
        first.iter().zip(&again).all(|(a, b)| same(&a.0, &b.0)),
        "validation noise is keyed like every draw: the same on every pass"
    );
    for (raw, want, _, _) in read(&s, Split::Train, &f.dir, 2, 0) {
        assert!(same(&raw, &want), "training raw is exactly normalize(raw)");
    }
}

#[test]
fn issue_16_the_test_split_reads_tiles_like_validation() {
    let f = synth(SynthVariant::V2);
    // Every spatial transform certain to fire and noise on raw and er: none of it may reach a test batch.
    let s = spec_with(
        &f.dir,
        "  spatial:\n    mirror: { z: 1, y: 1, x: 1 }\n    rotate: { z: [30, 60] }\n  inputs:\n    - normalize: { scale: 255 }\n    - gaussian_noise: { std: 0.5 }\n  per_class:\n    er: [ { binarize: {} }, { gaussian_noise: { std: 0.5 } } ]\n",
    );
    let planned = cellmap_runtime::plan(&s, cellmap_runtime::PlanOptions::default()).unwrap();
    let tests: Vec<_> = planned.plan.datasets_of(Split::Test).collect();
    assert_eq!(tests.len(), 1, "the plan lists the test dataset");
    assert_eq!(tests[0].tiles.len(), 125, "crop2 in 12³ tiles");

    let er = 1;
    let test = read(&s, Split::Test, &f.dir, 4, er);
    assert_eq!(test.len(), 12);
    for (raw, want, class, labels) in &test {
        assert!(same(raw, want), "test raw is normalize(raw) of the unaugmented window");
        assert!(same(class, labels), "test er is binarized, no noise, no rotation");
    }
    // The same tiles, in the same order, as the validation split over the same crop; one pass.
    let centres = |split| {
        let mut loader = Loader::open(s.clone(), options(split)).unwrap();
        assert_eq!(loader.batches_per_epoch(), 42, "125 tiles in batches of 3");
        let mut out = Vec::new();
        while let Some(batch) = loader.next_batch() {
            out.extend(
                batch
                    .unwrap()
                    .meta()
                    .filter(|m| m.idx >= 0)
                    .map(|m| (m.idx, m.centre_nm)),
            );
        }
        out
    };
    let tiles = centres(Split::Test);
    assert_eq!(tiles.len(), 125);
    assert_eq!(tiles, centres(Split::Validate));
}
