//! `cellmap-compile sample SPEC --split S --dataset K --center Z,Y,X --out DIR`: one crop as `.npy`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use cellmap_runtime::{
    ChunkCache, ClassPlan, PlanOptions, Reader, SampleKey, SampleRequest, crop_start_vox, npy, plan,
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
}

/// Read one sample of `spec` (no spatial augmentation) centred at `centre` (nm, z y x) from
/// dataset `dataset` of `split`, with the spec's value transforms for that split unless
/// `raw_values`.
///
/// # Errors
/// A message naming what failed: planning, a dataset that is not planned, a read.
pub fn read_sample(
    spec: &cellmap_schema::Spec,
    split: Split,
    dataset: usize,
    centre: [f64; 3],
    raw_values: bool,
) -> Result<SampleOut, String> {
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
    let spec = Arc::new(spec.clone());
    let planned = Arc::new(planned);
    let reader = Reader::new(
        Arc::clone(&spec),
        Arc::clone(&planned),
        Some(Arc::new(ChunkCache::new(spec.loader.cache_bytes))),
    );
    let mut values: Vec<Vec<f32>> = planned
        .plan
        .batch
        .arrays
        .iter()
        .map(|a| vec![0.0; a.sample_len()])
        .collect();
    let request = SampleRequest {
        dataset: position,
        centre_nm: centre,
        key: SampleKey {
            seed: spec.sampling.seed,
            epoch: 0,
            rank: 0,
            index: 0,
        },
        spatial: false,
        values: !raw_values,
    };
    let mut scratch = reader.scratch();
    reader
        .read(&mut scratch, &request, &mut values)
        .map_err(|e| e.to_string())?;
    let d = &planned.plan.datasets[position];
    let window = |lp: &cellmap_runtime::LevelPlan, shape: [usize; 3]| {
        let start: Vec<i64> = (0..3)
            .map(|a| crop_start_vox(centre[a], lp.translation_nm[a], lp.scale_nm[a], shape[a]))
            .collect();
        serde_json::json!({ "group": lp.group, "level": lp.path, "scale_nm": lp.scale_nm, "translation_nm": lp.translation_nm,
            "start_vox": start, "shape_vox": shape, "resampled": lp.resampled })
    };
    let mut described = serde_json::Map::new();
    let mut arrays = Vec::new();
    let mut values = values.into_iter();
    for (i, array) in spec.inputs.iter().enumerate() {
        let [z, y, x] = array.shape_vox;
        arrays.push((array.name.clone(), vec![1, z, y, x], values.next().unwrap_or_default()));
        described.insert(
            array.name.clone(),
            serde_json::json!({ "shape": [1, z, y, x], "source": window(&d.inputs[i], array.shape_vox) }),
        );
    }
    for (t, array) in spec.targets.iter().enumerate() {
        let [z, y, x] = array.shape_vox;
        arrays.push((
            array.name.clone(),
            vec![spec.classes.len(), z, y, x],
            values.next().unwrap_or_default(),
        ));
        let classes: Vec<serde_json::Value> = d.targets[t]
            .iter()
            .zip(&spec.classes)
            .map(|(c, name)| match c {
                ClassPlan::Annotated(lp) => {
                    serde_json::json!({ "class": name, "source": "annotated", "window": window(lp, array.shape_vox) })
                }
                ClassPlan::Inferred(related) => serde_json::json!({ "class": name, "source": "inferred",
                    "from": related.iter().map(|&r| spec.classes[r].clone()).collect::<Vec<_>>() }),
                ClassPlan::Unknown => serde_json::json!({ "class": name, "source": "unknown" }),
            })
            .collect();
        described.insert(
            array.name.clone(),
            serde_json::json!({ "shape": [spec.classes.len(), z, y, x], "classes": classes }),
        );
    }
    let info = serde_json::json!({
        "spec": spec.source.display().to_string(),
        "split": split.name(),
        "dataset": dataset,
        "raw": d.raw,
        "origin": d.origin,
        "centre_nm": centre,
        "value_transforms": !raw_values,
        "arrays": described,
    });
    Ok(SampleOut { arrays, info })
}

fn sample(args: &SampleArgs) -> Result<(), String> {
    let checked = load_spec(&args.spec).map_err(|_| format!("`{}` is not a valid spec", args.spec.display()))?;
    let split = Split::from(args.split);
    let SampleOut { arrays, mut info } = read_sample(&checked.spec, split, args.dataset, args.center, args.raw_values)?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("cannot create `{}`: {e}", args.out.display()))?;
    info["spec"] = serde_json::json!(args.spec.display().to_string());
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
