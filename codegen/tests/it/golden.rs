//! Golden generated code: every example and golden spec generates exactly the checked-in files
//! under `tests/golden/` (regenerate with `UPDATE_GOLDEN=1 cargo test -p cellmap-codegen`), and
//! the `cellmap-golden` crate compiles them. Absolute paths of this checkout are written as
//! `$WORKSPACE` so the files do not depend on where the repository lives.

use std::path::{Path, PathBuf};

use cellmap_codegen::generate::{RuntimeDep, generate};
use cellmap_codegen::names::rust_ident;

use crate::root;

/// The golden specs: the examples and `tests/specs/*.yaml`.
fn golden_specs() -> Vec<PathBuf> {
    let mut specs = Vec::new();
    for dir in ["examples", "tests/specs"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        found.sort();
        specs.extend(found);
    }
    specs
}

fn module_name(spec: &Path) -> String {
    rust_ident(&spec.file_stem().unwrap().to_string_lossy(), &[])
}

/// Write this checkout's absolute path as `$WORKSPACE`; Rust files are formatted again afterwards,
/// since prettyplease breaks lines by their length and the path's length depends on the checkout.
fn normalise(path: &str, text: &str) -> String {
    let workspace = root().canonicalize().unwrap().display().to_string();
    let text = text.replace(&workspace, "$WORKSPACE");
    if !path.ends_with(".rs") {
        return text;
    }
    let header_len: usize = text
        .lines()
        .take_while(|l| l.starts_with("// "))
        .map(|l| l.len() + 1)
        .sum();
    let (header, body) = text.split_at(header_len);
    format!("{header}{}", prettyplease::unparse(&syn::parse_file(body).unwrap()))
}

/// Compare with the checked-in file, or rewrite it with `UPDATE_GOLDEN=1`.
fn check(path: &Path, contents: &str, stale: &mut Vec<String>) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    } else if std::fs::read_to_string(path).ok().as_deref() != Some(contents) {
        stale.push(path.display().to_string());
    }
}

/// The plan embedded in a golden spec's crate: specs under `tests/specs/` are planned against the
/// synthetic dataset next to them (written here, deterministically: seed 3, small, zarr v2; the
/// same data `tests/golden/tests/it.rs` writes), the examples are generated without data.
fn golden_plan(spec_path: &Path, spec: &cellmap_schema::Spec) -> Option<cellmap_runtime::Plan> {
    if !spec_path.starts_with(root().join("tests/specs")) {
        return None;
    }
    let options = cellmap_runtime::synth::SynthOptions {
        seed: 3,
        size: cellmap_runtime::synth::SynthSize::Small,
        variants: vec![cellmap_runtime::synth::SynthVariant::V2],
        force: true,
        ..cellmap_runtime::synth::SynthOptions::default()
    };
    cellmap_runtime::synth::write_synthetic(&spec_path.parent().unwrap().join("data"), &options).unwrap();
    Some(
        cellmap_runtime::plan(spec, cellmap_runtime::PlanOptions::default())
            .unwrap()
            .plan,
    )
}

#[test]
fn generated_code_matches_the_golden_files() {
    let golden = root().join("tests/golden");
    let mut stale = Vec::new();
    let mut modules = Vec::new();
    for spec_path in golden_specs() {
        let text = std::fs::read_to_string(&spec_path).unwrap();
        let spec = cellmap_schema::parse(&text, &spec_path).unwrap().spec;
        let label = spec_path.file_name().unwrap().to_string_lossy().into_owned();
        let plan = golden_plan(&spec_path, &spec);
        let files = generate(
            &spec,
            &text,
            &label,
            &RuntimeDep::Version("0.1.0".into()),
            plan.as_ref(),
        )
        .unwrap();
        let module = module_name(&spec_path);
        for f in &files {
            let target = match f.path.as_str() {
                "src/lib.rs" => golden.join("src").join(format!("{module}.rs")),
                "examples/stream.rs" => golden.join("stream").join(format!("{module}.rs")),
                other => golden.join("crate").join(&module).join(other),
            };
            check(&target, &normalise(&f.path, &f.contents), &mut stale);
        }
        modules.push(module);
    }
    let lib = format!(
        "//! The generated code of the golden specs, compiled as modules (see `codegen/tests/it/golden.rs`).\n\n{}",
        modules
            .iter()
            .map(|m| format!("#[rustfmt::skip]\npub mod {m};\n"))
            .collect::<String>()
    );
    check(&golden.join("src/lib.rs"), &lib, &mut stale);
    assert!(
        stale.is_empty(),
        "stale golden files (run `UPDATE_GOLDEN=1 cargo test -p cellmap-codegen`): {stale:#?}"
    );
}

#[test]
fn generation_is_byte_stable() {
    let spec_path = root().join("examples/full.yaml");
    let text = std::fs::read_to_string(&spec_path).unwrap();
    let spec = cellmap_schema::parse(&text, &spec_path).unwrap().spec;
    let a = generate(&spec, &text, "full.yaml", &RuntimeDep::Version("0.1.0".into()), None).unwrap();
    let b = generate(
        &spec.clone(),
        &text,
        "full.yaml",
        &RuntimeDep::Version("0.1.0".into()),
        None,
    )
    .unwrap();
    assert_eq!(a, b);
    let lib = &a.iter().find(|f| f.path == "src/lib.rs").unwrap().contents;
    assert!(lib.starts_with("// @generated by cellmap-compile "));
    assert!(lib.contains("pub const BATCH_BYTES: u64 = "));
    assert!(lib.contains("pub fn raw_16nm(&self)"));
}
