//! `cellmap-compile sample SPEC --split S --dataset K --center Z,Y,X --out DIR`: one crop as `.npy`,
//! unaugmented, or with `--augment` as training draws it at `--epoch E --index I`, or with a
//! spatial transform given explicitly (`--rotate z=30`, `--mirror x`, `--transpose y,x`).
//!
//! An explicit transform is composed like a drawn one, `M = R · F · P` (output offset → world
//! offset, nm): the transpose `P` first, then the mirror `F`, then the rotation
//! `R = R_x · R_y · R_z` (about world z first, then y, then x; right-handed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use cellmap_runtime::{
    ClassPlan, PlanOptions, augment::SpatialDraw, geometry::crop_start_vox, npy, plan, rng::STREAM_SPATIAL,
    rng::SampleKey, sample::Reader, sample::SampleRequest, sample::transformed_window_vox, slicing, store::ChunkCache,
};
use cellmap_schema::Split;

use super::{EXIT_INVALID, SplitArg, load_spec};

/// Arguments of `sample`.
#[derive(Debug, clap::Args)]
pub(crate) struct SampleArgs {
    /// The spec.
    spec: PathBuf,
    /// Split of the dataset.
    #[arg(long, value_enum, default_value_t = SplitArg::Train)]
    split: SplitArg,
    /// Dataset index within the split (as numbered in the spec, from 0).
    #[arg(long, default_value_t = 0)]
    dataset: usize,
    /// World centre in nm, `Z,Y,X`.
    #[arg(long, value_parser = parse_centre, allow_hyphen_values = true)]
    center: [f64; 3],
    /// Output folder (created).
    #[arg(long)]
    out: PathBuf,
    /// Skip the spec's value transforms (write the stored values as float32, labels unbinarized).
    #[arg(long)]
    raw_values: bool,
    /// The sample as training draws it: the spec's spatial transform and value transforms, drawn
    /// with the training loader's key of sample `--index` of epoch `--epoch` (rank 0, the spec's
    /// seed). On a validation or test dataset the training spatial transform applies too (the
    /// loader does not augment those). `--rotate`, `--mirror` or `--transpose` replace the whole
    /// drawn spatial transform (no elastic deformation then).
    #[arg(long)]
    augment: bool,
    /// Epoch of the key that draws the random choices (transforms, noise).
    #[arg(long, default_value_t = 0)]
    epoch: u64,
    /// Sample index within the epoch (the loader's `idx`) of the key that draws the random choices.
    #[arg(long, default_value_t = 0)]
    index: u64,
    /// Rotation in degrees about world axes, e.g. `z=30,y=0,x=0` (applied z, then y, then x);
    /// replaces the drawn spatial transform.
    #[arg(long, value_parser = parse_rotate, allow_hyphen_values = true)]
    rotate: Option<[f64; 3]>,
    /// World axes to flip, e.g. `z,x`; replaces the drawn spatial transform.
    #[arg(long, value_parser = parse_mirror)]
    mirror: Option<[bool; 3]>,
    /// Two axes to swap (`y,x`), or all three in the order output z, y, x take them from the
    /// source (`x,y,z`); replaces the drawn spatial transform.
    #[arg(long, value_parser = parse_transpose)]
    transpose: Option<[usize; 3]>,
}

/// How [`read_sample`] reads: the defaults read the unaugmented sample with the value transforms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleOptions {
    /// Skip the value transforms (the stored values, labels unbinarized).
    pub raw_values: bool,
    /// Draw the spec's spatial transform with the sample's key, as the training loader does.
    pub augment: bool,
    /// Epoch of the sample's key.
    pub epoch: u64,
    /// Index of the sample within its epoch (the loader's `idx`), the key's index.
    pub index: u64,
    /// A spatial transform that replaces the drawn one (or the identity without `augment`).
    pub transform: Option<ExplicitTransform>,
}

/// A spatial transform given explicitly, composed as a drawn one (`M = R · F · P`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExplicitTransform {
    /// Degrees about world `[z, y, x]`, applied z first, then y, then x.
    pub rotate_deg: [f64; 3],
    /// World axes flipped, `[z, y, x]`.
    pub mirror: [bool; 3],
    /// Output axis `a` runs along source axis `permutation[a]`.
    pub permutation: [usize; 3],
}

impl Default for ExplicitTransform {
    fn default() -> Self {
        ExplicitTransform {
            rotate_deg: [0.0; 3],
            mirror: [false; 3],
            permutation: [0, 1, 2],
        }
    }
}

const AXIS_NAMES: [&str; 3] = ["z", "y", "x"];

fn axis(s: &str) -> Result<usize, String> {
    AXIS_NAMES
        .iter()
        .position(|a| *a == s.trim())
        .ok_or(format!("`{s}` is not an axis (`z`, `y` or `x`)"))
}

fn parse_rotate(s: &str) -> Result<[f64; 3], String> {
    let mut angles = [0.0; 3];
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, v) = part
            .split_once('=')
            .ok_or(format!("expected `AXIS=DEGREES` (e.g. `z=30,y=0,x=0`), got `{part}`"))?;
        angles[axis(a)?] = v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or(format!("`{v}` is not a finite number of degrees"))?;
    }
    Ok(angles)
}

fn parse_mirror(s: &str) -> Result<[bool; 3], String> {
    let mut mirror = [false; 3];
    for a in s.split(',').filter(|p| !p.trim().is_empty()) {
        mirror[axis(a)?] = true;
    }
    Ok(mirror)
}

fn parse_transpose(s: &str) -> Result<[usize; 3], String> {
    let axes = s.split(',').map(axis).collect::<Result<Vec<_>, _>>()?;
    match *axes.as_slice() {
        [a, b] if a != b => {
            let mut p = [0, 1, 2];
            p.swap(a, b);
            Ok(p)
        }
        [a, b, c] if a != b && b != c && a != c => Ok([a, b, c]),
        _ => Err(format!(
            "expected two different axes to swap (`y,x`) or a permutation of all three (`x,y,z`), got `{s}`"
        )),
    }
}

fn parse_centre(s: &str) -> Result<[f64; 3], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [z, y, x] = parts.as_slice() else {
        return Err(format!(
            "expected three comma-separated numbers `Z,Y,X` (nm), got `{s}`"
        ));
    };
    let num = |v: &str| {
        v.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or(format!("`{v}` is not a finite number"))
    };
    Ok([num(z)?, num(y)?, num(x)?])
}

pub(crate) fn run(args: &SampleArgs) -> ExitCode {
    match sample(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// One sample read at a world centre: each array's values and where they came from.
#[derive(Debug, Clone)]
pub struct SampleOut {
    /// `(name, shape, values)` per array in batch order: inputs `[1, Z, Y, X]`, targets
    /// `[C, Z, Y, X]`, float32, C order.
    pub arrays: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// What `sample.json` records: the dataset, the centre and the voxel window read per array
    /// (each array's `file` is filled in by the caller that writes files).
    pub info: serde_json::Value,
    /// The elastic deformation applied, when one was: shape `[Z, Y, X, 3]` (control points, then
    /// the world-frame displacement in nm, z y x) and values.
    pub elastic: Option<(Vec<usize>, Vec<f32>)>,
}

/// Read one sample of `spec` centred at `centre` (nm, z y x) from dataset `dataset` of `split`,
/// with the spec's value transforms for that split unless `options.raw_values`. Every random
/// choice is keyed as the training loader keys sample `options.index` of epoch `options.epoch` on
/// rank 0 (seed of the spec): with `options.augment` and the loader's centre for that sample,
/// the arrays equal the loader's. The spatial transform is `options.transform` when given, else
/// the drawn one with `options.augment`, else none.
///
/// # Errors
/// A message naming what failed: planning, a dataset that is not planned, a read.
pub fn read_sample(
    spec: &cellmap_schema::Spec,
    split: Split,
    dataset: usize,
    centre: [f64; 3],
    options: &SampleOptions,
) -> Result<SampleOut, String> {
    let (planned, position) = plan_and_find(spec, split, dataset)?;
    let spec = Arc::new(spec.clone());
    let planned = Arc::new(planned);
    let reader = Reader::new(
        Arc::clone(&spec),
        Arc::clone(&planned),
        Some(Arc::new(ChunkCache::new(spec.loader().cache_bytes))),
    );
    let mut values: Vec<Vec<f32>> = planned
        .plan
        .batch
        .arrays
        .iter()
        .map(|a| vec![0.0; a.sample_len()])
        .collect();
    // The training loader's key of (epoch, index) on rank 0, first attempt (`runtime/src/loader/job.rs`).
    let key = SampleKey {
        seed: spec.sampling().seed,
        epoch: options.epoch,
        rank: 0,
        index: options.index,
    };
    let request = SampleRequest {
        dataset: position,
        centre_nm: centre,
        key,
        spatial: options.augment,
        values: !options.raw_values,
    };
    let draw = match options.transform {
        Some(t) => SpatialDraw::explicit(t.rotate_deg, t.mirror, t.permutation).ok_or(format!(
            "{:?} is not a permutation of the axes, or an angle is not finite",
            t
        ))?,
        None => reader.spatial_draw(&request),
    };
    let mut scratch = reader.scratch();
    reader
        .read_transformed(&mut scratch, &request, &draw, &mut values)
        .map_err(|e| e.to_string())?;
    let d = &planned.plan.datasets[position];
    // The windows in world axes: a 2D spec's y- or x-slice reads its frame's transform carried
    // into world axes (the identity for 3D specs and z-slices).
    let axis = reader.slice_axis(&request);
    let mut world_draw = draw.clone();
    world_draw.slice(slicing::frame_axes(axis));
    let windows = Windows {
        centre,
        draw: &world_draw,
        axis,
        transformed: options.augment || options.transform.is_some(),
    };
    let (arrays, described) = describe_arrays(&spec, d, &windows, values);
    let mut info = serde_json::json!({
        "spec": spec.source().display().to_string(),
        "split": split.name(),
        "dataset": dataset,
        "raw": d.raw,
        "origin": d.origin,
        "centre_nm": centre,
        "slice_axis": axis.name(),
        "value_transforms": !options.raw_values,
        "arrays": described,
    });
    let mut elastic = None;
    if windows.transformed {
        let (transform, field) = describe_transform(&spec, options, &draw, key);
        info["transform"] = transform;
        elastic = field;
    }
    Ok(SampleOut { arrays, info, elastic })
}

/// Plan the spec and find `split` dataset #`dataset` among the planned ones.
fn plan_and_find(
    spec: &cellmap_schema::Spec,
    split: Split,
    dataset: usize,
) -> Result<(cellmap_runtime::Planned, usize), String> {
    let planned = plan(spec, PlanOptions::default()).map_err(|e| e.to_string())?;
    let Some(position) = planned
        .plan
        .datasets
        .iter()
        .position(|d| d.split == split && d.index == dataset)
    else {
        let available: Vec<String> = planned.plan.datasets_of(split).map(|d| d.index.to_string()).collect();
        return Err(format!(
            "no planned {} dataset #{} (planned: [{}]; excluded ones are listed by `cellmap-compile plan`)",
            split.name(),
            dataset,
            available.join(", ")
        ));
    };
    Ok((planned, position))
}

/// Describes the source window an array's crop reads.
struct Windows<'a> {
    centre: [f64; 3],
    /// The transform in world axes.
    draw: &'a SpatialDraw,
    /// The world axis the sample slices (z for 3D specs).
    axis: cellmap_schema::Axis,
    transformed: bool,
}

impl Windows<'_> {
    fn describe(&self, lp: &cellmap_runtime::LevelPlan, array: &cellmap_schema::ArraySpec) -> serde_json::Value {
        let centre = self.centre;
        let shape = slicing::world_array(array, self.axis).shape_vox;
        let start: Vec<i64> = (0..3)
            .map(|a| crop_start_vox(centre[a], lp.translation_nm[a], lp.scale_nm[a], shape[a]))
            .collect();
        let mut w = serde_json::json!({ "group": lp.group, "level": lp.path, "scale_nm": lp.scale_nm, "translation_nm": lp.translation_nm,
            "start_vox": start, "shape_vox": shape, "resampled": lp.resampled });
        if self.transformed {
            // The voxels the transformed crop samples (before clipping to the level).
            let frame = slicing::frame_array(array, self.axis);
            let (start, shape) = transformed_window_vox(&frame, self.draw, centre, lp.translation_nm, lp.scale_nm);
            w["transformed_start_vox"] = serde_json::json!(start);
            w["transformed_shape_vox"] = serde_json::json!(shape);
        }
        w
    }
}

type NamedArray = (String, Vec<usize>, Vec<f32>);

/// A field's shape and values (the elastic displacement lattice, `[z, y, x, 3]`).
type NamedField = (Vec<usize>, Vec<f32>);

/// The arrays (name, shape, values) and their description for `sample.json`.
fn describe_arrays(
    spec: &cellmap_schema::Spec,
    d: &cellmap_runtime::DatasetPlan,
    windows: &Windows<'_>,
    values: Vec<Vec<f32>>,
) -> (Vec<NamedArray>, serde_json::Map<String, serde_json::Value>) {
    let mut described = serde_json::Map::new();
    let mut arrays = Vec::new();
    let mut values = values.into_iter();
    for (i, array) in spec.inputs().iter().enumerate() {
        let [z, y, x] = array.shape_vox;
        arrays.push((array.name.clone(), vec![1, z, y, x], values.next().unwrap_or_default()));
        described.insert(
            array.name.clone(),
            serde_json::json!({ "shape": [1, z, y, x], "source": windows.describe(&d.inputs[i], array) }),
        );
    }
    for (t, array) in spec.targets().iter().enumerate() {
        let [z, y, x] = array.shape_vox;
        arrays.push((
            array.name.clone(),
            vec![spec.classes().len(), z, y, x],
            values.next().unwrap_or_default(),
        ));
        let classes: Vec<serde_json::Value> = d.targets[t]
            .iter()
            .zip(spec.classes())
            .map(|(c, name)| match c {
                ClassPlan::Annotated(lp) => {
                    serde_json::json!({ "class": name, "source": "annotated", "window": windows.describe(lp, array) })
                }
                ClassPlan::Inferred(related) => serde_json::json!({ "class": name, "source": "inferred",
                    "from": related.iter().map(|&r| spec.classes()[r].clone()).collect::<Vec<_>>() }),
                ClassPlan::Unknown => serde_json::json!({ "class": name, "source": "unknown" }),
            })
            .collect();
        described.insert(
            array.name.clone(),
            serde_json::json!({ "shape": [spec.classes().len(), z, y, x], "classes": classes }),
        );
    }
    (arrays, described)
}

/// The `transform` entry of `sample.json`, and the elastic displacement field when one applies.
fn describe_transform(
    spec: &cellmap_schema::Spec,
    options: &SampleOptions,
    draw: &SpatialDraw,
    key: SampleKey,
) -> (serde_json::Value, Option<NamedField>) {
    let mut elastic = None;
    let source = match (options.transform, options.augment) {
        (Some(_), _) => "explicit",
        (None, true) if spec.augment().spatial.is_identity() => "none (the spec has no spatial augmentation)",
        (None, _) => "drawn",
    };
    let axes = |v: [bool; 3]| serde_json::json!({ "z": v[0], "y": v[1], "x": v[2] });
    let elastic_info = match &draw.elastic {
        Some(e) => {
            let [z, y, x] = e.lattice_shape;
            elastic = Some((
                vec![z, y, x, 3],
                e.displacement_nm.iter().flatten().copied().collect::<Vec<f32>>(),
            ));
            serde_json::json!({ "applied": true, "spacing_nm": e.spacing_nm, "origin_nm": e.origin_nm,
                    "lattice_shape": e.lattice_shape,
                    "sigma_nm": spec.augment().spatial.elastic.as_ref().map(|e| e.sigma_nm),
                    "note": "world-frame displacement (nm) per control point in `displacement_file`, cubic B-spline over the output offsets; the lattice generator is forked from the spatial stream of `key`" })
        }
        None => serde_json::json!({ "applied": false }),
    };
    let transform = serde_json::json!({
        "augment": options.augment,
        "source": source,
        "key": { "seed": key.seed, "epoch": key.epoch, "rank": key.rank, "index": key.index,
                 "spatial_stream": STREAM_SPATIAL },
        "composition": "M = R·F·P maps an output voxel's offset from the centre (nm, output axes z y x) to the world offset it samples: transpose P first, then mirror F, then rotation R = R_x·R_y·R_z (about world z first, then y, then x; right-handed)",
        "rotate_deg": { "z": draw.angles_deg[0], "y": draw.angles_deg[1], "x": draw.angles_deg[2] },
        "rotation_order": ["z", "y", "x"],
        "mirror": axes(draw.mirror),
        "permutation": draw.permutation,
        "permutation_note": "output axis a runs along source axis permutation[a] (0 = z, 1 = y, 2 = x)",
        "matrix": draw.matrix,
        "elastic": elastic_info,
    });
    (transform, elastic)
}

fn sample(args: &SampleArgs) -> Result<(), String> {
    let checked = load_spec(&args.spec).map_err(|_| format!("`{}` is not a valid spec", args.spec.display()))?;
    let split = Split::from(args.split);
    let explicit = args.rotate.is_some() || args.mirror.is_some() || args.transpose.is_some();
    let options = SampleOptions {
        raw_values: args.raw_values,
        augment: args.augment,
        epoch: args.epoch,
        index: args.index,
        transform: explicit.then(|| ExplicitTransform {
            rotate_deg: args.rotate.unwrap_or([0.0; 3]),
            mirror: args.mirror.unwrap_or([false; 3]),
            permutation: args.transpose.unwrap_or([0, 1, 2]),
        }),
    };
    let SampleOut {
        arrays,
        mut info,
        elastic,
    } = read_sample(&checked.spec, split, args.dataset, args.center, &options)?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("cannot create `{}`: {e}", args.out.display()))?;
    info["spec"] = serde_json::json!(args.spec.display().to_string());
    if let Some((shape, values)) = &elastic {
        let path = args.out.join("elastic_displacement_nm.npy");
        npy::write_f32(&path, shape, values).map_err(|e| format!("`{}`: {e}", path.display()))?;
        info["transform"]["elastic"]["displacement_file"] = serde_json::json!("elastic_displacement_nm.npy");
    }
    for (name, shape, values) in &arrays {
        let path = args.out.join(format!("{name}.npy"));
        npy::write_f32(&path, shape, values).map_err(|e| format!("`{}`: {e}", path.display()))?;
        let file = serde_json::json!(path.file_name().map(|f| f.to_string_lossy().into_owned()));
        if let Some(described) = info["arrays"].get_mut(name).and_then(|v| v.as_object_mut()) {
            // `file` first, as sample.json has always listed it.
            let rest = std::mem::take(described);
            described.insert("file".to_owned(), file);
            described.extend(rest);
        }
    }
    let path = args.out.join("sample.json");
    std::fs::write(&path, serde_json::to_string_pretty(&info).unwrap_or_default() + "\n")
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
    println!(
        "wrote {} arrays and sample.json to {}",
        arrays.len(),
        args.out.display()
    );
    Ok(())
}
