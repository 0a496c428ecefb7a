//! `read_window` against direct zarrs reads, voxel for voxel.

mod edges;
mod large;

use std::sync::Arc;

use cellmap_runtime::{
    kernels::DestError, kernels::StridedDest, read::PackRequest, read::ReadError, read::WindowRequest,
    read::read_window, store::ChunkCache, store::ChunkError, store::Level, store::Multiscale, store::count_nonzero,
};
use serde_json::json;
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

use crate::common::{Dt, Fmt, blosc, ms_attrs, write_array_data, write_group, write_pyramid, zyx_axes};

/// The expected window: zarrs reads the in-bounds box, everything else is `fill`.
fn expected<T: Dt>(root: &std::path::Path, level: &Level, start: [i64; 3], shape: [usize; 3], fill: f32) -> Vec<f32> {
    let store = Arc::new(FilesystemStore::new(root).unwrap());
    let array = Array::open(store, &format!("/{}", level.path)).unwrap();
    let n = level.shape_vox.map(|v| v as i64);
    let lo: Vec<i64> = (0..3).map(|a| start[a].clamp(0, n[a])).collect();
    let hi: Vec<i64> = (0..3).map(|a| (start[a] + shape[a] as i64).clamp(0, n[a])).collect();
    let mut out = vec![fill; shape.iter().product()];
    if (0..3).any(|a| lo[a] >= hi[a]) {
        return out;
    }
    let mut ranges: Vec<std::ops::Range<u64>> = (0..3).map(|a| lo[a] as u64..hi[a] as u64).collect();
    if level.has_channel_axis {
        ranges.insert(0, 0..1);
    }
    let sub: Vec<T> = array
        .retrieve_array_subset::<Vec<T>>(&ArraySubset::new_with_ranges(&ranges))
        .unwrap();
    let e: Vec<usize> = (0..3).map(|a| (hi[a] - lo[a]) as usize).collect();
    for z in 0..e[0] {
        for y in 0..e[1] {
            for x in 0..e[2] {
                let (wz, wy, wx) = (
                    (lo[0] - start[0]) as usize + z,
                    (lo[1] - start[1]) as usize + y,
                    (lo[2] - start[2]) as usize + x,
                );
                out[(wz * shape[1] + wy) * shape[2] + wx] = sub[(z * e[1] + y) * e[2] + x].to_f32();
            }
        }
    }
    out
}

fn windows(level: &Level) -> Vec<([i64; 3], [usize; 3])> {
    let n = level.shape_vox.map(|v| v as i64);
    vec![
        ([0, 0, 0], [8, 8, 8]),                                                    // aligned
        ([3, 5, 7], [11, 6, 13]),                                                  // unaligned
        ([-4, 2, -9], [10, 7, 12]),                                                // partly before the start
        ([n[0] - 5, n[1] - 3, n[2] - 6], [9, 8, 10]),                              // partly past the end
        ([n[0] + 2, 0, 0], [4, 4, 4]),                                             // fully out of bounds
        ([-3, -3, -3], [n[0] as usize + 6, n[1] as usize + 6, n[2] as usize + 6]), // covers it all
    ]
}

fn check_store<T: Dt>(fmt: Fmt, chunks: [u64; 3], channels: Option<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ms");
    write_pyramid::<T>(&root, &fmt, [37, 29, 41], chunks, channels);
    let ms = Multiscale::open(root.to_str().unwrap()).unwrap();
    assert_eq!(ms.levels.len(), 2);
    assert_eq!(ms.zarr_format, fmt.zarr_format());
    let cache = ChunkCache::new(64 << 20);
    for level in &ms.levels {
        for (start, shape) in windows(level) {
            let want = expected::<T>(&root, level, start, shape, -1.0);
            let strides = [(shape[1] * shape[2]) as isize, shape[2] as isize, 1];
            let mut got = vec![0f32; want.len()];
            let r = read_window(
                level,
                None,
                &WindowRequest {
                    start_vox: start,
                    fill: -1.0f32,
                },
                StridedDest::new(&mut got, 0, strides, shape).unwrap(),
            )
            .unwrap();
            assert_eq!(got, want, "{} {:?} {start:?} {shape:?} (no cache)", level.path, fmt);
            let inb = want.len() as u64 - count_fill(level, start, shape);
            assert_eq!(r.voxels_in_bounds, inb);
            let mut cached = vec![0f32; want.len()];
            read_window(
                level,
                Some(&cache),
                &WindowRequest {
                    start_vox: start,
                    fill: -1.0f32,
                },
                StridedDest::new(&mut cached, 0, strides, shape).unwrap(),
            )
            .unwrap();
            assert_eq!(cached, want, "{} {start:?} {shape:?} (cache)", level.path);
            // Binarizing while copying equals binarizing after, bit for bit, whatever the threshold.
            for threshold in [
                -2.0,
                -1.0,
                0.0,
                0.3,
                7.0,
                7.5,
                100.25,
                1e3 + 0.1,
                16_777_216.5,
                1e12,
                1e30,
            ] {
                let binarized: Vec<f32> = want
                    .iter()
                    .map(|&x| {
                        if x.is_nan() {
                            x
                        } else if f64::from(x) > threshold {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let mut got = vec![0f32; want.len()];
                cellmap_runtime::read::read_window_binarize(
                    level,
                    Some(&cache),
                    &WindowRequest {
                        start_vox: start,
                        fill: -1.0,
                    },
                    StridedDest::new(&mut got, 0, strides, shape).unwrap(),
                    threshold,
                )
                .unwrap();
                assert_eq!(
                    got, binarized,
                    "{} {start:?} {shape:?} threshold {threshold}",
                    level.path
                );
            }
        }
    }
}

fn count_fill(level: &Level, start: [i64; 3], shape: [usize; 3]) -> u64 {
    let mut inside = 1u64;
    for a in 0..3 {
        let lo = start[a].clamp(0, level.shape_vox[a] as i64);
        let hi = (start[a] + shape[a] as i64).clamp(0, level.shape_vox[a] as i64);
        inside *= (hi - lo).max(0) as u64;
    }
    shape.iter().product::<usize>() as u64 - inside
}

#[test]
fn v2_blosc_lz4_shuffle_slash_u8() {
    check_store::<u8>(
        Fmt::V2 {
            compressor: blosc("lz4", 1),
            sep: "/",
        },
        [8, 8, 8],
        None,
    );
}

#[test]
fn v2_blosc_zstd_bitshuffle_dot_u16() {
    check_store::<u16>(
        Fmt::V2 {
            compressor: blosc("zstd", 2),
            sep: ".",
        },
        [16, 8, 12],
        None,
    );
}

#[test]
fn v2_gzip_u64() {
    check_store::<u64>(
        Fmt::V2 {
            compressor: json!({"id": "gzip", "level": 5}),
            sep: ".",
        },
        [10, 10, 10],
        None,
    );
}

#[test]
fn v2_zstd_f32() {
    check_store::<f32>(
        Fmt::V2 {
            compressor: json!({"id": "zstd", "level": 3}),
            sep: "/",
        },
        [9, 16, 7],
        None,
    );
}

#[test]
fn v2_uncompressed_channel_axis_u16() {
    check_store::<u16>(
        Fmt::V2 {
            compressor: json!(null),
            sep: "/",
        },
        [8, 8, 8],
        Some(3),
    );
}

#[test]
fn v3_sharded_u8() {
    check_store::<u8>(Fmt::V3Sharded { inner: vec![8, 8, 8] }, [16, 16, 16], None);
}

#[test]
fn v3_sharded_channel_axis_f32() {
    check_store::<f32>(
        Fmt::V3Sharded {
            inner: vec![1, 8, 4, 8],
        },
        [16, 8, 16],
        Some(2),
    );
}

#[test]
fn v3_sharded_level_shapes() {
    let dir = tempfile::tempdir().unwrap();
    write_pyramid::<u8>(
        dir.path(),
        &Fmt::V3Sharded { inner: vec![8, 4, 8] },
        [37, 29, 41],
        [16, 16, 16],
        None,
    );
    let ms = Multiscale::open(dir.path().to_str().unwrap()).unwrap();
    let s0 = &ms.levels[0];
    assert_eq!(s0.chunk_shape_vox, [8, 4, 8]);
    assert_eq!(s0.shard_shape_vox, Some([16, 16, 16]));
    assert_eq!(s0.shape_vox, [37, 29, 41]);
    assert_eq!(ms.levels[1].shape_vox, [19, 15, 21]);
}
