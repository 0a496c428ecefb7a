//! The validated, resolved spec: what the runtime and the code generator consume.
//!
//! A [`Spec`] can only be obtained through validation (see the crate root), so every
//! value in it has been checked: shapes are positive, voxel sizes finite and
//! positive, classes unique, relations symmetric, probabilities in `[0, 1]`, and
//! datasplit paths resolved against the spec file's folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod intensity;
mod normalized;

pub use normalized::NormalizedError;
pub(crate) use normalized::invariant_errors;

/// Spatial axes in storage order. Every shape and voxel size in a [`Spec`] is `[z, y, x]`.
pub const AXES: [Axis; 3] = [Axis::Z, Axis::Y, Axis::X];

/// One spatial axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    /// The slowest axis (slices).
    Z,
    /// Rows.
    Y,
    /// Columns, the fastest axis.
    X,
}

impl Axis {
    /// Position of the axis in a `[z, y, x]` array.
    pub fn index(self) -> usize {
        match self {
            Axis::Z => 0,
            Axis::Y => 1,
            Axis::X => 2,
        }
    }

    /// The axis' lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Axis::Z => "z",
            Axis::Y => "y",
            Axis::X => "x",
        }
    }
}

/// A validated spec. Build one with [`crate::load`] or [`crate::parse`] (from YAML), or
/// [`Spec::from_normalized`] (from the text of [`Spec::to_normalized`], as generated crates embed it).
///
/// Its fields are private so that every `Spec` is a checked one: read them through the accessors.
/// Variations of a spec (other settings, other data) are written as YAML and validated again; the
/// runtime's per-run overrides (the loader's seed, rank, resume position) live in its options, not here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    pub(crate) version: u32,
    pub(crate) name: String,
    pub(crate) source: PathBuf,
    pub(crate) classes: Vec<String>,
    pub(crate) class_relations: BTreeMap<String, BTreeSet<String>>,
    pub(crate) inputs: Vec<ArraySpec>,
    pub(crate) targets: Vec<ArraySpec>,
    pub(crate) datasets: Vec<DatasetSpec>,
    pub(crate) sampling: Sampling,
    pub(crate) augment: Augment,
    pub(crate) loader: LoaderSpec,
    pub(crate) predict: Option<Predict>,
}

impl Spec {
    /// Spec format version (currently always 1).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Name of the spec; becomes the generated crate's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The spec file this was read from (absolute when read from disk).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Classes in channel order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Mutual exclusions, made symmetric: `relations[a]` contains `b` iff `relations[b]` contains `a`.
    /// A class without ground truth in a crop is 0 where any related class is present there.
    pub fn class_relations(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.class_relations
    }

    /// Input arrays, sorted by name.
    pub fn inputs(&self) -> &[ArraySpec] {
        &self.inputs
    }

    /// Target arrays, sorted by name. Each has one channel per class.
    pub fn targets(&self) -> &[ArraySpec] {
        &self.targets
    }

    /// Datasets of every split: train, validate, then test, each split in file order.
    pub fn datasets(&self) -> &[DatasetSpec] {
        &self.datasets
    }

    /// Datasets of one split, in file order (their `index` runs from 0).
    pub fn datasets_of(&self, split: Split) -> impl Iterator<Item = &DatasetSpec> {
        self.datasets.iter().filter(move |d| d.split == split)
    }

    /// How sample centres are drawn.
    pub fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    /// Spatial and value augmentation.
    pub fn augment(&self) -> &Augment {
        &self.augment
    }

    /// Loader settings.
    pub fn loader(&self) -> &LoaderSpec {
        &self.loader
    }

    /// The same spec reading through the training cache in `dir` (an absolute local folder), or
    /// through none: what `bench --training-cache` and the Python loader's `training_cache`
    /// argument set over the spec's `loader.training_cache`.
    #[must_use]
    pub fn with_training_cache(mut self, dir: Option<String>) -> Spec {
        self.loader.training_cache = dir;
        self
    }

    /// Tiled inference settings, when the spec has a `predict` section.
    pub fn predict(&self) -> Option<&Predict> {
        self.predict.as_ref()
    }

    /// True when every input and target array is 2D ([`ArraySpec::is_2d`]): batches are then
    /// `[B, C, H, W]` and `sampling.slice_axis` may slice along y or x.
    pub fn is_2d(&self) -> bool {
        !self.inputs.is_empty() && self.inputs.iter().chain(&self.targets).all(ArraySpec::is_2d)
    }
}

/// One input or target array: a crop of `shape_vox` voxels at `voxel_size_nm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArraySpec {
    /// Name as written in the spec (the batch field name).
    pub name: String,
    /// Crop shape in voxels, `[z, y, x]`. A 2D array has `shape_vox[0] == 1`.
    pub shape_vox: [usize; 3],
    /// Voxel size in nm, `[z, y, x]`; finite and positive.
    pub voxel_size_nm: [f64; 3],
    /// Interpolation used when resampling or rotating.
    pub interpolation: Interpolation,
    /// Element type of the batch tensor.
    pub dtype: OutputDtype,
}

impl ArraySpec {
    /// Number of voxels of one crop.
    pub fn voxels(&self) -> usize {
        self.shape_vox.iter().product()
    }

    /// True for a 2D array (one voxel along the slice axis: `shape_vox[0] == 1`).
    pub fn is_2d(&self) -> bool {
        self.shape_vox[0] == 1
    }
}

/// Interpolation mode for resampling and rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Nearest neighbour (the default for targets).
    Nearest,
    /// Trilinear (the default for inputs).
    Linear,
}

/// Element type of a batch tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputDtype {
    /// 32-bit float (the default).
    Float32,
    /// 16-bit float (stored as IEEE binary16); NaN kept.
    Float16,
    /// 16-bit brain float (float32's exponent, 8-bit significand); NaN kept.
    Bfloat16,
    /// 8-bit unsigned: an input's stored `uint8` values (no value transforms), or a binarized
    /// target's `0`/`1` with [`OutputDtype::UNKNOWN_U8`] where a float batch has NaN.
    Uint8,
}

impl OutputDtype {
    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            OutputDtype::Float32 => 4,
            OutputDtype::Float16 | OutputDtype::Bfloat16 => 2,
            OutputDtype::Uint8 => 1,
        }
    }

    /// The value a `uint8` target holds where a float target holds NaN (unknown: the class is
    /// not annotated in the crop, or the voxel lies outside the data).
    pub const UNKNOWN_U8: u8 = 255;

    /// Every dtype, in schema order.
    pub const ALL: [OutputDtype; 4] = [
        OutputDtype::Float32,
        OutputDtype::Float16,
        OutputDtype::Bfloat16,
        OutputDtype::Uint8,
    ];

    /// The spec's name of the dtype.
    pub fn name(self) -> &'static str {
        match self {
            OutputDtype::Float32 => "float32",
            OutputDtype::Float16 => "float16",
            OutputDtype::Bfloat16 => "bfloat16",
            OutputDtype::Uint8 => "uint8",
        }
    }
}

impl std::fmt::Display for OutputDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A data split. `validate` and `test` are read the same way (tiles when `validation_tiling`, no spatial
/// augmentation, the validation value transforms, the validation padding); they differ only in which
/// datasets they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training data.
    Train,
    /// Validation data.
    Validate,
    /// Held-out test data (the `test` rows of CellMap datasplits).
    Test,
}

impl Split {
    /// Every split, in dataset order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Validate, Split::Test];

    /// The split's name as written in specs and CSVs.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validate => "validate",
            Split::Test => "test",
        }
    }

    /// The split of a name: `train` (also `training`), `validate` (also `val`, `validation`) or `test`
    /// (also `testing`), case-insensitive, surrounding spaces ignored.
    ///
    /// ```
    /// use cellmap_schema::Split;
    /// assert_eq!(Split::from_name(" Val"), Some(Split::Validate));
    /// assert_eq!(Split::from_name("test"), Some(Split::Test));
    /// assert_eq!(Split::from_name("holdout"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Split> {
        match name.trim().to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Split::Train),
            "validate" | "val" | "validation" => Some(Split::Validate),
            "test" | "testing" => Some(Split::Test),
            _ => None,
        }
    }

    /// Whether samples of this split are training samples: random centres, spatial augmentation and
    /// every value transform. `validate` and `test` samples are measured on the data as it is.
    pub fn is_train(self) -> bool {
        match self {
            Split::Train => true,
            Split::Validate | Split::Test => false,
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One dataset: a raw volume and (optionally) one labelled crop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSpec {
    /// The split it belongs to.
    pub split: Split,
    /// Position within its split, from 0, in file order.
    pub index: usize,
    /// Path of the raw multiscale group (absolute, or a URL).
    pub raw: String,
    /// The labelled crop, if any.
    pub targets: Option<TargetTemplate>,
    /// Where this dataset was declared, for error messages (`file:line:column`).
    pub origin: String,
    /// This dataset's own normalization ([`ValueTransform::Normalize`] or
    /// [`ValueTransform::NormalizeDtype`]), from its inline `normalize` or its CSV row's `shift,scale`
    /// columns: it replaces the `normalize` entries of the input transforms for its inputs (see
    /// [`Augment::inputs_of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<ValueTransform>,
}

/// Where the label groups of one crop live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetTemplate {
    /// Path template containing `{class}`, e.g. `/data/x.zarr/recon-1/labels/groundtruth/crop12/{class}`.
    pub template: String,
    /// Classes annotated in this crop (from a `[mito,er]` bracket list or an explicit list),
    /// or `None` when they are discovered on disk (a class is annotated when its group exists).
    pub annotated: Option<Vec<String>>,
}

impl TargetTemplate {
    /// The group path of one class.
    pub fn path_of(&self, class: &str) -> String {
        self.template.replace("{class}", class)
    }
}

/// How sample centres are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Seed of every random choice.
    pub seed: u64,
    /// Samples (not batches) per epoch per rank.
    pub iterations_per_epoch: u64,
    /// How datasets are weighted.
    pub weighting: Weighting,
    /// Foreground-biased centres, if any.
    pub foreground: Option<ForegroundBias>,
    /// Whether crops may extend beyond the data, per split.
    pub pad: PadPolicy,
    /// Value of input voxels outside the data.
    #[serde(deserialize_with = "normalized::nan_if_null")]
    pub pad_value_inputs: f32,
    /// Value of target voxels outside the data (NaN = unknown by default).
    #[serde(deserialize_with = "normalized::nan_if_null")]
    pub pad_value_targets: f32,
    /// Whether validation iterates non-overlapping tiles (true) or random centres (false).
    pub validation_tiling: bool,
    /// The world axis the samples of a 2D spec are slices of (always [`SliceAxis::Z`] for 3D specs).
    #[serde(default)]
    pub slice_axis: SliceAxis,
    /// Training draws of one crop read together (1: the draw order unchanged); see
    /// `sampling.locality` in the schema and the runtime's `sampler` module.
    #[serde(default = "normalized::one", skip_serializing_if = "normalized::is_one")]
    pub locality: u32,
}

/// The world axis the samples of a 2D spec (every array `[1, h, w]`) are slices of.
///
/// A spec's voxel size `[vz, vy, vx]` is in world axes whatever the slice axis, and its shape
/// `[1, h, w]` reads as (one voxel along the slice axis, `h` rows, `w` columns). Rows and columns are
/// the two other world axes in `z, y, x` order:
///
/// | slice axis | world shape | rows (voxel size) | columns (voxel size) |
/// |---|---|---|---|
/// | `z` | `[1, h, w]` | y (`vy`) | x (`vx`) |
/// | `y` | `[h, 1, w]` | z (`vz`) | x (`vx`) |
/// | `x` | `[h, w, 1]` | z (`vz`) | y (`vy`) |
///
/// Scale levels are chosen for `[vz, vy, vx]` as for 3D specs, so every slice axis reads the same level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SliceAxis {
    /// Planes of constant z.
    #[default]
    Z,
    /// Planes of constant y.
    Y,
    /// Planes of constant x.
    X,
    /// One of z, y and x per training sample, uniformly, drawn from the sample's key; validation
    /// and test samples are z-slices.
    Any,
}

impl SliceAxis {
    /// The one world axis of a fixed slice axis; `None` for [`SliceAxis::Any`].
    pub fn axis(self) -> Option<Axis> {
        match self {
            SliceAxis::Z => Some(Axis::Z),
            SliceAxis::Y => Some(Axis::Y),
            SliceAxis::X => Some(Axis::X),
            SliceAxis::Any => None,
        }
    }

    /// The lowercase name as written in the spec.
    pub fn name(self) -> &'static str {
        match self {
            SliceAxis::Any => "any",
            fixed => fixed.axis().map_or("any", Axis::name),
        }
    }
}

/// Dataset weighting for training centres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// Centres uniform over all datasets, weighted by their grid sizes.
    Uniform,
    /// cellmap-data 2026.3's greedy rule: least-seen annotated class first.
    ClassBalanced,
    /// cellmap-data 2025's dataset weights from foreground/background voxel counts.
    VoxelWeighted,
}

/// Draw a fraction of centres on foreground voxels of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForegroundBias {
    /// The class whose foreground voxels are used.
    pub class: String,
    /// Fraction of centres drawn on foreground, in `[0, 1]`.
    pub fraction: f64,
}

/// Padding per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PadPolicy {
    /// Pad training crops.
    pub train: bool,
    /// Pad validation (and test) crops.
    pub validate: bool,
}

impl PadPolicy {
    /// Whether crops of this split are padded (`test` follows `validate`).
    pub fn for_split(self, split: Split) -> bool {
        match split {
            Split::Train => self.train,
            Split::Validate | Split::Test => self.validate,
        }
    }
}

/// Spatial and value augmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Augment {
    /// Spatial transforms (training only).
    pub spatial: Spatial,
    /// Value transforms on every input of a training sample, in order.
    pub inputs: Vec<ValueTransform>,
    /// Value transforms on every target class of a training sample, in order (default: binarize at 0).
    pub targets: Vec<ValueTransform>,
    /// Per-class target transforms of training samples, replacing `targets` for that class.
    pub per_class: BTreeMap<String, Vec<ValueTransform>>,
    /// Value transforms of validation samples, resolved (see [`ValidationTransforms`]).
    pub validate: ValidationTransforms,
}

impl Augment {
    /// The value transforms on every input of a sample of `split` (`test` uses the validation ones).
    pub fn inputs_for(&self, split: Split) -> &[ValueTransform] {
        match split {
            Split::Train => &self.inputs,
            Split::Validate | Split::Test => &self.validate.inputs,
        }
    }

    /// The value transforms on class `class` of a target of a sample of `split` (`test` uses the
    /// validation ones).
    pub fn targets_for(&self, split: Split, class: &str) -> &[ValueTransform] {
        match split {
            Split::Train => self.targets_of(class),
            Split::Validate | Split::Test => self.validate.targets_of(class),
        }
    }

    /// The target transforms of one class in a training sample (`targets_for(Split::Train, class)`).
    pub fn targets_of(&self, class: &str) -> &[ValueTransform] {
        self.per_class.get(class).map_or(&self.targets, |v| v)
    }
}

/// The value transforms of validation samples, resolved from `augment.validate`: each list is the one
/// given there, or else the deterministic entries (see [`ValueTransform::is_random`]) of the training
/// list. Validation measures the model on the data as it is, so training noise stays out unless asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ValidationTransforms {
    /// On every input: `augment.validate.inputs`, else the deterministic entries of `augment.inputs`.
    pub inputs: Vec<ValueTransform>,
    /// On every target class without a `per_class` entry: `augment.validate.targets`, else the
    /// deterministic entries of `augment.targets`.
    pub targets: Vec<ValueTransform>,
    /// Per class: the deterministic entries of its `augment.per_class` list (same keys).
    pub per_class: BTreeMap<String, Vec<ValueTransform>>,
}

impl ValidationTransforms {
    /// The target transforms of one class.
    pub fn targets_of(&self, class: &str) -> &[ValueTransform] {
        self.per_class.get(class).map_or(&self.targets, |v| v)
    }
}

/// Spatial transforms, drawn once per sample and applied to every array of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Spatial {
    /// Flip probability per axis, `[z, y, x]`, each in `[0, 1]`.
    pub mirror: [f64; 3],
    /// Axes that may be permuted among themselves (empty or one axis: none).
    pub transpose: Vec<Axis>,
    /// Rotation angle range in degrees about each axis, `[z, y, x]`; `None` = no rotation about it.
    pub rotate: [Option<(f64, f64)>; 3],
    /// Elastic deformation, if any.
    pub elastic: Option<Elastic>,
}

impl Spatial {
    /// True when no spatial transform is configured.
    pub fn is_identity(&self) -> bool {
        self.mirror.iter().all(|p| *p == 0.0)
            && self.transpose.len() < 2
            && self.rotate.iter().all(Option::is_none)
            && self.elastic.is_none()
    }
}

/// Smooth random displacement from a control-point grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Elastic {
    /// Control-point spacing in nm, `[z, y, x]`.
    pub spacing_nm: [f64; 3],
    /// Standard deviation of control-point displacements, nm.
    pub sigma_nm: f64,
    /// Probability that a sample is deformed.
    pub probability: f64,
}

/// A value transform, applied voxel-wise (or as a filter, for blur) after spatial transforms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueTransform {
    /// `x ← (x − shift) / scale`.
    Normalize {
        /// Subtracted first.
        shift: f64,
        /// Divided by; non-zero.
        scale: f64,
    },
    /// `x ← (x − shift) / (max − min)` over the source array's dtype range `[min, max]` (`scale: dtype`):
    /// unsigned integers `x / max`, signed integers `(x − min) / (max − min)`, floats unchanged
    /// (`shift` 0, scale 1). The runtime resolves it per dataset into a [`ValueTransform::Normalize`]
    /// from the dtype of the raw level read.
    NormalizeDtype {
        /// Subtracted first; `None` = the dtype's minimum (0 for unsigned integers and floats).
        shift: Option<f64>,
    },
    /// `x ← 1 if x > threshold else 0`; NaN stays NaN.
    Binarize {
        /// Threshold.
        threshold: f64,
    },
    /// Replace NaN and infinities.
    NanToNum {
        /// Replacement for NaN.
        nan: f64,
        /// Replacement for +∞ (`None` keeps it).
        posinf: Option<f64>,
        /// Replacement for −∞ (`None` keeps it).
        neginf: Option<f64>,
    },
    /// `x ← x + N(mean, std)` per voxel.
    GaussianNoise {
        /// Mean.
        mean: f64,
        /// Standard deviation, ≥ 0.
        std: f64,
    },
    /// `x ← r·x + (1 − r)·mean(x)`, `r ~ U(range)`, then clamped to `[0, 1]`.
    RandomContrast {
        /// Range of `r`.
        range: (f64, f64),
    },
    /// `x ← clamp(x, 0, 1)^g`, `g ~ U(range)`.
    RandomGamma {
        /// Range of `g`, positive.
        range: (f64, f64),
    },
    /// Separable Gaussian blur, replicate padding at the crop edge.
    GaussianBlur {
        /// Sigma in voxels per axis `[z, y, x]` (0 = no blur along that axis).
        sigma_vox: [f64; 3],
        /// Kernel radius in voxels (kernel size `2r+1`).
        radius_vox: usize,
    },
}

impl ValueTransform {
    /// True for the transforms that draw random numbers (`gaussian_noise`, `random_contrast`,
    /// `random_gamma`): training-only unless `augment.validate` lists them. The others (`normalize`,
    /// `binarize`, `nan_to_num`, `gaussian_blur` with its fixed sigma) give the same output for the same
    /// input.
    pub fn is_random(&self) -> bool {
        match self {
            ValueTransform::GaussianNoise { .. }
            | ValueTransform::RandomContrast { .. }
            | ValueTransform::RandomGamma { .. } => true,
            ValueTransform::Normalize { .. }
            | ValueTransform::NormalizeDtype { .. }
            | ValueTransform::Binarize { .. }
            | ValueTransform::NanToNum { .. }
            | ValueTransform::GaussianBlur { .. } => false,
        }
    }
}

/// Where batch tensors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// Host memory.
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(usize),
}

/// What to do with a sample that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicy {
    /// Stop and return the error to the consumer.
    Fail,
    /// Replace the sample by another, count and log the event.
    SkipAndLog,
}

fn default_fetch_concurrency() -> usize {
    16
}

fn default_fetch_ahead() -> usize {
    4
}

/// Loader settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoaderSpec {
    /// Samples per batch, ≥ 1.
    pub batch_size: usize,
    /// Worker threads, ≥ 1.
    pub workers: usize,
    /// Batches in flight (ring slots), ≥ 1.
    pub prefetch: usize,
    /// Device of the batch tensors.
    pub device: Device,
    /// Pin host buffers (default: true for CUDA).
    pub pin_memory: bool,
    /// Byte budget of the shared decoded-chunk cache.
    pub cache_bytes: u64,
    /// Byte budget of the compressed tier (encoded chunk bytes kept in memory); `None`: the
    /// runtime's default, for remote stores only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_cache_bytes: Option<u64>,
    /// Chunks fetched and decoded at once by one read (the size of the loader's fetch pool), ≥ 1.
    #[serde(default = "default_fetch_concurrency")]
    pub fetch_concurrency: usize,
    /// Training batches whose chunks are fetched ahead into the cache (0 = off).
    #[serde(default = "default_fetch_ahead")]
    pub fetch_ahead: usize,
    /// Policy for unreadable samples.
    pub on_error: ErrorPolicy,
    /// The training cache's folder (absolute), when the spec names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_cache: Option<String>,
}

/// Tiled inference: read inputs around each output tile, run the model, write its valid output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predict {
    /// Raw multiscale groups to predict on (absolute paths or URLs), for [`PredictRegion::Raw`] and
    /// [`PredictRegion::Bounds`]; empty for [`PredictRegion::Validation`], which predicts on the
    /// validation datasets.
    pub raw: Vec<String>,
    /// Input arrays fed to the model: indices into [`Spec::inputs`], in spec order.
    pub inputs: Vec<usize>,
    /// Output group template with `{dataset}` and `{class}` placeholders (absolute or a URL).
    pub output: String,
    /// Classes the model emits, in channel order.
    pub model_classes: Vec<String>,
    /// Classes written: indices into `model_classes`, in the order given.
    pub classes: Vec<usize>,
    /// Output voxel size in nm, `[z, y, x]`.
    pub voxel_size_nm: [f64; 3],
    /// Element type written.
    pub dtype: PredictDtype,
    /// Zarr format of the output (2 or 3).
    pub zarr_format: u8,
    /// The region covered.
    pub region: PredictRegion,
    /// Output tile (and chunk) shape in voxels, `[z, y, x]`.
    pub tile_vox: [usize; 3],
    /// Input voxels read beyond the output tile on each side, `[z, y, x]`.
    pub context_vox: [usize; 3],
}

impl Predict {
    /// Names of the written classes, in write order.
    pub fn class_names(&self) -> impl Iterator<Item = &str> {
        self.classes
            .iter()
            .filter_map(|&c| self.model_classes.get(c).map(String::as_str))
    }
}

/// Element type of predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PredictDtype {
    /// 32-bit float, as the model emits it.
    Float32,
    /// 8-bit unsigned: `round(clamp(x, 0, 1) · 255)` (NaN → 0).
    Uint8,
}

impl PredictDtype {
    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            PredictDtype::Float32 => 4,
            PredictDtype::Uint8 => 1,
        }
    }
}

/// The region predictions cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictRegion {
    /// The whole raw volume (its finest level's extent).
    Raw,
    /// Each validation dataset's labelled box.
    Validation,
    /// A world box in nm.
    Bounds {
        /// Lower corner, `[z, y, x]`.
        lo_nm: [f64; 3],
        /// Upper corner, `[z, y, x]`.
        hi_nm: [f64; 3],
    },
}
