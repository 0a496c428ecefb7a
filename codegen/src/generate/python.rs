//! Spec → the Python face of a loader crate (`build --python`): a pure-Python package over
//! `cellmap_compile` (the project's Python package, `python/`) with the spec compiled in.
//!
//! ```text
//! DIR/pyproject.toml                 setuptools, depends on cellmap-compile (templates/pyproject.toml.in)
//! DIR/python/<crate>/__init__.py     constants, the spec text, the plan (JSON) and a `Loader` (templates/)
//! DIR/python/<crate>/__init__.pyi    its type stubs, with the spec's array names
//! ```
//!
//! The loading, the DLPack hand-off and the errors are `cellmap_compile`'s: the package adds the
//! spec's names and shapes as constants and opens the data against the plan made at build time.

use std::collections::BTreeMap;

use cellmap_runtime::Plan;
use cellmap_schema::Spec;

use super::{GenerateError, GeneratedFile, TOOL_VERSION, fill, spec_hash};
use crate::names::rust_names;

/// Keys of the batch dict besides the arrays; no array may use them.
pub const META_KEYS: [&str; 3] = ["idx", "dataset", "centre_nm"];

/// The Python files of a spec's crate (added to [`super::generate`]'s with `--python`); `plan`
/// (of the spec's data) is compiled in when given.
pub fn generate_python(
    spec: &Spec,
    spec_text: &str,
    spec_label: &str,
    plan: Option<&Plan>,
) -> Result<Vec<GeneratedFile>, GenerateError> {
    let names = rust_names(spec)?;
    if let Some(clash) = spec
        .inputs()
        .iter()
        .chain(spec.targets())
        .find(|a| META_KEYS.contains(&a.name.as_str()))
    {
        return Err(GenerateError::PythonName(clash.name.clone()));
    }
    let package = names.crate_ident.clone();
    let mut vars = BTreeMap::new();
    vars.insert("name", spec.name().to_owned());
    vars.insert("package", package.clone());
    vars.insert("tool_version", TOOL_VERSION.to_owned());
    vars.insert("spec_label", spec_label.to_owned());
    vars.insert("spec_hash", spec_hash(spec_text));
    vars.insert("batch_size", spec.loader().batch_size.to_string());
    vars.insert("classes", python_list(spec.classes().iter()));
    vars.insert("inputs", python_list(spec.inputs().iter().map(|a| &a.name)));
    vars.insert("targets", python_list(spec.targets().iter().map(|a| &a.name)));
    vars.insert("batch_fields", batch_fields(spec));
    vars.insert("spec_text", python_str(spec_text));
    vars.insert("spec_source", python_str(&spec.source().display().to_string()));
    let plan = match plan {
        Some(p) => python_str(&serde_json::to_string(p).map_err(|e| GenerateError::Syntax(e.to_string()))?),
        None => "None".to_owned(),
    };
    vars.insert("plan", plan);
    Ok(vec![
        GeneratedFile {
            path: "pyproject.toml".into(),
            contents: fill(include_str!("../../../templates/pyproject.toml.in"), &vars),
        },
        GeneratedFile {
            path: format!("python/{package}/__init__.py"),
            contents: fill(include_str!("../../../templates/python-init.py.in"), &vars),
        },
        GeneratedFile {
            path: format!("python/{package}/__init__.pyi"),
            contents: fill(include_str!("../../../templates/python-init.pyi.in"), &vars),
        },
        GeneratedFile {
            path: format!("python/{package}/py.typed"),
            contents: String::new(),
        },
    ])
}

/// A Python string literal (a JSON string literal is one).
fn python_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A Python list literal of strings (JSON string escapes are valid Python).
fn python_list<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let quoted: Vec<String> = items
        .map(|s| serde_json::Value::String(s.clone()).to_string())
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// The `Batch` TypedDict's fields for the stub, one line per array.
fn batch_fields(spec: &Spec) -> String {
    let b = spec.loader().batch_size;
    let c = spec.classes().len();
    let mut s = String::new();
    for (a, channels, kind) in spec
        .inputs()
        .iter()
        .map(|a| (a, 1, "input"))
        .chain(spec.targets().iter().map(|a| (a, c, "target")))
    {
        let [z, y, x] = a.shape_vox;
        let key = serde_json::Value::String(a.name.clone()).to_string();
        let shape = if spec.is_2d() {
            format!("[{b}, {channels}, {y}, {x}]")
        } else {
            format!("[{b}, {channels}, {z}, {y}, {x}]")
        };
        s.push_str(&format!("        {key}: torch.Tensor,  # {kind}, float32 {shape}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const SPEC: &str = "version: 1\nname: my-cells\nclasses: [mito, er]\narrays:\n  inputs:\n    raw: { shape: [8, 8, 8], scale: [4, 4, 4] }\n  targets:\n    labels: { shape: [4, 4, 4], scale: [4, 4, 4] }\ndata:\n  datasets:\n    - { split: train, raw: /data/a.zarr/raw, targets: \"/data/a.zarr/labels/{class}\" }\n";

    fn files(text: &str) -> Result<Vec<GeneratedFile>, GenerateError> {
        let spec = cellmap_schema::parse(text, Path::new("/specs/spec.yaml")).unwrap().spec;
        generate_python(&spec, text, "spec.yaml", None)
    }

    #[test]
    fn the_package_files_are_byte_stable_and_carry_the_spec() {
        let a = files(SPEC).unwrap();
        assert_eq!(a, files(SPEC).unwrap());
        let paths: Vec<&str> = a.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "pyproject.toml",
                "python/my_cells/__init__.py",
                "python/my_cells/__init__.pyi",
                "python/my_cells/py.typed"
            ]
        );
        let text = |p: &str| a.iter().find(|f| f.path == p).unwrap().contents.clone();
        let pyproject = text("pyproject.toml");
        assert!(pyproject.contains("name = \"my_cells\"\n"), "{pyproject}");
        assert!(
            pyproject.contains(&format!(
                "dependencies = [\"cellmap-compile>={TOOL_VERSION}\", \"torch>=2.1\"]\n"
            )),
            "{pyproject}"
        );
        let init = text("python/my_cells/__init__.py");
        assert!(init.contains("INPUTS: list[str] = [\"raw\"]\n"));
        assert!(init.contains("CLASSES: list[str] = [\"mito\", \"er\"]\n"));
        assert!(init.contains("BATCH_SIZE = 1\n"));
        assert!(init.contains("PLAN: str | None = None\n"));
        let literal = format!("SPEC = SpecText({}, \"/specs/spec.yaml\")\n", python_str(SPEC));
        assert!(init.contains(&literal), "{init}");
        let stub = text("python/my_cells/__init__.pyi");
        assert!(
            stub.contains("        \"labels\": torch.Tensor,  # target, float32 [1, 2, 4, 4, 4]\n"),
            "{stub}"
        );
        assert!(
            !a.iter().any(|f| f.contents.contains("{{")),
            "an unfilled template variable"
        );
    }

    #[test]
    fn an_array_named_like_a_metadata_key_is_an_error() {
        let err = files(&SPEC.replace("labels:", "idx:")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "array `idx` clashes with a metadata key of the Python batch dict (`idx`, `dataset`, `centre_nm`); rename it in the spec"
        );
    }
}
