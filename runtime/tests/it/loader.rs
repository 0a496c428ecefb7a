//! The plan and the loader on the synthetic dataset, checked voxel for voxel against direct
//! zarrs reads of the expected windows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod batches;
mod dtypes;
mod locality;
mod reuse;
mod sampling;

use cellmap_runtime::{
    ClassPlan, Loader, LoaderOptions, NextOwned, PlanOptions, Planned, plan, rng::SampleKey, sample::Reader,
    sample::SampleRequest, synth::SynthOptions, synth::SynthSize, synth::SynthVariant, synth::write_synthetic,
};
use cellmap_schema::{Spec, Split};
use serde_json::{Value, json};
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

pub(crate) const RAW_T0: [f64; 3] = [40.0, 24.0, 16.0];
pub(crate) const CROP1_T: [f64; 3] = [136.0, 184.0, 240.0];
pub(crate) const CROP2_T: [f64; 3] = [280.0, 232.0, 176.0];
pub(crate) const CLASSES: [&str; 4] = ["mito", "er", "nuc", "pm"];

pub(crate) struct Fixture {
    pub(crate) _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
}

pub(crate) fn synth(variant: SynthVariant) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("synth");
    write_synthetic(
        &dir,
        &SynthOptions {
            seed: 3,
            size: SynthSize::Small,
            variants: vec![variant],
            force: false,
            ..SynthOptions::default()
        },
    )
    .unwrap();
    let sub = match variant {
        SynthVariant::V2 => "v2",
        SynthVariant::V3 => "v3",
    };
    Fixture {
        dir: dir.join(sub).join("synth.zarr"),
        _tmp: tmp,
    }
}

/// The fixture spec's document: JSON, which is YAML, so tests edit it (see [`spec_with`]) and the
/// result is validated like any spec a user writes.
pub(crate) fn spec_doc(zarr: &Path) -> Value {
    let root = zarr.display().to_string();
    let dataset = |split: &str, crop: &str, classes: &[&str]| {
        json!({
            "split": split,
            "raw": format!("{root}/recon-1/em/fibsem-uint8"),
            "targets": format!("{root}/recon-1/labels/groundtruth/{crop}/{{class}}"),
            "classes": classes,
        })
    };
    json!({
        "version": 1,
        "name": "synth",
        "classes": CLASSES,
        "arrays": {
            "inputs": {"raw": {"shape": [16, 16, 16], "scale": [8, 8, 8]}},
            "targets": {"labels": {"shape": [12, 12, 12], "scale": [8, 8, 8]}},
        },
        "data": {"datasets": [
            dataset("train", "crop1", &CLASSES),
            dataset("validate", "crop2", &["mito", "er", "nuc"]),
        ]},
        "sampling": {"seed": 11, "iterations_per_epoch": 8, "weighting": "uniform", "pad": false},
        "augment": {"targets": [{"binarize": {"threshold": 0}}]},
        "loader": {
            "batch_size": 3,
            "workers": 2,
            "prefetch": 2,
            "device": "cpu",
            "pin_memory": false,
            "cache_bytes": 64 << 20,
            "on_error": "fail",
        },
    })
}

/// A spec document validated (as the YAML text `test.yaml`) into a spec.
pub(crate) fn spec_of(doc: &Value) -> Spec {
    let text = serde_json::to_string_pretty(doc).unwrap();
    match cellmap_schema::parse(&text, Path::new("test.yaml")) {
        Ok(checked) => checked.spec,
        Err(e) => panic!("{}\n{text}", cellmap_schema::render_human(&e.0)),
    }
}

/// The fixture spec over the synthetic dataset at `zarr`.
pub(crate) fn spec(zarr: &Path) -> Spec {
    spec_of(&spec_doc(zarr))
}

/// The fixture spec with `edit` applied to its document first.
pub(crate) fn spec_with(zarr: &Path, edit: impl FnOnce(&mut Value)) -> Spec {
    let mut doc = spec_doc(zarr);
    edit(&mut doc);
    spec_of(&doc)
}

pub(crate) fn options(split: Split) -> LoaderOptions {
    let mut o = match split {
        Split::Train => LoaderOptions::train(),
        Split::Validate => LoaderOptions::validate(),
        Split::Test => LoaderOptions::test(),
    }
    .unwrap();
    assert_eq!(o.split, split);
    o.dist = cellmap_runtime::DistInfo::single();
    o
}

/// A direct zarrs read of `shape` voxels from `start` of `group/s0`, as f32; NaN outside the array.
pub(crate) fn direct(group: &Path, start: [i64; 3], shape: [usize; 3]) -> Vec<f32> {
    direct_level(group, "s0", start, shape)
}

/// A direct zarrs read of `shape` voxels from `start` of `group/level`, as f32; NaN outside the array.
fn direct_level(group: &Path, level: &str, start: [i64; 3], shape: [usize; 3]) -> Vec<f32> {
    let store = Arc::new(FilesystemStore::new(group).unwrap());
    let array = Array::open(store, &format!("/{level}")).unwrap();
    let dims = array.shape().to_vec();
    let mut out = vec![f32::NAN; shape.iter().product()];
    let lo: Vec<u64> = (0..3).map(|a| start[a].clamp(0, dims[a] as i64) as u64).collect();
    let hi: Vec<u64> = (0..3)
        .map(|a| (start[a] + shape[a] as i64).clamp(0, dims[a] as i64) as u64)
        .collect();
    if (0..3).any(|a| hi[a] <= lo[a]) {
        return out;
    }
    let ranges: Vec<std::ops::Range<u64>> = (0..3).map(|a| lo[a]..hi[a]).collect();
    let subset = ArraySubset::new_with_ranges(&ranges);
    // Labels are uint8 except `nuc` of crop1 (uint64 instance ids).
    let values: Vec<f64> = match array.retrieve_array_subset::<Vec<u8>>(&subset) {
        Ok(v) => v.into_iter().map(f64::from).collect(),
        Err(_) => array
            .retrieve_array_subset::<Vec<u64>>(&subset)
            .unwrap()
            .into_iter()
            .map(|v| v as f64)
            .collect(),
    };
    let e: Vec<usize> = (0..3).map(|a| (hi[a] - lo[a]) as usize).collect();
    for z in 0..e[0] {
        for y in 0..e[1] {
            for x in 0..e[2] {
                let oz = (lo[0] as i64 - start[0]) as usize + z;
                let oy = (lo[1] as i64 - start[1]) as usize + y;
                let ox = (lo[2] as i64 - start[2]) as usize + x;
                out[(oz * shape[1] + oy) * shape[2] + ox] = values[(z * e[1] + y) * e[2] + x] as f32;
            }
        }
    }
    out
}

/// The crop window start of the documented geometry: `floor((c − t)/s − (N − 1)/2 + 0.5)`.
pub(crate) fn start(centre: [f64; 3], t: [f64; 3], n: usize) -> [i64; 3] {
    std::array::from_fn(|a| ((centre[a] - t[a]) / 8.0 - (n as f64 - 1.0) / 2.0 + 0.5).floor() as i64)
}

pub(crate) fn binarize(v: &[f32]) -> Vec<f32> {
    v.iter()
        .map(|x| {
            if x.is_nan() {
                f32::NAN
            } else if *x > 0.0 {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

pub(crate) fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}
