//! Classes read from the training cache's bit packs, one window read per pack.
//!
//! The training cache packs a crop's binary classes as the bits of one `uint8` array
//! ([`crate::training_cache`]). Read class by class, every class decodes the packed chunks, takes
//! its bit into a chunk of its own and copies that: eight decodes, extractions and allocations
//! for eight classes. Here the packed window is read once into byte scratch, through the same
//! strided map as the class channels (so mirrors and transposes stay one pass), and each class
//! channel is written from its bit of the scratch: a `binarize` at a threshold in `[0, 1)` of a
//! class whose label is `≠ 0` exactly where its bit is set. Voxels outside the crop get the
//! binarized pad value, as a per-class read gives them.

use std::sync::Arc;

use cellmap_schema::{ArraySpec, ValueTransform};

use super::crop::{CropElem, crop_grid};
use super::error::SampleReadError;
use super::{ReadInfo, Reader, Sample, SampleScratch};
use crate::augment::grid::StridedMap;
use crate::kernels::StridedDest;
use crate::kernels::stream::{store_stream, streams};
use crate::plan::ClassPlan;
use crate::read::{WindowRequest, read_window_strided_scratch};
use crate::sources::{ClassSource, DatasetSources};
use crate::store::multiscale::CacheRole;
use crate::store::{Level, SourceDtype};

/// The classes of one pack that a target array reads.
#[derive(Debug, Clone)]
struct BitGroup {
    /// The packed array (one byte per voxel).
    pack: Arc<Level>,
    /// `(class index, bit mask, binarize threshold)` per class read from it.
    members: Vec<(usize, u8, f64)>,
}

/// The classes of a target array that its dataset reads from bit packs: every annotated class
/// whose level is a bit of a `uint8` pack and whose only value transform is a `binarize` at a
/// threshold in `[0, 1)`, grouped by pack.
#[derive(Debug, Clone)]
pub(super) struct BitTarget {
    groups: Vec<BitGroup>,
    /// Per class of the spec: read here (else class by class).
    covered: Vec<bool>,
}

impl BitTarget {
    /// The bit-pack plan of target array `t` of a dataset, `transforms(c)` giving class `c`'s
    /// value transforms in the dataset's split; `None` when no class qualifies.
    pub(super) fn plan<'a>(
        targets: &[ClassPlan],
        sources: &DatasetSources,
        transforms: impl Fn(usize) -> &'a [ValueTransform],
    ) -> Option<Self> {
        let mut groups: Vec<BitGroup> = Vec::new();
        let mut covered = vec![false; targets.len()];
        for (c, (plan, source)) in targets.iter().zip(&sources.classes).enumerate() {
            let (ClassPlan::Annotated(lp), ClassSource::Annotated(group)) = (plan, source) else {
                continue;
            };
            let level = &group.levels[lp.level];
            let Some(CacheRole::Bit { pack, bit, .. }) = level.cached.as_deref() else {
                continue;
            };
            let &[ValueTransform::Binarize { threshold }] = transforms(c) else {
                continue;
            };
            let same_geometry = pack.scale_nm == level.scale_nm
                && pack.translation_nm == level.translation_nm
                && pack.shape_vox == level.shape_vox;
            if pack.dtype != SourceDtype::U8 || *bit >= 8 || !(0.0..1.0).contains(&threshold) || !same_geometry {
                continue;
            }
            let member = (c, 1u8 << bit, threshold);
            match groups.iter_mut().find(|g| g.pack.id == pack.id) {
                Some(g) => g.members.push(member),
                None => groups.push(BitGroup {
                    pack: Arc::clone(pack),
                    members: vec![member],
                }),
            }
            covered[c] = true;
        }
        (!groups.is_empty()).then_some(BitTarget { groups, covered })
    }

    /// Whether class `c` is read here.
    pub(super) fn covers(&self, c: usize) -> bool {
        self.covered.get(c).copied().unwrap_or(false)
    }
}

/// The strided map of `array` read from `level` for a sample: the grid every crop reader takes
/// ([`crop_grid`]); `None` when the read needs interpolation.
fn strided_map(level: &Level, array: &ArraySpec, sample: &Sample<'_>) -> Option<StridedMap> {
    let (_, map) = crop_grid(
        array,
        sample.draw,
        sample.request.centre_nm,
        level.translation_nm,
        level.scale_nm,
    );
    map
}

impl Reader {
    /// Every class channel of `bits` for one sample (see the module docs), when the sample is a
    /// strided copy from every pack: then true; else false, and nothing is written (the classes
    /// are gathered class by class).
    pub(super) fn read_bits<O: CropElem>(
        &self,
        scratch: &mut SampleScratch,
        sample: &Sample<'_>,
        (bits, array): (&BitTarget, &ArraySpec),
        out: &mut [O],
        info: &mut ReadInfo,
    ) -> Result<bool, SampleReadError> {
        scratch.maps.clear();
        for group in &bits.groups {
            match strided_map(&group.pack, array, sample) {
                Some(map) => scratch.maps.push(map),
                None => return Ok(false),
            }
        }
        let voxels = array.voxels();
        let pad = self.spec.sampling().pad_value_targets;
        let (zero, one) = (O::from_f32(0.0), O::from_f32(1.0));
        let mut marked: Option<(StridedMap, [u64; 3])> = None;
        for (g, group) in bits.groups.iter().enumerate() {
            let (level, map) = (&*group.pack, scratch.maps[g]);
            scratch.bytes.clear();
            scratch.bytes.resize(voxels, 0);
            let read = StridedDest::new(&mut scratch.bytes, map.dest_offset, map.dest_strides, map.src_shape)
                .map_err(Into::into)
                .and_then(|dest| {
                    let request = WindowRequest {
                        start_vox: map.src_start,
                        fill: 0u8,
                    };
                    read_window_strided_scratch(level, self.cache.as_deref(), &request, dest)
                })
                .map_err(|e| SampleReadError::Crop {
                    at: sample.at(array, Some(&self.spec.classes()[group.members[0].0])),
                    source: e.into(),
                })?;
            // Voxels outside the crop, marked in a byte mask the channel writes select by; built
            // once for the packs that share a map and a shape (those of one crop).
            let outside = if read.voxels_in_bounds < voxels as u64 {
                if marked != Some((map, level.shape_vox)) {
                    scratch.outside_mask.clear();
                    scratch.outside_mask.resize(voxels, 0);
                    mark_outside(&map, level.shape_vox, &mut scratch.outside_mask);
                    marked = Some((map, level.shape_vox));
                }
                Some(scratch.outside_mask.as_slice())
            } else {
                None
            };
            for &(c, mask, threshold) in &group.members {
                // The pad value binarized, as a per-class read binarizes it (NaN stays NaN).
                let fill = if pad.is_nan() {
                    O::from_f32(pad)
                } else if f64::from(pad) > threshold {
                    one
                } else {
                    zero
                };
                let channel = &mut out[c * voxels..(c + 1) * voxels];
                write_bits(&scratch.bytes, mask, outside.map(|o| (o, fill)), (zero, one), channel);
                info.strided += 1;
                info.from_packs += 1;
            }
        }
        Ok(true)
    }
}

/// Marks (1) in `mask` (zeroed, one byte per output element) the output elements of `map` whose
/// source voxel lies outside a level of `shape`: the box `[src_start, src_start + src_shape)`
/// less its part inside `[0, shape)`, row by row.
fn mark_outside(map: &StridedMap, shape: [u64; 3], mask: &mut [u8]) {
    let n = map.src_shape;
    // The in-bounds part of the box, relative to its start, per source axis.
    let inside: [(usize, usize); 3] = std::array::from_fn(|a| {
        let size = i64::try_from(shape[a]).unwrap_or(i64::MAX);
        let lo = (-map.src_start[a]).clamp(0, n[a] as i64) as usize;
        let hi = (size - map.src_start[a]).clamp(lo as i64, n[a] as i64) as usize;
        (lo, hi)
    });
    let s = map.dest_strides;
    let mut mark = |z: usize, y: usize, xs: std::ops::Range<usize>| {
        if xs.is_empty() {
            return;
        }
        let row = map.dest_offset as isize + z as isize * s[0] + y as isize * s[1];
        let at = |x: usize| (row + x as isize * s[2]) as usize;
        match s[2] {
            1 => mask[at(xs.start)..=at(xs.end - 1)].fill(1),
            -1 => mask[at(xs.end - 1)..=at(xs.start)].fill(1),
            _ => xs.for_each(|x| mask[at(x)] = 1),
        }
    };
    for z in 0..n[0] {
        let z_in = (inside[0].0..inside[0].1).contains(&z);
        for y in 0..n[1] {
            if z_in && (inside[1].0..inside[1].1).contains(&y) {
                mark(z, y, 0..inside[2].0);
                mark(z, y, inside[2].1..n[2]);
            } else {
                mark(z, y, 0..n[2]);
            }
        }
    }
}

/// Elements a streamed [`write_bits`] assembles at once (a few cache lines per pass).
const STAGE: usize = 512;

/// `dst[i] = one` where `src[i] & mask` is set, else `zero`; where `outside` marks `i` (non-zero),
/// its value instead. Large outputs with non-temporal stores (the channel goes to the consumer,
/// not back through the caches).
fn write_bits<O: CropElem>(src: &[u8], mask: u8, outside: Option<(&[u8], O)>, values: (O, O), dst: &mut [O]) {
    let select = |d: &mut [O], s: &[u8], at: usize| {
        let outside = outside.map(|(marks, fill)| (&marks[at..at + s.len()], fill));
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::Features::get().avx2 {
            // SAFETY: the CPU supports AVX2 (`Features::get`).
            unsafe { select_bits_avx2(d, s, mask, outside, values) };
            return;
        }
        select_bits(d, s, mask, outside, values);
    };
    if !streams(std::mem::size_of_val(dst)) {
        select(dst, src, 0);
        return;
    }
    let mut stage = [values.0; STAGE];
    for (i, (d, s)) in dst.chunks_mut(STAGE).zip(src.chunks(STAGE)).enumerate() {
        let stage = &mut stage[..d.len()];
        select(stage, s, i * STAGE);
        store_stream(stage, d);
    }
}

/// The selection of [`write_bits`] over one piece (`outside` marks the piece's elements).
#[inline(always)]
fn select_bits<O: Copy>(dst: &mut [O], src: &[u8], mask: u8, outside: Option<(&[u8], O)>, (zero, one): (O, O)) {
    match outside {
        None => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = if s & mask != 0 { one } else { zero };
            }
        }
        Some((marks, fill)) => {
            for ((d, &s), &o) in dst.iter_mut().zip(src).zip(marks) {
                let v = if s & mask != 0 { one } else { zero };
                *d = if o != 0 { fill } else { v };
            }
        }
    }
}

/// [`select_bits`] compiled with AVX2 (twice the baseline's vector width; same results).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn select_bits_avx2<O: Copy>(dst: &mut [O], src: &[u8], mask: u8, outside: Option<(&[u8], O)>, values: (O, O)) {
    select_bits(dst, src, mask, outside, values);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every element of a mirrored and transposed map whose source voxel lies outside the level
    /// is marked, and no other, whichever source axis runs along the output's rows.
    #[test]
    fn the_marked_elements_are_the_mapped_voxels_outside_the_level() {
        // Source box 4×3×5 from (−1, 1, 2) over a level 3×3×4: z −1, y 3 and x 4..7 fall outside.
        // Strides per source axis z, y, x: source x along output rows (plain, then mirrored),
        // then source z along them.
        for (offset, strides) in [(0, [15, 5, 1]), (4, [15, 5, -1]), (48, [3, 1, -12])] {
            let map = StridedMap {
                src_start: [-1, 1, 2],
                src_shape: [4, 3, 5],
                dest_offset: offset,
                dest_strides: strides,
            };
            let mut got = vec![0u8; 60];
            mark_outside(&map, [3, 3, 4], &mut got);
            let mut expected = vec![0u8; 60];
            for z in 0..4isize {
                for y in 0..3isize {
                    for x in 0..5isize {
                        let q = [z - 1, y + 1, x + 2];
                        if q[0] < 0 || q[0] >= 3 || q[1] >= 3 || q[2] >= 4 {
                            expected[(offset as isize + z * strides[0] + y * strides[1] + x * strides[2]) as usize] = 1;
                        }
                    }
                }
            }
            assert_eq!(got, expected, "strides {strides:?}");
            assert_eq!(got.iter().filter(|m| **m == 1).count(), 3 * 5 + 3 * 5 + 3 * 2 * 3);
        }
    }

    /// Selected by the mask and the outside marks, streamed or not, every element is written.
    #[test]
    fn write_bits_selects_by_the_mask() {
        for n in [7usize, 1 << 18] {
            let src: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let marks: Vec<u8> = (0..n).map(|i| u8::from(i % 5 == 0)).collect();
            for outside in [None, Some((marks.as_slice(), -2.0))] {
                let mut dst = vec![f32::NAN; n];
                write_bits(&src, 0b0100, outside, (0.0f32, 1.0), &mut dst);
                crate::kernels::stream::store_fence();
                for (i, (&s, &d)) in src.iter().zip(&dst).enumerate() {
                    let expected = if outside.is_some() && i % 5 == 0 {
                        -2.0
                    } else {
                        f32::from(u8::from(s & 4 != 0))
                    };
                    assert_eq!(d, expected, "element {i}");
                }
            }
        }
    }
}
