//! Semantic checks that the JSON Schema cannot express, turning a [`RawSpec`] into a [`Spec`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::datasplit::{self, DatasplitContext, bracket_template, resolve_path};
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::raw::*;
use crate::spec::*;
use crate::yaml::{PositionIndex, escape_segment};

mod dtype;
mod intensity;
mod predict;

/// Collects diagnostics while checking one spec.
pub(crate) struct Checker<'a> {
    pub(crate) file: &'a Path,
    pub(crate) positions: &'a PositionIndex,
    pub(crate) errors: Vec<Diagnostic>,
    pub(crate) warnings: Vec<Diagnostic>,
}

impl Checker<'_> {
    /// An error at the value at `pointer`.
    pub(crate) fn at(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(self.file, self.positions.value(pointer), pointer, message)
    }

    /// An error at the key of the entry at `pointer`.
    pub(crate) fn at_key(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(self.file, self.positions.key(pointer), pointer, message)
    }

    /// `file:line:column` of the value at `pointer`.
    pub(crate) fn origin(&self, pointer: &str) -> String {
        let (line, column) = self.positions.value(pointer);
        format!("{}:{line}:{column}", self.file.display())
    }

    pub(crate) fn push(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    pub(crate) fn unknown_class(&mut self, pointer: &str, class: &str, classes: &[String], key: bool) {
        let message = format!("unknown class `{class}`");
        let d = if key {
            self.at_key(pointer, message)
        } else {
            self.at(pointer, message)
        };
        let d = d
            .expected(format!("one of the `classes`: {}", classes.join(", ")))
            .maybe_hint(did_you_mean(class, classes.iter().map(String::as_str)));
        self.push(d);
    }
}

/// Checks `raw` and builds the [`Spec`]; `source` is recorded in it, relative data paths resolve against
/// `base_dir`.
pub(crate) fn build(raw: RawSpec, c: &mut Checker<'_>, source: PathBuf, base_dir: &Path) -> Option<Spec> {
    check_name(&raw.name, c);
    let classes = check_classes(&raw.classes, c);
    let class_relations = relations(&raw.class_relations, &classes, c);
    let inputs = arrays(&raw.arrays.inputs, "inputs", Interpolation::Linear, c);
    let targets = arrays(&raw.arrays.targets, "targets", Interpolation::Nearest, c);
    check_array_names(&raw, c);
    check_raw_only(&raw, c);
    check_slice_axis(&raw, &inputs, &targets, c);
    let sampling = sampling(&raw.sampling, &classes, c);
    let augment = augment(&raw.augment, &classes, c);
    dtype::check_uint8_arrays(&inputs, &targets, &classes, &sampling, &augment, c);
    let loader = loader(&raw.loader, base_dir, c);
    let datasets = datasets(&raw, &classes, base_dir, c);
    intensity::check_uint8_inputs(&inputs, &datasets, c);
    let predict = raw
        .predict
        .as_ref()
        .map(|p| predict::predict(p, &classes, &inputs, &targets, &datasets, base_dir, c));
    if !c.errors.is_empty() {
        return None;
    }
    let spec = Spec {
        version: raw.version,
        name: raw.name,
        source,
        classes,
        class_relations,
        inputs,
        targets,
        datasets,
        sampling,
        augment,
        loader,
        predict,
    };
    debug_assert_eq!(crate::spec::invariant_errors(&spec), Vec::<String>::new());
    Some(spec)
}

/// Classes and target arrays come together: a spec has both, or (raw-only) neither, and a
/// raw-only spec samples uniformly.
fn check_raw_only(raw: &RawSpec, c: &mut Checker<'_>) {
    match (raw.classes.is_empty(), raw.arrays.targets.is_empty()) {
        (true, false) => {
            let d = c.at_key("/arrays/targets", "target arrays need classes");
            c.push(
                d.expected("`classes: [...]`, one target channel per class")
                    .hint("list the classes, or remove `arrays.targets` for a raw-only spec"),
            );
        }
        (false, true) => {
            let d = c.at_key("/classes", "`classes` without target arrays");
            c.push(
                d.expected("`arrays.targets`, e.g. `labels: { shape: [64, 64, 64], scale: [8, 8, 8] }`")
                    .hint("add a target array, or remove `classes` for a raw-only spec"),
            );
        }
        _ => {}
    }
    if raw.classes.is_empty() && raw.sampling.weighting != RawWeighting::Uniform {
        let name = match raw.sampling.weighting {
            RawWeighting::ClassBalanced => "class_balanced",
            _ => "voxel_weighted",
        };
        let d = c.at("/sampling/weighting", format!("`{name}` weighting needs classes"));
        c.push(
            d.expected("`uniform` in a raw-only spec")
                .hint("use `weighting: uniform`"),
        );
    }
}

/// Inputs and targets have distinct names, and targets are not `uint8`.
fn check_array_names(raw: &RawSpec, c: &mut Checker<'_>) {
    for name in raw.arrays.inputs.keys() {
        if raw.arrays.targets.contains_key(name) {
            let d = c.at_key(
                &format!("/arrays/targets/{}", escape_segment(name)),
                format!("array name `{name}` is used by an input and a target"),
            );
            c.push(d.hint("batch fields need distinct names; rename one"));
        }
    }
}

/// The datasets of `data`: its inline list, or the rows of its datasplit CSV.
fn datasets(raw: &RawSpec, classes: &[String], base_dir: &Path, c: &mut Checker<'_>) -> Vec<DatasetSpec> {
    match (&raw.data.csv, &raw.data.datasets) {
        (Some(_), Some(_)) => {
            let d = c.at_key("/data/datasets", "`data` has both `csv` and `datasets`");
            c.push(d.hint("keep one of them"));
            Vec::new()
        }
        (None, None) => {
            let d = c.at("/data", "`data` names no data");
            c.push(d.expected("`csv: datasplit.csv` or `datasets: [...]`"));
            Vec::new()
        }
        (Some(csv), None) => {
            let ctx = DatasplitContext {
                base_dir,
                classes,
                origin: c.origin("/data/csv"),
            };
            match datasplit::read(csv, &ctx) {
                Ok((d, warnings)) => {
                    c.warnings.extend(warnings);
                    d
                }
                Err(mut errors) => {
                    for e in &mut errors {
                        if e.file.as_os_str().is_empty() {
                            // Not tied to a CSV line: locate it at the `csv:` value.
                            let (line, column) = c.positions.value("/data/csv");
                            e.file = c.file.to_path_buf();
                            (e.line, e.column) = (line, column);
                        }
                    }
                    c.errors.extend(errors);
                    Vec::new()
                }
            }
        }
        (None, Some(list)) => inline_datasets(list, classes, base_dir, c),
    }
}

/// A valid crate name, or a suggestion.
fn check_name(name: &str, c: &mut Checker<'_>) {
    let valid = name.chars().next().is_some_and(|f| f.is_ascii_lowercase())
        && name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-');
    if valid {
        return;
    }
    let mut suggestion: String = name
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() {
                ch.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !suggestion.chars().next().is_some_and(|f| f.is_ascii_lowercase()) {
        suggestion.insert_str(0, "spec_");
    }
    let d = c.at("/name", format!("`{name}` is not a valid crate name"));
    c.push(
        d.expected("lowercase letters, digits, `_` and `-`, starting with a letter")
            .hint(format!("use `{suggestion}`")),
    );
}

fn check_classes(raw: &[String], c: &mut Checker<'_>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    for (i, class) in raw.iter().enumerate() {
        let pointer = format!("/classes/{i}");
        if class.is_empty() || class.chars().any(|ch| "/\\{}[],".contains(ch) || ch.is_whitespace()) {
            let d = c.at(&pointer, format!("invalid class name `{class}`"));
            c.push(d.expected("a non-empty name without `/`, `\\`, braces, brackets, commas or spaces"));
        } else if !seen.insert(class.as_str()) {
            let d = c.at(&pointer, format!("duplicate class `{class}`"));
            c.push(d.hint("each class is one channel; list it once"));
        }
    }
    raw.to_vec()
}

fn relations(
    raw: &BTreeMap<String, Vec<String>>,
    classes: &[String],
    c: &mut Checker<'_>,
) -> BTreeMap<String, BTreeSet<String>> {
    let known = |s: &str| classes.iter().any(|k| k == s);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (class, others) in raw {
        let pointer = format!("/class_relations/{}", escape_segment(class));
        if !known(class) {
            c.unknown_class(&pointer, class, classes, true);
            continue;
        }
        for (i, other) in others.iter().enumerate() {
            let p = format!("{pointer}/{i}");
            if !known(other) {
                c.unknown_class(&p, other, classes, false);
            } else if other == class {
                let d = c.at(&p, format!("class `{class}` cannot exclude itself"));
                c.push(d);
            } else {
                out.entry(class.clone()).or_default().insert(other.clone());
            }
        }
    }
    let pairs: Vec<(String, String)> = out
        .iter()
        .flat_map(|(a, bs)| bs.iter().map(move |b| (a.clone(), b.clone())))
        .collect();
    for (a, b) in pairs {
        if !out.get(&b).is_some_and(|s| s.contains(&a)) {
            out.entry(b.clone()).or_default().insert(a.clone());
            let d = c.at(
                &format!("/class_relations/{}", escape_segment(&a)),
                format!("`{a}` excludes `{b}` but not the reverse; added `{b}: [{a}]`"),
            );
            c.warnings.push(
                d.warning()
                    .hint("mutual exclusion is symmetric; list it both ways to silence this"),
            );
        }
    }
    out
}

fn arrays(
    raw: &BTreeMap<String, RawArray>,
    group: &str,
    default_interpolation: Interpolation,
    c: &mut Checker<'_>,
) -> Vec<ArraySpec> {
    let mut out = Vec::new();
    for (name, a) in raw {
        let pointer = format!("/arrays/{group}/{}", escape_segment(name));
        let ident = name.chars().next().is_some_and(|f| f.is_ascii_lowercase() || f == '_')
            && name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
        if !ident {
            let d = c.at_key(&pointer, format!("array name `{name}` is not a valid field name"));
            c.push(d.expected("lowercase letters, digits and `_`, not starting with a digit"));
        }
        let mut ok = true;
        if a.shape.len() != a.scale.len() {
            let d = c.at(
                &format!("{pointer}/scale"),
                format!("`scale` has {} values but `shape` has {}", a.scale.len(), a.shape.len()),
            );
            c.push(d.expected(format!("{} values, one per axis of `shape`", a.shape.len())));
            ok = false;
        }
        for (i, s) in a.scale.iter().enumerate() {
            if !(s.is_finite() && *s > 0.0) {
                let d = c.at(
                    &format!("{pointer}/scale/{i}"),
                    format!("voxel size `{s}` is not finite and positive"),
                );
                c.push(d.expected("a voxel size in nm > 0"));
                ok = false;
            }
        }
        let mut shape_vox = [1usize; 3];
        let offset = 3 - a.shape.len().min(3);
        for (i, s) in a.shape.iter().enumerate() {
            match usize::try_from(*s) {
                Ok(v) if (1..=1 << 20).contains(&v) => {
                    if let Some(slot) = shape_vox.get_mut(offset + i) {
                        *slot = v;
                    }
                }
                _ => {
                    let d = c.at(&format!("{pointer}/shape/{i}"), format!("shape `{s}` is out of range"));
                    c.push(d.expected("1 ≤ shape ≤ 1048576 voxels"));
                    ok = false;
                }
            }
        }
        if !ok {
            continue;
        }
        let voxel_size_nm = match a.scale.as_slice() {
            [z, y, x] => [*z, *y, *x],
            [y, x] => [*y, *y, *x],
            _ => continue,
        };
        out.push(ArraySpec {
            name: name.clone(),
            shape_vox,
            voxel_size_nm,
            interpolation: match a.interpolation {
                None => default_interpolation,
                Some(RawInterpolation::Nearest) => Interpolation::Nearest,
                Some(RawInterpolation::Linear) => Interpolation::Linear,
            },
            dtype: match a.dtype {
                RawDtype::Float32 => OutputDtype::Float32,
                RawDtype::Float16 => OutputDtype::Float16,
                RawDtype::Bfloat16 => OutputDtype::Bfloat16,
                RawDtype::Uint8 => OutputDtype::Uint8,
            },
        });
    }
    out
}

fn sampling(raw: &RawSampling, classes: &[String], c: &mut Checker<'_>) -> Sampling {
    let foreground = raw.foreground.as_ref().map(|f| {
        if !classes.contains(&f.class) {
            c.unknown_class("/sampling/foreground/class", &f.class, classes, false);
        }
        ForegroundBias {
            class: f.class.clone(),
            fraction: f.fraction,
        }
    });
    let pad = match raw.pad {
        RawPad::Both(b) => PadPolicy { train: b, validate: b },
        RawPad::PerSplit(p) => PadPolicy {
            train: p.train,
            validate: p.validate,
        },
    };
    for (key, v) in [("inputs", raw.pad_value.inputs), ("targets", raw.pad_value.targets)] {
        if let RawFloat::Number(n) = v
            && (n as f32).is_infinite()
        {
            let d = c.at(
                &format!("/sampling/pad_value/{key}"),
                format!("pad value `{n}` does not fit a 32-bit float"),
            );
            c.push(d);
        }
    }
    Sampling {
        seed: raw.seed,
        iterations_per_epoch: raw.iterations_per_epoch,
        weighting: match raw.weighting {
            RawWeighting::Uniform => Weighting::Uniform,
            RawWeighting::ClassBalanced => Weighting::ClassBalanced,
            RawWeighting::VoxelWeighted => Weighting::VoxelWeighted,
        },
        foreground,
        pad,
        pad_value_inputs: raw.pad_value.inputs.to_f32(),
        pad_value_targets: raw.pad_value.targets.to_f32(),
        validation_tiling: raw.validation_tiling,
        slice_axis: match raw.slice_axis {
            RawSliceAxis::Z => SliceAxis::Z,
            RawSliceAxis::Y => SliceAxis::Y,
            RawSliceAxis::X => SliceAxis::X,
            RawSliceAxis::Any => SliceAxis::Any,
        },
        locality: raw.locality.max(1),
    }
}

/// `sampling.slice_axis` other than `z` needs every array to be 2D.
fn check_slice_axis(raw: &RawSpec, inputs: &[ArraySpec], targets: &[ArraySpec], c: &mut Checker<'_>) {
    if raw.sampling.slice_axis == RawSliceAxis::Z {
        return;
    }
    let kinds = [("inputs", inputs), ("targets", targets)];
    let Some((kind, array)) = kinds
        .iter()
        .flat_map(|(kind, arrays)| arrays.iter().map(move |a| (*kind, a)))
        .find(|(_, a)| !a.is_2d())
    else {
        return;
    };
    let axis = match raw.sampling.slice_axis {
        RawSliceAxis::Y => "y",
        RawSliceAxis::X => "x",
        _ => "any",
    };
    let d = c.at(
        "/sampling/slice_axis",
        format!(
            "`slice_axis: {axis}` needs 2D arrays, but `arrays.{kind}.{}` has shape {:?}",
            array.name, array.shape_vox
        ),
    );
    c.push(
        d.expected("every input and target shape `[1, h, w]` (or `[h, w]`)")
            .hint("make every array 2D, or remove `slice_axis` (3D crops are read as they are)"),
    );
}

fn axis(a: RawAxis) -> Axis {
    match a {
        RawAxis::Z => Axis::Z,
        RawAxis::Y => Axis::Y,
        RawAxis::X => Axis::X,
    }
}

fn augment(raw: &RawAugment, classes: &[String], c: &mut Checker<'_>) -> Augment {
    let s = &raw.spatial;
    let mut transpose = Vec::new();
    for (i, a) in s.transpose.iter().enumerate() {
        let a = axis(*a);
        if transpose.contains(&a) {
            let d = c.at(
                &format!("/augment/spatial/transpose/{i}"),
                format!("axis `{}` is listed twice", a.name()),
            );
            c.push(d);
        } else {
            transpose.push(a);
        }
    }
    let mut rotate = [None; 3];
    for (i, (name, range)) in [("z", s.rotate.z), ("y", s.rotate.y), ("x", s.rotate.x)]
        .into_iter()
        .enumerate()
    {
        if let Some([lo, hi]) = range {
            if lo > hi {
                let d = c.at(
                    &format!("/augment/spatial/rotate/{name}"),
                    format!("angle range `[{lo}, {hi}]` is reversed"),
                );
                c.push(
                    d.expected("`[low, high]` with low ≤ high")
                        .hint(format!("write `[{hi}, {lo}]`")),
                );
            }
            if let Some(slot) = rotate.get_mut(i) {
                *slot = Some((lo, hi));
            }
        }
    }
    let elastic = s.elastic.as_ref().map(|e| {
        let spacing_nm = match e.spacing.as_slice() {
            [z, y, x] => [*z, *y, *x],
            [y, x] => [*y, *y, *x],
            _ => [1.0; 3],
        };
        for (i, v) in e.spacing.iter().enumerate() {
            if !(v.is_finite() && *v > 0.0) {
                let d = c.at(
                    &format!("/augment/spatial/elastic/spacing/{i}"),
                    format!("spacing `{v}` is not positive"),
                );
                c.push(d.expected("a control-point spacing in nm > 0"));
            }
        }
        Elastic {
            spacing_nm,
            sigma_nm: e.sigma,
            probability: e.probability,
        }
    });
    let inputs = transforms(&raw.inputs, "/augment/inputs", c);
    let targets = match &raw.targets {
        Some(list) => transforms(list, "/augment/targets", c),
        None => vec![ValueTransform::Binarize { threshold: 0.0 }],
    };
    let mut per_class = BTreeMap::new();
    for (class, list) in &raw.per_class {
        let pointer = format!("/augment/per_class/{}", escape_segment(class));
        if !classes.contains(class) {
            c.unknown_class(&pointer, class, classes, true);
        }
        per_class.insert(class.clone(), transforms(list, &pointer, c));
    }
    let deterministic =
        |list: &[ValueTransform]| -> Vec<ValueTransform> { list.iter().filter(|t| !t.is_random()).cloned().collect() };
    let validate = ValidationTransforms {
        inputs: match raw.validate.inputs.as_deref() {
            Some(list) => transforms(list, "/augment/validate/inputs", c),
            None => deterministic(&inputs),
        },
        targets: match raw.validate.targets.as_deref() {
            Some(list) => transforms(list, "/augment/validate/targets", c),
            None => deterministic(&targets),
        },
        per_class: per_class
            .iter()
            .map(|(class, list)| (class.clone(), deterministic(list)))
            .collect(),
    };
    Augment {
        spatial: Spatial {
            mirror: [s.mirror.z, s.mirror.y, s.mirror.x],
            transpose,
            rotate,
            elastic,
        },
        inputs,
        targets,
        per_class,
        validate,
    }
}

fn transforms(raw: &[RawTransform], pointer: &str, c: &mut Checker<'_>) -> Vec<ValueTransform> {
    let mut out = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let p = format!("{pointer}/{i}");
        out.push(match t {
            RawTransform::Normalize(n) => intensity::normalize(n, &format!("{p}/normalize"), c),
            RawTransform::Binarize(b) => ValueTransform::Binarize { threshold: b.threshold },
            RawTransform::NanToNum(n) => ValueTransform::NanToNum {
                nan: n.nan,
                posinf: n.posinf,
                neginf: n.neginf,
            },
            RawTransform::GaussianNoise(g) => ValueTransform::GaussianNoise {
                mean: g.mean,
                std: g.std,
            },
            RawTransform::RandomContrast(r) => {
                let range = check_range(r, &format!("{p}/random_contrast/range"), c);
                ValueTransform::RandomContrast { range }
            }
            RawTransform::RandomGamma(r) => {
                let range = check_range(r, &format!("{p}/random_gamma/range"), c);
                ValueTransform::RandomGamma { range }
            }
            RawTransform::GaussianBlur(b) => {
                let sigma_vox = match &b.sigma {
                    RawSigma::Isotropic(s) => [*s; 3],
                    RawSigma::PerAxis(v) => match v.as_slice() {
                        [z, y, x] => [*z, *y, *x],
                        [y, x] => [0.0, *y, *x],
                        _ => [0.0; 3],
                    },
                };
                if sigma_vox.iter().any(|s| !(s.is_finite() && *s >= 0.0)) {
                    let d = c.at(&format!("{p}/gaussian_blur/sigma"), "blur sigma must be finite and ≥ 0");
                    c.push(d);
                }
                let max_sigma = sigma_vox.iter().fold(0.0f64, |m, s| m.max(*s));
                let radius_vox = match b.radius {
                    Some(r) => r as usize,
                    None => (3.0 * max_sigma).ceil().clamp(0.0, 1024.0) as usize,
                };
                ValueTransform::GaussianBlur { sigma_vox, radius_vox }
            }
        });
    }
    out
}

fn check_range(r: &RawRange, pointer: &str, c: &mut Checker<'_>) -> (f64, f64) {
    let [lo, hi] = r.range;
    if lo > hi {
        let d = c.at(pointer, format!("range `[{lo}, {hi}]` is reversed"));
        c.push(
            d.expected("`[low, high]` with low ≤ high")
                .hint(format!("write `[{hi}, {lo}]`")),
        );
    } else if lo <= 0.0 {
        let d = c.at(pointer, format!("range `[{lo}, {hi}]` includes factors ≤ 0"));
        c.push(d.expected("0 < low ≤ high"));
    }
    (lo, hi)
}

fn loader(raw: &RawLoader, base_dir: &Path, c: &mut Checker<'_>) -> LoaderSpec {
    let device = match raw.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => Device::Cuda(n),
            None => {
                let d = c.at("/loader/device", format!("unknown device `{other}`"));
                c.push(d.expected("`cpu`, `cuda` or `cuda:N`"));
                Device::Cpu
            }
        },
    };
    LoaderSpec {
        batch_size: raw.batch_size as usize,
        workers: raw.workers as usize,
        prefetch: raw.prefetch as usize,
        device,
        pin_memory: raw.pin_memory.unwrap_or(matches!(device, Device::Cuda(_))),
        cache_bytes: raw.cache_bytes,
        compressed_cache_bytes: raw.compressed_cache_bytes,
        fetch_concurrency: raw.fetch_concurrency.max(1) as usize,
        fetch_ahead: raw.fetch_ahead.min(64) as usize,
        on_error: match raw.on_error {
            RawOnError::Fail => ErrorPolicy::Fail,
            RawOnError::SkipAndLog => ErrorPolicy::SkipAndLog,
        },
        training_cache: raw
            .training_cache
            .as_deref()
            .and_then(|dir| training_cache(dir, base_dir, c)),
    }
}

/// The training cache's folder, resolved against the spec's folder: a local folder only.
fn training_cache(dir: &str, base_dir: &Path, c: &mut Checker<'_>) -> Option<String> {
    if dir.contains("://") {
        let d = c.at("/loader/training_cache", format!("`{dir}` is a URL"));
        c.push(
            d.expected("a local folder (the cache is read at local-disk speed; write it with `cellmap-compile cache`)"),
        );
        return None;
    }
    Some(crate::datasplit::resolve_path(base_dir, dir))
}

fn inline_datasets(list: &[RawDataset], classes: &[String], base_dir: &Path, c: &mut Checker<'_>) -> Vec<DatasetSpec> {
    let mut out: Vec<DatasetSpec> = Vec::new();
    for (i, d) in list.iter().enumerate() {
        let pointer = format!("/data/datasets/{i}");
        let split = match d.split {
            RawSplit::Train => Split::Train,
            RawSplit::Validate => Split::Validate,
            RawSplit::Test => Split::Test,
        };
        let targets = match &d.targets {
            None => {
                if d.classes.is_some() {
                    let e = c.at(&format!("{pointer}/classes"), "`classes` given without `targets`");
                    c.push(e.hint("add the `targets` path template"));
                }
                None
            }
            Some(t) => {
                let tp = format!("{pointer}/targets");
                match bracket_template(t) {
                    Err(message) => {
                        let e = c.at(&tp, message);
                        c.push(e.expected("a path containing `{class}` or a `[mito,er]` bracket list"));
                        None
                    }
                    Ok((template, bracket)) => {
                        let annotated = match (bracket, &d.classes) {
                            (Some(_), Some(_)) => {
                                let e = c.at(
                                    &format!("{pointer}/classes"),
                                    "classes given both in `targets` brackets and in `classes`",
                                );
                                c.push(e.hint("keep one of them"));
                                None
                            }
                            (Some(b), None) => {
                                for class in b.iter().filter(|b| !classes.contains(b)) {
                                    c.unknown_class(&tp, class, classes, false);
                                }
                                Some(b)
                            }
                            (None, Some(list)) => {
                                for (j, class) in list.iter().enumerate() {
                                    if !classes.contains(class) {
                                        c.unknown_class(&format!("{pointer}/classes/{j}"), class, classes, false);
                                    }
                                }
                                Some(list.clone())
                            }
                            (None, None) => None,
                        };
                        Some(TargetTemplate {
                            template: resolve_path(base_dir, &template),
                            annotated,
                        })
                    }
                }
            }
        };
        let normalize = d
            .normalize
            .as_ref()
            .map(|n| intensity::normalize(n, &format!("{pointer}/normalize"), c));
        out.push(DatasetSpec {
            split,
            index: 0,
            raw: resolve_path(base_dir, &d.raw),
            targets,
            origin: c.origin(&pointer),
            normalize,
        });
    }
    datasplit::number(out)
}
