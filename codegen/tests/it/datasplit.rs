//! A CellMap datasplit CSV as cellmap-data reads it (issue #16): `test` rows are a third split that
//! `plan` lists, and a bracketed class the spec does not list is a warning, not an error.

use std::process::Stdio;

use crate::bin;

#[test]
fn issue_16_plan_lists_test_rows_and_warns_of_unknown_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = bin()
        .args(["synth", "--small", "--seed", "5"])
        .arg(&data)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = data.join("datasplit.csv");
    let mut rows = std::fs::read_to_string(&csv).unwrap();
    rows.push_str("\"test\",\"v2/synth.zarr\",\"recon-1/em/fibsem-uint8\",\"v2/synth.zarr\",\"recon-1/labels/groundtruth/crop2/[mito,golgi]\"\n");
    std::fs::write(&csv, rows).unwrap();
    let spec = data.join("tiles.yaml");
    std::fs::write(
        &spec,
        "version: 1\nname: tiles\nclasses: [mito, er, nuc, pm]\narrays:\n  inputs:\n    raw: { shape: [32, 32, 32], scale: [8, 8, 8] }\n  targets:\n    labels: { shape: [32, 32, 32], scale: [8, 8, 8] }\ndata:\n  csv: datasplit.csv\n",
    )
    .unwrap();

    let o = bin().arg("plan").arg(&spec).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:3:1: warning: class `golgi` is not among the spec's classes; it is ignored",
            csv.display()
        )),
        "{stderr}"
    );
    let row = |split: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{split:<9}")))
            .unwrap_or_else(|| panic!("no {split} row in\n{stdout}"))
            .to_owned()
    };
    let test = row("test");
    assert!(
        test.ends_with("mito:s0 er:unknown nuc:unknown pm:unknown"),
        "the test crop keeps its known class only: {test}"
    );
    // The test row reads crop2 as the validation row does: the same box and the same tiles.
    let cells = |l: &str| {
        l.split_whitespace()
            .skip(2)
            .take(3)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(cells(&test), cells(&row("validate")));
    assert_eq!(cells(&test)[2], "8", "2×2×2 tiles of 32³ in the 64³ crop: {test}");
}
