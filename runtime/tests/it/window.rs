//! `read_window` against direct zarrs reads, voxel for voxel.

use std::sync::Arc;

use cellmap_runtime::{
    ChunkCache, ChunkError, DestError, Level, Multiscale, PackRequest, ReadError, StridedDest, WindowRequest,
    count_nonzero, read_window,
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
                cellmap_runtime::read_window_binarize(
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

/// Mirror and transpose through strides, against the plain read and an index formula.
/// Windows of a megabyte and more take the row path with non-temporal stores; label chunks go
/// through the cache narrowed to `uint8`/`uint16` where their values fit. Both must stay voxel
/// exact: mixed chunk types along one row, more chunks along x than one pass holds, rows longer
/// than the row buffer, unaligned and mirrored destinations, windows partly outside the level.
#[test]
fn large_windows_and_narrowed_chunks_match_zarrs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let fmt = Fmt::V2 {
        compressor: blosc("zstd", 1),
        sep: ".",
    };
    // x < 150: small ids (chunks narrowed to u8); beyond: ids up to ~7e6 (u16 or kept as u64).
    let value = |z: u64, y: u64, x: u64| {
        if x < 150 {
            (z * 7 + y * 3 + x) % 200
        } else if x < 220 {
            (z * 31 + y * 17 + x) * 40
        } else {
            (z * x + y) * 1000
        }
    };
    let shapes = [[24u64, 40, 300], [4, 70, 2500]];
    let chunks = [[16u64, 16, 20], [4, 8, 1000]];
    for (i, (shape, chunk)) in shapes.iter().zip(&chunks).enumerate() {
        let mut data = Vec::new();
        for z in 0..shape[0] {
            for y in 0..shape[1] {
                for x in 0..shape[2] {
                    data.push(value(z, y, x % 300));
                }
            }
        }
        let rel = format!("a{i}");
        write_group(
            root,
            &rel,
            2,
            Some(ms_attrs(2, zyx_axes(), &[("s0", vec![8.0; 3], None)])),
        );
        write_array_data::<u64>(root, &format!("{rel}/s0"), &fmt, shape, chunk, &data);
    }
    let cases: [(usize, [i64; 3], [usize; 3]); 3] = [
        (0, [-3, 2, -5], [30, 36, 290]),
        (0, [1, 0, 0], [22, 40, 300]),
        (1, [0, -2, 0], [4, 72, 2500]),
    ];
    for (i, start, shape) in cases {
        let ms_root = root.join(format!("a{i}"));
        let ms = Multiscale::open(ms_root.to_str().unwrap()).unwrap();
        let level = &ms.levels[0];
        let want = expected::<u64>(&ms_root, level, start, shape, -1.0);
        let n = want.len();
        assert!(n * 4 >= 1 << 20, "the window must be large enough to stream");
        let cache = ChunkCache::new(256 << 20);
        let [_, d1, d2] = shape;
        // Plain, at an unaligned offset into a larger buffer; then mirrored along z and x.
        let plain = ([(d1 * d2) as isize, d2 as isize, 1], 3usize);
        let mirrored = (
            [-((d1 * d2) as isize), d2 as isize, -1],
            3 + (shape[0] - 1) * d1 * d2 + d2 - 1,
        );
        for (strides, offset) in [plain, mirrored] {
            let at = |v: &[f32], z: usize, y: usize, x: usize| {
                let d = offset as isize + z as isize * strides[0] + y as isize * strides[1] + x as isize * strides[2];
                v[d as usize]
            };
            for cache in [None, Some(&cache), Some(&cache)] {
                let mut got = vec![-7.0f32; n + 5];
                read_window(
                    level,
                    cache,
                    &WindowRequest {
                        start_vox: start,
                        fill: -1.0f32,
                    },
                    StridedDest::new(&mut got, offset, strides, shape).unwrap(),
                )
                .unwrap();
                let mut mismatches = 0;
                for z in 0..shape[0] {
                    for y in 0..d1 {
                        for x in 0..d2 {
                            mismatches += usize::from(at(&got, z, y, x) != want[(z * d1 + y) * d2 + x]);
                        }
                    }
                }
                assert_eq!(
                    mismatches,
                    0,
                    "a{i} {start:?} {shape:?} {strides:?} cache {}",
                    cache.is_some()
                );
                assert_eq!(&got[..3], &[-7.0; 3]);
                assert_eq!(&got[n + 3..], &[-7.0; 2]);

                let mut bin = vec![-7.0f32; n + 5];
                cellmap_runtime::read_window_binarize(
                    level,
                    cache,
                    &WindowRequest {
                        start_vox: start,
                        fill: -1.0,
                    },
                    StridedDest::new(&mut bin, offset, strides, shape).unwrap(),
                    150.5,
                )
                .unwrap();
                let mut mismatches = 0;
                for z in 0..shape[0] {
                    for y in 0..d1 {
                        for x in 0..d2 {
                            let w = want[(z * d1 + y) * d2 + x];
                            let b = if f64::from(w) > 150.5 { 1.0 } else { 0.0 };
                            mismatches += usize::from(at(&bin, z, y, x) != b);
                        }
                    }
                }
                assert_eq!(mismatches, 0, "binarize a{i} {start:?} {strides:?}");
            }
        }
        // The cache holds every touched chunk narrowed to the smallest type of its values.
        let c = chunks[i];
        let elems = c.iter().product::<u64>();
        let mut want_bytes = 0u64;
        let range = |a: usize| {
            let lo = start[a].max(0) as u64 / c[a];
            let hi = ((start[a] + shape[a] as i64).min(shapes[i][a] as i64) as u64 - 1) / c[a];
            lo..=hi
        };
        for cz in range(0) {
            for cy in range(1) {
                for cx in range(2) {
                    let mut max = 0;
                    for z in cz * c[0]..((cz + 1) * c[0]).min(shapes[i][0]) {
                        for y in cy * c[1]..((cy + 1) * c[1]).min(shapes[i][1]) {
                            for x in cx * c[2]..((cx + 1) * c[2]).min(shapes[i][2]) {
                                max = max.max(value(z, y, x % 300));
                            }
                        }
                    }
                    want_bytes += elems
                        * if max <= 255 {
                            1
                        } else if max <= 65_535 {
                            2
                        } else {
                            8
                        };
                }
            }
        }
        assert_eq!(cache.stats().bytes, want_bytes, "a{i}");
    }
}

/// A uint8 window of a megabyte and more read into uint8 (non-temporal byte stores, unaligned
/// and mirrored destinations) equals zarrs' read.
#[test]
fn large_uint8_windows_match_zarrs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let fmt = Fmt::V2 {
        compressor: blosc("lz4", 1),
        sep: ".",
    };
    let shape = [20u64, 70, 900];
    let data: Vec<u8> = (0..shape.iter().product::<u64>())
        .map(|i| (i * 2_654_435_761 % 251) as u8)
        .collect();
    write_group(
        root,
        "raw",
        2,
        Some(ms_attrs(2, zyx_axes(), &[("s0", vec![8.0; 3], None)])),
    );
    write_array_data::<u8>(root, "raw/s0", &fmt, &shape, &[8, 32, 128], &data);
    let ms_root = root.join("raw");
    let ms = Multiscale::open(ms_root.to_str().unwrap()).unwrap();
    let level = &ms.levels[0];
    let (start, size) = ([-1i64, 3, -7], [21usize, 64, 905]);
    assert!(size.iter().product::<usize>() >= 1 << 20);
    let want = expected::<u8>(&ms_root, level, start, size, 255.0);
    let n = want.len();
    let [d0, d1, d2] = size;
    let cache = ChunkCache::new(64 << 20);
    for (strides, offset) in [
        ([(d1 * d2) as isize, d2 as isize, 1], 5usize),
        ([(d1 * d2) as isize, -(d2 as isize), -1], 5 + (d1 - 1) * d2 + d2 - 1),
    ] {
        let mut got = vec![7u8; n + 9];
        read_window(
            level,
            Some(&cache),
            &WindowRequest {
                start_vox: start,
                fill: 255u8,
            },
            StridedDest::new(&mut got, offset, strides, size).unwrap(),
        )
        .unwrap();
        let mut mismatches = 0;
        for z in 0..d0 {
            for y in 0..d1 {
                for x in 0..d2 {
                    let d =
                        offset as isize + z as isize * strides[0] + y as isize * strides[1] + x as isize * strides[2];
                    mismatches += usize::from(f32::from(got[d as usize]) != want[(z * d1 + y) * d2 + x]);
                }
            }
        }
        assert_eq!(mismatches, 0, "{strides:?}");
        assert_eq!(&got[..5], &[7; 5]);
        assert_eq!(&got[n + 5..], &[7; 4]);
    }
}

/// Class bits OR-ed into one packed byte per voxel equal the thresholded values read by zarrs,
/// for small windows (runs OR-ed in piece by piece, also runs longer than a piece) and large
/// ones (rows assembled in the stack buffer), with bits already set by another class kept.
#[test]
fn packed_class_bits_match_zarrs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let fmt = Fmt::V2 {
        compressor: blosc("zstd", 1),
        sep: "/",
    };
    for (name, shape, chunks) in [
        ("narrow", [6u64, 7, 50], [4u64, 4, 16]),
        ("wide", [3, 3, 9000], [2, 2, 9000]),
        ("large", [40, 44, 200], [16, 16, 64]),
    ] {
        let n = shape.iter().product::<u64>();
        let a: Vec<u64> = (0..n).map(|i| i * 7919 % 13).collect();
        let b: Vec<u64> = (0..n).map(|i| (i * 104_729 % 1000) * 100).collect();
        for (class, data) in [("a", &a), ("b", &b)] {
            let rel = format!("{name}/{class}");
            write_group(
                root,
                &rel,
                2,
                Some(ms_attrs(2, zyx_axes(), &[("s0", vec![8.0; 3], None)])),
            );
            write_array_data::<u64>(root, &format!("{rel}/s0"), &fmt, &shape, &chunks, data);
        }
        let open = |class: &str| Multiscale::open(root.join(format!("{name}/{class}")).to_str().unwrap()).unwrap();
        let (ma, mb) = (open("a"), open("b"));
        let start = [1i64, 1, 3];
        let size = [0, 1, 2].map(|k| shape[k] as usize - 1 - usize::from(k == 2) * 5);
        let voxels: usize = size.iter().product();
        let cache = ChunkCache::new(64 << 20);
        let mut packed = vec![0b1000_0000u8; voxels];
        cellmap_runtime::read_window_pack(
            &ma.levels[0],
            Some(&cache),
            &PackRequest {
                start_vox: start,
                shape_vox: size,
                threshold: 6.5,
                bit: 0b01,
            },
            &mut packed,
        )
        .unwrap();
        cellmap_runtime::read_window_pack(
            &mb.levels[0],
            None,
            &PackRequest {
                start_vox: start,
                shape_vox: size,
                threshold: 50_000.0,
                bit: 0b10,
            },
            &mut packed,
        )
        .unwrap();
        let mut mismatches = 0;
        for z in 0..size[0] {
            for y in 0..size[1] {
                for x in 0..size[2] {
                    let i = (((start[0] as usize + z) * shape[1] as usize + start[1] as usize + y) * shape[2] as usize)
                        + start[2] as usize
                        + x;
                    let want = 0b1000_0000 | u8::from(a[i] as f64 > 6.5) | (u8::from(b[i] as f64 > 50_000.0) << 1);
                    mismatches += usize::from(packed[(z * size[1] + y) * size[2] + x] != want);
                }
            }
        }
        assert_eq!(mismatches, 0, "{name}");
    }
}

/// Chunks whose voxels all hold one value are kept tagged ([`ChunkData::UniformU8`]) and filled
/// without being read: every read path (copy to `u8`, to `f32` mapped, binarized, packed bits),
/// small windows and large streamed ones, forward and mirrored, still equals zarrs' values, with
/// uniform chunks of 0 and of 200 (also in a `uint64` array narrowed to `uint8`) among mixed ones.
#[test]
fn uniform_chunks_match_zarrs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let fmt = Fmt::V2 {
        compressor: blosc("zstd", 1),
        sep: "/",
    };
    let (shape, chunks) = ([40u64, 44, 200], [16u64, 16, 64]);
    let value = |i: u64| {
        let (z, y, x) = (i / (shape[1] * shape[2]), i / shape[2] % shape[1], i % shape[2]);
        match (z / chunks[0] + y / chunks[1] + x / chunks[2]) % 3 {
            0 => 0,
            1 => 200,
            _ => i * 2_654_435_761 % 251,
        }
    };
    let n = shape.iter().product::<u64>();
    let bytes: Vec<u8> = (0..n).map(|i| value(i) as u8).collect();
    let wide: Vec<u64> = (0..n).map(value).collect();
    for name in ["u8", "u64"] {
        write_group(
            root,
            name,
            2,
            Some(ms_attrs(2, zyx_axes(), &[("s0", vec![8.0; 3], None)])),
        );
    }
    write_array_data::<u8>(root, "u8/s0", &fmt, &shape, &chunks, &bytes);
    write_array_data::<u64>(root, "u64/s0", &fmt, &shape, &chunks, &wide);
    let open = |name: &str| Multiscale::open(root.join(name).to_str().unwrap()).unwrap();
    let (m8, m64) = (open("u8"), open("u64"));
    let (l8, l64) = (&m8.levels[0], &m64.levels[0]);
    let cache = ChunkCache::new(64 << 20);
    // A uniform chunk is tagged once decoded; a mixed one is not.
    let tagged = |c: [u64; 3]| {
        let data = cellmap_runtime::decode_chunk(l64, c).unwrap().tagged();
        matches!(data, cellmap_runtime::ChunkData::UniformU8(_))
    };
    assert!(tagged([0, 0, 0]) && tagged([0, 0, 1]) && !tagged([0, 0, 2]));
    for (start, size) in [([1i64, 2, 3], [5usize, 6, 70]), ([-2, 1, -5], [42, 43, 210])] {
        let want = expected::<u8>(&root.join("u8"), l8, start, size, 9.0);
        let [d0, d1, d2] = size;
        let voxels = d0 * d1 * d2;
        for (strides, offset) in [
            ([(d1 * d2) as isize, d2 as isize, 1], 0usize),
            ([(d1 * d2) as isize, -(d2 as isize), -1], (d1 - 1) * d2 + d2 - 1),
        ] {
            let at = |z: usize, y: usize, x: usize| {
                (offset as isize + z as isize * strides[0] + y as isize * strides[1] + x as isize * strides[2]) as usize
            };
            let mut got8 = vec![0u8; voxels];
            read_window(
                l8,
                Some(&cache),
                &WindowRequest {
                    start_vox: start,
                    fill: 9u8,
                },
                StridedDest::new(&mut got8, offset, strides, size).unwrap(),
            )
            .unwrap();
            let mut mapped = vec![0f32; voxels];
            cellmap_runtime::read_window_map(
                l64,
                Some(&cache),
                &WindowRequest {
                    start_vox: start,
                    fill: 9.0,
                },
                StridedDest::new(&mut mapped, offset, strides, size).unwrap(),
                |v| v * 0.5 - 1.0,
            )
            .unwrap();
            let mut binary = vec![0f32; voxels];
            cellmap_runtime::read_window_binarize(
                l64,
                None,
                &WindowRequest {
                    start_vox: start,
                    fill: 9.0,
                },
                StridedDest::new(&mut binary, offset, strides, size).unwrap(),
                100.0,
            )
            .unwrap();
            let mut mismatches = 0;
            for z in 0..d0 {
                for y in 0..d1 {
                    for x in 0..d2 {
                        let w = want[(z * d1 + y) * d2 + x];
                        let d = at(z, y, x);
                        mismatches += usize::from(f32::from(got8[d]) != w);
                        mismatches += usize::from(mapped[d] != w * 0.5 - 1.0);
                        mismatches += usize::from(binary[d] != f32::from(u8::from(f64::from(w) > 100.0)));
                    }
                }
            }
            assert_eq!(mismatches, 0, "{start:?} {strides:?}");
        }
        // Packed bits: only in-level voxels are written.
        let (lo, hi) = (
            [0, 1, 2].map(|a| start[a].max(0)),
            [0, 1, 2].map(|a| (start[a] + size[a] as i64).min(shape[a] as i64)),
        );
        let inner = [0, 1, 2].map(|a| (hi[a] - lo[a]) as usize);
        let mut packed = vec![0b100u8; inner.iter().product()];
        cellmap_runtime::read_window_pack(
            l64,
            Some(&cache),
            &PackRequest {
                start_vox: lo,
                shape_vox: inner,
                threshold: 100.0,
                bit: 0b01,
            },
            &mut packed,
        )
        .unwrap();
        let mut mismatches = 0;
        for z in 0..inner[0] {
            for y in 0..inner[1] {
                for x in 0..inner[2] {
                    let i = ((lo[0] as u64 + z as u64) * shape[1] + lo[1] as u64 + y as u64) * shape[2]
                        + lo[2] as u64
                        + x as u64;
                    let want = 0b100 | u8::from(value(i) > 100);
                    mismatches += usize::from(packed[(z * inner[1] + y) * inner[2] + x] != want);
                }
            }
        }
        assert_eq!(mismatches, 0, "packed {start:?}");
    }
}

#[test]
fn negative_and_permuted_strides() {
    let dir = tempfile::tempdir().unwrap();
    write_pyramid::<u8>(
        dir.path(),
        &Fmt::V2 {
            compressor: blosc("lz4", 1),
            sep: "/",
        },
        [37, 29, 41],
        [8, 8, 8],
        None,
    );
    let ms = Multiscale::open(dir.path().to_str().unwrap()).unwrap();
    let level = &ms.levels[0];
    let (start, [d0, d1, d2]) = ([-2i64, 3, 30], [9usize, 10, 14]);
    let plain_strides = [(d1 * d2) as isize, d2 as isize, 1];
    let mut plain = vec![0u8; d0 * d1 * d2];
    read_window(
        level,
        None,
        &WindowRequest {
            start_vox: start,
            fill: 255u8,
        },
        StridedDest::new(&mut plain, 0, plain_strides, [d0, d1, d2]).unwrap(),
    )
    .unwrap();
    let at = |z: usize, y: usize, x: usize| plain[(z * d1 + y) * d2 + x];

    // Mirror z and x: dest[(d0-1-i), j, (d2-1-k)].
    let mut mirrored = vec![0u8; plain.len()];
    let offset = (d0 - 1) * d1 * d2 + (d2 - 1);
    let strides = [-((d1 * d2) as isize), d2 as isize, -1];
    for cache in [None, Some(ChunkCache::new(1 << 20))] {
        read_window(
            level,
            cache.as_ref(),
            &WindowRequest {
                start_vox: start,
                fill: 255u8,
            },
            StridedDest::new(&mut mirrored, offset, strides, [d0, d1, d2]).unwrap(),
        )
        .unwrap();
        for i in 0..d0 {
            for j in 0..d1 {
                for k in 0..d2 {
                    assert_eq!(mirrored[((d0 - 1 - i) * d1 + j) * d2 + (d2 - 1 - k)], at(i, j, k));
                }
            }
        }
    }

    // Transpose to (x, z, y) order: dest shape [d2, d0, d1], dest[k, i, j] = src[i, j, k].
    let mut transposed = vec![0u8; plain.len()];
    let strides = [d1 as isize, 1, (d0 * d1) as isize];
    read_window(
        level,
        None,
        &WindowRequest {
            start_vox: start,
            fill: 255u8,
        },
        StridedDest::new(&mut transposed, 0, strides, [d0, d1, d2]).unwrap(),
    )
    .unwrap();
    for i in 0..d0 {
        for j in 0..d1 {
            for k in 0..d2 {
                assert_eq!(transposed[(k * d0 + i) * d1 + j], at(i, j, k));
            }
        }
    }

    // Mirror y and transpose y<->x, into a sub-box of a bigger buffer.
    let mut big = vec![7u8; 4 + d0 * d1 * d2 + 9];
    let strides = [(d1 * d2) as isize, -1, d1 as isize];
    let offset = 4 + (d1 - 1);
    read_window(
        level,
        None,
        &WindowRequest {
            start_vox: start,
            fill: 255u8,
        },
        StridedDest::new(&mut big, offset, strides, [d0, d1, d2]).unwrap(),
    )
    .unwrap();
    for i in 0..d0 {
        for j in 0..d1 {
            for k in 0..d2 {
                assert_eq!(big[4 + i * d1 * d2 + k * d1 + (d1 - 1 - j)], at(i, j, k));
            }
        }
    }
    assert_eq!(&big[..4], &[7; 4]);
    assert_eq!(&big[big.len() - 9..], &[7; 9]);
}

#[test]
fn destination_and_dtype_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_pyramid::<u16>(
        dir.path(),
        &Fmt::V2 {
            compressor: blosc("lz4", 1),
            sep: "/",
        },
        [16, 16, 16],
        [8, 8, 8],
        None,
    );
    let ms = Multiscale::open(dir.path().to_str().unwrap()).unwrap();
    let level = &ms.levels[0];
    let mut small = vec![0f32; 63];
    // The destination is checked when the view is made, before anything is read or written.
    let err = StridedDest::new(&mut small, 0, [16, 4, 1], [4, 4, 4]).unwrap_err();
    assert!(
        matches!(
            err,
            DestError::OutOfRange {
                min_index: 0,
                max_index: 63,
                dest_len: 63,
                ..
            }
        ),
        "{err}"
    );
    let err = StridedDest::new(&mut small, 0, [-16, 4, 1], [4, 4, 4]).unwrap_err();
    assert!(matches!(err, DestError::OutOfRange { min_index: -48, .. }), "{err}");
    assert_eq!(small, vec![0.0; 63], "nothing written on error");
    let mut bytes = vec![0u8; 64];
    let err = read_window(
        level,
        None,
        &WindowRequest {
            start_vox: [0, 0, 0],
            fill: 0u8,
        },
        StridedDest::new(&mut bytes, 0, [16, 4, 1], [4, 4, 4]).unwrap(),
    )
    .unwrap_err();
    assert!(matches!(err, ReadError::DtypeMismatch { .. }));
    assert!(err.to_string().contains("uint16"), "{err}");
}

#[test]
fn cache_counts_hits_on_repeat() {
    let dir = tempfile::tempdir().unwrap();
    write_pyramid::<u8>(
        dir.path(),
        &Fmt::V2 {
            compressor: blosc("zstd", 1),
            sep: "/",
        },
        [32, 32, 32],
        [8, 8, 8],
        None,
    );
    let ms = Multiscale::open(dir.path().to_str().unwrap()).unwrap();
    let level = &ms.levels[0];
    let cache = ChunkCache::new(1 << 20);
    let mut a = vec![0f32; 10 * 10 * 10];
    // Window [3, 13) on each axis touches chunks 0 and 1 per axis: 8 chunks.
    read_window(
        level,
        Some(&cache),
        &WindowRequest {
            start_vox: [3, 3, 3],
            fill: 0.0,
        },
        StridedDest::new(&mut a, 0, [100, 10, 1], [10, 10, 10]).unwrap(),
    )
    .unwrap();
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.evictions, s.bytes), (0, 8, 0, 8 * 512));
    let mut b = vec![1f32; 1000];
    read_window(
        level,
        Some(&cache),
        &WindowRequest {
            start_vox: [3, 3, 3],
            fill: 0.0,
        },
        StridedDest::new(&mut b, 0, [100, 10, 1], [10, 10, 10]).unwrap(),
    )
    .unwrap();
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (8, 8));
    assert_eq!(a, b);
    // A tiny budget evicts but stays correct.
    let tiny = ChunkCache::new(1024);
    let mut c = vec![0f32; 1000];
    read_window(
        level,
        Some(&tiny),
        &WindowRequest {
            start_vox: [3, 3, 3],
            fill: 0.0,
        },
        StridedDest::new(&mut c, 0, [100, 10, 1], [10, 10, 10]).unwrap(),
    )
    .unwrap();
    assert_eq!(c, a);
    assert_eq!(tiny.stats().evictions, 6);
    assert_eq!(tiny.stats().bytes, 1024);
}

#[test]
fn threads_share_one_cache() {
    let dir = tempfile::tempdir().unwrap();
    write_pyramid::<u16>(
        dir.path(),
        &Fmt::V3Sharded { inner: vec![8, 8, 8] },
        [40, 40, 40],
        [16, 16, 16],
        None,
    );
    let ms = Multiscale::open(dir.path().to_str().unwrap()).unwrap();
    let level = ms.levels[0].clone();
    let cache = Arc::new(ChunkCache::new(1 << 20));
    let mut reference = vec![0f32; 20 * 20 * 20];
    read_window(
        &level,
        None,
        &WindowRequest {
            start_vox: [5, 6, 7],
            fill: 0.0,
        },
        StridedDest::new(&mut reference, 0, [400, 20, 1], [20, 20, 20]).unwrap(),
    )
    .unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (level, cache) = (level.clone(), cache.clone());
            std::thread::spawn(move || {
                let mut out = vec![0f32; 8000];
                for _ in 0..5 {
                    read_window(
                        &level,
                        Some(&cache),
                        &WindowRequest {
                            start_vox: [5, 6, 7],
                            fill: 0.0,
                        },
                        StridedDest::new(&mut out, 0, [400, 20, 1], [20, 20, 20]).unwrap(),
                    )
                    .unwrap();
                }
                out
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), reference);
    }
    let s = cache.stats();
    // 4 chunks per axis (8³ inner chunks, windows [5, 25), [6, 26), [7, 27)).
    assert_eq!(s.hits + s.misses, 4 * 5 * 64);
    assert!(s.misses >= 64 && s.misses <= 4 * 64, "{s:?}");
}

fn chunk_file(root: &std::path::Path, key: &str) -> std::path::PathBuf {
    root.join("s0").join(key)
}

#[test]
fn corrupt_truncated_and_missing_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_pyramid::<u8>(
        root,
        &Fmt::V2 {
            compressor: blosc("lz4", 1),
            sep: "/",
        },
        [16, 16, 16],
        [8, 8, 8],
        None,
    );
    // Garbage in chunk (0, 1, 0).
    std::fs::write(chunk_file(root, "0/1/0"), b"this is not a blosc chunk at all").unwrap();
    // Truncate chunk (1, 0, 0) to half its size.
    let p = chunk_file(root, "1/0/0");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    // Remove chunk (1, 1, 1) and set the array's fill value to 7: the chunk reads as 7s.
    std::fs::remove_file(chunk_file(root, "1/1/1")).unwrap();
    let meta_path = root.join("s0/.zarray");
    let mut meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["fill_value"] = json!(7);
    std::fs::write(&meta_path, meta.to_string()).unwrap();

    let ms = Multiscale::open(root.to_str().unwrap()).unwrap();
    let level = &ms.levels[0];
    let mut out = vec![0f32; 512];
    let err = read_window(
        level,
        None,
        &WindowRequest {
            start_vox: [0, 8, 0],
            fill: 0.0,
        },
        StridedDest::new(&mut out, 0, [64, 8, 1], [8, 8, 8]).unwrap(),
    )
    .unwrap_err();
    match &err {
        ReadError::Chunk(ChunkError::Decode { array, key, chunk, .. }) => {
            assert!(array.ends_with("/s0"), "{array}");
            assert_eq!(key, "s0/0/1/0");
            assert_eq!(*chunk, [0, 1, 0]);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("`s0/0/1/0`"), "{err}");
    let cache = ChunkCache::new(1 << 20);
    let err = read_window(
        level,
        Some(&cache),
        &WindowRequest {
            start_vox: [8, 0, 0],
            fill: 0.0,
        },
        StridedDest::new(&mut out, 0, [64, 8, 1], [8, 8, 8]).unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ReadError::Chunk(ChunkError::Decode { key, chunk: [1, 0, 0], .. }) if key == "s0/1/0/0"),
        "{err}"
    );
    // The window [12, 16) per axis lies inside the missing chunk: the array fill value 7, not
    // the caller's fill 5 (nothing is out of bounds).
    let mut missing = vec![9f32; 64];
    read_window(
        level,
        Some(&cache),
        &WindowRequest {
            start_vox: [12, 12, 12],
            fill: 5.0,
        },
        StridedDest::new(&mut missing, 0, [16, 4, 1], [4, 4, 4]).unwrap(),
    )
    .unwrap();
    assert_eq!(missing, vec![7.0; 64]);
    // [14, 18) per axis: 2³ voxels of the missing chunk, the rest out of bounds.
    let mut edge = vec![9f32; 64];
    let r = read_window(
        level,
        Some(&cache),
        &WindowRequest {
            start_vox: [14, 14, 14],
            fill: 5.0,
        },
        StridedDest::new(&mut edge, 0, [16, 4, 1], [4, 4, 4]).unwrap(),
    )
    .unwrap();
    assert_eq!(r.voxels_in_bounds, 8);
    assert_eq!(edge.iter().filter(|v| **v == 7.0).count(), 8);
    assert_eq!(edge.iter().filter(|v| **v == 5.0).count(), 56);
    assert!(count_nonzero(level).is_err());
}

#[test]
fn corrupt_shard_names_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_pyramid::<u8>(
        root,
        &Fmt::V3Sharded { inner: vec![8, 8, 8] },
        [32, 32, 32],
        [16, 16, 16],
        None,
    );
    let p = root.join("s0/c/1/0/1");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    let ms = Multiscale::open(root.to_str().unwrap()).unwrap();
    let mut out = vec![0f32; 512];
    // Inner chunk (2, 0, 3) lives in shard (1, 0, 1).
    let err = read_window(
        &ms.levels[0],
        None,
        &WindowRequest {
            start_vox: [16, 0, 24],
            fill: 0.0,
        },
        StridedDest::new(&mut out, 0, [64, 8, 1], [8, 8, 8]).unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ReadError::Chunk(ChunkError::Decode { key, chunk: [2, 0, 3], .. }) if key == "s0/c/1/0/1"),
        "{err}"
    );
}

#[test]
fn count_nonzero_matches_data() {
    let dir = tempfile::tempdir().unwrap();
    let (d0, d1) = write_pyramid::<u8>(
        dir.path(),
        &Fmt::V2 {
            compressor: blosc("lz4", 1),
            sep: "/",
        },
        [19, 13, 11],
        [8, 8, 8],
        None,
    );
    let ms = Multiscale::open(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(
        count_nonzero(&ms.levels[0]).unwrap(),
        d0.iter().filter(|v| **v != 0).count() as u64
    );
    assert_eq!(
        count_nonzero(&ms.levels[1]).unwrap(),
        d1.iter().filter(|v| **v != 0).count() as u64
    );
    // A data set with zeros: 19*13*11 = 2717 voxels, value (7i) % 251 is 0 for i multiple of 251.
    assert_eq!(d0.iter().filter(|v| **v == 0).count(), 11);
}
