//! Reading a voxel window of a level into a caller-provided, strided destination.
//!
//! Source voxel `start + (i, j, k)` lands at `dest[dest_offset + i·strides[0] + j·strides[1] +
//! k·strides[2]]`. Strides may be negative (a mirrored crop) or permuted (a transposed crop), so
//! an augmented crop is written in one pass without a temporary. Voxels outside the level get the
//! caller's `fill`; a chunk missing from the store reads as the array's fill value (zarr
//! semantics). Reads go chunk by chunk (inner chunks of sharded arrays); with a [`ChunkCache`]
//! a warm read allocates nothing.
//!
//! ```no_run
//! use cellmap_runtime::{ChunkCache, Multiscale, read_window};
//! let ms = Multiscale::open("data/jrc.zarr/recon-1/em/fibsem-uint8")?;
//! let cache = ChunkCache::new(1 << 30);
//! let mut crop = vec![0f32; 64 * 64 * 64];
//! read_window(&ms.levels[0], Some(&cache), [10, 20, 30], [64, 64, 64], 0.0f32, &mut crop, 0,
//!     [64 * 64, 64, 1])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use zarrs::array::CodecOptions;
use zarrs::array::{ArrayError, ArrayShardedReadableExt, ElementOwned};

use crate::chunk_cache::{ChunkCache, ChunkData, ChunkKey};
use crate::multiscale::{Level, SourceDtype};

/// Why a window could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Some destination index of the window falls outside the destination slice.
    #[error(
        "window {shape_vox:?} with offset {dest_offset} and strides {dest_strides:?} addresses indices {min_index}..={max_index}, outside a destination of {dest_len} elements"
    )]
    DestinationOutOfRange {
        /// Window shape (voxels).
        shape_vox: [usize; 3],
        /// Destination offset.
        dest_offset: usize,
        /// Destination strides.
        dest_strides: [isize; 3],
        /// Smallest addressed index.
        min_index: i128,
        /// Largest addressed index.
        max_index: i128,
        /// Destination length.
        dest_len: usize,
    },
    /// The destination element type cannot hold the source data type.
    #[error("`{array}`: cannot read `{source_dtype}` data into `{dest}` elements (read it as f32)")]
    DtypeMismatch {
        /// The array location.
        array: String,
        /// The array's data type.
        source_dtype: SourceDtype,
        /// The destination element type.
        dest: &'static str,
    },
    /// A chunk could not be read or decoded (corrupt or truncated file, storage failure).
    #[error("`{array}`: chunk {chunk:?} (key `{key}`) could not be decoded: {message}")]
    Decode {
        /// The array location.
        array: String,
        /// The store key of the chunk (the shard for sharded arrays).
        key: String,
        /// Spatial chunk indices `z y x` (inner chunk for sharded arrays).
        chunk: [u64; 3],
        /// The zarrs error.
        message: String,
    },
    /// A decoded chunk has fewer elements than its shape needs.
    #[error("`{array}`: chunk {chunk:?} (key `{key}`) decoded to {got} elements, expected {expected}")]
    ChunkSize {
        /// The array location.
        array: String,
        /// The store key of the chunk.
        key: String,
        /// Spatial chunk indices `z y x`.
        chunk: [u64; 3],
        /// Elements expected.
        expected: usize,
        /// Elements decoded.
        got: usize,
    },
}

/// What a window read did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowReport {
    /// Voxels of the window that lie inside the level (the rest got `fill`).
    pub voxels_in_bounds: u64,
}

/// A destination element type of [`read_window`]: `f32` (from any source type, `as f32`) or `u8`
/// (from `uint8` sources only).
pub trait WindowElem: Copy + Send + Sync + 'static + sealed::Sealed {
    /// The type's name in errors.
    const NAME: &'static str;
    /// Whether a source of `dtype` can be read into this type.
    fn accepts(dtype: SourceDtype) -> bool;
}

mod sealed {
    use crate::chunk_cache::ChunkData;

    /// Where the intersecting part of one chunk goes.
    #[derive(Clone, Copy, Debug)]
    pub struct Region {
        /// Chunk dims `z y x` (C order, channel 0 block first).
        pub chunk_dims: [usize; 3],
        /// First voxel of the region inside the chunk.
        pub src_lo: [usize; 3],
        /// Region extent (voxels).
        pub extent: [usize; 3],
        /// Destination index of the region's first voxel.
        pub dest_base: isize,
        /// Destination strides.
        pub dest_strides: [isize; 3],
    }

    pub trait Sealed: Sized {
        /// Copy `region` of `src` into `dest`; false when the source type is not accepted or an
        /// index is out of range (prevented by validation; never panics).
        fn copy_region(src: &ChunkData, region: &Region, dest: &mut [Self]) -> bool;
    }
}
use sealed::Region;

/// Edge of the cubic tiles of [`copy_tiled`]: 16³ f32 destinations span 256 cache lines (16 KiB).
const TILE: usize = 16;

/// The hot loop: rows along x, contiguous when `dest_strides[2] == ±1`; a transposed destination
/// (x not contiguous) is copied tile by tile instead.
#[inline]
fn copy_generic<S: Copy, T: Copy>(src: &[S], r: &Region, dest: &mut [T], f: impl Fn(S) -> T + Copy) -> bool {
    let [_, cy, cx] = r.chunk_dims;
    let [ez, ey, ex] = r.extent;
    let [dz, dy, dx] = r.dest_strides;
    if dx.unsigned_abs() != 1 && ex > 1 {
        return copy_tiled(src, r, dest, f);
    }
    for i in 0..ez {
        for j in 0..ey {
            let s0 = ((r.src_lo[0] + i) * cy + r.src_lo[1] + j) * cx + r.src_lo[2];
            let Some(row) = src.get(s0..s0 + ex) else {
                return false;
            };
            #[allow(clippy::cast_possible_wrap)]
            let d0 = r.dest_base + i as isize * dz + j as isize * dy;
            #[allow(clippy::cast_sign_loss)]
            match dx {
                1 => {
                    let Some(d) = dest.get_mut(d0 as usize..d0 as usize + ex) else {
                        return false;
                    };
                    for (d, s) in d.iter_mut().zip(row) {
                        *d = f(*s);
                    }
                }
                -1 => {
                    #[allow(clippy::cast_possible_wrap)]
                    let lo = d0 - (ex as isize - 1);
                    let Some(d) = dest.get_mut(lo as usize..=d0 as usize) else {
                        return false;
                    };
                    for (d, s) in d.iter_mut().rev().zip(row) {
                        *d = f(*s);
                    }
                }
                _ => {
                    let mut di = d0;
                    for s in row {
                        let Some(d) = dest.get_mut(di as usize) else {
                            return false;
                        };
                        *d = f(*s);
                        di += dx;
                    }
                }
            }
        }
    }
    true
}

/// [`copy_generic`] for a destination whose x stride is not ±1 (a transposed read): row by row,
/// each source row would write one element per destination cache line (and often per page);
/// 16³ tiles keep the written lines in L1 until they are full.
fn copy_tiled<S: Copy, T: Copy>(src: &[S], r: &Region, dest: &mut [T], f: impl Fn(S) -> T + Copy) -> bool {
    let [_, cy, cx] = r.chunk_dims;
    let [ez, ey, ex] = r.extent;
    let [dz, dy, dx] = r.dest_strides;
    for i0 in (0..ez).step_by(TILE) {
        for j0 in (0..ey).step_by(TILE) {
            for k0 in (0..ex).step_by(TILE) {
                for i in i0..(i0 + TILE).min(ez) {
                    for j in j0..(j0 + TILE).min(ey) {
                        let s0 = ((r.src_lo[0] + i) * cy + r.src_lo[1] + j) * cx + r.src_lo[2];
                        let k1 = (k0 + TILE).min(ex);
                        let Some(row) = src.get(s0 + k0..s0 + k1) else {
                            return false;
                        };
                        #[allow(clippy::cast_possible_wrap)]
                        let mut di = r.dest_base + i as isize * dz + j as isize * dy + k0 as isize * dx;
                        for s in row {
                            let Some(d) = usize::try_from(di).ok().and_then(|di| dest.get_mut(di)) else {
                                return false;
                            };
                            *d = f(*s);
                            di += dx;
                        }
                    }
                }
            }
        }
    }
    true
}

impl sealed::Sealed for f32 {
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    fn copy_region(src: &ChunkData, r: &Region, dest: &mut [f32]) -> bool {
        match src {
            ChunkData::U8(v) => copy_generic(v, r, dest, f32::from),
            ChunkData::U16(v) => copy_generic(v, r, dest, f32::from),
            ChunkData::U32(v) => copy_generic(v, r, dest, |x| x as f32),
            ChunkData::U64(v) => copy_generic(v, r, dest, |x| x as f32),
            ChunkData::I8(v) => copy_generic(v, r, dest, f32::from),
            ChunkData::I16(v) => copy_generic(v, r, dest, f32::from),
            ChunkData::I32(v) => copy_generic(v, r, dest, |x| x as f32),
            ChunkData::I64(v) => copy_generic(v, r, dest, |x| x as f32),
            ChunkData::F32(v) => copy_generic(v, r, dest, |x| x),
            ChunkData::F64(v) => copy_generic(v, r, dest, |x| x as f32),
        }
    }
}

impl WindowElem for f32 {
    const NAME: &'static str = "f32";
    fn accepts(_: SourceDtype) -> bool {
        true
    }
}

impl sealed::Sealed for u8 {
    fn copy_region(src: &ChunkData, r: &Region, dest: &mut [u8]) -> bool {
        match src {
            ChunkData::U8(v) => copy_generic(v, r, dest, |x| x),
            _ => false,
        }
    }
}

impl WindowElem for u8 {
    const NAME: &'static str = "u8";
    fn accepts(dtype: SourceDtype) -> bool {
        dtype == SourceDtype::U8
    }
}

/// Check that every destination index of the window lies in `0..dest_len`.
fn validate_dest(
    shape_vox: [usize; 3],
    dest_offset: usize,
    dest_strides: [isize; 3],
    dest_len: usize,
) -> Result<(), ReadError> {
    let (mut lo, mut hi) = (dest_offset as i128, dest_offset as i128);
    for a in 0..3 {
        let span = (shape_vox[a] as i128 - 1) * dest_strides[a] as i128;
        if span < 0 {
            lo += span;
        } else {
            hi += span;
        }
    }
    if lo < 0 || hi >= dest_len as i128 {
        return Err(ReadError::DestinationOutOfRange {
            shape_vox,
            dest_offset,
            dest_strides,
            min_index: lo,
            max_index: hi,
            dest_len,
        });
    }
    Ok(())
}

/// Write `fill` to every destination index of the window.
fn fill_window<T: Copy>(shape: [usize; 3], base: isize, strides: [isize; 3], fill: T, dest: &mut [T]) {
    #[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
    for i in 0..shape[0] {
        for j in 0..shape[1] {
            let d0 = base + i as isize * strides[0] + j as isize * strides[1];
            for k in 0..shape[2] {
                if let Some(d) = dest.get_mut((d0 + k as isize * strides[2]) as usize) {
                    *d = fill;
                }
            }
        }
    }
}

/// Full-dimensional chunk indices (a leading 0 for the channel axis).
fn full_indices(level: &Level, chunk: [u64; 3]) -> Vec<u64> {
    if level.has_channel_axis {
        vec![0, chunk[0], chunk[1], chunk[2]]
    } else {
        chunk.to_vec()
    }
}

/// The store key holding `chunk` (its shard for sharded arrays).
fn chunk_key_string(level: &Level, chunk: [u64; 3]) -> String {
    let mut stored = chunk;
    if let Some(shard) = level.shard_shape_vox {
        for a in 0..3 {
            stored[a] = chunk[a] * level.chunk_shape_vox[a] / shard[a].max(1);
        }
    }
    level.array.array.chunk_key(&full_indices(level, stored)).to_string()
}

fn retrieve<T: ElementOwned>(level: &Level, indices: &[u64], options: &CodecOptions) -> Result<Vec<T>, ArrayError> {
    let la = &level.array;
    match &la.sharded {
        Some(cache) => la.array.retrieve_subchunk_opt::<Vec<T>>(cache, indices, options),
        None => la.array.retrieve_chunk_opt::<Vec<T>>(indices, options),
    }
}

/// Decode one chunk (decode unit) of `level` at spatial chunk indices `chunk`.
///
/// # Errors
/// [`ReadError::Decode`] for a corrupt, truncated or unreadable chunk, [`ReadError::ChunkSize`]
/// when the decoded chunk is too short.
pub fn decode_chunk(level: &Level, chunk: [u64; 3]) -> Result<ChunkData, ReadError> {
    let indices = full_indices(level, chunk);
    let options = CodecOptions::default().with_concurrent_target(1);
    let result = match level.dtype {
        SourceDtype::U8 => retrieve::<u8>(level, &indices, &options).map(ChunkData::U8),
        SourceDtype::U16 => retrieve::<u16>(level, &indices, &options).map(ChunkData::U16),
        SourceDtype::U32 => retrieve::<u32>(level, &indices, &options).map(ChunkData::U32),
        SourceDtype::U64 => retrieve::<u64>(level, &indices, &options).map(ChunkData::U64),
        SourceDtype::I8 => retrieve::<i8>(level, &indices, &options).map(ChunkData::I8),
        SourceDtype::I16 => retrieve::<i16>(level, &indices, &options).map(ChunkData::I16),
        SourceDtype::I32 => retrieve::<i32>(level, &indices, &options).map(ChunkData::I32),
        SourceDtype::I64 => retrieve::<i64>(level, &indices, &options).map(ChunkData::I64),
        SourceDtype::F32 => retrieve::<f32>(level, &indices, &options).map(ChunkData::F32),
        SourceDtype::F64 => retrieve::<f64>(level, &indices, &options).map(ChunkData::F64),
    };
    let data = result.map_err(|e| ReadError::Decode {
        array: level.array_location().to_string(),
        key: chunk_key_string(level, chunk),
        chunk,
        message: e.to_string(),
    })?;
    let expected = usize::try_from(level.chunk_shape_vox.iter().product::<u64>()).unwrap_or(usize::MAX);
    if data.len() < expected {
        return Err(ReadError::ChunkSize {
            array: level.array_location().to_string(),
            key: chunk_key_string(level, chunk),
            chunk,
            expected,
            got: data.len(),
        });
    }
    Ok(data)
}

/// Fetch a decoded chunk through the cache (or decode it when there is none).
fn fetch(level: &Level, cache: Option<&ChunkCache>, chunk: [u64; 3]) -> Result<Arc<ChunkData>, ReadError> {
    match cache {
        None => Ok(Arc::new(decode_chunk(level, chunk)?)),
        Some(cache) => {
            let key = ChunkKey {
                level_id: level.id,
                chunk,
            };
            if let Some(hit) = cache.get(&key) {
                return Ok(hit);
            }
            let data = Arc::new(decode_chunk(level, chunk)?);
            Ok(cache.insert(key, data))
        }
    }
}

/// Read the window `start_vox .. start_vox + shape_vox` (voxels, `z y x`) of `level` into `dest`
/// (see the module docs for the index mapping), converting to `T`.
///
/// # Errors
/// [`ReadError::DestinationOutOfRange`] when some destination index falls outside `dest` (checked
/// before anything is written), [`ReadError::DtypeMismatch`] when `T` cannot hold the level's data
/// type, [`ReadError::Decode`]/[`ReadError::ChunkSize`] for a corrupt or truncated chunk.
#[allow(clippy::too_many_arguments)]
pub fn read_window<T: WindowElem>(
    level: &Level,
    cache: Option<&ChunkCache>,
    start_vox: [i64; 3],
    shape_vox: [usize; 3],
    fill: T,
    dest: &mut [T],
    dest_offset: usize,
    dest_strides: [isize; 3],
) -> Result<WindowReport, ReadError> {
    read_window_with(
        level,
        cache,
        start_vox,
        shape_vox,
        fill,
        dest,
        dest_offset,
        dest_strides,
        T::copy_region,
    )
}

/// [`read_window`] into `f32` with a per-voxel `map` applied while copying (and to `fill`), so
/// that a pointwise value transform (binarize, normalize) costs no second pass over the output.
#[allow(clippy::too_many_arguments)]
pub fn read_window_map(
    level: &Level,
    cache: Option<&ChunkCache>,
    start_vox: [i64; 3],
    shape_vox: [usize; 3],
    fill: f32,
    dest: &mut [f32],
    dest_offset: usize,
    dest_strides: [isize; 3],
    map: impl Fn(f32) -> f32 + Copy,
) -> Result<WindowReport, ReadError> {
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let copy = |src: &ChunkData, r: &Region, dest: &mut [f32]| match src {
        ChunkData::U8(v) => copy_generic(v, r, dest, |x| map(f32::from(x))),
        ChunkData::U16(v) => copy_generic(v, r, dest, |x| map(f32::from(x))),
        ChunkData::U32(v) => copy_generic(v, r, dest, |x| map(x as f32)),
        ChunkData::U64(v) => copy_generic(v, r, dest, |x| map(x as f32)),
        ChunkData::I8(v) => copy_generic(v, r, dest, |x| map(f32::from(x))),
        ChunkData::I16(v) => copy_generic(v, r, dest, |x| map(f32::from(x))),
        ChunkData::I32(v) => copy_generic(v, r, dest, |x| map(x as f32)),
        ChunkData::I64(v) => copy_generic(v, r, dest, |x| map(x as f32)),
        ChunkData::F32(v) => copy_generic(v, r, dest, map),
        ChunkData::F64(v) => copy_generic(v, r, dest, |x| map(x as f32)),
    };
    read_window_with(
        level,
        cache,
        start_vox,
        shape_vox,
        map(fill),
        dest,
        dest_offset,
        dest_strides,
        copy,
    )
}

/// [`read_window`] into `f32` binarized at `threshold` while copying: `1` where the value read
/// (as `f32`) is above `threshold` in `f64`, `0` elsewhere, NaN kept — bit-identical to reading
/// then applying a `binarize` transform, but an integer source is compared as an integer
/// (`x >= k`, with `k` found once: the conversion to `f32` is monotone) and a float source
/// against an `f32` threshold rounded down, so no value is converted to `f64`.
#[allow(clippy::too_many_arguments)]
pub fn read_window_binarize(
    level: &Level,
    cache: Option<&ChunkCache>,
    start_vox: [i64; 3],
    shape_vox: [usize; 3],
    fill: f32,
    dest: &mut [f32],
    dest_offset: usize,
    dest_strides: [isize; 3],
    threshold: f64,
) -> Result<WindowReport, ReadError> {
    let above = |x: f32| f64::from(x) > threshold;
    let binarize = move |x: f32| {
        if x.is_nan() {
            x
        } else if above(x) {
            1.0
        } else {
            0.0
        }
    };
    // The largest f32 not above the threshold: for every f32 x, `f64(x) > t` iff `x > t32`.
    let mut t32 = threshold as f32;
    if f64::from(t32) > threshold {
        t32 = t32.next_down();
    }
    let float = move |x: f32| {
        if x.is_nan() {
            x
        } else if x > t32 {
            1.0
        } else {
            0.0
        }
    };
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let copy = |src: &ChunkData, r: &Region, dest: &mut [f32]| match src {
        ChunkData::U8(v) => copy_generic(v, r, dest, int_binarize(|x: u8| above(f32::from(x)))),
        ChunkData::U16(v) => copy_generic(v, r, dest, int_binarize(|x: u16| above(f32::from(x)))),
        ChunkData::U32(v) => copy_generic(v, r, dest, int_binarize(|x: u32| above(x as f32))),
        ChunkData::U64(v) => copy_generic(v, r, dest, int_binarize(|x: u64| above(x as f32))),
        ChunkData::I8(v) => copy_generic(v, r, dest, int_binarize(|x: i8| above(f32::from(x)))),
        ChunkData::I16(v) => copy_generic(v, r, dest, int_binarize(|x: i16| above(f32::from(x)))),
        ChunkData::I32(v) => copy_generic(v, r, dest, int_binarize(|x: i32| above(x as f32))),
        ChunkData::I64(v) => copy_generic(v, r, dest, int_binarize(|x: i64| above(x as f32))),
        ChunkData::F32(v) => copy_generic(v, r, dest, float),
        ChunkData::F64(v) => copy_generic(v, r, dest, |x| float(x as f32)),
    };
    read_window_with(
        level,
        cache,
        start_vox,
        shape_vox,
        binarize(fill),
        dest,
        dest_offset,
        dest_strides,
        copy,
    )
}

/// An integer type's value range, for the threshold search of [`int_binarize`].
trait IntRange: Copy + PartialOrd {
    const MIN: i128;
    const MAX: i128;
    fn from_i128(v: i128) -> Self;
}

macro_rules! int_range {
    ($($t:ty),*) => {$(
        impl IntRange for $t {
            const MIN: i128 = <$t>::MIN as i128;
            const MAX: i128 = <$t>::MAX as i128;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            fn from_i128(v: i128) -> Self {
                v as $t
            }
        }
    )*};
}
int_range!(u8, u16, u32, u64, i8, i16, i32, i64);

/// `x ↦ 1 if above(x) else 0` as one integer comparison: `above` is monotone in `x` (a rounding
/// conversion followed by a comparison), so it holds exactly from the first `k` where it does.
fn int_binarize<T: IntRange>(above: impl Fn(T) -> bool) -> impl Fn(T) -> f32 + Copy {
    let (mut lo, mut hi) = (T::MIN, T::MAX + 1);
    // Invariant: above is false below `lo`, true from `hi` on.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if above(T::from_i128(mid)) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let never = lo > T::MAX;
    let k = T::from_i128(lo.min(T::MAX));
    move |x: T| if !never && x >= k { 1.0 } else { 0.0 }
}

/// The window read, with the chunk-to-destination copy as a parameter (monomorphised per copy).
#[allow(clippy::too_many_arguments)]
fn read_window_with<T: WindowElem>(
    level: &Level,
    cache: Option<&ChunkCache>,
    start_vox: [i64; 3],
    shape_vox: [usize; 3],
    fill: T,
    dest: &mut [T],
    dest_offset: usize,
    dest_strides: [isize; 3],
    copy: impl Fn(&ChunkData, &Region, &mut [T]) -> bool,
) -> Result<WindowReport, ReadError> {
    if shape_vox.contains(&0) {
        return Ok(WindowReport::default());
    }
    if !T::accepts(level.dtype) {
        return Err(ReadError::DtypeMismatch {
            array: level.array_location().to_string(),
            source_dtype: level.dtype,
            dest: T::NAME,
        });
    }
    validate_dest(shape_vox, dest_offset, dest_strides, dest.len())?;
    #[allow(clippy::cast_possible_wrap)]
    let base = dest_offset as isize;

    // In-bounds part of the window, in level voxels: [lo, hi).
    let mut lo = [0i64; 3];
    let mut hi = [0i64; 3];
    let mut inside = true;
    let mut voxels_in_bounds = 1u64;
    for a in 0..3 {
        #[allow(clippy::cast_possible_wrap)]
        let end = start_vox[a].saturating_add(shape_vox[a] as i64);
        let n = i64::try_from(level.shape_vox[a]).unwrap_or(i64::MAX);
        lo[a] = start_vox[a].clamp(0, n);
        hi[a] = end.clamp(0, n);
        inside &= lo[a] == start_vox[a] && hi[a] == end;
        #[allow(clippy::cast_sign_loss)]
        let len = (hi[a] - lo[a]).max(0) as u64;
        voxels_in_bounds *= len;
    }
    if !inside {
        fill_window(shape_vox, base, dest_strides, fill, dest);
    }
    if voxels_in_bounds == 0 {
        return Ok(WindowReport { voxels_in_bounds });
    }

    #[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
    let c = level.chunk_shape_vox.map(|v| v as i64);
    let chunk_dims = level.chunk_shape_vox.map(|v| usize::try_from(v).unwrap_or(usize::MAX));
    let first = [lo[0] / c[0], lo[1] / c[1], lo[2] / c[2]];
    let last = [(hi[0] - 1) / c[0], (hi[1] - 1) / c[1], (hi[2] - 1) / c[2]];
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
    for cz in first[0]..=last[0] {
        for cy in first[1]..=last[1] {
            for cx in first[2]..=last[2] {
                let cidx = [cz, cy, cx];
                let chunk = fetch(level, cache, cidx.map(|v| v as u64))?;
                let mut region = Region {
                    chunk_dims,
                    src_lo: [0; 3],
                    extent: [0; 3],
                    dest_base: base,
                    dest_strides,
                };
                for a in 0..3 {
                    let origin = cidx[a] * c[a];
                    let r_lo = lo[a].max(origin);
                    let r_hi = hi[a].min(origin + c[a]);
                    region.src_lo[a] = (r_lo - origin) as usize;
                    region.extent[a] = (r_hi - r_lo) as usize;
                    region.dest_base += (r_lo - start_vox[a]) as isize * dest_strides[a];
                }
                if !copy(&chunk, &region, dest) {
                    return Err(ReadError::ChunkSize {
                        array: level.array_location().to_string(),
                        key: chunk_key_string(level, cidx.map(|v| v as u64)),
                        chunk: cidx.map(|v| v as u64),
                        expected: chunk_dims.iter().product(),
                        got: chunk.len(),
                    });
                }
            }
        }
    }
    Ok(WindowReport { voxels_in_bounds })
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
/// [`ReadError::Decode`]/[`ReadError::ChunkSize`] for a corrupt or truncated chunk.
pub fn count_nonzero(level: &Level) -> Result<u64, ReadError> {
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
                    ChunkData::U8(v) => count_chunk(&v, dims, extent),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The region copy equals a voxel-by-voxel reference for every axis permutation and flip of
    /// the destination (the transposed ones take the tiled path).
    #[test]
    fn region_copy_matches_the_reference_for_every_permutation_and_flip() {
        let chunk = [37usize, 29, 41];
        let src: Vec<u16> = (0..chunk.iter().product::<usize>())
            .map(|v| (v * 7 % 65521) as u16)
            .collect();
        let src_lo = [3usize, 2, 5];
        let extent = [33usize, 19, 35];
        let perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        let mut checked = 0;
        for perm in perms {
            for flips in 0..8u32 {
                // Destination axis `perm[a]` holds source axis `a`; a flipped axis runs backwards.
                let mut dims = [0usize; 3];
                for a in 0..3 {
                    dims[perm[a]] = extent[a];
                }
                let dest_strides_by_axis = [(dims[1] * dims[2]) as isize, dims[2] as isize, 1];
                let mut strides = [0isize; 3];
                let mut base = 0isize;
                for a in 0..3 {
                    let s = dest_strides_by_axis[perm[a]];
                    if flips & (1 << a) != 0 {
                        strides[a] = -s;
                        base += (extent[a] as isize - 1) * s;
                    } else {
                        strides[a] = s;
                    }
                }
                let region = Region {
                    chunk_dims: chunk,
                    src_lo,
                    extent,
                    dest_base: base,
                    dest_strides: strides,
                };
                let n: usize = extent.iter().product();
                let mut got = vec![-1.0f32; n];
                assert!(copy_generic(&src, &region, &mut got, f32::from));
                let mut want = vec![-1.0f32; n];
                for i in 0..extent[0] {
                    for j in 0..extent[1] {
                        for k in 0..extent[2] {
                            let s = ((src_lo[0] + i) * chunk[1] + src_lo[1] + j) * chunk[2] + src_lo[2] + k;
                            let d = base + i as isize * strides[0] + j as isize * strides[1] + k as isize * strides[2];
                            want[d as usize] = f32::from(src[s]);
                        }
                    }
                }
                assert!(want.iter().all(|v| *v >= 0.0));
                assert_eq!(got, want, "perm {perm:?} flips {flips:03b}");
                checked += 1;
            }
        }
        assert_eq!(checked, 48);
        // An out-of-range destination is refused, not a panic.
        let region = Region {
            chunk_dims: chunk,
            src_lo,
            extent,
            dest_base: 0,
            dest_strides: [1, 33, 33 * 19 + 1],
        };
        let mut short = vec![0f32; 100];
        assert!(!copy_generic(&src, &region, &mut short, f32::from));
    }
}
