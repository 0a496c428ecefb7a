//! `predict-plan` and `predict --identity` on a synthetic dataset: plan text and JSON, a full run,
//! a resumed run that skips everything, ranks from the environment; regions outside the data.

use super::run;

use crate::bin;

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

/// The small synthetic dataset with a `predict` section over `region` (raw: 96³ voxels of 8 nm,
/// voxel 0 centred at [40, 24, 16] nm, so the data spans [36, 20, 12]..[804, 788, 780] nm).
fn synth_with_region(dir: &std::path::Path, region: &str) -> String {
    let o = run(&["synth", dir.to_str().unwrap(), "--small"]);
    assert_eq!(o.status.code(), Some(0));
    let spec = dir.join("spec.yaml");
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str(&format!(
        "predict:\n  output: out.zarr/{{dataset}}/{{class}}\n  classes: [mito]\n  tile: [32, 32, 32]\n  region: {region}\n"
    ));
    std::fs::write(&spec, text).unwrap();
    spec.to_str().unwrap().to_owned()
}

#[test]
fn issue_16_a_region_outside_the_data_is_an_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    // 10 mm away along z (was: 100³ zeros written, exit 0).
    let spec = synth_with_region(&d, "{ bounds_nm: [[10000000, 0, 0], [10000800, 800, 800]] }");
    let raw = d.join("v2/synth.zarr/recon-1/em/fibsem-uint8");
    let want = format!(
        "error: region [10000000, 0, 0]..[10000800, 800, 800] nm does not meet the raw data `{}` at \
         [36, 20, 12]..[804, 788, 780] nm: is the region in voxels rather than nm, or shifted?\n",
        raw.display()
    );
    for args in [&["predict-plan", &spec][..], &["predict", &spec, "--identity"]] {
        let o = run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err, want, "{args:?}");
    }
    assert!(!d.join("out.zarr").exists(), "nothing is written");

    // The same box in voxels of 8 nm: the error says what it would be in nm.
    let spec = synth_with_region(&tmp.path().join("v"), "{ bounds_nm: [[10, 10, 10], [20, 20, 20]] }");
    let o = run(&["predict", &spec, "--identity"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.ends_with(
            "or shifted? (as voxels of [8, 8, 8] nm it would be [80, 80, 80]..[160, 160, 160] nm, which meets the data)\n"
        ),
        "{err}"
    );
}

#[test]
fn issue_16_a_region_partly_outside_the_data_warns_with_the_padded_fraction() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    // z from 420 to 1188 nm: the data ends at 804, so half of the region is padding.
    let spec = synth_with_region(&d, "{ bounds_nm: [[420, 20, 12], [1188, 788, 780]] }");
    let raw = d.join("v2/synth.zarr/recon-1/em/fibsem-uint8");
    let want = format!(
        "warning: region [420, 20, 12]..[1188, 788, 780] nm of `{}` reaches past the raw data at \
         [36, 20, 12]..[804, 788, 780] nm: 50.0% of it is outside the data and reads as padding (input value 0)\n",
        raw.display()
    );
    let o = run(&["predict", &spec, "--identity"]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(err, want);
    assert!(out.starts_with("rank 0/1: wrote 27 tiles"), "{out}");
    let o = run(&["predict-plan", &spec]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), want);
}
