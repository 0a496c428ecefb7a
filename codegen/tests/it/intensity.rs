//! `cellmap-compile plan` shows each dataset's effective input transforms: its own `normalize` (here
//! from the datasplit's `shift,scale` columns) and `scale: dtype` resolved from the raw dtype (issue #16).

use std::process::Stdio;

use crate::bin;

#[test]
fn issue_16_plan_shows_each_datasets_effective_normalize() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = bin()
        .args(["synth", "--small", "--seed", "5"])
        .arg(&data)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The training row gets its own values; the validation row keeps the spec's `scale: dtype`.
    let csv = std::fs::read_to_string(data.join("datasplit.csv")).unwrap();
    let csv: String = csv
        .lines()
        .map(|l| {
            if l.starts_with("\"train\"") {
                format!("{l},5,250\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(data.join("intensity.csv"), csv).unwrap();
    let spec = data.join("intensity.yaml");
    std::fs::write(
        &spec,
        "version: 1\nname: intensity\nclasses: [mito, er, nuc, pm]\narrays:\n  inputs:\n    raw: { shape: [32, 32, 32], scale: [8, 8, 8] }\n  targets:\n    labels: { shape: [32, 32, 32], scale: [8, 8, 8] }\ndata:\n  csv: intensity.csv\naugment:\n  inputs:\n    - normalize: dtype\n    - gaussian_noise: { std: 0.1 }\n",
    )
    .unwrap();
    let o = bin().arg("plan").arg(&spec).arg("--json").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let transforms = |i: usize| plan["datasets"][i]["input_transforms"]["raw"].clone();
    assert_eq!(plan["datasets"][0]["split"], "train");
    assert_eq!(
        transforms(0),
        serde_json::json!([{"normalize": {"shift": 5.0, "scale": 250.0}}, {"gaussian_noise": {"mean": 0.0, "std": 0.1}}])
    );
    // uint8 raw: `scale: dtype` is 255; validation leaves out the noise.
    assert_eq!(plan["datasets"][1]["split"], "validate");
    assert_eq!(
        transforms(1),
        serde_json::json!([{"normalize": {"shift": 0.0, "scale": 255.0}}])
    );

    let o = bin().arg("plan").arg(&spec).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("normalize train       0  raw: (x - 5) / 250\n"), "{text}");
    assert!(text.contains("normalize validate    0  raw: (x - 0) / 255\n"), "{text}");
}
