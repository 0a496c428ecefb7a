//! What the training cache of a plan holds: the raw levels over each dataset's box plus the input
//! window's reach, the binary classes of each crop in packs, the other labels whole.

use std::collections::BTreeMap;

use cellmap_schema::{SliceAxis, Spec, Split, ValueTransform};

use super::options::CacheOptions;
use crate::plan::{ClassPlan, DatasetPlan};
use crate::sources::{ClassSource, DatasetSources};
use crate::store::{ChunkBox, Level, SourceDtype};

/// A source level to copy over some chunk boxes.
pub(super) struct CopyJob {
    pub(super) source: Level,
    pub(super) chunk: [u64; 3],
    pub(super) boxes: Vec<ChunkBox>,
}

/// Binary classes of one crop sharing a geometry, packed into one array.
pub(super) struct PackJob {
    pub(super) members: Vec<Level>,
    pub(super) chunk: [u64; 3],
}

/// The reach (nm per axis) of input array `k`'s window around its centre under the spec's
/// spatial transforms: half its extent per axis; half the longest extent on every axis when axes
/// may be transposed or the sample is sliced along y, x or any axis; half the diagonal under
/// rotation; plus four standard deviations of elastic displacement and two voxels for
/// interpolation. A sample reaching further (an elastic tail) reads the source for those chunks.
pub fn input_reach_nm(spec: &Spec, k: usize) -> [f64; 3] {
    let array = &spec.inputs()[k];
    let extent: [f64; 3] = std::array::from_fn(|a| array.shape_vox[a] as f64 * array.voxel_size_nm[a]);
    let spatial = &spec.augment().spatial;
    let longest = extent.iter().copied().fold(0.0, f64::max);
    let mut reach = if spatial.rotate.iter().any(Option::is_some) {
        [0.5 * extent.iter().map(|e| e * e).sum::<f64>().sqrt(); 3]
    } else if spatial.transpose.len() >= 2 || (spec.is_2d() && spec.sampling().slice_axis != SliceAxis::Z) {
        [0.5 * longest; 3]
    } else {
        extent.map(|e| 0.5 * e)
    };
    let elastic = spatial.elastic.as_ref().map_or(0.0, |e| 4.0 * e.sigma_nm);
    for a in 0..3 {
        reach[a] += elastic + 2.0 * array.voxel_size_nm[a];
    }
    reach
}

/// Whether class `class` is binary in every split for this spec: each of its target lists starts
/// with `binarize` at a threshold in `[0, 1)` (so on unsigned labels it is `label ≠ 0`) and none
/// rescales by the label's dtype (which packing changes).
fn binary_everywhere(spec: &Spec, class: &str) -> bool {
    Split::ALL.iter().all(|&split| {
        let list = spec.augment().targets_for(split, class);
        matches!(list.first(), Some(ValueTransform::Binarize { threshold }) if (0.0..1.0).contains(threshold))
            && !list.iter().any(|t| matches!(t, ValueTransform::NormalizeDtype { .. }))
    })
}

fn is_unsigned(dtype: SourceDtype) -> bool {
    matches!(
        dtype,
        SourceDtype::U8 | SourceDtype::U16 | SourceDtype::U32 | SourceDtype::U64
    )
}

/// The cache's chunk shape for `level`: `chunk` clipped to its shape.
fn chunk_for(level: &Level, chunk: [u64; 3]) -> [u64; 3] {
    std::array::from_fn(|a| chunk[a].clamp(1, level.shape_vox[a].max(1)))
}

/// The chunk box of the cache chunks of `level` covering the world box `lo..hi` (nm), clipped
/// to the array.
fn chunk_box(level: &Level, chunk: [u64; 3], lo: [f64; 3], hi: [f64; 3]) -> Option<ChunkBox> {
    let mut b = [[0u64; 3]; 2];
    for a in 0..3 {
        let (t, s, n) = (level.translation_nm[a], level.scale_nm[a], level.shape_vox[a]);
        let first = ((lo[a] - t) / s).floor().max(0.0);
        let last = ((hi[a] - t) / s).ceil() + 1.0;
        let last = last.clamp(0.0, n as f64) as u64;
        let first = (first as u64).min(last);
        if first >= last {
            return None;
        }
        b[0][a] = first / chunk[a];
        b[1][a] = last.div_ceil(chunk[a]);
    }
    Some(b)
}

/// The world box every sample of a dataset is centred in: its data box, its centre grid and
/// its tiles.
fn centre_box(d: &DatasetPlan) -> ([f64; 3], [f64; 3]) {
    let mut lo = d.bbox_nm.lo_nm;
    let mut hi = d.bbox_nm.hi_nm;
    for g in [&d.grid, &d.tiles] {
        if g.is_empty() {
            continue;
        }
        let last = g.centre(g.shape.map(|n| n - 1));
        for a in 0..3 {
            lo[a] = lo[a].min(g.origin_nm[a].min(last[a]));
            hi[a] = hi[a].max(g.origin_nm[a].max(last[a]));
        }
    }
    (lo, hi)
}

/// The copies and packs of a plan.
pub(super) fn jobs(
    spec: &Spec,
    datasets: &[DatasetPlan],
    sources: &[DatasetSources],
    options: &CacheOptions,
) -> (Vec<CopyJob>, Vec<PackJob>) {
    let mut copies: BTreeMap<String, CopyJob> = BTreeMap::new();
    let mut add_copy = |level: &Level, b: ChunkBox, chunk: [u64; 3]| {
        let job = copies
            .entry(level.array_location().to_owned())
            .or_insert_with(|| CopyJob {
                source: level.clone(),
                chunk,
                boxes: Vec::new(),
            });
        if !job.boxes.contains(&b) {
            job.boxes.push(b);
        }
    };
    let mut packs = Vec::new();
    for (d, s) in datasets.iter().zip(sources) {
        let (lo, hi) = centre_box(d);
        for (k, lp) in d.inputs.iter().enumerate() {
            let level = &s.raw.levels[lp.level];
            let chunk = chunk_for(level, options.chunk);
            let reach = options.reach_nm.unwrap_or_else(|| input_reach_nm(spec, k));
            let lo = std::array::from_fn(|a| lo[a] - reach[a]);
            let hi = std::array::from_fn(|a| hi[a] + reach[a]);
            if let Some(b) = chunk_box(level, chunk, lo, hi) {
                add_copy(level, b, chunk);
            }
        }
        // Binary classes grouped by geometry (packs of `classes_per_pack`); others copied whole.
        let mut groups: BTreeMap<String, Vec<Level>> = BTreeMap::new();
        for per_class in &d.targets {
            for (c, class_plan) in per_class.iter().enumerate() {
                let (ClassPlan::Annotated(lp), ClassSource::Annotated(ms)) = (class_plan, &s.classes[c]) else {
                    continue;
                };
                let level = &ms.levels[lp.level];
                if is_unsigned(level.dtype) && binary_everywhere(spec, &spec.classes()[c]) {
                    let key = format!("{:?}{:?}{:?}", level.scale_nm, level.translation_nm, level.shape_vox);
                    let group = groups.entry(key).or_default();
                    if !group.iter().any(|l| l.array_location() == level.array_location()) {
                        group.push(level.clone());
                    }
                } else {
                    let chunk = chunk_for(level, options.chunk);
                    let whole = [[0; 3], level.chunk_grid_shape_for(chunk)];
                    add_copy(level, whole, chunk);
                }
            }
        }
        for group in groups.into_values() {
            for members in group.chunks(options.classes_per_pack.clamp(1, 64)) {
                packs.push(PackJob {
                    chunk: chunk_for(&members[0], options.chunk),
                    members: members.to_vec(),
                });
            }
        }
    }
    (copies.into_values().collect(), packs)
}
