//! Every example in `examples/` is valid, and resolves to the expected spec.

use cellmap_schema::{Device, Interpolation, Split, ValueTransform};

use super::root;

#[test]
fn all_examples_are_valid_and_declare_the_schema() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("# yaml-language-server: $schema=../schema/cellmap.schema.json\n"),
                "{}",
                path.display()
            );
            if let Err(e) = cellmap_schema::load(&path) {
                panic!("{e}");
            }
            n += 1;
        }
    }
    assert_eq!(n, 3);
}

#[test]
fn minimal_takes_defaults_and_reads_the_csv() {
    let checked = cellmap_schema::load(&root().join("examples/minimal.yaml")).unwrap();
    assert!(checked.warnings.is_empty());
    let s = checked.spec;
    assert_eq!(s.name(), "demo");
    assert_eq!(s.classes(), ["mito", "er", "nuc", "pm"]);
    assert_eq!(s.inputs()[0].shape_vox, [128, 128, 128]);
    assert_eq!(s.inputs()[0].interpolation, Interpolation::Linear);
    assert_eq!(s.targets()[0].interpolation, Interpolation::Nearest);
    assert_eq!(s.sampling().seed, 42);
    assert_eq!(s.sampling().iterations_per_epoch, 1000);
    assert!(!s.sampling().pad.train && !s.sampling().pad.validate);
    assert_eq!(s.sampling().pad_value_inputs, 0.0);
    assert!(s.sampling().pad_value_targets.is_nan());
    assert!(s.sampling().validation_tiling);
    assert_eq!(s.augment().targets, [ValueTransform::Binarize { threshold: 0.0 }]);
    assert!(s.augment().inputs.is_empty());
    assert_eq!(s.loader().batch_size, 8);
    assert_eq!((s.loader().workers, s.loader().prefetch), (2, 4));
    assert_eq!(s.loader().device, Device::Cpu);
    assert!(!s.loader().pin_memory);
    assert_eq!(s.loader().cache_bytes, 1 << 30);
    let splits: Vec<(Split, usize)> = s.datasets().iter().map(|d| (d.split, d.index)).collect();
    assert_eq!(splits, [(Split::Train, 0), (Split::Train, 1), (Split::Validate, 0)]);
    let d = &s.datasets()[1];
    let examples = std::path::absolute(root().join("examples")).unwrap();
    assert_eq!(
        d.raw,
        examples
            .join("data/jrc_hela-2/jrc_hela-2.zarr/recon-1/em/fibsem-uint8")
            .display()
            .to_string()
    );
    let t = d.targets.as_ref().unwrap();
    assert_eq!(t.annotated.as_deref(), Some(&["mito".to_owned(), "pm".to_owned()][..]));
    assert!(t.template.ends_with("crop156/{class}"));
    assert!(d.origin.ends_with("examples/datasplit.csv:3"), "{}", d.origin);
}

#[test]
fn full_and_2d_resolve() {
    let s = cellmap_schema::load(&root().join("examples/full.yaml")).unwrap().spec;
    assert_eq!(
        s.inputs().iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["raw", "raw_16nm"]
    );
    assert_eq!(s.loader().device, Device::Cuda(0));
    assert_eq!(s.augment().spatial.rotate[0], Some((-180.0, 180.0)));
    assert_eq!(
        s.augment().targets_of("er"),
        [ValueTransform::Binarize { threshold: 2.0 }]
    );
    assert_eq!(
        s.augment().inputs_for(Split::Validate),
        [
            ValueTransform::Normalize {
                shift: 0.0,
                scale: 255.0
            },
            ValueTransform::NanToNum {
                nan: 0.0,
                posinf: Some(1.0),
                neginf: Some(0.0)
            }
        ]
    );
    assert_eq!(
        s.augment().targets_for(Split::Validate, "er"),
        [ValueTransform::Binarize { threshold: 2.0 }]
    );
    assert_eq!(
        s.augment().inputs[4],
        ValueTransform::GaussianBlur {
            sigma_vox: [0.5, 1.0, 1.0],
            radius_vox: 3
        }
    );
    assert_eq!(
        s.datasets()[1].targets.as_ref().unwrap().annotated.as_deref(),
        Some(&["mito".to_owned(), "nuc".to_owned()][..])
    );
    assert_eq!(s.datasets()[2].split, Split::Validate);
    assert_eq!(s.datasets()[2].targets.as_ref().unwrap().annotated, None);
    assert_eq!(
        s.datasets()[2].normalize,
        Some(ValueTransform::NormalizeDtype { shift: Some(0.0) })
    );
    assert_eq!(
        s.augment().inputs_of(&s.datasets()[2])[0],
        ValueTransform::NormalizeDtype { shift: Some(0.0) }
    );
    assert!(
        s.datasets()[0].origin.ends_with("examples/full.yaml:15:7"),
        "{}",
        s.datasets()[0].origin
    );

    let s = cellmap_schema::load(&root().join("examples/2d.yaml")).unwrap().spec;
    assert_eq!(s.inputs()[0].shape_vox, [1, 256, 256]);
    assert_eq!(s.inputs()[0].voxel_size_nm, [4.0, 4.0, 4.0]);
    assert_eq!(
        s.augment().inputs[1],
        ValueTransform::GaussianBlur {
            sigma_vox: [0.0, 1.0, 1.0],
            radius_vox: 3
        }
    );
    assert!(s.sampling().pad.train && s.sampling().pad.validate);
}

#[test]
fn relations_are_made_symmetric_with_a_warning() {
    let text = std::fs::read_to_string(root().join("examples/minimal.yaml"))
        .unwrap()
        .replace("arrays:", "class_relations: { mito: [er, nuc] }\narrays:");
    let checked = cellmap_schema::parse(&text, &root().join("examples/x.yaml")).unwrap();
    let r = checked.spec.class_relations();
    assert!(r["er"].contains("mito") && r["nuc"].contains("mito") && r["mito"].len() == 2);
    assert_eq!(checked.warnings.len(), 2);
    assert_eq!((checked.warnings[0].line, checked.warnings[0].column), (5, 26));
    assert_eq!(
        checked.warnings[0].message,
        "`mito` excludes `er` but not the reverse; added `er: [mito]`"
    );
}

#[test]
fn whole_floats_count_as_integers() {
    let text = std::fs::read_to_string(root().join("examples/minimal.yaml"))
        .unwrap()
        .replace("batch_size: 8", "batch_size: 8.0")
        .replace(
            "shape: [128, 128, 128], scale: [8, 8, 8] }\n  targets",
            "shape: [64.0, 128, 128], scale: [8, 8, 8] }\n  targets",
        );
    let s = cellmap_schema::parse(&text, &root().join("examples/x.yaml"))
        .unwrap()
        .spec;
    assert_eq!(s.loader().batch_size, 8);
    assert_eq!(s.inputs()[0].shape_vox, [64, 128, 128]);
}

#[test]
fn full_resolves_its_predict_section() {
    use cellmap_schema::{PredictDtype, PredictRegion};
    let s = cellmap_schema::load(&root().join("examples/full.yaml")).unwrap().spec;
    let p = s.predict().expect("full.yaml has a predict section");
    let examples = std::path::absolute(root().join("examples")).unwrap();
    assert_eq!(
        p.raw,
        [examples
            .join("data/cos7.zarr/recon-1/em/fibsem-uint8")
            .display()
            .to_string()]
    );
    assert_eq!(p.inputs, [0]);
    assert_eq!(s.inputs()[0].name, "raw");
    assert_eq!(
        p.output,
        examples
            .join("predictions.zarr/{dataset}/{class}")
            .display()
            .to_string()
    );
    assert_eq!(p.model_classes, ["mito", "er", "nuc", "pm"]);
    assert_eq!(p.classes, [0, 2]);
    assert_eq!(p.class_names().collect::<Vec<_>>(), ["mito", "nuc"]);
    assert_eq!(p.voxel_size_nm, [8.0; 3]);
    assert_eq!(p.dtype, PredictDtype::Uint8);
    assert_eq!(p.zarr_format, 3);
    assert_eq!(
        p.region,
        PredictRegion::Bounds {
            lo_nm: [0.0; 3],
            hi_nm: [4096.0; 3]
        }
    );
    assert_eq!((p.tile_vox, p.context_vox), ([64; 3], [32; 3]));
}

#[test]
fn predict_defaults_follow_the_spec() {
    let text = "version: 1\nname: d\nclasses: [a, b]\narrays:\n  inputs:\n    raw: { shape: [96, 96, 96], scale: [4, 4, 4] }\n  targets:\n    t: { shape: [48, 48, 48], scale: [8, 8, 8] }\ndata:\n  datasets:\n    - { split: train, raw: /x.zarr/raw, targets: \"/x.zarr/c/{class}\" }\n    - { split: validate, raw: /x.zarr/raw, targets: \"/x.zarr/d/{class}\" }\npredict: {}\n";
    let s = cellmap_schema::parse(text, std::path::Path::new("/specs/d.yaml"))
        .unwrap()
        .spec;
    let p = s.predict().unwrap();
    assert_eq!(p.raw, ["/x.zarr/raw"]);
    assert_eq!(p.inputs, [0]);
    assert_eq!(p.output, "/specs/predictions.zarr/{dataset}/{class}");
    assert_eq!(p.model_classes, ["a", "b"]);
    assert_eq!(p.classes, [0, 1]);
    assert_eq!(p.voxel_size_nm, [8.0; 3]);
    assert_eq!(p.dtype, cellmap_schema::PredictDtype::Float32);
    assert_eq!(p.zarr_format, 2);
    assert_eq!(p.region, cellmap_schema::PredictRegion::Raw);
    assert_eq!((p.tile_vox, p.context_vox), ([48; 3], [0; 3]));
}

/// The normalized text (what generated crates embed) reads back into the same spec, for every
/// example and golden spec; tampered text is refused with the broken guarantee named.
#[test]
fn normalized_text_reads_back_into_the_same_spec() {
    let mut n = 0;
    for dir in ["examples", "tests/specs"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let spec = cellmap_schema::load(&path).unwrap().spec;
            let text = spec.to_normalized().unwrap();
            let again = cellmap_schema::Spec::from_normalized(&text).unwrap();
            // `==` fails on the NaN pad value; the text and the debug form compare every field.
            assert_eq!(again.to_normalized().unwrap(), text, "{}", path.display());
            assert_eq!(format!("{again:?}"), format!("{spec:?}"), "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 4);

    let spec = cellmap_schema::load(&root().join("examples/minimal.yaml"))
        .unwrap()
        .spec;
    let text = spec.to_normalized().unwrap();
    let batch = format!("\"batch_size\": {}", spec.loader().batch_size);
    let tampered = text.replacen(&batch, "\"batch_size\": 0", 1);
    let err = cellmap_schema::Spec::from_normalized(&tampered)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`loader.batch_size`"), "{err}");
    let err = cellmap_schema::Spec::from_normalized("{\"version\": 1}")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("normalized spec is not the JSON of a spec"), "{err}");
}

/// Issue #16: `slice_axis` reads back, defaults to `z` (older normalized texts lack it), and a
/// normalized text slicing a 3D spec along y is refused.
#[test]
fn slice_axis_defaults_to_z_and_needs_2d_arrays() {
    use cellmap_schema::{SliceAxis, Spec};
    let two_d = cellmap_schema::load(&root().join("examples/2d.yaml")).unwrap().spec;
    assert!(two_d.is_2d());
    assert_eq!(two_d.sampling().slice_axis, SliceAxis::Any);
    let minimal = cellmap_schema::load(&root().join("examples/minimal.yaml"))
        .unwrap()
        .spec;
    assert!(!minimal.is_2d());
    assert_eq!(minimal.sampling().slice_axis, SliceAxis::Z);
    let mut doc: serde_json::Value = serde_json::from_str(&minimal.to_normalized().unwrap()).unwrap();
    assert_eq!(doc["sampling"]["slice_axis"], "z");
    doc["sampling"].as_object_mut().unwrap().remove("slice_axis");
    let older = Spec::from_normalized(&doc.to_string()).unwrap();
    assert_eq!(older.sampling().slice_axis, SliceAxis::Z);
    doc["sampling"]["slice_axis"] = "y".into();
    let err = Spec::from_normalized(&doc.to_string()).unwrap_err();
    assert!(err.to_string().contains("`sampling.slice_axis`"), "{err}");
}
