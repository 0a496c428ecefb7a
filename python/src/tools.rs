//! The module's functions: `check`, `normalized_spec`, `plan_json`, `write_training_cache`,
//! `sample`, `preview`, `import_config` and `cli`.

use std::path::Path;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use cellmap_codegen::import::{IterationUnit, import};
use cellmap_runtime::{PlanOptions, plan};

use crate::dlpack::owned_capsule;
use crate::errors::{cellmap_error, diagnostic_dict};
use crate::spec::parse;

/// Add the functions to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add_function(wrap_pyfunction!(normalized_spec, m)?)?;
    m.add_function(wrap_pyfunction!(plan_json, m)?)?;
    m.add_function(wrap_pyfunction!(write_training_cache, m)?)?;
    m.add_function(wrap_pyfunction!(sample, m)?)?;
    m.add_function(wrap_pyfunction!(preview, m)?)?;
    m.add_function(wrap_pyfunction!(import_config, m)?)?;
    m.add_function(wrap_pyfunction!(cli, m)?)?;
    Ok(())
}

/// Every diagnostic of a spec (errors and warnings; empty when valid); `data` also checks the
/// data it names.
#[pyfunction]
#[pyo3(signature = (text, source, data = false))]
fn check<'py>(py: Python<'py>, text: &str, source: &str, data: bool) -> PyResult<Bound<'py, PyList>> {
    let diagnostics = py.detach(|| match cellmap_schema::parse(text, Path::new(source)) {
        Ok(checked) => {
            let mut all = checked.warnings;
            if data {
                all.extend(cellmap_codegen::cli::data_diagnostics(&checked.spec));
            }
            all
        }
        Err(errors) => errors.0,
    });
    let list = PyList::empty(py);
    for d in &diagnostics {
        list.append(diagnostic_dict(py, d)?)?;
    }
    Ok(list)
}

/// The validated spec as JSON, every default filled in.
#[pyfunction]
fn normalized_spec(py: Python<'_>, text: &str, source: &str) -> PyResult<String> {
    serde_json::to_string(&parse(py, text, source)?.spec).map_err(cellmap_error)
}

/// The plan as JSON (`plan --json`); `counts` counts class voxels.
#[pyfunction]
#[pyo3(signature = (text, source, counts = false))]
fn plan_json(py: Python<'_>, text: &str, source: &str, counts: bool) -> PyResult<String> {
    let spec = parse(py, text, source)?.spec;
    py.detach(|| {
        let planned = plan(&spec, PlanOptions { count_classes: counts }).map_err(|e| e.to_string())?;
        cellmap_runtime::sample::intensity::plan_json(&spec, &planned)
            .and_then(|v| serde_json::to_string(&v))
            .map_err(|e| e.to_string())
    })
    .map_err(cellmap_error)
}

/// How [`write_training_cache`] writes: a dict with the Python function's keyword arguments
/// (`codec` required; a missing other key takes the default).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct CacheArgs {
    /// `none`, `lz4` or `zstd` (required).
    codec: String,
    /// Chunk edge in voxels (default: the spec's).
    #[pyo3(default)]
    chunk: Option<u64>,
    /// Remove replaced array folders.
    #[pyo3(default)]
    prune: bool,
    /// Copy every array again.
    #[pyo3(default)]
    force: bool,
}

/// Write (or bring up to date) the spec's training cache in `out` (`cellmap-compile cache`);
/// `args` holds the Python function's keywords ([`CacheArgs`]). Returns the report as a dict.
#[pyfunction]
fn write_training_cache<'py>(
    py: Python<'py>,
    text: &str,
    source: &str,
    out: std::path::PathBuf,
    args: CacheArgs,
) -> PyResult<Bound<'py, PyDict>> {
    use cellmap_runtime::training_cache::{CacheCodec, CacheOptions, write};
    let spec = parse(py, text, source)?.spec;
    let mut options = CacheOptions::for_spec(&spec);
    options.codec = CacheCodec::from_name(&args.codec).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown codec `{}` (expected `auto`, `none`, `lz4` or `zstd`)",
            args.codec
        ))
    })?;
    if let Some(edge) = args.chunk {
        if !(1..=1024).contains(&edge) {
            return Err(PyValueError::new_err(format!("chunk edge {edge} is not in [1, 1024]")));
        }
        options.chunk = [edge; 3];
    }
    options.prune = args.prune;
    options.force = args.force;
    let report = py
        .detach(|| write(&spec, &out, &options).map_err(|e| e.to_string()))
        .map_err(cellmap_error)?;
    let d = PyDict::new(py);
    d.set_item("dir", report.dir.display().to_string())?;
    d.set_item("copies_written", report.copies_written)?;
    d.set_item("packs_written", report.packs_written)?;
    d.set_item("classes_packed", report.classes_packed)?;
    d.set_item("kept", report.kept)?;
    d.set_item("chunks_written", report.chunks_written)?;
    d.set_item("source_bytes", report.source_bytes)?;
    d.set_item("disk_bytes", report.disk_bytes)?;
    let unreferenced: Vec<String> = report.unreferenced.iter().map(|p| p.display().to_string()).collect();
    d.set_item("unreferenced", unreferenced)?;
    d.set_item("seconds", report.elapsed.as_secs_f64())?;
    Ok(d)
}

/// What [`sample`] reads: a dict with the Python `sample`'s arguments (`split`, `dataset` and
/// `centre_nm` required; a missing key takes the Python default).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct SampleArgs {
    /// `train`, `validate` or `test`.
    split: String,
    /// Dataset index within the split.
    dataset: usize,
    /// World centre, nm, `[z, y, x]`.
    centre_nm: [f64; 3],
    /// Skip the value transforms.
    #[pyo3(default)]
    raw_values: bool,
    /// Draw the spec's spatial transform too.
    #[pyo3(default)]
    augment: bool,
    /// Epoch whose random choices key the sample.
    #[pyo3(default)]
    epoch: u64,
    /// Sample index whose random choices key the sample.
    #[pyo3(default)]
    index: u64,
}

/// One sample at a world centre: `({name: DLPack capsule}, info)`.
#[pyfunction]
fn sample<'py>(
    py: Python<'py>,
    text: &str,
    source: &str,
    args: SampleArgs,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyAny>)> {
    let split = crate::spec::split(&args.split)?;
    let centre_nm = args.centre_nm;
    if centre_nm.iter().any(|c| !c.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "the centre must be three finite numbers (nm, z y x), got {centre_nm:?}"
        )));
    }
    let spec = parse(py, text, source)?.spec;
    let out = py
        .detach(|| {
            let options = cellmap_codegen::cli::SampleOptions {
                raw_values: args.raw_values,
                augment: args.augment,
                epoch: args.epoch,
                index: args.index,
                transform: None,
            };
            cellmap_codegen::cli::read_sample(&spec, split, args.dataset, centre_nm, &options)
        })
        .map_err(cellmap_error)?;
    let arrays = PyDict::new(py);
    for (name, shape, values) in out.arrays {
        arrays.set_item(name, owned_capsule(py, values, &shape)?)?;
    }
    let info = py.import("json")?.call_method1("loads", (out.info.to_string(),))?;
    Ok((arrays, info))
}

/// Draw batch `step` of `split` as a PNG grid at `path`.
#[pyfunction]
#[pyo3(signature = (text, source, path, split = "train", step = 0))]
fn preview(py: Python<'_>, text: &str, source: &str, path: std::path::PathBuf, split: &str, step: u64) -> PyResult<()> {
    let split = crate::spec::split(split)?;
    let spec = parse(py, text, source)?.spec;
    py.detach(|| cellmap_codegen::cli::preview(spec, split, step, &path))
        .map_err(cellmap_error)
}

/// A cellmap-data / segmentation-challenge configuration (a JSON object of keyword arguments)
/// as spec YAML, with notes on keys without effect.
#[pyfunction]
#[pyo3(signature = (config_json, csv, name, iterations = "samples"))]
fn import_config(
    config_json: &str,
    csv: Option<&str>,
    name: &str,
    iterations: &str,
) -> PyResult<(String, Vec<String>)> {
    let unit = match iterations {
        "samples" => IterationUnit::Samples,
        "batches" => IterationUnit::Batches,
        other => {
            return Err(PyValueError::new_err(format!(
                "iterations counts `samples` or `batches`, not `{other}`"
            )));
        }
    };
    let imported = import(config_json, csv, name, unit).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((imported.yaml, imported.notes))
}

/// Run the `cellmap-compile` command line with `argv` (the program name first); returns the
/// exit code. The GIL is released while it runs.
#[pyfunction]
fn cli(py: Python<'_>, argv: Vec<String>) -> i32 {
    let code = py.detach(|| cellmap_codegen::cli::run_from(argv));
    // `ExitCode` keeps its value private; the command line exits with 0, 1 or 2.
    (0..=255u8)
        .find(|&n| std::process::ExitCode::from(n) == code)
        .map_or(1, i32::from)
}
