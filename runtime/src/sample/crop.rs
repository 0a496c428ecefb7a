//! Reading one crop of an array from one level: a strided copy when the transform is
//! axis-aligned at equal voxel sizes, else a gather from a source window read into scratch.

use cellmap_schema::{ArraySpec, ValueTransform};

use super::error::CropError;
use super::{ReadInfo, SampleScratch};
use crate::augment::elastic::ElasticField;
use crate::augment::grid::{SampleGrid, StridedMap};
use crate::augment::spatial::SpatialDraw;
use crate::augment::value::{Pointwise, nan_to_num_map};
use crate::dtype::{BatchElem, convert_from_f32, f32_slice_mut};
use crate::kernels::gather::{MAX_CONVERTED_ROW, gather_map};
use crate::kernels::{GatherParams, GatherSource, StridedDest};
use crate::read::{
    ReadError, WindowElem, WindowRequest, read_window, read_window_binarize, read_window_map, read_window_scratch,
};
use crate::store::{ChunkCache, Level, SourceDtype};

/// What a crop read needs besides its output: where to read from, what, where and how.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CropContext<'a> {
    /// The shared chunk cache, if any.
    pub(crate) cache: Option<&'a ChunkCache>,
    /// The level read.
    pub(crate) level: &'a Level,
    /// The array: shape, voxel size and interpolation of the crop.
    pub(crate) array: &'a ArraySpec,
    /// The spatial transform.
    pub(crate) draw: &'a SpatialDraw,
    /// The crop's centre (nm, `z y x`).
    pub(crate) centre_nm: [f64; 3],
    /// Value of voxels outside the level.
    pub(crate) fill: f32,
}

/// Read one crop of `array`'s shape and voxel size centred at `centre_nm` (nm, z y x) from
/// `level`, without augmentation: whole voxels copied when the voxel sizes match, else
/// resampled (`array.interpolation`); `fill` outside the level. `out` holds `array.voxels()`
/// values, C order. For single arrays read outside a spec's plan (cellmap-data's `CellMapImage`).
///
/// # Errors
/// [`CropError::OutputLength`] when `out` does not fit, [`CropError::Read`] naming the failing
/// chunk.
pub fn read_level_crop(
    level: &Level,
    cache: Option<&ChunkCache>,
    array: &ArraySpec,
    centre_nm: [f64; 3],
    fill: f32,
    out: &mut [f32],
) -> Result<(), CropError> {
    if out.len() != array.voxels() {
        return Err(CropError::OutputLength {
            shape_vox: array.shape_vox,
            expected: array.voxels(),
            got: out.len(),
        });
    }
    let mut scratch = SampleScratch::default();
    let mut info = ReadInfo {
        strided: 0,
        gathered: 0,
        from_packs: 0,
    };
    let draw = SpatialDraw::identity();
    let ctx = CropContext {
        cache,
        level,
        array,
        draw: &draw,
        centre_nm,
        fill,
    };
    read_crop(&ctx, None, &mut scratch, out, &mut info).map(|_| ())
}

/// The output element types of a crop read: the batch element types that a window read writes.
pub(crate) trait CropElem: BatchElem + WindowElem {}
impl<T: BatchElem + WindowElem> CropElem for T {}

/// Read a crop of `ctx.array`'s shape and voxel size centred at `ctx.centre_nm` from one level,
/// transformed by `ctx.draw`: a strided copy when voxel sizes match and the transform is
/// axis-aligned (applying `first_transform` itself when it is a binarize, normalize or
/// nan_to_num: then it returns true), else a gather (resampling) from a window read into
/// `scratch`.
pub(crate) fn read_crop<O: CropElem>(
    ctx: &CropContext<'_>,
    first_transform: Option<&ValueTransform>,
    scratch: &mut SampleScratch,
    out: &mut [O],
    info: &mut ReadInfo,
) -> Result<bool, CropError> {
    let (level, array) = (ctx.level, ctx.array);
    let (grid, strided) = crop_grid(array, ctx.draw, ctx.centre_nm, level.translation_nm, level.scale_nm);
    if let Some(map) = strided {
        let fused = read_strided(ctx, &map, first_transform, out)?;
        info.strided += 1;
        return Ok(fused);
    }
    info.gathered += 1;
    if f32_slice_mut(out).is_some() {
        // f32: value transforms run in place afterwards.
        gather_crop(ctx, &grid, scratch, |x| x, out)?;
        return Ok(false);
    }
    // Other element types: rows computed in f32 and converted as they are stored, the leading
    // pointwise transform applied on the way; rows too long for the stack go through f32 staging.
    let pointwise = first_transform.and_then(Pointwise::of);
    let map = move |x: f32| pointwise.map_or(x, |p| p.apply(x));
    if array.shape_vox[2] <= MAX_CONVERTED_ROW {
        gather_crop(ctx, &grid, scratch, map, out)?;
    } else {
        let mut staged = std::mem::take(&mut scratch.staged);
        staged.resize(out.len(), 0.0);
        let result = gather_crop(ctx, &grid, scratch, map, &mut staged[..out.len()]);
        convert_from_f32(&staged[..out.len()], out, |x| x);
        scratch.staged = staged;
        result?;
    }
    Ok(pointwise.is_some())
}

/// The gather (resampling, rotation, elastic) of a crop, from a source window read into
/// `scratch`, `map` applied to every value (fill included) before it is stored as `O`.
fn gather_crop<O: CropElem>(
    ctx: &CropContext<'_>,
    grid: &SampleGrid,
    scratch: &mut SampleScratch,
    map: impl Fn(f32) -> f32 + Copy,
    out: &mut [O],
) -> Result<(), CropError> {
    let (level, array) = (ctx.level, ctx.array);
    let elastic = match &ctx.draw.elastic {
        Some(e) => {
            scratch.elastic.evaluate(e, array.shape_vox, array.voxel_size_nm);
            Some(&scratch.elastic)
        }
        None => None,
    };
    let elastic_max = elastic.map_or([0.0; 3], ElasticField::max_abs_nm);
    let (start, shape) = grid.source_window(array.interpolation, elastic_max);
    let window = clip(start, shape, level.shape_vox);
    if window.1.iter().product::<usize>() == 0 {
        out.fill(O::from_f32(map(ctx.fill)));
        return Ok(());
    }
    let params = GatherParams {
        grid,
        elastic,
        interpolation: array.interpolation,
        fill: ctx.fill,
    };
    // A uint8 level is gathered from a uint8 window: a quarter of the bytes to read and to keep
    // in the caches while the rotated rows walk through it.
    if level.dtype == SourceDtype::U8 {
        gather_window(&mut scratch.bytes, 0, ctx, window, &params, (map, out))?;
    } else {
        gather_window(&mut scratch.window, ctx.fill, ctx, window, &params, (map, out))?;
    }
    Ok(())
}

/// The strided copy of an axis-aligned crop along `map`; a leading pointwise transform is
/// applied by the copy itself (bit-identical to `apply_value_transforms`, one pass fewer over
/// the output): then it returns true.
fn read_strided<O: CropElem>(
    ctx: &CropContext<'_>,
    map: &StridedMap,
    first_transform: Option<&ValueTransform>,
    out: &mut [O],
) -> Result<bool, ReadError> {
    let (level, cache) = (ctx.level, ctx.cache);
    let dest = StridedDest::new(out, map.dest_offset, map.dest_strides, map.src_shape)?;
    let request = WindowRequest {
        start_vox: map.src_start,
        fill: ctx.fill,
    };
    match first_transform {
        Some(&ValueTransform::Binarize { threshold }) => {
            read_window_binarize(level, cache, &request, dest, threshold)?;
            Ok(true)
        }
        Some(&ValueTransform::NanToNum { nan, posinf, neginf }) => {
            read_window_map(level, cache, &request, dest, nan_to_num_map(nan, posinf, neginf))?;
            Ok(true)
        }
        Some(&ValueTransform::Normalize { shift, scale }) => {
            let (shift, scale) = (shift as f32, scale as f32);
            read_window_map(level, cache, &request, dest, move |x: f32| (x - shift) / scale)?;
            Ok(true)
        }
        _ => {
            let request = WindowRequest {
                start_vox: request.start_vox,
                fill: O::from_f32(request.fill),
            };
            read_window(level, cache, &request, dest)?;
            Ok(false)
        }
    }
}

/// Read the source window `(lo, size)` into `buf` (grown as needed; `zero` pads it, and fills
/// voxels outside the level) and gather `out` from it.
fn gather_window<T: WindowElem + Into<f32> + Default, O: CropElem>(
    buf: &mut Vec<T>,
    zero: T,
    ctx: &CropContext<'_>,
    (lo, size): ([i64; 3], [usize; 3]),
    params: &GatherParams<'_>,
    (map, out): (impl Fn(f32) -> f32 + Copy, &mut [O]),
) -> Result<(), CropError> {
    let voxels: usize = size.iter().product();
    if buf.len() < voxels {
        buf.resize(voxels, zero);
    }
    let window = &mut buf[..voxels];
    let request = WindowRequest {
        start_vox: lo,
        fill: zero,
    };
    read_window_scratch(ctx.level, ctx.cache, &request, size, window)?;
    let source = GatherSource {
        src: window,
        start: lo,
        shape: size,
        level_shape: ctx.level.shape_vox,
    };
    gather_map(&source, params, map, out)?;
    Ok(())
}

/// True when an array is read from `level` by the strided copy (no interpolation).
pub(super) fn is_strided(level: &Level, array: &ArraySpec, draw: &SpatialDraw) -> bool {
    is_strided_at(level.scale_nm, array, draw)
}

/// The sampling grid of a crop of `array` centred at `centre_nm` under `draw`, from a level at
/// `translation_nm` and `scale_nm`, and its strided map when the crop is a copy of whole voxels
/// (axis-aligned at the level's voxel size: then the grid is snapped to the level's voxels, as
/// the centre may sit between them). Every reader of a crop (class by class, a pack's bits at
/// once, the window a tool reports) takes its voxels from this one grid.
pub(crate) fn crop_grid(
    array: &ArraySpec,
    draw: &SpatialDraw,
    centre_nm: [f64; 3],
    translation_nm: [f64; 3],
    scale_nm: [f64; 3],
) -> (SampleGrid, Option<StridedMap>) {
    let mut grid = SampleGrid::new(
        centre_nm,
        array.shape_vox,
        array.voxel_size_nm,
        &draw.matrix,
        translation_nm,
        scale_nm,
    );
    if !is_strided_at(scale_nm, array, draw) {
        return (grid, None);
    }
    for o in &mut grid.origin {
        *o = (*o + 0.5).floor();
    }
    let map = grid.as_strided();
    (grid, map)
}

/// Axis-aligned, and the voxel size of each output axis equals the level's along the world axis it
/// runs along (index by index, as for 3D crops, or through the transform's permutation: the frame
/// of a y- or x-slice of a 2D spec).
fn is_strided_at(scale_nm: [f64; 3], array: &ArraySpec, draw: &SpatialDraw) -> bool {
    let same = |a: usize, b: usize| (scale_nm[b] - array.voxel_size_nm[a]).abs() <= 1e-6 * array.voxel_size_nm[a];
    draw.is_axis_aligned()
        && ((0..3).all(|a| same(a, a)) || (0..3).all(|a| (0..3).any(|b| draw.matrix[b][a] != 0.0 && same(a, b))))
}

/// The voxel window `(start, shape)`, before clipping to the level, that a read of `array`
/// centred at `centre_nm` (nm) under `draw` takes from a level of `translation_nm` and
/// `scale_nm`: the crop's own voxels (permuted, flipped) when they are copied with strides, else
/// the box the gather samples (`array.interpolation`; with an elastic deformation, widened by the
/// field's largest displacement over the crop). For tools that report what a sample read.
pub fn transformed_window_vox(
    array: &ArraySpec,
    draw: &SpatialDraw,
    centre_nm: [f64; 3],
    translation_nm: [f64; 3],
    scale_nm: [f64; 3],
) -> ([i64; 3], [usize; 3]) {
    let (grid, strided) = crop_grid(array, draw, centre_nm, translation_nm, scale_nm);
    if let Some(map) = strided {
        return (map.src_start, map.src_shape);
    }
    let elastic_max = match &draw.elastic {
        Some(e) => {
            let mut field = ElasticField::new();
            field.evaluate(e, array.shape_vox, array.voxel_size_nm);
            field.max_abs_nm()
        }
        None => [0.0; 3],
    };
    grid.source_window(array.interpolation, elastic_max)
}

/// The part of a window inside a level: points outside it get the fill value in the gather.
pub(super) fn clip(start: [i64; 3], shape: [usize; 3], level_shape: [u64; 3]) -> ([i64; 3], [usize; 3]) {
    let mut lo = [0i64; 3];
    let mut size = [0usize; 3];
    for a in 0..3 {
        let hi = (start[a] + shape[a] as i64).min(level_shape[a] as i64);
        lo[a] = start[a].max(0);
        size[a] = (hi - lo[a]).max(0) as usize;
    }
    (lo, size)
}
