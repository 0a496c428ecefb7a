//! Planning one dataset: the level read per array and class, the bounding box of the data, the
//! valid centres and tiles, and (when asked) the class voxel counts. A dataset that cannot
//! produce a sample gets an [`Exclusion`] instead of a plan.

use cellmap_schema::{ArraySpec, Spec};

use super::fit::{Fit, axis_centres, no_fit_reason};
use super::{CentreGrid, ClassCount, ClassPlan, DatasetPlan, EPS, LevelPlan, PlanError};
use crate::geometry::Box3;
use crate::slicing::footprint;
use crate::sources::{ClassSource, DatasetSources};
use crate::store::count_nonzero;
use crate::store::{Level, Multiscale, choose_level};

/// Why a dataset produces no sample (recorded in [`super::Excluded::reason`] as text).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Exclusion {
    /// The raw level and the annotated levels share no voxel.
    #[error("the raw volume and the labelled crop do not overlap")]
    NoOverlap,
    /// The crop is declared with labels, but none of the spec's classes is among them.
    #[error("none of the spec's classes is annotated in this crop")]
    NothingAnnotated,
    /// The spec declares no array to read.
    #[error("the spec has no arrays")]
    NoArrays,
    /// Some array's crop does not fit along an axis; the text names the axis, array and extents.
    #[error("{0}")]
    NoFit(String),
}

/// Plan one dataset: `Ok(Err(_))` when it produces no sample, `Err` when reading its data failed.
pub(super) fn plan_dataset(
    spec: &Spec,
    opened: &DatasetSources,
    count: bool,
    warnings: &mut Vec<String>,
) -> Result<Result<DatasetPlan, Exclusion>, PlanError> {
    let ds = &opened.spec;
    let pad = spec.sampling().pad.for_split(ds.split);
    let (inputs, targets) = choose_levels(spec, opened, warnings);
    // Centres and fits use each crop's world footprint (a 2D spec's y- or x-slices cover other axes).
    let footprints = Footprints {
        inputs: spec.inputs().iter().map(|a| footprint(spec, a, ds.split)).collect(),
        targets: spec.targets().iter().map(|a| footprint(spec, a, ds.split)).collect(),
    };
    let annotated = annotated(&footprints.targets, opened, &targets);
    let Some(bbox) = bounding_box(opened, &inputs, &annotated) else {
        return Ok(Err(Exclusion::NoOverlap));
    };
    if !spec.targets().is_empty() && annotated.is_empty() && ds.targets.is_some() {
        return Ok(Err(Exclusion::NothingAnnotated));
    }
    // Reference grid: the first annotated class of the first target array, else the raw of the first input.
    let (reference, ref_array) = match annotated.first() {
        Some(a) => (a.level.clone(), a.array),
        None => match (inputs.first(), footprints.inputs.first()) {
            (Some(lp), Some(array)) => (lp.clone(), array),
            _ => return Ok(Err(Exclusion::NoArrays)),
        },
    };
    // Without padding every array's crop must lie inside its level: one constraint per array,
    // kept to explain an empty grid.
    let fits: Vec<Fit<'_>> = if pad {
        Vec::new()
    } else {
        let inputs = inputs
            .iter()
            .zip(&footprints.inputs)
            .map(|(lp, array)| Fit::new(lp, array));
        inputs
            .chain(annotated.iter().map(|a| Fit::new(a.level, a.array)))
            .collect()
    };
    let (lo, hi) = if pad {
        padded_interval(ref_array, &bbox)
    } else {
        fitted_interval(&fits)
    };
    let grid = centre_grid(&reference, ref_array, lo, hi);
    if grid.is_empty() {
        return Ok(Err(Exclusion::NoFit(no_fit_reason(
            &reference, ref_array, &fits, lo, hi,
        ))));
    }
    let tiles = tile_grid(&reference, ref_array, &bbox, pad, lo, hi);
    let class_counts = if count && !annotated.is_empty() {
        Some(class_counts(spec, opened, &targets)?)
    } else {
        None
    };
    Ok(Ok(DatasetPlan {
        split: ds.split,
        index: ds.index,
        origin: ds.origin.clone(),
        raw: ds.raw.clone(),
        inputs,
        targets,
        bbox_nm: bbox,
        grid,
        tiles,
        class_counts,
        pad,
    }))
}

/// The level read per input array, and per target array and class the class' source.
fn choose_levels(
    spec: &Spec,
    opened: &DatasetSources,
    warnings: &mut Vec<String>,
) -> (Vec<LevelPlan>, Vec<Vec<ClassPlan>>) {
    let origin = &opened.spec.origin;
    let mut note_level = |group: &Multiscale, array: &ArraySpec| -> LevelPlan {
        let choice = choose_level(&group.levels, array.voxel_size_nm);
        if choice.finer_than_available {
            warnings.push(format!(
                "{origin}: array `{}` asks for {:?} nm but the finest level of `{}` is {:?} nm; it is resampled from s0",
                array.name, array.voxel_size_nm, group.location, group.levels[choice.index].scale_nm
            ));
        }
        let level = &group.levels[choice.index];
        LevelPlan {
            group: group.location.clone(),
            level: choice.index,
            path: level.path.to_string(),
            scale_nm: level.scale_nm,
            translation_nm: level.translation_nm,
            shape_vox: level.shape_vox,
            resampled: !choice.exact,
        }
    };
    let inputs = spec.inputs().iter().map(|a| note_level(&opened.raw, a)).collect();
    let targets = spec
        .targets()
        .iter()
        .map(|a| {
            let class = |source: &ClassSource| match source {
                ClassSource::Annotated(group) => ClassPlan::Annotated(note_level(group, a)),
                ClassSource::Inferred(related) => ClassPlan::Inferred(related.clone()),
                ClassSource::Unknown => ClassPlan::Unknown,
            };
            opened.classes.iter().map(class).collect()
        })
        .collect();
    (inputs, targets)
}

/// One annotated class channel of one target array.
struct Annotated<'a> {
    group: &'a Multiscale,
    level: &'a LevelPlan,
    array: &'a ArraySpec,
}

/// The world footprints of a spec's arrays in one dataset ([`crate::slicing::footprint`]).
struct Footprints {
    inputs: Vec<ArraySpec>,
    targets: Vec<ArraySpec>,
}

/// Every annotated class channel, target arrays in spec order, classes in spec order (`arrays`:
/// the target arrays' footprints).
fn annotated<'a>(
    arrays: &'a [ArraySpec],
    opened: &'a DatasetSources,
    targets: &'a [Vec<ClassPlan>],
) -> Vec<Annotated<'a>> {
    targets
        .iter()
        .zip(arrays)
        .flat_map(|(classes, array)| {
            classes
                .iter()
                .zip(&opened.classes)
                .filter_map(move |(cp, source)| match (cp, source) {
                    (ClassPlan::Annotated(level), ClassSource::Annotated(group)) => {
                        Some(Annotated { group, level, array })
                    }
                    _ => None,
                })
        })
        .collect()
}

/// Raw ∩ every annotated class, at the levels read; `None` when they do not overlap.
fn bounding_box(opened: &DatasetSources, inputs: &[LevelPlan], annotated: &[Annotated<'_>]) -> Option<Box3> {
    let bounds = |group: &Multiscale, lp: &LevelPlan| group.levels[lp.level].bounds_nm();
    let raw = inputs
        .first()
        .map_or(opened.raw.levels[0].bounds_nm(), |lp| bounds(&opened.raw, lp));
    annotated
        .iter()
        .try_fold(raw, |b, a| b.intersection(&bounds(a.group, a.level)))
}

/// With padding: a centre is valid when the reference crop meets the bounding box.
fn padded_interval(ref_array: &ArraySpec, bbox: &Box3) -> ([f64; 3], [f64; 3]) {
    let half = |a: usize| (ref_array.shape_vox[a] as f64 - 1.0) / 2.0 * ref_array.voxel_size_nm[a];
    (
        std::array::from_fn(|a| bbox.lo_nm[a] - half(a)),
        std::array::from_fn(|a| bbox.hi_nm[a] + half(a)),
    )
}

/// Without padding: the intersection of every array's valid centres.
fn fitted_interval(fits: &[Fit<'_>]) -> ([f64; 3], [f64; 3]) {
    let mut lo = [f64::NEG_INFINITY; 3];
    let mut hi = [f64::INFINITY; 3];
    for fit in fits {
        for a in 0..3 {
            lo[a] = lo[a].max(fit.lo_nm[a]);
            hi[a] = hi[a].min(fit.hi_nm[a]);
        }
    }
    (lo, hi)
}

/// Foreground and total voxels per class at the first target array's voxel size: from the s0
/// metadata when CellMap tools recorded it, else counted at the level the plan reads.
fn class_counts(
    spec: &Spec,
    opened: &DatasetSources,
    targets: &[Vec<ClassPlan>],
) -> Result<Vec<ClassCount>, PlanError> {
    let mut counts = Vec::with_capacity(spec.classes().len());
    let target_voxel_nm3: f64 = spec.targets()[0].voxel_size_nm.iter().product();
    for (c, source) in opened.classes.iter().enumerate() {
        let (Some(ClassPlan::Annotated(lp)), ClassSource::Annotated(group)) =
            (targets.first().and_then(|t| t.get(c)), source)
        else {
            counts.push(ClassCount {
                foreground: 0,
                total: 0,
            });
            continue;
        };
        let (level, fg) = match metadata_foreground(&group.levels[0], &spec.classes()[c]) {
            Some(fg) => (&group.levels[0], fg),
            None => {
                let level = &group.levels[lp.level];
                let fg = count_nonzero(level).map_err(|source| PlanError::Count {
                    origin: opened.spec.origin.clone(),
                    class: spec.classes()[c].clone(),
                    source: Box::new(source),
                })?;
                (level, fg)
            }
        };
        // Rescale counts from the level's voxels to the target's voxels.
        let ratio = level.scale_nm.iter().product::<f64>() / target_voxel_nm3;
        let total: u64 = level.shape_vox.iter().product();
        counts.push(ClassCount {
            foreground: (fg as f64 * ratio).round() as u64,
            total: (total as f64 * ratio).round() as u64,
        });
    }
    Ok(counts)
}

/// Centres `t + k·r` of the reference level's grid inside `[lo, hi]` (lo inclusive, hi exclusive).
fn centre_grid(reference: &LevelPlan, array: &ArraySpec, lo: [f64; 3], hi: [f64; 3]) -> CentreGrid {
    let mut grid = CentreGrid {
        origin_nm: [0.0; 3],
        step_nm: array.voxel_size_nm,
        shape: [0; 3],
    };
    for a in 0..3 {
        let Some((origin, count)) = axis_centres(reference.translation_nm[a], array.voxel_size_nm[a], lo[a], hi[a])
        else {
            return CentreGrid { shape: [0; 3], ..grid };
        };
        grid.origin_nm[a] = origin;
        grid.shape[a] = count;
    }
    grid
}

/// Non-overlapping tiles of the reference array covering the bounding box, first tile at its
/// low corner. With padding the last tile may extend past the data; without, only whole tiles
/// whose centre is valid are kept.
fn tile_grid(
    reference: &LevelPlan,
    array: &ArraySpec,
    bbox: &Box3,
    pad: bool,
    lo: [f64; 3],
    hi: [f64; 3],
) -> CentreGrid {
    let mut grid = CentreGrid {
        origin_nm: [0.0; 3],
        step_nm: [0.0; 3],
        shape: [0; 3],
    };
    for a in 0..3 {
        let r = array.voxel_size_nm[a];
        let n = array.shape_vox[a] as f64;
        let t = reference.translation_nm[a];
        // First reference voxel fully inside the box, and how many fit.
        let first = ((bbox.lo_nm[a] - t) / r + 0.5 - EPS).ceil();
        let last = ((bbox.hi_nm[a] - t) / r - 0.5 + EPS).floor();
        let voxels = last - first + 1.0;
        if voxels < 1.0 {
            return CentreGrid::EMPTY;
        }
        let count = if pad { (voxels / n).ceil() } else { (voxels / n).floor() };
        let origin = t + (first + (n - 1.0) / 2.0) * r;
        // Keep only tiles whose centre is valid (matters without padding).
        let mut kept = 0.0;
        while kept < count && origin + kept * n * r < hi[a] - EPS * r {
            kept += 1.0;
        }
        if origin < lo[a] - EPS * r || kept < 1.0 {
            return CentreGrid::EMPTY;
        }
        grid.origin_nm[a] = origin;
        grid.step_nm[a] = n * r;
        grid.shape[a] = kept as u64;
    }
    grid
}

/// Foreground voxels of a class from its s0 array attributes, as CellMap tools write them:
/// `cellmap.annotation.complement_counts.absent` (background voxels; foreground = size − absent)
/// or `class_counts.<class>` (foreground voxels).
fn metadata_foreground(s0: &Level, class: &str) -> Option<u64> {
    let attrs = s0.attributes();
    let size: u64 = s0.shape_vox.iter().product();
    let absent = attrs
        .get("cellmap")
        .and_then(|c| c.pointer("/annotation/complement_counts/absent"))
        .and_then(serde_json::Value::as_u64);
    if let Some(absent) = absent.filter(|a| *a <= size) {
        return Some(size - absent);
    }
    attrs
        .get("class_counts")
        .and_then(|c| c.get(class))
        .and_then(serde_json::Value::as_u64)
        .filter(|fg| *fg <= size)
}
