//! Strides, destination and dtype errors, the shared cache, corrupt and missing chunks, voxel counts.

use super::*;

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
    // Window [3, 13) on each axis touches chunks 0 and 1 per axis: 8 chunks.
    let read = |cache: &ChunkCache| {
        let mut out = vec![f32::NAN; 1000];
        read_window(
            level,
            Some(cache),
            &WindowRequest {
                start_vox: [3, 3, 3],
                fill: 0.0,
            },
            StridedDest::new(&mut out, 0, [100, 10, 1], [10, 10, 10]).unwrap(),
        )
        .unwrap();
        out
    };
    let cache = ChunkCache::new(1 << 20);
    let a = read(&cache);
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.evictions, s.bytes), (0, 8, 0, 8 * 512));
    let b = read(&cache);
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (8, 8));
    assert_eq!(a, b);
    // A tiny budget (two chunks) stays correct. The first read keeps the two chunks that fit
    // and declines the six others; read again, those six are kept on their second miss, each
    // evicting one.
    let tiny = ChunkCache::new(1024);
    for (pass, want) in [(1, (0, 8, 0, 6)), (2, (2, 14, 6, 6))] {
        assert_eq!(read(&tiny), a, "pass {pass}");
        let s = tiny.stats();
        assert_eq!((s.hits, s.misses, s.evictions, s.declined), want, "pass {pass}");
        assert_eq!(s.bytes, 1024);
    }
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
