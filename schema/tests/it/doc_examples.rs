//! `check` accepts every example the docs give (issue #16): each `examples` value of the committed
//! JSON Schema (what editors offer), put at its place in a valid spec, and the README's spec.

use serde_json::{Value, json};

use super::root;

/// Every `(pointer, example)` of the schema; `*` stands for any key of a map, `0` for any list element.
fn schema_examples(schema: &Value) -> Vec<(String, Value)> {
    fn walk(node: &Value, defs: &Value, path: &str, depth: usize, out: &mut Vec<(String, Value)>) {
        let Some(obj) = node.as_object() else { return };
        if depth > 12 {
            return;
        }
        if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
            walk(
                &defs[r.rsplit('/').next().unwrap_or_default()],
                defs,
                path,
                depth + 1,
                out,
            );
        }
        for e in obj.get("examples").and_then(Value::as_array).into_iter().flatten() {
            out.push((path.to_owned(), e.clone()));
        }
        for key in ["oneOf", "anyOf", "allOf"] {
            for alt in obj.get(key).and_then(Value::as_array).into_iter().flatten() {
                walk(alt, defs, path, depth + 1, out);
            }
        }
        for (k, v) in obj.get("properties").and_then(Value::as_object).into_iter().flatten() {
            walk(v, defs, &format!("{path}/{k}"), depth + 1, out);
        }
        if let Some(ap) = obj.get("additionalProperties").filter(|v| v.is_object()) {
            walk(ap, defs, &format!("{path}/*"), depth + 1, out);
        }
        if let Some(items) = obj.get("items").filter(|v| v.is_object()) {
            walk(items, defs, &format!("{path}/0"), depth + 1, out);
        }
    }
    let mut out = Vec::new();
    walk(schema, &schema["$defs"], "", 0, &mut out);
    out
}

/// `doc` with `value` at `pointer`: a map's `*` is its first key (`mito` in a new map), a list's `0`
/// its first element (a fresh one, except for `data.datasets`, whose entry stays).
fn put(doc: &mut Value, pointer: &str, value: Value) {
    let segments: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let mut at = doc;
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if *seg == "0" {
            if !at.is_array() || pointer != "/data/datasets/0" && !pointer.starts_with("/data/datasets/0/") {
                *at = json!([{}]);
            }
            at = &mut at[0];
        } else {
            if !at.is_object() {
                *at = json!({});
            }
            let key = match *seg {
                "*" => at
                    .as_object()
                    .and_then(|m| m.keys().next().cloned())
                    .unwrap_or_else(|| "mito".to_owned()),
                k => k.to_owned(),
            };
            at = &mut at[key.as_str()];
        }
        if last {
            *at = value.clone();
        }
    }
}

fn check(doc: &Value, what: &str) {
    let text = serde_json::to_string_pretty(doc).unwrap();
    if let Err(e) = cellmap_schema::parse(&text, &root().join("examples/doc_example.yaml")) {
        panic!("{what}:\n{}\n{text}", cellmap_schema::render_human(&e.0));
    }
}

#[test]
fn every_schema_example_checks_in_a_spec() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("schema/cellmap.schema.json")).unwrap()).unwrap();
    let minimal: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root().join("examples/minimal.yaml")).unwrap()).unwrap();
    let examples = schema_examples(&schema);
    assert!(
        examples.len() >= 10,
        "the walk finds the schema's examples: {examples:?}"
    );
    for (pointer, example) in examples {
        let mut doc = minimal.clone();
        if pointer.starts_with("/data/datasets") {
            doc["data"] = json!({"datasets": [{"split": "train", "raw": "data/a.zarr/raw", "targets": "data/a.zarr/crop1/{class}"}]});
        }
        if pointer == "/sampling/slice_axis" {
            doc["arrays"]["inputs"]["raw"]["shape"] = json!([1, 128, 128]);
            doc["arrays"]["targets"]["labels"]["shape"] = json!([1, 128, 128]);
        }
        put(&mut doc, &pointer, example.clone());
        check(&doc, &format!("{pointer} = {example}"));
    }
}

#[test]
fn the_readme_spec_checks() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let specs: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.contains("\nversion: 1\n"))
        .collect();
    assert!(!specs.is_empty(), "the README shows a spec");
    for spec in specs {
        // Beside `examples/datasplit.csv`, as the README's `data.csv` names it.
        if let Err(e) = cellmap_schema::parse(spec, &root().join("examples/readme.yaml")) {
            panic!("{}\n{spec}", cellmap_schema::render_human(&e.0));
        }
    }
}
