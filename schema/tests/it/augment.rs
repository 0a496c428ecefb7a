//! `augment.validate`: which value transforms validation samples get.

use std::path::Path;

use cellmap_schema::{Split, ValueTransform};

use super::root;

const BASE: &str = "version: 1\nname: d\nclasses: [a, b]\narrays:\n  inputs:\n    raw: { shape: [8, 8, 8], scale: [8, 8, 8] }\n  targets:\n    t: { shape: [8, 8, 8], scale: [8, 8, 8] }\ndata:\n  datasets:\n    - { split: train, raw: /x.zarr/raw, targets: \"/x.zarr/c/{class}\" }\n";

fn parse(augment: &str) -> Result<cellmap_schema::Spec, cellmap_schema::Diagnostics> {
    cellmap_schema::parse(&format!("{BASE}{augment}"), Path::new("/specs/d.yaml")).map(|c| c.spec)
}

const NORMALIZE: ValueTransform = ValueTransform::Normalize {
    shift: 0.0,
    scale: 255.0,
};
const NOISE: ValueTransform = ValueTransform::GaussianNoise { mean: 0.0, std: 0.1 };

#[test]
fn validation_keeps_only_the_deterministic_training_transforms_by_default() {
    let s = cellmap_schema::load(&root().join("examples/minimal.yaml"))
        .unwrap()
        .spec;
    assert!(s.augment().inputs_for(Split::Validate).is_empty());
    assert_eq!(
        s.augment().targets_for(Split::Validate, "mito"),
        [ValueTransform::Binarize { threshold: 0.0 }]
    );

    let s = parse(
        "augment:\n  inputs:\n    - normalize: { scale: 255 }\n    - gaussian_noise: { std: 0.1 }\n    - random_contrast: { range: [0.8, 1.2] }\n    - random_gamma: {}\n    - gaussian_blur: { sigma: 1 }\n    - nan_to_num: {}\n  targets:\n    - gaussian_noise: {}\n    - binarize: { threshold: 0.5 }\n  per_class:\n    b: [ { binarize: { threshold: 2 } }, { random_gamma: {} } ]\n",
    )
    .unwrap();
    let a = s.augment();
    assert_eq!(a.inputs_for(Split::Train).len(), 6);
    assert_eq!(a.inputs_for(Split::Train)[1], NOISE);
    let blur = ValueTransform::GaussianBlur {
        sigma_vox: [1.0; 3],
        radius_vox: 3,
    };
    let nan_to_num = ValueTransform::NanToNum {
        nan: 0.0,
        posinf: None,
        neginf: None,
    };
    assert_eq!(a.inputs_for(Split::Validate), [NORMALIZE, blur, nan_to_num]);
    assert_eq!(a.targets_for(Split::Train, "a").len(), 2);
    assert_eq!(
        a.targets_for(Split::Validate, "a"),
        [ValueTransform::Binarize { threshold: 0.5 }]
    );
    assert_eq!(a.targets_for(Split::Train, "b").len(), 2);
    assert_eq!(
        a.targets_for(Split::Validate, "b"),
        [ValueTransform::Binarize { threshold: 2.0 }]
    );
}

#[test]
fn an_explicit_validate_list_is_used_as_given_random_transforms_included() {
    let s = parse(
        "augment:\n  inputs:\n    - normalize: { scale: 255 }\n  validate:\n    inputs:\n      - normalize: { scale: 255 }\n      - gaussian_noise: { std: 0.1 }\n    targets: []\n  per_class:\n    b: [ { binarize: { threshold: 2 } } ]\n",
    )
    .unwrap();
    let a = s.augment();
    assert_eq!(a.inputs_for(Split::Train), [NORMALIZE]);
    assert_eq!(a.inputs_for(Split::Validate), [NORMALIZE, NOISE]);
    assert_eq!(
        a.targets_for(Split::Train, "a"),
        [ValueTransform::Binarize { threshold: 0.0 }]
    );
    assert!(a.targets_for(Split::Validate, "a").is_empty());
    // A class with its own list keeps it (deterministic entries) on validation too.
    assert_eq!(
        a.targets_for(Split::Validate, "b"),
        [ValueTransform::Binarize { threshold: 2.0 }]
    );

    // Only `inputs` given: targets still default to the deterministic training ones.
    let s = parse("augment:\n  validate: { inputs: [ { gaussian_noise: {} } ] }\n").unwrap();
    assert_eq!(s.augment().inputs_for(Split::Validate), [NOISE]);
    assert!(s.augment().inputs_for(Split::Train).is_empty());
    assert_eq!(
        s.augment().targets_for(Split::Validate, "a"),
        [ValueTransform::Binarize { threshold: 0.0 }]
    );
}

#[test]
fn validate_lists_are_checked_like_the_training_ones() {
    let e = parse("augment:\n  validate:\n    inputs:\n      - normalize: { scale: 0 }\n    targets:\n      - random_gamma: { range: [2, 1] }\n").unwrap_err();
    let at: Vec<(usize, usize, &str)> = e.0.iter().map(|d| (d.line, d.column, d.pointer.as_str())).collect();
    assert_eq!(
        at,
        [
            (15, 29, "/augment/validate/inputs/0/normalize/scale"),
            (17, 32, "/augment/validate/targets/0/random_gamma/range"),
        ]
    );

    let e = parse("augment:\n  validate:\n    inputs: [ { blur: {} } ]\n    target: []\n").unwrap_err();
    let text = cellmap_schema::render_human(&e.0);
    assert!(
        text.contains("d.yaml:15:5: error: unknown key `target` (at `/augment/validate/target`)"),
        "{text}"
    );
    assert!(text.contains("did you mean `targets`?"), "{text}");
    assert!(text.contains("d.yaml:14:17: error: unknown transform `blur`"), "{text}");

    // A uint8 input cannot take validation transforms either.
    let text = BASE.replace(
        "scale: [8, 8, 8] }\n  targets",
        "scale: [8, 8, 8], dtype: uint8 }\n  targets",
    );
    let e = cellmap_schema::parse(
        &format!("{text}augment:\n  validate: {{ inputs: [ {{ normalize: {{ scale: 255 }} }} ] }}\n"),
        Path::new("/specs/d.yaml"),
    )
    .unwrap_err();
    let text = cellmap_schema::render_human(&e.0);
    assert!(text.contains("a `uint8` input cannot have value transforms"), "{text}");
    assert!(text.contains("remove `augment.validate.inputs`"), "{text}");
}

#[test]
fn is_random_names_the_transforms_that_draw() {
    let random: Vec<bool> = [
        NORMALIZE,
        ValueTransform::Binarize { threshold: 0.0 },
        ValueTransform::NanToNum {
            nan: 0.0,
            posinf: None,
            neginf: None,
        },
        ValueTransform::GaussianBlur {
            sigma_vox: [1.0; 3],
            radius_vox: 3,
        },
        NOISE,
        ValueTransform::RandomContrast { range: (0.5, 1.5) },
        ValueTransform::RandomGamma { range: (0.5, 1.5) },
    ]
    .iter()
    .map(ValueTransform::is_random)
    .collect();
    assert_eq!(random, [false, false, false, false, true, true, true]);
}
