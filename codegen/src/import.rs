//! cellmap-data configuration (JSON) + datasplit CSV → a spec (`cellmap-compile import`).
//!
//! The configuration holds the keyword arguments users pass to `CellMapDataSplit` and
//! `CellMapDataLoader` today, as JSON:
//!
//! | cellmap-data key | spec key |
//! |---|---|
//! | `input_arrays` / `target_arrays` `{name: {shape, scale}}` | `arrays.inputs` / `arrays.targets` |
//! | `classes` | `classes` |
//! | `class_relation_dict` | `class_relations` |
//! | `spatial_transforms` `{mirror: {axes}, transpose: {axes}, rotate: {axes}}` | `augment.spatial` |
//! | `pad` (bool, `"train"`, `"validate"`) | `sampling.pad` |
//! | `iterations_per_epoch` | `sampling.iterations_per_epoch` (samples; see [`IterationUnit`]) |
//! | `weighted_sampler` | `sampling.weighting: class_balanced` |
//! | `seed` (or `rng_seed`) | `sampling.seed` |
//! | `batch_size`, `num_workers`, `prefetch_factor`, `device`, `pin_memory` | `loader.*` |
//! | `csv_path` (or `--csv`) | `data.csv` |
//!
//! Keys that have no effect here (`persistent_workers`, `is_train`, `force_has_data`, …) are
//! accepted and reported as notes; any other key is an error naming it.

use std::path::Path;

use serde_json::{Map, Value, json};

/// Keys accepted without effect, with the reason reported as a note.
const IGNORED: &[(&str, &str)] = &[
    ("persistent_workers", "workers are always persistent"),
    ("is_train", "the split is chosen when the loader is opened"),
    (
        "force_has_data",
        "datasets without samples are excluded by the plan, with the reason",
    ),
    ("shuffle", "training centres are always drawn at random"),
    ("drop_last", "batches are always full (validation pads the last one)"),
    ("context", "no TensorStore context is used"),
    ("axis_order", "the spec's order is always zyx"),
    ("empty_value", "unknown target voxels are always NaN"),
    (
        "tensorstore_cache_bytes",
        "the chunk cache budget is `loader.cache_bytes`",
    ),
];

/// How the configuration's `iterations_per_epoch` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IterationUnit {
    /// Samples per epoch (cellmap-data 2026.3, `CellMapDataLoader` with a weighted sampler).
    Samples,
    /// Batches per epoch (cellmap-data 2025 and the segmentation challenge's train configs).
    Batches,
}

/// What an import produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The spec as YAML text.
    pub yaml: String,
    /// Notes on keys accepted without effect.
    pub notes: Vec<String>,
}

/// Why a configuration cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The configuration is not a JSON object.
    #[error("the configuration must be a JSON object of cellmap-data arguments: {0}")]
    NotAnObject(String),
    /// A key cellmap-compile does not know.
    #[error("unknown cellmap-data key `{key}` (known: {known})")]
    UnknownKey {
        /// The key.
        key: String,
        /// The keys that are understood.
        known: String,
    },
    /// A key has a value of the wrong form.
    #[error("`{key}`: {message}")]
    Invalid {
        /// The key (a JSON path like `spatial_transforms.rotate`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A required key is missing.
    #[error("missing `{0}`")]
    Missing(&'static str),
}

/// Keys that map to spec keys.
const KNOWN: &[&str] = &[
    "input_arrays",
    "target_arrays",
    "classes",
    "class_relation_dict",
    "spatial_transforms",
    "pad",
    "iterations_per_epoch",
    "weighted_sampler",
    "seed",
    "rng_seed",
    "batch_size",
    "num_workers",
    "prefetch_factor",
    "device",
    "pin_memory",
    "csv_path",
];

fn invalid(key: &str, message: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Turn a cellmap-data configuration into spec YAML named `name`, reading its datasets from
/// `csv` (as written into the spec; a `csv_path` key is used when `csv` is `None`).
pub fn import(config: &str, csv: Option<&str>, name: &str, unit: IterationUnit) -> Result<Imported, ImportError> {
    let value: Value = serde_json::from_str(config).map_err(|e| ImportError::NotAnObject(e.to_string()))?;
    let Value::Object(config) = value else {
        return Err(ImportError::NotAnObject(
            "got a JSON value that is not an object".to_owned(),
        ));
    };
    let mut notes = Vec::new();
    for key in config.keys() {
        if let Some((_, why)) = IGNORED.iter().find(|(k, _)| k == key) {
            notes.push(format!("`{key}` has no effect: {why}"));
        } else if !KNOWN.contains(&key.as_str()) {
            let mut known: Vec<&str> = KNOWN.iter().chain(IGNORED.iter().map(|(k, _)| k)).copied().collect();
            known.sort_unstable();
            return Err(ImportError::UnknownKey {
                key: key.clone(),
                known: known.join(", "),
            });
        }
    }
    let mut spec = Map::new();
    spec.insert("version".into(), json!(1));
    spec.insert("name".into(), json!(name));
    let classes = config.get("classes").ok_or(ImportError::Missing("classes"))?;
    let classes = string_list("classes", classes)?;
    spec.insert("classes".into(), json!(classes));
    if let Some(rel) = config.get("class_relation_dict").filter(|v| !v.is_null()) {
        let Value::Object(rel) = rel else {
            return Err(invalid("class_relation_dict", "expected {class: [classes]}"));
        };
        let mut out = Map::new();
        for (k, v) in rel {
            out.insert(k.clone(), json!(string_list(&format!("class_relation_dict.{k}"), v)?));
        }
        spec.insert("class_relations".into(), Value::Object(out));
    }
    let inputs = arrays(
        "input_arrays",
        config.get("input_arrays").ok_or(ImportError::Missing("input_arrays"))?,
    )?;
    let mut arrays_out = Map::new();
    arrays_out.insert("inputs".into(), inputs);
    if let Some(t) = config.get("target_arrays").filter(|v| !v.is_null()) {
        arrays_out.insert("targets".into(), arrays("target_arrays", t)?);
    }
    spec.insert("arrays".into(), Value::Object(arrays_out));
    let csv = match (csv, config.get("csv_path")) {
        (Some(c), _) => c.to_owned(),
        (None, Some(Value::String(c))) => c.clone(),
        (None, Some(_)) => return Err(invalid("csv_path", "expected a path")),
        (None, None) => return Err(ImportError::Missing("csv_path (or --csv)")),
    };
    spec.insert("data".into(), json!({ "csv": csv }));
    let mut sampling = Map::new();
    if let Some(seed) = config.get("seed").or_else(|| config.get("rng_seed")) {
        sampling.insert("seed".into(), json!(uint("seed", seed)?));
    }
    let batch_size = config.get("batch_size").map(|v| uint("batch_size", v)).transpose()?;
    if let Some(n) = config.get("iterations_per_epoch").filter(|v| !v.is_null()) {
        let n = uint("iterations_per_epoch", n)?;
        let samples = match unit {
            IterationUnit::Samples => n,
            IterationUnit::Batches => n * batch_size.unwrap_or(1),
        };
        sampling.insert("iterations_per_epoch".into(), json!(samples));
    }
    if let Some(w) = config.get("weighted_sampler") {
        let w = w
            .as_bool()
            .ok_or_else(|| invalid("weighted_sampler", "expected true or false"))?;
        sampling.insert("weighting".into(), json!(if w { "class_balanced" } else { "uniform" }));
    }
    if let Some(pad) = config.get("pad") {
        let pad = match pad {
            Value::Bool(b) => json!(b),
            Value::String(s) if s == "train" => json!({"train": true, "validate": false}),
            Value::String(s) if s == "validate" => json!({"train": false, "validate": true}),
            _ => return Err(invalid("pad", "expected true, false, \"train\" or \"validate\"")),
        };
        sampling.insert("pad".into(), pad);
    }
    spec.insert("sampling".into(), Value::Object(sampling));
    let mut augment = Map::new();
    if let Some(st) = config.get("spatial_transforms").filter(|v| !v.is_null()) {
        augment.insert("spatial".into(), spatial(st)?);
    }
    // cellmap-data's default raw transforms: ToDtype(float, scale=True) (÷255 for uint8), NaNtoNum(nan=0).
    augment.insert(
        "inputs".into(),
        json!([{"normalize": {"shift": 0, "scale": 255}}, {"nan_to_num": {"nan": 0}}]),
    );
    spec.insert("augment".into(), Value::Object(augment));
    let mut loader = Map::new();
    if let Some(b) = batch_size {
        loader.insert("batch_size".into(), json!(b));
    }
    if let Some(w) = config.get("num_workers") {
        // 0 means "in the main process" to torch; the Rust loader needs at least one thread.
        loader.insert("workers".into(), json!(uint("num_workers", w)?.max(1)));
    }
    if let Some(p) = config.get("prefetch_factor").filter(|v| !v.is_null()) {
        loader.insert("prefetch".into(), json!(uint("prefetch_factor", p)?.max(1)));
    }
    if let Some(d) = config.get("device").filter(|v| !v.is_null()) {
        let d = d
            .as_str()
            .ok_or_else(|| invalid("device", "expected a string such as \"cuda\""))?;
        loader.insert("device".into(), json!(d));
    }
    if let Some(p) = config.get("pin_memory") {
        let p = p
            .as_bool()
            .ok_or_else(|| invalid("pin_memory", "expected true or false"))?;
        loader.insert("pin_memory".into(), json!(p));
    }
    spec.insert("loader".into(), Value::Object(loader));
    let header = "# Imported from a cellmap-data configuration by `cellmap-compile import`.\n\
                  # augment.inputs is cellmap-data's default raw transform (uint8 ÷ 255, NaN → 0).\n";
    Ok(Imported {
        yaml: format!("{header}{}", yaml(&Value::Object(spec), 0)),
        notes,
    })
}

/// The spec name a configuration file gets: its stem, lowercased, other characters → `-`.
pub fn name_from_path(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map_or_else(|| "imported".into(), |s| s.to_string_lossy().into_owned());
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("imported-{name}")
    } else {
        name
    }
}

fn string_list(key: &str, v: &Value) -> Result<Vec<String>, ImportError> {
    v.as_array()
        .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_owned)).collect())
        .ok_or_else(|| invalid(key, "expected a list of strings"))
}

fn uint(key: &str, v: &Value) -> Result<u64, ImportError> {
    v.as_u64()
        .ok_or_else(|| invalid(key, format!("expected a non-negative integer, got `{v}`")))
}

fn arrays(key: &str, v: &Value) -> Result<Value, ImportError> {
    let Value::Object(map) = v else {
        return Err(invalid(key, "expected {name: {shape: [z, y, x], scale: [z, y, x]}}"));
    };
    let mut out = Map::new();
    for (name, spec) in map {
        let path = format!("{key}.{name}");
        let Value::Object(spec) = spec else {
            return Err(invalid(&path, "expected {shape: [z, y, x], scale: [z, y, x]}"));
        };
        let mut array = Map::new();
        for (k, v) in spec {
            match k.as_str() {
                "shape" | "scale" => {
                    let nums = v
                        .as_array()
                        .filter(|a| (2..=3).contains(&a.len()) && a.iter().all(Value::is_number))
                        .ok_or_else(|| invalid(&format!("{path}.{k}"), "expected 2 or 3 numbers (z, y, x)"))?;
                    array.insert(k.clone(), Value::Array(nums.clone()));
                }
                "n_channels" | "scale_level" => {}
                other => {
                    return Err(invalid(
                        &path,
                        format!("unknown array key `{other}` (known: shape, scale)"),
                    ));
                }
            }
        }
        for k in ["shape", "scale"] {
            if !array.contains_key(k) {
                return Err(invalid(&path, format!("missing `{k}`")));
            }
        }
        out.insert(name.clone(), Value::Object(array));
    }
    Ok(Value::Object(out))
}

fn spatial(v: &Value) -> Result<Value, ImportError> {
    let key = "spatial_transforms";
    let Value::Object(map) = v else {
        return Err(invalid(
            key,
            "expected {mirror: {axes: …}, transpose: {axes: …}, rotate: {axes: …}}",
        ));
    };
    let mut out = Map::new();
    for (k, t) in map {
        let path = format!("{key}.{k}");
        let axes = t.get("axes").ok_or_else(|| invalid(&path, "expected {axes: …}"))?;
        match k.as_str() {
            "mirror" => {
                let Value::Object(axes) = axes else {
                    return Err(invalid(&path, "expected axes {axis: probability}"));
                };
                let mut m = Map::new();
                for (ax, p) in axes {
                    check_axis(&path, ax)?;
                    let p = p.as_f64().ok_or_else(|| invalid(&path, "expected a probability"))?;
                    m.insert(ax.clone(), json!(p));
                }
                out.insert("mirror".into(), Value::Object(m));
            }
            "transpose" => {
                let axes = string_list(&path, axes)?;
                for ax in &axes {
                    check_axis(&path, ax)?;
                }
                out.insert("transpose".into(), json!(axes));
            }
            "rotate" => {
                let Value::Object(axes) = axes else {
                    return Err(invalid(&path, "expected axes {axis: [low, high]} in degrees"));
                };
                let mut m = Map::new();
                for (ax, r) in axes {
                    check_axis(&path, ax)?;
                    let range = r
                        .as_array()
                        .filter(|a| a.len() == 2 && a.iter().all(Value::is_number))
                        .ok_or_else(|| invalid(&path, format!("axis `{ax}`: expected [low, high]")))?;
                    m.insert(ax.clone(), Value::Array(range.clone()));
                }
                out.insert("rotate".into(), Value::Object(m));
            }
            other => {
                return Err(invalid(
                    key,
                    format!("unknown spatial transform `{other}` (known: mirror, transpose, rotate)"),
                ));
            }
        }
    }
    Ok(Value::Object(out))
}

fn check_axis(path: &str, axis: &str) -> Result<(), ImportError> {
    if matches!(axis, "z" | "y" | "x") {
        Ok(())
    } else {
        Err(invalid(path, format!("unknown axis `{axis}` (expected z, y or x)")))
    }
}

/// Block-style YAML for mappings; scalars and sequences in flow style (JSON is valid YAML).
fn yaml(v: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut s = String::new();
    if let Value::Object(map) = v {
        for (k, v) in map {
            let key = if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') && !k.is_empty() {
                k.clone()
            } else {
                Value::String(k.clone()).to_string()
            };
            match v {
                Value::Object(m) if !m.is_empty() => {
                    s.push_str(&format!("{pad}{key}:\n{}", yaml(v, indent + 2)));
                }
                _ => s.push_str(&format!("{pad}{key}: {v}\n")),
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration as cellmap-segmentation-challenge train scripts build it.
    const CONFIG: &str = r#"{
        "input_arrays": {"input": {"shape": [128, 128, 128], "scale": [8, 8, 8]}},
        "target_arrays": {"output": {"shape": [64, 64, 64], "scale": [8, 8, 8]}},
        "classes": ["mito", "er", "nuc", "pm"],
        "class_relation_dict": {"mito": ["nuc"], "nuc": ["mito"]},
        "spatial_transforms": {
            "mirror": {"axes": {"x": 0.5, "y": 0.5, "z": 0.1}},
            "transpose": {"axes": ["x", "y"]},
            "rotate": {"axes": {"x": [-180, 180], "y": [-180, 180]}}
        },
        "iterations_per_epoch": 1000,
        "batch_size": 8,
        "num_workers": 0,
        "pad": "train",
        "weighted_sampler": true,
        "persistent_workers": true,
        "device": "cuda",
        "pin_memory": true
    }"#;

    /// Parse spec YAML beside a 5-column datasplit CSV in a temporary folder.
    fn parse_beside_csv(yaml: &str) -> Result<cellmap_schema::Checked, cellmap_schema::Diagnostics> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("datasplit.csv"),
            "\"train\",\"/data/jrc_cos7-1a/jrc_cos7-1a.zarr\",\"recon-1/em/fibsem-uint8\",\"/data/jrc_cos7-1a/jrc_cos7-1a.zarr\",\"recon-1/labels/groundtruth/crop234/[mito,er,nuc]\"\n\
             \"validate\",\"/data/jrc_hela-2/jrc_hela-2.zarr\",\"recon-1/em/fibsem-uint8\",\"/data/jrc_hela-2/jrc_hela-2.zarr\",\"recon-1/labels/groundtruth/crop1/[mito,pm]\"\n",
        )
        .unwrap();
        cellmap_schema::parse(yaml, &dir.path().join("spec.yaml"))
    }

    #[test]
    fn a_realistic_configuration_becomes_a_spec_that_parses() {
        let out = import(CONFIG, Some("datasplit.csv"), "csc-train", IterationUnit::Samples).unwrap();
        assert_eq!(
            out.notes,
            vec!["`persistent_workers` has no effect: workers are always persistent"]
        );
        let checked = parse_beside_csv(&out.yaml);
        let checked = match checked {
            Ok(c) => c,
            Err(e) => panic!("{}\n{}", out.yaml, cellmap_schema::render_human(&e.0)),
        };
        let spec = checked.spec;
        assert_eq!(spec.name, "csc-train");
        assert_eq!(spec.classes, ["mito", "er", "nuc", "pm"]);
        assert_eq!(spec.inputs[0].name, "input");
        assert_eq!(spec.inputs[0].shape_vox, [128, 128, 128]);
        assert_eq!(spec.targets[0].shape_vox, [64, 64, 64]);
        assert_eq!(spec.loader.batch_size, 8);
        assert_eq!(spec.loader.workers, 1);
        assert!(spec.loader.pin_memory);
        assert_eq!(spec.sampling.iterations_per_epoch, 1000);
        assert!(out.yaml.contains("weighting: \"class_balanced\"\n"), "{}", out.yaml);
        assert!(
            out.yaml.contains("  pad:\n    train: true\n    validate: false\n"),
            "{}",
            out.yaml
        );
        assert!(out.yaml.contains("    transpose: [\"x\",\"y\"]\n"), "{}", out.yaml);
    }

    #[test]
    fn iterations_counted_in_batches_become_samples() {
        let out = import(CONFIG, Some("datasplit.csv"), "x", IterationUnit::Batches).unwrap();
        let spec = parse_beside_csv(&out.yaml).unwrap().spec;
        assert_eq!(spec.sampling.iterations_per_epoch, 8000);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let config = CONFIG.replacen("\"batch_size\"", "\"batchsize\"", 1);
        let err = import(&config, Some("d.csv"), "x", IterationUnit::Samples).unwrap_err();
        assert!(matches!(&err, ImportError::UnknownKey { key, .. } if key == "batchsize"));
        assert!(
            err.to_string()
                .starts_with("unknown cellmap-data key `batchsize` (known: axis_order, batch_size, ")
        );
        let config = CONFIG.replacen("\"rotate\"", "\"deform\"", 1);
        let err = import(&config, Some("d.csv"), "x", IterationUnit::Samples).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`spatial_transforms`: unknown spatial transform `deform` (known: mirror, transpose, rotate)"
        );
        let err = import("[1]", None, "x", IterationUnit::Samples).unwrap_err();
        assert!(matches!(err, ImportError::NotAnObject(_)));
        let err = import(
            r#"{"classes": ["a"], "input_arrays": {}}"#,
            None,
            "x",
            IterationUnit::Samples,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "missing `csv_path (or --csv)`");
    }

    #[test]
    fn names_come_from_the_file_stem() {
        assert_eq!(name_from_path(Path::new("/a/Train_Config.json")), "train-config");
        assert_eq!(name_from_path(Path::new("3d.json")), "imported-3d");
    }
}
