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
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use zarrs::array::{ArrayError, CodecOptions, ElementOwned};

use super::chunk_data::ChunkData;
use super::error::ChunkError;
use super::multiscale::{CacheRole, ChunkBox, Level, LevelArray, SourceDtype};

/// How a chunk of a level is decoded from an array as that level's (`chunk::decode_plain`), passed
/// in so that this module sits below `chunk`.
pub(crate) type DecodePlain = fn(&Level, &LevelArray, [u64; 3]) -> Result<ChunkData, ChunkError>;

/// Whether `boxes` hold `chunk`.
pub(crate) fn holds(boxes: &[ChunkBox], chunk: [u64; 3]) -> bool {
    boxes
        .iter()
        .any(|[lo, hi]| (0..3).all(|a| lo[a] <= chunk[a] && chunk[a] < hi[a]))
}

/// Decode `chunk` of a cached `level` in its `role`.
pub(crate) fn decode(
    level: &Level,
    role: &CacheRole,
    chunk: [u64; 3],
    plain: DecodePlain,
) -> Result<ChunkData, ChunkError> {
    match role {
        CacheRole::Copy {
            source,
            written,
            fallbacks,
        } => {
            if holds(written, chunk) {
                plain(level, &level.array, chunk)
            } else {
                fallbacks.fetch_add(1, Ordering::Relaxed);
                read_region(source, level, chunk)
            }
        }
        CacheRole::Bit { pack, bit, .. } => {
            let packed = packed_chunk(pack, chunk, plain)?;
            Ok(extract_bit(&packed, *bit))
        }
    }
}

/// The voxels of `level` in the spatial `ranges` (channel 0 when it has a channel axis), decoded
/// from its array as elements of type `T` (its dtype): the training cache's copies and fallback
/// reads go through here.
pub(crate) fn read_subset<T: ElementOwned>(level: &Level, ranges: &[Range<u64>; 3]) -> Result<Vec<T>, ArrayError> {
    let mut full: Vec<Range<u64>> = Vec::with_capacity(4);
    if level.has_channel_axis {
        full.push(0..1);
    }
    full.extend(ranges.iter().cloned());
    level
        .array
        .array
        .retrieve_array_subset_opt::<Vec<T>>(&full, &CodecOptions::default().with_concurrent_target(1))
}

/// The voxels of `level`'s cache chunk `chunk` read from `source` (same geometry, another chunk
/// grid), as a whole chunk: voxels past the array's end hold 0 (no read uses them).
fn read_region(source: &Level, level: &Level, chunk: [u64; 3]) -> Result<ChunkData, ChunkError> {
    let cs = level.chunk_shape_vox;
    let mut extent = [0u64; 3];
    let ranges: [Range<u64>; 3] = std::array::from_fn(|a| {
        let lo = chunk[a] * cs[a];
        let hi = (lo + cs[a]).min(source.shape_vox[a]).max(lo);
        extent[a] = hi - lo;
        lo..hi
    });
    let err = |e: &ArrayError| ChunkError::from_read(source, format!("{ranges:?}"), chunk, e);
    macro_rules! region {
        ($t:ty, $variant:ident) => {
            ChunkData::$variant(place(
                &read_subset::<$t>(source, &ranges).map_err(|e| err(&e))?,
                extent,
                cs,
            ))
        };
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

/// Bit `bit` of every element of a packed chunk, as 0 or 1, in pooled memory.
fn extract_bit(packed: &ChunkData, bit: u32) -> ChunkData {
    fn bits<T: Copy + Into<u64>>(v: &[T], bit: u32, out: &mut [u8]) {
        out.iter_mut()
            .zip(v)
            .for_each(|(o, &x)| *o = ((x.into() >> bit) & 1) as u8);
    }
    super::pool::written(SourceDtype::U8, packed.len(), |out| match packed {
        ChunkData::U8(v) | ChunkData::UniformU8(v) => out.iter_mut().zip(v).for_each(|(o, &x)| *o = (x >> bit) & 1),
        ChunkData::U16(v) => bits(v, bit, out),
        ChunkData::U32(v) => bits(v, bit, out),
        ChunkData::U64(v) => bits(v, bit, out),
        // The cache writes packed arrays as unsigned integers only; a signed or float array at
        // a pack's path was not written by it, and reads as no class present.
        _ => out.fill(0),
    })
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
fn packed_chunk(pack: &Level, chunk: [u64; 3], plain: DecodePlain) -> Result<Arc<ChunkData>, ChunkError> {
    let key = (pack.id, chunk);
    if let Some(hit) = PACK_MEMO
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|m| m.entries.get(&key).cloned())
    {
        return Ok(hit);
    }
    let data = Arc::new(plain(pack, &pack.array, chunk)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_of_every_packed_width_reads_back() {
        let values: Vec<u64> = vec![0, 1, 1 << 7, (1 << 15) | 1, 1 << 31, 1 << 63, u64::MAX];
        for bit in 0..64u32 {
            let expect: Vec<u8> = values.iter().map(|v| ((v >> bit) & 1) as u8).collect();
            assert_eq!(
                extract_bit(&ChunkData::U64(values.clone()), bit),
                ChunkData::U8(expect.clone()),
                "u64 bit {bit}"
            );
            if bit < 32 {
                let v32 = values.iter().map(|&v| v as u32).collect();
                assert_eq!(
                    extract_bit(&ChunkData::U32(v32), bit),
                    ChunkData::U8(expect.clone()),
                    "u32 bit {bit}"
                );
            }
            if bit < 16 {
                let v16 = values.iter().map(|&v| v as u16).collect();
                assert_eq!(
                    extract_bit(&ChunkData::U16(v16), bit),
                    ChunkData::U8(expect.clone()),
                    "u16 bit {bit}"
                );
            }
            if bit < 8 {
                let v8 = values.iter().map(|&v| v as u8).collect();
                assert_eq!(
                    extract_bit(&ChunkData::U8(v8), bit),
                    ChunkData::U8(expect.clone()),
                    "u8 bit {bit}"
                );
            }
        }
    }

    #[test]
    fn packs_take_the_narrowest_unsigned_type() {
        let widths: Vec<Option<SourceDtype>> = [1, 8, 9, 16, 17, 32, 33, 64, 65].map(pack_dtype).to_vec();
        use SourceDtype::*;
        assert_eq!(
            widths,
            [
                Some(U8),
                Some(U8),
                Some(U16),
                Some(U16),
                Some(U32),
                Some(U32),
                Some(U64),
                Some(U64),
                None
            ]
        );
    }

    #[test]
    fn a_chunk_is_held_when_a_written_box_holds_it() {
        let boxes = [[[0, 0, 0], [2, 2, 2]], [[4, 4, 4], [5, 6, 7]]];
        assert!(holds(&boxes, [1, 1, 1]) && holds(&boxes, [4, 5, 6]));
        assert!(!holds(&boxes, [2, 0, 0]) && !holds(&boxes, [4, 6, 6]) && !holds(&[], [0, 0, 0]));
    }

    #[test]
    fn a_region_at_the_array_edge_is_placed_in_a_whole_chunk() {
        let region: Vec<u8> = (1..=12).collect();
        let out = place(&region, [1, 3, 4], [2, 4, 4]);
        assert_eq!(&out[..12], &region[..]);
        assert!(out[12..].iter().all(|&v| v == 0));
        let out = place(&region, [1, 2, 6], [1, 4, 8]);
        assert_eq!(&out[0..8], &[1, 2, 3, 4, 5, 6, 0, 0]);
        assert_eq!(&out[8..16], &[7, 8, 9, 10, 11, 12, 0, 0]);
        assert!(out[16..].iter().all(|&v| v == 0));
    }
}
