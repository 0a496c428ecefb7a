//! Reading a voxel window of a level into a caller-provided, strided destination.
//!
//! Source voxel `start + (i, j, k)` lands at `dest[dest_offset + i·strides[0] + j·strides[1] +
//! k·strides[2]]`. Strides may be negative (a mirrored crop) or permuted (a transposed crop), so
//! an augmented crop is written in one pass without a temporary. Voxels outside the level get the
//! caller's `fill`; a chunk missing from the store reads as the array's fill value (zarr
//! semantics). Reads go chunk by chunk (inner chunks of sharded arrays); with a [`ChunkCache`]
//! a warm read allocates nothing.
//!
//! Speed: destinations with contiguous rows (x stride ±1) are filled row block by row block:
//! for each row of chunks along x, several destination rows are assembled in a stack buffer
//! (one copy call per chunk and block, loops compiled for AVX2 when the CPU has it), then
//! written out whole — with non-temporal stores for windows of 1 MiB and more, which go to
//! memory without first reading the lines they overwrite. Cached integer chunks are narrowed
//! to `uint8`/`uint16` when their values fit ([`ChunkData::narrowed`]), so `uint64` label
//! volumes with small ids stream an eighth of the bytes, and a `uint8` chunk whose voxels all
//! hold one value is tagged ([`ChunkData::tagged`]): its rows are filled with that value without
//! being read (an empty class, the padding around a volume). Transposed destinations go chunk by
//! chunk, in 16 × 16 blocks turned through a stack tile (contiguous reads and writes).
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

    /// What one call of a chunk copy covers.
    #[derive(Clone, Copy, Debug)]
    pub enum Span<'a> {
        /// A whole region (destinations whose x stride is not ±1).
        Region(&'a Region),
        /// Contiguous runs on consecutive chunk rows.
        Rows(Runs),
    }

    /// `rows` runs of `len` elements: run `r` reads from `src_offset + r·src_stride` and writes
    /// `dest[r·dest_stride ..][.. len]`, back to front when `reversed` (a mirrored x axis).
    #[derive(Clone, Copy, Debug)]
    pub struct Runs {
        /// Index of the first run's first element in the chunk.
        pub src_offset: usize,
        /// Elements between the starts of consecutive source rows.
        pub src_stride: usize,
        /// Elements per run.
        pub len: usize,
        /// Runs.
        pub rows: usize,
        /// Elements between the starts of consecutive destination runs.
        pub dest_stride: usize,
        /// Write each run back to front.
        pub reversed: bool,
    }

    pub trait Sealed: Sized {
        /// The zero of the type (row buffers start with it).
        const ZERO: Self;
        /// `dst |= src`, bit by bit (packed class masks).
        fn or_into(src: &[Self], dst: &mut [Self]);
        /// Copy `span` of `src` into `dest`; false when the source type is not accepted or an
        /// index is out of range (prevented by validation; never panics).
        fn copy_span(src: &ChunkData, span: Span<'_>, dest: &mut [Self]) -> bool;
    }
}
use sealed::{Region, Runs, Span};

/// Edge of the cubic tiles of [`copy_tiled`]: 16³ f32 destinations span 256 cache lines (16 KiB).
const TILE: usize = 16;

/// The hot loop: rows along x, contiguous when `dest_strides[2] == ±1`; a transposed destination
/// (x not contiguous) is copied tile by tile instead.
#[inline]
fn copy_generic<S: Copy, T: Copy>(src: &[S], r: &Region, dest: &mut [T], f: impl Fn(&mut T, S) + Copy) -> bool {
    let [_, cy, cx] = r.chunk_dims;
    let [ez, ey, ex] = r.extent;
    let [dz, dy, dx] = r.dest_strides;
    if dx.unsigned_abs() != 1 && ex > 1 {
        return match [dz, dy].iter().position(|d| d.unsigned_abs() == 1) {
            Some(c) => copy_transposed(src, r, dest, c, f),
            None => copy_tiled(src, r, dest, f),
        };
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
                        f(d, *s);
                    }
                }
                -1 => {
                    #[allow(clippy::cast_possible_wrap)]
                    let lo = d0 - (ex as isize - 1);
                    let Some(d) = dest.get_mut(lo as usize..=d0 as usize) else {
                        return false;
                    };
                    for (d, s) in d.iter_mut().rev().zip(row) {
                        f(d, *s);
                    }
                }
                _ => {
                    let mut di = d0;
                    for s in row {
                        let Some(d) = dest.get_mut(di as usize) else {
                            return false;
                        };
                        f(d, *s);
                        di += dx;
                    }
                }
            }
        }
    }
    true
}

/// Edge of the square blocks of [`copy_transposed`].
const BLOCK: usize = 16;

/// [`copy_generic`] for a destination whose contiguous axis is source axis `c` (0 or 1) rather
/// than x (a transpose): blocks of `BLOCK × BLOCK` voxels of the plane (`c`, x) are loaded
/// from `BLOCK` source rows (contiguous reads), then written as `BLOCK` destination runs
/// (contiguous writes, whole cache lines), `f` applied on the way out.
#[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
fn copy_transposed<S: Copy, T: Copy>(
    src: &[S],
    r: &Region,
    dest: &mut [T],
    c: usize,
    f: impl Fn(&mut T, S) + Copy,
) -> bool {
    let [_, cy, cx] = r.chunk_dims;
    let o = 1 - c; // the other of z and y
    let src_stride = [cy * cx, cx];
    let (e_o, e_c, ex) = (r.extent[o], r.extent[c], r.extent[2]);
    let (d_o, d_c, dx) = (r.dest_strides[o], r.dest_strides[c], r.dest_strides[2]);
    let Some(&first) = src.first() else {
        return false;
    };
    let mut tile = [[first; BLOCK]; BLOCK];
    for i in 0..e_o {
        for c0 in (0..e_c).step_by(BLOCK) {
            let nc = BLOCK.min(e_c - c0);
            for x0 in (0..ex).step_by(BLOCK) {
                let nx = BLOCK.min(ex - x0);
                // Load: tile[k][m] = source (o = i, c = c0 + m, x = x0 + k).
                for m in 0..nc {
                    let mut lo = [0usize; 2];
                    lo[o] = r.src_lo[o] + i;
                    lo[c] = r.src_lo[c] + c0 + m;
                    let s0 = lo[0] * src_stride[0] + lo[1] * src_stride[1] + r.src_lo[2] + x0;
                    let Some(row) = src.get(s0..s0 + nx) else {
                        return false;
                    };
                    for (k, v) in row.iter().enumerate() {
                        tile[k][m] = *v;
                    }
                }
                // Store: for each x, the run over c is contiguous in the destination.
                for (k, column) in tile.iter().enumerate().take(nx) {
                    let d0 = r.dest_base + i as isize * d_o + c0 as isize * d_c + (x0 + k) as isize * dx;
                    let lo = if d_c > 0 { d0 } else { d0 - (nc as isize - 1) };
                    let Some(run) = usize::try_from(lo).ok().and_then(|lo| dest.get_mut(lo..lo + nc)) else {
                        return false;
                    };
                    if d_c > 0 {
                        for (d, v) in run.iter_mut().zip(&column[..nc]) {
                            f(d, *v);
                        }
                    } else {
                        for (d, v) in run.iter_mut().rev().zip(&column[..nc]) {
                            f(d, *v);
                        }
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
fn copy_tiled<S: Copy, T: Copy>(src: &[S], r: &Region, dest: &mut [T], f: impl Fn(&mut T, S) + Copy) -> bool {
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
                            f(d, *s);
                            di += dx;
                        }
                    }
                }
            }
        }
    }
    true
}

/// One [`Span`] of a chunk: a region through [`copy_generic`], or a row run through one loop
/// the compiler vectorises.
#[inline]
fn copy_span<S: Copy, T: Copy>(src: &[S], span: Span<'_>, dest: &mut [T], f: impl Fn(&mut T, S) + Copy) -> bool {
    match span {
        Span::Region(r) => copy_generic(src, r, dest, f),
        Span::Rows(runs) => {
            if runs.rows == 0 {
                return true;
            }
            if !runs.fit(src.len(), dest.len()) {
                return false;
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe { runs_avx2(src, dest, runs, f) };
                return true;
            }
            runs.copy(src, dest, f);
            true
        }
    }
}

/// [`copy_span`] for a chunk whose elements all equal `src[0]`: rows are filled with the value
/// `f` makes of it, without reading the chunk (a region goes through [`copy_generic`]). `f` must
/// write the whole element, as every copy closure does.
#[inline]
fn fill_span<S: Copy, T: Copy>(src: &[S], span: Span<'_>, dest: &mut [T], f: impl Fn(&mut T, S) + Copy) -> bool {
    let Span::Rows(runs) = span else {
        return copy_span(src, span, dest, f);
    };
    if runs.rows == 0 || runs.len == 0 {
        return true;
    }
    if !runs.fit(src.len(), dest.len()) {
        return false;
    }
    let mut value = dest[0];
    f(&mut value, src[0]);
    for r in 0..runs.rows {
        let d = r * runs.dest_stride;
        dest[d..d + runs.len].fill(value);
    }
    true
}

/// The runs of a [`Span::Rows`] (bounds checked by the caller).
impl Runs {
    /// Whether every run (at least one) lies in a source of `src_len` and a destination of
    /// `dest_len` elements.
    fn fit(self, src_len: usize, dest_len: usize) -> bool {
        let last = self.rows.saturating_sub(1);
        let src_end = last
            .checked_mul(self.src_stride)
            .and_then(|v| v.checked_add(self.src_offset))
            .and_then(|v| v.checked_add(self.len));
        let dest_end = last.checked_mul(self.dest_stride).and_then(|v| v.checked_add(self.len));
        src_end.is_some_and(|e| e <= src_len) && dest_end.is_some_and(|e| e <= dest_len)
    }

    #[inline(always)]
    fn copy<S: Copy, T: Copy>(self, src: &[S], dest: &mut [T], f: impl Fn(&mut T, S) + Copy) {
        for r in 0..self.rows {
            let s = self.src_offset + r * self.src_stride;
            let d = r * self.dest_stride;
            run(&src[s..s + self.len], &mut dest[d..d + self.len], self.reversed, f);
        }
    }
}

/// [`Runs::copy`] compiled with AVX2 (twice the vector width of the x86-64 baseline; the element
/// operations are the same, so are the results).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn runs_avx2<S: Copy, T: Copy>(src: &[S], dest: &mut [T], runs: Runs, f: impl Fn(&mut T, S) + Copy) {
    runs.copy(src, dest, f);
}

/// The row-run loop: `f` for every element, front to back or back to front.
#[inline(always)]
fn run<S: Copy, T: Copy>(row: &[S], dest: &mut [T], reversed: bool, f: impl Fn(&mut T, S) + Copy) {
    if reversed {
        for (d, s) in dest.iter_mut().rev().zip(row) {
            f(d, *s);
        }
    } else {
        for (d, s) in dest.iter_mut().zip(row) {
            f(d, *s);
        }
    }
}

impl sealed::Sealed for f32 {
    const ZERO: Self = 0.0;
    fn or_into(src: &[Self], dst: &mut [Self]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_bits(d.to_bits() | s.to_bits());
        }
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    fn copy_span(src: &ChunkData, span: Span<'_>, dest: &mut [f32]) -> bool {
        map_span(src, span, dest, |x| x)
    }
}

/// Copy a span into `f32`, applying `map` to every value converted to `f32`.
#[inline]
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
fn map_span(src: &ChunkData, span: Span<'_>, dest: &mut [f32], map: impl Fn(f32) -> f32 + Copy) -> bool {
    match src {
        ChunkData::U8(v) => copy_span(v, span, dest, |d, x| *d = map(f32::from(x))),
        ChunkData::UniformU8(v) => fill_span(v, span, dest, |d, x| *d = map(f32::from(x))),
        ChunkData::U16(v) => copy_span(v, span, dest, |d, x| *d = map(f32::from(x))),
        ChunkData::U32(v) => copy_span(v, span, dest, |d, x| *d = map(x as f32)),
        ChunkData::U64(v) => copy_span(v, span, dest, |d, x| *d = map(x as f32)),
        ChunkData::I8(v) => copy_span(v, span, dest, |d, x| *d = map(f32::from(x))),
        ChunkData::I16(v) => copy_span(v, span, dest, |d, x| *d = map(f32::from(x))),
        ChunkData::I32(v) => copy_span(v, span, dest, |d, x| *d = map(x as f32)),
        ChunkData::I64(v) => copy_span(v, span, dest, |d, x| *d = map(x as f32)),
        ChunkData::F32(v) => copy_span(v, span, dest, |d, x| *d = map(x)),
        ChunkData::F64(v) => copy_span(v, span, dest, |d, x| *d = map(x as f32)),
    }
}

impl WindowElem for f32 {
    const NAME: &'static str = "f32";
    fn accepts(_: SourceDtype) -> bool {
        true
    }
}

impl sealed::Sealed for u8 {
    const ZERO: Self = 0;
    fn or_into(src: &[Self], dst: &mut [Self]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d |= *s;
        }
    }
    fn copy_span(src: &ChunkData, span: Span<'_>, dest: &mut [u8]) -> bool {
        match src {
            ChunkData::U8(v) => copy_span(v, span, dest, |d, x| *d = x),
            ChunkData::UniformU8(v) => fill_span(v, span, dest, |d, x| *d = x),
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
        None => Ok(Arc::new(decode_chunk(level, chunk)?.tagged())),
        Some(cache) => {
            let key = ChunkKey {
                level_id: level.id,
                chunk,
            };
            if let Some(hit) = cache.get(&key) {
                return Ok(hit);
            }
            let data = Arc::new(decode_chunk(level, chunk)?.tagged());
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
    read_window_stored(
        level,
        cache,
        start_vox,
        shape_vox,
        fill,
        dest,
        dest_offset,
        dest_strides,
        Store::Stream,
    )
}

/// [`read_window`] with the way finished rows are stored chosen by the caller.
#[allow(clippy::too_many_arguments)]
fn read_window_stored<T: WindowElem>(
    level: &Level,
    cache: Option<&ChunkCache>,
    start_vox: [i64; 3],
    shape_vox: [usize; 3],
    fill: T,
    dest: &mut [T],
    dest_offset: usize,
    dest_strides: [isize; 3],
    store: Store,
) -> Result<WindowReport, ReadError> {
    if !T::accepts(level.dtype) && !shape_vox.contains(&0) {
        return Err(ReadError::DtypeMismatch {
            array: level.array_location().to_string(),
            source_dtype: level.dtype,
            dest: T::NAME,
        });
    }
    let window = Window::new(level, start_vox, shape_vox, dest_offset, dest_strides)?;
    window.read(cache, Some(fill), dest, store, T::copy_span)
}

/// [`read_window`] for scratch memory that is read again right away (the source window of a
/// gather): plain stores, so the window stays in the caches.
///
/// # Errors
/// As [`read_window`].
pub(crate) fn read_window_scratch<T: WindowElem>(
    level: &Level,
    cache: Option<&ChunkCache>,
    start_vox: [i64; 3],
    shape_vox: [usize; 3],
    fill: T,
    dest: &mut [T],
) -> Result<WindowReport, ReadError> {
    #[allow(clippy::cast_possible_wrap)]
    let strides = [(shape_vox[1] * shape_vox[2]) as isize, shape_vox[2] as isize, 1];
    read_window_stored(
        level,
        cache,
        start_vox,
        shape_vox,
        fill,
        dest,
        0,
        strides,
        Store::Normal,
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
    let window = Window::new(level, start_vox, shape_vox, dest_offset, dest_strides)?;
    let copy = |src: &ChunkData, span: Span<'_>, dest: &mut [f32]| map_span(src, span, dest, map);
    window.read(cache, Some(map(fill)), dest, Store::Stream, copy)
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
    let window = Window::new(level, start_vox, shape_vox, dest_offset, dest_strides)?;
    let t = Thresholds::new(threshold);
    let fill = if fill.is_nan() {
        fill
    } else {
        f32::from(u8::from(f64::from(fill) > threshold))
    };
    let copy = |src: &ChunkData, span: Span<'_>, dest: &mut [f32]| {
        // NaN stays NaN; every other value becomes 1 or 0.
        t.copy(
            src,
            span,
            dest,
            |d, x| *d = f32::from(u8::from(x)),
            |d, x| *d = if x.is_nan() { x } else { f32::from(u8::from(x > t.f32)) },
        )
    };
    window.read(cache, Some(fill), dest, Store::Stream, copy)
}

/// ORs `bit` into `dest` (one byte per voxel, C order of `shape_vox`) wherever the value read
/// is above `threshold` (as [`read_window_binarize`] decides it; NaN is not above): up to 8
/// binary classes packed as the bits of one byte per voxel, for a one-pass gather of all of
/// them. Voxels outside the level are left untouched (clip the window to the level first).
///
/// # Errors
/// As [`read_window`] (`dest` must hold the window's voxels).
pub fn read_window_pack(
    level: &Level,
    cache: Option<&ChunkCache>,
    start_vox: [i64; 3],
    shape_vox: [usize; 3],
    dest: &mut [u8],
    threshold: f64,
    bit: u8,
) -> Result<WindowReport, ReadError> {
    #[allow(clippy::cast_possible_wrap)]
    let strides = [(shape_vox[1] * shape_vox[2]) as isize, shape_vox[2] as isize, 1];
    let window = Window::new(level, start_vox, shape_vox, 0, strides)?;
    let t = Thresholds::new(threshold);
    let copy = |src: &ChunkData, span: Span<'_>, dest: &mut [u8]| {
        t.copy(
            src,
            span,
            dest,
            |d, x| *d = bit * u8::from(x),
            |d, x| *d = bit * u8::from(x > t.f32),
        )
    };
    window.read(cache, None, dest, Store::Or, copy)
}

/// A binarize threshold resolved once per read for every source type: integers compare as
/// `x >= k` (see [`int_threshold`]), floats against the largest `f32` not above the threshold.
#[derive(Clone, Copy, Debug)]
struct Thresholds {
    u8: IntThreshold<u8>,
    u16: IntThreshold<u16>,
    u32: IntThreshold<u32>,
    u64: IntThreshold<u64>,
    i8: IntThreshold<i8>,
    i16: IntThreshold<i16>,
    i32: IntThreshold<i32>,
    i64: IntThreshold<i64>,
    /// For every f32 `x`: `f64(x) > threshold` iff `x > f32`.
    f32: f32,
}

impl Thresholds {
    /// The thresholds of `threshold`, computed once per thread and threshold (the bisections
    /// cost about a microsecond, as much as copying a small window).
    fn new(threshold: f64) -> Self {
        thread_local! {
            static LAST: std::cell::Cell<Option<(u64, Thresholds)>> = const { std::cell::Cell::new(None) };
        }
        LAST.with(|last| match last.get() {
            Some((bits, t)) if bits == threshold.to_bits() => t,
            _ => {
                let t = Self::compute(threshold);
                last.set(Some((threshold.to_bits(), t)));
                t
            }
        })
    }

    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    fn compute(threshold: f64) -> Self {
        let above = |x: f32| f64::from(x) > threshold;
        let mut t32 = threshold as f32;
        if f64::from(t32) > threshold {
            t32 = t32.next_down();
        }
        Self {
            u8: int_threshold(|x: u8| above(f32::from(x))),
            u16: int_threshold(|x: u16| above(f32::from(x))),
            u32: int_threshold(|x: u32| above(x as f32)),
            u64: int_threshold(|x: u64| above(x as f32)),
            i8: int_threshold(|x: i8| above(f32::from(x))),
            i16: int_threshold(|x: i16| above(f32::from(x))),
            i32: int_threshold(|x: i32| above(x as f32)),
            i64: int_threshold(|x: i64| above(x as f32)),
            f32: t32,
        }
    }

    /// Copy a span, handing `int` whether each integer value is above the threshold and
    /// `float` each float value (as `f32`).
    #[inline]
    #[allow(clippy::cast_possible_truncation)]
    fn copy<T: Copy>(
        &self,
        src: &ChunkData,
        span: Span<'_>,
        dest: &mut [T],
        int: impl Fn(&mut T, bool) + Copy,
        float: impl Fn(&mut T, f32) + Copy,
    ) -> bool {
        match src {
            ChunkData::U8(v) => copy_span(v, span, dest, |d, x| int(d, self.u8.test(x))),
            ChunkData::UniformU8(v) => fill_span(v, span, dest, |d, x| int(d, self.u8.test(x))),
            ChunkData::U16(v) => copy_span(v, span, dest, |d, x| int(d, self.u16.test(x))),
            ChunkData::U32(v) => copy_span(v, span, dest, |d, x| int(d, self.u32.test(x))),
            ChunkData::U64(v) => copy_span(v, span, dest, |d, x| int(d, self.u64.test(x))),
            ChunkData::I8(v) => copy_span(v, span, dest, |d, x| int(d, self.i8.test(x))),
            ChunkData::I16(v) => copy_span(v, span, dest, |d, x| int(d, self.i16.test(x))),
            ChunkData::I32(v) => copy_span(v, span, dest, |d, x| int(d, self.i32.test(x))),
            ChunkData::I64(v) => copy_span(v, span, dest, |d, x| int(d, self.i64.test(x))),
            ChunkData::F32(v) => copy_span(v, span, dest, float),
            ChunkData::F64(v) => copy_span(v, span, dest, |d, x| float(d, x as f32)),
        }
    }
}

/// An integer type's value range, for the threshold search of [`int_threshold`].
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

/// `above(x)` as one integer comparison `x >= k` (never true when `never`).
#[derive(Clone, Copy, Debug)]
struct IntThreshold<T> {
    k: T,
    never: bool,
}

impl<T: IntRange> IntThreshold<T> {
    /// Branch-free (`&`, not `&&`), so the copy loops vectorise.
    #[inline]
    fn test(self, x: T) -> bool {
        (x >= self.k) & !self.never
    }
}

/// `above` is monotone in `x` (a rounding conversion followed by a comparison), so it holds
/// exactly from the first `k` where it does; found by bisection.
fn int_threshold<T: IntRange>(above: impl Fn(T) -> bool) -> IntThreshold<T> {
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
    IntThreshold {
        k: T::from_i128(lo.min(T::MAX)),
        never: lo > T::MAX,
    }
}

/// How finished destination rows are written. Rows are assembled in a stack buffer, several at
/// once (one copy call per chunk covers many rows), then written out whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    /// Rows of large windows are written with non-temporal stores: whole cache lines go to
    /// memory without being read first, and the window (far larger than the caches, about to
    /// be handed to the consumer) does not evict the chunk cache's hot lines. Small windows
    /// are copied.
    Stream,
    /// Copied (scratch about to be read again).
    Normal,
    /// OR-ed into the destination (packed class bits).
    Or,
}

/// Windows at least this large (bytes) are written with [`Store::Stream`].
pub(crate) const STREAM_MIN_BYTES: usize = 1 << 20;
/// Elements of the stack buffer where rows are assembled ([`Store`]); rows longer than this (and
/// the rows of small windows) are written in place, run by run (an [`Store::Or`] copy ORs them in
/// through a small buffer).
const STAGE: usize = 8192;
/// Elements of the stack buffer a streamed ([`Store::Stream`]) pass assembles (at least one row):
/// short passes let one pass's non-temporal stores overlap the next pass's conversion. One worker
/// without augmentation on the 128³ compare spec, same run, binaries alternating: 352 / 388 / 357 /
/// 417 samples/s with 8192-element passes, 406 / 417 / 401 / 420 with 512 (copies into scratch
/// windows keep the long passes: shorter ones cost them 5 %).
const STREAM_STAGE: usize = 512;
/// Windows at least this large (bytes) are assembled in the stack buffer of [`STAGE`] elements
/// (below it, zeroing the buffer costs more than it saves).
const STAGE_MIN_BYTES: usize = 32 << 10;
/// Chunks along x held at once while rows are copied.
const GROUP: usize = 8;

/// The chunk grid around a window's in-bounds box.
struct Chunks {
    /// Chunk shape (voxels).
    c: [i64; 3],
    /// Chunk shape as element counts.
    dims: [usize; 3],
    /// First and last chunk index touched, per axis.
    first: [i64; 3],
    last: [i64; 3],
}

/// A validated window read: the in-bounds box and the destination mapping.
struct Window<'l> {
    level: &'l Level,
    start: [i64; 3],
    shape: [usize; 3],
    base: isize,
    strides: [isize; 3],
    /// In-bounds part of the window, level voxels `[lo, hi)`.
    lo: [i64; 3],
    hi: [i64; 3],
    voxels_in_bounds: u64,
}

impl<'l> Window<'l> {
    fn new(
        level: &'l Level,
        start: [i64; 3],
        shape: [usize; 3],
        dest_offset: usize,
        strides: [isize; 3],
    ) -> Result<Self, ReadError> {
        let mut lo = [0i64; 3];
        let mut hi = [0i64; 3];
        let mut voxels_in_bounds = u64::from(!shape.contains(&0));
        for a in 0..3 {
            #[allow(clippy::cast_possible_wrap)]
            let end = start[a].saturating_add(shape[a] as i64);
            let n = i64::try_from(level.shape_vox[a]).unwrap_or(i64::MAX);
            lo[a] = start[a].clamp(0, n);
            hi[a] = end.clamp(0, n);
            #[allow(clippy::cast_sign_loss)]
            let len = (hi[a] - lo[a]).max(0) as u64;
            voxels_in_bounds *= len;
        }
        #[allow(clippy::cast_possible_wrap)]
        Ok(Self {
            level,
            start,
            shape,
            base: dest_offset as isize,
            strides,
            lo,
            hi,
            voxels_in_bounds,
        })
    }

    /// The chunks the in-bounds box touches.
    #[allow(clippy::cast_possible_wrap)]
    fn chunks(&self) -> Chunks {
        let c = self.level.chunk_shape_vox.map(|v| v as i64);
        Chunks {
            c,
            dims: self
                .level
                .chunk_shape_vox
                .map(|v| usize::try_from(v).unwrap_or(usize::MAX)),
            first: [0, 1, 2].map(|a| self.lo[a] / c[a]),
            last: [0, 1, 2].map(|a| (self.hi[a] - 1) / c[a]),
        }
    }

    /// Chunk `cidx`'s part of the in-bounds box, level voxels `[lo, hi)` per axis.
    fn part(&self, cidx: [i64; 3], c: [i64; 3]) -> ([i64; 3], [i64; 3]) {
        let mut lo = [0i64; 3];
        let mut hi = [0i64; 3];
        for a in 0..3 {
            lo[a] = self.lo[a].max(cidx[a] * c[a]);
            hi[a] = self.hi[a].min((cidx[a] + 1) * c[a]);
        }
        (lo, hi)
    }

    /// Destination index of level voxel `v`.
    #[allow(clippy::cast_possible_truncation)]
    fn dest_index(&self, v: [i64; 3]) -> isize {
        let mut d = self.base;
        for a in 0..3 {
            d += (v[a] - self.start[a]) as isize * self.strides[a];
        }
        d
    }

    fn chunk_size_error(&self, cidx: [i64; 3], got: usize) -> ReadError {
        #[allow(clippy::cast_sign_loss)]
        let chunk = cidx.map(|v| v as u64);
        ReadError::ChunkSize {
            array: self.level.array_location().to_string(),
            key: chunk_key_string(self.level, chunk),
            chunk,
            expected: usize::try_from(self.level.chunk_shape_vox.iter().product::<u64>()).unwrap_or(usize::MAX),
            got,
        }
    }

    /// Read the window into `dest` with `copy`; voxels outside the level get `fill` (or are
    /// left as they are with `None`).
    fn read<T: WindowElem>(
        &self,
        cache: Option<&ChunkCache>,
        fill: Option<T>,
        dest: &mut [T],
        store: Store,
        copy: impl Fn(&ChunkData, Span<'_>, &mut [T]) -> bool,
    ) -> Result<WindowReport, ReadError> {
        if self.shape.contains(&0) {
            return Ok(WindowReport::default());
        }
        validate_dest(self.shape, self.base.unsigned_abs(), self.strides, dest.len())?;
        let inside = (0..3).all(|a| self.lo[a] == self.start[a] && self.hi[a] - self.lo[a] == self.shape[a] as i64);
        if let (false, Some(fill)) = (inside, fill) {
            fill_window(self.shape, self.base, self.strides, fill, dest);
        }
        let voxels_in_bounds = self.voxels_in_bounds;
        if voxels_in_bounds == 0 {
            return Ok(WindowReport { voxels_in_bounds });
        }
        if self.strides[2].unsigned_abs() == 1 {
            let bytes = self.shape.iter().product::<usize>() * size_of::<T>();
            let store = match store {
                Store::Stream if bytes < STREAM_MIN_BYTES => Store::Normal,
                other => other,
            };
            if bytes >= STAGE_MIN_BYTES {
                self.read_rows::<T, STAGE>(cache, dest, store, copy)?;
            } else {
                self.read_rows::<T, 0>(cache, dest, store, copy)?;
            }
        } else {
            self.read_regions(cache, dest, copy)?;
        }
        Ok(WindowReport { voxels_in_bounds })
    }

    /// Destinations with contiguous rows (x stride ±1): for each chunk row along x, every
    /// destination row is completed run by run before the next, so cache lines are written
    /// whole and in order.
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
    fn read_rows<T: WindowElem, const N: usize>(
        &self,
        cache: Option<&ChunkCache>,
        dest: &mut [T],
        store: Store,
        copy: impl Fn(&ChunkData, Span<'_>, &mut [T]) -> bool,
    ) -> Result<(), ReadError> {
        let level = self.level;
        let Chunks { c, dims, first, last } = self.chunks();
        let reversed = self.strides[2] < 0;
        // Zeroing the stack buffer costs as much as copying a small window: small windows go
        // without one (`N = 0`), run by run in place.
        let mut stage = [T::ZERO; N];
        let mut streamed = false;
        for cz in first[0]..=last[0] {
            for cy in first[1]..=last[1] {
                let mut cx0 = first[2];
                while cx0 <= last[2] {
                    let cx1 = (cx0 + GROUP as i64 - 1).min(last[2]);
                    let mut chunks: [Option<Arc<ChunkData>>; GROUP] = Default::default();
                    for (k, slot) in chunks.iter_mut().enumerate().take((cx1 - cx0 + 1) as usize) {
                        *slot = Some(fetch(level, cache, [cz as u64, cy as u64, (cx0 + k as i64) as u64])?);
                    }
                    let (lo, hi) = self.part([cz, cy, cx0], c);
                    let x_hi = self.hi[2].min((cx1 + 1) * c[2]);
                    let width = (x_hi - lo[2]) as usize;
                    // Staged: several rows of the group at once, one copy call per chunk.
                    let staged = width <= N;
                    streamed |= staged && store == Store::Stream;
                    let stage_len = if store == Store::Stream { N.min(STREAM_STAGE) } else { N };
                    let rows_per_pass = if staged { (stage_len / width).max(1) } else { 1 };
                    // Start of the destination row of voxels x in [lo[2], x_hi) at (z, y).
                    let row_start = |z: i64, y: i64| {
                        let d_first = self.dest_index([z, y, lo[2]]);
                        (if reversed {
                            d_first - (width as isize - 1)
                        } else {
                            d_first
                        }) as usize
                    };
                    for z in lo[0]..hi[0] {
                        let mut y = lo[1];
                        while y < hi[1] {
                            let rows = rows_per_pass.min((hi[1] - y) as usize);
                            for (k, chunk) in chunks.iter().enumerate() {
                                let Some(chunk) = chunk else { break };
                                let cx = cx0 + k as i64;
                                let a = lo[2].max(cx * c[2]);
                                let b = x_hi.min((cx + 1) * c[2]);
                                let src_offset = (((z - cz * c[0]) as usize * dims[1] + (y - cy * c[1]) as usize)
                                    * dims[2])
                                    + (a - cx * c[2]) as usize;
                                let p = if reversed {
                                    (x_hi - b) as usize
                                } else {
                                    (a - lo[2]) as usize
                                };
                                let len = (b - a) as usize;
                                let span = Span::Rows(Runs {
                                    src_offset,
                                    src_stride: dims[2],
                                    len,
                                    rows,
                                    dest_stride: width,
                                    reversed,
                                });
                                let ok = if staged {
                                    copy(chunk, span, &mut stage[p..])
                                } else {
                                    let start = row_start(z, y) + p;
                                    let run = &mut dest[start..start + len];
                                    if store == Store::Or {
                                        // Piece by piece through a small buffer, then OR-ed in.
                                        const PIECE: usize = 256;
                                        let mut piece_buf = [T::ZERO; PIECE];
                                        let mut ok = true;
                                        for o in (0..len).step_by(PIECE) {
                                            let m = PIECE.min(len - o);
                                            let piece = Span::Rows(Runs {
                                                src_offset: src_offset + o,
                                                src_stride: dims[2],
                                                len: m,
                                                rows: 1,
                                                dest_stride: m,
                                                reversed,
                                            });
                                            let d = if reversed { len - o - m } else { o };
                                            ok &= copy(chunk, piece, &mut piece_buf[..m]);
                                            T::or_into(&piece_buf[..m], &mut run[d..d + m]);
                                        }
                                        ok
                                    } else {
                                        copy(chunk, span, run)
                                    }
                                };
                                if !ok {
                                    return Err(self.chunk_size_error([cz, cy, cx], chunk.len()));
                                }
                            }
                            if staged {
                                for r in 0..rows {
                                    let start = row_start(z, y + r as i64);
                                    let (src, dst) =
                                        (&stage[r * width..(r + 1) * width], &mut dest[start..start + width]);
                                    match store {
                                        Store::Stream => store_stream(src, dst),
                                        Store::Normal => dst.copy_from_slice(src),
                                        Store::Or => T::or_into(src, dst),
                                    }
                                }
                            }
                            y += rows as i64;
                        }
                    }
                    cx0 = cx1 + 1;
                }
            }
        }
        if streamed {
            store_fence();
        }
        Ok(())
    }

    /// Destinations whose x stride is not ±1 (a transposed crop): chunk by chunk, region by
    /// region (see [`copy_tiled`]).
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
    fn read_regions<T: WindowElem>(
        &self,
        cache: Option<&ChunkCache>,
        dest: &mut [T],
        copy: impl Fn(&ChunkData, Span<'_>, &mut [T]) -> bool,
    ) -> Result<(), ReadError> {
        let level = self.level;
        let Chunks {
            c,
            dims: chunk_dims,
            first,
            last,
        } = self.chunks();
        for cz in first[0]..=last[0] {
            for cy in first[1]..=last[1] {
                for cx in first[2]..=last[2] {
                    let cidx = [cz, cy, cx];
                    let chunk = fetch(level, cache, cidx.map(|v| v as u64))?;
                    let (lo, hi) = self.part(cidx, c);
                    let region = Region {
                        chunk_dims,
                        src_lo: [0, 1, 2].map(|a| (lo[a] - cidx[a] * c[a]) as usize),
                        extent: [0, 1, 2].map(|a| (hi[a] - lo[a]) as usize),
                        dest_base: self.dest_index(lo),
                        dest_strides: self.strides,
                    };
                    if !copy(&chunk, Span::Region(&region), dest) {
                        return Err(self.chunk_size_error(cidx, chunk.len()));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Copy `src` into `dst` (equal lengths) with non-temporal stores for the aligned middle: whole
/// 64-byte cache lines with AVX-512 where the CPU has it, 16-byte pieces otherwise. One worker
/// without augmentation on the 128³ compare spec, same run, alternating: 348 / 451 / 433
/// samples/s with 16-byte stores, 520 / 501 / 498 with whole lines (a line written in one
/// instruction leaves the write-combining buffer at once; 32-byte stores gained nothing).
#[inline]
pub(crate) fn store_stream<T: WindowElem>(src: &[T], dst: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            unsafe { store_stream_lines(src, dst) };
        } else {
            store_stream_pieces(src, dst);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let len = src.len().min(dst.len());
        dst[..len].copy_from_slice(&src[..len]);
    }
}

/// [`store_stream`] with 16-byte non-temporal stores (SSE2, every x86-64 CPU).
#[cfg(target_arch = "x86_64")]
fn store_stream_pieces<T: WindowElem>(src: &[T], dst: &mut [T]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
    // SAFETY: the store writes 16 bytes to a 16-byte aligned `d`, both valid for 16 bytes
    // (`stream_aligned`'s contract); SSE2 is part of x86_64.
    unsafe {
        stream_aligned::<T, 16>(src, dst, |d, s| {
            _mm_stream_si128(d.cast::<__m128i>(), _mm_loadu_si128(s.cast::<__m128i>()));
        });
    }
}

/// [`store_stream`] with one 64-byte non-temporal store per whole destination cache line.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn store_stream_lines<T: WindowElem>(src: &[T], dst: &mut [T]) {
    use std::arch::x86_64::{__m512i, _mm512_loadu_si512, _mm512_stream_si512};
    // SAFETY: the store writes 64 bytes to a 64-byte aligned `d`, both valid for 64 bytes
    // (`stream_aligned`'s contract); the CPU supports AVX-512F (this function's caller checked,
    // and the closure inherits the function's target features).
    unsafe {
        stream_aligned::<T, 64>(src, dst, |d, s| {
            _mm512_stream_si512(d.cast::<__m512i>(), _mm512_loadu_si512(s.cast::<__m512i>()));
        });
    }
}

/// The copy both non-temporal widths share: `dst`'s bytes before its first `LINE`-aligned byte
/// and after its last whole aligned `LINE` are copied plainly; every whole aligned `LINE` between
/// goes through `stream(d, s)` (`d` in `dst`, `s` at the same offset in `src`).
///
/// # Safety
/// `stream(d, s)` must copy `LINE` bytes from `s` to `d` and be sound whenever `d` is
/// `LINE`-aligned and both are valid for `LINE` bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn stream_aligned<T: WindowElem, const LINE: usize>(
    src: &[T],
    dst: &mut [T],
    stream: impl Fn(*mut u8, *const u8),
) {
    let len = src.len().min(dst.len());
    let bytes = len * size_of::<T>();
    let s = src.as_ptr().cast::<u8>();
    let d = dst.as_mut_ptr().cast::<u8>();
    // `T` is `f32` or `u8`, plain bytes, so a byte copy is an element copy; the head is a whole
    // number of elements since `d` is aligned to `T` and `LINE` is a multiple of its size.
    let head = d.align_offset(LINE).min(bytes);
    let body = (bytes - head) / LINE * LINE;
    // SAFETY: `s` and `d` are valid for `bytes` bytes (both slices hold `len` elements of `T`,
    // which has no padding) and do not overlap (`src` and `dst` are a shared and a mutable
    // borrow); every `stream` target `d + off` is `LINE`-aligned (`head` aligns it) and
    // `off + LINE <= head + body <= bytes`.
    unsafe {
        std::ptr::copy_nonoverlapping(s, d, head);
        let mut off = head;
        while off < head + body {
            stream(d.add(off), s.add(off));
            off += LINE;
        }
        std::ptr::copy_nonoverlapping(s.add(off), d.add(off), bytes - off);
    }
}

/// Orders the non-temporal stores of [`store_stream`] before every later store (the slot's
/// hand-off to the consumer).
#[inline]
pub(crate) fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` has no preconditions; SSE is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_sfence();
    }
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

#[cfg(test)]
mod tests {
    /// Both non-temporal copies (16-byte pieces, and whole lines where the CPU has AVX-512)
    /// copy every element, whatever the alignment and length, and touch nothing after it.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn streamed_copies_are_exact_at_every_alignment() {
        let src: Vec<f32> = (0..400).map(|i| i as f32 * 1.5 - 7.0).collect();
        let bytes: Vec<u8> = (0..400).map(|i| (i * 37 % 251) as u8).collect();
        for offset in 0..20 {
            for len in [0usize, 1, 3, 15, 16, 17, 63, 64, 65, 130, 257, 380] {
                let mut dst = vec![-1.0f32; 400];
                super::store_stream_pieces(&src[..len], &mut dst[offset..offset + len]);
                assert_eq!(&dst[offset..offset + len], &src[..len], "f32 {offset} {len}");
                assert!(dst[..offset].iter().chain(&dst[offset + len..]).all(|v| *v == -1.0));
                let mut dst8 = vec![255u8; 400];
                super::store_stream_pieces(&bytes[..len], &mut dst8[offset..offset + len]);
                assert_eq!(&dst8[offset..offset + len], &bytes[..len], "u8 {offset} {len}");
                if std::arch::is_x86_feature_detected!("avx512f") {
                    let mut dst = vec![-1.0f32; 400];
                    // SAFETY: the CPU supports AVX-512F, checked just above.
                    unsafe { super::store_stream_lines(&src[..len], &mut dst[offset..offset + len]) };
                    assert_eq!(&dst[offset..offset + len], &src[..len], "lines f32 {offset} {len}");
                    assert!(dst[..offset].iter().chain(&dst[offset + len..]).all(|v| *v == -1.0));
                    let mut dst8 = vec![255u8; 400];
                    // SAFETY: as above.
                    unsafe { super::store_stream_lines(&bytes[..len], &mut dst8[offset..offset + len]) };
                    assert_eq!(&dst8[offset..offset + len], &bytes[..len], "lines u8 {offset} {len}");
                    assert!(dst8[..offset].iter().chain(&dst8[offset + len..]).all(|v| *v == 255));
                }
            }
        }
        super::store_fence();
    }

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
                assert!(copy_generic(&src, &region, &mut got, |d, x| *d = f32::from(x)));
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
        // No axis with a unit stride (every other element of a buffer twice the size): tiles.
        let strides = [(2 * extent[1] * extent[2]) as isize, 2 * extent[2] as isize, 2];
        let region = Region {
            chunk_dims: chunk,
            src_lo,
            extent,
            dest_base: 1,
            dest_strides: strides,
        };
        let n: usize = extent.iter().product();
        let mut got = vec![-1.0f32; 2 * n];
        assert!(copy_generic(&src, &region, &mut got, |d, x| *d = f32::from(x)));
        for i in 0..extent[0] {
            for j in 0..extent[1] {
                for k in 0..extent[2] {
                    let s = ((src_lo[0] + i) * chunk[1] + src_lo[1] + j) * chunk[2] + src_lo[2] + k;
                    let d = 1 + i as isize * strides[0] + j as isize * strides[1] + k as isize * strides[2];
                    assert_eq!(got[d as usize], f32::from(src[s]));
                    assert_eq!(got[d as usize - 1], -1.0);
                }
            }
        }
        // An out-of-range destination is refused, not a panic.
        let region = Region {
            chunk_dims: chunk,
            src_lo,
            extent,
            dest_base: 0,
            dest_strides: [1, 33, 33 * 19 + 1],
        };
        let mut short = vec![0f32; 100];
        assert!(!copy_generic(&src, &region, &mut short, |d, x| *d = f32::from(x)));
    }
}
