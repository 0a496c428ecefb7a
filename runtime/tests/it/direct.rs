//! Chunks decoded directly (no zarrs codec pipeline) equal zarrs' decodes of the same chunks,
//! for every layout the direct decoder takes; layouts it does not take are still read, by zarrs.

use std::path::Path;
use std::sync::Arc;

use cellmap_runtime::kernels::StridedDest;
use cellmap_runtime::read::{WindowRequest, read_window, read_window_binarize};
use cellmap_runtime::store::{
    ChunkCache, ChunkData, ChunkError, ChunkKey, CompressedOptions, FetchOptions, Level, Multiscale, decode_chunk,
};
use serde_json::{Value, json};
use zarrs::array::{Array, ArrayShardedReadableExt, ArrayShardedReadableExtCache, ArraySubset, CodecOptions};
use zarrs::filesystem::FilesystemStore;

use crate::common::{Dt, ms_attrs, write_group, zyx_axes};

const SHAPE: [u64; 3] = [6, 5, 7];
const CHUNKS: [u64; 3] = [4, 4, 4];

/// Values of voxel `i`; voxels in chunk (1, 1, 1) hold the fill value, so that chunk is never
/// written (zarrs leaves out chunks of fill value only).
fn values<T: Dt>(fill: T) -> Vec<T> {
    let n = SHAPE.iter().product::<u64>();
    (0..n)
        .map(|i| {
            let (z, y, x) = (i / 35, i / 7 % 5, i % 7);
            if z >= 4 && y >= 4 && x >= 4 {
                fill
            } else {
                T::from_index(i * 13 + 5)
            }
        })
        .collect()
}

/// A one-level OME-NGFF group at `root` whose `s0` has metadata document `meta` (`.zarray` for
/// v2, `zarr.json` for v3), written by zarrs with [`values`].
fn write<T: Dt>(root: &Path, zarr_format: u8, meta: &Value, fill: T) {
    let attrs = ms_attrs(zarr_format, zyx_axes(), &[("s0", vec![8.0; 3], None)]);
    write_group(root, "", zarr_format, Some(attrs));
    let dir = root.join("s0");
    std::fs::create_dir_all(&dir).unwrap();
    let file = if zarr_format == 2 { ".zarray" } else { "zarr.json" };
    std::fs::write(dir.join(file), meta.to_string()).unwrap();
    let store = Arc::new(FilesystemStore::new(root).unwrap());
    let array = Array::open(store, "/s0").unwrap();
    array
        .store_array_subset(&ArraySubset::new_with_shape(SHAPE.to_vec()), values(fill))
        .unwrap();
    assert!(
        array.retrieve_encoded_chunk(&[1, 1, 1]).unwrap().is_none(),
        "the chunk of fill value only is not stored"
    );
}

fn v2<T: Dt>(compressor: Value, sep: &str, fill: Value) -> Value {
    json!({"zarr_format": 2, "shape": SHAPE, "chunks": CHUNKS, "dtype": T::V2, "compressor": compressor,
        "fill_value": fill, "order": "C", "filters": null, "dimension_separator": sep})
}

fn v3<T: Dt>(compressor: Option<Value>, keys: Value, fill: Value) -> Value {
    let mut codecs = vec![json!({"name": "bytes", "configuration": {"endian": "little"}})];
    codecs.extend(compressor);
    json!({"zarr_format": 3, "node_type": "array", "shape": SHAPE, "data_type": T::V3,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": CHUNKS}},
        "chunk_key_encoding": keys, "fill_value": fill, "codecs": codecs, "attributes": {}})
}

/// Every chunk of the group at `root` decoded by us equals zarrs' decode of it, and the whole
/// array read through a cache whose compressed tier keeps local chunks (no decoded chunk kept),
/// twice, gives the same voxels: first from the files, then from the tier.
fn assert_reads_equal<T: Dt>(root: &Path, name: &str, direct: bool, to_chunk: fn(Vec<T>) -> ChunkData) {
    let ms = Multiscale::open(root.to_str().unwrap()).unwrap();
    let level = &ms.levels[0];
    assert_eq!(level.decodes_directly(), direct, "{name}: decoded directly");
    let store = Arc::new(FilesystemStore::new(root).unwrap());
    let array = Array::open(store, "/s0").unwrap();
    // The decode unit: the chunk, or the inner chunk of a sharded array.
    let shards = ArrayShardedReadableExtCache::new(&array);
    let grid = level.chunk_grid_shape();
    for z in 0..grid[0] {
        for y in 0..grid[1] {
            for x in 0..grid[2] {
                let expected = array
                    .retrieve_subchunk_opt::<Vec<T>>(&shards, &[z, y, x], &CodecOptions::default())
                    .unwrap();
                assert_eq!(
                    decode_chunk(level, [z, y, x]).unwrap(),
                    to_chunk(expected),
                    "{name}: chunk {z} {y} {x}"
                );
            }
        }
    }
    let all: Vec<f32> = array
        .retrieve_array_subset::<Vec<T>>(&array.subset_all())
        .unwrap()
        .into_iter()
        .map(Dt::to_f32)
        .collect();
    let cache = ChunkCache::new(0).with_compressed(CompressedOptions {
        budget_bytes: 1 << 20,
        remote_only: false,
    });
    let mut after = Vec::new();
    for pass in 0..2 {
        let mut out = vec![f32::NAN; all.len()];
        let shape = SHAPE.map(|v| v as usize);
        let dest = StridedDest::c_order(&mut out, shape).unwrap();
        read_window(
            level,
            Some(&cache),
            &WindowRequest {
                start_vox: [0; 3],
                fill: 0.0,
            },
            dest,
        )
        .unwrap();
        assert!(
            out.iter().zip(&all).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}: pass {pass}"
        );
        after.push(cache.compressed_stats());
    }
    if level.shard_shape_vox.is_none() {
        assert_eq!(
            (after[1].misses, after[1].hits),
            (8, 8),
            "{name}: each chunk once from the files, then from the tier"
        );
    } else {
        // A shard's index is read once and kept; its inner chunks come from the tier the second
        // time.
        assert_eq!(after[1].misses, after[0].misses, "{name}: nothing read again");
        assert!(after[1].hits > after[0].hits, "{name}: {after:?}");
    }
}

fn blosc_v2(cname: &str, shuffle: u8) -> Value {
    json!({"id": "blosc", "cname": cname, "clevel": 5, "shuffle": shuffle, "blocksize": 0})
}

/// zarr v2 arrays: every compressor the direct decoder takes, both separators, fill values 0
/// and not 0, one- to eight-byte elements.
#[test]
fn zarr_v2_chunks_decode_directly_and_equal_zarrs() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("raw", Value::Null, "."),
        ("blosc-lz4", blosc_v2("lz4", 1), "/"),
        ("blosc-zstd-bitshuffle", blosc_v2("zstd", 2), "."),
        ("zstd", json!({"id": "zstd", "level": 3}), "/"),
        ("gzip", json!({"id": "gzip", "level": 5}), "."),
    ];
    for (name, compressor, sep) in cases {
        let tmp = tempfile::tempdir().unwrap();
        write::<u8>(tmp.path(), 2, &v2::<u8>(compressor.clone(), sep, json!(0)), 0);
        assert_reads_equal::<u8>(tmp.path(), &format!("v2 {name} u8"), true, ChunkData::U8);
        let tmp = tempfile::tempdir().unwrap();
        write::<u16>(tmp.path(), 2, &v2::<u16>(compressor.clone(), sep, json!(7)), 7);
        assert_reads_equal::<u16>(tmp.path(), &format!("v2 {name} u16"), true, ChunkData::U16);
        let tmp = tempfile::tempdir().unwrap();
        write::<f32>(tmp.path(), 2, &v2::<f32>(compressor.clone(), sep, json!(-1.5)), -1.5);
        assert_reads_equal::<f32>(tmp.path(), &format!("v2 {name} f32"), true, ChunkData::F32);
        let tmp = tempfile::tempdir().unwrap();
        write::<u64>(tmp.path(), 2, &v2::<u64>(compressor, sep, json!(3)), 3);
        assert_reads_equal::<u64>(tmp.path(), &format!("v2 {name} u64"), true, ChunkData::U64);
    }
}

/// zarr v3 arrays: every codec chain the direct decoder takes, the three key spellings.
#[test]
fn zarr_v3_chunks_decode_directly_and_equal_zarrs() {
    let default = |sep: &str| json!({"name": "default", "configuration": {"separator": sep}});
    let cases: Vec<(&str, Option<Value>, Value)> = vec![
        ("raw", None, default("/")),
        (
            "blosc-lz4",
            Some(json!({"name": "blosc", "configuration": {"cname": "lz4", "clevel": 1,
                "shuffle": "shuffle", "typesize": 2, "blocksize": 0}})),
            default("."),
        ),
        (
            "zstd-checksum",
            Some(json!({"name": "zstd", "configuration": {"level": 3, "checksum": true}})),
            json!({"name": "v2", "configuration": {"separator": "."}}),
        ),
        (
            "gzip",
            Some(json!({"name": "gzip", "configuration": {"level": 5}})),
            default("/"),
        ),
    ];
    for (name, compressor, keys) in cases {
        let tmp = tempfile::tempdir().unwrap();
        write::<u16>(tmp.path(), 3, &v3::<u16>(compressor.clone(), keys.clone(), json!(0)), 0);
        assert_reads_equal::<u16>(tmp.path(), &format!("v3 {name} u16"), true, ChunkData::U16);
        let tmp = tempfile::tempdir().unwrap();
        write::<i16>(tmp.path(), 3, &v3::<i16>(compressor, keys, json!(-2)), -2);
        assert_reads_equal::<i16>(tmp.path(), &format!("v3 {name} i16"), true, ChunkData::I16);
    }
}

/// Layouts the direct decoder leaves to zarrs (big-endian elements, a filter, F order, a
/// transpose, a checksum codec) read the same voxels through zarrs.
#[test]
fn other_layouts_are_decoded_by_zarrs() {
    let zstd = json!({"id": "zstd", "level": 3});
    let mut big = v2::<u16>(zstd.clone(), ".", json!(0));
    big["dtype"] = json!(">u2");
    let tmp = tempfile::tempdir().unwrap();
    write::<u16>(tmp.path(), 2, &big, 0);
    assert_reads_equal::<u16>(tmp.path(), "v2 big-endian", false, ChunkData::U16);
    let mut fortran = v2::<u16>(zstd, ".", json!(0));
    fortran["order"] = json!("F");
    let tmp = tempfile::tempdir().unwrap();
    write::<u16>(tmp.path(), 2, &fortran, 0);
    assert_reads_equal::<u16>(tmp.path(), "v2 F order", false, ChunkData::U16);
    let keys = json!({"name": "default"});
    let mut crc = v3::<u16>(Some(json!({"name": "crc32c"})), keys.clone(), json!(0));
    let tmp = tempfile::tempdir().unwrap();
    write::<u16>(tmp.path(), 3, &crc, 0);
    assert_reads_equal::<u16>(tmp.path(), "v3 crc32c", false, ChunkData::U16);
    crc["codecs"] = json!([{"name": "transpose", "configuration": {"order": [2, 1, 0]}},
        {"name": "bytes", "configuration": {"endian": "little"}}]);
    let tmp = tempfile::tempdir().unwrap();
    write::<u16>(tmp.path(), 3, &crc, 0);
    assert_reads_equal::<u16>(tmp.path(), "v3 transpose", false, ChunkData::U16);
}

/// A damaged chunk file is an error naming the array, the chunk's key and what did not match:
/// never a short chunk, never a panic.
#[test]
fn a_damaged_chunk_is_an_error_naming_its_key() {
    for (name, compressor) in [
        ("raw", Value::Null),
        ("zstd", json!({"id": "zstd", "level": 3})),
        ("gzip", json!({"id": "gzip", "level": 5})),
        ("blosc", blosc_v2("lz4", 1)),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        write::<u8>(tmp.path(), 2, &v2::<u8>(compressor, "/", json!(0)), 0);
        let file = tmp.path().join("s0/1/0/1");
        let stored = std::fs::read(&file).unwrap();
        std::fs::write(&file, &stored[..stored.len() - 3]).unwrap();
        let ms = Multiscale::open(tmp.path().to_str().unwrap()).unwrap();
        let err = decode_chunk(&ms.levels[0], [1, 0, 1]).unwrap_err();
        let ChunkError::Decode {
            key, array, message, ..
        } = &err
        else {
            panic!("{name}: {err}")
        };
        assert_eq!(key, "s0/1/0/1", "{name}");
        assert!(array.ends_with("/s0"), "{name}: {array}");
        assert!(!message.is_empty(), "{name}");
        // The chunks around it still read.
        assert!(decode_chunk(&ms.levels[0], [0, 0, 0]).is_ok(), "{name}");
    }
}

/// Sharded zarr v3 arrays: inner chunks decoded directly, their shard's index read once (at the
/// end or the start, with or without its CRC-32C); a shard never written and inner chunks never
/// written hold the fill value.
#[test]
fn sharded_inner_chunks_decode_directly_and_equal_zarrs() {
    let sharded = |index_location: &str, crc: bool, inner_codecs: Value| {
        let mut index_codecs = vec![json!({"name": "bytes", "configuration": {"endian": "little"}})];
        if crc {
            index_codecs.push(json!({"name": "crc32c"}));
        }
        json!([{"name": "sharding_indexed", "configuration": {"chunk_shape": [2, 2, 2],
            "codecs": inner_codecs, "index_codecs": index_codecs, "index_location": index_location}}])
    };
    let bytes = json!({"name": "bytes", "configuration": {"endian": "little"}});
    let zstd = json!({"name": "zstd", "configuration": {"level": 3, "checksum": false}});
    let gzip = json!({"name": "gzip", "configuration": {"level": 1}});
    for (name, codecs) in [
        ("end, crc32c, zstd", sharded("end", true, json!([bytes, zstd]))),
        ("start, crc32c, raw", sharded("start", true, json!([bytes]))),
        ("end, no checksum, gzip", sharded("end", false, json!([bytes, gzip]))),
    ] {
        let mut meta = v3::<u16>(None, json!({"name": "default"}), json!(5));
        meta["codecs"] = codecs;
        let tmp = tempfile::tempdir().unwrap();
        write::<u16>(tmp.path(), 3, &meta, 5);
        assert_reads_equal::<u16>(tmp.path(), &format!("sharded {name}"), true, ChunkData::U16);
    }
    // A shard whose index fails its checksum is an error naming the shard.
    let mut meta = v3::<u16>(None, json!({"name": "default"}), json!(5));
    meta["codecs"] = sharded("end", true, json!([bytes, zstd]));
    let tmp = tempfile::tempdir().unwrap();
    write::<u16>(tmp.path(), 3, &meta, 5);
    let file = tmp.path().join("s0/c/0/0/0");
    let mut stored = std::fs::read(&file).unwrap();
    let n = stored.len();
    stored[n - 5] ^= 0xff;
    std::fs::write(&file, &stored).unwrap();
    let ms = Multiscale::open(tmp.path().to_str().unwrap()).unwrap();
    let err = decode_chunk(&ms.levels[0], [0, 0, 0]).unwrap_err();
    let ChunkError::Decode { key, message, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(key, "s0/c/0/0/0");
    assert!(message.contains("CRC-32C"), "{message}");
}

/// A one-level group at `root` whose `s0` (metadata `meta`, shape `[40, 20, 24]`) zarrs writes
/// with hashed values; the values, C order.
fn write_hashed<T: Dt>(root: &Path, zarr_format: u8, meta: &Value) -> Vec<T> {
    let attrs = ms_attrs(zarr_format, zyx_axes(), &[("s0", vec![8.0; 3], None)]);
    write_group(root, "", zarr_format, Some(attrs));
    std::fs::create_dir_all(root.join("s0")).unwrap();
    let file = if zarr_format == 2 { ".zarray" } else { "zarr.json" };
    std::fs::write(root.join("s0").join(file), meta.to_string()).unwrap();
    let all: Vec<T> = (0..40 * 20 * 24u64)
        .map(|i| T::from_index(i * 2_654_435_761 % 1_000_003 / 7))
        .collect();
    let array = Array::open(Arc::new(FilesystemStore::new(root).unwrap()), "/s0").unwrap();
    array
        .store_array_subset(&ArraySubset::new_with_shape(vec![40, 20, 24]), all.clone())
        .unwrap();
    all
}

/// Read the window of `shape` at `start` of the level [`write_hashed`] wrote (`all`) through
/// `cache`, check every voxel (0 outside the level), and return what the cache's fetch counters
/// moved by: bytes decoded, and chunks decoded on the fetch pool.
fn read_checked<T: Dt>(level: &Level, cache: &ChunkCache, all: &[T], start: [i64; 3], shape: [usize; 3]) -> (u64, u64) {
    let before = cache.fetch_stats();
    let mut out = vec![f32::NAN; shape.iter().product()];
    let request = WindowRequest {
        start_vox: start,
        fill: 0.0,
    };
    read_window(
        level,
        Some(cache),
        &request,
        StridedDest::c_order(&mut out, shape).unwrap(),
    )
    .unwrap();
    let mut i = 0;
    for z in start[0]..start[0] + shape[0] as i64 {
        for y in start[1]..start[1] + shape[1] as i64 {
            for x in start[2]..start[2] + shape[2] as i64 {
                let inside = z < 40 && y < 20 && x < 24;
                let want = if inside {
                    all[((z * 20 + y) * 24 + x) as usize].to_f32()
                } else {
                    0.0
                };
                assert_eq!(out[i], want, "window at {start:?}, voxel {z} {y} {x}");
                i += 1;
            }
        }
    }
    let after = cache.fetch_stats();
    (after.bytes - before.bytes, after.pooled - before.pooled)
}

/// A window read whose chunks nobody keeps (no cache, or a cache without budget, with and
/// without a compressed tier) decodes only the blosc blocks that hold the window's planes, and
/// reads what zarrs reads: thin and thick windows at many depths, windows reaching past the
/// level, 1-, 2- and 8-byte elements (shuffled), and binarized labels read from chunks that are
/// not narrowed.
#[test]
fn windows_of_chunks_nobody_keeps_decode_only_their_blocks() {
    fn case<T: Dt>() {
        const SHAPE: [u64; 3] = [40, 20, 24];
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // 1 KiB blocks: 4, 2 and one half plane of a 16³ chunk of 1, 2 and 8 bytes.
        let meta = json!({"zarr_format": 2, "shape": SHAPE, "chunks": [16, 16, 16], "dtype": T::V2,
            "compressor": {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 1, "blocksize": 1024},
            "fill_value": 0, "order": "C", "filters": null, "dimension_separator": "/"});
        let all: Vec<T> = write_hashed(root, 2, &meta);
        let ms = Multiscale::open(root.to_str().unwrap()).unwrap();
        let level = &ms.levels[0];
        assert!(level.decodes_directly());
        let at = |z: i64, y: i64, x: i64| -> f32 {
            let inside = [z, y, x].iter().zip(SHAPE).all(|(&v, n)| (0..n as i64).contains(&v));
            if inside {
                all[((z * 20 + y) * 24 + x) as usize].to_f32()
            } else {
                0.0
            }
        };
        let plane = 16 * 16 * size_of::<T>();
        let unkept = ChunkCache::new(0);
        let tiered = ChunkCache::new(0).with_compressed(CompressedOptions {
            budget_bytes: 1 << 20,
            remote_only: false,
        });
        for (z0, depth) in [
            (0, 1),
            (5, 1),
            (15, 2),
            (16, 1),
            (17, 5),
            (30, 10),
            (39, 1),
            (-2, 4),
            (38, 5),
            (3, 20),
            (0, 40),
        ] {
            let (start, shape) = ([z0, 2, 3], [depth, 14, 21]);
            let expected: Vec<f32> = (0..depth as i64)
                .flat_map(|z| (0..14).flat_map(move |y| (0..21).map(move |x| (z, y, x))))
                .map(|(z, y, x)| at(z0 + z, 2 + y, 3 + x))
                .collect();
            let request = WindowRequest {
                start_vox: start,
                fill: 0.0,
            };
            for (name, cache) in [("none", None), ("budget 0", Some(&unkept)), ("tier", Some(&tiered))] {
                let before = cache.map(|c| c.fetch_stats().bytes);
                let mut out = vec![f32::NAN; expected.len()];
                let dest = StridedDest::c_order(&mut out, shape).unwrap();
                read_window(level, cache, &request, dest).unwrap();
                assert_eq!(out, expected, "{} z {z0} depth {depth}, cache {name}", T::V2);
                let mut bin = vec![f32::NAN; expected.len()];
                let dest = StridedDest::c_order(&mut bin, shape).unwrap();
                read_window_binarize(level, cache, &request, dest, 0.5).unwrap();
                let want: Vec<f32> = expected.iter().map(|&v| f32::from(u8::from(v > 0.5))).collect();
                assert_eq!(bin, want, "{} binarized z {z0} depth {depth}, cache {name}", T::V2);
                // One plane: the blocks that hold it (one block of 4 or 2 planes, or the 2
                // blocks of one plane), in each of the 2 chunks the window touches (along x),
                // for each of the two reads. A whole chunk is 4, 8 or 32 KiB.
                if let (Some(before), 1) = (before, depth) {
                    let decoded = cache.unwrap().fetch_stats().bytes - before;
                    assert_eq!(decoded, 2 * 2 * plane.max(1024) as u64, "{} z {z0}", T::V2);
                }
            }
        }
    }
    case::<u8>();
    case::<u16>();
    case::<u64>();
}

/// A full chunk cache keeps a missed chunk only on its second recent miss
/// ([`ChunkCache::admit`]): a chunk read once is decoded only as far as the read needs and
/// evicts nothing; read again, it is decoded whole and kept (evicting the least recently used
/// chunk), then hit. While the budget has room every miss is kept. Every read equals the
/// values written.
#[test]
fn a_full_cache_keeps_a_chunk_on_its_second_miss() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // 16³ `uint8` chunks of 4 KiB in 1 KiB blosc blocks: 4 planes a block.
    let meta = json!({"zarr_format": 2, "shape": [40, 20, 24], "chunks": [16, 16, 16], "dtype": "|u1",
        "compressor": {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 1, "blocksize": 1024},
        "fill_value": 0, "order": "C", "filters": null, "dimension_separator": "/"});
    let all: Vec<u8> = write_hashed(root, 2, &meta);
    let ms = Multiscale::open(root.to_str().unwrap()).unwrap();
    let level = &ms.levels[0];
    // Room for three chunks.
    let cache = ChunkCache::new(3 * 4096);
    let key = |chunk: [u64; 3]| ChunkKey {
        level_id: level.id,
        chunk,
    };
    // Bytes decoded for a window, its values checked.
    let read = |start: [i64; 3], shape: [usize; 3]| read_checked(level, &cache, &all, start, shape).0;
    // Three chunks fill the budget, each kept on its first miss (decoded whole).
    for start in [[0, 0, 0], [0, 0, 16], [0, 16, 0]] {
        assert_eq!(read(start, [16, 16, 16]), 4096, "{start:?}");
    }
    let s = cache.stats();
    assert_eq!((s.misses, s.evictions, s.declined, s.bytes), (3, 0, 0, 3 * 4096));
    // A plane of chunk (1, 0, 0): declined, one block decoded, nothing evicted.
    assert_eq!(read([17, 0, 0], [1, 16, 16]), 1024);
    let s = cache.stats();
    assert_eq!((s.misses, s.evictions, s.declined, s.bytes), (4, 0, 1, 3 * 4096));
    assert!(!cache.contains(&key([1, 0, 0])));
    // Missed again: kept, decoded whole, one of the three evicted for it.
    assert_eq!(read([30, 3, 0], [1, 10, 16]), 4096);
    let s = cache.stats();
    assert_eq!((s.misses, s.evictions, s.declined, s.bytes), (5, 1, 1, 3 * 4096));
    let mut kept: Vec<[u64; 3]> = [[0, 0, 0], [0, 0, 1], [0, 1, 0]]
        .into_iter()
        .filter(|&c| cache.contains(&key(c)))
        .collect();
    assert_eq!(kept.len(), 2);
    assert!(cache.contains(&key([1, 0, 0])));
    kept.push([1, 0, 0]);
    // Then hit: nothing decoded.
    assert_eq!(read([20, 0, 0], [4, 16, 16]), 0);
    assert_eq!(cache.stats().hits, 1);
    // Chunks read once each: each declined, with only its blocks decoded (the two blocks of
    // planes 3 and 4, the one of plane 9), and the kept ones stay.
    assert_eq!(read([35, 0, 0], [2, 16, 16]), 2 * 1024);
    assert_eq!(read([9, 16, 16], [1, 4, 8]), 1024);
    let s = cache.stats();
    assert_eq!((s.misses, s.evictions, s.declined, s.bytes), (7, 1, 3, 3 * 4096));
    for chunk in kept {
        assert!(cache.contains(&key(chunk)), "{chunk:?}");
    }
}

/// Chunks a window misses fetched at once on the cache's pool (remote data, or local data with
/// cores to spare) are kept as one at a time would be: without budget, or by a full cache on
/// their first miss, they are not kept and have only the window's blocks decoded; a chunk the
/// cache admits is decoded whole. Every read equals the values written.
#[test]
fn chunks_fetched_on_the_pool_and_not_kept_decode_only_their_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // 16³ `uint16` chunks of 8 KiB in 1 KiB blosc blocks: 2 planes a block.
    let meta = json!({"zarr_format": 2, "shape": [40, 20, 24], "chunks": [16, 16, 16], "dtype": "<u2",
        "compressor": {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 1, "blocksize": 1024},
        "fill_value": 0, "order": "C", "filters": null, "dimension_separator": "/"});
    let all: Vec<u16> = write_hashed(root, 2, &meta);
    let ms = Multiscale::open(root.to_str().unwrap()).unwrap();
    let level = &ms.levels[0];
    let pooled = |budget: u64| {
        let cache = ChunkCache::new(budget);
        assert!(cache.configure_fetch(FetchOptions {
            concurrency: 4,
            local_on_pool: true,
            ..FetchOptions::default()
        }));
        cache
    };
    // The window y 2..16, x 3..24 (2 chunks along x) at `z0`, its values checked: the bytes
    // decoded, and the chunks decoded on the pool.
    let read =
        |cache: &ChunkCache, z0: i64, depth: usize| read_checked(level, cache, &all, [z0, 2, 3], [depth, 14, 21]);
    // No budget: one plane decodes one block in each of the 2 chunks, on the pool; three planes
    // across a chunk boundary decode a block in each of 4 chunks.
    let unkept = pooled(0);
    assert_eq!(read(&unkept, 5, 1), (2 * 1024, 2));
    assert_eq!(read(&unkept, 15, 2), (4 * 1024, 4));
    assert_eq!(read(&unkept, 20, 8), (2 * 4 * 1024, 2));
    // A full cache (two chunks, both kept by a first read) declines the next two on their first
    // miss, then keeps them whole on the second.
    let full = pooled(2 * 8192);
    assert_eq!(read(&full, 0, 16), (2 * 8192, 2));
    assert_eq!(read(&full, 17, 1), (2 * 1024, 2));
    assert_eq!(full.stats().declined, 2);
    assert_eq!(read(&full, 30, 1), (2 * 8192, 2));
    let s = full.stats();
    assert_eq!((s.declined, s.evictions, s.bytes), (2, 2, 2 * 8192));
    assert_eq!(read(&full, 18, 3), (0, 0), "both kept");
}

/// The same for the inner chunks of a sharded zarr v3 array stored with blosc: a one-plane window
/// through a cache without budget decodes only the inner chunks' blocks of that plane, and
/// every window reads what zarrs reads.
#[test]
fn sharded_inner_chunks_nobody_keeps_decode_only_their_blocks() {
    const SHAPE: [u64; 3] = [40, 20, 24];
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Shards of 16³, inner chunks of 8 × 16 × 16 `uint16` (4 KiB) in 1 KiB blosc blocks: 2 planes
    // per block.
    let blosc = json!({"name": "blosc", "configuration": {"cname": "zstd", "clevel": 5,
        "shuffle": "shuffle", "typesize": 2, "blocksize": 1024}});
    let mut meta = v3::<u16>(None, json!({"name": "default"}), json!(0));
    meta["shape"] = json!(SHAPE);
    meta["chunk_grid"]["configuration"]["chunk_shape"] = json!([16, 16, 16]);
    meta["codecs"] = json!([{"name": "sharding_indexed", "configuration": {"chunk_shape": [8, 16, 16],
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, blosc],
        "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}], "index_location": "end"}}]);
    let all: Vec<u16> = write_hashed(root, 3, &meta);
    let ms = Multiscale::open(root.to_str().unwrap()).unwrap();
    let level = &ms.levels[0];
    assert!(level.decodes_directly());
    let unkept = ChunkCache::new(0);
    for (z0, depth) in [(5, 1), (0, 3), (7, 2), (9, 12), (30, 10)] {
        let expected: Vec<f32> = (0..depth)
            .flat_map(|z| (0..14).flat_map(move |y| (0..21).map(move |x| (z, y, x))))
            .map(|(z, y, x)| f32::from(all[(((z0 + z) * 20 + 2 + y) * 24 + 3 + x) as usize]))
            .collect();
        let before = unkept.fetch_stats().bytes;
        let mut out = vec![f32::NAN; expected.len()];
        let dest = StridedDest::c_order(&mut out, [depth as usize, 14, 21]).unwrap();
        let request = WindowRequest {
            start_vox: [z0, 2, 3],
            fill: 0.0,
        };
        read_window(level, Some(&unkept), &request, dest).unwrap();
        assert_eq!(out, expected, "z {z0} depth {depth}");
        if depth == 1 {
            // One block in each of the 2 inner chunks along x; an inner chunk is 4 KiB.
            assert_eq!(unkept.fetch_stats().bytes - before, 2 * 1024, "z {z0}");
        }
    }
}
