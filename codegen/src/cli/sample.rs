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

fn sample(args: &SampleArgs) -> Result<(), String> {
    let checked = load_spec(&args.spec).map_err(|_| format!("`{}` is not a valid spec", args.spec.display()))?;
    let spec = checked.spec;
    let split = Split::from(args.split);
    let planned = plan(&spec, PlanOptions::default()).map_err(|e| e.to_string())?;
    let Some(position) = planned
        .plan
        .datasets
        .iter()
        .position(|d| d.split == split && d.index == args.dataset)
    else {
        let available: Vec<String> = planned.plan.datasets_of(split).map(|d| d.index.to_string()).collect();
        return Err(format!(
            "no planned {} dataset #{} (planned: [{}]; excluded ones are listed by `cellmap-compile plan`)",
            split.name(),
            args.dataset,
            available.join(", ")
        ));
    };
    let spec = Arc::new(spec);
    let planned = Arc::new(planned);
    let reader = Reader::new(
        Arc::clone(&spec),
        Arc::clone(&planned),
        Some(Arc::new(ChunkCache::new(spec.loader.cache_bytes))),
    );
    let mut arrays: Vec<Vec<f32>> = planned
        .plan
        .batch
        .arrays
        .iter()
        .map(|a| vec![0.0; a.sample_len()])
        .collect();
    let request = SampleRequest {
        dataset: position,
        centre_nm: args.center,
        key: SampleKey {
            seed: spec.sampling.seed,
            epoch: 0,
            rank: 0,
            index: 0,
        },
        spatial: false,
        values: !args.raw_values,
    };
    let mut scratch = reader.scratch();
    reader
        .read(&mut scratch, &request, &mut arrays)
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("cannot create `{}`: {e}", args.out.display()))?;
    let d = &planned.plan.datasets[position];
    let window = |lp: &cellmap_runtime::LevelPlan, shape: [usize; 3]| {
        let start: Vec<i64> = (0..3)
            .map(|a| crop_start_vox(args.center[a], lp.translation_nm[a], lp.scale_nm[a], shape[a]))
            .collect();
        serde_json::json!({ "group": lp.group, "level": lp.path, "scale_nm": lp.scale_nm, "translation_nm": lp.translation_nm,
            "start_vox": start, "shape_vox": shape, "resampled": lp.resampled })
    };
    let mut described = serde_json::Map::new();
    for (i, (array, layout)) in spec.inputs.iter().zip(&planned.plan.batch.arrays).enumerate() {
        let path = args.out.join(format!("{}.npy", array.name));
        let [z, y, x] = array.shape_vox;
        npy::write_f32(&path, &[layout.channels, z, y, x], &arrays[i])
            .map_err(|e| format!("`{}`: {e}", path.display()))?;
        described.insert(array.name.clone(), serde_json::json!({ "file": path.file_name().map(|f| f.to_string_lossy().into_owned()), "shape": [1, z, y, x], "source": window(&d.inputs[i], array.shape_vox) }));
    }
    for (t, array) in spec.targets.iter().enumerate() {
        let i = spec.inputs.len() + t;
        let path = args.out.join(format!("{}.npy", array.name));
        let [z, y, x] = array.shape_vox;
        npy::write_f32(&path, &[spec.classes.len(), z, y, x], &arrays[i])
            .map_err(|e| format!("`{}`: {e}", path.display()))?;
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
        described.insert(array.name.clone(), serde_json::json!({ "file": path.file_name().map(|f| f.to_string_lossy().into_owned()), "shape": [spec.classes.len(), z, y, x], "classes": classes }));
    }
    let meta = serde_json::json!({
        "spec": args.spec.display().to_string(),
        "split": split.name(),
        "dataset": args.dataset,
        "raw": d.raw,
        "origin": d.origin,
        "centre_nm": args.center,
        "value_transforms": !args.raw_values,
        "arrays": described,
    });
    let path = args.out.join("sample.json");
    std::fs::write(&path, serde_json::to_string_pretty(&meta).unwrap_or_default() + "\n")
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
    println!(
        "wrote {} arrays and sample.json to {}",
        planned.plan.batch.arrays.len(),
        args.out.display()
    );
    Ok(())
}
