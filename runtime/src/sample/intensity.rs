//! Intensity per dataset: the input value transforms of each dataset, resolved once.
//!
//! A dataset's list is its split's input transforms with its own `normalize` in place of the
//! spec's ([`cellmap_schema::Augment::inputs_of`]); a `normalize` with `scale: dtype`
//! ([`ValueTransform::NormalizeDtype`]) becomes a numeric [`ValueTransform::Normalize`] from the dtype
//! of the raw level the input reads: unsigned integers `x / max`, signed integers
//! `(x − min) / (max − min)`, floats as stored. Datasets of one split may so hold `uint8` and `uint16`
//! volumes and still give inputs in `[0, 1]`.

use cellmap_schema::{DatasetSpec, Spec, ValueTransform};
use serde::Serialize;

use crate::plan::{ClassPlan, Planned};
use crate::sources::ClassSource;
use crate::store::SourceDtype;

/// The value range `(min, max)` of an integer dtype; `None` for floats (no range to map).
pub fn dtype_range(dtype: SourceDtype) -> Option<(f64, f64)> {
    let range = match dtype {
        SourceDtype::U8 => (0.0, f64::from(u8::MAX)),
        SourceDtype::U16 => (0.0, f64::from(u16::MAX)),
        SourceDtype::U32 => (0.0, f64::from(u32::MAX)),
        SourceDtype::U64 => (0.0, u64::MAX as f64),
        SourceDtype::I8 => (f64::from(i8::MIN), f64::from(i8::MAX)),
        SourceDtype::I16 => (f64::from(i16::MIN), f64::from(i16::MAX)),
        SourceDtype::I32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
        SourceDtype::I64 => (i64::MIN as f64, i64::MAX as f64),
        SourceDtype::F32 | SourceDtype::F64 => return None,
    };
    Some(range)
}

/// `transforms` with every [`ValueTransform::NormalizeDtype`] made numeric for data of `dtype`:
/// shift the given one or the dtype's minimum, scale `max − min` (for floats: shift the given one or
/// 0, scale 1).
pub fn resolve_dtype(transforms: &[ValueTransform], dtype: SourceDtype) -> Vec<ValueTransform> {
    transforms
        .iter()
        .map(|t| match *t {
            ValueTransform::NormalizeDtype { shift } => {
                let (min, scale) = dtype_range(dtype).map_or((0.0, 1.0), |(min, max)| (min, max - min));
                ValueTransform::Normalize {
                    shift: shift.unwrap_or(min),
                    scale,
                }
            }
            ref other => other.clone(),
        })
        .collect()
}

/// The value transforms on an input of `dataset` read from a level of `dtype`: the dataset's own
/// `normalize` in place of the spec's, `scale: dtype` resolved.
pub fn input_transforms(spec: &Spec, dataset: &DatasetSpec, dtype: SourceDtype) -> Vec<ValueTransform> {
    resolve_dtype(&spec.augment().inputs_of(dataset), dtype)
}

/// The input value transforms of every planned dataset, per input array (the plan's dataset order).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InputTransforms {
    per_dataset: Vec<Vec<Vec<ValueTransform>>>,
}

impl InputTransforms {
    /// Resolves the transforms of every dataset of a plan from its sources (the dtype of each
    /// input's raw level).
    pub fn of_plan(spec: &Spec, planned: &Planned) -> InputTransforms {
        let per_dataset = planned
            .plan
            .datasets
            .iter()
            .zip(&planned.sources)
            .map(|(d, sources)| {
                d.inputs
                    .iter()
                    .map(|lp| {
                        let dtype = sources.raw.levels.get(lp.level).map_or(SourceDtype::F32, |l| l.dtype);
                        input_transforms(spec, &sources.spec, dtype)
                    })
                    .collect()
            })
            .collect();
        InputTransforms { per_dataset }
    }

    /// The transforms of input `input` of plan dataset `dataset` (none when out of range).
    pub fn get(&self, dataset: usize, input: usize) -> &[ValueTransform] {
        self.per_dataset
            .get(dataset)
            .and_then(|d| d.get(input))
            .map_or(&[], Vec::as_slice)
    }

    /// Per plan dataset, per input array: the transforms.
    pub fn per_dataset(&self) -> &[Vec<Vec<ValueTransform>>] {
        &self.per_dataset
    }
}

/// Target value transforms with `scale: dtype`, resolved per dataset, target array and class from
/// the dtype of the class's label level. Lists without `scale: dtype` are not copied: the reader
/// takes them from the spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetTransforms {
    /// Per plan dataset, per target array, per class: the resolved list, when it needed resolving.
    per_dataset: Vec<Vec<Vec<Option<Vec<ValueTransform>>>>>,
}

impl TargetTransforms {
    /// Resolves the target lists of every dataset of a plan that hold `scale: dtype`.
    pub fn of_plan(spec: &Spec, planned: &Planned) -> TargetTransforms {
        let per_dataset = planned
            .plan
            .datasets
            .iter()
            .zip(&planned.sources)
            .map(|(d, sources)| {
                d.targets
                    .iter()
                    .map(|classes| {
                        classes
                            .iter()
                            .zip(spec.classes())
                            .zip(&sources.classes)
                            .map(|((class_plan, name), source)| {
                                let list = spec.augment().targets_for(d.split, name);
                                if !list.iter().any(|t| matches!(t, ValueTransform::NormalizeDtype { .. })) {
                                    return None;
                                }
                                let dtype = match (class_plan, source) {
                                    (ClassPlan::Annotated(lp), ClassSource::Annotated(group)) => {
                                        group.levels.get(lp.level).map_or(SourceDtype::F32, |l| l.dtype)
                                    }
                                    // Not read: the channel is NaN or inferred.
                                    _ => return None,
                                };
                                Some(resolve_dtype(list, dtype))
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        TargetTransforms { per_dataset }
    }

    /// The resolved list of class `class` of target `target` of plan dataset `dataset`, when the
    /// spec's list holds `scale: dtype`.
    pub fn get(&self, dataset: usize, target: usize, class: usize) -> Option<&[ValueTransform]> {
        self.per_dataset.get(dataset)?.get(target)?.get(class)?.as_deref()
    }
}

/// The plan as JSON (what `cellmap-compile plan --json` prints and the Python package's `plan()`
/// returns), each dataset with `input_transforms`: per input array name, the value transforms its
/// samples get (its own `normalize`, `scale: dtype` resolved to numbers).
///
/// # Errors
/// When the plan does not serialize (a non-UTF-8 path).
pub fn plan_json(spec: &Spec, planned: &Planned) -> Result<serde_json::Value, serde_json::Error> {
    let mut value = serde_json::to_value(&planned.plan)?;
    let resolved = InputTransforms::of_plan(spec, planned);
    if let Some(datasets) = value.get_mut("datasets").and_then(serde_json::Value::as_array_mut) {
        for (d, per_input) in datasets.iter_mut().zip(resolved.per_dataset()) {
            let mut inputs = serde_json::Map::new();
            for (array, transforms) in spec.inputs().iter().zip(per_input) {
                inputs.insert(array.name.clone(), serde_json::to_value(transforms)?);
            }
            if let Some(d) = d.as_object_mut() {
                d.insert("input_transforms".to_owned(), serde_json::Value::Object(inputs));
            }
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_ranges_map_onto_unit_interval() {
        let t = [ValueTransform::NormalizeDtype { shift: None }];
        let n = |dtype| resolve_dtype(&t, dtype);
        let normalize = |shift, scale| vec![ValueTransform::Normalize { shift, scale }];
        assert_eq!(n(SourceDtype::U8), normalize(0.0, 255.0));
        assert_eq!(n(SourceDtype::U16), normalize(0.0, 65535.0));
        assert_eq!(n(SourceDtype::U32), normalize(0.0, 4_294_967_295.0));
        assert_eq!(n(SourceDtype::I8), normalize(-128.0, 255.0));
        assert_eq!(n(SourceDtype::I16), normalize(-32768.0, 65535.0));
        assert_eq!(n(SourceDtype::F32), normalize(0.0, 1.0));
        assert_eq!(n(SourceDtype::F64), normalize(0.0, 1.0));
        let shifted = resolve_dtype(&[ValueTransform::NormalizeDtype { shift: Some(10.0) }], SourceDtype::U8);
        assert_eq!(shifted, normalize(10.0, 255.0));
    }
}
