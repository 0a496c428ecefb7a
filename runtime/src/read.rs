//! Reading a voxel window of a level into a caller-provided [`StridedDest`]: the layer that ties
//! storage (a [`Level`], the [`ChunkCache`]) to the copy kernels.
//!
//! Source voxel `start + (i, j, k)` lands at the destination's voxel `(i, j, k)`. Strides may be
//! negative (a mirrored crop) or permuted (a transposed crop), so an augmented crop is written in
//! one pass without a temporary. Voxels outside the level get the request's `fill`; a chunk
//! missing from the store reads as the array's fill value (zarr semantics). Reads go chunk by
//! chunk (inner chunks of sharded arrays); with a [`ChunkCache`] a warm read allocates nothing.
//!
//! Destinations with contiguous rows are assembled several rows at a time in a stack buffer and
//! written out whole, with non-temporal stores for large windows. Cached integer chunks are
//! narrowed to `uint8`/`uint16` when their values fit ([`ChunkData::narrowed`]), and a `uint8`
//! chunk whose voxels all hold one value is tagged ([`ChunkData::tagged`]): its rows are filled
//! with that value without being read. Transposed destinations go chunk by chunk, in 16 × 16
//! blocks turned through a stack tile.
//!
//! ```no_run
//! use cellmap_runtime::{store::ChunkCache, store::Multiscale, kernels::StridedDest, read::WindowRequest, read::read_window};
//! let ms = Multiscale::open("data/jrc.zarr/recon-1/em/fibsem-uint8")?;
//! let cache = ChunkCache::new(1 << 30);
//! let mut crop = vec![0f32; 64 * 64 * 64];
//! let dest = StridedDest::c_order(&mut crop, [64, 64, 64])?;
//! read_window(&ms.levels[0], Some(&cache), &WindowRequest { start_vox: [10, 20, 30], fill: 0.0 }, dest)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod elem;
mod window;

pub use elem::WindowElem;

use crate::dtype::BatchElem;
use crate::kernels::copy::Span;
use crate::kernels::threshold::Thresholds;
use crate::kernels::{DestError, StridedDest};
use crate::store::{ChunkCache, ChunkData, ChunkError, Level, SourceDtype};
use elem::{map_span, threshold_span};
use window::{RowStore, WindowRead};

/// Why a window could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The destination does not hold the window (see [`StridedDest::new`]).
    #[error(transparent)]
    Destination(#[from] DestError),
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
    /// A chunk could not be read, decoded, or is too short (names the array and the chunk key).
    #[error(transparent)]
    Chunk(#[from] ChunkError),
}

/// What a window read did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowReport {
    /// Voxels of the window that lie inside the level (the rest got `fill`).
    pub voxels_in_bounds: u64,
}

/// Which window to read: the destination's shape from level voxel `start_vox` on, and the value
/// of voxels outside the level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowRequest<T> {
    /// First level voxel of the window, `z y x` (may lie outside the level).
    pub start_vox: [i64; 3],
    /// Value of window voxels outside the level.
    pub fill: T,
}

/// A packed-class read ([`read_window_pack`]): the window, the binarize threshold and the bit
/// the class sets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PackRequest {
    /// First level voxel of the window, `z y x`.
    pub start_vox: [i64; 3],
    /// Window shape (voxels); the destination holds it in C order.
    pub shape_vox: [usize; 3],
    /// Values above it set the bit.
    pub threshold: f64,
    /// The class's bit.
    pub bit: u8,
}

/// Read the window of `dest`'s shape from `request.start_vox` on of `level` into `dest`
/// (see the module docs for the index mapping), converting to `T`.
///
/// # Errors
/// [`ReadError::DtypeMismatch`] when `T` cannot hold the level's data type, [`ReadError::Chunk`]
/// for a corrupt or truncated chunk.
pub fn read_window<T: WindowElem>(
    level: &Level,
    cache: Option<&ChunkCache>,
    request: &WindowRequest<T>,
    dest: StridedDest<'_, T>,
) -> Result<WindowReport, ReadError> {
    read_window_stored(level, cache, request, dest, RowStore::Stream)
}

/// [`read_window`] with the way finished rows are stored chosen by the caller.
fn read_window_stored<T: WindowElem>(
    level: &Level,
    cache: Option<&ChunkCache>,
    request: &WindowRequest<T>,
    dest: StridedDest<'_, T>,
    store: RowStore,
) -> Result<WindowReport, ReadError> {
    if !T::accepts(level.dtype) && !dest.shape.contains(&0) {
        return Err(ReadError::DtypeMismatch {
            array: level.array_location().to_string(),
            source_dtype: level.dtype,
            dest: T::NAME,
        });
    }
    WindowRead::new(level, request.start_vox, &dest).read(cache, Some(request.fill), dest, store, T::copy_span)
}

/// [`read_window`] for scratch memory that is read again right away (the source window of a
/// gather): `dest` holds the window in C order; plain stores, so the window stays in the caches.
///
/// # Errors
/// As [`read_window`], and [`ReadError::Destination`] when `dest` is too short.
pub(crate) fn read_window_scratch<T: WindowElem>(
    level: &Level,
    cache: Option<&ChunkCache>,
    request: &WindowRequest<T>,
    shape_vox: [usize; 3],
    dest: &mut [T],
) -> Result<WindowReport, ReadError> {
    read_window_strided_scratch(level, cache, request, StridedDest::c_order(dest, shape_vox)?)
}

/// [`read_window`] into scratch memory that is read again right away, with plain stores (the
/// window stays in the caches) and any strides.
///
/// # Errors
/// As [`read_window`].
pub(crate) fn read_window_strided_scratch<T: WindowElem>(
    level: &Level,
    cache: Option<&ChunkCache>,
    request: &WindowRequest<T>,
    dest: StridedDest<'_, T>,
) -> Result<WindowReport, ReadError> {
    read_window_stored(level, cache, request, dest, RowStore::Normal)
}

/// [`read_window`] with a per-voxel `map` applied to each value as `f32` while copying (and to
/// `fill`), stored as `O` (any batch element type: see [`BatchElem::from_f32`]), so that a
/// pointwise value transform (binarize, normalize) costs no second pass over the output.
///
/// # Errors
/// As [`read_window`].
pub fn read_window_map<O: BatchElem + WindowElem>(
    level: &Level,
    cache: Option<&ChunkCache>,
    request: &WindowRequest<f32>,
    dest: StridedDest<'_, O>,
    map: impl Fn(f32) -> f32 + Copy,
) -> Result<WindowReport, ReadError> {
    let copy = |src: &ChunkData, span: Span<'_>, dest: &mut [O]| map_span(src, span, dest, map);
    let fill = O::from_f32(map(request.fill));
    WindowRead::new(level, request.start_vox, &dest).read(cache, Some(fill), dest, RowStore::Stream, copy)
}

/// [`read_window`] binarized at `threshold` while copying: `1` where the value read (as `f32`)
/// is above `threshold` in `f64`, `0` elsewhere, NaN kept (stored as `O`: NaN, or 255 in `u8`)
/// — bit-identical to reading then applying a `binarize` transform, but an integer source is
/// compared as an integer (`x >= k`, with `k` found once: the conversion to `f32` is monotone)
/// and a float source against an `f32` threshold rounded down, so no value is converted to `f64`.
///
/// # Errors
/// As [`read_window`].
pub fn read_window_binarize<O: BatchElem + WindowElem>(
    level: &Level,
    cache: Option<&ChunkCache>,
    request: &WindowRequest<f32>,
    dest: StridedDest<'_, O>,
    threshold: f64,
) -> Result<WindowReport, ReadError> {
    let t = Thresholds::new(threshold);
    let fill = request.fill;
    let fill = if fill.is_nan() {
        fill
    } else {
        f32::from(u8::from(f64::from(fill) > threshold))
    };
    // The two outputs, converted once: the loops only select.
    let (zero, one) = (O::from_f32(0.0), O::from_f32(1.0));
    let copy = |src: &ChunkData, span: Span<'_>, dest: &mut [O]| {
        // NaN stays NaN (unknown); every other value becomes 1 or 0.
        threshold_span(
            &t,
            src,
            span,
            dest,
            |d, x| *d = if x { one } else { zero },
            |d, x| {
                *d = if x.is_nan() {
                    // The NaN itself (its payload kept in f32).
                    O::from_f32(x)
                } else if x > t.f32 {
                    one
                } else {
                    zero
                }
            },
        )
    };
    WindowRead::new(level, request.start_vox, &dest).read(cache, Some(O::from_f32(fill)), dest, RowStore::Stream, copy)
}

/// ORs `request.bit` into `dest` (one byte per voxel, C order of `request.shape_vox`) wherever the
/// value read is above `request.threshold` (as [`read_window_binarize`] decides it; NaN is not
/// above): up to 8 binary classes packed as the bits of one byte per voxel, for a one-pass gather
/// of all of them. Voxels outside the level are left untouched (clip the window to the level
/// first).
///
/// # Errors
/// As [`read_window`], and [`ReadError::Destination`] when `dest` does not hold the window.
pub fn read_window_pack(
    level: &Level,
    cache: Option<&ChunkCache>,
    request: &PackRequest,
    dest: &mut [u8],
) -> Result<WindowReport, ReadError> {
    let dest = StridedDest::c_order(dest, request.shape_vox)?;
    let t = Thresholds::new(request.threshold);
    let bit = request.bit;
    let copy = |src: &ChunkData, span: Span<'_>, dest: &mut [u8]| {
        threshold_span(
            &t,
            src,
            span,
            dest,
            |d, x| *d = bit * u8::from(x),
            |d, x| *d = bit * u8::from(x > t.f32),
        )
    };
    WindowRead::new(level, request.start_vox, &dest).read(cache, None, dest, RowStore::Or, copy)
}
