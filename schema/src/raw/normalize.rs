//! The YAML forms of `normalize`: numbers, or the value range of the source array's dtype.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `normalize`'s value: `dtype` (the source dtype's range onto `[0, 1]`, the same as `{scale: dtype}`)
/// or `{shift, scale}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(example = RawNormalizeForm::Dtype(RawDtypeRange::Dtype))]
#[schemars(example = RawNormalize { shift: Some(0.0), scale: RawScale::Number(255.0) })]
pub enum RawNormalizeForm {
    /// `dtype`: the same as `{scale: dtype}`.
    Dtype(RawDtypeRange),
    /// `{shift, scale}`.
    Params(RawNormalize),
}

impl RawNormalizeForm {
    /// The parameters this form stands for (`dtype` is `{scale: dtype}`).
    pub fn params(&self) -> RawNormalize {
        match self {
            RawNormalizeForm::Dtype(_) => RawNormalize {
                shift: None,
                scale: RawScale::Dtype(RawDtypeRange::Dtype),
            },
            RawNormalizeForm::Params(p) => p.clone(),
        }
    }
}

/// Parameters of `normalize`: `x ← (x − shift) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNormalize {
    /// Subtracted first. Default: `0`, or with `scale: dtype` the dtype's minimum (`0` for unsigned
    /// integers and floats, e.g. `-32768` for `int16`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<f64>,
    /// Divided by: a non-zero number, or `dtype` for the value range of the source array's dtype, read
    /// per dataset from the level read (the raw level for inputs, each class's label level for
    /// targets: `0`/`255` masks become `0`/`1`) (`max − min`: `255` for `uint8`, `65535` for `uint16`,
    /// `4294967295` for `uint32`, `65535` for `int16` with shift `-32768`; `1` for floats, which are
    /// left as stored). Default: `1`.
    #[serde(default = "RawScale::one")]
    #[schemars(example = RawScale::Dtype(RawDtypeRange::Dtype), example = RawScale::Number(255.0))]
    pub scale: RawScale,
}

/// A `normalize` scale: a number, or `dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawScale {
    /// A non-zero divisor.
    Number(f64),
    /// The value range of the source dtype.
    Dtype(RawDtypeRange),
}

impl RawScale {
    fn one() -> Self {
        RawScale::Number(1.0)
    }
}

/// The keyword `dtype`: a value taken from the source array's dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RawDtypeRange {
    /// `dtype`
    #[serde(rename = "dtype")]
    Dtype,
}
