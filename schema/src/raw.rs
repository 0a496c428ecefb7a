//! The spec exactly as written in YAML: [`RawSpec`] and its parts.
//!
//! These types mirror the document one to one (serde + schemars). They carry the
//! documentation and defaults that end up in `cellmap.schema.json`; the checks that
//! the schema cannot express live in `validate.rs`, which turns a `RawSpec` into a
//! [`crate::Spec`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod loader;
mod normalize;

pub use loader::{RawLoader, RawOnError};
pub use normalize::{RawDtypeRange, RawNormalize, RawNormalizeForm, RawScale};

/// A cellmap-compile spec as written in YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "cellmap-compile spec")]
pub struct RawSpec {
    /// Spec format version. Required; must be `1`.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// Name of the spec; becomes the generated crate's name. Lowercase letters, digits, `_` and `-`,
    /// starting with a letter.
    pub name: String,
    /// Classes in channel order (the target tensor has one channel per class). Unique. Default: none,
    /// a raw-only spec (self-supervised training): then there are no `arrays.targets`, the sampling
    /// weighting is `uniform` and the datasplit's label columns are not read.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Mutually exclusive classes: `{mito: [er, nuc]}` means that where `er` or `nuc` is present, `mito` is
    /// absent (used to infer true negatives in crops where a class is not annotated). Made symmetric with a
    /// warning. Default: no relations.
    #[serde(default)]
    pub class_relations: BTreeMap<String, Vec<String>>,
    /// Input and target arrays.
    pub arrays: RawArrays,
    /// Where the data is: a datasplit CSV or inline datasets.
    pub data: RawData,
    /// How sample centres are drawn. Default: every key at its default.
    #[serde(default)]
    pub sampling: RawSampling,
    /// Spatial and value augmentation. Default: no spatial transforms, no input transforms, targets
    /// binarized at 0.
    #[serde(default)]
    pub augment: RawAugment,
    /// Loader settings. Default: every key at its default.
    #[serde(default)]
    pub loader: RawLoader,
    /// Tiled inference: what to read, where and how to write the predictions. Default: none.
    #[serde(default)]
    pub predict: Option<RawPredict>,
}

/// Input and target arrays, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawArrays {
    /// Input arrays (one batch field each), name → shape and scale. Several inputs at different scales
    /// are allowed. At least one.
    #[schemars(length(min = 1))]
    pub inputs: BTreeMap<String, RawArray>,
    /// Target arrays (one channel per class each), name → shape and scale. At least one when the spec
    /// has `classes`; none (omit the key) in a raw-only spec.
    #[serde(default)]
    pub targets: BTreeMap<String, RawArray>,
}

/// One array: a crop of `shape` voxels at `scale` nm per voxel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawArray {
    /// Crop shape in voxels, `[z, y, x]`, or `[y, x]` for a 2D array (z shape 1). Each in `[1, 1048576]`.
    #[schemars(length(min = 2, max = 3), inner(range(min = 1, max = 1_048_576)))]
    pub shape: Vec<u64>,
    /// Voxel size in nm, `[z, y, x]`, or `[y, x]` for a 2D array (the z voxel size is then the y one).
    /// Finite and positive; same length as `shape`.
    #[schemars(length(min = 2, max = 3))]
    pub scale: Vec<f64>,
    /// Interpolation when resampling or rotating. Default: `linear` for inputs, `nearest` for targets.
    #[serde(default)]
    pub interpolation: Option<RawInterpolation>,
    /// Element type of the batch tensor. Default: `float32`.
    #[serde(default)]
    pub dtype: RawDtype,
}

/// Interpolation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawInterpolation {
    /// Nearest neighbour.
    Nearest,
    /// Trilinear.
    Linear,
}

/// Element type of a batch tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawDtype {
    /// 32-bit float.
    #[default]
    Float32,
    /// 16-bit float (IEEE binary16: 11-bit precision, values up to 65504).
    Float16,
    /// 16-bit brain float (float32's range, 8-bit precision).
    Bfloat16,
    /// 8-bit unsigned. Inputs: the stored `uint8` values, without value transforms. Targets: `0`
    /// and `1`, with `255` for unknown voxels (NaN in float batches); every class needs `binarize`
    /// as its last target transform.
    Uint8,
}

/// Where the data is: exactly one of `csv` and `datasets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawData {
    /// cellmap-data's datasplit CSV (no header; 5 columns `split,raw_zarr_root,raw_ds_path,gt_zarr_root,
    /// gt_ds_path_with_[classes]` or 3 columns `split,raw_path,gt_path`). A relative path resolves against
    /// the spec file's folder. Default: none (then `datasets` is required).
    #[serde(default)]
    pub csv: Option<String>,
    /// Inline datasets, in order. Default: none (then `csv` is required).
    #[serde(default)]
    pub datasets: Option<Vec<RawDataset>>,
}

/// One inline dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDataset {
    /// The split it belongs to.
    pub split: RawSplit,
    /// Path (or URL) of the raw multiscale group; relative paths resolve against the spec file's folder.
    pub raw: String,
    /// Path template of the label groups, containing `{class}` (or a `[mito,er]` bracket list naming the
    /// annotated classes). Default: none (a raw-only dataset).
    #[serde(default)]
    pub targets: Option<String>,
    /// Classes annotated in this crop. Default: the bracket list of `targets` if any, else discovered on
    /// disk (a class is annotated when its group exists).
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// This dataset's intensity normalization, e.g. `{shift: 0, scale: 65535}` or `dtype`: it replaces
    /// the `normalize` entries of `augment.inputs` and `augment.validate.inputs` for this dataset's
    /// inputs (or runs first when those lists have none). Targets are not affected. Default: none (the
    /// spec's transforms as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<RawNormalizeForm>,
}

/// A data split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawSplit {
    /// Training data.
    Train,
    /// Validation data.
    Validate,
    /// Held-out test data: read like validation data (tiles, no augmentation).
    Test,
}

fn default_iterations() -> u64 {
    1000
}

fn default_locality() -> u32 {
    1
}

fn default_true() -> bool {
    true
}

/// How sample centres are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSampling {
    /// Seed of every random choice. Default: `0`.
    #[serde(default)]
    #[schemars(range(max = u64::MAX))]
    pub seed: u64,
    /// Samples (not batches) per epoch per rank. Default: `1000`.
    #[serde(default = "default_iterations")]
    #[schemars(range(min = 1, max = u64::MAX))]
    pub iterations_per_epoch: u64,
    /// How training centres are spread over datasets. Default: `uniform`.
    #[serde(default)]
    pub weighting: RawWeighting,
    /// Whether crops may extend beyond the data: a bool for both splits, or `{train: bool, validate: bool}`.
    /// Default: `false`.
    #[serde(default)]
    pub pad: RawPad,
    /// Values of voxels outside the data. Default: inputs `0`, targets `nan` (unknown).
    #[serde(default)]
    pub pad_value: RawPadValue,
    /// Validation iterates non-overlapping tiles (`true`) or random centres (`false`). Default: `true`.
    #[serde(default = "default_true")]
    pub validation_tiling: bool,
    /// Draw a fraction of training centres on foreground voxels of one class. Default: none.
    #[serde(default)]
    pub foreground: Option<RawForeground>,
    /// 2D specs only (every array's shape `[1, h, w]` or `[h, w]`): the world axis a sample is a plane
    /// of constant value of. `z`: rows world y, columns world x; `y`: rows z, columns x; `x`: rows z,
    /// columns y; `any`: one of the three per training sample, uniformly (validation reads `z`). The
    /// voxel size stays `[z, y, x]` in world axes. Default: `z`.
    #[serde(default)]
    #[schemars(example = RawSliceAxis::Any)]
    pub slice_axis: RawSliceAxis,
    /// Training draws of one crop read together, in `[1, 4096]`: the epoch's draws are reordered so that
    /// `locality` consecutive draws of a crop fill one batch position over `locality` consecutive batches
    /// (a batch still mixes `batch_size` crop visits). Same draws per epoch, fewer chunk-cache misses,
    /// less crop diversity within `locality` batches. Default: `1` (draw order unchanged).
    #[serde(default = "default_locality")]
    #[schemars(range(min = 1, max = 4096), example = 8)]
    pub locality: u32,
}

/// The world axis 2D samples are slices of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawSliceAxis {
    /// Planes of constant z (rows y, columns x).
    #[default]
    Z,
    /// Planes of constant y (rows z, columns x).
    Y,
    /// Planes of constant x (rows z, columns y).
    X,
    /// One of z, y, x per training sample.
    Any,
}

impl Default for RawSampling {
    fn default() -> Self {
        RawSampling {
            seed: 0,
            iterations_per_epoch: default_iterations(),
            weighting: RawWeighting::default(),
            pad: RawPad::default(),
            pad_value: RawPadValue::default(),
            validation_tiling: true,
            foreground: None,
            slice_axis: RawSliceAxis::Z,
            locality: 1,
        }
    }
}

/// Dataset weighting for training centres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawWeighting {
    /// Uniform over all datasets, weighted by their sample-grid sizes.
    #[default]
    Uniform,
    /// Least-seen annotated class first (cellmap-data 2026.3).
    ClassBalanced,
    /// Dataset weights from foreground/background voxel counts (cellmap-data 2025).
    VoxelWeighted,
}

/// Padding: one bool for both splits, or one per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawPad {
    /// The same for both splits.
    Both(bool),
    /// Per split.
    PerSplit(RawPadPerSplit),
}

impl Default for RawPad {
    fn default() -> Self {
        RawPad::Both(false)
    }
}

/// Padding per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPadPerSplit {
    /// Pad training crops. Default: `false`.
    #[serde(default)]
    pub train: bool,
    /// Pad validation and test crops. Default: `false`.
    #[serde(default)]
    pub validate: bool,
}

/// Values of voxels outside the data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPadValue {
    /// Value of input voxels outside the data. Default: `0`.
    #[serde(default = "RawFloat::zero")]
    pub inputs: RawFloat,
    /// Value of target voxels outside the data. Default: `nan` (unknown).
    #[serde(default = "RawFloat::nan")]
    pub targets: RawFloat,
}

impl Default for RawPadValue {
    fn default() -> Self {
        RawPadValue {
            inputs: RawFloat::zero(),
            targets: RawFloat::nan(),
        }
    }
}

/// A number, or `nan` (also `.nan`, `NaN`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawFloat {
    /// A finite number.
    Number(f64),
    /// Not a number.
    Nan(RawNan),
}

impl RawFloat {
    fn zero() -> Self {
        RawFloat::Number(0.0)
    }

    fn nan() -> Self {
        RawFloat::Nan(RawNan::Nan)
    }

    /// The value as `f32` (NaN for the `nan` spellings).
    pub fn to_f32(self) -> f32 {
        match self {
            RawFloat::Number(v) => v as f32,
            RawFloat::Nan(_) => f32::NAN,
        }
    }
}

/// Spellings of NaN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RawNan {
    /// `nan`
    #[serde(rename = "nan")]
    Nan,
    /// `.nan` (YAML's spelling)
    #[serde(rename = ".nan")]
    DotNan,
    /// `NaN`
    #[serde(rename = "NaN")]
    CapitalNan,
}

/// Foreground-biased centres.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawForeground {
    /// The class whose foreground voxels are used; one of `classes`.
    pub class: String,
    /// Fraction of training centres drawn on foreground, in `[0, 1]`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub fraction: f64,
}

/// Spatial and value augmentation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAugment {
    /// Spatial transforms, drawn once per training sample and applied to all its arrays. Default: none.
    #[serde(default)]
    pub spatial: RawSpatial,
    /// Value transforms on every input of a training sample, in order. Default: none.
    #[serde(default)]
    pub inputs: Vec<RawTransform>,
    /// Value transforms on every target class of a training sample, in order. Default:
    /// `[{binarize: {threshold: 0}}]`.
    #[serde(default)]
    pub targets: Option<Vec<RawTransform>>,
    /// Per-class target transforms, replacing `targets` for that class. Keys are classes. Validation
    /// samples apply only the deterministic entries of each list. Default: none.
    #[serde(default)]
    pub per_class: BTreeMap<String, Vec<RawTransform>>,
    /// Value transforms of validation samples. Default: the deterministic entries (`normalize`,
    /// `nan_to_num`, `binarize`, `gaussian_blur`) of `inputs`, `targets` and `per_class`; the random ones
    /// (`gaussian_noise`, `random_contrast`, `random_gamma`) are training-only.
    #[serde(default)]
    pub validate: RawValidateTransforms,
}

/// Value transforms of validation samples; a list given here may contain random transforms.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawValidateTransforms {
    /// Value transforms on every input of a validation sample, in order. Default: the deterministic
    /// entries of `augment.inputs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<RawTransform>>,
    /// Value transforms on every target class of a validation sample, in order (a class listed in
    /// `augment.per_class` keeps the deterministic entries of its own list). Default: the deterministic
    /// entries of `augment.targets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<RawTransform>>,
}

/// Spatial transforms.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSpatial {
    /// Flip probability per axis, each in `[0, 1]`. Default: no flips.
    #[serde(default)]
    pub mirror: RawMirror,
    /// Axes that may be permuted among themselves, e.g. `[y, x]`. Default: none.
    #[serde(default)]
    pub transpose: Vec<RawAxis>,
    /// Rotation angle range `[low, high]` in degrees about each axis. Default: no rotation.
    #[serde(default)]
    pub rotate: RawRotate,
    /// Elastic deformation. Default: none.
    #[serde(default)]
    pub elastic: Option<RawElastic>,
}

/// Flip probability per axis.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMirror {
    /// Probability of flipping z, in `[0, 1]`. Default: `0`.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub z: f64,
    /// Probability of flipping y, in `[0, 1]`. Default: `0`.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub y: f64,
    /// Probability of flipping x, in `[0, 1]`. Default: `0`.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub x: f64,
}

/// An axis name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawAxis {
    /// Slices.
    Z,
    /// Rows.
    Y,
    /// Columns.
    X,
}

/// Rotation angle ranges in degrees, per axis.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRotate {
    /// Angle range `[low, high]` in degrees about z (in the y-x plane), `low ≤ high`. Default: none.
    #[serde(default)]
    pub z: Option<[f64; 2]>,
    /// Angle range `[low, high]` in degrees about y, `low ≤ high`. Default: none.
    #[serde(default)]
    pub y: Option<[f64; 2]>,
    /// Angle range `[low, high]` in degrees about x, `low ≤ high`. Default: none.
    #[serde(default)]
    pub x: Option<[f64; 2]>,
}

fn default_probability() -> f64 {
    1.0
}

/// Elastic deformation from a random control-point grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawElastic {
    /// Control-point spacing in nm, `[z, y, x]` or `[y, x]`; positive.
    #[schemars(length(min = 2, max = 3))]
    pub spacing: Vec<f64>,
    /// Standard deviation of control-point displacements in nm, ≥ 0.
    #[schemars(range(min = 0.0))]
    pub sigma: f64,
    /// Probability that a sample is deformed, in `[0, 1]`. Default: `1`.
    #[serde(default = "default_probability")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub probability: f64,
}

/// One value transform: a single-key mapping such as `{normalize: {shift: 0, scale: 255}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawTransform {
    /// `x ← (x − shift) / scale`, with numbers or from the source dtype's range (`normalize: dtype`).
    Normalize(RawNormalizeForm),
    /// `x ← 1 if x > threshold else 0`; NaN stays NaN.
    Binarize(RawBinarize),
    /// Replace NaN and infinities.
    NanToNum(RawNanToNum),
    /// Add Gaussian noise per voxel.
    GaussianNoise(RawGaussianNoise),
    /// `x ← r·x + (1 − r)·mean(x)`, `r ~ U(range)`, clamped to `[0, 1]`.
    RandomContrast(RawRange),
    /// `x ← clamp(x, 0, 1)^g`, `g ~ U(range)`.
    RandomGamma(RawRange),
    /// Separable Gaussian blur with replicate padding.
    GaussianBlur(RawGaussianBlur),
}

/// Parameters of `binarize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBinarize {
    /// Voxels above it become 1, the others 0. Default: `0`.
    #[serde(default)]
    pub threshold: f64,
}

/// Parameters of `nan_to_num`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNanToNum {
    /// Replacement for NaN. Default: `0`.
    #[serde(default)]
    pub nan: f64,
    /// Replacement for +∞. Default: none (kept).
    #[serde(default)]
    pub posinf: Option<f64>,
    /// Replacement for −∞. Default: none (kept).
    #[serde(default)]
    pub neginf: Option<f64>,
}

fn default_noise_std() -> f64 {
    0.1
}

/// Parameters of `gaussian_noise`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGaussianNoise {
    /// Mean of the noise. Default: `0`.
    #[serde(default)]
    pub mean: f64,
    /// Standard deviation of the noise, ≥ 0. Default: `0.1`.
    #[serde(default = "default_noise_std")]
    #[schemars(range(min = 0.0))]
    pub std: f64,
}

fn default_range() -> [f64; 2] {
    [0.5, 1.5]
}

/// Parameters of `random_contrast` and `random_gamma`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRange {
    /// Range `[low, high]` the factor is drawn from, `0 < low ≤ high`. Default: `[0.5, 1.5]`.
    #[serde(default = "default_range")]
    pub range: [f64; 2],
}

/// Parameters of `gaussian_blur`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGaussianBlur {
    /// Sigma in voxels: one number for every axis, or `[z, y, x]` (`[y, x]`: no blur along z); each ≥ 0.
    pub sigma: RawSigma,
    /// Kernel radius in voxels (kernel size `2r+1`), at most 1024. Default: `ceil(3·max sigma)`.
    #[serde(default)]
    #[schemars(range(max = 1024))]
    pub radius: Option<u32>,
}

/// A blur sigma: one value or one per axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawSigma {
    /// The same sigma along every axis.
    Isotropic(f64),
    /// Per axis, `[z, y, x]` or `[y, x]`.
    PerAxis(#[schemars(length(min = 2, max = 3))] Vec<f64>),
}

fn default_predict_output() -> String {
    "predictions.zarr/{dataset}/{class}".to_owned()
}

/// Tiled inference: the model runs on tiles of the region, its valid output is written into OME-NGFF
/// groups (one multiscale group per written class).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPredict {
    /// Raw multiscale groups to predict on (relative paths resolve against the spec file's folder).
    /// Not allowed with `region: validation` (which predicts on the validation datasets).
    /// Default: the distinct raw groups of the spec's datasets, in order.
    #[serde(default)]
    pub raw: Option<Vec<String>>,
    /// Input arrays fed to the model, names from `arrays.inputs`. Default: every input array.
    #[serde(default)]
    pub inputs: Option<Vec<String>>,
    /// Output group path template; `{dataset}` becomes the raw container's name (e.g. `jrc_hela-2`,
    /// suffixed `_N` when names repeat) and `{class}` the class name. `{class}` is required when more than
    /// one class is written. A relative path resolves against the spec file's folder.
    /// Default: `predictions.zarr/{dataset}/{class}`.
    #[serde(default = "default_predict_output")]
    pub output: String,
    /// Classes the model emits, in channel order (may include classes not written). Default: `classes`.
    #[serde(default)]
    pub model_classes: Option<Vec<String>>,
    /// Classes written, each one of `model_classes`. Default: every model class.
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Output voxel size in nm, `[z, y, x]` or `[y, x]`. Default: the first target array's `scale`.
    #[serde(default)]
    #[schemars(length(min = 2, max = 3))]
    pub scale: Option<Vec<f64>>,
    /// Element type written. Default: `float32`.
    #[serde(default)]
    pub dtype: RawPredictDtype,
    /// Zarr format of the output: `2` (OME-NGFF 0.4) or `3` (OME-NGFF 0.5). Default: `2`.
    #[serde(default = "default_zarr_format")]
    #[schemars(range(min = 2, max = 3))]
    pub zarr_format: u8,
    /// The region covered: `raw` (the whole raw volume), `validation` (each validation crop) or
    /// `{bounds_nm: [[z0, y0, x0], [z1, y1, x1]]}` (a world box in nm). Default: `raw`.
    #[serde(default)]
    pub region: RawRegion,
    /// Output tile shape in voxels, `[z, y, x]` or `[y, x]`; also the chunk shape of the output arrays.
    /// Each in `[1, 65536]`. Default: the first target array's `shape`.
    #[serde(default)]
    #[schemars(length(min = 2, max = 3), inner(range(min = 1, max = 65_536)))]
    pub tile: Option<Vec<u64>>,
    /// Input voxels read beyond the output tile on each side, `[z, y, x]` or `[y, x]` (the same count for
    /// every input array), each in `[0, 65536]`. Default: `[0, 0, 0]`.
    #[serde(default)]
    #[schemars(length(min = 2, max = 3), inner(range(max = 65_536)))]
    pub context: Option<Vec<u64>>,
}

fn default_zarr_format() -> u8 {
    2
}

/// Element type of predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawPredictDtype {
    /// 32-bit float, written as the model emits it.
    #[default]
    Float32,
    /// 8-bit unsigned: `round(clamp(x, 0, 1) · 255)`.
    Uint8,
}

/// The region predictions cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawRegion {
    /// `raw` or `validation`.
    Named(RawRegionName),
    /// A world box.
    Bounds(RawBounds),
}

impl Default for RawRegion {
    fn default() -> Self {
        RawRegion::Named(RawRegionName::Raw)
    }
}

/// A named region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawRegionName {
    /// The whole raw volume.
    Raw,
    /// Each validation crop's labelled box.
    Validation,
}

/// A world box in nm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBounds {
    /// `[[z0, y0, x0], [z1, y1, x1]]`: the lower and upper corners in nm (`[[y0, x0], [y1, x1]]` for 2D);
    /// finite, lower < upper on every axis.
    pub bounds_nm: [Vec<f64>; 2],
}
