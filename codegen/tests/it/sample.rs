//! `cellmap-compile sample`: the value transforms follow the split of the dataset sampled.

use std::path::Path;
use std::process::Stdio;

use cellmap_runtime::npy;

use crate::bin;

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

/// Synthetic data (`synth --small --seed 5`) and a spec over it with `augment` as given.
fn synth_spec(tmp: &Path, augment: &str) -> std::path::PathBuf {
    let data = tmp.join("data");
    if !data.exists() {
        let o = bin()
            .args(["synth", "--small", "--seed", "5"])
            .arg(&data)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let spec = data.join(format!("augmented{}.yaml", augment.len()));
    std::fs::write(
        &spec,
        format!(
            "version: 1\nname: augmented\nclasses: [mito, er, nuc, pm]\narrays:\n  inputs:\n    raw: {{ shape: [32, 32, 32], scale: [8, 8, 8] }}\n  targets:\n    labels: {{ shape: [32, 32, 32], scale: [8, 8, 8] }}\ndata:\n  csv: datasplit.csv\nsampling: {{ seed: 7, iterations_per_epoch: 8 }}\nloader: {{ batch_size: 4, workers: 2, prefetch: 2 }}\n{augment}"
        ),
    )
    .unwrap();
    spec
}

const AUGMENT: &str = "augment:\n  spatial:\n    mirror: { z: 0.5, y: 0.5, x: 0.5 }\n    transpose: [y, x]\n    rotate: { z: [-180, 180], x: [-20, 20] }\n    elastic: { spacing: [64, 64, 64], sigma: 4, probability: 0.5 }\n  inputs:\n    - normalize: { scale: 255 }\n    - gaussian_noise: { std: 0.1 }\n";

/// The centre of crop1 (training): translation + 31.5 voxels of 8 nm.
const CROP1_CENTRE: &str = "388,436,492";

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn sample_augment_equals_the_training_loaders_batch_sample() {
    use cellmap_codegen::cli::{SampleOptions, read_sample};
    use cellmap_runtime::{DistInfo, Loader, LoaderOptions};
    use cellmap_schema::Split;

    let tmp = tempfile::tempdir().unwrap();
    let path = synth_spec(tmp.path(), AUGMENT);
    let spec = cellmap_schema::load(&path).unwrap().spec;
    let mut options = LoaderOptions::new(
        Split::Train,
        DistInfo {
            rank: 0,
            world_size: 1,
            local_rank: 0,
        },
    );
    // From epoch 1, step 1: batches 1 of epoch 1 and 0 of epoch 2.
    options.epoch = 1;
    options.step = 1;
    let mut loader = Loader::open(spec.clone(), options).unwrap();
    let (mut compared, mut rotated, mut elastic) = (0, 0, 0);
    for expected_epoch in [1, 2] {
        let batch = loader.next_batch().unwrap().unwrap();
        assert_eq!(batch.epoch(), expected_epoch);
        for (k, meta) in batch.meta().enumerate() {
            let options = SampleOptions {
                augment: true,
                epoch: batch.epoch(),
                index: u64::try_from(meta.idx).unwrap(),
                ..SampleOptions::default()
            };
            let dataset = usize::try_from(meta.dataset).unwrap();
            let got = read_sample(&spec, Split::Train, dataset, meta.centre_nm, &options).unwrap();
            for (i, (name, shape, values)) in got.arrays.iter().enumerate() {
                let n: usize = shape.iter().product();
                let expected = &batch.array(i)[k * n..(k + 1) * n];
                assert!(
                    same_bits(values, expected),
                    "epoch {expected_epoch}, position {k}, `{name}`"
                );
            }
            let transform = &got.info["transform"];
            assert_eq!(transform["key"]["epoch"], batch.epoch());
            assert_eq!(transform["key"]["index"], meta.idx);
            assert_eq!(transform["key"]["seed"], 7);
            rotated += usize::from(transform["rotate_deg"]["z"].as_f64().unwrap() != 0.0);
            elastic += usize::from(transform["elastic"]["applied"] == true);
            assert_eq!(got.elastic.is_some(), transform["elastic"]["applied"] == true);
            compared += 1;
        }
    }
    assert_eq!(compared, 8);
    assert_eq!(rotated, 8, "every sample draws a rotation about z");
    assert!(elastic > 0, "some samples draw an elastic deformation");
}

/// `(shape, values)` of one `.npy`.
type Npy = (Vec<usize>, Vec<f32>);

/// `raw.npy` and `labels.npy` of a `sample` run at crop1's centre with `extra` arguments, and
/// its `sample.json`.
fn run_sample(spec: &Path, out: &Path, extra: &[&str]) -> (Vec<Npy>, serde_json::Value) {
    let o = bin()
        .arg("sample")
        .arg(spec)
        .args(["--center", CROP1_CENTRE])
        .args(extra)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let arrays = ["raw", "labels"]
        .map(|name| npy::read_f32(&out.join(format!("{name}.npy"))).unwrap())
        .to_vec();
    let info = serde_json::from_str(&std::fs::read_to_string(out.join("sample.json")).unwrap()).unwrap();
    (arrays, info)
}

/// `base` with every channel's `[Z, Y, X]` volume mapped voxel by voxel: output `(z, y, x)` takes
/// input `at(z, y, x)`.
fn remap(shape: &[usize], base: &[f32], at: impl Fn(usize, usize, usize) -> (usize, usize, usize)) -> Vec<f32> {
    let (c, nz, ny, nx) = (shape[0], shape[1], shape[2], shape[3]);
    let mut out = Vec::with_capacity(base.len());
    for ch in 0..c {
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let (sz, sy, sx) = at(z, y, x);
                    out.push(base[((ch * nz + sz) * ny + sy) * nx + sx]);
                }
            }
        }
    }
    out
}

#[test]
fn explicit_quarter_turn_mirror_and_transpose_permute_the_unaugmented_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = synth_spec(tmp.path(), "");
    let (base, plain_info) = run_sample(&spec, &tmp.path().join("base"), &[]);
    assert!(
        plain_info.get("transform").is_none(),
        "no transform recorded without --augment or flags"
    );
    assert!(
        plain_info["arrays"]["raw"]["source"]
            .get("transformed_start_vox")
            .is_none()
    );
    // A quarter turn of a cubic crop reads the crop's own voxels.
    let (_, info) = run_sample(&spec, &tmp.path().join("quarter"), &["--rotate", "z=90"]);
    let raw = &info["arrays"]["raw"]["source"];
    assert_eq!(raw["transformed_start_vox"], raw["start_vox"]);
    assert_eq!(raw["transformed_shape_vox"], raw["shape_vox"]);
    let n = 32;
    type Map = fn(usize, usize, usize) -> (usize, usize, usize);
    let cases: [(&[&str], Map); 4] = [
        // M = R_z(90°): the output offset (y, x) samples the world offset (x, −y).
        (&["--rotate", "z=90"], |z, y, x| (z, x, 31 - y)),
        (&["--mirror", "x"], |z, y, x| (z, y, 31 - x)),
        (&["--transpose", "y,x"], |z, y, x| (z, x, y)),
        // Transpose first, then mirror: output y runs along world x, flipped.
        (&["--transpose", "y,x", "--mirror", "x"], |z, y, x| (z, x, 31 - y)),
    ];
    for (i, (args, at)) in cases.iter().enumerate() {
        let (got, _) = run_sample(&spec, &tmp.path().join(format!("case{i}")), args);
        for ((shape, values), (base_shape, base_values)) in got.iter().zip(&base) {
            assert_eq!(shape, base_shape);
            assert_eq!(shape[1..], [n, n, n]);
            assert!(same_bits(values, &remap(shape, base_values, at)), "{args:?}");
        }
    }
    // Just short of a quarter turn the matrix is not axis-aligned: the crop is gathered (nearest
    // for labels, trilinear for raw) rather than copied, and gives the same voxels.
    let (gathered, _) = run_sample(&spec, &tmp.path().join("gathered"), &["--rotate", "z=89.9999999999"]);
    let (shape, labels) = &gathered[1];
    assert!(same_bits(labels, &remap(shape, &base[1].1, cases[0].1)));
    let (shape, raw) = &gathered[0];
    let turned = remap(shape, &base[0].1, cases[0].1);
    assert!(raw.iter().zip(&turned).all(|(a, b)| (a - b).abs() < 1e-3));
}

#[test]
fn sample_json_records_the_transform_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = synth_spec(tmp.path(), AUGMENT);
    let (_, info) = run_sample(
        &spec,
        &tmp.path().join("explicit"),
        &[
            "--rotate",
            "z=30,y=0,x=-10",
            "--mirror",
            "z,x",
            "--transpose",
            "y,x",
            "--epoch",
            "2",
            "--index",
            "5",
        ],
    );
    let t = &info["transform"];
    assert_eq!(t["source"], "explicit");
    assert_eq!(t["augment"], false);
    assert_eq!(t["rotate_deg"], serde_json::json!({ "z": 30.0, "y": 0.0, "x": -10.0 }));
    assert_eq!(t["rotation_order"], serde_json::json!(["z", "y", "x"]));
    assert_eq!(t["mirror"], serde_json::json!({ "z": true, "y": false, "x": true }));
    assert_eq!(t["permutation"], serde_json::json!([0, 2, 1]));
    assert_eq!(t["elastic"]["applied"], false);
    assert_eq!(
        t["key"],
        serde_json::json!({ "seed": 7, "epoch": 2, "rank": 0, "index": 5, "spatial_stream": 3 })
    );
    assert!(t["composition"].as_str().unwrap().starts_with("M = R·F·P"));
    assert_eq!(t["matrix"].as_array().unwrap().len(), 3);
    // A rotation by 30° about z samples a wider y-x window than the crop, the same z range.
    let raw = &info["arrays"]["raw"]["source"];
    let vox = |key: &str| -> Vec<i64> { serde_json::from_value(raw[key].clone()).unwrap() };
    let (start, shape) = (vox("start_vox"), vox("shape_vox"));
    let (t_start, t_shape) = (vox("transformed_start_vox"), vox("transformed_shape_vox"));
    for a in 0..3 {
        assert!(
            t_start[a] <= start[a] && t_start[a] + t_shape[a] >= start[a] + shape[a],
            "{raw}"
        );
    }
    assert!(t_shape[1] > shape[1] && t_shape[2] > shape[2], "{raw}");
    let labels = &info["arrays"]["labels"]["classes"][0]["window"];
    assert!(labels["transformed_start_vox"].is_array(), "{labels}");

    // Drawn: the angle lies in the spec's range; an elastic deformation comes with its lattice.
    let mut elastic_seen = false;
    for index in 0..8 {
        let out = tmp.path().join(format!("drawn{index}"));
        let (_, info) = run_sample(
            &spec,
            &out,
            &["--augment", "--epoch", "1", "--index", &index.to_string()],
        );
        let t = &info["transform"];
        assert_eq!(t["source"], "drawn");
        assert_eq!(t["augment"], true);
        assert_eq!(t["key"]["index"], index);
        let z = t["rotate_deg"]["z"].as_f64().unwrap();
        assert!((-180.0..=180.0).contains(&z) && z != 0.0, "{z}");
        assert!(t["rotate_deg"]["x"].as_f64().unwrap().abs() <= 20.0);
        assert_eq!(t["rotate_deg"]["y"], 0.0);
        assert_eq!(t["permutation"][0], 0);
        if t["elastic"]["applied"] == true {
            elastic_seen = true;
            assert_eq!(t["elastic"]["displacement_file"], "elastic_displacement_nm.npy");
            let (shape, values) = npy::read_f32(&out.join("elastic_displacement_nm.npy")).unwrap();
            let lattice: Vec<usize> = serde_json::from_value(t["elastic"]["lattice_shape"].clone()).unwrap();
            assert_eq!(shape, [&lattice[..], &[3]].concat());
            assert_eq!(values.len(), shape.iter().product::<usize>());
        } else {
            assert!(!out.join("elastic_displacement_nm.npy").exists());
        }
    }
    assert!(
        elastic_seen,
        "an elastic deformation among 8 draws with probability 0.5"
    );
}

#[test]
fn bad_transform_arguments_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = synth_spec(tmp.path(), "");
    for args in [
        &["--rotate", "w=30"][..],
        &["--rotate", "z=abc"],
        &["--mirror", "q"],
        &["--transpose", "y,y"],
        &["--transpose", "x"],
    ] {
        let o = bin()
            .arg("sample")
            .arg(&spec)
            .args(["--center", CROP1_CENTRE])
            .args(args)
            .arg("--out")
            .arg(tmp.path().join("bad"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?} accepted");
    }
}
