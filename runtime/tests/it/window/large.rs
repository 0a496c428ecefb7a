//! Large, uint8, packed-bit and uniform-chunk windows against zarrs reads.

use super::*;

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
                cellmap_runtime::read::read_window_binarize(
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
        cellmap_runtime::read::read_window_pack(
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
        cellmap_runtime::read::read_window_pack(
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
        let data = cellmap_runtime::store::decode_chunk(l64, c).unwrap().tagged();
        matches!(data, cellmap_runtime::store::ChunkData::UniformU8(_))
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
            cellmap_runtime::read::read_window_map(
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
            cellmap_runtime::read::read_window_binarize(
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
        cellmap_runtime::read::read_window_pack(
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
