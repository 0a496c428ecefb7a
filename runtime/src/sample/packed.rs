//! The one-pass packed-labels read: every annotated class of a target array binarized into a bit
//! of one byte per voxel, then gathered in one pass. When every class is a bit of one pack of the
//! training cache, the pack's window is read once and its bits moved to the classes' positions
//! through a table, instead of one read per class.

use std::sync::Arc;

use cellmap_schema::{ArraySpec, Interpolation, Spec, Split, ValueTransform};

use super::crop::{CropElem, clip};
use super::error::{CropError, SampleReadError};
use super::{Reader, Sample, SampleScratch};
use crate::augment::elastic::ElasticField;
use crate::augment::grid::SampleGrid;
use crate::kernels::{GatherSource, LabelParams, gather_labels_packed};
use crate::plan::ClassPlan;
use crate::read::{PackRequest, WindowRequest, read_window_pack, read_window_scratch};
use crate::sources::{ClassSource, DatasetSources};
use crate::store::multiscale::CacheRole;
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
    /// Every annotated class is a bit of this one `uint8` pack of the training cache.
    from_pack: Option<FromPack>,
}

/// A training-cache pack that holds every annotated class of a target array.
#[derive(Debug, Clone)]
struct FromPack {
    pack: Arc<Level>,
    /// Pack byte → the byte of class bits (bit `c` for class `c`).
    table: Box<[u8; 256]>,
}

impl FromPack {
    /// The pack of `levels` (`(class, level)` per annotated class, each binarized at its
    /// threshold) when they are all bits of one `uint8` pack and every threshold lies in
    /// `[0, 1)` (where binarizing `label ≠ 0` gives the bit).
    fn of(levels: &[(usize, &Level, f64)]) -> Option<FromPack> {
        let mut pack: Option<&Arc<Level>> = None;
        let mut table = Box::new([0u8; 256]);
        for &(c, level, threshold) in levels {
            let Some(CacheRole::Bit { pack: p, bit, .. }) = level.cached.as_deref() else {
                return None;
            };
            if pack.is_some_and(|q| q.id != p.id)
                || p.dtype != SourceDtype::U8
                || *bit >= 8
                || c >= 8
                || !(0.0..1.0).contains(&threshold)
            {
                return None;
            }
            pack = Some(p);
            for (b, t) in table.iter_mut().enumerate() {
                *t |= u8::from((b >> bit) & 1 == 1) << c;
            }
        }
        Some(FromPack {
            pack: Arc::clone(pack?),
            table,
        })
    }
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
        let mut levels = Vec::new();
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
            levels.push((c, level, *threshold));
        }
        Some(PackedTarget {
            from_pack: FromPack::of(&levels),
            classes,
            unknown_mask,
            level: first_level?,
        })
    }
}

impl PackedTarget {
    /// The classes read from one training-cache pack (0 when they are read class by class).
    pub(super) fn classes_from_pack(&self) -> u32 {
        if self.from_pack.is_some() {
            self.classes.len() as u32
        } else {
            0
        }
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
        self.pack_window(&mut scratch.bytes, sample, (packed, array), (lo, size))?;
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

    /// Every annotated class of `packed` binarized into its bit of `bytes` (one per voxel) over the
    /// window `(lo, size)` (inside the level): one read of the training-cache pack holding them
    /// all, else one read per class.
    fn pack_window(
        &self,
        bytes: &mut Vec<u8>,
        sample: &Sample<'_>,
        (packed, array): (&PackedTarget, &ArraySpec),
        (lo, size): ([i64; 3], [usize; 3]),
    ) -> Result<(), SampleReadError> {
        bytes.clear();
        bytes.resize(size.iter().product(), 0);
        if let Some(from) = &packed.from_pack {
            // The clipped window lies inside the level: the fill is never written.
            let request = WindowRequest {
                start_vox: lo,
                fill: 0u8,
            };
            read_window_scratch(&from.pack, self.cache.as_deref(), &request, size, bytes).map_err(|e| {
                SampleReadError::Crop {
                    at: sample.at(array, Some(&self.spec.classes()[packed.classes[0].0])),
                    source: e.into(),
                }
            })?;
            for b in bytes.iter_mut() {
                *b = from.table[usize::from(*b)];
            }
        }
        let per_class = if packed.from_pack.is_some() {
            &[][..]
        } else {
            &packed.classes[..]
        };
        for &(c, level_index, threshold) in per_class {
            let ClassSource::Annotated(group) = &sample.sources.classes[c] else {
                continue;
            };
            let request = PackRequest {
                start_vox: lo,
                shape_vox: size,
                threshold,
                bit: 1u8 << c,
            };
            read_window_pack(&group.levels[level_index], self.cache.as_deref(), &request, bytes).map_err(|e| {
                SampleReadError::Crop {
                    at: sample.at(array, Some(&self.spec.classes()[c])),
                    source: e.into(),
                }
            })?;
        }
        Ok(())
    }
}
