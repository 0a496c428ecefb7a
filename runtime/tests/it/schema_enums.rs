//! The schema offers nothing the loader refuses (issue #16): every enumerated value of the
//! committed JSON Schema (`schema/cellmap.schema.json`), found by walking it, is put into the fixture
//! spec, validated, planned, and read (one batch; one prediction run for `predict`'s keys).
//! An enum the walk finds without a recipe below fails the test: add one.

use std::collections::BTreeSet;
use std::path::Path;

use cellmap_runtime::predict::{PredictPlan, Writer, run_identity};
use cellmap_runtime::{DistInfo, Loader, synth::SynthVariant};
use cellmap_schema::Split;
use serde_json::{Value, json};

use crate::loader::{options, spec_doc, spec_of, synth};

/// Every `(pointer, value)` of a string `enum` or `const` in the schema. Pointers are spec-document
/// paths: `*` for any key of a map, `0` for any element of a list.
fn enum_values(schema: &Value) -> BTreeSet<(String, String)> {
    let defs = &schema["$defs"];
    let mut out = BTreeSet::new();
    walk(schema, defs, String::new(), &mut BTreeSet::new(), &mut out);
    out
}

fn walk(
    node: &Value,
    defs: &Value,
    path: String,
    seen: &mut BTreeSet<(String, String)>,
    out: &mut BTreeSet<(String, String)>,
) {
    let Some(obj) = node.as_object() else { return };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or_default().to_owned();
        if seen.insert((name.clone(), path.clone())) {
            walk(&defs[&name], defs, path.clone(), seen, out);
        }
    }
    for v in obj.get("enum").and_then(Value::as_array).into_iter().flatten() {
        if let Some(s) = v.as_str() {
            out.insert((path.clone(), s.to_owned()));
        }
    }
    if let Some(s) = obj.get("const").and_then(Value::as_str) {
        out.insert((path.clone(), s.to_owned()));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for alt in obj.get(key).and_then(Value::as_array).into_iter().flatten() {
            walk(alt, defs, path.clone(), seen, out);
        }
    }
    for (k, v) in obj.get("properties").and_then(Value::as_object).into_iter().flatten() {
        walk(v, defs, format!("{path}/{k}"), seen, out);
    }
    if let Some(ap) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        walk(ap, defs, format!("{path}/*"), seen, out);
    }
    if let Some(items) = obj.get("items").filter(|v| v.is_object()) {
        walk(items, defs, format!("{path}/0"), seen, out);
    }
}

/// How a value at `pointer` goes into a valid spec, and which split it is read on.
fn recipe(pointer: &str, v: &str, doc: &mut Value) -> Option<Split> {
    let s = json!(v);
    let normalize = |scale_only: bool| {
        if scale_only {
            json!({"normalize": {"scale": v}})
        } else {
            json!({"normalize": v})
        }
    };
    let binarize = json!({"binarize": {"threshold": 0}});
    let mut split = Split::Train;
    match pointer {
        "/arrays/inputs/*/interpolation" => doc["arrays"]["inputs"]["raw"]["interpolation"] = s,
        "/arrays/inputs/*/dtype" => doc["arrays"]["inputs"]["raw"]["dtype"] = s,
        "/arrays/targets/*/interpolation" => doc["arrays"]["targets"]["labels"]["interpolation"] = s,
        "/arrays/targets/*/dtype" => doc["arrays"]["targets"]["labels"]["dtype"] = s,
        "/data/datasets/0/split" => {
            doc["data"]["datasets"][1]["split"] = s;
            split = match v {
                "train" => Split::Train,
                "validate" => Split::Validate,
                _ => Split::Test,
            };
        }
        "/data/datasets/0/normalize" => doc["data"]["datasets"][0]["normalize"] = s,
        "/data/datasets/0/normalize/scale" => doc["data"]["datasets"][0]["normalize"] = json!({"scale": v}),
        "/sampling/weighting" => doc["sampling"]["weighting"] = s,
        "/sampling/slice_axis" => {
            doc["arrays"]["inputs"]["raw"]["shape"] = json!([1, 16, 16]);
            doc["arrays"]["targets"]["labels"]["shape"] = json!([1, 12, 12]);
            doc["sampling"]["slice_axis"] = s;
        }
        "/sampling/pad_value/inputs" | "/sampling/pad_value/targets" => {
            let which = pointer.rsplit('/').next().unwrap_or_default();
            doc["sampling"]["pad"] = json!(true);
            doc["sampling"]["pad_value"] = json!({ which: v });
        }
        "/augment/spatial/transpose/0" => doc["augment"]["spatial"] = json!({"transpose": [v]}),
        "/augment/inputs/0/normalize" | "/augment/inputs/0/normalize/scale" => {
            doc["augment"]["inputs"] = json!([normalize(pointer.ends_with("scale"))]);
        }
        "/augment/targets/0/normalize" | "/augment/targets/0/normalize/scale" => {
            doc["augment"]["targets"] = json!([normalize(pointer.ends_with("scale")), binarize]);
        }
        "/augment/per_class/*/0/normalize" | "/augment/per_class/*/0/normalize/scale" => {
            doc["augment"]["per_class"] = json!({"mito": [normalize(pointer.ends_with("scale")), binarize]});
        }
        "/augment/validate/inputs/0/normalize" | "/augment/validate/inputs/0/normalize/scale" => {
            doc["augment"]["validate"] = json!({"inputs": [normalize(pointer.ends_with("scale"))]});
            split = Split::Validate;
        }
        "/augment/validate/targets/0/normalize" | "/augment/validate/targets/0/normalize/scale" => {
            doc["augment"]["validate"] = json!({"targets": [normalize(pointer.ends_with("scale")), binarize]});
            split = Split::Validate;
        }
        "/loader/on_error" => doc["loader"]["on_error"] = s,
        "/predict/dtype" | "/predict/region" => {
            let key = pointer.rsplit('/').next().unwrap_or_default();
            doc["predict"] = json!({
                "output": "predictions.zarr/{dataset}/{class}",
                "model_classes": ["mito", "er"],
                "tile": [16, 16, 16],
                key: v,
            });
        }
        _ => return None,
    }
    Some(split)
}

#[test]
fn every_enum_value_of_the_schema_validates_plans_and_reads() {
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/cellmap.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&schema_path).unwrap()).unwrap();
    let values = enum_values(&schema);
    // The walk finds what the schema offers (a broken walk would find nothing and pass).
    for must in [
        ("/arrays/inputs/*/dtype", "bfloat16"),
        ("/sampling/weighting", "voxel_weighted"),
        ("/predict/region", "validation"),
        ("/sampling/slice_axis", "any"),
    ] {
        assert!(
            values.contains(&(must.0.to_owned(), must.1.to_owned())),
            "{must:?} not found"
        );
    }
    assert!(values.len() >= 45, "{} enum values", values.len());
    let f = synth(SynthVariant::V3);
    let tmp = tempfile::tempdir().unwrap();
    let mut missing = Vec::new();
    for (pointer, value) in &values {
        let mut doc = spec_doc(&f.dir);
        let Some(split) = recipe(pointer, value, &mut doc) else {
            missing.push(pointer.clone());
            continue;
        };
        if let Some(p) = doc.get_mut("predict") {
            p["output"] = json!(
                tmp.path()
                    .join(format!("{value}.zarr/{{dataset}}/{{class}}"))
                    .display()
                    .to_string()
            );
        }
        let spec = spec_of(&doc);
        if spec.predict().is_some() {
            let plan =
                std::sync::Arc::new(PredictPlan::new(&spec).unwrap_or_else(|e| panic!("{pointer} = {value}: {e}")));
            let writer = Writer::create(plan).unwrap();
            let run = run_identity(&spec, &writer, DistInfo::single(), 2, 0).unwrap();
            assert!(run.tiles_written > 0, "{pointer} = {value}");
            continue;
        }
        let mut loader = Loader::open(spec, options(split)).unwrap_or_else(|e| panic!("{pointer} = {value}: {e}"));
        let batch = loader
            .next_batch()
            .unwrap_or_else(|| panic!("{pointer} = {value}: no batch"));
        let batch = batch.unwrap_or_else(|e| panic!("{pointer} = {value}: {e}"));
        assert!(!batch.is_empty(), "{pointer} = {value}");
    }
    assert!(
        missing.is_empty(),
        "schema enums without a recipe in this test: {missing:?}"
    );
}
