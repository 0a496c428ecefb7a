//! Integration tests of cellmap-schema: examples, the committed schema, the invalid catalogue, fuzzing.

mod augment;
mod catalogue;
mod datasplit;
mod doc_examples;
mod examples;
mod fuzz;
mod intensity;
mod remote;
mod schema_file;

use std::path::PathBuf;

/// The workspace root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
