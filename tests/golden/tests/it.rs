//! The checked-in generated loader of `tests/specs/synth.yaml` yields the same batches, bit for
//! bit, as the generic runtime loader driven by the same spec.

use std::path::Path;

use cellmap_golden::synth;
use cellmap_runtime::cellmap_schema::Split;
use cellmap_runtime::{
    DistInfo, Loader, LoaderOptions, synth::SynthOptions, synth::SynthSize, synth::SynthVariant, synth::write_synthetic,
};

fn options(split: Split) -> LoaderOptions {
    let mut o = if split == Split::Train {
        LoaderOptions::train()
    } else {
        LoaderOptions::validate()
    }
    .unwrap();
    o.dist = DistInfo::single();
    o
}

/// The golden spec, pointed at a fresh synthetic dataset in `dir`.
fn spec_in(dir: &Path) -> cellmap_runtime::cellmap_schema::Spec {
    spec_in_edited(dir, |text| text)
}

/// The golden spec with its text edited by `edit`, pointed at a fresh synthetic dataset in `dir`.
fn spec_in_edited(dir: &Path, edit: impl FnOnce(String) -> String) -> cellmap_runtime::cellmap_schema::Spec {
    let synth_options = SynthOptions {
        seed: 3,
        size: SynthSize::Small,
        variants: vec![SynthVariant::V2],
        ..SynthOptions::default()
    };
    write_synthetic(&dir.join("data"), &synth_options).unwrap();
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/synth.yaml")).unwrap();
    let path = dir.join("synth.yaml");
    std::fs::write(&path, &text).unwrap();
    let text = edit(text);
    cellmap_schema::parse(&text, &path).unwrap().spec
}

#[test]
fn generated_constants_describe_the_spec() {
    let spec = synth::spec();
    assert_eq!(synth::CLASSES, ["mito", "er", "nuc", "pm"]);
    assert_eq!(synth::class::PM, 3);
    assert_eq!(synth::shapes::RAW, [1, 24, 24, 24]);
    assert_eq!(synth::shapes::LABELS, [4, 16, 16, 16]);
    assert_eq!(synth::BATCH_BYTES, 3 * (24 * 24 * 24 + 4 * 16 * 16 * 16) * 4);
    assert_eq!(cellmap_runtime::batch_layout(&spec).batch_bytes(), synth::BATCH_BYTES);
    assert_eq!(synth::RING_BYTES, 2 * synth::BATCH_BYTES);
}

#[test]
fn the_embedded_spec_equals_the_spec_the_crate_was_compiled_from() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(tmp.path());
    // The golden file names the checkout as `$WORKSPACE`; the spec and its data here live in `tmp`.
    let embedded = synth::spec()
        .to_normalized()
        .unwrap()
        .replace("$WORKSPACE/codegen/../tests/specs", &tmp.path().display().to_string());
    assert_eq!(embedded, spec.to_normalized().unwrap());
    assert_eq!(synth::SPEC_NORMALIZED, synth::spec().to_normalized().unwrap());
    assert_eq!(synth::spec().classes(), synth::CLASSES);
}

#[test]
fn the_embedded_plan_equals_the_runtime_plan_of_the_same_data() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(tmp.path());
    let planned = cellmap_runtime::plan(&spec, cellmap_runtime::PlanOptions::default()).unwrap();
    // The golden file names the checkout as `$WORKSPACE`; the data here lives in `tmp`.
    let embedded =
        format!("{:?}", synth::plan()).replace("$WORKSPACE/codegen/../tests/specs", &tmp.path().display().to_string());
    assert_eq!(embedded, format!("{:?}", planned.plan));
    assert_eq!(synth::plan().batch_bytes, synth::BATCH_BYTES);
    assert_eq!(synth::plan().datasets.len(), 2);
}

#[test]
fn generated_batches_equal_generic_batches_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(tmp.path());
    for split in [Split::Train, Split::Validate] {
        let mut generic = Loader::open(spec.clone(), options(split)).unwrap();
        let mut generated = synth::Loader::with_spec(spec.clone(), options(split)).unwrap();
        assert_eq!(generic.batches_per_epoch(), generated.batches_per_epoch());
        for _ in 0..6 {
            let (Some(a), Some(b)) = (generic.next_batch(), generated.next_batch()) else {
                break;
            };
            let (a, b) = (a.unwrap(), b.unwrap());
            let raw = b.raw();
            assert_eq!(raw.shape(), [3, 1, 24, 24, 24]);
            let labels = b.labels();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a.array(0)), bits(raw.as_slice()), "{split:?} raw");
            assert_eq!(bits(a.array(1)), bits(labels.as_slice()), "{split:?} labels");
            assert_eq!(a.meta().collect::<Vec<_>>(), b.meta().collect::<Vec<_>>());
            let first = labels.channel(0, synth::class::NUC)[0];
            assert_eq!(first.to_bits(), labels.get(0, synth::class::NUC, 0, 0, 0).to_bits());
        }
    }
}

#[test]
fn a_spec_with_other_arrays_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in_edited(tmp.path(), |text| {
        text.replace("labels: { shape: [16, 16, 16]", "labels: { shape: [8, 8, 8]")
    });
    let err = synth::Loader::with_spec(spec, options(Split::Train))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("does not match the compiled loader") && err.contains("[8, 8, 8]"),
        "{err}"
    );
}

/// The raw-only golden spec (`tests/specs/raw_only.yaml`), pointed at a fresh synthetic dataset.
fn raw_only_spec_in(dir: &Path) -> cellmap_runtime::cellmap_schema::Spec {
    spec_in(dir); // writes the data next to it
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/raw_only.yaml")).unwrap();
    let path = dir.join("raw_only.yaml");
    std::fs::write(&path, &text).unwrap();
    cellmap_schema::parse(&text, &path).unwrap().spec
}

#[test]
fn a_raw_only_crate_has_no_classes_and_equals_the_generic_loader() {
    use cellmap_golden::raw_only;
    assert!(raw_only::CLASSES.is_empty());
    assert_eq!(raw_only::shapes::RAW, [1, 16, 16, 16]);
    assert_eq!(raw_only::shapes::RAW_COARSE, [1, 8, 8, 8]);
    assert_eq!(raw_only::BATCH_BYTES, 2 * (16 * 16 * 16 + 8 * 8 * 8) * 4);
    let tmp = tempfile::tempdir().unwrap();
    let spec = raw_only_spec_in(tmp.path());
    assert!(spec.classes().is_empty() && spec.targets().is_empty());
    for split in [Split::Train, Split::Validate] {
        let mut generic = Loader::open(spec.clone(), options(split)).unwrap();
        let mut generated = raw_only::Loader::with_spec(spec.clone(), options(split)).unwrap();
        for _ in 0..4 {
            let (Some(a), Some(b)) = (generic.next_batch(), generated.next_batch()) else {
                break;
            };
            let (a, b) = (a.unwrap(), b.unwrap());
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(a.arrays(), 2);
            assert_eq!(bits(a.array(0)), bits(b.raw().as_slice()), "{split:?} raw");
            assert_eq!(
                bits(a.array(1)),
                bits(b.raw_coarse().as_slice()),
                "{split:?} raw_coarse"
            );
            // Normalized to [0, 1] plus noise in training; exactly [0, 1] in validation.
            if split == Split::Validate {
                assert!(a.array(0).iter().all(|v| (0.0..=1.0).contains(v)));
            }
        }
    }
}

/// Issue #16: a 2D spec's crate has `[channels, rows, columns]` shapes and `[B, C, Y, X]` arrays.
#[test]
fn a_2d_crate_has_4d_shapes() {
    use cellmap_golden::n_2d;
    assert_eq!(n_2d::shapes::RAW, [1, 256, 256]);
    assert_eq!(n_2d::shapes::LABELS, [2, 256, 256]);
    let data = vec![0.0f32; 2 * 256 * 256 * 3];
    let labels = cellmap_runtime::BatchArray2d::<2, 256, 256>::new(&data);
    assert_eq!(labels.shape(), [3, 2, 256, 256]);
    assert_eq!(labels.channel(2, 1).len(), 256 * 256);
    let spec = n_2d::spec();
    assert!(spec.is_2d());
    assert_eq!(
        spec.sampling().slice_axis,
        cellmap_runtime::cellmap_schema::SliceAxis::Any
    );
}
