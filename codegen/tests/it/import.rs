//! `cellmap-compile import` of a CellMap segmentation challenge train config: the library's
//! YAML and notes, and the command line.

use std::path::Path;
use std::process::{Command, Output};

use cellmap_codegen::import::{ConfigKind, ImportError, ImportOptions, IterationUnit, import, import_with};

/// Parse spec YAML beside a datasplit CSV of one train and one validation crop annotating these
/// classes.
fn parse_beside_csv_of(
    yaml: &str,
    train: &str,
    validate: &str,
) -> Result<cellmap_schema::Checked, cellmap_schema::Diagnostics> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("datasplit.csv"),
        format!(
            "\"train\",\"/data/jrc_cos7-1a/jrc_cos7-1a.zarr\",\"recon-1/em/fibsem-uint8\",\"/data/jrc_cos7-1a/jrc_cos7-1a.zarr\",\"recon-1/labels/groundtruth/crop234/[{train}]\"\n\
             \"validate\",\"/data/jrc_hela-2/jrc_hela-2.zarr\",\"recon-1/em/fibsem-uint8\",\"/data/jrc_hela-2/jrc_hela-2.zarr\",\"recon-1/labels/groundtruth/crop1/[{validate}]\"\n"
        ),
    )
    .unwrap();
    cellmap_schema::parse(yaml, &dir.path().join("spec.yaml"))
}

fn import_cli(config: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cellmap-compile"))
        .arg("import")
        .arg(config)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// A folder with a datasplit CSV of two crops annotating `nuc` and `er`.
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("datasplit.csv"),
        "\"train\",\"/data/jrc_hela-2/jrc_hela-2.zarr\",\"recon-1/em/fibsem-uint8\",\"/data/jrc_hela-2/jrc_hela-2.zarr\",\"recon-1/labels/groundtruth/crop1/[nuc,er]\"\n\
         \"validate\",\"/data/jrc_hela-2/jrc_hela-2.zarr\",\"recon-1/em/fibsem-uint8\",\"/data/jrc_hela-2/jrc_hela-2.zarr\",\"recon-1/labels/groundtruth/crop2/[nuc]\"\n",
    )
    .unwrap();
    dir
}

#[test]
fn a_challenge_train_config_imports_into_a_valid_spec() {
    let dir = folder();
    let config = dir.path().join("train_2D.json");
    // examples/train_2D.py of the challenge, as JSON.
    std::fs::write(
        &config,
        r#"{"learning_rate": 0.0001, "batch_size": 8,
            "input_array_info": {"shape": [1, 128, 128], "scale": [8, 8, 8]},
            "target_array_info": {"shape": [1, 128, 128], "scale": [8, 8, 8]},
            "epochs": 1000, "iterations_per_epoch": 1000, "random_seed": 42, "init_model_features": 32,
            "classes": ["nuc", "er"], "model_name": "2d_unet", "model_to_load": "2d_unet", "load_model": "latest",
            "data_base_path": "data", "logs_save_path": "tensorboard/{model_name}",
            "model_save_path": "checkpoints/{model_name}_{epoch}.pth", "datasplit_path": "datasplit.csv",
            "spatial_transforms": {"mirror": {"axes": {"x": 0.5, "y": 0.5}}, "transpose": {"axes": ["x", "y"]},
                                   "rotate": {"axes": {"x": [-180, 180], "y": [-180, 180]}}},
            "validation_time_limit": 60}"#,
    )
    .unwrap();
    let spec = dir.path().join("spec.yaml");
    let o = import_cli(&config, &spec, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("note: `learning_rate` has no effect: optimisation belongs to your training code\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("note: `iterations_per_epoch` counts batches: 1000 batches of 8 = 8000 samples per epoch"),
        "{stderr}"
    );
    let s = match cellmap_schema::load(&spec) {
        Ok(c) => c.spec,
        Err(e) => panic!("{}", cellmap_schema::render_human(&e.0)),
    };
    assert_eq!(s.name(), "train-2d");
    assert_eq!(s.inputs()[0].name, "input");
    assert_eq!(s.targets()[0].name, "output");
    assert_eq!(s.sampling().iterations_per_epoch, 8000);
    assert_eq!(s.sampling().weighting, cellmap_schema::Weighting::ClassBalanced);
    assert!(
        !s.sampling().validation_tiling,
        "a validation time limit makes validation random"
    );
    assert_eq!(s.datasets().len(), 2);

    // `--iterations samples` overrides the challenge's unit; `--from cellmap-data` refuses its names.
    let o = import_cli(&config, &spec, &["--force", "--iterations", "samples"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        cellmap_schema::load(&spec)
            .unwrap()
            .spec
            .sampling()
            .iterations_per_epoch,
        1000
    );
    let o = import_cli(&config, &spec, &["--force", "--from", "cellmap-data"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unknown cellmap-data key `learning_rate` (known: "),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn an_unknown_challenge_name_is_an_error_naming_it() {
    let dir = folder();
    let config = dir.path().join("cfg.json");
    std::fs::write(
        &config,
        r#"{"classes": ["nuc"], "model_name": "x", "lerning_rate": 0.1}"#,
    )
    .unwrap();
    let spec = dir.path().join("spec.yaml");
    let o = import_cli(&config, &spec, &[]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: `{}`: unknown challenge train config key `lerning_rate` (known: ",
            config.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains(" learning_rate, "), "{stderr}");
    assert!(!spec.exists());
}

/// A challenge train config (examples/train_3D.py of cellmap-segmentation-challenge with the
/// options people add), as `cc.import_config(**vars(config))` writes it.
const CHALLENGE: &str = r#"{
    "learning_rate": 0.0001,
    "batch_size": 3,
    "input_array_info": {"shape": [128, 128, 128], "scale": [8, 8, 8]},
    "target_array_info": {"shape": [64, 64, 64], "scale": [8, 8, 8]},
    "epochs": 1000,
    "iterations_per_epoch": 1000,
    "random_seed": 7,
    "init_model_features": 32,
    "classes": ["nuc", "er", "mito", "ecs"],
    "model_name": "3d_unet",
    "model_to_load": "3d_unet",
    "load_model": "latest",
    "logs_save_path": "tensorboard/{model_name}",
    "model_save_path": "checkpoints/{model_name}_{epoch}.pth",
    "datasplit_path": "datasplit.csv",
    "spatial_transforms": {
        "mirror": {"axes": {"x": 0.5, "y": 0.5, "z": 0.1}},
        "transpose": {"axes": ["x", "y", "z"]},
        "rotate": {"axes": {"x": [-180, 180], "y": [-180, 180], "z": [-180, 180]}}
    },
    "use_mutual_exclusion": true,
    "weighted_sampler": false,
    "gradient_accumulation_steps": 2,
    "max_grad_norm": 1.0,
    "force_all_classes": "validate",
    "filter_by_scale": true,
    "validation_time_limit": null,
    "validation_batch_limit": 20,
    "device": "cuda",
    "dataloader_kwargs": {"num_workers": 2, "pin_memory": true}
}"#;

#[test]
fn a_challenge_train_config_becomes_this_spec() {
    let out = import(CHALLENGE, None, "csc-3d", IterationUnit::Samples).unwrap();
    assert_eq!(out.kind, ConfigKind::Challenge);
    assert_eq!(
        out.yaml,
        r#"# Imported from a CellMap segmentation challenge train config by `cellmap-compile import`.
# augment.inputs is cellmap-data's default raw transform (the raw dtype's range onto [0, 1]:
# uint8 ÷ 255, uint16 ÷ 65535; NaN → 0) unless the configuration listed its own; validation
# applies only its deterministic entries.
version: 1
name: "csc-3d"
classes: ["nuc","er","mito","ecs"]
class_relations:
  nuc: ["mito","ecs"]
  er: ["mito","ecs"]
  mito: ["nuc","er","ecs"]
  ecs: ["nuc","er","mito"]
arrays:
  inputs:
    input:
      shape: [128,128,128]
      scale: [8,8,8]
  targets:
    output:
      shape: [64,64,64]
      scale: [8,8,8]
data:
  csv: "datasplit.csv"
sampling:
  seed: 7
  iterations_per_epoch: 3000
  weighting: "uniform"
  pad: true
  validation_tiling: false
augment:
  spatial:
    mirror:
      x: 0.5
      y: 0.5
      z: 0.1
    transpose: ["x","y","z"]
    rotate:
      x: [-180,180]
      y: [-180,180]
      z: [-180,180]
  inputs: [{"normalize":{"scale":"dtype"}},{"nan_to_num":{"nan":0}}]
loader:
  batch_size: 3
  workers: 2
  device: "cuda"
  pin_memory: true
"#
    );
    let notes = out.notes.join("\n");
    for expected in [
        "`learning_rate` has no effect: optimisation belongs to your training code",
        "`gradient_accumulation_steps` has no effect: optimisation belongs to your training code; batches stay `batch_size` samples",
        "`filter_by_scale` has no effect: it only selects crops when the challenge writes a new datasplit CSV",
        "`model_name` has no effect: the model belongs to your training code",
        "`epochs` has no effect",
        "`validation_batch_limit` ends the challenge's validation loop early",
        "with `validation_batch_limit` the challenge draws random validation batches: `sampling.validation_tiling: false`",
        "`sampling.pad: true`",
        "`iterations_per_epoch` counts batches: 1000 batches of 3 = 3000 samples per epoch",
    ] {
        assert!(notes.contains(expected), "{expected}\n{notes}");
    }
    assert!(!notes.contains("defaults apply"), "{notes}");
    let spec = match parse_beside_csv_of(&out.yaml, "nuc,er,mito", "ecs,mito") {
        Ok(c) => c.spec,
        Err(e) => panic!("{}\n{}", out.yaml, cellmap_schema::render_human(&e.0)),
    };
    assert_eq!(spec.sampling().iterations_per_epoch, 3000);
    assert!(spec.class_relations()["nuc"].contains("mito") && !spec.class_relations()["nuc"].contains("er"));
    assert_eq!(spec.loader().workers, 2);
    assert!(!spec.sampling().validation_tiling);
    // issue #16: cellmap-data's `ToDtype(scale=True)` divides by the raw dtype's maximum, per dataset.
    assert_eq!(
        spec.augment().inputs[0],
        cellmap_schema::ValueTransform::NormalizeDtype { shift: None }
    );
}

#[test]
fn a_challenge_config_without_a_name_takes_the_train_defaults() {
    let out = import(
        r#"{"model_name": "2d_unet", "learning_rate": 0.001}"#,
        None,
        "x",
        IterationUnit::Samples,
    )
    .unwrap();
    assert_eq!(out.kind, ConfigKind::Challenge);
    let defaults = out.notes.iter().find(|n| n.contains("defaults apply")).unwrap();
    assert_eq!(
        defaults,
        "not in the config, so the challenge's `train()` defaults apply: `classes: [\"nuc\",\"er\"]`, \
         `batch_size: 8`, `iterations_per_epoch: 1000`, `random_seed: 42`, `weighted_sampler: true`, \
         `input_array_info: {\"shape\":[1,128,128],\"scale\":[8,8,8]}`, \
         `spatial_transforms: {\"mirror\":{\"axes\":{\"x\":0.5,\"y\":0.5}},\"transpose\":{\"axes\":[\"x\",\"y\"]},\"rotate\":{\"axes\":{\"x\":[-180,180],\"y\":[-180,180]}}}`, \
         `datasplit_path: \"datasplit.csv\"`"
    );
    let spec = match parse_beside_csv_of(&out.yaml, "nuc,er", "er") {
        Ok(c) => c.spec,
        Err(e) => panic!("{}\n{}", out.yaml, cellmap_schema::render_human(&e.0)),
    };
    assert_eq!(spec.classes(), ["nuc", "er"]);
    assert_eq!(spec.inputs()[0].name, "input");
    assert_eq!(spec.inputs()[0].shape_vox, [1, 128, 128]);
    assert_eq!(spec.targets()[0].name, "output");
    assert_eq!(spec.targets()[0].shape_vox, [1, 128, 128]);
    assert_eq!(spec.sampling().seed, 42);
    assert_eq!(spec.sampling().iterations_per_epoch, 8000);
    assert_eq!(spec.sampling().weighting, cellmap_schema::Weighting::ClassBalanced);
    assert!(spec.sampling().pad.train && spec.sampling().pad.validate);
    assert!(spec.class_relations().is_empty());
    assert!(spec.sampling().validation_tiling);
}

#[test]
fn value_transform_lists_pass_through_and_python_callables_are_notes() {
    let config = r#"{
        "input_array_info": {"shape": [8, 8, 8], "scale": [8, 8, 8]},
        "classes": ["mito", "er", "nuc", "pm"],
        "train_raw_value_transforms": [{"normalize": {"scale": 255}}, {"gaussian_noise": {"std": 0.1}}],
        "val_raw_value_transforms": [{"normalize": {"scale": 255}}],
        "target_value_transforms": "Compose(ToDtype(float32), Binarize(0.5))"
    }"#;
    let out = import(config, Some("datasplit.csv"), "x", IterationUnit::Batches).unwrap();
    assert!(
        out.yaml.contains(
            "  inputs: [{\"normalize\":{\"scale\":255}},{\"gaussian_noise\":{\"std\":0.1}}]\n  validate:\n    inputs: [{\"normalize\":{\"scale\":255}}]\n"
        ),
        "{}",
        out.yaml
    );
    assert!(out.notes.iter().any(|n| {
        n.starts_with("`target_value_transforms` is a Python transform, not a list in the spec's syntax")
    }));
    let spec = parse_beside_csv_of(&out.yaml, "mito,er,nuc", "mito,pm").unwrap().spec;
    use cellmap_schema::{Split, ValueTransform};
    assert_eq!(spec.augment().inputs_for(Split::Train).len(), 2);
    assert_eq!(
        spec.augment().inputs_for(Split::Validate),
        [ValueTransform::Normalize {
            shift: 0.0,
            scale: 255.0
        }]
    );
    assert_eq!(spec.augment().targets, [ValueTransform::Binarize { threshold: 0.0 }]);
}

#[test]
fn challenge_errors_name_the_key() {
    let config = CHALLENGE.replacen("\"learning_rate\"", "\"learning_rte\"", 1);
    let err = import(&config, None, "x", IterationUnit::Samples).unwrap_err();
    assert!(matches!(&err, ImportError::UnknownKey { key, kind: ConfigKind::Challenge, .. } if key == "learning_rte"));
    let text = err.to_string();
    assert!(
        text.starts_with("unknown challenge train config key `learning_rte` (known: axis_order, batch_size, "),
        "{text}"
    );
    assert!(
        text.contains(" datasplit_path, ")
            && text.contains(" learning_rate, ")
            && text.contains(" use_mutual_exclusion, "),
        "{text}"
    );

    let config = CHALLENGE.replacen("\"pin_memory\": true", "\"pin_memroy\": true", 1);
    let err = import(&config, None, "x", IterationUnit::Samples).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`dataloader_kwargs`: unknown key `pin_memroy` (known: num_workers, prefetch_factor, pin_memory, persistent_workers)"
    );
    let config = CHALLENGE.replacen("\"random_seed\": 7", "\"random_seed\": 7, \"seed\": 8", 1);
    let err = import(&config, None, "x", IterationUnit::Samples).unwrap_err();
    assert_eq!(err.to_string(), "`random_seed` and `seed` set the same thing; keep one");
    // Forced to read it as cellmap-data keywords, a challenge name is unknown.
    let options = ImportOptions {
        csv: None,
        name: "x",
        kind: Some(ConfigKind::CellmapData),
        unit: None,
    };
    let err = import_with(CHALLENGE, &options).unwrap_err();
    assert!(err.to_string().starts_with("unknown cellmap-data key `"), "{err}");
}
