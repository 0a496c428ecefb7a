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

use cellmap_schema::{ArraySpec, Axis, Spec, ValueTransform};

mod bits;
mod chunks;
mod crop;
mod error;
pub mod intensity;
mod packed;

pub(crate) use crop::{CropContext, CropElem, read_crop};
pub use crop::{read_level_crop, transformed_window_vox};
pub use error::{CropError, SampleAt, SampleReadError};

use crate::augment::elastic::ElasticField;
use crate::augment::spatial::{SpatialDraw, draw_spatial_into};
use crate::augment::value::{Pointwise, ValueScratch, apply_value_transforms};
use crate::dtype::{ArrayViewMut, BatchElem, convert_from_f32, f32_slice_mut};
use crate::plan::{ClassPlan, DatasetPlan, Planned};
use crate::rng::{Rng, STREAM_SPATIAL, STREAM_VALUE, SampleKey};
use crate::slicing::{Frames, frame_axes, slice_axis_of};
use crate::sources::{ClassSource, DatasetSources};
use crate::store::{ChunkCache, Level};
use bits::BitTarget;
use crop::is_strided;
use packed::PackedTarget;

/// Where a sample is written: one `channels · z · y · x` slice per array (inputs, then targets),
/// of the array's dtype.
pub trait SampleDest {
    /// The slice of array `i`.
    fn array(&mut self, i: usize) -> ArrayViewMut<'_>;
}

impl SampleDest for crate::pipeline::SampleOut<'_> {
    fn array(&mut self, i: usize) -> ArrayViewMut<'_> {
        crate::pipeline::SampleOut::array(self, i)
    }
}

/// `float32` arrays (whatever the spec's dtypes).
impl SampleDest for Vec<Vec<f32>> {
    fn array(&mut self, i: usize) -> ArrayViewMut<'_> {
        ArrayViewMut::F32(&mut self[i])
    }
}

/// Calls `$f` (a generic method of the reader) with the typed slice of a view.
macro_rules! typed {
    ($view:expr, |$out:ident| $call:expr) => {
        match $view {
            ArrayViewMut::F32($out) => $call,
            ArrayViewMut::F16($out) => $call,
            ArrayViewMut::Bf16($out) => $call,
            ArrayViewMut::U8($out) => $call,
        }
    };
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
    /// Apply the value transforms of the dataset's split ([`cellmap_schema::Augment::inputs_of`], with
    /// the dataset's own `normalize` and `scale: dtype` resolved, see [`intensity`], and
    /// [`cellmap_schema::Augment::targets_for`]: a validation dataset gets `augment.validate`, by default
    /// the deterministic training transforms) or none (the stored values).
    pub values: bool,
}

/// Per-worker scratch memory; grows only while warming up.
#[derive(Debug, Default)]
pub struct SampleScratch {
    window: Vec<f32>,
    /// Byte scratch: packed class bits, or a uint8 source window.
    bytes: Vec<u8>,
    /// The output elements outside the level, marked (non-zero) in a mask over the output (a
    /// bit-pack read, [`bits`]).
    outside_mask: Vec<u8>,
    /// The strided maps of a bit-pack read, one per pack.
    maps: Vec<crate::augment::grid::StridedMap>,
    /// The last sample's spatial transform (its elastic lattice memory is reused).
    draw: SpatialDraw,
    /// The elastic lattice memory while a sample draws no deformation.
    lattice: Vec<[f32; 3]>,
    values: ValueScratch,
    elastic: ElasticField,
    /// An array of another dtype assembled in `f32` (interpolated reads, value transforms).
    staged: Vec<f32>,
}

/// What a reader reports about one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadInfo {
    /// Arrays (and classes) read with the strided copy path.
    pub strided: u32,
    /// Arrays (and classes) read with interpolation.
    pub gathered: u32,
    /// Classes read from the training cache's bit packs, one window read per pack (a strided
    /// copy or a packed gather; counted in `strided` or `gathered` too).
    pub from_packs: u32,
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
    /// Per dataset, per target array: the classes read from the training cache's bit packs.
    bits: Vec<Vec<Option<BitTarget>>>,
    /// Per dataset, per input array: its value transforms (its own `normalize`, `scale: dtype` resolved).
    inputs: intensity::InputTransforms,
    /// Per dataset, per target array, per class: its value transforms where `scale: dtype` needed
    /// resolving against the class's label dtype (else the spec's list).
    targets: intensity::TargetTransforms,
    /// The largest extent of the spec's arrays (nm), which an elastic lattice covers.
    extent_nm: [f64; 3],
    /// The arrays in the frame of each slice axis (2D specs; z only for 3D ones).
    frames: Frames,
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
        let frames = Frames::new(&spec);
        let targets = intensity::TargetTransforms::of_plan(&spec, &planned);
        let bits = planned
            .plan
            .datasets
            .iter()
            .zip(&planned.sources)
            .enumerate()
            .map(|(d, (plan, sources))| {
                (0..plan.targets.len())
                    .map(|t| {
                        BitTarget::plan(&plan.targets[t], sources, |c| {
                            targets
                                .get(d, t, c)
                                .unwrap_or_else(|| spec.augment().targets_for(plan.split, &spec.classes()[c]))
                        })
                    })
                    .collect()
            })
            .collect();
        Reader {
            inputs: intensity::InputTransforms::of_plan(&spec, &planned),
            targets,
            bits,
            extent_nm: frames.largest_extent_nm(),
            frames,
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
            staged: Vec::new(),
            outside_mask: Vec::new(),
            maps: Vec::new(),
        }
    }

    /// The world axis `request` slices ([`crate::slicing::slice_axis_of`]): z for 3D specs.
    pub fn slice_axis(&self, request: &SampleRequest) -> Axis {
        let split = self.planned.plan.datasets[request.dataset].split;
        slice_axis_of(&self.spec, split, request.key)
    }

    /// The spatial transform [`Reader::read`] applies to `request`, in the frame of its slice
    /// ([`crate::slicing`]; the world frame for 3D specs and z-slices): drawn from the request's
    /// key (stream [`STREAM_SPATIAL`]) when it asks for spatial augmentation and the spec has some,
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
        let axis = self.slice_axis(request);
        if axis == Axis::Z {
            return self.read_with(scratch, request, dest, (draw, axis));
        }
        let mut world = draw.clone();
        world.slice(frame_axes(axis));
        self.read_with(scratch, request, dest, (&world, axis))
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
        let axis = self.slice_axis(request);
        draw.slice(frame_axes(axis));
        let result = self.read_with(scratch, request, dest, (&draw, axis));
        scratch.draw = draw;
        result
    }

    /// [`Reader::read`] with the sample's spatial transform drawn (in world axes) and its slice axis.
    fn read_with(
        &self,
        scratch: &mut SampleScratch,
        request: &SampleRequest,
        dest: &mut impl SampleDest,
        (draw, axis): (&SpatialDraw, Axis),
    ) -> Result<ReadInfo, SampleReadError> {
        let sample = Sample {
            request,
            draw,
            axis,
            plan: &self.planned.plan.datasets[request.dataset],
            sources: &self.planned.sources[request.dataset],
        };
        let mut info = ReadInfo {
            strided: 0,
            gathered: 0,
            from_packs: 0,
        };
        for i in 0..self.spec.inputs().len() {
            typed!(dest.array(i), |out| self
                .read_input(scratch, &sample, i, out, &mut info))?;
        }
        let n_inputs = self.spec.inputs().len();
        for t in 0..self.spec.targets().len() {
            typed!(dest.array(n_inputs + t), |out| self
                .read_target(scratch, &sample, t, out, &mut info))?;
        }
        Ok(info)
    }

    /// Input array `i` of a sample.
    fn read_input<O: CropElem>(
        &self,
        scratch: &mut SampleScratch,
        sample: &Sample<'_>,
        i: usize,
        out: &mut [O],
        info: &mut ReadInfo,
    ) -> Result<(), SampleReadError> {
        let spec = &*self.spec;
        let (array, lp) = (self.frames.input(sample.axis, i), &sample.plan.inputs[i]);
        let transforms: &[ValueTransform] = if sample.request.values {
            self.inputs.get(sample.request.dataset, i)
        } else {
            &[]
        };
        if needs_staging::<O>(transforms) {
            return staged(scratch, out, |scratch, f32_out| {
                self.read_input(scratch, sample, i, f32_out, info)
            });
        }
        let ctx = self.crop_context(
            sample,
            &sample.sources.raw.levels[lp.level],
            array,
            spec.sampling().pad_value_inputs,
        );
        let fused =
            read_crop(&ctx, transforms.first(), scratch, out, info).map_err(|source| SampleReadError::Crop {
                at: sample.at(array, None),
                source,
            })?;
        let transforms = &transforms[usize::from(fused)..];
        if !transforms.is_empty() {
            let out = f32_only(out);
            let mut rng = Rng::new(sample.request.key, STREAM_VALUE + i as u64);
            apply_value_transforms(transforms, out, array.shape_vox, &mut rng, &mut scratch.values).map_err(
                |source| SampleReadError::Value {
                    at: sample.at(array, None),
                    source,
                },
            )?;
        }
        Ok(())
    }

    /// Target array `t` of a sample: every class channel, packed in one gather where that
    /// applies, then the inferred true negatives.
    fn read_target<O: CropElem>(
        &self,
        scratch: &mut SampleScratch,
        sample: &Sample<'_>,
        t: usize,
        out: &mut [O],
        info: &mut ReadInfo,
    ) -> Result<(), SampleReadError> {
        let (array, classes) = (self.frames.target(sample.axis, t), &sample.plan.targets[t]);
        let voxels = array.voxels();
        // The packed gather binarizes, so it stands in for reads with value transforms only.
        let packed = match &self.packed[sample.request.dataset][t] {
            Some(p) if sample.request.values && !is_strided(&p.level, array, sample.draw) => Some(p),
            _ => None,
        };
        if let Some(p) = packed {
            self.read_packed(scratch, sample, p, array, out)?;
            info.gathered += 1;
            info.from_packs += p.classes_from_pack();
        }
        // Classes of the training cache's bit packs, one read per pack, on a strided copy.
        let bits = match &self.bits[sample.request.dataset][t] {
            Some(b) if sample.request.values && packed.is_none() => Some(b),
            _ => None,
        };
        let bits = match bits {
            Some(b) if self.read_bits(scratch, sample, (b, array), out, info)? => Some(b),
            _ => None,
        };
        let per_class = if packed.is_some() { &[][..] } else { classes.as_slice() };
        for (c, (class_plan, source)) in per_class.iter().zip(&sample.sources.classes).enumerate() {
            if bits.is_some_and(|b| b.covers(c)) {
                continue;
            }
            let channel = &mut out[c * voxels..(c + 1) * voxels];
            match (class_plan, source) {
                (ClassPlan::Annotated(lp), ClassSource::Annotated(group)) => {
                    let class = ClassRead {
                        t,
                        c,
                        level: &group.levels[lp.level],
                    };
                    self.read_class(scratch, sample, &class, channel, info)?;
                }
                _ => channel.fill(O::from_f32(f32::NAN)),
            }
        }
        // True negatives: after every annotated channel is final.
        for (c, class_plan) in classes.iter().enumerate() {
            if let ClassPlan::Inferred(related) = class_plan {
                infer_negatives(out, voxels, c, related);
            }
        }
        Ok(())
    }

    /// One annotated class channel of a target array.
    fn read_class<O: CropElem>(
        &self,
        scratch: &mut SampleScratch,
        sample: &Sample<'_>,
        class: &ClassRead<'_>,
        channel: &mut [O],
        info: &mut ReadInfo,
    ) -> Result<(), SampleReadError> {
        let spec = &*self.spec;
        let (t, c) = (class.t, class.c);
        let array = self.frames.target(sample.axis, t);
        let name = &spec.classes()[c];
        let transforms: &[ValueTransform] = if sample.request.values {
            self.targets
                .get(sample.request.dataset, t, c)
                .unwrap_or_else(|| spec.augment().targets_for(sample.plan.split, name))
        } else {
            &[]
        };
        if needs_staging::<O>(transforms) {
            return staged(scratch, channel, |scratch, f32_out| {
                self.read_class(scratch, sample, class, f32_out, info)
            });
        }
        let ctx = self.crop_context(sample, class.level, array, spec.sampling().pad_value_targets);
        let fused =
            read_crop(&ctx, transforms.first(), scratch, channel, info).map_err(|source| SampleReadError::Crop {
                at: sample.at(array, Some(name)),
                source,
            })?;
        let transforms = &transforms[usize::from(fused)..];
        if !transforms.is_empty() {
            let channel = f32_only(channel);
            let stream = STREAM_VALUE + (spec.inputs().len() + t * spec.classes().len() + c) as u64;
            let mut rng = Rng::new(sample.request.key, stream);
            apply_value_transforms(transforms, channel, array.shape_vox, &mut rng, &mut scratch.values).map_err(
                |source| SampleReadError::Value {
                    at: sample.at(array, Some(name)),
                    source,
                },
            )?;
        }
        Ok(())
    }

    /// The crop context of `array` read from `level` for a sample.
    fn crop_context<'a>(
        &'a self,
        sample: &Sample<'a>,
        level: &'a Level,
        array: &'a ArraySpec,
        fill: f32,
    ) -> CropContext<'a> {
        CropContext {
            cache: self.cache.as_deref(),
            level,
            array,
            draw: sample.draw,
            centre_nm: sample.request.centre_nm,
            fill,
        }
    }
}

/// One sample being read: the request, its transform, and the dataset's plan and sources.
struct Sample<'a> {
    request: &'a SampleRequest,
    /// The transform in world axes.
    draw: &'a SpatialDraw,
    /// The world axis the sample slices (z for 3D specs).
    axis: Axis,
    plan: &'a DatasetPlan,
    sources: &'a DatasetSources,
}

impl Sample<'_> {
    /// Where a read of `array` (and `class`) of this sample is.
    fn at(&self, array: &ArraySpec, class: Option<&str>) -> Box<SampleAt> {
        Box::new(SampleAt {
            dataset: self.plan.raw.clone(),
            array: array.name.clone(),
            class: class.map(str::to_string),
            centre_nm: self.request.centre_nm,
        })
    }
}

/// An annotated class channel to read: target array `t`, class `c`, from `level`.
struct ClassRead<'a> {
    t: usize,
    c: usize,
    level: &'a Level,
}

/// Channel `c` becomes 0 where any related channel is present (> 0), NaN (unknown) elsewhere.
fn infer_negatives<O: BatchElem>(out: &mut [O], voxels: usize, c: usize, related: &[usize]) {
    let (before, rest) = out.split_at_mut(c * voxels);
    let (channel, after) = rest.split_at_mut(voxels);
    let (zero, unknown) = (O::from_f32(0.0), O::from_f32(f32::NAN));
    channel.fill(unknown);
    for &r in related {
        let other = if r < c {
            &before[r * voxels..(r + 1) * voxels]
        } else {
            &after[(r - c - 1) * voxels..(r - c) * voxels]
        };
        for (v, o) in channel.iter_mut().zip(other) {
            // `uint8`'s unknown (255) is not a presence.
            if *o != unknown && o.to_f32() > 0.0 {
                *v = zero;
            }
        }
    }
}

/// Whether an array of element type `O` with value `transforms` is assembled in `f32` first:
/// never for `f32`; for the other types unless the transforms are at most one pointwise map,
/// which the read applies while converting.
fn needs_staging<O: BatchElem>(transforms: &[ValueTransform]) -> bool {
    O::DTYPE != cellmap_schema::OutputDtype::Float32
        && !(transforms.is_empty() || (transforms.len() == 1 && Pointwise::of(&transforms[0]).is_some()))
}

/// Runs `read` into the scratch's `f32` staging memory (sized like `out`), then converts into `out`.
fn staged<O: BatchElem, E>(
    scratch: &mut SampleScratch,
    out: &mut [O],
    read: impl FnOnce(&mut SampleScratch, &mut [f32]) -> Result<(), E>,
) -> Result<(), E> {
    let mut staged = std::mem::take(&mut scratch.staged);
    staged.clear();
    staged.resize(out.len(), 0.0);
    let result = read(scratch, &mut staged);
    if result.is_ok() {
        convert_from_f32(&staged, out, |x| x);
    }
    // Kept for the next sample (the `f32` read inside does not stage).
    scratch.staged = staged;
    result
}

/// The `f32` slice of an array whose value transforms run in place: `needs_staging` sends every
/// other element type with such transforms through [`staged`], and the crop read applies the
/// single pointwise transform of the rest, so only `f32` arrives here.
fn f32_only<O: BatchElem>(out: &mut [O]) -> &mut [f32] {
    match f32_slice_mut(out) {
        Some(out) => out,
        None => unreachable!("value transforms on a `{}` array without f32 staging", O::DTYPE),
    }
}
