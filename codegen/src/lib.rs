//! cellmap-codegen: compiles a validated cellmap spec into a specialised loader crate.
//!
//! [`generate()`](generate::generate) turns a [`cellmap_schema::Spec`] into the files of a
//! standalone crate (`Cargo.toml` and `README.md` from `templates/`, `src/lib.rs` built with
//! `quote!` and formatted by prettyplease). [`generate_python`](generate::python::generate_python)
//! adds the Python package of a spec (pure Python over the `cellmap_compile` package), and
//! [`import`](import::import) turns a cellmap-data or segmentation-challenge configuration into a spec. The
//! `cellmap-compile` command line is [`cli`] (the binary, and the Python package's console script).
//!
//! ```no_run
//! use cellmap_codegen::generate::{RuntimeDep, generate};
//! let text = std::fs::read_to_string("spec.yaml")?;
//! let spec = cellmap_schema::parse(&text, std::path::Path::new("spec.yaml"))?.spec;
//! // The plan of the spec's data, embedded in the crate (`None`: the crate plans at start).
//! let plan = cellmap_runtime::plan(&spec, cellmap_runtime::PlanOptions::default())?.plan;
//! let files = generate(&spec, &text, "spec.yaml", &RuntimeDep::Version("0.1.0".into()), Some(&plan))?;
//! assert!(files.iter().any(|f| f.path == "src/lib.rs"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cli;
pub mod generate;
pub mod import;
mod literal;
pub mod names;
pub mod preview;
