//! Checks of the `predict` section.

use std::collections::BTreeSet;
use std::path::Path;

use super::Checker;
use crate::datasplit::resolve_path;
use crate::diagnostic::did_you_mean;
use crate::raw::{RawPredict, RawPredictDtype, RawRegion, RawRegionName};
use crate::spec::{ArraySpec, DatasetSpec, Predict, PredictDtype, PredictRegion, Split};

/// Relative tolerance when checking that a tile is a whole number of input voxels.
const REL_TOL: f64 = 1e-6;

/// A 3-vector from `[z, y, x]`, or from `[y, x]` with `fill` along z.
fn expand<T: Copy>(v: &[T], fill: T) -> Option<[T; 3]> {
    match v {
        [z, y, x] => Some([*z, *y, *x]),
        [y, x] => Some([fill, *y, *x]),
        _ => None,
    }
}

/// Validates the `predict` section and resolves its defaults.
pub(super) fn predict(
    raw: &RawPredict,
    classes: &[String],
    inputs: &[ArraySpec],
    targets: &[ArraySpec],
    datasets: &[DatasetSpec],
    base_dir: &Path,
    c: &mut Checker<'_>,
) -> Predict {
    let input_idx = input_indices(raw, inputs, c);
    let model_classes = model_classes(raw, classes, c);
    let written = written_classes(raw, &model_classes, c);
    check_output(&raw.output, written.len(), c);
    let first_target = targets.first();
    let voxel_size_nm = voxel_size(raw, first_target, c);
    let tile_vox = match &raw.tile {
        None => first_target.map_or([1; 3], |t| t.shape_vox),
        Some(v) => voxel_counts(v, 1, ("/predict/tile", "tile size", "1 ≤ tile ≤ 65536 voxels"), c),
    };
    let context_vox = match &raw.context {
        None => [0; 3],
        Some(v) => voxel_counts(v, 0, ("/predict/context", "context", "0 ≤ context ≤ 65536 voxels"), c),
    };
    check_tile_alignment(raw, &input_idx, inputs, tile_vox, voxel_size_nm, c);
    let region = region(raw, voxel_size_nm, c);
    let raw_paths = raw_paths(raw, &region, datasets, base_dir, c);
    Predict {
        raw: raw_paths,
        inputs: input_idx,
        output: resolve_path(base_dir, &raw.output),
        model_classes,
        classes: written,
        voxel_size_nm,
        dtype: match raw.dtype {
            RawPredictDtype::Float32 => PredictDtype::Float32,
            RawPredictDtype::Uint8 => PredictDtype::Uint8,
        },
        zarr_format: raw.zarr_format,
        region,
        tile_vox,
        context_vox,
    }
}

/// The `predict.inputs` as indices into the spec's inputs (all of them by default).
fn input_indices(raw: &RawPredict, inputs: &[ArraySpec], c: &mut Checker<'_>) -> Vec<usize> {
    let input_names: Vec<&str> = inputs.iter().map(|a| a.name.as_str()).collect();
    match &raw.inputs {
        None => (0..inputs.len()).collect(),
        Some(list) => {
            if list.is_empty() {
                let d = c.at("/predict/inputs", "`inputs` is empty");
                c.push(d.expected("at least one name from `arrays.inputs`"));
            }
            let mut out = BTreeSet::new();
            for (i, name) in list.iter().enumerate() {
                let p = format!("/predict/inputs/{i}");
                match input_names.iter().position(|n| n == name) {
                    Some(k) if !out.insert(k) => {
                        let d = c.at(&p, format!("input `{name}` is listed twice"));
                        c.push(d);
                    }
                    Some(_) => {}
                    None => {
                        let d = c.at(&p, format!("unknown input array `{name}`"));
                        c.push(
                            d.expected(format!("one of `arrays.inputs`: {}", input_names.join(", ")))
                                .maybe_hint(did_you_mean(name, input_names.iter().copied())),
                        );
                    }
                }
            }
            out.into_iter().collect()
        }
    }
}

/// The classes the model emits (the spec's classes by default), each a valid, unique name.
fn model_classes(raw: &RawPredict, classes: &[String], c: &mut Checker<'_>) -> Vec<String> {
    match &raw.model_classes {
        None if classes.is_empty() => {
            let d = c.at_key("/predict", "`predict` of a raw-only spec names no model output");
            c.push(
                d.expected("`predict.model_classes`: the channels the model emits")
                    .hint("a spec without `classes` has no default output channels; list them in `model_classes`"),
            );
            Vec::new()
        }
        None => classes.to_vec(),
        Some(list) => {
            if list.is_empty() {
                let d = c.at("/predict/model_classes", "`model_classes` is empty");
                c.push(d.expected("the classes the model emits, in channel order"));
            }
            let mut seen = BTreeSet::new();
            for (i, class) in list.iter().enumerate() {
                let p = format!("/predict/model_classes/{i}");
                if class.is_empty() || class.chars().any(|ch| "/\\{}[],".contains(ch) || ch.is_whitespace()) {
                    let d = c.at(&p, format!("invalid class name `{class}`"));
                    c.push(d.expected("a non-empty name without `/`, `\\`, braces, brackets, commas or spaces"));
                } else if !seen.insert(class.as_str()) {
                    let d = c.at(&p, format!("duplicate model class `{class}`"));
                    c.push(d.hint("each model class is one output channel; list it once"));
                }
            }
            list.clone()
        }
    }
}

/// The written classes as indices into `model_classes` (all of them by default).
fn written_classes(raw: &RawPredict, model_classes: &[String], c: &mut Checker<'_>) -> Vec<usize> {
    match &raw.classes {
        None => (0..model_classes.len()).collect(),
        Some(list) => {
            if list.is_empty() {
                let d = c.at("/predict/classes", "`classes` is empty");
                c.push(d.expected("at least one of `predict.model_classes`"));
            }
            let mut out = Vec::new();
            for (i, class) in list.iter().enumerate() {
                let p = format!("/predict/classes/{i}");
                match model_classes.iter().position(|m| m == class) {
                    Some(k) if out.contains(&k) => {
                        let d = c.at(&p, format!("class `{class}` is listed twice"));
                        c.push(d);
                    }
                    Some(k) => out.push(k),
                    None => {
                        let d = c.at(&p, format!("class `{class}` is not emitted by the model"));
                        c.push(
                            d.expected(format!("one of `predict.model_classes`: {}", model_classes.join(", ")))
                                .maybe_hint(did_you_mean(class, model_classes.iter().map(String::as_str))),
                        );
                    }
                }
            }
            out
        }
    }
}

/// The output voxel size (the first target's by default), finite and positive.
fn voxel_size(raw: &RawPredict, first_target: Option<&ArraySpec>, c: &mut Checker<'_>) -> [f64; 3] {
    match &raw.scale {
        None => first_target.map_or([1.0; 3], |t| t.voxel_size_nm),
        Some(v) => {
            for (i, s) in v.iter().enumerate() {
                if !(s.is_finite() && *s > 0.0) {
                    let d = c.at(
                        &format!("/predict/scale/{i}"),
                        format!("voxel size `{s}` is not finite and positive"),
                    );
                    c.push(d.expected("a voxel size in nm > 0"));
                }
            }
            match v.as_slice() {
                [y, x] => [*y, *y, *x],
                other => expand(other, 1.0).unwrap_or([1.0; 3]),
            }
        }
    }
}

/// Voxel counts given as `[z, y, x]` or `[y, x]` (`fill` along the missing axes), each at least
/// `fill` and at most 65536. `what` is `(pointer, name, expected)` for the diagnostics.
fn voxel_counts(v: &[u64], fill: usize, what: (&str, &str, &str), c: &mut Checker<'_>) -> [usize; 3] {
    let (pointer, name, expected) = what;
    let mut out = [fill; 3];
    let offset = 3 - v.len().min(3);
    for (i, s) in v.iter().enumerate() {
        match usize::try_from(*s) {
            Ok(n) if (fill..=65_536).contains(&n) => {
                if let Some(slot) = out.get_mut(offset + i) {
                    *slot = n;
                }
            }
            _ => {
                let d = c.at(&format!("{pointer}/{i}"), format!("{name} `{s}` is out of range"));
                c.push(d.expected(expected));
            }
        }
    }
    out
}

/// The tile must be a whole number of voxels of every input, so that input windows and output tiles
/// share their world boundaries.
fn check_tile_alignment(
    raw: &RawPredict,
    input_idx: &[usize],
    inputs: &[ArraySpec],
    tile_vox: [usize; 3],
    voxel_size_nm: [f64; 3],
    c: &mut Checker<'_>,
) {
    for &i in input_idx {
        let Some(input) = inputs.get(i) else { continue };
        for a in 0..3 {
            let ratio = tile_vox[a] as f64 * voxel_size_nm[a] / input.voxel_size_nm[a];
            if (ratio - ratio.round()).abs() > REL_TOL * ratio.max(1.0) || ratio.round() < 1.0 {
                let pointer = if raw.tile.is_some() {
                    "/predict/tile"
                } else {
                    "/predict"
                };
                let d = c.at(
                    pointer,
                    format!(
                        "a tile of {} voxels at {} nm is {ratio} voxels of input `{}` ({} nm) along {}",
                        tile_vox[a],
                        voxel_size_nm[a],
                        input.name,
                        input.voxel_size_nm[a],
                        ["z", "y", "x"][a]
                    ),
                );
                c.push(
                    d.expected("a tile that spans a whole number of voxels of every input")
                        .hint("choose `tile` · `scale` as a multiple of each input's voxel size"),
                );
                break;
            }
        }
    }
}

/// The region predicted: the whole raw volume, the validation crops, or a world box.
fn region(raw: &RawPredict, voxel_size_nm: [f64; 3], c: &mut Checker<'_>) -> PredictRegion {
    match &raw.region {
        RawRegion::Named(RawRegionName::Raw) => PredictRegion::Raw,
        RawRegion::Named(RawRegionName::Validation) => PredictRegion::Validation,
        RawRegion::Bounds(b) => {
            let pointer = "/predict/region/bounds_nm";
            let [lo, hi] = &b.bounds_nm;
            let (lo3, hi3) = match (expand(lo, f64::NAN), expand(hi, f64::NAN)) {
                (Some(mut l), Some(mut h)) if lo.len() == hi.len() => {
                    if lo.len() == 2 {
                        // 2D: one output voxel along z, centred at 0.
                        l[0] = -voxel_size_nm[0] / 2.0;
                        h[0] = voxel_size_nm[0] / 2.0;
                    }
                    (l, h)
                }
                _ => {
                    let d = c.at(pointer, "`bounds_nm` corners must both have 3 (or both 2) coordinates");
                    c.push(d.expected("`[[z0, y0, x0], [z1, y1, x1]]`"));
                    ([0.0; 3], [1.0; 3])
                }
            };
            if (0..3).any(|a| !(lo3[a].is_finite() && hi3[a].is_finite() && lo3[a] < hi3[a])) {
                let d = c.at(pointer, format!("`bounds_nm` {lo:?} .. {hi:?} is empty or not finite"));
                c.push(d.expected("finite corners with lower < upper on every axis"));
            }
            PredictRegion::Bounds { lo_nm: lo3, hi_nm: hi3 }
        }
    }
}

/// The raw groups predicted on (resolved), consistent with the region.
fn raw_paths(
    raw: &RawPredict,
    region: &PredictRegion,
    datasets: &[DatasetSpec],
    base_dir: &Path,
    c: &mut Checker<'_>,
) -> Vec<String> {
    match (region, &raw.raw) {
        (PredictRegion::Validation, Some(_)) => {
            let d = c.at_key("/predict/raw", "`raw` given with `region: validation`");
            c.push(d.hint("validation regions predict on the validation datasets; remove `raw`"));
            Vec::new()
        }
        (PredictRegion::Validation, None) => {
            if !datasets.is_empty() && !datasets.iter().any(|d| d.split == Split::Validate) {
                let d = c.at(
                    "/predict/region",
                    "`region: validation` but the spec has no validation dataset",
                );
                c.push(d.hint("use `raw` or `bounds_nm`, or add validation datasets"));
            }
            Vec::new()
        }
        (_, Some(list)) => {
            if list.is_empty() {
                let d = c.at("/predict/raw", "`raw` is empty");
                c.push(d.expected("at least one raw multiscale group"));
            }
            list.iter().map(|r| resolve_path(base_dir, r)).collect()
        }
        (_, None) => {
            let mut out: Vec<String> = Vec::new();
            for d in datasets {
                if !out.contains(&d.raw) {
                    out.push(d.raw.clone());
                }
            }
            out
        }
    }
}

/// The output template: known placeholders only, `{class}` when several classes are written.
fn check_output(output: &str, n_classes: usize, c: &mut Checker<'_>) {
    let pointer = "/predict/output";
    if output.trim().is_empty() {
        let d = c.at(pointer, "`output` is empty");
        c.push(d.expected("a group path such as `predictions.zarr/{dataset}/{class}`"));
        return;
    }
    let mut rest = output;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            let d = c.at(pointer, format!("unclosed `{{` in `{output}`"));
            c.push(d.expected("placeholders `{dataset}` and `{class}`"));
            return;
        };
        let name = &after[..close];
        if name != "dataset" && name != "class" {
            let d = c.at(pointer, format!("unknown placeholder `{{{name}}}` in `{output}`"));
            c.push(
                d.expected("placeholders `{dataset}` and `{class}`")
                    .maybe_hint(did_you_mean(name, ["dataset", "class"])),
            );
        }
        rest = &after[close + 1..];
    }
    if n_classes > 1 && !output.contains("{class}") {
        let d = c.at(
            pointer,
            format!("`output` has no `{{class}}` but {n_classes} classes are written"),
        );
        c.push(
            d.expected("a template containing `{class}`")
                .hint("each class is written as its own multiscale group, e.g. `predictions.zarr/{dataset}/{class}`"),
        );
    }
}
