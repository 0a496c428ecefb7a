//! The extension module `cellmap_compile._native`: the generic loader over the runtime, the spec
//! tools (`check`, `plan`, `sample`, `preview`, `import`), the multiscale image reader, the
//! prediction writer and the `cellmap-compile` command line, for the pure-Python package
//! `cellmap_compile` (python/cellmap_compile/) that wraps them.
//!
//! Batches leave Rust as DLPack capsules ([`dlpack`]) that view the ring slot directly; each
//! capsule owns an `Arc` of the batch, so the slot is released when the last tensor viewing it
//! is freed.

mod dlpack;
mod errors;
mod image;
mod loader;
mod predictor;
mod spec;
mod tools;

use pyo3::prelude::*;

/// Counts allocations, so that `cellmap-compile bench` run from the package reports
/// allocations per batch as the binary does (one relaxed atomic add per allocation).
#[global_allocator]
static ALLOCATOR: cellmap_runtime::diagnostics::CountingAllocator = cellmap_runtime::diagnostics::CountingAllocator;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add("VERSION", env!("CARGO_PKG_VERSION"))?;
    m.add("META_KEYS", cellmap_codegen::generate::python::META_KEYS.to_vec())?;
    m.add_class::<loader::NativeLoader>()?;
    m.add_class::<image::NativeImage>()?;
    m.add_class::<predictor::NativePredictor>()?;
    tools::register(m)?;
    Ok(())
}
