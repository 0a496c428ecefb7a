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
mod dataset;
mod fit;
mod foreground;
mod open;

pub use cache::{PlanOrigin, default_plan_cache_dir, plan_cache_path, plan_cached};
pub use class_weights::{ClassWeight, SplitClassWeights};
pub use open::StaleReason;

pub use foreground::ForegroundError;
pub(crate) use foreground::foreground_index;

use class_weights::class_weights;
use dataset::plan_dataset;

use serde::{Deserialize, Serialize};

use cellmap_schema::{Spec, Split};

use crate::geometry::Box3;
use crate::layout::{ArrayLayout, BatchLayout};
use crate::sources::{DatasetError, DatasetSources};
use crate::store::ChunkError;

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
    /// A `uint8` input over data of another type: its values need not fit in `0..=255`.
    #[error(
        "{origin}: input `{array}` has `dtype: uint8`, but `{location}` holds `{source_dtype}` data, whose values need not fit in 0..=255; use `dtype: float32` (or `float16`, `bfloat16`) with a `normalize` transform"
    )]
    Uint8Source {
        /// The dataset's origin (spec or CSV `file:line:column`).
        origin: String,
        /// The input array.
        array: String,
        /// The level read.
        location: String,
        /// Its data type.
        source_dtype: crate::store::SourceDtype,
    },
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
        what: StaleReason,
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
    let layout = batch_layout(spec);
    let batch_bytes = layout.batch_bytes();
    let count = options.count_classes || spec.sampling().weighting == cellmap_schema::Weighting::VoxelWeighted;
    let mut datasets = Vec::new();
    let mut sources = Vec::new();
    let mut excluded = Vec::new();
    let mut warnings = Vec::new();
    for (dataset, opened) in spec
        .datasets()
        .iter()
        .zip(DatasetSources::open_all(spec, spec.datasets()))
    {
        let opened = opened.map_err(Box::new)?;
        warnings.extend(opened.warnings.iter().map(|w| format!("{}: {w}", dataset.origin)));
        match plan_dataset(spec, &opened, count, &mut warnings)? {
            Ok(plan) => {
                check_uint8_sources(spec, &dataset.origin, &plan, &opened)?;
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
                    reason: reason.to_string(),
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
        name: spec.name().to_owned(),
        batch: layout,
        batch_bytes,
        prefetch: spec.loader().prefetch,
        ring_bytes: batch_bytes.saturating_mul(spec.loader().prefetch as u64),
        class_weights: class_weights(&datasets, spec.classes()),
        datasets,
        excluded,
        warnings,
    };
    Ok(Planned { plan, sources })
}

/// The batch layout of a spec: inputs `[B, 1, …]`, then targets `[B, classes, …]`; 2 spatial
/// axes (`[B, C, Y, X]`) when the spec is 2D ([`Spec::is_2d`]).
pub fn batch_layout(spec: &Spec) -> BatchLayout {
    let spatial_dims = if spec.is_2d() { 2 } else { 3 };
    let inputs = spec.inputs().iter().map(|a| ArrayLayout {
        name: a.name.clone(),
        channels: 1,
        shape_vox: a.shape_vox,
        dtype: a.dtype,
        spatial_dims,
    });
    let targets = spec.targets().iter().map(|a| ArrayLayout {
        name: a.name.clone(),
        channels: spec.classes().len(),
        shape_vox: a.shape_vox,
        dtype: a.dtype,
        spatial_dims,
    });
    BatchLayout {
        batch_size: spec.loader().batch_size,
        arrays: inputs.chain(targets).collect(),
    }
}

/// A `uint8` input copies stored values: the dataset's raw level must hold `uint8` data.
fn check_uint8_sources(
    spec: &Spec,
    origin: &str,
    plan: &DatasetPlan,
    sources: &DatasetSources,
) -> Result<(), PlanError> {
    for (array, lp) in spec.inputs().iter().zip(&plan.inputs) {
        let level = &sources.raw.levels[lp.level];
        if array.dtype == cellmap_schema::OutputDtype::Uint8 && level.dtype != crate::store::SourceDtype::U8 {
            return Err(PlanError::Uint8Source {
                origin: origin.to_owned(),
                array: array.name.clone(),
                location: level.array_location().to_string(),
                source_dtype: level.dtype,
            });
        }
    }
    Ok(())
}
