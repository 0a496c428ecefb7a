//! The exceptions of the module: `CellmapError` (a `RuntimeError`), `SlotsHeldError` (a
//! `CellmapError`) and `SpecError` (a `CellmapError` and a `ValueError`, with the diagnostics).

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};

use cellmap_schema::Diagnostic;

pyo3::create_exception!(
    _native,
    CellmapError,
    PyRuntimeError,
    "An error of the loader, the planner or a reader; the message is the one the CLI prints."
);
pyo3::create_exception!(
    _native,
    SlotsHeldError,
    CellmapError,
    "Every ring slot is held by live tensors of earlier batches, so no new batch can be filled."
);

/// `SpecError`, made at module start (two bases, which `create_exception!` cannot express).
static SPEC_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Add the exception types to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CellmapError", py.get_type::<CellmapError>())?;
    m.add("SlotsHeldError", py.get_type::<SlotsHeldError>())?;
    let namespace = PyDict::new(py);
    namespace.set_item(
        "__doc__",
        "The spec is invalid; `diagnostics` lists every error and warning (file, line, column, \
         JSON pointer, message, expected, hint).",
    )?;
    namespace.set_item("__module__", "cellmap_compile")?;
    let bases = PyTuple::new(py, [py.get_type::<CellmapError>(), py.get_type::<PyValueError>()])?;
    let ty = py
        .get_type::<PyType>()
        .call1(("SpecError", bases, namespace))?
        .cast_into::<PyType>()?;
    m.add("SpecError", &ty)?;
    let _ = SPEC_ERROR.set(py, ty.unbind());
    Ok(())
}

/// A `CellmapError` with `e`'s message.
pub(crate) fn cellmap_error(e: impl std::fmt::Display) -> PyErr {
    CellmapError::new_err(e.to_string())
}

/// The source name of a spec built in Python (`cellmap_compile._spec_text` passes it; relative
/// paths resolve against the current folder).
pub(crate) const DICT_SOURCE: &str = "<dict>";

/// Whether a diagnostic's file is a real file (a spec given as a dict has none).
pub(crate) fn has_file(d: &Diagnostic) -> bool {
    d.file.as_os_str() != DICT_SOURCE
}

/// A diagnostic as a dict: severity, message, file, line, column, pointer, expected, hint,
/// rendered.
pub(crate) fn diagnostic_dict<'py>(py: Python<'py>, d: &Diagnostic) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let file = has_file(d);
    dict.set_item("severity", d.severity.name())?;
    dict.set_item("message", &d.message)?;
    dict.set_item("file", file.then(|| d.file.display().to_string()))?;
    dict.set_item("line", file.then_some(d.line))?;
    dict.set_item("column", file.then_some(d.column))?;
    dict.set_item("pointer", &d.pointer)?;
    dict.set_item("expected", d.expected.as_deref())?;
    dict.set_item("hint", d.hint.as_deref())?;
    dict.set_item("rendered", render(std::slice::from_ref(d)))?;
    Ok(dict)
}

/// The diagnostics as the CLI prints them; without a file, the position is the JSON pointer.
pub(crate) fn render(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        if has_file(d) {
            out.push_str(&cellmap_schema::render_human(std::slice::from_ref(d)));
        } else {
            let at = if d.pointer.is_empty() { "/" } else { &d.pointer };
            out.push_str(&format!("spec `{at}`: {}: {}\n", d.severity.name(), d.message));
            if let Some(e) = &d.expected {
                out.push_str(&format!("  expected: {e}\n"));
            }
            if let Some(h) = &d.hint {
                out.push_str(&format!("  hint: {h}\n"));
            }
        }
    }
    out
}

/// A `SpecError` carrying `diagnostics`; its message is their rendering.
pub(crate) fn spec_error(py: Python<'_>, diagnostics: &[Diagnostic]) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let ty = SPEC_ERROR
            .get(py)
            .ok_or_else(|| PyRuntimeError::new_err("SpecError is not registered"))?
            .bind(py);
        let message = render(diagnostics);
        let error = ty.call1((message.trim_end(),))?;
        let list = PyList::empty(py);
        for d in diagnostics {
            list.append(diagnostic_dict(py, d)?)?;
        }
        error.setattr("diagnostics", list)?;
        Ok(PyErr::from_value(error))
    };
    build().unwrap_or_else(|e| e)
}
