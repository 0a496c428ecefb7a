//! `cellmap-compile`: checks cellmap specs, plans and samples their data, benchmarks the loader
//! and compiles specs into specialised loader crates.

use std::process::ExitCode;

/// Counts allocations so that `bench` can report allocations per batch.
#[global_allocator]
static ALLOCATOR: cellmap_runtime::diagnostics::CountingAllocator = cellmap_runtime::diagnostics::CountingAllocator;

fn main() -> ExitCode {
    cellmap_codegen::cli::run()
}
