//! `cellmap-compile predict-plan SPEC`: the output volumes, tiles, shapes and bytes of `predict`.

use std::path::PathBuf;
use std::process::ExitCode;

use cellmap_runtime::{predict::PredictPlan, predict::Tile};

use super::{EXIT_INVALID, load_spec};

/// Arguments of `predict-plan`.
#[derive(Debug, clap::Args)]
pub(crate) struct PredictPlanArgs {
    /// The spec (with a `predict` section).
    spec: PathBuf,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// List every tile (id, unit, grid index, first voxel, written shape, centre).
    #[arg(long)]
    tiles: bool,
}

pub(crate) fn run(args: &PredictPlanArgs) -> ExitCode {
    let checked = match load_spec(&args.spec) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let plan = match PredictPlan::new(&checked.spec) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    let tiles: Vec<Tile> = if args.tiles {
        (0..plan.tile_count()).filter_map(|id| plan.tile(id).ok()).collect()
    } else {
        Vec::new()
    };
    if args.json {
        let value = serde_json::json!({"plan": plan, "tile_count": plan.tile_count(), "tiles": tiles});
        match serde_json::to_string_pretty(&value) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_INVALID);
            }
        }
    } else {
        print!("{}", render(&plan, &tiles));
    }
    ExitCode::SUCCESS
}

/// The prediction plan as a human-readable summary.
pub(crate) fn render(plan: &PredictPlan, tiles: &[Tile]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mib = |b: u64| b as f64 / 1048576.0;
    let dtype = match plan.dtype {
        cellmap_schema::PredictDtype::Float32 => "float32",
        cellmap_schema::PredictDtype::Uint8 => "uint8",
    };
    let _ = writeln!(
        s,
        "predict: tile {:?} vox (= chunk), context {:?} vox, output {:?} nm {dtype}, zarr v{}",
        plan.tile_vox, plan.context_vox, plan.voxel_size_nm, plan.zarr_format
    );
    let _ = writeln!(
        s,
        "  model channels: {}; written: {}",
        plan.model_channels,
        plan.classes
            .iter()
            .zip(&plan.class_channels)
            .map(|(c, ch)| format!("{c} (channel {ch})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for i in &plan.inputs {
        let _ = writeln!(
            s,
            "  input {:<12} {:?} vox at {:?} nm per tile",
            i.name, i.window_vox, i.voxel_size_nm
        );
    }
    let _ = writeln!(
        s,
        "  input bytes per tile: {} ({:.2} MiB as f32)",
        plan.input_bytes_per_tile,
        mib(plan.input_bytes_per_tile)
    );
    for (k, u) in plan.units.iter().enumerate() {
        let _ = writeln!(s);
        let _ = writeln!(s, "unit {k} `{}`: raw {}", u.name, u.raw);
        let _ = writeln!(
            s,
            "  region {:?}..{:?} nm → {:?} vox, voxel 0 centred at {:?} nm",
            u.region_nm.lo_nm, u.region_nm.hi_nm, u.shape_vox, u.translation_nm
        );
        let bytes = u.shape_vox.iter().product::<u64>() * plan.dtype.size_bytes() as u64;
        let _ = writeln!(
            s,
            "  tiles {:?} = {} (ids {}..{}); {} bytes ({:.2} MiB) per class",
            u.tile_grid,
            u.tiles(),
            u.first_tile,
            u.first_tile + u.tiles(),
            bytes,
            mib(bytes)
        );
        for g in &u.groups {
            let _ = writeln!(s, "  → {g}");
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "total: {} tiles, {} output bytes ({:.2} MiB uncompressed)",
        plan.tile_count(),
        plan.output_bytes,
        mib(plan.output_bytes)
    );
    if !tiles.is_empty() {
        let _ = writeln!(
            s,
            "{:>8} {:>4}  {:<16} {:<18} {:<14} centre (nm)",
            "tile", "unit", "index", "start (vox)", "shape (vox)"
        );
        for t in tiles {
            let _ = writeln!(
                s,
                "{:>8} {:>4}  {:<16} {:<18} {:<14} {:?}",
                t.id,
                t.unit,
                format!("{:?}", t.index),
                format!("{:?}", t.start_vox),
                format!("{:?}", t.shape_vox),
                t.centre_nm
            );
        }
    }
    s
}
