//! Throughput of the sample reader on the synthetic dataset (`SynthSize::Default`, written once
//! into a temporary directory): 128³ raw + 4 classes at 8 nm, 8 samples per iteration, one thread.
//!
//! ```text
//! zarrs_decode    zarrs `retrieve_array_subset` of the same windows (raw + 4 classes), no cache: the baseline
//! cold            Reader without a chunk cache
//! warm            Reader with a warm chunk cache
//! mirror_transpose, rotate, elastic   warm cache, spatial transforms drawn per sample
//! ```
//!
//! and, in the group `start`, what a loader does before its first batch with voxel weighting:
//!
//! ```text
//! plan            open the data and plan it (levels, grids, tiles, class voxel counts)
//! open_planned    open the data against a plan made earlier (a generated crate's embedded plan)
//! ```
//!
//! Every group reports `Throughput::Elements(samples)`, so criterion prints samples/s and the
//! ratios against `zarrs_decode` can be read off the same run: `cargo bench --bench loader`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cellmap_runtime::{
    PlanOptions, Planned, geometry::crop_start_vox, plan, rng::SampleKey, sample::Reader, sample::SampleRequest,
    store::ChunkCache, store::Multiscale, synth::SynthOptions, synth::write_synthetic,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

const SAMPLES: usize = 8;
const N: usize = 128;
const CLASSES: [&str; 4] = ["mito", "er", "nuc", "pm"];

/// The spec of every group; `augment` is the YAML of the `augment:` section (or empty).
fn spec_yaml(augment: &str) -> String {
    format!(
        "version: 1
name: bench
classes: [mito, er, nuc, pm]
arrays:
  inputs:
    raw: {{ shape: [{N}, {N}, {N}], scale: [8, 8, 8] }}
  targets:
    labels: {{ shape: [{N}, {N}, {N}], scale: [8, 8, 8] }}
data:
  csv: datasplit.csv
sampling:
  seed: 42
{augment}loader:
  batch_size: {SAMPLES}
  workers: 1
"
    )
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("synth");
    write_synthetic(&dir, &SynthOptions::default()).expect("synthetic dataset");
    Setup { _tmp: tmp, dir }
}

/// A reader for the spec with `augment`, and the centres of `SAMPLES` train samples spread over
/// the train crop's centre grid.
fn reader(dir: &Path, name: &str, augment: &str, cache: bool) -> (Reader, Vec<[f64; 3]>) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, spec_yaml(augment)).expect("write spec");
    let spec = cellmap_schema::load(&path).expect("valid spec").spec;
    let planned = plan(&spec, PlanOptions::default()).expect("plan");
    let cache = cache.then(|| Arc::new(ChunkCache::new(spec.loader().cache_bytes)));
    let d = planned
        .plan
        .datasets
        .iter()
        .position(|d| d.split == cellmap_schema::Split::Train)
        .expect("a train dataset");
    let grid = &planned.plan.datasets[d].grid;
    let centres = (0..SAMPLES as u64)
        .map(|k| grid.centre(grid.unravel(k * grid.len() / SAMPLES as u64)))
        .collect();
    (Reader::new(Arc::new(spec), Arc::new(planned), cache), centres)
}

fn read_all(
    reader: &Reader,
    scratch: &mut cellmap_runtime::sample::SampleScratch,
    out: &mut Vec<Vec<f32>>,
    centres: &[[f64; 3]],
    spatial: bool,
    round: u64,
) {
    let d = reader
        .planned()
        .plan
        .datasets
        .iter()
        .position(|d| d.split == cellmap_schema::Split::Train)
        .unwrap_or(0);
    for (k, c) in centres.iter().enumerate() {
        let request = SampleRequest {
            dataset: d,
            centre_nm: *c,
            key: SampleKey {
                seed: 42,
                epoch: round,
                rank: 0,
                index: k as u64,
            },
            spatial,
            values: true,
        };
        reader.read(scratch, &request, out).expect("sample");
    }
}

/// The zarrs baseline: the same 128³ windows of raw and of the 4 class arrays, decoded by zarrs.
fn zarrs_windows(dir: &Path, centres: &[[f64; 3]]) -> Vec<(Array<FilesystemStore>, Vec<std::ops::Range<u64>>, bool)> {
    let zarr = dir.join("v2/synth.zarr/recon-1");
    let mut groups = vec![zarr.join("em/fibsem-uint8")];
    groups.extend(CLASSES.iter().map(|c| zarr.join("labels/groundtruth/crop1").join(c)));
    let mut windows = Vec::new();
    for g in groups {
        let level = Multiscale::open(g.to_str().expect("utf-8 path"))
            .expect("multiscale")
            .levels[0]
            .clone();
        let store = Arc::new(FilesystemStore::new(&g).expect("store"));
        // `nuc` of crop1 holds uint64 instance ids; everything else is uint8.
        let wide = g.ends_with("nuc");
        for c in centres {
            let array = Array::open(Arc::clone(&store), "/s0").expect("array");
            let ranges = (0..3)
                .map(|a| {
                    let start = crop_start_vox(c[a], level.translation_nm[a], level.scale_nm[a], N);
                    let lo = start.clamp(0, level.shape_vox[a] as i64) as u64;
                    let hi = (start + N as i64).clamp(0, level.shape_vox[a] as i64) as u64;
                    lo..hi
                })
                .collect();
            windows.push((array, ranges, wide));
        }
    }
    windows
}

fn benches(c: &mut Criterion) {
    let setup = setup();
    let mut g = c.benchmark_group("loader");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(SAMPLES as u64));

    let (cold, centres) = reader(&setup.dir, "cold", "", false);
    let windows = zarrs_windows(&setup.dir, &centres);
    g.bench_function("zarrs_decode", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for (array, ranges, wide) in &windows {
                let subset = ArraySubset::new_with_ranges(ranges);
                sum += if *wide {
                    array.retrieve_array_subset::<Vec<u64>>(&subset).expect("read").len() as u64
                } else {
                    array.retrieve_array_subset::<Vec<u8>>(&subset).expect("read").len() as u64
                };
            }
            sum
        });
    });

    let mut out = vec![vec![0f32; N * N * N], vec![0f32; CLASSES.len() * N * N * N]];
    let mut scratch = cold.scratch();
    g.bench_function("cold", |b| {
        b.iter(|| read_all(&cold, &mut scratch, &mut out, &centres, false, 0))
    });

    let augments = [
        ("warm", "", false),
        (
            "mirror_transpose",
            "augment:\n  spatial:\n    mirror: { z: 0.5, y: 0.5, x: 0.5 }\n    transpose: [z, y, x]\n",
            true,
        ),
        (
            "rotate",
            "augment:\n  spatial:\n    rotate: { z: [-180, 180], y: [-180, 180], x: [-180, 180] }\n",
            true,
        ),
        (
            "elastic",
            "augment:\n  spatial:\n    elastic: { spacing: [64, 64, 64], sigma: 4, probability: 1.0 }\n",
            true,
        ),
    ];
    for (name, augment, spatial) in augments {
        let (reader, centres) = reader(&setup.dir, name, augment, true);
        let mut scratch = reader.scratch();
        // Warm the chunk cache (with the transformed footprints too).
        read_all(&reader, &mut scratch, &mut out, &centres, false, 0);
        read_all(&reader, &mut scratch, &mut out, &centres, spatial, 0);
        let mut round = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                round += 1;
                read_all(&reader, &mut scratch, &mut out, &centres, spatial, round);
            });
        });
    }
    g.finish();
}

/// Planning at start against opening the data over an earlier plan, for a voxel-weighted spec
/// (its plan counts the foreground voxels of every class in every crop).
fn start(c: &mut Criterion) {
    let setup = setup();
    let path = setup.dir.join("start.yaml");
    let yaml = spec_yaml("").replace("  seed: 42\n", "  seed: 42\n  weighting: voxel_weighted\n");
    std::fs::write(&path, yaml).expect("write spec");
    let spec = cellmap_schema::load(&path).expect("valid spec").spec;
    let earlier = plan(&spec, PlanOptions::default()).expect("plan").plan;
    assert!(earlier.datasets.iter().all(|d| d.class_counts.is_some()));
    let mut g = c.benchmark_group("start");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("plan", |b| {
        b.iter(|| plan(&spec, PlanOptions::default()).expect("plan").plan.datasets.len())
    });
    g.bench_function("open_planned", |b| {
        b.iter(|| Planned::open(&spec, earlier.clone()).expect("open").plan.datasets.len())
    });
    g.finish();
}

criterion_group!(loader, benches, start);
criterion_main!(loader);
