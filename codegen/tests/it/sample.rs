//! `cellmap-compile sample`: the value transforms follow the split of the dataset sampled.

use std::path::Path;
use std::process::{Command, Stdio};

use cellmap_runtime::npy;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cellmap-compile"))
}

/// `raw.npy` of one sample of `spec`.
fn sample_raw(spec: &Path, out: &Path, extra: &[&str]) -> Vec<f32> {
    let o = bin()
        .arg("sample")
        .arg(spec)
        .args(extra)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (shape, values) = npy::read_f32(&out.join("raw.npy")).unwrap();
    assert_eq!(shape, [1, 32, 32, 32]);
    values
}

#[test]
fn sample_of_a_validation_dataset_leaves_out_the_training_noise() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = bin()
        .args(["synth", "--small", "--seed", "5"])
        .arg(&data)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let spec = data.join("noisy.yaml");
    std::fs::write(
        &spec,
        "version: 1\nname: noisy\nclasses: [mito, er, nuc, pm]\narrays:\n  inputs:\n    raw: { shape: [32, 32, 32], scale: [8, 8, 8] }\n  targets:\n    labels: { shape: [32, 32, 32], scale: [8, 8, 8] }\ndata:\n  csv: datasplit.csv\naugment:\n  inputs:\n    - normalize: { scale: 255 }\n    - gaussian_noise: { std: 0.5 }\n",
    )
    .unwrap();
    // The centres of crop2 (validation) and crop1 (training): translation + 31.5 voxels of 8 nm.
    for (split, centre) in [("validate", "532,484,428"), ("train", "388,436,492")] {
        let at = ["--split", split, "--dataset", "0", "--center", centre];
        let stored = sample_raw(
            &spec,
            &tmp.path().join(format!("{split}-raw")),
            &[&at[..], &["--raw-values"]].concat(),
        );
        let got = sample_raw(&spec, &tmp.path().join(split), &at);
        let normalized: Vec<f32> = stored.iter().map(|v| (v - 0.0) / 255.0).collect();
        let exact = got.iter().zip(&normalized).all(|(a, b)| a.to_bits() == b.to_bits());
        match split {
            "validate" => assert!(exact, "validation: exactly the stored values ÷ 255"),
            _ => {
                let d: Vec<f64> = got.iter().zip(&normalized).map(|(a, b)| f64::from(a - b)).collect();
                let std = (d.iter().map(|v| v * v).sum::<f64>() / d.len() as f64).sqrt();
                assert!((0.45..0.55).contains(&std), "training: noise of std 0.5, got {std}");
            }
        }
    }
}
