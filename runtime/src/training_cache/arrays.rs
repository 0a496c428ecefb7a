//! Writing one cached array: a rechunked copy of a source level, or a crop's binary classes packed
//! as bits; block by block, each block one source read.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rayon::prelude::*;
use serde_json::json;
use zarrs::array::{Array, CodecOptions};
use zarrs::filesystem::FilesystemStore;

use super::jobs::{CopyJob, PackJob};
use super::options::{CacheCodec, CacheError, io_err};
use crate::store::cached::{pack_dtype, read_subset};
use crate::store::{ChunkBox, Level, SourceDtype};

/// Blocks of cache chunks written at once, per axis (one source read per block).
const BLOCK_CHUNKS: u64 = 4;

/// What the writers did, summed over threads.
#[derive(Default)]
pub(super) struct Counters {
    /// Cache chunks written.
    pub(super) chunks: AtomicU64,
    /// Decoded source bytes read.
    pub(super) source_bytes: AtomicU64,
}

/// Write the zarr v3 metadata of a cached array of `(shape, chunk shape, dtype)` in a new folder.
fn create_array(
    store: &Arc<FilesystemStore>,
    dir: &Path,
    path: &str,
    (shape, chunk, dtype): ([u64; 3], [u64; 3], SourceDtype),
    codec: CacheCodec,
    source: &str,
) -> Result<Array<FilesystemStore>, CacheError> {
    let folder = dir.join(path);
    std::fs::create_dir_all(&folder).map_err(|e| io_err(&folder, &e))?;
    let meta = json!({"zarr_format": 3, "node_type": "array", "shape": shape, "data_type": dtype.name(),
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunk}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0, "codecs": codec.codecs(dtype),
        "dimension_names": ["z", "y", "x"],
        "attributes": {"cellmap_training_cache": {"source": source}}});
    let file = folder.join("zarr.json");
    std::fs::write(&file, serde_json::to_string_pretty(&meta).unwrap_or_default()).map_err(|e| io_err(&file, &e))?;
    Array::open(Arc::clone(store), &format!("/{path}")).map_err(|e| CacheError::Copy {
        source_array: source.to_owned(),
        array: folder.display().to_string(),
        message: e.to_string(),
    })
}

/// The blocks (of up to [`BLOCK_CHUNKS`]³ chunks, clipped to each box) covering `boxes`, as
/// voxel ranges clipped to `shape`. Boxes that overlap write their common chunks twice, with the
/// same voxels.
fn blocks(boxes: &[ChunkBox], chunk: [u64; 3], shape: [u64; 3]) -> Vec<[Range<u64>; 3]> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for [lo, hi] in boxes {
        let n: [u64; 3] = std::array::from_fn(|a| hi[a].saturating_sub(lo[a]).div_ceil(BLOCK_CHUNKS));
        for i in 0..n[0] {
            for j in 0..n[1] {
                for k in 0..n[2] {
                    let first = [
                        lo[0] + i * BLOCK_CHUNKS,
                        lo[1] + j * BLOCK_CHUNKS,
                        lo[2] + k * BLOCK_CHUNKS,
                    ];
                    let ranges: [Range<u64>; 3] = std::array::from_fn(|a| {
                        let start = first[a] * chunk[a];
                        let end = ((first[a] + BLOCK_CHUNKS).min(hi[a]) * chunk[a]).min(shape[a]);
                        start..end
                    });
                    if seen.insert(ranges.clone()) {
                        out.push(ranges);
                    }
                }
            }
        }
    }
    out
}

fn codec_options() -> CodecOptions {
    CodecOptions::default().with_concurrent_target(1)
}

pub(super) fn write_copy(
    store: &Arc<FilesystemStore>,
    dir: &Path,
    path: &str,
    job: &CopyJob,
    codec: CacheCodec,
    counters: &Counters,
) -> Result<(), CacheError> {
    let source = &job.source;
    let src_name = source.array_location();
    let err = |e: &dyn std::fmt::Display| CacheError::Copy {
        source_array: src_name.to_owned(),
        array: dir.join(path).display().to_string(),
        message: e.to_string(),
    };
    let blocks = blocks(&job.boxes, job.chunk, source.shape_vox);
    // `auto` tries lz4 on the first block; that block is then written from the bytes read.
    let first_block = match (codec, blocks.first()) {
        (CacheCodec::Auto, Some(first)) => Some(block_bytes(source, first).map_err(|e| err(&e))?),
        _ => None,
    };
    let codec = match &first_block {
        Some(bytes) => codec.resolve(bytes, source.dtype.size_bytes()),
        None => codec,
    };
    let first_block = Mutex::new(first_block);
    let array = create_array(
        store,
        dir,
        path,
        (source.shape_vox, job.chunk, source.dtype),
        codec,
        src_name,
    )?;
    blocks
        .par_iter()
        .enumerate()
        .with_max_len(1)
        .try_for_each(|(i, ranges)| {
            let spatial: Vec<Range<u64>> = ranges.to_vec();
            let read_before = if i == 0 {
                first_block.lock().unwrap_or_else(PoisonError::into_inner).take()
            } else {
                None
            };
            macro_rules! copy {
                ($t:ty) => {{
                    let data: Vec<$t> = match &read_before {
                        Some(bytes) => bytes
                            .chunks_exact(std::mem::size_of::<$t>())
                            .map(|b| <$t>::from_le_bytes(std::array::from_fn(|k| b[k])))
                            .collect(),
                        None => read_subset(source, ranges).map_err(|e| err(&e))?,
                    };
                    counters
                        .source_bytes
                        .fetch_add((data.len() * std::mem::size_of::<$t>()) as u64, Ordering::Relaxed);
                    array
                        .store_array_subset_opt(&spatial, data, &codec_options())
                        .map_err(|e| err(&e))?;
                }};
            }
            match source.dtype {
                SourceDtype::U8 => copy!(u8),
                SourceDtype::U16 => copy!(u16),
                SourceDtype::U32 => copy!(u32),
                SourceDtype::U64 => copy!(u64),
                SourceDtype::I8 => copy!(i8),
                SourceDtype::I16 => copy!(i16),
                SourceDtype::I32 => copy!(i32),
                SourceDtype::I64 => copy!(i64),
                SourceDtype::F32 => copy!(f32),
                SourceDtype::F64 => copy!(f64),
            }
            counters
                .chunks
                .fetch_add(chunks_in(ranges, job.chunk), Ordering::Relaxed);
            Ok(())
        })
}

/// The voxels of `level` in `ranges` as their little-endian bytes (the codec sample of
/// [`CacheCodec::Auto`]).
fn block_bytes(level: &Level, ranges: &[Range<u64>; 3]) -> Result<Vec<u8>, zarrs::array::ArrayError> {
    macro_rules! bytes {
        ($t:ty) => {
            read_subset::<$t>(level, ranges)?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        };
    }
    Ok(match level.dtype {
        SourceDtype::U8 => read_subset::<u8>(level, ranges)?,
        SourceDtype::U16 => bytes!(u16),
        SourceDtype::U32 => bytes!(u32),
        SourceDtype::U64 => bytes!(u64),
        SourceDtype::I8 => bytes!(i8),
        SourceDtype::I16 => bytes!(i16),
        SourceDtype::I32 => bytes!(i32),
        SourceDtype::I64 => bytes!(i64),
        SourceDtype::F32 => bytes!(f32),
        SourceDtype::F64 => bytes!(f64),
    })
}

/// Cache chunks a block of voxel ranges holds.
fn chunks_in(ranges: &[Range<u64>; 3], chunk: [u64; 3]) -> u64 {
    (0..3)
        .map(|a| ranges[a].end.div_ceil(chunk[a]) - ranges[a].start / chunk[a])
        .product()
}

/// 1 where `level`'s voxels in `ranges` are non-zero.
fn nonzero(level: &Level, ranges: &[Range<u64>; 3], counters: &Counters) -> Result<Vec<bool>, String> {
    macro_rules! mask {
        ($t:ty) => {{
            let data: Vec<$t> = read_subset(level, ranges).map_err(|e| e.to_string())?;
            counters
                .source_bytes
                .fetch_add((data.len() * std::mem::size_of::<$t>()) as u64, Ordering::Relaxed);
            data.iter().map(|&v| v != 0).collect()
        }};
    }
    Ok(match level.dtype {
        SourceDtype::U8 => mask!(u8),
        SourceDtype::U16 => mask!(u16),
        SourceDtype::U32 => mask!(u32),
        SourceDtype::U64 => mask!(u64),
        other => return Err(format!("packed classes are unsigned integers, got {other}")),
    })
}

pub(super) fn write_pack(
    store: &Arc<FilesystemStore>,
    dir: &Path,
    path: &str,
    job: &PackJob,
    codec: CacheCodec,
    counters: &Counters,
) -> Result<SourceDtype, CacheError> {
    let first = &job.members[0];
    let dtype = pack_dtype(job.members.len()).unwrap_or(SourceDtype::U64);
    let names: Vec<&str> = job.members.iter().map(Level::array_location).collect();
    let label = names.join(", ");
    let array = create_array(store, dir, path, (first.shape_vox, job.chunk, dtype), codec, &label)?;
    let whole = [[[0; 3], first.chunk_grid_shape_for(job.chunk)]];
    let blocks = blocks(&whole, job.chunk, first.shape_vox);
    blocks.par_iter().with_max_len(1).try_for_each(|ranges| {
        let voxels = ranges.iter().map(|r| (r.end - r.start) as usize).product::<usize>();
        let mut bits = vec![0u64; voxels];
        for (bit, member) in job.members.iter().enumerate() {
            let mask = nonzero(member, ranges, counters).map_err(|message| CacheError::Copy {
                source_array: member.array_location().to_owned(),
                array: dir.join(path).display().to_string(),
                message,
            })?;
            for (b, m) in bits.iter_mut().zip(mask) {
                *b |= u64::from(m) << bit;
            }
        }
        let spatial: Vec<Range<u64>> = ranges.to_vec();
        let stored = match dtype {
            SourceDtype::U8 => array.store_array_subset_opt(
                &spatial,
                bits.iter().map(|&b| b as u8).collect::<Vec<_>>(),
                &codec_options(),
            ),
            SourceDtype::U16 => array.store_array_subset_opt(
                &spatial,
                bits.iter().map(|&b| b as u16).collect::<Vec<_>>(),
                &codec_options(),
            ),
            SourceDtype::U32 => array.store_array_subset_opt(
                &spatial,
                bits.iter().map(|&b| b as u32).collect::<Vec<_>>(),
                &codec_options(),
            ),
            _ => array.store_array_subset_opt(&spatial, bits, &codec_options()),
        };
        stored.map_err(|e| CacheError::Copy {
            source_array: label.clone(),
            array: dir.join(path).display().to_string(),
            message: e.to_string(),
        })?;
        counters
            .chunks
            .fetch_add(chunks_in(ranges, job.chunk), Ordering::Relaxed);
        Ok::<(), CacheError>(())
    })?;
    Ok(dtype)
}
