//! `cellmap-compile plan SPEC`: levels, boxes, sample counts and exact batch bytes; exit 1 when
//! the ring and the chunk cache do not fit in this machine's memory.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use cellmap_runtime::{ClassPlan, Plan, PlanOptions, memory::MemoryNeed, memory::check_fits, plan};

use super::{EXIT_INVALID, load_spec};

/// Arguments of `plan`.
#[derive(Debug, clap::Args)]
pub(crate) struct PlanArgs {
    /// The spec.
    spec: PathBuf,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// Count foreground voxels per class (reads every label voxel once).
    #[arg(long)]
    counts: bool,
}

pub(crate) fn run(args: &PlanArgs) -> ExitCode {
    let checked = match load_spec(&args.spec) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let planned = match plan(
        &checked.spec,
        PlanOptions {
            count_classes: args.counts,
        },
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    if args.json {
        let json = cellmap_runtime::sample::intensity::plan_json(&checked.spec, &planned);
        match json.and_then(|v| serde_json::to_string_pretty(&v)) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_INVALID);
            }
        }
    } else {
        print!("{}", render(&planned.plan, checked.spec.classes()));
        print!("{}", render_intensity(&checked.spec, &planned));
        if let Some(dir) = &checked.spec.loader().training_cache {
            let (cached, read) = cached_levels(&planned);
            println!("training cache {dir}: {cached} of the {read} levels read come from it");
        }
    }
    // The plan is printed either way (its ring bytes are what to lower); a loader would refuse it.
    if let Err(e) = check_fits(&MemoryNeed::of_plan(&planned.plan, &checked.spec)) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_INVALID);
    }
    ExitCode::SUCCESS
}

/// Levels the plan reads (each raw level once however many datasets share it, each class level),
/// and how many of them come from the training cache: `(cached, read)`.
fn cached_levels(planned: &cellmap_runtime::Planned) -> (usize, usize) {
    let mut seen = std::collections::HashSet::new();
    let (mut cached, mut read) = (0, 0);
    for (d, s) in planned.plan.datasets.iter().zip(&planned.sources) {
        let raws = d.inputs.iter().map(|lp| &s.raw.levels[lp.level]);
        let classes = d.targets.iter().flat_map(|per_class| {
            per_class
                .iter()
                .zip(&s.classes)
                .filter_map(|(plan, source)| match (plan, source) {
                    (ClassPlan::Annotated(lp), cellmap_runtime::sources::ClassSource::Annotated(ms)) => {
                        Some(&ms.levels[lp.level])
                    }
                    _ => None,
                })
        });
        for level in raws.chain(classes) {
            if seen.insert(level.id) {
                read += 1;
                cached += usize::from(level.is_cached());
            }
        }
    }
    (cached, read)
}

/// The plan as a human-readable table.
pub(crate) fn render(plan: &Plan, classes: &[String]) -> String {
    let mut s = String::new();
    render_batch(&mut s, plan);
    for d in &plan.datasets {
        render_dataset(&mut s, d, classes);
    }
    render_notes(&mut s, plan);
    let _ = writeln!(s, "(~ = resampled from the nearest finer level)");
    s
}

/// The batch's arrays and bytes, the ring, and the dataset table's header.
fn render_batch(s: &mut String, plan: &Plan) {
    let _ = writeln!(s, "plan `{}`", plan.name);
    let _ = writeln!(s, "  batch: {} samples", plan.batch.batch_size);
    for a in &plan.batch.arrays {
        let bytes = plan.batch.batch_size as u64 * a.sample_bytes();
        let _ = writeln!(
            s,
            "    {:<12} [{}, {}, {}, {}, {}] {}  {} bytes",
            a.name, plan.batch.batch_size, a.channels, a.shape_vox[0], a.shape_vox[1], a.shape_vox[2], a.dtype, bytes
        );
    }
    let _ = writeln!(
        s,
        "  batch bytes: {} ({:.2} MiB)",
        plan.batch_bytes,
        plan.batch_bytes as f64 / 1048576.0
    );
    let _ = writeln!(
        s,
        "  ring: {} slots = {} bytes ({:.2} MiB), allocated once",
        plan.prefetch,
        plan.ring_bytes,
        plan.ring_bytes as f64 / 1048576.0
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<9} {:>3}  {:<24} {:>16} {:>12}  raw levels / classes",
        "split", "#", "bbox size (nm)", "centres (z,y,x)", "tiles"
    );
}

/// One row of the dataset table (and its class counts).
fn render_dataset(s: &mut String, d: &cellmap_runtime::DatasetPlan, classes: &[String]) {
    let size = d.bbox_nm.size_nm();
    let levels: Vec<String> = d
        .inputs
        .iter()
        .map(|l| format!("{}{}", l.path, if l.resampled { "~" } else { "" }))
        .collect();
    let class_cells: Vec<String> = d
        .targets
        .first()
        .map(|t| {
            t.iter()
                .zip(classes)
                .map(|(c, name)| match c {
                    ClassPlan::Annotated(l) => format!("{name}:{}{}", l.path, if l.resampled { "~" } else { "" }),
                    ClassPlan::Inferred(_) => format!("{name}:inferred"),
                    ClassPlan::Unknown => format!("{name}:unknown"),
                })
                .collect()
        })
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "{:<9} {:>3}  {:<24} {:>16} {:>12}  raw {}{}",
        d.split.name(),
        d.index,
        format!("{:.0}x{:.0}x{:.0}", size[0], size[1], size[2]),
        format!("{}x{}x{}", d.grid.shape[0], d.grid.shape[1], d.grid.shape[2]),
        d.tiles.len(),
        levels.join(","),
        if class_cells.is_empty() {
            String::new()
        } else {
            format!(" | {}", class_cells.join(" "))
        }
    );
    if let Some(counts) = &d.class_counts {
        let cells: Vec<String> = counts
            .iter()
            .zip(classes)
            .map(|(c, n)| format!("{n}={}/{}", c.foreground, c.total))
            .collect();
        let _ = writeln!(s, "{:<15}foreground/total voxels: {}", "", cells.join(" "));
    }
}

/// One line per dataset input whose `normalize` is its own or was resolved from the raw dtype
/// (`scale: dtype`); nothing when every dataset uses the spec's numbers.
pub(crate) fn render_intensity(spec: &cellmap_schema::Spec, planned: &cellmap_runtime::Planned) -> String {
    let mut s = String::new();
    let resolved = cellmap_runtime::sample::intensity::InputTransforms::of_plan(spec, planned);
    for (d, per_input) in planned.plan.datasets.iter().zip(resolved.per_dataset()) {
        for (array, transforms) in spec.inputs().iter().zip(per_input) {
            if transforms.as_slice() == spec.augment().inputs_for(d.split) {
                continue;
            }
            for t in transforms {
                if let cellmap_schema::ValueTransform::Normalize { shift, scale } = t {
                    let _ = writeln!(
                        s,
                        "normalize {:<9} {:>3}  {}: (x - {shift}) / {scale}",
                        d.split.name(),
                        d.index,
                        array.name
                    );
                }
            }
        }
    }
    s
}

/// Class weights, exclusions and warnings.
fn render_notes(s: &mut String, plan: &Plan) {
    for w in &plan.class_weights {
        let cells: Vec<String> = w
            .classes
            .iter()
            .map(|c| {
                if w.unannotated.contains(&c.class) {
                    format!("{}=1 (unannotated)", c.class)
                } else {
                    format!("{}={:.4}", c.class, c.weight)
                }
            })
            .collect();
        let _ = writeln!(
            s,
            "class weights {:<9} {} (background / foreground voxels)",
            w.split.name(),
            cells.join(" ")
        );
    }
    for e in &plan.excluded {
        let _ = writeln!(
            s,
            "excluded  {} #{} ({}): {}",
            e.split.name(),
            e.index,
            e.origin,
            e.reason
        );
    }
    for w in &plan.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
}
