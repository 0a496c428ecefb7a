//! `predict-plan` and `predict --identity` on a synthetic dataset: plan text and JSON, a full run,
//! a resumed run that skips everything, ranks from the environment.

use std::process::Command;

use super::run;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cellmap-compile"))
}

#[test]
fn predict_plan_and_identity_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let o = run(&["synth", d.to_str().unwrap(), "--small"]);
    assert_eq!(o.status.code(), Some(0));
    let spec = d.join("spec.yaml");
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str(
        "predict:\n  output: out.zarr/{dataset}/{class}\n  classes: [mito, nuc]\n  tile: [40, 40, 40]\n  context: [8, 8, 8]\n",
    );
    std::fs::write(&spec, text).unwrap();
    let spec = spec.to_str().unwrap();

    let o = run(&["predict-plan", spec]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("[96, 96, 96] vox, voxel 0 centred at [40.0, 24.0, 16.0] nm"),
        "{out}"
    );
    assert!(out.contains("tiles [3, 3, 3] = 27 (ids 0..27); 3538944 bytes"), "{out}");
    assert!(out.contains("input raw          [56, 56, 56] vox"), "{out}");
    assert!(out.contains("total: 27 tiles, 7077888 output bytes"), "{out}");

    let o = run(&["predict-plan", spec, "--json", "--tiles"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tile_count"], 27);
    assert_eq!(v["tiles"].as_array().unwrap().len(), 27);
    assert_eq!(v["tiles"][26]["start_vox"], serde_json::json!([80, 80, 80]));
    assert_eq!(v["tiles"][26]["shape_vox"], serde_json::json!([16, 16, 16]));
    assert_eq!(v["plan"]["units"][0]["name"], "synth");

    let o = run(&["predict", spec]);
    assert_eq!(o.status.code(), Some(2));

    for rank in ["0", "1"] {
        let o = bin()
            .args(["predict", spec, "--identity", "raw", "--batch-size", "3"])
            .env("RANK", rank)
            .env("WORLD_SIZE", "2")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{out}{}", String::from_utf8_lossy(&o.stderr));
        let n = if rank == "0" { 14 } else { 13 };
        assert!(
            out.starts_with(&format!("rank {rank}/2: wrote {n} tiles, skipped 0")),
            "{out}"
        );
    }
    let o = run(&["predict", spec, "--identity"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("rank 0/1: wrote 0 tiles, skipped 27 already complete"),
        "{out}"
    );
    assert!(d.join("out.zarr/synth/nuc/s0/.zarray").exists());
}
