//! Reading one sample: every input and target array of a dataset at one world centre, with
//! one spatial transform shared by all arrays, then value transforms, written in place.
//!
//! Per array and source the reader chooses the cheapest exact path:
//! - axis-aligned transform (identity, mirror, transpose) at a level whose voxel size equals
//!   the request: the voxels are copied straight into the output with permuted or negative
//!   strides (no interpolation, no temporary);
//! - otherwise (resampling, rotation, elastic): the source window the transformed crop needs
//!   is read once into scratch memory and sampled (nearest or trilinear) per output voxel.
//!
//! Target channels of classes the crop does not annotate are NaN (unknown); classes with a
//! mutually exclusive annotated class are 0 where that class is present, NaN elsewhere.

use std::sync::Arc;

use cellmap_schema::{ArraySpec, Interpolation, Spec, Split, ValueTransform};

use crate::augment::elastic::ElasticField;
use crate::augment::gather::{gather, gather_labels_packed};
use crate::augment::grid::SampleGrid;
use crate::augment::spatial::{SpatialDraw, draw_spatial_into};
use crate::augment::value::{ValueScratch, apply_value_transforms, nan_to_num_map};
use crate::chunk_cache::ChunkCache;
use crate::multiscale::{Level, SourceDtype};
use crate::plan::{ClassPlan, Planned};
use crate::rng::{Rng, STREAM_SPATIAL, STREAM_VALUE, SampleKey};
use crate::sources::ClassSource;
use crate::window::{read_window, read_window_binarize, read_window_map, read_window_pack, read_window_scratch};

/// Where a sample is written: one `channels · z · y · x` slice per array (inputs, then targets).
pub trait SampleDest {
    /// The slice of array `i`.
    fn array(&mut self, i: usize) -> &mut [f32];
}

impl SampleDest for crate::pipeline::SampleOut<'_> {
    fn array(&mut self, i: usize) -> &mut [f32] {
        crate::pipeline::SampleOut::array(self, i)
    }
}

impl SampleDest for Vec<Vec<f32>> {
    fn array(&mut self, i: usize) -> &mut [f32] {
        &mut self[i]
    }
}

/// One sample to read.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRequest {
    /// Index into the plan's datasets.
    pub dataset: usize,
    /// World centre, nm.
    pub centre_nm: [f64; 3],
    /// Key of every random choice of this sample (transforms, noise).
    pub key: SampleKey,
    /// Apply the spec's spatial transforms (training) or not (validation, `sample`).
    pub spatial: bool,
    /// Apply the value transforms of the dataset's split ([`cellmap_schema::Augment::inputs_for`] and
    /// [`cellmap_schema::Augment::targets_for`]: a validation dataset gets `augment.validate`, by default
    /// the deterministic training transforms) or none (the stored values).
    pub values: bool,
}

/// A failed sample read, with the context a person needs.
#[derive(Debug, thiserror::Error)]
#[error("dataset `{dataset}`, array `{array}`{class}, centre {centre_nm:?} nm: {message}")]
pub struct SampleReadError {
    /// The dataset's raw location.
    pub dataset: String,
    /// The array.
    pub array: String,
    /// `, class `x`` when a class channel failed.
    pub class: String,
    /// The centre.
    pub centre_nm: [f64; 3],
    /// The cause (names the chunk for chunk failures).
    pub message: String,
}

/// Per-worker scratch memory; grows only while warming up.
#[derive(Debug, Default)]
pub struct SampleScratch {
    window: Vec<f32>,
    /// Byte scratch: packed class bits, or a uint8 source window.
    bytes: Vec<u8>,
    /// The last sample's spatial transform (its elastic lattice memory is reused).
    draw: SpatialDraw,
    /// The elastic lattice memory while a sample draws no deformation.
    lattice: Vec<[f32; 3]>,
    values: ValueScratch,
    elastic: ElasticField,
}

/// What a reader reports about one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadInfo {
    /// Arrays (and classes) read with the strided copy path.
    pub strided: u32,
    /// Arrays (and classes) read with interpolation.
    pub gathered: u32,
}

/// Reads samples of a planned spec into caller-provided memory.
#[derive(Debug, Clone)]
pub struct Reader {
    spec: Arc<Spec>,
    planned: Arc<Planned>,
    cache: Option<Arc<ChunkCache>>,
    /// Per dataset, per target array: the one-pass packed-labels plan (with the target transforms
    /// of the dataset's split), when it applies.
    packed: Vec<Vec<Option<PackedTarget>>>,
    /// The largest extent of the spec's arrays (nm), which an elastic lattice covers.
    extent_nm: [f64; 3],
}

/// Every annotated class of a target array shares one level geometry, has integer labels and
/// is binarized (its only transform): the classes are packed as bits of one byte per voxel and
/// gathered in one pass whenever interpolation is needed (rotation, elastic, resampling).
#[derive(Debug, Clone)]
struct PackedTarget {
    /// `(class index, level index, threshold)` per annotated class.
    classes: Vec<(usize, usize, f64)>,
    /// Bits of the classes that are not annotated (NaN channels before inference).
    unknown_mask: u8,
    /// The level of the first annotated class; every other one has its geometry.
    level: Level,
}

impl PackedTarget {
    fn plan(
        spec: &Spec,
        split: Split,
        t: usize,
        targets: &[ClassPlan],
        sources: &crate::sources::DatasetSources,
    ) -> Option<Self> {
        let array = &spec.targets()[t];
        if array.interpolation != Interpolation::Nearest || spec.classes().len() > 8 {
            return None;
        }
        let mut classes = Vec::new();
        let mut unknown_mask = 0u8;
        let mut geometry: Option<([f64; 3], [f64; 3], [u64; 3])> = None;
        let mut first_level = None;
        for (c, (plan, source)) in targets.iter().zip(&sources.classes).enumerate() {
            let (ClassPlan::Annotated(lp), ClassSource::Annotated(group)) = (plan, source) else {
                unknown_mask |= 1 << c;
                continue;
            };
            let level = &group.levels[lp.level];
            let g = (level.scale_nm, level.translation_nm, level.shape_vox);
            if geometry.is_some_and(|first| first != g) || matches!(level.dtype, SourceDtype::F32 | SourceDtype::F64) {
                return None;
            }
            geometry = Some(g);
            first_level.get_or_insert_with(|| level.clone());
            let [ValueTransform::Binarize { threshold }] = spec.augment().targets_for(split, &spec.classes()[c]) else {
                return None;
            };
            classes.push((c, lp.level, *threshold));
        }
        Some(PackedTarget {
            classes,
            unknown_mask,
            level: first_level?,
        })
    }
}

impl Reader {
    /// A reader over a plan, sharing a chunk cache (or none).
    pub fn new(spec: Arc<Spec>, planned: Arc<Planned>, cache: Option<Arc<ChunkCache>>) -> Self {
        let packed = planned
            .plan
            .datasets
            .iter()
            .zip(&planned.sources)
            .map(|(d, sources)| {
                d.targets
                    .iter()
                    .enumerate()
                    .map(|(t, targets)| PackedTarget::plan(&spec, d.split, t, targets, sources))
                    .collect()
            })
            .collect();
        Reader {
            extent_nm: largest_extent_nm(&spec),
            spec,
            planned,
            cache,
            packed,
        }
    }

    /// Read classes one by one even where the packed one-pass gather applies (the packed path
    /// gives the same voxels; this exists to compare them).
    pub fn without_packed_labels(mut self) -> Self {
        for targets in &mut self.packed {
            targets.fill(None);
        }
        self
    }

    /// The spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The plan and its sources.
    pub fn planned(&self) -> &Planned {
        &self.planned
    }

    /// The shared chunk cache.
    pub fn cache(&self) -> Option<&Arc<ChunkCache>> {
        self.cache.as_ref()
    }

    /// Scratch sized for the largest unrotated window of the plan (rotation grows it once).
    pub fn scratch(&self) -> SampleScratch {
        let largest = self
            .spec
            .inputs()
            .iter()
            .chain(self.spec.targets())
            .map(ArraySpec::voxels)
            .max()
            .unwrap_or(0);
        SampleScratch {
            window: Vec::with_capacity(largest * 2),
            bytes: Vec::with_capacity(largest * 2),
            draw: SpatialDraw::identity(),
            lattice: Vec::new(),
            values: ValueScratch::with_capacity(largest),
            elastic: ElasticField::with_capacity(largest),
        }
    }

    /// The spatial transform [`Reader::read`] applies to `request`: drawn from the request's key
    /// (stream [`STREAM_SPATIAL`]) when it asks for spatial augmentation and the spec has some,
    /// else the identity.
    pub fn spatial_draw(&self, request: &SampleRequest) -> SpatialDraw {
        let spatial = &self.spec.augment().spatial;
        if request.spatial && !spatial.is_identity() {
            crate::augment::spatial::draw_spatial(spatial, &mut Rng::new(request.key, STREAM_SPATIAL), self.extent_nm)
        } else {
            SpatialDraw::identity()
        }
    }

    /// Read one sample into `dest` with a given spatial transform (`request.spatial` is not
    /// looked at): with [`Reader::spatial_draw`]'s transform it reads what [`Reader::read`]
    /// reads; value transforms follow `request.values` and `request.key` as there.
    pub fn read_transformed(
        &self,
        scratch: &mut SampleScratch,
        request: &SampleRequest,
        draw: &SpatialDraw,
        dest: &mut impl SampleDest,
    ) -> Result<ReadInfo, SampleReadError> {
        self.read_with(scratch, request, dest, draw)
    }

    /// Read one sample into `dest`.
    pub fn read(
        &self,
        scratch: &mut SampleScratch,
        request: &SampleRequest,
        dest: &mut impl SampleDest,
    ) -> Result<ReadInfo, SampleReadError> {
        let spec = &*self.spec;
        // The draw lives in the scratch between samples (its elastic lattice keeps its memory).
        let mut draw = std::mem::take(&mut scratch.draw);
        if request.spatial && !spec.augment().spatial.is_identity() {
            let mut rng = Rng::new(request.key, STREAM_SPATIAL);
            draw_spatial_into(
                &spec.augment().spatial,
                &mut rng,
                self.extent_nm,
                &mut draw,
                &mut scratch.lattice,
            );
        } else {
            draw.reset(&mut scratch.lattice);
        }
        let result = self.read_with(scratch, request, dest, &draw);
        scratch.draw = draw;
        result
    }

    /// [`Reader::read`] with the sample's spatial transform drawn.
    fn read_with(
        &self,
        scratch: &mut SampleScratch,
        request: &SampleRequest,
        dest: &mut impl SampleDest,
        draw: &SpatialDraw,
    ) -> Result<ReadInfo, SampleReadError> {
        let spec = &*self.spec;
        let plan = &self.planned.plan.datasets[request.dataset];
        let sources = &self.planned.sources[request.dataset];
        let mut info = ReadInfo {
            strided: 0,
            gathered: 0,
        };
        let fail = |array: &ArraySpec, class: Option<&str>, message: String| SampleReadError {
            dataset: plan.raw.clone(),
            array: array.name.clone(),
            class: class.map(|c| format!(", class `{c}`")).unwrap_or_default(),
            centre_nm: request.centre_nm,
            message,
        };

        for (i, (array, lp)) in spec.inputs().iter().zip(&plan.inputs).enumerate() {
            let level = &sources.raw.levels[lp.level];
            let out = dest.array(i);
            let transforms: &[ValueTransform] = if request.values {
                spec.augment().inputs_for(plan.split)
            } else {
                &[]
            };
            let fused = self
                .read_channel(
                    scratch,
                    level,
                    array,
                    array.interpolation,
                    draw,
                    request,
                    spec.sampling().pad_value_inputs,
                    transforms.first(),
                    out,
                    &mut info,
                )
                .map_err(|m| fail(array, None, m))?;
            let transforms = &transforms[usize::from(fused)..];
            if !transforms.is_empty() {
                let mut rng = Rng::new(request.key, STREAM_VALUE + i as u64);
                apply_value_transforms(transforms, out, array.shape_vox, &mut rng, &mut scratch.values)
                    .map_err(|e| fail(array, None, e.to_string()))?;
            }
        }

        let n_inputs = spec.inputs().len();
        for (t, (array, classes)) in spec.targets().iter().zip(&plan.targets).enumerate() {
            let out = dest.array(n_inputs + t);
            let voxels = array.voxels();
            // The packed gather binarizes, so it stands in for reads with value transforms only.
            let packed = match &self.packed[request.dataset][t] {
                Some(p) if request.values && !is_strided(&p.level, array, draw) => Some(p),
                _ => None,
            };
            if let Some(p) = packed {
                self.read_packed(scratch, p, sources, array, draw, request, out)
                    .map_err(|m| fail(array, None, m))?;
                info.gathered += 1;
            }
            let per_class = if packed.is_some() { &[][..] } else { classes.as_slice() };
            for (c, (class_plan, source)) in per_class.iter().zip(&sources.classes).enumerate() {
                let channel = &mut out[c * voxels..(c + 1) * voxels];
                let class = &spec.classes()[c];
                match (class_plan, source) {
                    (ClassPlan::Annotated(lp), ClassSource::Annotated(group)) => {
                        let level = &group.levels[lp.level];
                        let transforms: &[ValueTransform] = if request.values {
                            spec.augment().targets_for(plan.split, class)
                        } else {
                            &[]
                        };
                        let fused = self
                            .read_channel(
                                scratch,
                                level,
                                array,
                                array.interpolation,
                                draw,
                                request,
                                spec.sampling().pad_value_targets,
                                transforms.first(),
                                channel,
                                &mut info,
                            )
                            .map_err(|m| fail(array, Some(class), m))?;
                        let transforms = &transforms[usize::from(fused)..];
                        if !transforms.is_empty() {
                            let stream = STREAM_VALUE + (n_inputs + t * spec.classes().len() + c) as u64;
                            let mut rng = Rng::new(request.key, stream);
                            apply_value_transforms(transforms, channel, array.shape_vox, &mut rng, &mut scratch.values)
                                .map_err(|e| fail(array, Some(class), e.to_string()))?;
                        }
                    }
                    _ => channel.fill(f32::NAN),
                }
            }
            // True negatives: after every annotated channel is final.
            for (c, class_plan) in classes.iter().enumerate() {
                if let ClassPlan::Inferred(related) = class_plan {
                    infer_negatives(out, voxels, c, related);
                }
            }
        }
        Ok(info)
    }

    /// Read every class of a target array in one packed nearest-neighbour gather.
    #[allow(clippy::too_many_arguments)]
    fn read_packed(
        &self,
        scratch: &mut SampleScratch,
        packed: &PackedTarget,
        sources: &crate::sources::DatasetSources,
        array: &ArraySpec,
        draw: &SpatialDraw,
        request: &SampleRequest,
        out: &mut [f32],
    ) -> Result<(), String> {
        let level = &packed.level;
        let fill = self.spec.sampling().pad_value_targets;
        let grid = SampleGrid::new(
            request.centre_nm,
            array.shape_vox,
            array.voxel_size_nm,
            &draw.matrix,
            level.translation_nm,
            level.scale_nm,
        );
        let elastic = match &draw.elastic {
            Some(e) => {
                scratch.elastic.evaluate(e, array.shape_vox, array.voxel_size_nm);
                Some(&scratch.elastic)
            }
            None => None,
        };
        let elastic_max = elastic.map_or([0.0; 3], ElasticField::max_abs_nm);
        let (start, shape) = grid.source_window(Interpolation::Nearest, elastic_max);
        let (lo, size) = clip(start, shape, level.shape_vox);
        let voxels: usize = size.iter().product();
        if voxels == 0 {
            let classes = self.spec.classes().len();
            let channel = array.voxels();
            for c in 0..classes {
                let value = if packed.unknown_mask & (1 << c) != 0 {
                    f32::NAN
                } else {
                    fill
                };
                out[c * channel..(c + 1) * channel].fill(value);
            }
            return Ok(());
        }
        scratch.bytes.clear();
        scratch.bytes.resize(voxels, 0);
        for &(c, level_index, threshold) in &packed.classes {
            let ClassSource::Annotated(group) = &sources.classes[c] else {
                continue;
            };
            let class_level = &group.levels[level_index];
            read_window_pack(
                class_level,
                self.cache.as_deref(),
                lo,
                size,
                &mut scratch.bytes,
                threshold,
                1u8 << c,
            )
            .map_err(|e| format!("class `{}`: {e}", self.spec.classes()[c]))?;
        }
        gather_labels_packed(
            &scratch.bytes,
            lo,
            size,
            level.shape_vox,
            &grid,
            elastic,
            self.spec.classes().len(),
            packed.unknown_mask,
            fill,
            out,
        )
        .map_err(|e| e.to_string())
    }

    /// Read one channel of one array from one level.
    #[allow(clippy::too_many_arguments)]
    fn read_channel(
        &self,
        scratch: &mut SampleScratch,
        level: &Level,
        array: &ArraySpec,
        interpolation: Interpolation,
        draw: &SpatialDraw,
        request: &SampleRequest,
        fill: f32,
        first_transform: Option<&ValueTransform>,
        out: &mut [f32],
        info: &mut ReadInfo,
    ) -> Result<bool, String> {
        read_crop(
            self.cache.as_deref(),
            scratch,
            level,
            array,
            interpolation,
            draw,
            request.centre_nm,
            fill,
            first_transform,
            out,
            info,
        )
    }
}

/// Read one crop of `array`'s shape and voxel size centred at `centre_nm` (nm, z y x) from
/// `level`, without augmentation: whole voxels copied when the voxel sizes match, else
/// resampled (`array.interpolation`); `fill` outside the level. `out` holds `array.voxels()`
/// values, C order. For single arrays read outside a spec's plan (cellmap-data's `CellMapImage`).
///
/// # Errors
/// A message naming the failing chunk, or the length of `out` when it does not fit.
pub fn read_level_crop(
    level: &Level,
    cache: Option<&ChunkCache>,
    array: &ArraySpec,
    centre_nm: [f64; 3],
    fill: f32,
    out: &mut [f32],
) -> Result<(), String> {
    if out.len() != array.voxels() {
        return Err(format!(
            "a crop of {:?} voxels needs {} values, got {}",
            array.shape_vox,
            array.voxels(),
            out.len()
        ));
    }
    let mut scratch = SampleScratch::default();
    let mut info = ReadInfo {
        strided: 0,
        gathered: 0,
    };
    let draw = SpatialDraw::identity();
    read_crop(
        cache,
        &mut scratch,
        level,
        array,
        array.interpolation,
        &draw,
        centre_nm,
        fill,
        None,
        out,
        &mut info,
    )
    .map(|_| ())
}

/// Read a crop of `array`'s shape and voxel size centred at `centre_nm` from one level, transformed
/// by `draw`: a strided copy when voxel sizes match and the transform is axis-aligned (applying
/// `first_transform` itself when it is a binarize, normalize or nan_to_num: then it returns true), else a
/// gather (resampling) from a window read into `scratch`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_crop(
    cache: Option<&ChunkCache>,
    scratch: &mut SampleScratch,
    level: &Level,
    array: &ArraySpec,
    interpolation: Interpolation,
    draw: &SpatialDraw,
    centre_nm: [f64; 3],
    fill: f32,
    first_transform: Option<&ValueTransform>,
    out: &mut [f32],
    info: &mut ReadInfo,
) -> Result<bool, String> {
    let mut grid = SampleGrid::new(
        centre_nm,
        array.shape_vox,
        array.voxel_size_nm,
        &draw.matrix,
        level.translation_nm,
        level.scale_nm,
    );
    if is_strided(level, array, draw) {
        // Whole voxels: snap the crop to the level's grid (the centre may sit between voxels).
        for o in &mut grid.origin {
            *o = (*o + 0.5).floor();
        }
        if let Some(map) = grid.as_strided() {
            let (start, shape, offset, strides) = (map.src_start, map.src_shape, map.dest_offset, map.dest_strides);
            // A leading pointwise transform is applied by the copy itself (bit-identical to
            // `apply_value_transforms`, one pass fewer over the output).
            let fused = match first_transform {
                Some(&ValueTransform::Binarize { threshold }) => {
                    read_window_binarize(level, cache, start, shape, fill, out, offset, strides, threshold)
                        .map_err(|e| e.to_string())?;
                    true
                }
                Some(&ValueTransform::NanToNum { nan, posinf, neginf }) => {
                    let map = nan_to_num_map(nan, posinf, neginf);
                    read_window_map(level, cache, start, shape, fill, out, offset, strides, map)
                        .map_err(|e| e.to_string())?;
                    true
                }
                Some(&ValueTransform::Normalize { shift, scale }) => {
                    let (shift, scale) = (shift as f32, scale as f32);
                    let normalize = move |x: f32| (x - shift) / scale;
                    read_window_map(level, cache, start, shape, fill, out, offset, strides, normalize)
                        .map_err(|e| e.to_string())?;
                    true
                }
                _ => {
                    read_window(level, cache, start, shape, fill, out, offset, strides).map_err(|e| e.to_string())?;
                    false
                }
            };
            info.strided += 1;
            return Ok(fused);
        }
    }
    let elastic = match &draw.elastic {
        Some(e) => {
            scratch.elastic.evaluate(e, array.shape_vox, array.voxel_size_nm);
            Some(&scratch.elastic)
        }
        None => None,
    };
    let elastic_max = elastic.map_or([0.0; 3], ElasticField::max_abs_nm);
    let (start, shape) = grid.source_window(interpolation, elastic_max);
    let (lo, size) = clip(start, shape, level.shape_vox);
    let voxels: usize = size.iter().product();
    if voxels == 0 {
        out.fill(fill);
        info.gathered += 1;
        return Ok(false);
    }
    // A uint8 level is gathered from a uint8 window: a quarter of the bytes to read and to keep
    // in the caches while the rotated rows walk through it.
    if level.dtype == SourceDtype::U8 {
        gather_window(
            &mut scratch.bytes,
            0,
            level,
            cache,
            lo,
            size,
            &grid,
            elastic,
            interpolation,
            fill,
            out,
        )?;
    } else {
        gather_window(
            &mut scratch.window,
            fill,
            level,
            cache,
            lo,
            size,
            &grid,
            elastic,
            interpolation,
            fill,
            out,
        )?;
    }
    info.gathered += 1;
    Ok(false)
}

/// Read the source window `[lo, lo + size)` into `buf` (grown as needed; `zero` pads it, and
/// fills voxels outside the level) and gather `out` from it.
#[allow(clippy::too_many_arguments)]
fn gather_window<T: crate::window::WindowElem + Into<f32> + Default>(
    buf: &mut Vec<T>,
    zero: T,
    level: &Level,
    cache: Option<&ChunkCache>,
    lo: [i64; 3],
    size: [usize; 3],
    grid: &SampleGrid,
    elastic: Option<&ElasticField>,
    interpolation: Interpolation,
    fill: f32,
    out: &mut [f32],
) -> Result<(), String> {
    let voxels: usize = size.iter().product();
    if buf.len() < voxels {
        buf.resize(voxels, zero);
    }
    let window = &mut buf[..voxels];
    read_window_scratch(level, cache, lo, size, zero, window).map_err(|e| e.to_string())?;
    gather(
        window,
        lo,
        size,
        level.shape_vox,
        grid,
        elastic,
        interpolation,
        fill,
        out,
    )
    .map_err(|e| e.to_string())
}

/// True when an array is read from `level` by the strided copy (no interpolation).
fn is_strided(level: &Level, array: &ArraySpec, draw: &SpatialDraw) -> bool {
    is_strided_at(level.scale_nm, array, draw)
}

fn is_strided_at(scale_nm: [f64; 3], array: &ArraySpec, draw: &SpatialDraw) -> bool {
    draw.is_axis_aligned()
        && (0..3).all(|a| (scale_nm[a] - array.voxel_size_nm[a]).abs() <= 1e-6 * array.voxel_size_nm[a])
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
    let mut grid = SampleGrid::new(
        centre_nm,
        array.shape_vox,
        array.voxel_size_nm,
        &draw.matrix,
        translation_nm,
        scale_nm,
    );
    if is_strided_at(scale_nm, array, draw) {
        // As `read_crop` snaps it.
        for o in &mut grid.origin {
            *o = (*o + 0.5).floor();
        }
        if let Some(map) = grid.as_strided() {
            return (map.src_start, map.src_shape);
        }
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
fn clip(start: [i64; 3], shape: [usize; 3], level_shape: [u64; 3]) -> ([i64; 3], [usize; 3]) {
    let mut lo = [0i64; 3];
    let mut size = [0usize; 3];
    for a in 0..3 {
        let hi = (start[a] + shape[a] as i64).min(level_shape[a] as i64);
        lo[a] = start[a].max(0);
        size[a] = (hi - lo[a]).max(0) as usize;
    }
    (lo, size)
}

/// Channel `c` becomes 0 where any related channel is present (> 0), NaN elsewhere.
fn infer_negatives(out: &mut [f32], voxels: usize, c: usize, related: &[usize]) {
    let (before, rest) = out.split_at_mut(c * voxels);
    let (channel, after) = rest.split_at_mut(voxels);
    channel.fill(f32::NAN);
    for &r in related {
        let other = if r < c {
            &before[r * voxels..(r + 1) * voxels]
        } else {
            &after[(r - c - 1) * voxels..(r - c) * voxels]
        };
        for (v, o) in channel.iter_mut().zip(other) {
            if *o > 0.0 {
                *v = 0.0;
            }
        }
    }
}

/// The largest physical extent of any array of the spec, per axis (for the elastic lattice).
pub(crate) fn largest_extent_nm(spec: &Spec) -> [f64; 3] {
    let mut e = [0.0f64; 3];
    for a in spec.inputs().iter().chain(spec.targets()) {
        for (ax, v) in e.iter_mut().enumerate() {
            *v = v.max(a.shape_vox[ax] as f64 * a.voxel_size_nm[ax]);
        }
    }
    e
}
