//! Intensity per dataset (issue #16): `normalize` from the source dtype's range (`scale: dtype`), and a
//! dataset's own `normalize` (inline, or the datasplit CSV's `shift,scale` columns) in place of the
//! spec's for its inputs.

use std::path::Path;

use cellmap_schema::{Spec, Split, ValueTransform};

const ARRAYS: &str = "version: 1\nname: demo\nclasses: [mito]\narrays:\n  inputs: {raw: {shape: [8, 8, 8], scale: [8, 8, 8]}}\n  targets: {labels: {shape: [8, 8, 8], scale: [8, 8, 8]}}\n";

fn parse(rest: &str) -> Spec {
    let text = format!("{ARRAYS}{rest}");
    cellmap_schema::parse(&text, Path::new("/d/spec.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .spec
}

fn normalize(shift: f64, scale: f64) -> ValueTransform {
    ValueTransform::Normalize { shift, scale }
}

const NOISE: ValueTransform = ValueTransform::GaussianNoise { mean: 0.0, std: 0.1 };

#[test]
fn issue_16_scale_dtype_forms() {
    let spec = parse(
        "data: {datasets: [{split: train, raw: a.zarr, targets: 'a/{class}'}]}\naugment:\n  inputs: [{normalize: dtype}, {normalize: {scale: dtype}}, {normalize: {shift: 10, scale: dtype}}, {normalize: {scale: 255}}]\n",
    );
    assert_eq!(
        spec.augment().inputs,
        [
            ValueTransform::NormalizeDtype { shift: None },
            ValueTransform::NormalizeDtype { shift: None },
            ValueTransform::NormalizeDtype { shift: Some(10.0) },
            normalize(0.0, 255.0),
        ]
    );
    // Deterministic: validation keeps them.
    assert_eq!(spec.augment().validate.inputs, spec.augment().inputs);
    let text = spec.to_normalized().unwrap();
    assert_eq!(Spec::from_normalized(&text).unwrap().to_normalized().unwrap(), text);
}

#[test]
fn issue_16_inline_dataset_normalize_replaces_the_specs_for_inputs_only() {
    let spec = parse(
        "data:\n  datasets:\n    - {split: train, raw: a.zarr, targets: 'a/{class}'}\n    - {split: train, raw: b.zarr, targets: 'b/{class}', normalize: {shift: 100, scale: 1000}}\n    - {split: validate, raw: c.zarr, targets: 'c/{class}', normalize: dtype}\naugment:\n  inputs: [{normalize: {scale: 255}}, {gaussian_noise: {std: 0.1}}]\n",
    );
    let d = spec.datasets();
    assert_eq!(d[0].normalize, None);
    assert_eq!(d[1].normalize, Some(normalize(100.0, 1000.0)));
    assert_eq!(d[2].normalize, Some(ValueTransform::NormalizeDtype { shift: None }));
    let a = spec.augment();
    assert_eq!(a.inputs_of(&d[0]).as_ref(), [normalize(0.0, 255.0), NOISE]);
    assert_eq!(a.inputs_of(&d[1]).as_ref(), [normalize(100.0, 1000.0), NOISE]);
    assert_eq!(d[2].split, Split::Validate);
    assert_eq!(
        a.inputs_of(&d[2]).as_ref(),
        [ValueTransform::NormalizeDtype { shift: None }]
    );
    // Targets keep the spec's transforms.
    assert_eq!(
        a.targets_for(Split::Train, "mito"),
        [ValueTransform::Binarize { threshold: 0.0 }]
    );
    let text = spec.to_normalized().unwrap();
    assert_eq!(Spec::from_normalized(&text).unwrap().to_normalized().unwrap(), text);
}

#[test]
fn issue_16_dataset_normalize_runs_first_without_a_spec_normalize() {
    let spec = parse(
        "data: {datasets: [{split: train, raw: a.zarr, targets: 'a/{class}', normalize: {scale: dtype}}]}\naugment:\n  inputs: [{gaussian_noise: {std: 0.1}}]\n",
    );
    let d = &spec.datasets()[0];
    assert_eq!(
        spec.augment().inputs_of(d).as_ref(),
        [ValueTransform::NormalizeDtype { shift: None }, NOISE]
    );
}

#[test]
fn issue_16_datasplit_shift_and_scale_columns() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "train,a.zarr,raw,a.zarr,crop1/[mito],0,dtype\ntrain,b.zarr,raw,b.zarr,crop2/[mito],10,1000\ntrain,c.zarr,raw,c.zarr,crop3/[mito],,\ntrain,d.zarr/raw,d.zarr/crop4/[mito]\nvalidate,,/e.zarr/raw,,/e.zarr/crop5/[mito],-5,\n";
    std::fs::write(dir.path().join("split.csv"), csv).unwrap();
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, format!("{ARRAYS}data: {{csv: split.csv}}\n")).unwrap();
    let spec = cellmap_schema::load(&path).unwrap_or_else(|e| panic!("{e}")).spec;
    let n: Vec<_> = spec.datasets().iter().map(|d| d.normalize.clone()).collect();
    assert_eq!(
        n,
        [
            Some(ValueTransform::NormalizeDtype { shift: Some(0.0) }),
            Some(normalize(10.0, 1000.0)),
            None,
            None,
            Some(normalize(-5.0, 1.0)),
        ]
    );
    assert_eq!(spec.datasets()[4].raw, "/e.zarr/raw");
}

#[test]
fn issue_16_datasplit_bad_scale_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("split.csv"),
        "train,a.zarr,raw,a.zarr,crop1/[mito],0,65k\n",
    )
    .unwrap();
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, format!("{ARRAYS}data: {{csv: split.csv}}\n")).unwrap();
    let errors = cellmap_schema::load(&path).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.file, dir.path().join("split.csv"));
    assert_eq!((e.line, e.column), (1, 40));
    assert_eq!(
        e.message,
        "column 7 (`scale`) is `65k`, not a non-zero finite number or `dtype`"
    );
}
