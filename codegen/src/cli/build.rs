//! `cellmap-compile build SPEC -o DIR [--python]`: write the specialised loader crate of a spec
//! (with `--python`, also its Python package: `pip install DIR`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cellmap_codegen::generate::python::generate_python;
use cellmap_codegen::generate::{GeneratedFile, RuntimeDep, generate};

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
    /// Also write the Python package (a pyo3 extension built by maturin: `pip install DIR`).
    #[arg(long)]
    python: bool,
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
    let generated = generate(&checked.spec, &text, &label, &runtime).and_then(|mut files| {
        if args.python {
            files.extend(generate_python(&checked.spec, &text, &label, &runtime)?);
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
            println!("wrote crate `{}` to {}", checked.spec.name, args.out.display());
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

/// The runtime crate beside this tool's sources, or the registry version.
pub(crate) fn default_runtime() -> RuntimeDep {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime");
    match beside.canonicalize() {
        Ok(p) if p.join("Cargo.toml").exists() => RuntimeDep::Path(p.display().to_string()),
        _ => RuntimeDep::Version(cellmap_codegen::generate::TOOL_VERSION.to_owned()),
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
    if exists {
        // Keep a target/ folder of the previous build, so rebuilding stays incremental.
        let old_target = out.join("target");
        if old_target.is_dir() {
            let _ = std::fs::rename(&old_target, tmp.join("target"));
        }
        std::fs::remove_dir_all(out).map_err(|e| format!("cannot replace `{}`: {e}", out.display()))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| format!("cannot move `{}` to `{}`: {e}", tmp.display(), out.display()))
}
