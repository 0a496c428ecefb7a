//! The datasplit CSV read as cellmap-data reads it: classes the spec does not list are ignored with a
//! warning, and `test` rows are a third split (issue #16).

use cellmap_schema::{Severity, Split};

const SPEC: &str = "version: 1\nname: demo\nclasses: [mito, er]\narrays:\n  inputs: {raw: {shape: [8, 8, 8], scale: [8, 8, 8]}}\n  targets: {labels: {shape: [8, 8, 8], scale: [8, 8, 8]}}\ndata:\n  csv: split.csv\n";

fn load(
    csv: &str,
) -> (
    tempfile::TempDir,
    Result<cellmap_schema::Checked, cellmap_schema::Diagnostics>,
) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("split.csv"), csv).unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(&spec, SPEC).unwrap();
    let checked = cellmap_schema::load(&spec);
    (dir, checked)
}

#[test]
fn issue_16_unknown_bracket_class_is_a_warning_and_ignored() {
    let csv = "# a comment\n\"train\",\"a.zarr\",\"recon-1/em\",\"a.zarr\",\"recon-1/labels/crop1/[mito,golgi,er]\"\n\"train\",\"b.zarr/raw\",\"b.zarr/crop2/[mitos]\"\n";
    let (dir, checked) = load(csv);
    let checked = checked.unwrap_or_else(|e| panic!("{e}"));
    let d = checked.spec.datasets();
    assert_eq!(d.len(), 2);
    let annotated = |i: usize| d[i].targets.as_ref().unwrap().annotated.clone().unwrap();
    assert_eq!(annotated(0), ["mito", "er"]);
    assert!(annotated(1).is_empty());

    let w = &checked.warnings;
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w.iter().all(|w| w.severity == Severity::Warning));
    let csv_path = dir.path().join("split.csv");
    assert_eq!((w[0].file.as_path(), w[0].line), (csv_path.as_path(), 2));
    assert_eq!(
        w[0].message,
        "class `golgi` is not among the spec's classes; it is ignored"
    );
    assert_eq!(w[0].expected.as_deref(), Some("one of the spec's classes: mito, er"));
    assert!(
        w[0].hint
            .as_deref()
            .unwrap()
            .starts_with("add it to `classes` to load it")
    );
    let shown = cellmap_schema::render_human(&w[..1]);
    assert!(
        shown.starts_with(&format!(
            "{}:2:1: warning: class `golgi` is not among the spec's classes; it is ignored",
            csv_path.display()
        )),
        "{shown}"
    );
    // A near miss names the class it probably meant; a row left with no class says what that means.
    assert_eq!(w[1].line, 3);
    assert_eq!(
        w[1].message,
        "class `mitos` is not among the spec's classes; it is ignored"
    );
    assert!(
        w[1].hint.as_deref().unwrap().starts_with("did you mean `mito`?"),
        "{w:?}"
    );
    assert_eq!(w[2].line, 3);
    assert_eq!(
        w[2].message,
        "this crop annotates none of the spec's classes; its targets are unknown (NaN)"
    );
}

#[test]
fn issue_16_test_rows_are_a_third_split() {
    let csv = "\"test\",\"t0.zarr/raw\",\"t0.zarr/crop9/[er]\"\n\"train\",\"a.zarr/raw\",\"a.zarr/crop1/[mito]\"\n\"validate\",\"v.zarr/raw\",\"v.zarr/crop3/[mito]\"\n\"Testing\",\"t1.zarr/raw\",\"t1.zarr/crop8/[mito]\"\n";
    let (_dir, checked) = load(csv);
    let checked = checked.unwrap_or_else(|e| panic!("{e}"));
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
    let s = &checked.spec;
    let splits: Vec<(Split, usize)> = s.datasets().iter().map(|d| (d.split, d.index)).collect();
    assert_eq!(
        splits,
        [
            (Split::Train, 0),
            (Split::Validate, 0),
            (Split::Test, 0),
            (Split::Test, 1)
        ]
    );
    let tests: Vec<&str> = s.datasets_of(Split::Test).map(|d| d.raw.as_str()).collect();
    assert!(
        tests[0].ends_with("t0.zarr/raw") && tests[1].ends_with("t1.zarr/raw"),
        "{tests:?}"
    );
    assert!(
        s.datasets()[2].origin.ends_with("split.csv:1"),
        "{}",
        s.datasets()[2].origin
    );
    // Test samples are read like validation samples.
    assert!(!Split::Test.is_train());
    assert_eq!(s.sampling().pad.for_split(Split::Test), s.sampling().pad.validate);
    assert_eq!(
        s.augment().inputs_for(Split::Test),
        s.augment().inputs_for(Split::Validate)
    );
}

#[test]
fn issue_16_test_split_inline_and_by_name() {
    let text = SPEC.replace(
        "  csv: split.csv\n",
        "  datasets:\n    - {split: test, raw: /d/t.zarr/raw, targets: '/d/t.zarr/crop1/{class}'}\n    - {split: train, raw: /d/a.zarr/raw}\n",
    );
    let s = cellmap_schema::parse(&text, std::path::Path::new("spec.yaml"))
        .unwrap()
        .spec;
    assert_eq!(s.datasets()[1].split, Split::Test);
    for (name, split) in [
        ("train", Split::Train),
        ("VAL", Split::Validate),
        (" test ", Split::Test),
    ] {
        assert_eq!(Split::from_name(name), Some(split));
    }
    assert_eq!(Split::from_name("holdout"), None);
    assert_eq!(Split::ALL.map(Split::name), ["train", "validate", "test"]);
}

#[test]
fn a_raw_only_spec_reads_the_raw_columns_and_ignores_the_labels_silently() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "\"train\",\"a.zarr\",\"recon-1/em\",\"a.zarr\",\"recon-1/labels/crop1/[mito,golgi]\"\n\"validate\",\"b.zarr/raw\",\"\"\n";
    std::fs::write(dir.path().join("split.csv"), csv).unwrap();
    let spec = dir.path().join("spec.yaml");
    let text = "version: 1\nname: demo\narrays:\n  inputs: {raw: {shape: [8, 8, 8], scale: [8, 8, 8]}}\ndata:\n  csv: split.csv\n";
    std::fs::write(&spec, text).unwrap();
    let checked = cellmap_schema::load(&spec).unwrap_or_else(|e| panic!("{e}"));
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
    let d = checked.spec.datasets();
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|d| d.targets.is_none()));
    assert_eq!(d[0].split, Split::Train);
    assert!(d[0].raw.ends_with("a.zarr/recon-1/em"), "{}", d[0].raw);
    assert!(checked.spec.classes().is_empty() && checked.spec.targets().is_empty());
    assert_eq!(checked.spec.sampling().weighting, cellmap_schema::Weighting::Uniform);
}
