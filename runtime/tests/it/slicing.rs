//! 2D specs sliced along z, y and x (`sampling.slice_axis`, issue #16): each sample equals a direct
//! zarrs read of the world plane it slices, on anisotropic data (8 × 4 × 4 nm, and its 16 × 8 × 8 nm
//! level), at every corner of the centre grid; `any` draws every axis, deterministically.

use std::path::Path;
use std::sync::Arc;

use cellmap_runtime::{PlanOptions, Planned, plan, sample::Reader, sample::SampleRequest};
use cellmap_schema::{Axis, Spec};
use serde_json::{Value, json};
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

use crate::common::sample_request;
use crate::common::{Fmt, LevelMeta, ms_attrs, write_array, write_group, zyx_axes};

const SHAPE0: [u64; 3] = [12, 14, 16];
const SCALES: [[f64; 3]; 2] = [[8.0, 4.0, 4.0], [16.0, 8.0, 8.0]];
const TRANSLATIONS: [[f64; 3]; 2] = [[4.0, 2.0, 2.0], [8.0, 4.0, 4.0]];

/// A raw volume and one class (`mito`) over the same region, both with an 8 × 4 × 4 nm s0 and a
/// 16 × 8 × 8 nm s1, every voxel a distinct value.
fn write_store(root: &Path) {
    let fmt = Fmt::V2 {
        compressor: Value::Null,
        sep: ".",
    };
    write_group(root, "", 2, None);
    write_group(root, "labels", 2, None);
    let levels: Vec<LevelMeta<'_>> = vec![
        ("s0", SCALES[0].to_vec(), Some(TRANSLATIONS[0].to_vec())),
        ("s1", SCALES[1].to_vec(), Some(TRANSLATIONS[1].to_vec())),
    ];
    for (group, salt) in [("raw", 0), ("labels/mito", 5)] {
        write_group(root, group, 2, Some(ms_attrs(2, zyx_axes(), &levels)));
        write_array::<u16>(root, &format!("{group}/s0"), &fmt, &SHAPE0, &[5, 6, 7], salt);
        write_array::<u16>(
            root,
            &format!("{group}/s1"),
            &fmt,
            &SHAPE0.map(|s| s / 2),
            &[3, 4, 5],
            salt + 1,
        );
    }
}

/// A 2D spec over the store: `raw` and `labels` of `[1, 5, 7]` voxels at `scale`, values as stored.
fn spec(root: &Path, scale: [f64; 3], slice_axis: &str) -> Spec {
    spec_of_split(root, scale, slice_axis, "train")
}

fn spec_of_split(root: &Path, scale: [f64; 3], slice_axis: &str, split: &str) -> Spec {
    crate::loader::spec_of(&spec_doc(root, scale, slice_axis, split))
}

fn spec_doc(root: &Path, scale: [f64; 3], slice_axis: &str, split: &str) -> Value {
    let r = root.display();
    json!({
        "version": 1,
        "name": "slices",
        "classes": ["mito"],
        "arrays": {
            "inputs": {"raw": {"shape": [1, 5, 7], "scale": scale, "interpolation": "nearest"}},
            "targets": {"labels": {"shape": [1, 5, 7], "scale": scale}},
        },
        "data": {"datasets": [{"split": split, "raw": format!("{r}/raw"), "targets": format!("{r}/labels/{{class}}")}]},
        "sampling": {"seed": 3, "pad": false, "slice_axis": slice_axis},
        "augment": {"targets": []},
        "loader": {"batch_size": 2, "workers": 1, "prefetch": 1, "device": "cpu"},
    })
}

fn open(spec: &Spec) -> (Arc<Spec>, Arc<Planned>, Reader) {
    let spec = Arc::new(spec.clone());
    let planned = Arc::new(plan(&spec, PlanOptions::default()).unwrap());
    let reader = Reader::new(Arc::clone(&spec), Arc::clone(&planned), None);
    (spec, planned, reader)
}

fn request(centre_nm: [f64; 3], index: u64) -> SampleRequest {
    sample_request(0, centre_nm, 3, index)
}

/// The `[5, 7]` plane of `level` (`group/sN`) that a sample slicing `axis` at `centre_nm` reads,
/// rows then columns, read directly with zarrs.
fn world_plane(root: &Path, group: &str, level: usize, axis: Axis, centre_nm: [f64; 3]) -> Vec<f32> {
    // World shape of the crop: the slice axis one voxel thick, rows and columns the other two.
    let shape: [u64; 3] = match axis {
        Axis::Z => [1, 5, 7],
        Axis::Y => [5, 1, 7],
        Axis::X => [5, 7, 1],
    };
    let (s, t) = (SCALES[level], TRANSLATIONS[level]);
    let start: [u64; 3] = std::array::from_fn(|a| {
        let k = (centre_nm[a] - t[a]) / s[a];
        assert!((k - k.round()).abs() < 1e-9, "centre {centre_nm:?} is a voxel centre");
        (k.round() as i64 - (shape[a] as i64 - 1) / 2) as u64
    });
    let store = Arc::new(FilesystemStore::new(root).unwrap());
    let array = Array::open(store, &format!("/{group}/s{level}")).unwrap();
    let ranges: Vec<_> = (0..3).map(|a| start[a]..start[a] + shape[a]).collect();
    let values: Vec<u16> = array
        .retrieve_array_subset::<Vec<u16>>(&ArraySubset::new_with_ranges(&ranges))
        .unwrap();
    // Row-major over the world box is rows-then-columns for every axis (rows precede columns).
    values.into_iter().map(f32::from).collect()
}

/// Sample `index` at the grid corner `corner` equals the world planes of its slice axis.
fn check_sample(root: &Path, reader: &Reader, planned: &Planned, level: usize, corner: [u64; 3], index: u64) -> Axis {
    let grid = &planned.plan.datasets[0].grid;
    let centre = grid.centre(std::array::from_fn(|a| corner[a] * (grid.shape[a] - 1)));
    let request = request(centre, index);
    let axis = reader.slice_axis(&request);
    let mut out: Vec<Vec<f32>> = planned
        .plan
        .batch
        .arrays
        .iter()
        .map(|l| vec![f32::NAN; l.sample_len()])
        .collect();
    let info = reader.read(&mut reader.scratch(), &request, &mut out).unwrap();
    // Every axis copies whole voxels with strides (the frame's voxel sizes match the level's).
    assert_eq!((info.strided, info.gathered), (2, 0), "{axis:?}");
    assert_eq!(
        out[0],
        world_plane(root, "raw", level, axis, centre),
        "raw, {axis:?} at {centre:?}"
    );
    assert_eq!(
        out[1],
        world_plane(root, "labels/mito", level, axis, centre),
        "labels, {axis:?} at {centre:?}"
    );
    axis
}

const CORNERS: [[u64; 3]; 4] = [[0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 1]];

#[test]
fn each_slice_axis_reads_its_world_plane_on_anisotropic_data() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data.zarr");
    write_store(&root);
    for (level, scale) in SCALES.iter().enumerate() {
        for (name, axis) in [("z", Axis::Z), ("y", Axis::Y), ("x", Axis::X)] {
            let (_, planned, reader) = open(&spec(&root, *scale, name));
            // The level of the voxel size asked for, whatever the slice axis.
            assert_eq!(planned.plan.datasets[0].inputs[0].level, level);
            // Centres leave room for the crop along the world axes it covers.
            let grid = &planned.plan.datasets[0].grid;
            let room = SHAPE0.map(|s| s >> level);
            let expected: [u64; 3] = match axis {
                Axis::Z => [room[0], room[1] - 4, room[2] - 6],
                Axis::Y => [room[0] - 4, room[1], room[2] - 6],
                Axis::X => [room[0] - 4, room[1] - 6, room[2]],
            };
            assert_eq!(grid.shape, expected, "{name} at s{level}");
            for corner in CORNERS {
                for index in 0..3 {
                    assert_eq!(check_sample(&root, &reader, &planned, level, corner, index), axis);
                }
            }
        }
    }
}

#[test]
fn any_draws_every_axis_per_sample_deterministically() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data.zarr");
    write_store(&root);
    let (_, planned, reader) = open(&spec(&root, SCALES[0], "any"));
    // Centres valid for every axis: the largest footprint per world axis.
    assert_eq!(planned.plan.datasets[0].grid.shape, [12 - 4, 14 - 6, 16 - 6]);
    let mut counts = [0usize; 3];
    for index in 0..90 {
        let corner = CORNERS[index as usize % CORNERS.len()];
        let axis = check_sample(&root, &reader, &planned, 0, corner, index);
        counts[axis.index()] += 1;
        // The same key draws the same axis.
        assert_eq!(reader.slice_axis(&request([0.0; 3], index)), axis);
    }
    assert!(counts.iter().all(|&c| c >= 15), "{counts:?}");
    // Validation samples of an `any` spec are z-slices.
    let (_, planned, reader) = open(&spec_of_split(&root, SCALES[0], "any", "validate"));
    assert_eq!(planned.plan.datasets[0].grid.shape, [12, 14 - 4, 16 - 6]);
    for index in 0..20 {
        assert_eq!(reader.slice_axis(&request([0.0; 3], index)), Axis::Z);
    }
}

#[test]
fn spatial_transforms_act_in_the_plane_of_the_slice() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data.zarr");
    write_store(&root);
    // Mirroring the rows (spec axis y) of a y-slice flips world z; of an x-slice too.
    for (name, axis) in [("y", Axis::Y), ("x", Axis::X), ("z", Axis::Z)] {
        let mut doc = spec_doc(&root, SCALES[0], name, "train");
        doc["augment"]["spatial"] = json!({"mirror": {"y": 1.0}});
        let (_, planned, reader) = open(&crate::loader::spec_of(&doc));
        let centre = planned.plan.datasets[0].grid.centre([1, 1, 1]);
        let request = request(centre, 0);
        let mut out: Vec<Vec<f32>> = planned
            .plan
            .batch
            .arrays
            .iter()
            .map(|l| vec![f32::NAN; l.sample_len()])
            .collect();
        let info = reader.read(&mut reader.scratch(), &request, &mut out).unwrap();
        // Whole voxels, copied with strides: no interpolation.
        assert_eq!(info.gathered, 0, "{name}");
        let plane = world_plane(&root, "raw", 0, axis, centre);
        let flipped: Vec<f32> = plane.chunks(7).rev().flatten().copied().collect();
        assert_eq!(out[0], flipped, "{name}");
    }
}

#[test]
fn a_2d_spec_has_4d_batches_holding_its_slices() {
    use cellmap_runtime::Loader;
    use cellmap_schema::Split;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data.zarr");
    write_store(&root);
    let spec = spec(&root, SCALES[0], "y");
    let layout = cellmap_runtime::batch_layout(&spec);
    for a in &layout.arrays {
        assert_eq!(a.spatial_dims, 2);
        assert_eq!(a.tensor_shape(2), [2, 1, 5, 7]);
    }
    let mut loader = Loader::open(spec, crate::loader::options(Split::Train)).unwrap();
    for _ in 0..2 {
        let batch = loader.next_batch().unwrap().unwrap();
        assert_eq!(batch.layout().arrays[0].tensor_shape(2), [2, 1, 5, 7]);
        for (b, m) in batch.meta().enumerate() {
            let raw = &batch.array(0)[b * 35..(b + 1) * 35];
            assert_eq!(raw, world_plane(&root, "raw", 0, Axis::Y, m.centre_nm), "sample {b}");
            let labels = &batch.array(1)[b * 35..(b + 1) * 35];
            assert_eq!(labels, world_plane(&root, "labels/mito", 0, Axis::Y, m.centre_nm));
        }
    }
    // A 3D spec keeps `[B, C, Z, Y, X]`, and so does a 2D array beside a 3D one.
    let mut doc = spec_doc(&root, SCALES[0], "z", "train");
    doc["arrays"]["targets"]["labels"]["shape"] = json!([3, 5, 7]);
    let layout = cellmap_runtime::batch_layout(&crate::loader::spec_of(&doc));
    assert_eq!(layout.arrays[0].tensor_shape(2), [2, 1, 1, 5, 7]);
    assert_eq!(layout.arrays[1].tensor_shape(2), [2, 1, 3, 5, 7]);
}

#[test]
fn validation_tiles_of_a_y_spec_cover_each_y_plane() {
    use cellmap_runtime::Loader;
    use cellmap_schema::Split;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data.zarr");
    write_store(&root);
    let spec = spec_of_split(&root, SCALES[0], "y", "validate");
    let (_, planned, _) = open(&spec);
    // Whole [5, 1, 7] tiles of the 12 × 14 × 16 level: 2 along z, every one of the 14 y planes, 2 along x.
    let tiles = &planned.plan.datasets[0].tiles;
    assert_eq!(tiles.shape, [2, 14, 2]);
    assert_eq!(tiles.step_nm, [40.0, 4.0, 28.0]);
    let mut loader = Loader::open(spec, crate::loader::options(Split::Validate)).unwrap();
    let mut seen = 0;
    while let Some(batch) = loader.next_batch() {
        let batch = batch.unwrap();
        for (b, m) in batch.meta().enumerate().filter(|(_, m)| m.idx >= 0) {
            let raw = &batch.array(0)[b * 35..(b + 1) * 35];
            assert_eq!(
                raw,
                world_plane(&root, "raw", 0, Axis::Y, m.centre_nm),
                "tile {}",
                m.idx
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 2 * 14 * 2);
}
