//! The committed `schema/cellmap.schema.json` is what the code generates.

use super::root;

#[test]
fn committed_schema_is_current() {
    let path = root().join("schema/cellmap.schema.json");
    let generated = cellmap_schema::json_schema_string();
    if std::env::var_os("CELLMAP_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/cellmap.schema.json is stale; regenerate it with `CELLMAP_UPDATE_SCHEMA=1 cargo test -p cellmap-schema` \
         or `cargo run -p cellmap-codegen -- schema > schema/cellmap.schema.json`"
    );
}

#[test]
fn schema_documents_defaults() {
    let schema = cellmap_schema::json_schema();
    let loader = &schema["$defs"]["RawLoader"]["properties"];
    assert_eq!(loader["workers"]["default"], 2);
    assert_eq!(loader["prefetch"]["default"], 4);
    assert_eq!(loader["device"]["default"], "cpu");
    assert_eq!(loader["cache_bytes"]["default"], 1u64 << 30);
    assert_eq!(
        schema["$defs"]["RawSampling"]["properties"]["iterations_per_epoch"]["default"],
        1000
    );
    assert_eq!(
        schema["$defs"]["RawSampling"]["properties"]["pad_value"]["default"]["targets"],
        "nan"
    );
    assert!(
        loader["on_error"]["description"]
            .as_str()
            .unwrap()
            .contains("Default: `fail`")
    );
}
