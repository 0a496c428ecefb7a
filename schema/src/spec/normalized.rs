//! The normalized text of a [`Spec`]: the validated, resolved spec as JSON (every default filled in,
//! every path resolved, datasplit rows listed), and the way back, checked again.
//!
//! Generated crates embed this text and rebuild their spec from it, so they never parse YAML, read
//! a datasplit CSV or depend on the folder they run in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{ArraySpec, Augment, DatasetSpec, LoaderSpec, Predict, Sampling, Spec, Split, ValueTransform};

/// Errors of [`Spec::from_normalized`] and [`Spec::to_normalized`].
#[derive(Debug, thiserror::Error)]
pub enum NormalizedError {
    /// The text is not the JSON of a spec (or the spec cannot be written as JSON).
    #[error("normalized spec is not the JSON of a spec: {0}")]
    Json(#[from] serde_json::Error),
    /// The spec breaks guarantees that validation gives every [`Spec`]; each entry names one.
    #[error("normalized spec is not valid: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// The fields of a [`Spec`] as read from JSON, before they are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecData {
    version: u32,
    name: String,
    source: PathBuf,
    classes: Vec<String>,
    class_relations: BTreeMap<String, BTreeSet<String>>,
    inputs: Vec<ArraySpec>,
    targets: Vec<ArraySpec>,
    datasets: Vec<DatasetSpec>,
    sampling: Sampling,
    augment: Augment,
    loader: LoaderSpec,
    predict: Option<Predict>,
}

impl Spec {
    /// The normalized text of this spec: JSON, one field per line and lists of numbers or names on
    /// one line, byte-stable (maps are sorted), read back by [`Spec::from_normalized`] into an equal
    /// spec. NaN pad values are written as `null`.
    ///
    /// # Errors
    ///
    /// [`NormalizedError::Json`] when a path is not UTF-8.
    pub fn to_normalized(&self) -> Result<String, NormalizedError> {
        let value = serde_json::to_value(self)?;
        let mut out = String::new();
        write_json(&value, 0, &mut out)?;
        out.push('\n');
        Ok(out)
    }

    /// The spec of a normalized text (see [`Spec::to_normalized`]), checked again: shapes positive,
    /// voxel sizes finite and positive, classes unique and every class name known, relations
    /// symmetric, probabilities in `[0, 1]`, loader counts at least 1, dataset indices in order and
    /// prediction indices in range. Paths are taken as written (they were resolved when the spec
    /// was validated).
    ///
    /// ```
    /// let text = "version: 1\nname: demo\nclasses: [mito]\narrays:\n  inputs: {raw: {shape: [8, 8], scale: [4, 4]}}\n  targets: {labels: {shape: [8, 8], scale: [4, 4]}}\ndata:\n  datasets: [{split: train, raw: /d/a.zarr/raw, targets: '/d/a.zarr/crop1/{class}'}]\n";
    /// let spec = cellmap_schema::parse(text, std::path::Path::new("demo.yaml")).unwrap().spec;
    /// let again = cellmap_schema::Spec::from_normalized(&spec.to_normalized().unwrap()).unwrap();
    /// assert_eq!(again.to_normalized().unwrap(), spec.to_normalized().unwrap());
    /// assert!(cellmap_schema::Spec::from_normalized("{}").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`NormalizedError::Json`] when the text is not the JSON of a spec, [`NormalizedError::Invalid`]
    /// naming every broken guarantee.
    pub fn from_normalized(text: &str) -> Result<Spec, NormalizedError> {
        let d: SpecData = serde_json::from_str(text)?;
        let spec = Spec {
            version: d.version,
            name: d.name,
            source: d.source,
            classes: d.classes,
            class_relations: d.class_relations,
            inputs: d.inputs,
            targets: d.targets,
            datasets: d.datasets,
            sampling: d.sampling,
            augment: d.augment,
            loader: d.loader,
            predict: d.predict,
        };
        let problems = invariant_errors(&spec);
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(NormalizedError::Invalid(problems))
        }
    }
}

/// `value` as indented JSON; arrays without objects or arrays in them stay on one line.
fn write_json(value: &Value, indent: usize, out: &mut String) -> Result<(), serde_json::Error> {
    let pad = |n: usize| "  ".repeat(n);
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push_str("{\n");
            for (i, (key, v)) in map.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                out.push_str(&serde_json::to_string(key)?);
                out.push_str(": ");
                write_json(v, indent + 1, out)?;
                out.push_str(if i + 1 < map.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push('}');
        }
        Value::Array(items) if items.iter().any(|v| v.is_object() || v.is_array()) => {
            out.push_str("[\n");
            for (i, v) in items.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                write_json(v, indent + 1, out)?;
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push(']');
        }
        Value::Array(items) => {
            let items: Result<Vec<String>, _> = items.iter().map(serde_json::to_string).collect();
            out.push('[');
            out.push_str(&items?.join(", "));
            out.push(']');
        }
        scalar => out.push_str(&serde_json::to_string(scalar)?),
    }
    Ok(())
}

/// `null` (how JSON writes NaN) as NaN.
pub(super) fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    Ok(Option::<f32>::deserialize(d)?.unwrap_or(f32::NAN))
}

/// `sampling.locality` of normalized texts written before it existed.
pub(super) fn one() -> u32 {
    1
}

/// Whether `locality` is its default (left out of normalized texts, which stay as they were).
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference
pub(super) fn is_one(locality: &u32) -> bool {
    *locality == 1
}

/// The guarantees of a validated spec that `spec` breaks, one sentence each.
pub(crate) fn invariant_errors(spec: &Spec) -> Vec<String> {
    let mut out = Vec::new();
    if spec.version != 1 {
        out.push(format!("version {} is not 1", spec.version));
    }
    class_errors(spec, &mut out);
    array_errors(spec, &mut out);
    dataset_errors(spec, &mut out);
    sampling_errors(spec, &mut out);
    augment_errors(spec, &mut out);
    let l = &spec.loader;
    if l.batch_size == 0 || l.workers == 0 || l.prefetch == 0 {
        out.push("`loader.batch_size`, `workers` and `prefetch` must be at least 1".to_owned());
    }
    if let Some(p) = &spec.predict {
        if p.inputs.iter().any(|&i| i >= spec.inputs.len()) || p.classes.iter().any(|&c| c >= p.model_classes.len()) {
            out.push("a `predict` index is out of range".to_owned());
        }
        if p.tile_vox.contains(&0) || !positive(&p.voxel_size_nm) {
            out.push("`predict` tile and voxel size must be positive".to_owned());
        }
    }
    out
}

fn positive(v: &[f64; 3]) -> bool {
    v.iter().all(|x| x.is_finite() && *x > 0.0)
}

fn probability(p: f64) -> bool {
    (0.0..=1.0).contains(&p)
}

fn class_errors(spec: &Spec, out: &mut Vec<String>) {
    let known: BTreeSet<&str> = spec.classes.iter().map(String::as_str).collect();
    if known.len() != spec.classes.len() {
        out.push("classes must be unique names".to_owned());
    }
    if spec.classes.is_empty() != spec.targets.is_empty() {
        out.push("a spec has classes and target arrays, or (raw-only) neither".to_owned());
    }
    if spec.classes.is_empty() && spec.sampling.weighting != crate::Weighting::Uniform {
        out.push("a raw-only spec samples uniformly".to_owned());
    }
    for (a, related) in &spec.class_relations {
        for b in related {
            let symmetric = spec.class_relations.get(b).is_some_and(|r| r.contains(a));
            if a == b || !known.contains(a.as_str()) || !known.contains(b.as_str()) || !symmetric {
                out.push(format!(
                    "class relation `{a}`–`{b}` is not between two known classes both ways"
                ));
            }
        }
    }
}

fn array_errors(spec: &Spec, out: &mut Vec<String>) {
    if spec.inputs.is_empty() {
        out.push("a spec needs at least one input array".to_owned());
    }
    for a in spec.inputs.iter().chain(&spec.targets) {
        if a.shape_vox.contains(&0) || !positive(&a.voxel_size_nm) {
            out.push(format!("array `{}` needs a positive shape and voxel size", a.name));
        }
    }
}

fn dataset_errors(spec: &Spec, out: &mut Vec<String>) {
    for split in Split::ALL {
        if spec.datasets_of(split).enumerate().any(|(i, d)| d.index != i) {
            out.push(format!("the `{split}` datasets are not numbered 0, 1, … in order"));
        }
    }
    let mut order = spec.datasets.iter().map(|d| d.split);
    let sorted = order.clone().zip(order.by_ref().skip(1)).all(|(a, b)| a <= b);
    if !sorted {
        out.push("datasets are not ordered train, validate, test".to_owned());
    }
    for d in &spec.datasets {
        let normalize_ok = match &d.normalize {
            None => true,
            Some(t @ (ValueTransform::Normalize { .. } | ValueTransform::NormalizeDtype { .. })) => {
                transform_is_valid(t)
            }
            Some(_) => false,
        };
        if !normalize_ok {
            out.push(format!(
                "dataset `{}`: its `normalize` must be a valid normalize",
                d.raw
            ));
        }
        if let Some(t) = &d.targets {
            let unknown = t.annotated.iter().flatten().any(|c| !spec.classes.contains(c));
            if !t.template.contains("{class}") || unknown {
                out.push(format!(
                    "dataset `{}`: its targets need `{{class}}` and known classes",
                    d.raw
                ));
            }
        }
    }
}

fn sampling_errors(spec: &Spec, out: &mut Vec<String>) {
    if let Some(f) = &spec.sampling.foreground
        && (!spec.classes.contains(&f.class) || !probability(f.fraction))
    {
        out.push("`sampling.foreground` needs a known class and a fraction in [0, 1]".to_owned());
    }
    for v in [spec.sampling.pad_value_inputs, spec.sampling.pad_value_targets] {
        if v.is_infinite() {
            out.push("pad values must be finite or NaN".to_owned());
        }
    }
    if spec.sampling.slice_axis != super::SliceAxis::Z && !spec.is_2d() {
        out.push("`sampling.slice_axis` other than `z` needs every array to be 2D".to_owned());
    }
    if !(1..=4096).contains(&spec.sampling.locality) {
        out.push("`sampling.locality` must be in [1, 4096]".to_owned());
    }
}

fn augment_errors(spec: &Spec, out: &mut Vec<String>) {
    let a = &spec.augment;
    let s = &a.spatial;
    if !s.mirror.iter().all(|p| probability(*p)) {
        out.push("mirror probabilities must be in [0, 1]".to_owned());
    }
    if s.rotate
        .iter()
        .flatten()
        .any(|(lo, hi)| !(lo.is_finite() && hi.is_finite() && lo <= hi))
    {
        out.push("rotation ranges must be finite with `lo <= hi`".to_owned());
    }
    if let Some(e) = &s.elastic
        && !(positive(&e.spacing_nm) && e.sigma_nm.is_finite() && e.sigma_nm >= 0.0 && probability(e.probability))
    {
        out.push("elastic deformation needs a positive spacing, sigma ≥ 0 and a probability".to_owned());
    }
    let per_class = a.per_class.keys().chain(a.validate.per_class.keys());
    if per_class.clone().any(|c| !spec.classes.contains(c)) {
        out.push("`augment.per_class` names an unknown class".to_owned());
    }
    let lists = [&a.inputs, &a.targets, &a.validate.inputs, &a.validate.targets];
    let all = lists
        .into_iter()
        .chain(a.per_class.values())
        .chain(a.validate.per_class.values())
        .flatten();
    if all.into_iter().any(|t| !transform_is_valid(t)) {
        out.push("a value transform has a parameter out of range".to_owned());
    }
}

fn transform_is_valid(t: &ValueTransform) -> bool {
    match t {
        ValueTransform::Normalize { shift, scale } => shift.is_finite() && scale.is_finite() && *scale != 0.0,
        ValueTransform::NormalizeDtype { shift } => shift.is_none_or(f64::is_finite),
        ValueTransform::Binarize { threshold } => threshold.is_finite(),
        ValueTransform::NanToNum { .. } => true,
        ValueTransform::GaussianNoise { mean, std } => mean.is_finite() && std.is_finite() && *std >= 0.0,
        ValueTransform::RandomContrast { range: (lo, hi) } => lo.is_finite() && hi.is_finite() && lo <= hi,
        ValueTransform::RandomGamma { range: (lo, hi) } => *lo > 0.0 && hi.is_finite() && lo <= hi,
        ValueTransform::GaussianBlur { sigma_vox, .. } => sigma_vox.iter().all(|s| s.is_finite() && *s >= 0.0),
    }
}
