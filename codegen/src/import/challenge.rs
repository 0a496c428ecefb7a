//! The CellMap segmentation challenge's train configuration → cellmap-data keyword arguments.
//!
//! A challenge config is a Python module whose names `cellmap_segmentation_challenge.train(path)`
//! reads (`src/cellmap_segmentation_challenge/train.py`, commit `064c32b`) and hands to its
//! `get_dataloader` (`utils/dataloader.py`, commit `094cac1`), which builds cellmap-data's
//! `CellMapDataSplit` and `CellMapDataLoader`. [`translate`] does what those two functions do to the
//! names that shape the data: renames them to cellmap-data's keywords, wraps a single array's
//! `{shape, scale}` as `{"input": …}` / `{"output": …}`, derives `class_relation_dict` from
//! `use_mutual_exclusion` with the challenge's class table ([`mutual_exclusions`]) and fills in
//! `train()`'s defaults for the names a config leaves out.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::{ImportError, invalid, string_list};

/// Names of a challenge config that shape the data, beside the cellmap-data keywords it shares
/// (`classes`, `batch_size`, `iterations_per_epoch`, `spatial_transforms`, `weighted_sampler`,
/// `device`, the value transforms).
pub(super) const KEYS: &[&str] = &[
    "input_array_info",
    "target_array_info",
    "datasplit_path",
    "random_seed",
    "use_mutual_exclusion",
    "random_validation",
    "validation_time_limit",
    "validation_batch_limit",
    "dataloader_kwargs",
];

/// Names of a challenge config without an effect on the data here, with the reason.
pub(super) const IGNORED: &[(&str, &str)] = &[
    ("model", "the model belongs to your training code"),
    ("model_name", "the model belongs to your training code"),
    ("model_to_load", "the model belongs to your training code"),
    ("model_kwargs", "the model belongs to your training code"),
    ("init_model_features", "the model belongs to your training code"),
    ("load_model", "checkpoints belong to your training code"),
    ("learning_rate", "optimisation belongs to your training code"),
    ("optimizer", "optimisation belongs to your training code"),
    ("scheduler", "optimisation belongs to your training code"),
    ("scheduler_kwargs", "optimisation belongs to your training code"),
    ("criterion", "the loss belongs to your training code"),
    ("criterion_kwargs", "the loss belongs to your training code"),
    (
        "weight_loss",
        "the loss belongs to your training code (`cellmap-compile plan --counts` prints the class voxel counts)",
    ),
    ("max_grad_norm", "optimisation belongs to your training code"),
    (
        "gradient_accumulation_steps",
        "optimisation belongs to your training code; batches stay `batch_size` samples",
    ),
    (
        "epochs",
        "the loader streams epochs for as long as it is read; your training loop counts them",
    ),
    ("model_save_path", "checkpoints belong to your training code"),
    ("logs_save_path", "logs belong to your training code"),
    ("data_base_path", "data paths come from the datasplit CSV"),
    (
        "validation_prob",
        "it only splits crops when the challenge writes a new datasplit CSV; the CSV given is used as it is",
    ),
    (
        "force_all_classes",
        "it only selects crops when the challenge writes a new datasplit CSV; the CSV given is used as it is",
    ),
    (
        "filter_by_scale",
        "it only selects crops when the challenge writes a new datasplit CSV; the CSV given is used as it is",
    ),
    (
        "use_s3",
        "it only says where the challenge looks for crops when it writes a new datasplit CSV",
    ),
];

/// cellmap-data keywords a config may pass to `CellMapDataLoader` through `dataloader_kwargs`.
const LOADER_KWARGS: &[&str] = &["num_workers", "prefetch_factor", "pin_memory", "persistent_workers"];

/// Names that are spelled differently in a challenge config and in cellmap-data's keywords.
const RENAMED: &[(&str, &str)] = &[
    ("input_array_info", "input_arrays"),
    ("target_array_info", "target_arrays"),
    ("datasplit_path", "csv_path"),
    ("random_seed", "seed"),
    ("random_seed", "rng_seed"),
    ("use_mutual_exclusion", "class_relation_dict"),
];

/// True when the configuration uses a name only a challenge config has.
pub(super) fn is_challenge(config: &Map<String, Value>) -> bool {
    config
        .keys()
        .any(|k| KEYS.contains(&k.as_str()) || IGNORED.iter().any(|(i, _)| i == k))
}

/// A challenge config as cellmap-data keyword arguments, plus what has no keyword there.
#[derive(Debug)]
pub(super) struct Translated {
    /// cellmap-data keyword arguments.
    pub(super) config: Map<String, Value>,
    /// `sampling.validation_tiling`, when the config asks for random validation batches.
    pub(super) validation_tiling: Option<bool>,
}

/// A challenge config as cellmap-data keyword arguments: its names renamed, its arrays wrapped,
/// `train()`'s defaults for the names it leaves out (`csv_given`: the caller names the datasplit CSV,
/// so `datasplit_path` needs none), notes on what was decided.
pub(super) fn translate(
    mut config: Map<String, Value>,
    csv_given: bool,
    notes: &mut Vec<String>,
) -> Result<Translated, ImportError> {
    merge_loader_kwargs(&mut config)?;
    apply_train_defaults(&mut config, csv_given, notes);
    rename_arrays(&mut config, notes);
    mutual_exclusion(&mut config, notes)?;
    // get_dataloader builds its CellMapDataSplit with `pad=True`.
    if !config.contains_key("pad") {
        config.insert("pad".into(), json!(true));
        notes.push(
            "the challenge's `get_dataloader` pads crops that extend beyond the data: `sampling.pad: true`".to_owned(),
        );
    }
    let validation_tiling = validation_tiling(&mut config, notes)?;
    Ok(Translated {
        config,
        validation_tiling,
    })
}

/// Refuse a key given under both names; move `dataloader_kwargs` to the top level.
fn merge_loader_kwargs(config: &mut Map<String, Value>) -> Result<(), ImportError> {
    for (challenge, data) in RENAMED {
        let used = |k: &str| config.get(k).is_some_and(|v| !v.is_null() && *v != Value::Bool(false));
        if used(challenge) && used(data) {
            return Err(ImportError::Conflict {
                first: (*challenge).to_owned(),
                second: (*data).to_owned(),
            });
        }
    }
    if let Some(kwargs) = config.remove("dataloader_kwargs").filter(|v| !v.is_null()) {
        let Value::Object(kwargs) = kwargs else {
            return Err(invalid("dataloader_kwargs", "expected {num_workers: …, pin_memory: …}"));
        };
        for (k, v) in kwargs {
            if !LOADER_KWARGS.contains(&k.as_str()) {
                return Err(invalid(
                    "dataloader_kwargs",
                    format!("unknown key `{k}` (known: {})", LOADER_KWARGS.join(", ")),
                ));
            }
            if config.contains_key(&k) {
                return Err(ImportError::Conflict {
                    first: format!("dataloader_kwargs.{k}"),
                    second: k,
                });
            }
            config.insert(k, v);
        }
    }

    Ok(())
}

/// The challenge's `train()` defaults for what the config leaves out, with a note naming them.
fn apply_train_defaults(config: &mut Map<String, Value>, csv_given: bool, notes: &mut Vec<String>) {
    let mut defaulted = Vec::new();
    let mut default = |config: &mut Map<String, Value>, key: &str, value: Value| {
        if config.get(key).is_none_or(Value::is_null) {
            defaulted.push(format!("`{key}: {value}`"));
            config.insert(key.to_owned(), value);
        }
    };
    default(config, "classes", json!(["nuc", "er"]));
    default(config, "batch_size", json!(8));
    default(config, "iterations_per_epoch", json!(1000));
    if !config.contains_key("seed") && !config.contains_key("rng_seed") {
        default(config, "random_seed", json!(42));
    }
    default(config, "weighted_sampler", json!(true));
    if !config.contains_key("input_arrays") {
        default(
            config,
            "input_array_info",
            json!({"shape": [1, 128, 128], "scale": [8, 8, 8]}),
        );
    }
    default(
        config,
        "spatial_transforms",
        json!({
            "mirror": {"axes": {"x": 0.5, "y": 0.5}},
            "transpose": {"axes": ["x", "y"]},
            "rotate": {"axes": {"x": [-180, 180], "y": [-180, 180]}},
        }),
    );
    if !csv_given && !config.contains_key("csv_path") {
        default(config, "datasplit_path", json!("datasplit.csv"));
    }
    if !defaulted.is_empty() {
        notes.push(format!(
            "not in the config, so the challenge's `train()` defaults apply: {}",
            defaulted.join(", ")
        ));
    }
}

/// `input_array_info`/`target_array_info` as cellmap-data's array dicts; challenge names of the
/// datasplit path and seed as cellmap-data's.
fn rename_arrays(config: &mut Map<String, Value>, notes: &mut Vec<String>) {
    // get_dataloader: a single `{shape, scale}` is the array `input` (`output`); the target
    // defaults to the input's info.
    let input = config.remove("input_array_info").filter(|v| !v.is_null());
    if let Some(info) = &input {
        config.insert("input_arrays".into(), wrap(info.clone(), "input"));
    }
    match (config.remove("target_array_info").filter(|v| !v.is_null()), input) {
        (Some(info), _) => {
            config.insert("target_arrays".into(), wrap(info, "output"));
        }
        (None, Some(info)) if !config.contains_key("target_arrays") => {
            notes.push(
                "`target_array_info` not in the config: the target takes `input_array_info`, as `train()` does"
                    .to_owned(),
            );
            config.insert("target_arrays".into(), wrap(info, "output"));
        }
        (None, _) => {}
    }
    for (challenge, data) in [("datasplit_path", "csv_path"), ("random_seed", "seed")] {
        if let Some(v) = config.remove(challenge) {
            config.insert(data.to_owned(), v);
        }
    }
}

/// `use_mutual_exclusion: true` as `class_relation_dict` from the challenge's class table.
fn mutual_exclusion(config: &mut Map<String, Value>, notes: &mut Vec<String>) -> Result<(), ImportError> {
    if let Some(v) = config.remove("use_mutual_exclusion").filter(|v| !v.is_null()) {
        let on = v
            .as_bool()
            .ok_or_else(|| invalid("use_mutual_exclusion", "expected true or false"))?;
        if on {
            let classes = string_list("classes", config.get("classes").unwrap_or(&Value::Null))?;
            let (relations, unknown) = mutual_exclusions(&classes);
            if !unknown.is_empty() {
                notes.push(format!(
                    "`use_mutual_exclusion`: the challenge's class table has no {}; no relations for it, as in the challenge",
                    unknown.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                ));
            }
            let relations: Map<String, Value> = relations.into_iter().map(|(k, v)| (k, json!(v))).collect();
            config.insert("class_relation_dict".into(), Value::Object(relations));
        }
    }
    Ok(())
}

/// `Some(false)` when the challenge would draw random validation batches.
fn validation_tiling(config: &mut Map<String, Value>, notes: &mut Vec<String>) -> Result<Option<bool>, ImportError> {
    // train() draws random validation batches when the validation is limited.
    let mut random = Vec::new();
    for key in ["random_validation", "validation_time_limit", "validation_batch_limit"] {
        match config.remove(key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) if key == "random_validation" => random.push(key),
            Some(Value::Number(n)) if key != "random_validation" && n.as_f64().is_some_and(|v| v > 0.0) => {
                notes.push(format!(
                    "`{key}` ends the challenge's validation loop early; stop yours after as many batches or seconds"
                ));
                random.push(key);
            }
            Some(Value::Number(_)) if key != "random_validation" => {}
            Some(other) => {
                return Err(invalid(key, format!("expected {}, got `{other}`", expected_for(key))));
            }
        }
    }
    Ok((!random.is_empty()).then(|| {
        notes.push(format!(
            "with {} the challenge draws random validation batches: `sampling.validation_tiling: false`",
            random.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ));
        false
    }))
}

fn expected_for(key: &str) -> &'static str {
    if key == "random_validation" {
        "true or false"
    } else {
        "a number or null"
    }
}

/// `get_dataloader`'s reading of an array info: one `{shape, scale}` becomes `{name: info}`, anything
/// else is taken as `{name: {shape, scale}}` already.
fn wrap(info: Value, name: &str) -> Value {
    match info {
        Value::Object(map) if map.contains_key("shape") || map.contains_key("scale") => {
            json!({ name: Value::Object(map) })
        }
        other => other,
    }
}

/// The challenge's class table: `(name, label id, ids of the labels it includes)`, from
/// `src/cellmap_segmentation_challenge/utils/classes.csv` of janelia-cellmap/cellmap-segmentation-challenge
/// (commit `7f92694`). A class covers its own id and the ids it includes.
const CLASSES: &[(&str, u32, &[u32])] = &[
    ("ecs", 1, &[]),
    ("pm", 2, &[]),
    ("mito_mem", 3, &[]),
    ("mito_lum", 4, &[]),
    ("mito_ribo", 5, &[]),
    ("golgi_mem", 6, &[]),
    ("golgi_lum", 7, &[]),
    ("ves_mem", 8, &[]),
    ("ves_lum", 9, &[]),
    ("endo_mem", 10, &[]),
    ("endo_lum", 11, &[]),
    ("lyso_mem", 12, &[]),
    ("lyso_lum", 13, &[]),
    ("ld_mem", 14, &[]),
    ("ld_lum", 15, &[]),
    ("er_mem", 16, &[]),
    ("er_lum", 17, &[]),
    ("eres_mem", 18, &[]),
    ("eres_lum", 19, &[]),
    ("ne_mem", 20, &[]),
    ("ne_lum", 21, &[]),
    ("np_out", 22, &[]),
    ("np_in", 23, &[]),
    ("hchrom", 24, &[]),
    ("nhchrom", 25, &[]),
    ("echrom", 26, &[]),
    ("nechrom", 27, &[]),
    ("nucpl", 28, &[]),
    ("nucleo", 29, &[]),
    ("mt_out", 30, &[]),
    ("cent", 31, &[]),
    ("cent_dapp", 32, &[]),
    ("cent_sdapp", 33, &[]),
    ("ribo", 34, &[]),
    ("cyto", 35, &[]),
    ("mt_in", 36, &[]),
    ("nuc", 37, &[20, 21, 22, 23, 24, 25, 26, 27, 28, 29]),
    ("vim", 38, &[]),
    ("glyco", 39, &[]),
    ("golgi", 40, &[6, 7]),
    ("ves", 41, &[8, 9]),
    ("endo", 42, &[10, 11]),
    ("lyso", 43, &[12, 13]),
    ("ld", 44, &[14, 15]),
    ("rbc", 45, &[]),
    ("eres", 46, &[18, 19]),
    ("perox_mem", 47, &[]),
    ("perox_lum", 48, &[]),
    ("perox", 49, &[47, 48]),
    ("mito", 50, &[3, 4, 5]),
    ("er", 51, &[16, 17, 18, 19, 20, 21, 22, 23]),
    ("ne", 52, &[20, 21, 22, 23]),
    ("np", 53, &[22, 23]),
    ("chrom", 54, &[24, 25, 26, 27]),
    ("mt", 55, &[30, 36]),
    ("isg_mem", 56, &[]),
    ("isg_lum", 57, &[]),
    ("isg_ins", 58, &[]),
    ("isg", 59, &[56, 57, 58]),
    (
        "cell",
        60,
        &[
            2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
            31, 32, 33, 34, 35, 36, 38, 39, 47, 48, 56, 57, 58, 61, 62,
        ],
    ),
    ("actin", 61, &[]),
    ("tbar", 62, &[]),
    ("bm", 63, &[]),
    ("er_mem_all", 64, &[16, 18, 20]),
    ("ne_mem_all", 65, &[20, 22, 23]),
    ("cent_all", 66, &[31, 32, 33]),
    ("chloroplast_mem", 67, &[]),
    ("chloroplast_lum", 68, &[]),
    ("chloroplast_sg", 69, &[]),
    ("chloroplast", 70, &[67, 68, 69]),
    ("vacuole_mem", 71, &[]),
    ("vacuole_lum", 72, &[]),
    ("vacuole", 73, &[71, 72]),
    ("plasmodesmata", 74, &[]),
];

/// The challenge's `get_class_relations(named_classes=classes)` (`utils/datasplit.py`, commit
/// `0aaf36d`): two of `classes` are mutually exclusive when the label ids they cover are disjoint.
/// Returns the relations in `classes` order (classes without any left out) and the classes the
/// table does not have (they get no relations, as there).
pub(super) fn mutual_exclusions(classes: &[String]) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let covered = |name: &str| -> Option<BTreeSet<u32>> {
        CLASSES
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, id, included)| included.iter().copied().chain([*id]).collect())
    };
    let mut known: Vec<(&String, BTreeSet<u32>)> = Vec::new();
    let mut unknown = Vec::new();
    for c in classes {
        if known.iter().any(|(k, _)| *k == c) || unknown.contains(c) {
            continue;
        }
        match covered(c) {
            Some(ids) => known.push((c, ids)),
            None => unknown.push(c.clone()),
        }
    }
    let relations = known
        .iter()
        .filter_map(|(a, ids_a)| {
            let exclusive: Vec<String> = known
                .iter()
                .filter(|(b, ids_b)| a != b && ids_a.is_disjoint(ids_b))
                .map(|(b, _)| (*b).clone())
                .collect();
            (!exclusive.is_empty()).then(|| ((*a).clone(), exclusive))
        })
        .collect();
    (relations, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn exclusions_follow_the_label_ids_each_class_covers() {
        let (relations, unknown) = mutual_exclusions(&names(&["nuc", "er", "mito", "cell", "ecs", "ne", "golgi_x"]));
        assert_eq!(unknown, ["golgi_x"]);
        let get = |c: &str| relations.iter().find(|(k, _)| k == c).map(|(_, v)| v.clone());
        // nuc and er share the nuclear envelope (ids 20–23); ne lies in both.
        assert_eq!(get("nuc").unwrap(), ["mito", "ecs"]);
        assert_eq!(get("er").unwrap(), ["mito", "ecs"]);
        assert_eq!(get("mito").unwrap(), ["nuc", "er", "ecs", "ne"]);
        // The cell covers every organelle but not the extracellular space.
        assert_eq!(get("cell").unwrap(), ["ecs"]);
        assert_eq!(get("ecs").unwrap(), ["nuc", "er", "mito", "cell", "ne"]);
        assert_eq!(get("ne").unwrap(), ["mito", "ecs"]);
    }

    #[test]
    fn the_table_has_every_id_once_and_includes_only_known_ids() {
        let ids: BTreeSet<u32> = CLASSES.iter().map(|(_, id, _)| *id).collect();
        assert_eq!(ids.len(), CLASSES.len());
        assert_eq!(ids, (1..=74).collect());
        assert!(CLASSES.iter().all(|(_, _, inc)| inc.iter().all(|i| ids.contains(i))));
    }
}
