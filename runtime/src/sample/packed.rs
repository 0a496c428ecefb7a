//! The one-pass packed-labels read: every annotated class of a target array binarized into a bit
//! of one byte per voxel, then gathered in one pass.

use cellmap_schema::{ArraySpec, Interpolation, Spec, Split, ValueTransform};

use super::crop::{CropElem, clip};
use super::error::{CropError, SampleReadError};
use super::{Reader, Sample, SampleScratch};
use crate::augment::elastic::ElasticField;
use crate::augment::grid::SampleGrid;
use crate::kernels::{GatherSource, LabelParams, gather_labels_packed};
use crate::plan::ClassPlan;
use crate::read::{PackRequest, read_window_pack};
use crate::sources::{ClassSource, DatasetSources};
use crate::store::{Level, SourceDtype};

/// Every annotated class of a target array shares one level geometry, has integer labels and
/// is binarized (its only transform): the classes are packed as bits of one byte per voxel and
/// gathered in one pass whenever interpolation is needed (rotation, elastic, resampling).
#[derive(Debug, Clone)]
pub(super) struct PackedTarget {
    /// `(class index, level index, threshold)` per annotated class.
    classes: Vec<(usize, usize, f64)>,
    /// Bits of the classes that are not annotated (NaN channels before inference).
    unknown_mask: u8,
    /// The level of the first annotated class; every other one has its geometry.
    pub(super) level: Level,
}

impl PackedTarget {
    pub(super) fn plan(
        spec: &Spec,
        split: Split,
        t: usize,
        targets: &[ClassPlan],
        sources: &DatasetSources,
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
    /// Read every class of a target array in one packed nearest-neighbour gather.
    pub(super) fn read_packed<O: CropElem>(
        &self,
        scratch: &mut SampleScratch,
        sample: &Sample<'_>,
        packed: &PackedTarget,
        array: &ArraySpec,
        out: &mut [O],
    ) -> Result<(), SampleReadError> {
        let level = &packed.level;
        let fill = self.spec.sampling().pad_value_targets;
        let draw = sample.draw;
        let grid = SampleGrid::new(
            sample.request.centre_nm,
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
            let channel = array.voxels();
            for c in 0..self.spec.classes().len() {
                let value = if packed.unknown_mask & (1 << c) != 0 {
                    f32::NAN
                } else {
                    fill
                };
                out[c * channel..(c + 1) * channel].fill(O::from_f32(value));
            }
            return Ok(());
        }
        scratch.bytes.clear();
        scratch.bytes.resize(voxels, 0);
        for &(c, level_index, threshold) in &packed.classes {
            let ClassSource::Annotated(group) = &sample.sources.classes[c] else {
                continue;
            };
            let request = PackRequest {
                start_vox: lo,
                shape_vox: size,
                threshold,
                bit: 1u8 << c,
            };
            read_window_pack(
                &group.levels[level_index],
                self.cache.as_deref(),
                &request,
                &mut scratch.bytes,
            )
            .map_err(|e| SampleReadError::Crop {
                at: sample.at(array, Some(&self.spec.classes()[c])),
                source: e.into(),
            })?;
        }
        let source = GatherSource {
            src: &scratch.bytes,
            start: lo,
            shape: size,
            level_shape: level.shape_vox,
        };
        let params = LabelParams {
            grid: &grid,
            elastic,
            classes: self.spec.classes().len(),
            unknown_mask: packed.unknown_mask,
            fill,
        };
        gather_labels_packed(&source, &params, out).map_err(|e| SampleReadError::Crop {
            at: sample.at(array, None),
            source: CropError::Gather(e),
        })
    }
}
