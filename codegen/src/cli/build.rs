//! `cellmap-compile build SPEC -o DIR [--python]`: write the specialised loader crate of a spec
//! (with `--python`, also its Python package: `pip install DIR`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::generate::python::generate_python;
use crate::generate::{GeneratedFile, RuntimeDep, generate};

use super::{EXIT_INVALID, load_spec};

/// Arguments of `build`.
#[derive(Debug, clap::Args)]
pub(crate) struct BuildArgs {
    /// The spec.
    spec: PathBuf,
    /// Output folder of the crate.
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
    /// Depend on cellmap-runtime by this path (default: the runtime next to this tool's sources,
    /// when present; otherwise the registry version of this tool).
    #[arg(long)]
    runtime_path: Option<PathBuf>,
    /// Depend on this registry version of cellmap-runtime.
    #[arg(long, conflicts_with = "runtime_path")]
    runtime_version: Option<String>,
    /// Replace an existing output folder.
    #[arg(long)]
    force: bool,
    /// Also write the Python package: pure Python over `cellmap_compile`, with the spec and plan
    /// compiled in (`pip install DIR`, no Rust toolchain needed).
    #[arg(long)]
    python: bool,
    /// Do not plan the data now: the crate's loaders plan it when they start (for building
    /// where the data is not readable). By default the plan is embedded in the crate.
    #[arg(long)]
    no_plan: bool,
}

pub(crate) fn run(args: &BuildArgs) -> ExitCode {
    let checked = match load_spec(&args.spec) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match (&args.runtime_path, &args.runtime_version) {
        (Some(p), _) => RuntimeDep::Path(absolute(p).display().to_string()),
        (None, Some(v)) => RuntimeDep::Version(v.clone()),
        (None, None) => default_runtime(),
    };
    let text = std::fs::read_to_string(&args.spec).unwrap_or_default();
    let label = args
        .spec
        .file_name()
        .map_or_else(|| args.spec.display().to_string(), |f| f.to_string_lossy().into_owned());
    let plan = if args.no_plan {
        None
    } else {
        plan_for_crate(&checked.spec)
    };
    let generated = generate(&checked.spec, &text, &label, &runtime, plan.as_ref()).and_then(|mut files| {
        if args.python {
            files.extend(generate_python(&checked.spec, &text, &label, plan.as_ref())?);
        }
        Ok(files)
    });
    let files = match generated {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {}: {e}", args.spec.display());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    match write_crate(&args.out, &files, args.force) {
        Ok(()) => {
            println!("wrote crate `{}` to {}", checked.spec.name(), args.out.display());
            if args.python {
                println!("python package: pip install {}", args.out.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// The plan a generated crate embeds: what `Loader::open` would plan (the same options), or
/// `None` with a note when the data cannot be planned here (the crate then plans at start).
pub(crate) fn plan_for_crate(spec: &cellmap_runtime::cellmap_schema::Spec) -> Option<cellmap_runtime::Plan> {
    match cellmap_runtime::plan(spec, cellmap_runtime::PlanOptions::default()) {
        Ok(planned) => Some(planned.plan),
        Err(e) => {
            eprintln!(
                "note: {}: the data cannot be planned here, so the crate will plan it when its loader starts \
                 (pass --no-plan to skip this step):\n  {e}",
                spec.source().display()
            );
            None
        }
    }
}

/// The runtime crate beside this tool's sources, or the registry version.
pub(crate) fn default_runtime() -> RuntimeDep {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime");
    match beside.canonicalize() {
        Ok(p) if p.join("Cargo.toml").exists() => RuntimeDep::Path(p.display().to_string()),
        _ => RuntimeDep::Version(crate::generate::TOOL_VERSION.to_owned()),
    }
}

fn absolute(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    })
}

/// Write `files` into `out` atomically: into a temporary sibling folder, then renamed. An
/// existing non-empty `out` is only replaced with `force`.
pub(crate) fn write_crate(out: &Path, files: &[GeneratedFile], force: bool) -> Result<(), String> {
    let exists = out.exists();
    if exists && !force && std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(format!(
            "`{}` exists and is not empty; pass --force to replace it",
            out.display()
        ));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    let name = out
        .file_name()
        .map_or_else(|| "crate".to_owned(), |n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let write = || -> std::io::Result<()> {
        for f in files {
            let path = tmp.join(&f.path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, &f.contents)?;
        }
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!("cannot write `{}`: {e}", tmp.display()));
    }
    let moved = |e: std::io::Error| format!("cannot move `{}` to `{}`: {e}", tmp.display(), out.display());
    if !exists {
        return std::fs::rename(&tmp, out).map_err(moved);
    }
    // Keep a target/ folder of the previous build, so rebuilding stays incremental.
    let old_target = out.join("target");
    let kept_target = old_target.is_dir() && std::fs::rename(&old_target, tmp.join("target")).is_ok();
    // Swap by renames: the previous crate is only deleted once the new one is in place; if the
    // swap fails it is put back.
    let backup = parent.join(format!(".{name}.old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&backup);
    let restore_target = || {
        if kept_target {
            let _ = std::fs::rename(tmp.join("target"), &old_target);
        }
    };
    if let Err(e) = std::fs::rename(out, &backup) {
        restore_target();
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!("cannot replace `{}`: {e}", out.display()));
    }
    if let Err(e) = std::fs::rename(&tmp, out) {
        let _ = std::fs::rename(&backup, out);
        restore_target();
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(moved(e));
    }
    let _ = std::fs::remove_dir_all(&backup);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, contents: &str) -> GeneratedFile {
        GeneratedFile {
            path: path.to_owned(),
            contents: contents.to_owned(),
        }
    }

    /// Names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn previous_crate(out: &Path) {
        std::fs::create_dir_all(out.join("target/debug")).unwrap();
        std::fs::write(out.join("Cargo.toml"), "old").unwrap();
        std::fs::write(out.join("target/debug/artifact"), "built").unwrap();
    }

    #[test]
    fn an_existing_crate_is_kept_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("loader");
        previous_crate(&out);
        let err = write_crate(&out, &[file("Cargo.toml", "new")], false).unwrap_err();
        assert_eq!(
            err,
            format!(
                "`{}` exists and is not empty; pass --force to replace it",
                out.display()
            )
        );
        assert_eq!(std::fs::read_to_string(out.join("Cargo.toml")).unwrap(), "old");
        assert_eq!(names(tmp.path()), ["loader"]);
    }

    #[test]
    fn force_replaces_the_crate_and_keeps_its_target_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("loader");
        previous_crate(&out);
        write_crate(&out, &[file("Cargo.toml", "new"), file("src/lib.rs", "//! x")], true).unwrap();
        assert_eq!(names(&out), ["Cargo.toml", "src", "target"]);
        assert_eq!(std::fs::read_to_string(out.join("Cargo.toml")).unwrap(), "new");
        assert_eq!(
            std::fs::read_to_string(out.join("target/debug/artifact")).unwrap(),
            "built"
        );
        assert_eq!(names(tmp.path()), ["loader"], "no temporary or backup folder is left");
    }

    #[test]
    fn a_write_failing_half_way_leaves_the_previous_crate_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("loader");
        previous_crate(&out);
        // The second file cannot be created (a NUL byte in its name): the write stops half-way.
        let files = [file("Cargo.toml", "new"), file("src/bad\0.rs", "")];
        let err = write_crate(&out, &files, true).unwrap_err();
        assert!(err.starts_with("cannot write `"), "{err}");
        assert_eq!(names(&out), ["Cargo.toml", "target"]);
        assert_eq!(std::fs::read_to_string(out.join("Cargo.toml")).unwrap(), "old");
        assert_eq!(
            std::fs::read_to_string(out.join("target/debug/artifact")).unwrap(),
            "built"
        );
        assert_eq!(names(tmp.path()), ["loader"], "the half-written folder is removed");

        // Without a previous crate, nothing is left at all.
        let fresh = tmp.path().join("fresh");
        write_crate(&fresh, &files, false).unwrap_err();
        assert_eq!(names(tmp.path()), ["loader"]);
    }
}
