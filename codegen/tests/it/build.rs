//! `cellmap-compile build`: writes a crate, refuses to clobber, never builds from an invalid spec,
//! maps names deterministically.

use std::path::Path;

use crate::{root, run};

fn spec_with_classes(dir: &Path, classes: &str) -> String {
    std::fs::write(
        dir.join("datasplit.csv"),
        "train,a.zarr/raw,a.zarr/labels/crop1/{class}\n",
    )
    .ok();
    let text = format!(
        "version: 1\nname: names\nclasses: {classes}\narrays:\n  inputs:\n    raw: {{ shape: [8, 8, 8], scale: [8, 8, 8] }}\n  targets:\n    labels: {{ shape: [8, 8, 8], scale: [8, 8, 8] }}\ndata:\n  datasets:\n    - {{ split: train, raw: a.zarr/raw, targets: \"a.zarr/labels/crop1/{{class}}\" }}\n"
    );
    let path = dir.join("names.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn build_writes_a_crate_and_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("crate");
    let out_s = out.display().to_string();
    let first = run(&["build", "examples/full.yaml", "-o", &out_s]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    for f in ["Cargo.toml", "README.md", "src/lib.rs", "examples/stream.rs"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let lib = std::fs::read(out.join("src/lib.rs")).unwrap();
    let again = run(&["build", "examples/full.yaml", "-o", &out_s]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("pass --force"));
    assert_eq!(
        std::fs::read(out.join("src/lib.rs")).unwrap(),
        lib,
        "nothing was touched"
    );
    let forced = run(&["build", "examples/full.yaml", "-o", &out_s, "--force"]);
    assert!(forced.status.success());
    assert_eq!(std::fs::read(out.join("src/lib.rs")).unwrap(), lib, "byte-identical");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("crate")],
        "no temporary folder is left"
    );
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        readme.contains(
            "| `raw_16nm` | `batch.raw_16nm()` | input | `[8, 1, 64, 64, 64]` float16 | [16.0, 16.0, 16.0] | 4194304 |"
        ),
        "{readme}"
    );
}

#[test]
fn an_invalid_spec_never_produces_a_crate() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("crate");
    let built = run(&[
        "build",
        "tests/specs/invalid/zero_shape.yaml",
        "-o",
        &out.display().to_string(),
    ]);
    let checked = run(&["check", "tests/specs/invalid/zero_shape.yaml"]);
    assert_eq!(built.status.code(), Some(1));
    assert!(!out.exists());
    assert_eq!(
        String::from_utf8_lossy(&built.stderr),
        String::from_utf8_lossy(&checked.stdout),
        "the same errors as check"
    );
}

#[test]
fn names_that_are_not_identifiers_are_mapped_and_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with_classes(tmp.path(), "[er-lumen, 2nd, type]");
    let out = tmp.path().join("crate");
    let built = run(&["build", &spec, "-o", &out.display().to_string()]);
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let lib = std::fs::read_to_string(out.join("src/lib.rs")).unwrap();
    for konst in [
        "pub const ER_LUMEN: usize = 0",
        "pub const N_2ND: usize = 1",
        "pub const TYPE_: usize = 2",
    ] {
        assert!(lib.contains(konst), "{konst}");
    }
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        readme.contains("| `er-lumen` | `er_lumen` |") && readme.contains("| `2nd` | `n_2nd` |"),
        "{readme}"
    );
}

#[test]
fn two_names_with_one_identifier_are_an_error_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with_classes(tmp.path(), "[er-lumen, er_lumen]");
    let out = tmp.path().join("crate");
    let built = run(&["build", &spec, "-o", &out.display().to_string()]);
    assert_eq!(built.status.code(), Some(1));
    let err = String::from_utf8_lossy(&built.stderr);
    assert!(
        err.contains("`er-lumen`") && err.contains("`er_lumen`") && err.contains("rename one"),
        "{err}"
    );
    assert!(!out.exists());
    let _ = root();
}

#[test]
fn build_embeds_the_plan_when_the_data_is_readable_and_says_so_when_not() {
    let tmp = tempfile::tempdir().unwrap();
    let synth = run(&["synth", &tmp.path().join("data").display().to_string()]);
    assert!(synth.status.success(), "{}", String::from_utf8_lossy(&synth.stderr));
    let spec = tmp.path().join("data/spec.yaml").display().to_string();
    let lib = |out: &Path| std::fs::read_to_string(out.join("src/lib.rs")).unwrap();

    let planned = tmp.path().join("planned");
    let o = run(&["build", &spec, "-o", &planned.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("note:"));
    let text = lib(&planned);
    assert!(text.contains("pub fn plan() -> ::cellmap_runtime::Plan {"), "{text}");
    assert!(text.contains("::cellmap_runtime::Loader::open_planned(spec(), plan(), options)"));
    let readme = std::fs::read_to_string(planned.join("README.md")).unwrap();
    assert!(
        readme.contains("The crate embeds the plan of the spec's data (`plan()`: 2 datasets"),
        "{readme}"
    );

    let unplanned = tmp.path().join("unplanned");
    let o = run(&["build", &spec, "-o", &unplanned.display().to_string(), "--no-plan"]);
    assert!(o.status.success());
    assert!(!lib(&unplanned).contains("pub fn plan()"));
    assert!(lib(&unplanned).contains("::cellmap_runtime::Loader::open(spec(), options)"));

    // Without its data the crate is still written, and the note says why it has no plan.
    std::fs::remove_dir_all(tmp.path().join("data/v2")).unwrap();
    let missing = tmp.path().join("missing");
    let o = run(&["build", &spec, "-o", &missing.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("the data cannot be planned here, so the crate will plan it"),
        "{stderr}"
    );
    assert!(stderr.contains("v2"), "{stderr}");
    assert_eq!(lib(&missing), lib(&unplanned));
}
