//! Checks of `normalize` (in the transform lists and per dataset) and of what it may apply to.

use super::Checker;
use crate::raw::{RawNormalizeForm, RawScale};
use crate::spec::{ArraySpec, DatasetSpec, OutputDtype, ValueTransform};
use crate::yaml::escape_segment;

/// The validated `normalize` at `pointer` (the `normalize` value). `scale: dtype` resolves per
/// dataset from the dtype of the array read: the raw level for inputs, each class's label level for
/// targets.
pub(super) fn normalize(n: &RawNormalizeForm, pointer: &str, c: &mut Checker<'_>) -> ValueTransform {
    let params = n.params();
    match params.scale {
        RawScale::Number(scale) => {
            if scale == 0.0 {
                let d = c.at(&format!("{pointer}/scale"), "`scale` is 0");
                c.push(d.expected("a non-zero divisor, or `dtype`"));
            }
            ValueTransform::Normalize {
                shift: params.shift.unwrap_or(0.0),
                scale,
            }
        }
        RawScale::Dtype(_) => ValueTransform::NormalizeDtype { shift: params.shift },
    }
}

/// A `uint8` input holds the stored values: no dataset may normalize it.
pub(super) fn check_uint8_inputs(inputs: &[ArraySpec], datasets: &[DatasetSpec], c: &mut Checker<'_>) {
    let Some(dataset) = datasets.iter().find(|d| d.normalize.is_some()) else {
        return;
    };
    for i in inputs.iter().filter(|i| i.dtype == OutputDtype::Uint8) {
        let d = c.at(
            &format!("/arrays/inputs/{}/dtype", escape_segment(&i.name)),
            format!(
                "a `uint8` input cannot be normalized, and the dataset at {} has its own `normalize`",
                dataset.origin
            ),
        );
        c.push(
            d.expected("`float32` or `float16`")
                .hint("use a float dtype, or remove the dataset's `normalize` (or its CSV `shift,scale` columns)"),
        );
    }
}
