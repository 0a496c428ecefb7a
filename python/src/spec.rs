//! Specs given from Python: text (YAML or JSON) and the path it came from.

use std::path::Path;

use pyo3::prelude::*;

use cellmap_schema::{Checked, Split};

use crate::errors::spec_error;

/// Parse and validate a spec; an invalid one raises `SpecError` with every diagnostic.
pub(crate) fn parse(py: Python<'_>, text: &str, source: &str) -> PyResult<Checked> {
    py.detach(|| cellmap_schema::parse(text, Path::new(source)))
        .map_err(|diagnostics| spec_error(py, &diagnostics.0))
}

/// A split from its name (`train`, `validate`/`val`, `test`; any case).
pub(crate) fn split(name: &str) -> PyResult<Split> {
    Split::from_name(name).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "unknown split `{name}` (expected `train`, `validate` or `test`)"
        ))
    })
}
