//! The plan: everything decided before the first batch.
//!
//! For every dataset of the spec the plan records the scale level chosen per array and
//! class, the bounding box of the labelled data, the grid of valid sample centres, the
//! validation tiles, per-class voxel counts, and the exact bytes of one batch. Datasets that
//! cannot produce a single sample are excluded with the reason, never silently.
//!
//! # Geometry
//!
//! World coordinates are nm, axes `[z, y, x]`. Voxel `i` of a level with scale `s` and
//! translation `t` is centred at `t + i·s` and covers `[t + (i − ½)s, t + (i + ½)s]`.
//! An array of `N` voxels at voxel size `r`, centred at `c`, samples the points
//! `c + (j − (N − 1)/2)·r`, `j = 0 … N − 1`; a point belongs to a level when its nearest voxel
//! exists. Without padding, a centre is valid when every point of every array (raw for the
//! inputs, each annotated class for the targets) belongs to its level. With padding, a centre
//! is valid when at least one point of the first target array (the first input, without
//! targets) lies inside the dataset's bounding box; points outside the data get the pad value.
//!
//! Sample centres lie on the grid of the reference level (the first annotated class's level
//! for the first target array, or the raw level for the first input when the dataset has no
//! labels), stepped by the reference array's voxel size, so that unrotated crops read whole
//! voxels without interpolation.

mod cache;
mod class_weights;
mod fit;
mod foreground;

pub use cache::{PlanOrigin, default_plan_cache_dir, plan_cache_path, plan_cached};
pub use class_weights::{ClassWeight, SplitClassWeights};

pub(crate) use foreground::foreground_index;

use class_weights::class_weights;
use fit::{Fit, axis_centres, no_fit_reason};

use serde::{Deserialize, Serialize};

use cellmap_schema::{ArraySpec, Spec, Split};

use crate::geometry::Box3;
use crate::pipeline::{ArrayLayout, BatchLayout};
use crate::sources::{ClassSource, DatasetError, DatasetSources};
use crate::store::{ChunkError, count_nonzero};
use crate::store::{Multiscale, choose_level};

/// Relative tolerance of geometric comparisons (boundaries, grid alignment).
const EPS: f64 = 1e-9;

/// The plan of a spec. See the module docs for the geometry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The spec's name.
    pub name: String,
    /// Layout of one batch: inputs, then targets, in spec order.
    pub batch: BatchLayout,
    /// Exact bytes of the tensors of one batch (every input and target counted once).
    pub batch_bytes: u64,
    /// Ring slots.
    pub prefetch: usize,
    /// Bytes of the whole ring (`prefetch × batch_bytes`), allocated once at start.
    pub ring_bytes: u64,
    /// Datasets that produce samples: train, validate, then test, each split in file order.
    pub datasets: Vec<DatasetPlan>,
    /// Datasets left out, with the reason.
    pub excluded: Vec<Excluded>,
    /// Things a person should know.
    pub warnings: Vec<String>,
    /// cellmap-data's class weights per split (train, then validate), computed from the
    /// datasets' [`DatasetPlan::class_counts`]: for each class, background / max(foreground, 1)
    /// over the split's datasets that annotate it, 1 for a class annotated nowhere in the split
    /// (see [`SplitClassWeights`]). Empty when classes were not counted (count them with
    /// [`PlanOptions::count_classes`], `plan --counts`, or `weighting: voxel_weighted`). Plans
    /// written before this field existed read as empty.
    #[serde(default)]
    pub class_weights: Vec<SplitClassWeights>,
}

impl Plan {
    /// Planned datasets of one split.
    pub fn datasets_of(&self, split: Split) -> impl Iterator<Item = &DatasetPlan> {
        self.datasets.iter().filter(move |d| d.split == split)
    }
}

/// A dataset left out of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Excluded {
    /// Its split.
    pub split: Split,
    /// Its index within the split.
    pub index: usize,
    /// Where it is declared.
    pub origin: String,
    /// Why it produces no sample.
    pub reason: String,
}

/// The plan of one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetPlan {
    /// Its split.
    pub split: Split,
    /// Index within the split (as numbered by the spec).
    pub index: usize,
    /// Where it is declared.
    pub origin: String,
    /// Raw group location.
    pub raw: String,
    /// Per input array: the raw level read.
    pub inputs: Vec<LevelPlan>,
    /// Per target array, per class: where the channel comes from.
    pub targets: Vec<Vec<ClassPlan>>,
    /// Bounding box of the data in nm: the intersection of raw and every annotated class.
    pub bbox_nm: Box3,
    /// Valid sample centres.
    pub grid: CentreGrid,
    /// Tiles (read by the validation and test splits): non-overlapping crops of the first target array.
    pub tiles: CentreGrid,
    /// Per class voxel counts at the first target array's voxel size (when counted).
    pub class_counts: Option<Vec<ClassCount>>,
    /// Padding applies to this dataset's crops.
    pub pad: bool,
}

/// A regular grid of centres: `origin + index·step`, `index < shape` per axis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CentreGrid {
    /// Centre of index `[0, 0, 0]`, nm.
    pub origin_nm: [f64; 3],
    /// Step between centres, nm.
    pub step_nm: [f64; 3],
    /// Centres per axis (all zero for an empty grid).
    pub shape: [u64; 3],
}

impl CentreGrid {
    /// An empty grid.
    pub const EMPTY: CentreGrid = CentreGrid {
        origin_nm: [0.0; 3],
        step_nm: [1.0; 3],
        shape: [0; 3],
    };

    /// Number of centres.
    pub fn len(&self) -> u64 {
        self.shape.iter().product()
    }

    /// True when the grid has no centre.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Centre of a grid index.
    pub fn centre(&self, index: [u64; 3]) -> [f64; 3] {
        std::array::from_fn(|a| self.origin_nm[a] + index[a] as f64 * self.step_nm[a])
    }

    /// The grid index of linear index `i` (row-major, x fastest).
    pub fn unravel(&self, i: u64) -> [u64; 3] {
        let [_, ny, nx] = self.shape;
        [i / (ny * nx), (i / nx) % ny, i % nx]
    }
}

/// Foreground and total voxels of one class in one dataset, at the first target array's voxel size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCount {
    /// Voxels where the label is non-zero.
    pub foreground: u64,
    /// Voxels of the class' array.
    pub total: u64,
}

/// The level read for one array of one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelPlan {
    /// Location of the multiscale group.
    pub group: String,
    /// Index of the chosen level.
    pub level: usize,
    /// Path of the chosen level inside the group (`s1`).
    pub path: String,
    /// Voxel size of the level, nm.
    pub scale_nm: [f64; 3],
    /// Translation of the level, nm.
    pub translation_nm: [f64; 3],
    /// Shape of the level, voxels.
    pub shape_vox: [u64; 3],
    /// True when the level's voxel size differs from the request, so voxels are resampled.
    pub resampled: bool,
}

/// Where one class channel of one target array comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassPlan {
    /// Read from this level of the class' label group.
    Annotated(LevelPlan),
    /// 0 where any of these classes (indices) is present, NaN elsewhere.
    Inferred(Vec<usize>),
    /// NaN everywhere.
    Unknown,
}

/// What can stop planning.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A dataset's groups could not be opened.
    #[error(transparent)]
    Dataset(#[from] Box<DatasetError>),
    /// Counting class voxels failed.
    #[error("{origin}: counting voxels of class `{class}`: {source}")]
    Count {
        /// Where the dataset is declared.
        origin: String,
        /// The class.
        class: String,
        /// The read failure.
        #[source]
        source: Box<ChunkError>,
    },
    /// The spec asks for something this runtime does not produce.
    #[error("{0}")]
    Unsupported(String),
    /// Every dataset of a split that the loader needs was excluded.
    #[error("no {split} dataset can produce a sample:\n{reasons}")]
    NothingLeft {
        /// The split.
        split: &'static str,
        /// One line per excluded dataset.
        reasons: String,
    },
    /// A plan made earlier (embedded in a generated crate) no longer describes the data.
    #[error(
        "{origin}: the data changed since this plan was made: {what}; plan again (rebuild the loader crate: `cellmap-compile build SPEC -o DIR --force`)"
    )]
    Stale {
        /// Where the dataset is declared.
        origin: String,
        /// What differs.
        what: String,
    },
}

/// Settings of planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanOptions {
    /// Count class voxels even when the weighting does not need them.
    pub count_classes: bool,
}

/// A plan with its opened data: `sources[i]` belongs to `plan.datasets[i]`.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The plan.
    pub plan: Plan,
    /// The opened groups of every planned dataset.
    pub sources: Vec<DatasetSources>,
}

/// Open the data of a spec and plan it.
pub fn plan(spec: &Spec, options: PlanOptions) -> Result<Planned, PlanError> {
    if let Some(a) = spec
        .inputs
        .iter()
        .chain(&spec.targets)
        .find(|a| a.dtype != cellmap_schema::OutputDtype::Float32)
    {
        return Err(PlanError::Unsupported(format!(
            "{}: array `{}` asks for dtype `{:?}`, but this runtime fills float32 batches only; set `dtype: float32` (or remove it)",
            spec.source.display(),
            a.name,
            a.dtype
        )));
    }
    let layout = batch_layout(spec);
    let batch_bytes = layout.batch_bytes();
    let count = options.count_classes || spec.sampling.weighting == cellmap_schema::Weighting::VoxelWeighted;
    let mut datasets = Vec::new();
    let mut sources = Vec::new();
    let mut excluded = Vec::new();
    let mut warnings = Vec::new();
    for dataset in &spec.datasets {
        let opened = DatasetSources::open(spec, dataset).map_err(Box::new)?;
        warnings.extend(opened.warnings.iter().map(|w| format!("{}: {w}", dataset.origin)));
        match plan_dataset(spec, &opened, count, &mut warnings)? {
            Ok(plan) => {
                datasets.push(plan);
                sources.push(opened);
            }
            Err(reason) => {
                warnings.push(format!(
                    "{}: {} dataset #{} excluded: {reason}",
                    dataset.origin,
                    dataset.split.name(),
                    dataset.index
                ));
                excluded.push(Excluded {
                    split: dataset.split,
                    index: dataset.index,
                    origin: dataset.origin.clone(),
                    reason,
                });
            }
        }
    }
    for split in Split::ALL {
        let declared = spec.datasets_of(split).count();
        if declared > 0 && !datasets.iter().any(|d: &DatasetPlan| d.split == split) {
            let reasons = excluded
                .iter()
                .filter(|e| e.split == split)
                .map(|e| format!("  {}: #{}: {}", e.origin, e.index, e.reason))
                .collect::<Vec<_>>()
                .join("\n");
            return Err(PlanError::NothingLeft {
                split: split.name(),
                reasons,
            });
        }
    }
    let plan = Plan {
        name: spec.name.clone(),
        batch: layout,
        batch_bytes,
        prefetch: spec.loader.prefetch,
        ring_bytes: batch_bytes.saturating_mul(spec.loader.prefetch as u64),
        class_weights: class_weights(&datasets, &spec.classes),
        datasets,
        excluded,
        warnings,
    };
    Ok(Planned { plan, sources })
}

impl Planned {
    /// Open the data of a plan made earlier for `spec` (the plan a generated crate embeds)
    /// without planning again: no class voxels are counted and no centre grid is computed. Every
    /// level the plan reads is checked against the data's metadata (path, voxel size,
    /// translation, shape), and every class must still be annotated, inferred or unknown as
    /// planned.
    ///
    /// # Errors
    /// [`PlanError::Dataset`] when a group cannot be opened, [`PlanError::Stale`] when the data
    /// or the spec no longer match the plan.
    pub fn open(spec: &Spec, plan: Plan) -> Result<Planned, PlanError> {
        let stale = |origin: &str, what: String| PlanError::Stale {
            origin: origin.to_owned(),
            what,
        };
        let layout = batch_layout(spec);
        if plan.batch != layout || plan.prefetch != spec.loader.prefetch {
            return Err(stale(
                &spec.source.display().to_string(),
                "the spec's arrays, batch size or prefetch differ from the plan's".to_owned(),
            ));
        }
        let mut sources = Vec::with_capacity(plan.datasets.len());
        for planned in &plan.datasets {
            let Some(dataset) = spec
                .datasets
                .iter()
                .find(|d| d.split == planned.split && d.index == planned.index)
            else {
                return Err(stale(
                    &planned.origin,
                    format!("the spec has no {} dataset #{}", planned.split.name(), planned.index),
                ));
            };
            let opened = DatasetSources::open(spec, dataset).map_err(Box::new)?;
            check_levels(&opened, planned, &spec.classes).map_err(|what| stale(&planned.origin, what))?;
            sources.push(opened);
        }
        Ok(Planned { plan, sources })
    }
}

/// The levels and class sources a dataset plan reads, compared with the opened data.
fn check_levels(opened: &DatasetSources, planned: &DatasetPlan, names: &[String]) -> Result<(), String> {
    let same = |group: &Multiscale, lp: &LevelPlan| -> Result<(), String> {
        let Some(level) = group.levels.get(lp.level) else {
            return Err(format!(
                "`{}` has {} levels, the plan reads level {} (`{}`)",
                group.location,
                group.levels.len(),
                lp.level,
                lp.path
            ));
        };
        let found = (&level.path, level.scale_nm, level.translation_nm, level.shape_vox);
        let expected = (&lp.path, lp.scale_nm, lp.translation_nm, lp.shape_vox);
        if group.location != lp.group || found != expected {
            return Err(format!(
                "level {} of `{}` is `{}` with voxel size {:?} nm, translation {:?} nm and shape {:?}; the plan has `{}`, {:?} nm, {:?} nm, {:?}",
                lp.level,
                group.location,
                level.path,
                level.scale_nm,
                level.translation_nm,
                level.shape_vox,
                lp.path,
                lp.scale_nm,
                lp.translation_nm,
                lp.shape_vox
            ));
        }
        Ok(())
    };
    if opened.raw.location != planned.raw {
        return Err(format!(
            "raw is `{}`, the plan has `{}`",
            opened.raw.location, planned.raw
        ));
    }
    for lp in &planned.inputs {
        same(&opened.raw, lp)?;
    }
    let describe = |related: &[usize]| {
        let related: Vec<&str> = related
            .iter()
            .map(|&i| names.get(i).map_or("?", String::as_str))
            .collect();
        format!("inferred from {related:?}")
    };
    for classes in &planned.targets {
        if classes.len() != opened.classes.len() {
            return Err(format!(
                "the spec has {} classes, the plan {}",
                opened.classes.len(),
                classes.len()
            ));
        }
        for ((cp, source), name) in classes.iter().zip(&opened.classes).zip(names) {
            match (cp, source) {
                (ClassPlan::Annotated(lp), ClassSource::Annotated(group)) => same(group, lp)?,
                (ClassPlan::Inferred(a), ClassSource::Inferred(b)) if a == b => {}
                (ClassPlan::Unknown, ClassSource::Unknown) => {}
                (cp, _) => {
                    let now = match source {
                        ClassSource::Annotated(_) => "annotated".to_owned(),
                        ClassSource::Inferred(related) => describe(related),
                        ClassSource::Unknown => "unknown".to_owned(),
                    };
                    let then = match cp {
                        ClassPlan::Annotated(_) => "annotated".to_owned(),
                        ClassPlan::Inferred(related) => describe(related),
                        ClassPlan::Unknown => "unknown".to_owned(),
                    };
                    return Err(format!("class `{name}` is {now} in the data, {then} in the plan"));
                }
            }
        }
    }
    Ok(())
}

/// The batch layout of a spec: inputs `[B, 1, …]`, then targets `[B, classes, …]`.
pub fn batch_layout(spec: &Spec) -> BatchLayout {
    let inputs = spec.inputs.iter().map(|a| ArrayLayout {
        name: a.name.clone(),
        channels: 1,
        shape_vox: a.shape_vox,
    });
    let targets = spec.targets.iter().map(|a| ArrayLayout {
        name: a.name.clone(),
        channels: spec.classes.len(),
        shape_vox: a.shape_vox,
    });
    BatchLayout {
        batch_size: spec.loader.batch_size,
        arrays: inputs.chain(targets).collect(),
    }
}

/// Plan one dataset; `Ok(Err(reason))` when it produces no sample.
fn plan_dataset(
    spec: &Spec,
    opened: &DatasetSources,
    count: bool,
    warnings: &mut Vec<String>,
) -> Result<Result<DatasetPlan, String>, PlanError> {
    let ds = &opened.spec;
    let pad = spec.sampling.pad.for_split(ds.split);
    let mut note_level = |group: &Multiscale, array: &ArraySpec| -> LevelPlan {
        let choice = choose_level(&group.levels, array.voxel_size_nm);
        if choice.finer_than_available {
            warnings.push(format!(
                "{}: array `{}` asks for {:?} nm but the finest level of `{}` is {:?} nm; it is resampled from s0",
                ds.origin, array.name, array.voxel_size_nm, group.location, group.levels[choice.index].scale_nm
            ));
        }
        let level = &group.levels[choice.index];
        LevelPlan {
            group: group.location.clone(),
            level: choice.index,
            path: level.path.clone(),
            scale_nm: level.scale_nm,
            translation_nm: level.translation_nm,
            shape_vox: level.shape_vox,
            resampled: !choice.exact,
        }
    };
    let inputs: Vec<LevelPlan> = spec.inputs.iter().map(|a| note_level(&opened.raw, a)).collect();
    let targets: Vec<Vec<ClassPlan>> = spec
        .targets
        .iter()
        .map(|a| {
            opened
                .classes
                .iter()
                .map(|source| match source {
                    ClassSource::Annotated(group) => ClassPlan::Annotated(note_level(group, a)),
                    ClassSource::Inferred(related) => ClassPlan::Inferred(related.clone()),
                    ClassSource::Unknown => ClassPlan::Unknown,
                })
                .collect()
        })
        .collect();

    // Bounding box: raw ∩ every annotated class (at the levels read).
    let level_of = |group: &Multiscale, lp: &LevelPlan| group.levels[lp.level].bounds_nm();
    let mut bbox = Some(
        inputs
            .first()
            .map_or(opened.raw.levels[0].bounds_nm(), |lp| level_of(&opened.raw, lp)),
    );
    let annotated: Vec<(&Multiscale, &LevelPlan, &ArraySpec)> = targets
        .iter()
        .zip(&spec.targets)
        .flat_map(|(classes, array)| {
            classes
                .iter()
                .zip(&opened.classes)
                .filter_map(move |(cp, source)| match (cp, source) {
                    (ClassPlan::Annotated(lp), ClassSource::Annotated(group)) => Some((group, lp, array)),
                    _ => None,
                })
        })
        .collect();
    for (group, lp, _) in &annotated {
        bbox = bbox.and_then(|b| b.intersection(&level_of(group, lp)));
    }
    let Some(bbox) = bbox else {
        return Ok(Err("the raw volume and the labelled crop do not overlap".to_owned()));
    };
    if !spec.targets.is_empty() && annotated.is_empty() && ds.targets.is_some() {
        return Ok(Err("none of the spec's classes is annotated in this crop".to_owned()));
    }

    // Reference grid: the first annotated class of the first target array, else the raw of the first input.
    let (reference, ref_array) = match annotated.first() {
        Some((_, lp, array)) => ((*lp).clone(), *array),
        None => match (inputs.first(), spec.inputs.first()) {
            (Some(lp), Some(array)) => (lp.clone(), array),
            _ => return Ok(Err("the spec has no arrays".to_owned())),
        },
    };

    // Valid centre interval per axis.
    let mut lo = [f64::NEG_INFINITY; 3];
    let mut hi = [f64::INFINITY; 3];
    // Without padding every array's crop must lie inside its level: one constraint per array,
    // kept to explain an empty grid.
    let mut fits: Vec<Fit<'_>> = Vec::new();
    if pad {
        for a in 0..3 {
            let half = (ref_array.shape_vox[a] as f64 - 1.0) / 2.0 * ref_array.voxel_size_nm[a];
            lo[a] = bbox.lo_nm[a] - half;
            hi[a] = bbox.hi_nm[a] + half;
        }
    } else {
        fits.extend(inputs.iter().zip(&spec.inputs).map(|(lp, array)| Fit::new(lp, array)));
        fits.extend(annotated.iter().map(|(_, lp, array)| Fit::new(lp, array)));
        for fit in &fits {
            for a in 0..3 {
                lo[a] = lo[a].max(fit.lo_nm[a]);
                hi[a] = hi[a].min(fit.hi_nm[a]);
            }
        }
    }
    let grid = centre_grid(&reference, ref_array, lo, hi);
    if grid.is_empty() {
        return Ok(Err(no_fit_reason(&reference, ref_array, &fits, lo, hi)));
    }
    let tiles = tile_grid(&reference, ref_array, &bbox, pad, lo, hi);

    let class_counts = if count && !annotated.is_empty() {
        let mut counts = Vec::with_capacity(spec.classes.len());
        let target_voxel_nm3: f64 = spec.targets[0].voxel_size_nm.iter().product();
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
            // Metadata of s0 when present (no read), else count the level read.
            let (level, fg) = match metadata_foreground(&group.levels[0], &spec.classes[c]) {
                Some(fg) => (&group.levels[0], fg),
                None => {
                    let level = &group.levels[lp.level];
                    let fg = count_nonzero(level).map_err(|source| PlanError::Count {
                        origin: ds.origin.clone(),
                        class: spec.classes[c].clone(),
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
        Some(counts)
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
fn metadata_foreground(s0: &crate::store::Level, class: &str) -> Option<u64> {
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
