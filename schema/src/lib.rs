//! The cellmap-compile spec: its types, YAML parsing with locations, the JSON Schema, and validation.
//!
//! A spec goes through four stages, each reporting every problem it finds with `file:line:column` and a
//! JSON pointer: hostile-input checks and YAML parsing (serde-saphyr, under budgets), JSON Schema
//! validation (the schema is generated from [`RawSpec`]), deserialisation into [`RawSpec`], and semantic
//! checks producing the validated [`Spec`] (including the datasplit CSV).
//!
//! ```
//! let text = "version: 1\nname: demo\nclasses: [mito]\narrays:\n  inputs: {raw: {shape: [8, 8], scale: [4, 4]}}\n  targets: {labels: {shape: [8, 8], scale: [4, 4]}}\ndata:\n  datasets: [{split: train, raw: /d/a.zarr/raw, targets: '/d/a.zarr/crop1/{class}'}]\n";
//! let checked = cellmap_schema::parse(text, std::path::Path::new("demo.yaml")).unwrap();
//! assert_eq!(checked.spec.inputs()[0].shape_vox, [1, 8, 8]);
//!
//! let bad = text.replace("classes: [mito]", "clases: [mito]");
//! let errors = cellmap_schema::parse(&bad, std::path::Path::new("demo.yaml")).unwrap_err();
//! assert_eq!(errors.0[0].hint.as_deref(), Some("did you mean `classes`?"));
//! ```

mod datasplit;
mod diagnostic;
mod json_schema;
mod raw;
mod spec;
mod validate;
mod yaml;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use diagnostic::{Diagnostic, Diagnostics, Severity, render_github, render_human, render_json};
pub use json_schema::{json_schema, json_schema_string};
pub use raw::*;
pub use spec::*;
pub use yaml::MAX_SPEC_BYTES;

/// A valid spec and the warnings found while checking it.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The validated spec.
    pub spec: Spec,
    /// Adjustments and doubts (e.g. class relations made symmetric), for the caller to show.
    pub warnings: Vec<Diagnostic>,
}

/// Reads and checks the spec at `path`. Files over [`MAX_SPEC_BYTES`] are refused without reading them
/// whole; non-UTF-8 files are refused with the position of the first bad byte.
pub fn load(path: &Path) -> Result<Checked, Diagnostics> {
    let fail = |message: String| Diagnostics(vec![Diagnostic::error(path, (1, 1), "", message)]);
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read spec: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_SPEC_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read spec: {e}")))?;
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(Diagnostics(vec![
            Diagnostic::error(
                path,
                (1, 1),
                "",
                format!("spec is over the limit of {MAX_SPEC_BYTES} bytes"),
            )
            .hint("a spec is a few KiB of YAML; is this the right file?"),
        ]));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
            let column = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
            return Err(Diagnostics(vec![
                Diagnostic::error(path, (line, column), "", "spec is not valid UTF-8").hint("save the file as UTF-8"),
            ]));
        }
    };
    parse(&text, path)
}

/// Checks a spec given as text; `path` names it in diagnostics and relative data paths resolve against its
/// folder.
pub fn parse(text: &str, path: &Path) -> Result<Checked, Diagnostics> {
    let (doc, positions) = yaml::parse(text, path).map_err(Diagnostics)?;
    let schema_errors = json_schema::validate(&doc, path, &positions);
    if !schema_errors.is_empty() {
        return Err(Diagnostics(schema_errors));
    }
    let mut doc = doc;
    whole_floats_to_integers(&mut doc);
    let raw: RawSpec = serde_json::from_value(doc).map_err(|e| {
        Diagnostics(vec![Diagnostic::error(
            path,
            (1, 1),
            "",
            format!("spec does not match its schema: {e}"),
        )])
    })?;
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let source = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut checker = validate::Checker {
        file: path,
        positions: &positions,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    match validate::build(raw, &mut checker, source, &base_dir) {
        Some(spec) => Ok(Checked {
            spec,
            warnings: checker.warnings,
        }),
        None => {
            let mut errors = checker.errors;
            errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            Err(Diagnostics(errors))
        }
    }
}

/// `8.0` → `8`: the schema accepts whole floats as integers (JSON Schema does), so serde must too.
/// Recursion is bounded by the parser's depth budget.
fn whole_floats_to_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64()
                && !n.is_i64()
                && !n.is_u64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *value = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_floats_to_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(whole_floats_to_integers),
        _ => {}
    }
}
