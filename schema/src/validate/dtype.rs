//! Checks of the batch element types: what a `uint8` array can hold.

use super::Checker;
use crate::spec::{ArraySpec, Augment, OutputDtype, Sampling, Split, ValueTransform};
use crate::yaml::escape_segment;

/// A `uint8` input holds stored `uint8` values: no value transforms, and a pad value that is one
/// of them. A `uint8` target holds `0`, `1` and [`OutputDtype::UNKNOWN_U8`]: every class must end
/// its target transforms (training and validation) with `binarize`.
pub(super) fn check_uint8_arrays(
    inputs: &[ArraySpec],
    targets: &[ArraySpec],
    classes: &[String],
    sampling: &Sampling,
    augment: &Augment,
    c: &mut Checker<'_>,
) {
    let transformed = if !augment.inputs.is_empty() {
        Some("augment.inputs")
    } else if !augment.validate.inputs.is_empty() {
        Some("augment.validate.inputs")
    } else {
        None
    };
    for i in inputs.iter().filter(|i| i.dtype == OutputDtype::Uint8) {
        let pointer = format!("/arrays/inputs/{}/dtype", escape_segment(&i.name));
        if let Some(key) = transformed {
            let d = c.at(&pointer, "a `uint8` input cannot have value transforms");
            c.push(
                d.expected("`float32`, `float16` or `bfloat16`")
                    .hint(format!("remove `{key}` or use a float dtype")),
            );
        }
        let pad = sampling.pad_value_inputs;
        if !(pad.fract() == 0.0 && (0.0..=255.0).contains(&pad)) {
            let d = c.at(
                "/sampling/pad_value/inputs",
                format!("the `uint8` input `{}` cannot be padded with `{pad}`", i.name),
            );
            c.push(
                d.expected("a whole number in 0..=255 (uint8 has no NaN)")
                    .hint("set `sampling.pad_value.inputs` to e.g. 0, or use a float dtype"),
            );
        }
    }
    for t in targets.iter().filter(|t| t.dtype == OutputDtype::Uint8) {
        let unbinarized: Vec<&str> = classes
            .iter()
            .filter(|class| {
                [Split::Train, Split::Validate].iter().any(|&split| {
                    !matches!(
                        augment.targets_for(split, class).last(),
                        Some(ValueTransform::Binarize { .. })
                    )
                })
            })
            .map(String::as_str)
            .collect();
        if !unbinarized.is_empty() {
            let d = c.at(
                &format!("/arrays/targets/{}/dtype", escape_segment(&t.name)),
                format!(
                    "a `uint8` target holds 0, 1 and 255 (unknown), but the values of {} are not binarized",
                    quoted_list(&unbinarized)
                ),
            );
            c.push(
                d.expected("`binarize` as the last target transform of every class, in training and validation")
                    .hint("add `- binarize: {threshold: 0}` at the end of `augment.targets` (and of any `augment.per_class` or `augment.validate.targets` list), or use a float dtype"),
            );
        }
    }
}

/// `` `a`, `b` and 3 more ``.
fn quoted_list(names: &[&str]) -> String {
    let shown: Vec<String> = names.iter().take(3).map(|n| format!("`{n}`")).collect();
    match names.len() {
        0..=3 => shown.join(", "),
        n => format!("{} and {} more", shown.join(", "), n - 3),
    }
}
