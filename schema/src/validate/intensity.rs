//! Checks of `normalize` (in the transform lists and per dataset) and of what it may apply to.

use super::Checker;
use crate::raw::{RawNormalizeForm, RawScale};
use crate::spec::{ArraySpec, DatasetSpec, OutputDtype, ValueTransform};
use crate::yaml::escape_segment;

/// The validated `normalize` at `pointer` (the `normalize` value); `scale: dtype` is an error outside
/// the input transforms (`for_inputs` false).
pub(super) fn normalize(n: &RawNormalizeForm, pointer: &str, for_inputs: bool, c: &mut Checker<'_>) -> ValueTransform {
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
        RawScale::Dtype(_) => {
            if !for_inputs {
                let at = match n {
                    RawNormalizeForm::Dtype(_) => pointer.to_owned(),
                    RawNormalizeForm::Params(_) => format!("{pointer}/scale"),
                };
                let d = c.at(&at, "`scale: dtype` applies to inputs only");
                c.push(
                    d.expected("a number")
                        .hint("write the target's scale as a number, e.g. `scale: 255`"),
                );
            }
            ValueTransform::NormalizeDtype { shift: params.shift }
        }
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
