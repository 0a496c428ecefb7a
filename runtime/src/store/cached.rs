//! Levels read through the training cache (written by [`crate::training_cache`]): decoding a
//! chunk of a level whose array is a local, rechunked copy of a source level, or one bit of a
//! packed label array.
//!
//! A cached level keeps the source level's geometry (path, voxel size, translation, shape), so
//! plans, windows and tiles are unchanged; its decode unit is the cache's chunk. Two roles:
//!
//! - [`CacheRole::Copy`]: the level's array is a copy of the source's voxels. Chunks inside the
//!   written boxes are read from it; any other chunk is read from the source (the region of the
//!   cache chunk, decoded from the source's own chunks) and counted as a fallback, so a sample
//!   reaching past the cached margin reads the right voxels, only slower.
//! - [`CacheRole::Bit`]: the level is one class of a crop whose binary classes are packed as the
//!   bits of one unsigned array (bit set where the source label is non-zero). The packed chunk is
//!   decoded once and kept in a small shared memo, so the crop's other classes take their bit of
//!   the same decode.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use zarrs::array::CodecOptions;

use super::cache::ChunkData;
use super::chunk::{decode_chunk, decode_plain};
use super::error::ChunkError;
use super::multiscale::{Level, SourceDtype};

/// A half-open box of chunk indices `[lo, hi)` per axis, `z y x`.
pub type ChunkBox = [[u64; 3]; 2];

/// How a level of the training cache is read.
#[derive(Debug)]
pub(crate) enum CacheRole {
    /// A rechunked copy of `source`, written inside `written` (chunk boxes of the cache's grid).
    Copy {
        /// The level it copies.
        source: Level,
        /// Chunks the cache holds.
        written: Vec<ChunkBox>,
        /// Chunks read from the source because the cache does not hold them.
        fallbacks: AtomicU64,
    },
    /// Bit `bit` of `pack`: 1 where `source` is non-zero.
    Bit {
        /// The label level it stands for.
        source: Level,
        /// The packed array.
        pack: Arc<Level>,
        /// The class's bit.
        bit: u32,
    },
}

impl CacheRole {
    /// The source level this cached level stands for.
    pub(crate) fn source(&self) -> &Level {
        match self {
            CacheRole::Copy { source, .. } | CacheRole::Bit { source, .. } => source,
        }
    }
}

/// Whether `boxes` hold `chunk`.
pub(crate) fn holds(boxes: &[ChunkBox], chunk: [u64; 3]) -> bool {
    boxes
        .iter()
        .any(|[lo, hi]| (0..3).all(|a| lo[a] <= chunk[a] && chunk[a] < hi[a]))
}

/// Decode `chunk` of a cached `level` in its `role`.
pub(crate) fn decode(level: &Level, role: &CacheRole, chunk: [u64; 3]) -> Result<ChunkData, ChunkError> {
    match role {
        CacheRole::Copy {
            source,
            written,
            fallbacks,
        } => {
            if holds(written, chunk) {
                decode_plain(level, &level.array, chunk)
            } else {
                fallbacks.fetch_add(1, Ordering::Relaxed);
                read_region(source, level, chunk)
            }
        }
        CacheRole::Bit { pack, bit, .. } => {
            let packed = packed_chunk(pack, chunk)?;
            Ok(ChunkData::U8(extract_bit(&packed, *bit)))
        }
    }
}

/// The voxels of `level`'s cache chunk `chunk` read from `source` (same geometry, another chunk
/// grid), as a whole chunk: voxels past the array's end hold 0 (no read uses them).
fn read_region(source: &Level, level: &Level, chunk: [u64; 3]) -> Result<ChunkData, ChunkError> {
    let cs = level.chunk_shape_vox;
    let mut ranges: Vec<Range<u64>> = Vec::with_capacity(4);
    if source.has_channel_axis {
        ranges.push(0..1);
    }
    let mut extent = [0u64; 3];
    for a in 0..3 {
        let lo = chunk[a] * cs[a];
        let hi = (lo + cs[a]).min(source.shape_vox[a]);
        extent[a] = hi.saturating_sub(lo);
        ranges.push(lo..lo.max(hi));
    }
    let err = |e: &zarrs::array::ArrayError| ChunkError::from_read(source, format!("{ranges:?}"), chunk, e);
    macro_rules! region {
        ($t:ty, $variant:ident) => {{
            let got: Vec<$t> = source
                .array
                .array
                .retrieve_array_subset_opt::<Vec<$t>>(&ranges, &CodecOptions::default().with_concurrent_target(1))
                .map_err(|e| err(&e))?;
            ChunkData::$variant(place(&got, extent, cs))
        }};
    }
    Ok(match source.dtype {
        SourceDtype::U8 => region!(u8, U8),
        SourceDtype::U16 => region!(u16, U16),
        SourceDtype::U32 => region!(u32, U32),
        SourceDtype::U64 => region!(u64, U64),
        SourceDtype::I8 => region!(i8, I8),
        SourceDtype::I16 => region!(i16, I16),
        SourceDtype::I32 => region!(i32, I32),
        SourceDtype::I64 => region!(i64, I64),
        SourceDtype::F32 => region!(f32, F32),
        SourceDtype::F64 => region!(f64, F64),
    })
}

/// `region` (C order, shape `extent`) placed at the origin of a zeroed chunk of shape `chunk`.
fn place<T: Copy + Default>(region: &[T], extent: [u64; 3], chunk: [u64; 3]) -> Vec<T> {
    let [cz, cy, cx] = chunk.map(|v| v as usize);
    let [ez, ey, ex] = extent.map(|v| v as usize);
    if [ez, ey, ex] == [cz, cy, cx] {
        return region.to_vec();
    }
    let mut out = vec![T::default(); cz * cy * cx];
    for z in 0..ez {
        for y in 0..ey {
            let src = (z * ey + y) * ex;
            let dst = (z * cy + y) * cx;
            out[dst..dst + ex].copy_from_slice(&region[src..src + ex]);
        }
    }
    out
}

/// Bit `bit` of every element of a packed chunk, as 0 or 1.
fn extract_bit(packed: &ChunkData, bit: u32) -> Vec<u8> {
    fn bits<T: Copy + Into<u64>>(v: &[T], bit: u32) -> Vec<u8> {
        v.iter().map(|&x| ((x.into() >> bit) & 1) as u8).collect()
    }
    match packed {
        ChunkData::U8(v) | ChunkData::UniformU8(v) => v.iter().map(|&x| (x >> bit) & 1).collect(),
        ChunkData::U16(v) => bits(v, bit),
        ChunkData::U32(v) => bits(v, bit),
        ChunkData::U64(v) => bits(v, bit),
        // The cache writes packed arrays as unsigned integers only; a signed or float array at
        // a pack's path was not written by it, and reads as no class present.
        other => vec![0; other.len()],
    }
}

/// Bytes of decoded packed chunks kept for the other classes of the same crop.
const PACK_MEMO_BYTES: usize = 64 << 20;

/// Recently decoded packed chunks, keyed by the pack's level id and the chunk.
struct PackMemo {
    entries: HashMap<(u64, [u64; 3]), Arc<ChunkData>>,
    order: VecDeque<(u64, [u64; 3])>,
    bytes: usize,
}

static PACK_MEMO: Mutex<Option<PackMemo>> = Mutex::new(None);

/// The decoded chunk `chunk` of `pack`, from the memo or decoded now (and kept).
fn packed_chunk(pack: &Level, chunk: [u64; 3]) -> Result<Arc<ChunkData>, ChunkError> {
    let key = (pack.id, chunk);
    if let Some(hit) = PACK_MEMO
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|m| m.entries.get(&key).cloned())
    {
        return Ok(hit);
    }
    let data = Arc::new(decode_chunk(pack, chunk)?);
    let mut memo = PACK_MEMO.lock().unwrap_or_else(PoisonError::into_inner);
    let memo = memo.get_or_insert_with(|| PackMemo {
        entries: HashMap::new(),
        order: VecDeque::new(),
        bytes: 0,
    });
    if memo.entries.insert(key, Arc::clone(&data)).is_none() {
        memo.order.push_back(key);
        memo.bytes += data.byte_len();
    }
    while memo.bytes > PACK_MEMO_BYTES {
        let Some(old) = memo.order.pop_front() else { break };
        if let Some(gone) = memo.entries.remove(&old) {
            memo.bytes -= gone.byte_len();
        }
    }
    Ok(data)
}

/// The element type of a packed array of `classes` classes (`None` past 64).
pub(crate) fn pack_dtype(classes: usize) -> Option<SourceDtype> {
    Some(match classes {
        0..=8 => SourceDtype::U8,
        9..=16 => SourceDtype::U16,
        17..=32 => SourceDtype::U32,
        33..=64 => SourceDtype::U64,
        _ => return None,
    })
}
