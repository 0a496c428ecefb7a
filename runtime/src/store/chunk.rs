//! Chunks of a level: their store keys, decoding one ([`decode_chunk`]), fetching one through
//! the [`ChunkCache`] ([`fetch`]), several at once on the cache's fetch pool ([`fetch_many`]), as
//! stored bytes into the compressed tier ([`fetch_encoded_many`]), and counting a level's non-zero
//! voxels ([`count_nonzero`]). Fetching ahead of the reads is `store::ahead`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rayon::prelude::*;

use zarrs::array::{ArrayError, ArrayShardedReadableExt, CodecOptions, ElementOwned};

use super::cache::{ChunkCache, ChunkKey};
use super::chunk_data::ChunkData;
use super::direct::Failure;
use super::error::ChunkError;
use super::fetch::FetchCounters;
use super::multiscale::{Level, LevelArray, SourceDtype};

/// Full-dimensional chunk indices (a leading 0 for the channel axis).
fn full_indices(level: &Level, chunk: [u64; 3]) -> Vec<u64> {
    if level.has_channel_axis {
        vec![0, chunk[0], chunk[1], chunk[2]]
    } else {
        chunk.to_vec()
    }
}

/// The store key holding `chunk` (its shard for sharded arrays).
pub(crate) fn chunk_key_string(level: &Level, chunk: [u64; 3]) -> String {
    let mut stored = chunk;
    if let Some(shard) = level.shard_shape_vox {
        for a in 0..3 {
            stored[a] = chunk[a] * level.chunk_shape_vox[a] / shard[a].max(1);
        }
    }
    level.array.array.chunk_key(&full_indices(level, stored)).to_string()
}

/// Elements of one decoded chunk of `level`.
fn chunk_elements(level: &Level) -> usize {
    usize::try_from(level.chunk_shape_vox.iter().product::<u64>()).unwrap_or(usize::MAX)
}

/// [`ChunkError::ChunkSize`] for `chunk` of `level` when it holds `got` elements.
pub(crate) fn chunk_size_error(level: &Level, chunk: [u64; 3], got: usize) -> ChunkError {
    ChunkError::ChunkSize {
        array: level.array_location().to_string(),
        key: chunk_key_string(level, chunk),
        chunk,
        expected: chunk_elements(level),
        got,
    }
}

fn retrieve<T: ElementOwned>(la: &LevelArray, indices: &[u64], options: &CodecOptions) -> Result<Vec<T>, ArrayError> {
    match &la.sharded {
        Some(cache) => la.array.retrieve_subchunk_opt::<Vec<T>>(cache, indices, options),
        None => la.array.retrieve_chunk_opt::<Vec<T>>(indices, options),
    }
}

/// Decode one chunk (decode unit) of `level` at spatial chunk indices `chunk`.
///
/// # Errors
/// [`ChunkError::Decode`] for a corrupt, truncated or unreadable chunk, [`ChunkError::Fetch`] for
/// a failed request to a remote store, [`ChunkError::ChunkSize`]
/// when the decoded chunk is too short.
pub fn decode_chunk(level: &Level, chunk: [u64; 3]) -> Result<ChunkData, ChunkError> {
    decode_from(level, &level.array, chunk)
}

/// [`decode_chunk`] reading `level`'s store through `la` (the level's array, or a cache's view
/// of it over the compressed tier: [`ChunkCache::level_view`]).
/// A level of the training cache reads its local copy directly: no request delay and no
/// compressed tier, which stand for a remote store.
fn decode_from(level: &Level, la: &LevelArray, chunk: [u64; 3]) -> Result<ChunkData, ChunkError> {
    match &level.cached {
        Some(role) => super::cached::decode(level, role, chunk, decode_plain),
        None => decode_plain(level, la, chunk),
    }
}

/// Decode `chunk` of `la` as `level`'s array (its dtype and axes), whatever its cache role.
pub(crate) fn decode_plain(level: &Level, la: &LevelArray, chunk: [u64; 3]) -> Result<ChunkData, ChunkError> {
    if la.direct().is_some() {
        return decode_direct(level, la, chunk, None);
    }
    let indices = full_indices(level, chunk);
    let options = CodecOptions::default().with_concurrent_target(1);
    let result = match level.dtype {
        SourceDtype::U8 => retrieve::<u8>(la, &indices, &options).map(ChunkData::U8),
        SourceDtype::U16 => retrieve::<u16>(la, &indices, &options).map(ChunkData::U16),
        SourceDtype::U32 => retrieve::<u32>(la, &indices, &options).map(ChunkData::U32),
        SourceDtype::U64 => retrieve::<u64>(la, &indices, &options).map(ChunkData::U64),
        SourceDtype::I8 => retrieve::<i8>(la, &indices, &options).map(ChunkData::I8),
        SourceDtype::I16 => retrieve::<i16>(la, &indices, &options).map(ChunkData::I16),
        SourceDtype::I32 => retrieve::<i32>(la, &indices, &options).map(ChunkData::I32),
        SourceDtype::I64 => retrieve::<i64>(la, &indices, &options).map(ChunkData::I64),
        SourceDtype::F32 => retrieve::<f32>(la, &indices, &options).map(ChunkData::F32),
        SourceDtype::F64 => retrieve::<f64>(la, &indices, &options).map(ChunkData::F64),
    };
    let data = result.map_err(|e| ChunkError::from_read(level, chunk_key_string(level, chunk), chunk, &e))?;
    if data.len() < chunk_elements(level) {
        return Err(chunk_size_error(level, chunk, data.len()));
    }
    Ok(data)
}

/// Chunk `chunk` of `la` (which has a direct decoder, [`LevelArray::direct`]) as `level`'s
/// array, `part` of it at least ([`super::direct::Part`]).
fn decode_direct(
    level: &Level,
    la: &LevelArray,
    chunk: [u64; 3],
    part: Option<&super::direct::Part>,
) -> Result<ChunkData, ChunkError> {
    let Some(direct) = la.direct() else {
        return decode_plain(level, la, chunk);
    };
    // The training cache's own files are not read through a cache's tier.
    let tiered = la.tiered.as_deref().filter(|_| !la.in_place);
    direct
        .read((level.dtype, level.has_channel_axis), &la.array, tiered, chunk, part)
        .map_err(|e| match e.failure {
            Failure::Store(store) => ChunkError::from_storage(level, e.key, chunk, &store),
            Failure::Decode(message) => ChunkError::Decode {
                array: level.array_location().to_owned(),
                key: e.key,
                chunk,
                message,
            },
        })
}

/// Fetch a decoded chunk through the cache (or decode it when there is none); a miss is kept
/// when the cache admits it ([`ChunkCache::admit`]).
///
/// # Errors
/// As [`decode_chunk`].
pub(crate) fn fetch(level: &Level, cache: Option<&ChunkCache>, chunk: [u64; 3]) -> Result<Arc<ChunkData>, ChunkError> {
    fetch_part(level, cache, chunk, None)
}

/// Fetch a decoded chunk for a read of its planes `planes` (chunk-local z) alone: as [`fetch`],
/// except that a chunk nobody will keep (no cache, a cache without budget, or a full one that
/// does not admit it: [`ChunkCache::admit`]) whose frame's blocks decode one by one (blosc with
/// zstd blocks, as OME-NGFF volumes are mostly written) has only the blocks that hold those
/// planes decoded, and is not narrowed ([`ChunkData::tagged`]): a 2D slice of a 64³ chunk at
/// blosc's default 128 KiB blocks decodes one block of 2 (`uint8`) or of 16 (`uint64`). The
/// rest of the chunk's memory holds whatever it held: the caller reads those planes only, and
/// hands the chunk back to the pool.
///
/// # Errors
/// As [`decode_chunk`].
pub(crate) fn fetch_planes(
    level: &Level,
    cache: Option<&ChunkCache>,
    chunk: [u64; 3],
    planes: std::ops::Range<u64>,
) -> Result<Arc<ChunkData>, ChunkError> {
    match planes_part(level, planes) {
        Some(part) => fetch_part(level, cache, chunk, Some(&part)),
        None => fetch(level, cache, chunk),
    }
}

/// The planes (chunk-local z) of chunk row `cz` of `level` that a window over level planes
/// `window_z` (`[start, end)`) reads.
pub(crate) fn chunk_planes(level: &Level, cz: u64, window_z: [i64; 2]) -> std::ops::Range<u64> {
    let depth = level.chunk_shape_vox[0] as i64;
    let z0 = cz as i64 * depth;
    (window_z[0] - z0).max(0) as u64..(window_z[1] - z0).min(depth).max(0) as u64
}

/// The bytes of a chunk of `level` that hold its planes `planes`, as a [`super::direct::Part`]
/// to decode: `None` when the level is not decoded directly (a training cache's level, or a
/// layout zarrs decodes) or the planes are the whole chunk.
fn planes_part(level: &Level, planes: std::ops::Range<u64>) -> Option<super::direct::Part> {
    let direct = level.cached.is_none() && level.array.direct().is_some();
    if !direct || (planes.start == 0 && planes.end >= level.chunk_shape_vox[0]) {
        return None;
    }
    let plane = usize::try_from(level.chunk_shape_vox[1] * level.chunk_shape_vox[2]).unwrap_or(usize::MAX)
        * level.dtype.size_bytes();
    Some(super::direct::Part {
        bytes: planes.start as usize * plane..planes.end as usize * plane,
        decoded: std::cell::Cell::new(0),
    })
}

/// [`fetch`], or with `part` (a level decoded directly) at least the bytes it names when the
/// chunk is not kept: then not narrowed and not inserted ([`fetch_planes`]).
fn fetch_part(
    level: &Level,
    cache: Option<&ChunkCache>,
    chunk: [u64; 3],
    part: Option<&super::direct::Part>,
) -> Result<Arc<ChunkData>, ChunkError> {
    let Some(cache) = cache else {
        let data = match part {
            Some(part) => decode_direct(level, &level.array, chunk, Some(part))?,
            None => super::pool::tagged(decode_chunk(level, chunk)?),
        };
        return Ok(super::pool::wrap(data));
    };
    let key = ChunkKey {
        level_id: level.id,
        chunk,
    };
    if let Some(hit) = cache.get(&key) {
        return Ok(hit);
    }
    let start = Instant::now();
    let data = load_missed(level, cache, key, part);
    FetchCounters::add_time(&cache.fetch_counters.wait_ns, start.elapsed());
    data
}

/// Chunk `key` of `level`, which `cache` just missed: decoded whole and inserted when the cache
/// admits it ([`ChunkCache::admit`]); else decoded only as far as `part` (when given) and not
/// kept.
fn load_missed(
    level: &Level,
    cache: &ChunkCache,
    key: ChunkKey,
    part: Option<&super::direct::Part>,
) -> Result<Arc<ChunkData>, ChunkError> {
    if cache.admit(&key, chunk_bytes(level)) {
        load(level, cache, key.chunk, None).map(|data| cache.insert(key, data))
    } else {
        load(level, cache, key.chunk, part)
    }
}

/// Decoded bytes of one chunk of `level`, as stored (before [`ChunkData::narrowed`]).
fn chunk_bytes(level: &Level) -> u64 {
    (chunk_elements(level) * level.dtype.size_bytes()) as u64
}

/// Fetch and decode a chunk for `cache` (through its compressed tier, with its delay per store
/// request, its counters), not inserted. With `part` (a level decoded directly), at least the
/// bytes it names, and not narrowed ([`fetch_planes`]).
pub(super) fn load(
    level: &Level,
    cache: &ChunkCache,
    chunk: [u64; 3],
    part: Option<&super::direct::Part>,
) -> Result<Arc<ChunkData>, ChunkError> {
    let counters = &cache.fetch_counters;
    let _in_flight = counters.start_request();
    // The store is read through the cache's tier (the delay per request, the compressed tier),
    // except a training cache's chunk files, which are read directly (no view to make).
    let view = if level.decoded_in_place() {
        Arc::clone(&level.array)
    } else {
        cache.level_view(level)
    };
    let start = Instant::now();
    let data = match part {
        Some(part) => decode_direct(level, &view, chunk, Some(part)),
        None => decode_from(level, &view, chunk),
    };
    FetchCounters::add_time(&counters.decode_ns, start.elapsed());
    let data = data?;
    counters.chunks.fetch_add(1, Ordering::Relaxed);
    let decoded = part.map_or(data.byte_len(), |p| p.decoded.get());
    counters.bytes.fetch_add(decoded as u64, Ordering::Relaxed);
    Ok(super::pool::wrap(match part {
        Some(_) => data,
        None => super::pool::tagged(data),
    }))
}

/// Fetch `chunks` of `level` for a window over level planes `window_z` through `cache` on its
/// fetch pool, several at once, into `out` (same order); on the calling thread, one after the
/// other, without a pool. Every chunk is looked up and kept as [`fetch_planes`] keeps them (same
/// counts; one not kept has only the window's planes decoded where it can); the first failing
/// chunk in `chunks` order is the error.
///
/// # Errors
/// As [`decode_chunk`].
pub(crate) fn fetch_many(
    level: &Level,
    cache: &ChunkCache,
    chunks: &[[u64; 3]],
    window_z: [i64; 2],
    out: &mut [Option<Arc<ChunkData>>],
) -> Result<(), ChunkError> {
    let Some(pool) = cache.fetcher().and_then(|f| f.pool.as_ref()) else {
        for (chunk, slot) in chunks.iter().zip(out.iter_mut()) {
            *slot = Some(fetch_planes(
                level,
                Some(cache),
                *chunk,
                chunk_planes(level, chunk[0], window_z),
            )?);
        }
        return Ok(());
    };
    let start = Instant::now();
    let first_error: Mutex<Option<(usize, ChunkError)>> = Mutex::new(None);
    pool.install(|| {
        chunks
            .par_iter()
            .zip(out.par_iter_mut())
            .enumerate()
            .with_max_len(1)
            .for_each(|(i, (chunk, slot))| {
                let key = ChunkKey {
                    level_id: level.id,
                    chunk: *chunk,
                };
                let got = match cache.get(&key) {
                    Some(hit) => Ok(hit),
                    None => {
                        cache.fetch_counters.pooled.fetch_add(1, Ordering::Relaxed);
                        let part = planes_part(level, chunk_planes(level, chunk[0], window_z));
                        load_missed(level, cache, key, part.as_ref())
                    }
                };
                match got {
                    Ok(data) => *slot = Some(data),
                    Err(e) => {
                        let mut first = first_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        if first.as_ref().is_none_or(|(j, _)| i < *j) {
                            *first = Some((i, e));
                        }
                    }
                }
            });
    });
    FetchCounters::add_time(&cache.fetch_counters.wait_ns, start.elapsed());
    match first_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// Fetch the stored bytes of `chunks` into `cache`'s compressed tier, all at once on its fetch
/// pool, not decoded (a sample's chunks of every array, before its arrays are read one after
/// another: one round trip instead of one per array). Only chunks of unsharded levels the tier
/// keeps, not decoded in the cache; failures are left to the reads.
pub(crate) fn fetch_encoded_many(cache: &ChunkCache, chunks: &[(&Level, [u64; 3])]) {
    let Some(pool) = cache.fetcher().and_then(|f| f.pool.as_ref()) else {
        return;
    };
    let wanted: Vec<(&Level, [u64; 3])> = chunks
        .iter()
        .copied()
        .filter(|&(level, chunk)| {
            tier_keeps_chunks(cache, level)
                && !cache.contains(&ChunkKey {
                    level_id: level.id,
                    chunk,
                })
        })
        .collect();
    pool.install(|| {
        wanted.par_iter().with_max_len(1).for_each(|&(level, chunk)| {
            fetch_encoded(level, cache, chunk);
        });
    });
}

/// Whether chunk `chunk` of `level` is worth fetching into `cache`'s compressed tier before it
/// is read: the tier keeps the level's chunks, and neither the decoded cache nor the tier holds
/// it yet. Checked without allocating for levels decoded directly, so that a sample whose chunks
/// are all held costs nothing to look over.
pub(crate) fn wants_encoded(cache: &ChunkCache, level: &Level, chunk: [u64; 3]) -> bool {
    if !tier_keeps_chunks(cache, level)
        || cache.contains(&ChunkKey {
            level_id: level.id,
            chunk,
        })
    {
        return false;
    }
    let view = cache.level_view(level);
    match (level.array.direct(), view.tiered.as_deref()) {
        (Some(direct), Some(tiered)) => !direct.with_key(level.has_channel_axis, chunk, |key| tiered.holds(key)),
        _ => true,
    }
}

/// Whether `cache`'s compressed tier keeps whole chunks of `level` that can be fetched into it
/// without decoding: an unsharded level the tier keeps (remote data), not a training cache's files.
pub(super) fn tier_keeps_chunks(cache: &ChunkCache, level: &Level) -> bool {
    level.shard_shape_vox.is_none() && !level.decoded_in_place() && cache.tier.keeps(level.array_location())
}

/// Fetch the stored bytes of `chunk` (an unsharded level the compressed tier keeps) into
/// `cache`'s tier, not decoded; whether they are there now (a missing chunk keeps nothing).
pub(super) fn fetch_encoded(level: &Level, cache: &ChunkCache, chunk: [u64; 3]) -> bool {
    let _in_flight = cache.fetch_counters.start_request();
    let view = cache.level_view(level);
    let key = view.array.chunk_key(&full_indices(level, chunk));
    matches!(view.array.storage().get(&key), Ok(Some(_)))
}

fn count_chunk<S: Copy + PartialEq + Default>(src: &[S], dims: [usize; 3], extent: [usize; 3]) -> u64 {
    let zero = S::default();
    let mut n = 0u64;
    for i in 0..extent[0] {
        for j in 0..extent[1] {
            let s0 = (i * dims[1] + j) * dims[2];
            if let Some(row) = src.get(s0..s0 + extent[2]) {
                n += row.iter().filter(|v| **v != zero).count() as u64;
            }
        }
    }
    n
}

/// Count the non-zero voxels of `level` (channel 0), chunk by chunk with bounded memory.
///
/// # Errors
/// [`ChunkError::Decode`]/[`ChunkError::ChunkSize`] for a corrupt or truncated chunk.
pub fn count_nonzero(level: &Level) -> Result<u64, ChunkError> {
    let grid = level.chunk_grid_shape();
    let dims = level.chunk_shape_vox.map(|v| usize::try_from(v).unwrap_or(usize::MAX));
    let mut total = 0u64;
    for cz in 0..grid[0] {
        for cy in 0..grid[1] {
            for cx in 0..grid[2] {
                let cidx = [cz, cy, cx];
                let mut extent = [0usize; 3];
                for a in 0..3 {
                    let origin = cidx[a] * level.chunk_shape_vox[a];
                    let e = level.chunk_shape_vox[a].min(level.shape_vox[a] - origin);
                    extent[a] = usize::try_from(e).unwrap_or(usize::MAX);
                }
                total += match decode_chunk(level, cidx)? {
                    ChunkData::U8(v) | ChunkData::UniformU8(v) => count_chunk(&v, dims, extent),
                    ChunkData::U16(v) => count_chunk(&v, dims, extent),
                    ChunkData::U32(v) => count_chunk(&v, dims, extent),
                    ChunkData::U64(v) => count_chunk(&v, dims, extent),
                    ChunkData::I8(v) => count_chunk(&v, dims, extent),
                    ChunkData::I16(v) => count_chunk(&v, dims, extent),
                    ChunkData::I32(v) => count_chunk(&v, dims, extent),
                    ChunkData::I64(v) => count_chunk(&v, dims, extent),
                    ChunkData::F32(v) => count_chunk(&v, dims, extent),
                    ChunkData::F64(v) => count_chunk(&v, dims, extent),
                };
            }
        }
    }
    Ok(total)
}
