//! A training configuration (JSON) + datasplit CSV → a spec (`cellmap-compile import`).
//!
//! Two kinds of configuration are read ([`ConfigKind`]); which one is detected from its names, or
//! given with [`ImportOptions::kind`]:
//!
//! - **cellmap-data**: the keyword arguments users pass to `CellMapDataSplit` and
//!   `CellMapDataLoader` today, as JSON;
//! - **the CellMap segmentation challenge's train config**: the names a config module defines for
//!   `cellmap_segmentation_challenge.train(path)` (`input_array_info`, `datasplit_path`,
//!   `random_seed`, `use_mutual_exclusion`, `model`, `learning_rate`, …), as JSON. It is translated
//!   to cellmap-data's keywords as the challenge's `train()` and `get_dataloader` do
//!   (see `import/challenge.rs`), with `train()`'s defaults for the names it leaves out.
//!
//! | key | spec key |
//! |---|---|
//! | `input_arrays` / `target_arrays` `{name: {shape, scale}}` | `arrays.inputs` / `arrays.targets` |
//! | `input_array_info` / `target_array_info` (challenge) `{shape, scale}` | `arrays.inputs.input` / `arrays.targets.output` |
//! | `classes` | `classes` |
//! | `class_relation_dict` | `class_relations` |
//! | `use_mutual_exclusion` (challenge) | `class_relations` from the challenge's class table |
//! | `spatial_transforms` `{mirror: {axes}, transpose: {axes}, rotate: {axes}}` | `augment.spatial` |
//! | `train_raw_value_transforms` / `val_raw_value_transforms` / `target_value_transforms` as lists in the spec's syntax | `augment.inputs` / `augment.validate.inputs` / `augment.targets` |
//! | `pad` (bool, `"train"`, `"validate"`) | `sampling.pad` (challenge: `true`, as its `get_dataloader`) |
//! | `iterations_per_epoch` | `sampling.iterations_per_epoch` (samples; see [`IterationUnit`]) |
//! | `weighted_sampler` | `sampling.weighting: class_balanced` |
//! | `seed` (or `rng_seed`; challenge: `random_seed`) | `sampling.seed` |
//! | `random_validation`, `validation_time_limit`, `validation_batch_limit` (challenge) | `sampling.validation_tiling: false` |
//! | `batch_size`, `num_workers`, `prefetch_factor`, `device`, `pin_memory` (challenge: also in `dataloader_kwargs`) | `loader.*` |
//! | `csv_path` (challenge: `datasplit_path`; or `--csv`) | `data.csv` |
//!
//! Keys that have no effect here (`persistent_workers`, `is_train`, …; for a challenge config
//! `model`, `learning_rate`, `epochs`, …) are accepted and reported as notes with the reason; any
//! other key is an error naming it and the known keys.

mod challenge;

use std::path::Path;

use serde_json::{Map, Value, json};

/// cellmap-data keys accepted without effect, with the reason reported as a note.
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
    /// Batches per epoch (cellmap-data 2025 and the segmentation challenge's train configs, whose
    /// training loop draws `iterations_per_epoch` batches per epoch).
    Batches,
}

/// What kind of configuration is imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// Keyword arguments of cellmap-data's `CellMapDataSplit` / `CellMapDataLoader`.
    CellmapData,
    /// The names of a CellMap segmentation challenge train config (read by the challenge's
    /// `train()`); its `iterations_per_epoch` counts batches.
    Challenge,
}

impl ConfigKind {
    /// How this kind's `iterations_per_epoch` counts when the caller does not say.
    pub fn default_unit(self) -> IterationUnit {
        match self {
            ConfigKind::CellmapData => IterationUnit::Samples,
            ConfigKind::Challenge => IterationUnit::Batches,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ConfigKind::CellmapData => "cellmap-data",
            ConfigKind::Challenge => "challenge train config",
        }
    }
}

/// How [`import_with`] reads a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions<'a> {
    /// The datasplit CSV as the spec names it; `None`: the configuration's `csv_path`
    /// (`datasplit_path`).
    pub csv: Option<&'a str>,
    /// The spec's name.
    pub name: &'a str,
    /// The kind of configuration; `None`: a challenge config when it uses a name only challenge
    /// configs have (`input_array_info`, `datasplit_path`, `random_seed`, `model`, …), else
    /// cellmap-data.
    pub kind: Option<ConfigKind>,
    /// How `iterations_per_epoch` counts; `None`: the kind's [`ConfigKind::default_unit`].
    pub unit: Option<IterationUnit>,
}

/// What an import produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The spec as YAML text.
    pub yaml: String,
    /// Notes for the user: keys accepted without effect (with the reason), defaults and choices
    /// the import made.
    pub notes: Vec<String>,
    /// The kind of configuration read.
    pub kind: ConfigKind,
}

/// Why a configuration cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The configuration is not a JSON object.
    #[error("the configuration must be a JSON object of cellmap-data arguments: {0}")]
    NotAnObject(String),
    /// A key cellmap-compile does not know.
    #[error("unknown {} key `{key}` (known: {known})", kind.describe())]
    UnknownKey {
        /// The key.
        key: String,
        /// The keys that are understood.
        known: String,
        /// The kind of configuration it was read as.
        kind: ConfigKind,
    },
    /// Two keys give the same setting.
    #[error("`{first}` and `{second}` set the same thing; keep one")]
    Conflict {
        /// One key.
        first: String,
        /// The other.
        second: String,
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

/// cellmap-data keys that map to spec keys.
const KNOWN: &[&str] = &[
    "input_arrays",
    "target_arrays",
    "classes",
    "class_relation_dict",
    "spatial_transforms",
    "train_raw_value_transforms",
    "val_raw_value_transforms",
    "target_value_transforms",
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

/// Turn a cellmap-data or challenge configuration into spec YAML named `name`, reading its datasets
/// from `csv` (as written into the spec; the configuration's `csv_path` or `datasplit_path` is used
/// when `csv` is `None`). `unit` says how a cellmap-data configuration's `iterations_per_epoch`
/// counts; a challenge train config always counts batches (its training loop draws that many
/// batches per epoch). The kind is detected as [`ImportOptions::kind`] describes.
pub fn import(config: &str, csv: Option<&str>, name: &str, unit: IterationUnit) -> Result<Imported, ImportError> {
    let value = parse_object(config)?;
    let kind = detect(&value);
    let unit = match kind {
        ConfigKind::CellmapData => unit,
        ConfigKind::Challenge => IterationUnit::Batches,
    };
    convert(
        value,
        &ImportOptions {
            csv,
            name,
            kind: Some(kind),
            unit: Some(unit),
        },
    )
}

/// [`import`] with every choice explicit.
pub fn import_with(config: &str, options: &ImportOptions<'_>) -> Result<Imported, ImportError> {
    convert(parse_object(config)?, options)
}

fn parse_object(config: &str) -> Result<Map<String, Value>, ImportError> {
    let value: Value = serde_json::from_str(config).map_err(|e| ImportError::NotAnObject(e.to_string()))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ImportError::NotAnObject(
            "got a JSON value that is not an object".to_owned(),
        )),
    }
}

fn detect(config: &Map<String, Value>) -> ConfigKind {
    if challenge::is_challenge(config) {
        ConfigKind::Challenge
    } else {
        ConfigKind::CellmapData
    }
}

fn convert(config: Map<String, Value>, options: &ImportOptions<'_>) -> Result<Imported, ImportError> {
    let kind = options.kind.unwrap_or_else(|| detect(&config));
    let unit = options.unit.unwrap_or_else(|| kind.default_unit());
    let mut notes = Vec::new();
    check_keys(&config, kind, &mut notes)?;
    let (config, validation_tiling) = match kind {
        ConfigKind::CellmapData => (config, None),
        ConfigKind::Challenge => {
            let t = challenge::translate(config, options.csv.is_some(), &mut notes)?;
            (t.config, t.validation_tiling)
        }
    };
    let mut spec = Map::new();
    spec.insert("version".into(), json!(1));
    spec.insert("name".into(), json!(options.name));
    classes_section(&config, &mut spec)?;
    spec.insert("arrays".into(), arrays_section(&config)?);
    let csv = match (options.csv, config.get("csv_path")) {
        (Some(c), _) => c.to_owned(),
        (None, Some(Value::String(c))) => c.clone(),
        (None, Some(_)) => return Err(invalid("csv_path", "expected a path")),
        (None, None) => return Err(ImportError::Missing("csv_path (or --csv)")),
    };
    spec.insert("data".into(), json!({ "csv": csv }));
    let batch_size = config.get("batch_size").map(|v| uint("batch_size", v)).transpose()?;
    let sampling = sampling_section(&config, unit, batch_size, validation_tiling, &mut notes)?;
    spec.insert("sampling".into(), sampling);
    spec.insert("augment".into(), augment_section(&config, &mut notes)?);
    spec.insert("loader".into(), loader_section(&config, batch_size, &mut notes)?);
    let source = match kind {
        ConfigKind::CellmapData => "a cellmap-data configuration",
        ConfigKind::Challenge => "a CellMap segmentation challenge train config",
    };
    let header = format!(
        "# Imported from {source} by `cellmap-compile import`.\n\
         # augment.inputs is cellmap-data's default raw transform (the raw dtype's range onto [0, 1]:\n\
         # uint8 ÷ 255, uint16 ÷ 65535; NaN → 0) unless the configuration listed its own; validation\n\
         # applies only its deterministic entries.\n"
    );
    Ok(Imported {
        yaml: format!("{header}{}", yaml(&Value::Object(spec), 0)),
        notes,
        kind,
    })
}

/// Refuse keys neither cellmap-data nor (for its configs) the challenge knows; note the ignored ones.
fn check_keys(config: &Map<String, Value>, kind: ConfigKind, notes: &mut Vec<String>) -> Result<(), ImportError> {
    let known = |kind: ConfigKind| -> Vec<&'static str> {
        let mut known: Vec<&str> = KNOWN.iter().chain(IGNORED.iter().map(|(k, _)| k)).copied().collect();
        if kind == ConfigKind::Challenge {
            known.extend(challenge::KEYS);
            known.extend(challenge::IGNORED.iter().map(|(k, _)| k));
        }
        known.sort_unstable();
        known
    };
    let accepted = known(kind);
    for key in config.keys() {
        if !accepted.contains(&key.as_str()) {
            return Err(ImportError::UnknownKey {
                key: key.clone(),
                known: accepted.join(", "),
                kind,
            });
        }
        if let Some((_, why)) = IGNORED
            .iter()
            .chain(if kind == ConfigKind::Challenge {
                challenge::IGNORED
            } else {
                &[]
            })
            .find(|(k, _)| k == key)
        {
            notes.push(format!("`{key}` has no effect: {why}"));
        }
    }
    Ok(())
}

/// `classes` and `class_relations`.
fn classes_section(config: &Map<String, Value>, spec: &mut Map<String, Value>) -> Result<(), ImportError> {
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
        if !out.is_empty() {
            spec.insert("class_relations".into(), Value::Object(out));
        }
    }
    Ok(())
}

/// `arrays: {inputs, targets}`.
fn arrays_section(config: &Map<String, Value>) -> Result<Value, ImportError> {
    let inputs = arrays(
        "input_arrays",
        config.get("input_arrays").ok_or(ImportError::Missing("input_arrays"))?,
    )?;
    let mut arrays_out = Map::new();
    arrays_out.insert("inputs".into(), inputs);
    if let Some(t) = config.get("target_arrays").filter(|v| !v.is_null()) {
        arrays_out.insert("targets".into(), arrays("target_arrays", t)?);
    }
    Ok(Value::Object(arrays_out))
}

/// `sampling`: seed, samples per epoch (in `unit`), weighting, padding, validation tiling.
fn sampling_section(
    config: &Map<String, Value>,
    unit: IterationUnit,
    batch_size: Option<u64>,
    validation_tiling: Option<bool>,
    notes: &mut Vec<String>,
) -> Result<Value, ImportError> {
    let mut sampling = Map::new();
    if let Some(seed) = config.get("seed").or_else(|| config.get("rng_seed")) {
        sampling.insert("seed".into(), json!(uint("seed", seed)?));
    }
    if let Some(n) = config.get("iterations_per_epoch").filter(|v| !v.is_null()) {
        let n = uint("iterations_per_epoch", n)?;
        let samples = match unit {
            IterationUnit::Samples => n,
            IterationUnit::Batches => {
                let b = batch_size.unwrap_or(1);
                notes.push(format!(
                    "`iterations_per_epoch` counts batches: {n} batches of {b} = {} samples per epoch (`sampling.iterations_per_epoch`)",
                    n * b
                ));
                n * b
            }
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
    if let Some(tiling) = validation_tiling {
        sampling.insert("validation_tiling".into(), json!(tiling));
    }
    Ok(Value::Object(sampling))
}

/// `augment`: spatial transforms and value transforms given in the spec's syntax; cellmap-data's
/// default raw transforms otherwise.
fn augment_section(config: &Map<String, Value>, notes: &mut Vec<String>) -> Result<Value, ImportError> {
    let mut augment = Map::new();
    if let Some(st) = config.get("spatial_transforms").filter(|v| !v.is_null()) {
        augment.insert("spatial".into(), spatial(st)?);
    }
    let mut transforms = |key: &str, what: &str, default: &str| -> Option<Value> {
        match config.get(key) {
            None | Some(Value::Null) => None,
            Some(list @ Value::Array(_)) => Some(list.clone()),
            Some(_) => {
                notes.push(format!(
                    "`{key}` is a Python transform, not a list in the spec's syntax (e.g. `[{{\"normalize\": {{\"scale\": \"dtype\"}}}}]`): {what} get {default}; write them in the spec"
                ));
                None
            }
        }
    };
    // cellmap-data's default raw transforms: ToDtype(float, scale=True) (÷ the dtype's maximum: 255 for
    // uint8, 65535 for uint16), NaNtoNum(nan=0); `scale: dtype` resolves it per dataset.
    let inputs = transforms(
        "train_raw_value_transforms",
        "training inputs",
        "cellmap-data's default (÷ the raw dtype's maximum, NaN → 0)",
    )
    .unwrap_or_else(|| json!([{"normalize": {"scale": "dtype"}}, {"nan_to_num": {"nan": 0}}]));
    augment.insert("inputs".into(), inputs);
    if let Some(targets) = transforms("target_value_transforms", "targets", "the default (binarized at 0)") {
        augment.insert("targets".into(), targets);
    }
    if let Some(validate) = transforms(
        "val_raw_value_transforms",
        "validation inputs",
        "the deterministic entries of `augment.inputs`",
    ) {
        augment.insert("validate".into(), json!({ "inputs": validate }));
    }
    Ok(Value::Object(augment))
}

/// `loader`: batch size, workers, prefetch, device, pinning.
fn loader_section(
    config: &Map<String, Value>,
    batch_size: Option<u64>,
    notes: &mut Vec<String>,
) -> Result<Value, ImportError> {
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
        if d == "cpu" || d == "cuda" || d.starts_with("cuda:") {
            loader.insert("device".into(), json!(d));
        } else {
            notes.push(format!(
                "`device: {d}`: batches are made on `cpu` or `cuda`; `loader.device` stays `cpu`"
            ));
        }
    }
    if let Some(p) = config.get("pin_memory") {
        let p = p
            .as_bool()
            .ok_or_else(|| invalid("pin_memory", "expected true or false"))?;
        loader.insert("pin_memory".into(), json!(p));
    }
    Ok(Value::Object(loader))
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
        assert_eq!(spec.name(), "csc-train");
        assert_eq!(spec.classes(), ["mito", "er", "nuc", "pm"]);
        assert_eq!(spec.inputs()[0].name, "input");
        assert_eq!(spec.inputs()[0].shape_vox, [128, 128, 128]);
        assert_eq!(spec.targets()[0].shape_vox, [64, 64, 64]);
        assert_eq!(spec.loader().batch_size, 8);
        assert_eq!(spec.loader().workers, 1);
        assert!(spec.loader().pin_memory);
        assert_eq!(spec.sampling().iterations_per_epoch, 1000);
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
        assert_eq!(spec.sampling().iterations_per_epoch, 8000);
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
