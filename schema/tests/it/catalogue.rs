//! The invalid-spec catalogue `tests/specs/invalid/*.yaml`: each fails with the golden text in the `.txt`
//! beside it (regenerate with `UPDATE_GOLDEN=1 cargo test -p cellmap-schema`), plus generated hostile files.

use std::time::{Duration, Instant};

use super::root;

fn render(path: &std::path::Path) -> String {
    let errors = match cellmap_schema::load(path) {
        Ok(_) => panic!("{} is valid", path.display()),
        Err(e) => e,
    };
    assert!(errors.error_count() >= 1);
    for d in &errors.0 {
        assert!(d.line >= 1 && d.column >= 1);
    }
    let prefix = format!("{}/", root().display());
    cellmap_schema::render_human(&errors.0).replace(&prefix, "")
}

#[test]
fn invalid_specs_match_their_golden_errors() {
    let dir = root().join("tests/specs/invalid");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            names.push(path);
        }
    }
    names.sort();
    assert!(names.len() >= 25, "{}", names.len());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for path in &names {
        let got = render(path);
        let golden = path.with_extension("txt");
        if update {
            std::fs::write(&golden, &got).unwrap();
        } else if std::fs::read_to_string(&golden).unwrap_or_default() != got {
            stale.push(format!("{}:\n{got}", golden.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "golden files differ (UPDATE_GOLDEN=1 cargo test -p cellmap-schema):\n{}",
        stale.join("\n")
    );
}

#[test]
fn hostile_files_fail_fast() {
    for name in ["deep_nesting", "billion_laughs"] {
        let start = Instant::now();
        render(&root().join(format!("tests/specs/invalid/{name}.yaml")));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{name} took {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn huge_file_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let line = "# padding padding padding padding padding padding padding padding\n";
    std::fs::write(&path, line.repeat(64 << 20 >> 6)).unwrap();
    let start = Instant::now();
    let errors = cellmap_schema::load(&path).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].message, "spec is over the limit of 1048576 bytes");
    assert_eq!((errors.0[0].line, errors.0[0].column), (1, 1));
    let text = "a: 1\n".repeat(300_000);
    let errors = cellmap_schema::parse(&text, &path).unwrap_err();
    assert_eq!(
        errors.0[0].message,
        "spec is 1500000 bytes, over the limit of 1048576 bytes"
    );
}

#[test]
fn all_schema_errors_are_reported_at_once() {
    let text = std::fs::read_to_string(root().join("examples/minimal.yaml"))
        .unwrap()
        .replace("scale: [8, 8, 8] }\n  targets", "scale: [8, 8, -1, 3] }\n  targets")
        .replace("batch_size: 8", "batch_size: 0\n  wrkers: 3");
    let errors = cellmap_schema::parse(&text, std::path::Path::new("spec.yaml")).unwrap_err();
    let got: Vec<(usize, usize, &str)> = errors
        .0
        .iter()
        .map(|d| (d.line, d.column, d.pointer.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (7, 43, "/arrays/inputs/raw/scale"),
            (15, 15, "/loader/batch_size"),
            (16, 3, "/loader/wrkers")
        ]
    );
    assert_eq!(errors.0[2].hint.as_deref(), Some("did you mean `workers`?"));
}
