//! Spec → the source of a specialised loader crate.
//!
//! The generated `lib.rs` holds constants (classes, shapes, batch bytes), the validated spec's
//! normalized text (which `spec()` reads back through `Spec::from_normalized`) and, when `build`
//! could read the data, its plan as Rust values, a typed `Batch` with one accessor
//! per array (views typed by the spec's shapes as const generics), and a `Loader` that drives
//! `cellmap_runtime` over the embedded plan. It is built with `quote!`, formatted by prettyplease,
//! and byte-stable: the same spec and data give the same bytes.

use std::collections::BTreeMap;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};

use cellmap_runtime::Plan;
use cellmap_schema::{OutputDtype, Spec};

pub mod python;

use crate::literal::{plan_expr, raw_string};
use crate::names::{NameError, rust_names};

/// The tool version written into `@generated` headers.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Path relative to the crate root.
    pub path: String,
    /// Contents.
    pub contents: String,
}

/// Errors of generation.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A name cannot become a Rust identifier or crate name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// An array name clashes with a key the Python batch dict already has.
    #[error(
        "array `{0}` clashes with a metadata key of the Python batch dict (`idx`, `dataset`, `centre_nm`); rename it in the spec"
    )]
    PythonName(String),
    /// The spec cannot be written as normalized text (a path that is not UTF-8).
    #[error("the spec cannot be embedded: {0}")]
    Normalized(#[from] cellmap_schema::NormalizedError),
    /// The generated tokens did not parse (a bug in the generator).
    #[error("generated code does not parse (generator bug): {0}")]
    Syntax(String),
}

/// How the generated crate finds `cellmap-runtime`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeDep {
    /// A path dependency.
    Path(String),
    /// A registry version requirement.
    Version(String),
}

/// A stable 64-bit FNV-1a hash, used to name the spec in headers.
pub fn spec_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Generate the crate's files for a validated spec. `spec_text` is the spec file's text (hashed
/// into the header), `spec_label` how the header names the spec (e.g. its file name). With a
/// `plan` (of this spec's data, see [`cellmap_runtime::plan`]) the crate embeds it and its
/// loaders open the data against it instead of planning again; without one they plan at start.
pub fn generate(
    spec: &Spec,
    spec_text: &str,
    spec_label: &str,
    runtime: &RuntimeDep,
    plan: Option<&Plan>,
) -> Result<Vec<GeneratedFile>, GenerateError> {
    let names = rust_names(spec)?;
    let lib = lib_rs(spec, spec_text, spec_label, &names, plan)?;
    let batch_bytes = cellmap_runtime::batch_layout(spec).batch_bytes();
    let mut vars = BTreeMap::new();
    vars.insert("name", spec.name().to_owned());
    vars.insert("crate_ident", names.crate_ident.clone());
    vars.insert("tool_version", TOOL_VERSION.to_owned());
    vars.insert("spec_label", spec_label.to_owned());
    vars.insert("spec_hash", spec_hash(spec_text));
    vars.insert(
        "runtime_dep",
        match runtime {
            RuntimeDep::Path(p) => format!("{{ path = {} }}", toml_string(p)),
            RuntimeDep::Version(v) => toml_string(v),
        },
    );
    vars.insert("classes_table", classes_table(spec, &names));
    vars.insert("arrays_table", arrays_table(spec, &names));
    vars.insert("renamed", renamed_table(&names));
    vars.insert("batch_bytes", batch_bytes.to_string());
    vars.insert("batch_size", spec.loader().batch_size.to_string());
    vars.insert("plan", plan_note(plan));
    Ok(vec![
        GeneratedFile {
            path: "Cargo.toml".into(),
            contents: fill(include_str!("../../templates/Cargo.toml.in"), &vars),
        },
        GeneratedFile {
            path: "README.md".into(),
            contents: fill(include_str!("../../templates/README.md.in"), &vars),
        },
        GeneratedFile {
            path: "src/lib.rs".into(),
            contents: lib,
        },
        GeneratedFile {
            path: "examples/stream.rs".into(),
            contents: stream_rs(spec_text, spec_label, &names)?,
        },
    ])
}

/// The formatted `src/lib.rs`.
pub fn lib_rs(
    spec: &Spec,
    spec_text: &str,
    spec_label: &str,
    names: &crate::names::RustNames,
    plan: Option<&Plan>,
) -> Result<String, GenerateError> {
    let tokens = lib_tokens(spec, names, plan)?;
    let file: syn::File = syn::parse2(tokens).map_err(|e| GenerateError::Syntax(e.to_string()))?;
    let body = prettyplease::unparse(&file);
    Ok(format!(
        "// @generated by cellmap-compile {TOOL_VERSION} from `{spec_label}` (spec hash {}). Do not edit:\n\
         // change the spec and run `cellmap-compile build` again.\n{body}",
        spec_hash(spec_text)
    ))
}

/// One array of the batch: spec name, Rust name, channels, shape, whether it is an input.
/// One batch array as the generated code names it: spec name, Rust identifier, channels,
/// `[z, y, x]` shape, whether it is an input, and its element type.
type ArrayRow = (String, Ident, usize, [usize; 3], bool, OutputDtype);

fn lib_tokens(spec: &Spec, names: &crate::names::RustNames, plan: Option<&Plan>) -> Result<TokenStream, GenerateError> {
    let doc = format!(
        " Loader for the cellmap spec `{}`: {} classes, {} input and {} target arrays, batches of {}.",
        spec.name(),
        spec.classes().len(),
        spec.inputs().len(),
        spec.targets().len(),
        spec.loader().batch_size
    );
    let arrays = array_rows(spec, names);
    let constants = constants_tokens(spec, names, &arrays);
    let spec_fn = spec_tokens(spec)?;
    let (plan_fn, open_loader_fn) = plan_tokens(plan);
    let batch = batch_tokens(spec, &arrays);
    let loader = loader_tokens();
    let torch_module = torch_tokens(&arrays, plan.is_some());
    Ok(quote! {
        #![doc = #doc]
        #![doc = ""]
        #![doc = " See this crate's README for the arrays, classes and an example."]
        #![deny(warnings)]

        pub use ::cellmap_runtime;

        #constants
        #spec_fn
        #plan_fn
        #open_loader_fn
        #batch
        #loader
        #torch_module
    })
}

/// The batch's arrays: inputs (one channel), then targets (one channel per class).
fn array_rows(spec: &Spec, names: &crate::names::RustNames) -> Vec<ArrayRow> {
    let n_classes = spec.classes().len();
    let ident = |n: &String| Ident::new(n, Span::call_site());
    spec.inputs()
        .iter()
        .zip(&names.inputs)
        .map(|(a, n)| (a.name.clone(), ident(n), 1, a.shape_vox, true, a.dtype))
        .chain(
            spec.targets()
                .iter()
                .zip(&names.targets)
                .map(|(a, n)| (a.name.clone(), ident(n), n_classes, a.shape_vox, false, a.dtype)),
        )
        .collect()
}

/// `CLASSES`, the `class` channel constants, batch and ring sizes, and the `shapes` module.
fn constants_tokens(spec: &Spec, names: &crate::names::RustNames, arrays: &[ArrayRow]) -> TokenStream {
    let n_classes = spec.classes().len();
    let class_names = spec.classes();
    let class_consts = names
        .classes
        .iter()
        .zip(class_names)
        .enumerate()
        .map(|(i, (ident, class))| {
            let ident = format_ident!("{}", ident.to_uppercase());
            let doc = format!(" Channel of class `{class}`.");
            quote!(#[doc = #doc] pub const #ident: usize = #i;)
        });
    let batch_size = spec.loader().batch_size;
    let batch_bytes = cellmap_runtime::batch_layout(spec).batch_bytes();
    let prefetch = spec.loader().prefetch;
    let ring_bytes = batch_bytes * prefetch as u64;
    let two_d = spec.is_2d();
    let shape_consts = arrays.iter().map(|(name, ident, c, [z, y, x], _, _)| {
        let konst = format_ident!("{}", ident.to_string().to_uppercase());
        if two_d {
            let doc = format!(" Shape of one sample of `{name}` (a 2D spec): `[channels, rows, columns]`.");
            let [c, y, x] = [*c, *y, *x].map(Literal::usize_unsuffixed);
            return quote!(#[doc = #doc] pub const #konst: [usize; 3] = [#c, #y, #x];);
        }
        let doc = format!(" Shape of one sample of `{name}`: `[channels, z, y, x]`.");
        let [c, z, y, x] = [*c, *z, *y, *x].map(Literal::usize_unsuffixed);
        quote!(#[doc = #doc] pub const #konst: [usize; 4] = [#c, #z, #y, #x];)
    });
    quote! {
        /// Classes in channel order.
        pub const CLASSES: [&str; #n_classes] = [#(#class_names),*];

        /// Channel indices of the classes.
        pub mod class {
            #(#class_consts)*
        }

        /// Samples per batch.
        pub const BATCH_SIZE: usize = #batch_size;

        /// Exact bytes of the tensors of one batch.
        pub const BATCH_BYTES: u64 = #batch_bytes;

        /// Ring slots (batches in flight).
        pub const PREFETCH: usize = #prefetch;

        /// Bytes of the ring, allocated once when a loader starts.
        pub const RING_BYTES: u64 = #ring_bytes;

        /// Sample shapes per array.
        pub mod shapes {
            #(#shape_consts)*
        }
    }
}

/// `SPEC_NORMALIZED` (the spec's normalized text) and `spec()`, which rebuilds the spec from it through
/// `Spec::from_normalized` once per process.
fn spec_tokens(spec: &Spec) -> Result<TokenStream, GenerateError> {
    let text = raw_string(&spec.to_normalized()?);
    Ok(quote! {
        /// The normalized text of the validated spec this crate was generated from (JSON, every
        /// default filled in and every path resolved; see `cellmap_schema::Spec::to_normalized`).
        pub const SPEC_NORMALIZED: &str = #text;

        /// The validated spec this crate was generated from: [`SPEC_NORMALIZED`], read and checked
        /// again by `cellmap_schema::Spec::from_normalized` on the first call.
        ///
        /// # Panics
        ///
        /// When [`SPEC_NORMALIZED`] was edited into an invalid spec (`cellmap-compile build` writes a
        /// valid one).
        pub fn spec() -> ::cellmap_runtime::cellmap_schema::Spec {
            static SPEC: ::std::sync::OnceLock<::cellmap_runtime::cellmap_schema::Spec> = ::std::sync::OnceLock::new();
            SPEC.get_or_init(|| match ::cellmap_runtime::cellmap_schema::Spec::from_normalized(SPEC_NORMALIZED) {
                ::std::result::Result::Ok(spec) => spec,
                ::std::result::Result::Err(e) => ::std::panic!("the embedded spec of this crate is invalid: {e}"),
            })
            .clone()
        }
    })
}

/// `plan()` (when the crate embeds a plan) and `open_loader`, which opens over it or plans at start.
fn plan_tokens(plan: Option<&Plan>) -> (TokenStream, TokenStream) {
    let (plan_fn, open_doc, open_loader) = match plan {
        Some(plan) => {
            let plan_value = plan_expr(plan);
            let datasets = plan.datasets.len();
            let doc = format!(
                " The plan of the spec's data made by `cellmap-compile build` ({datasets} datasets: {PLAN_HOLDS}). \
                 Loaders open the data and check it against this plan instead of planning again."
            );
            (
                quote! {
                    #[doc = #doc]
                    pub fn plan() -> ::cellmap_runtime::Plan {
                        #plan_value
                    }
                },
                " Start the untyped runtime loader of this spec over the embedded [`plan()`]: the data \
                 is opened and checked against it (an error names what changed), not planned again.",
                quote!(::cellmap_runtime::Loader::open_planned(spec(), plan(), options)),
            )
        }
        None => (
            TokenStream::new(),
            " Start the untyped runtime loader of this spec. This crate was generated without its \
             data, so the loader plans the data when it starts.",
            quote!(::cellmap_runtime::Loader::open(spec(), options)),
        ),
    };
    let open_loader_fn = quote! {
        #[doc = #open_doc]
        pub fn open_loader(
            options: ::cellmap_runtime::LoaderOptions,
        ) -> ::std::result::Result<::cellmap_runtime::Loader, ::cellmap_runtime::LoaderError> {
            #open_loader
        }
    };
    (plan_fn, open_loader_fn)
}

/// The Rust element type of a dtype, as generated code names it.
fn elem_type(dtype: OutputDtype) -> TokenStream {
    match dtype {
        OutputDtype::Float32 => quote!(f32),
        OutputDtype::Float16 => quote!(::cellmap_runtime::half::f16),
        OutputDtype::Bfloat16 => quote!(::cellmap_runtime::half::bf16),
        OutputDtype::Uint8 => quote!(u8),
    }
}

/// The typed `Batch`: one accessor per array, typed by its shape and element type.
fn batch_tokens(spec: &Spec, arrays: &[ArrayRow]) -> TokenStream {
    let batch_size = spec.loader().batch_size;
    let accessors = arrays
        .iter()
        .enumerate()
        .map(|(i, (name, ident, c, [z, y, x], input, dtype))| {
            let kind = if *input { "input" } else { "target" };
            let elem = elem_type(*dtype);
            if spec.is_2d() {
                let doc = format!(" The {kind} array `{name}`: `[{batch_size}, {c}, {y}, {x}]` {dtype} (2D).");
                let [c, y, x] = [*c, *y, *x].map(Literal::usize_unsuffixed);
                return quote! {
                    #[doc = #doc]
                    pub fn #ident(&self) -> ::cellmap_runtime::BatchArray2d<'_, #c, #y, #x, #elem> {
                        match self.inner.typed::<#elem>(#i) {
                            ::std::option::Option::Some(data) => ::cellmap_runtime::BatchArray2d::new(data),
                            // The layout is this crate's: array #i has this dtype.
                            ::std::option::Option::None => ::std::unreachable!("array {} of the generated layout", #i),
                        }
                    }
                };
            }
            let doc = format!(" The {kind} array `{name}`: `[{batch_size}, {c}, {z}, {y}, {x}]` {dtype}.");
            let [c, z, y, x] = [*c, *z, *y, *x].map(Literal::usize_unsuffixed);
            quote! {
                #[doc = #doc]
                pub fn #ident(&self) -> ::cellmap_runtime::BatchArray<'_, #c, #z, #y, #x, #elem> {
                    match self.inner.typed::<#elem>(#i) {
                        ::std::option::Option::Some(data) => ::cellmap_runtime::BatchArray::new(data),
                        // The layout is this crate's: array #i has this dtype.
                        ::std::option::Option::None => ::std::unreachable!("array {} of the generated layout", #i),
                    }
                }
            }
        });
    quote! {
        /// A batch: one accessor per array, in the spec's names. It borrows its ring slot until dropped.
        pub struct Batch<'a> {
            inner: ::cellmap_runtime::Batch<'a>,
        }

        impl Batch<'_> {
            #(#accessors)*

            /// Epoch of this batch (0 for validation).
            pub fn epoch(&self) -> u64 {
                self.inner.epoch()
            }

            /// Step within the epoch.
            pub fn step(&self) -> u64 {
                self.inner.step()
            }

            /// Per-position metadata: sample index, dataset, centre (nm).
            pub fn meta(&self) -> impl ExactSizeIterator<Item = ::cellmap_runtime::SampleMeta> + '_ {
                self.inner.meta()
            }

            /// Positions holding a sample.
            pub fn len(&self) -> usize {
                self.inner.len()
            }

            /// True when no position holds a sample.
            pub fn is_empty(&self) -> bool {
                self.inner.is_empty()
            }

            /// The untyped batch.
            pub fn untyped(&self) -> &::cellmap_runtime::Batch<'_> {
                &self.inner
            }
        }
    }
}

/// The typed `Loader` over the runtime loader.
fn loader_tokens() -> TokenStream {
    quote! {
        /// The loader of this spec.
        pub struct Loader {
            inner: ::cellmap_runtime::Loader,
        }

        impl Loader {
            /// Training batches, endless, rank and world size from torchrun's environment.
            pub fn train() -> ::std::result::Result<Self, ::cellmap_runtime::LoaderError> {
                Self::with_options(::cellmap_runtime::LoaderOptions::train()?)
            }

            /// One pass over this rank's validation tiles.
            pub fn validate() -> ::std::result::Result<Self, ::cellmap_runtime::LoaderError> {
                Self::with_options(::cellmap_runtime::LoaderOptions::validate()?)
            }

            /// A loader with explicit options (split, rank, world size, resume epoch and step, …).
            pub fn with_options(
                options: ::cellmap_runtime::LoaderOptions,
            ) -> ::std::result::Result<Self, ::cellmap_runtime::LoaderError> {
                let inner = open_loader(options)?;
                debug_assert_eq!(inner.plan().batch_bytes, BATCH_BYTES);
                Ok(Loader { inner })
            }

            /// A loader over another spec with this crate's classes, arrays and batch size (the same
            /// spec with its data moved, other sampling or augmentation settings, …).
            pub fn with_spec(
                spec: ::cellmap_runtime::cellmap_schema::Spec,
                options: ::cellmap_runtime::LoaderOptions,
            ) -> ::std::result::Result<Self, ::cellmap_runtime::LoaderError> {
                ::cellmap_runtime::check_compatible(&self::spec(), &spec)?;
                Ok(Loader { inner: ::cellmap_runtime::Loader::open(spec, options)? })
            }

            /// The next batch (`None` after the last validation batch).
            pub fn next_batch(
                &mut self,
            ) -> ::std::option::Option<::std::result::Result<Batch<'_>, ::cellmap_runtime::PipelineError>> {
                self.inner.next_batch().map(|r| r.map(|inner| Batch { inner }))
            }

            /// Batches per epoch.
            pub fn batches_per_epoch(&self) -> u64 {
                self.inner.batches_per_epoch()
            }

            /// The untyped loader (plan, cache statistics, …).
            pub fn untyped(&self) -> &::cellmap_runtime::Loader {
                &self.inner
            }
        }
    }
}

/// The `torch` module of a generated crate (feature `torch`): the same loader yielding tch
/// tensors on the spec's device, one accessor per array.
fn torch_tokens(arrays: &[ArrayRow], planned: bool) -> TokenStream {
    let batch = torch_batch_tokens(arrays);
    let loader = torch_loader_tokens(planned);
    quote! {
        /// Batches as tch tensors on the spec's device (feature `torch`; see `cellmap_runtime::TorchLoader`).
        #[cfg(feature = "torch")]
        pub mod torch {
            #batch
            #loader
        }
    }
}

/// The `torch::Batch` type: one tensor accessor per array.
fn torch_batch_tokens(arrays: &[ArrayRow]) -> TokenStream {
    let accessors = arrays
        .iter()
        .enumerate()
        .map(|(i, (name, ident, c, [z, y, x], _, dtype))| {
            let doc =
                format!(" The array `{name}` as a `[B, {c}, {z}, {y}, {x}]` {dtype} tensor on the loader's device.");
            quote! {
                #[doc = #doc]
                pub fn #ident(&self) -> &::cellmap_runtime::tch::Tensor {
                    match self.inner.array(#i) {
                        ::std::option::Option::Some(t) => t,
                        // The layout is this crate's: every array index exists.
                        ::std::option::Option::None => ::std::unreachable!("array {} of the generated layout", #i),
                    }
                }
            }
        });
    quote! {
            /// A batch of tensors, lent until dropped (on the CPU they are views of the ring slot).
            pub struct Batch<'a> {
                inner: ::cellmap_runtime::TorchBatch<'a>,
            }

            impl Batch<'_> {
                #(#accessors)*

                /// Sample indices, int64 `[B]` (−1 for an empty position).
                pub fn idx(&self) -> &::cellmap_runtime::tch::Tensor {
                    self.inner.idx()
                }

                /// Epoch of this batch.
                pub fn epoch(&self) -> u64 {
                    self.inner.epoch()
                }

                /// Step within the epoch.
                pub fn step(&self) -> u64 {
                    self.inner.step()
                }

                /// The untyped batch (dataset ids, centres, copies).
                pub fn untyped(&self) -> &::cellmap_runtime::TorchBatch<'_> {
                    &self.inner
        }
    }
        }
}

/// The `torch::Loader` type, opened over the embedded plan when `planned`.
fn torch_loader_tokens(planned: bool) -> TokenStream {
    let open_torch = if planned {
        quote!(::cellmap_runtime::TorchLoader::open_planned(
            super::spec(),
            super::plan(),
            options
        ))
    } else {
        quote!(::cellmap_runtime::TorchLoader::open(super::spec(), options))
    };
    quote! {
            /// The loader of this spec, yielding tensors.
            pub struct Loader {
                inner: ::cellmap_runtime::TorchLoader,
            }

            impl Loader {
                /// Training batches, endless, rank and world size from torchrun's environment.
                pub fn train() -> ::std::result::Result<Self, ::cellmap_runtime::TensorError> {
                    Self::with_options(::cellmap_runtime::LoaderOptions::train()?)
                }

                /// One pass over this rank's validation tiles.
                pub fn validate() -> ::std::result::Result<Self, ::cellmap_runtime::TensorError> {
                    Self::with_options(::cellmap_runtime::LoaderOptions::validate()?)
                }

                /// A loader with explicit options (split, rank, world size, resume epoch and step, …).
                pub fn with_options(
                    options: ::cellmap_runtime::LoaderOptions,
                ) -> ::std::result::Result<Self, ::cellmap_runtime::TensorError> {
                    Ok(Loader { inner: #open_torch? })
                }

                /// A loader over another spec with this crate's classes, arrays and batch size.
                pub fn with_spec(
                    spec: ::cellmap_runtime::cellmap_schema::Spec,
                    options: ::cellmap_runtime::LoaderOptions,
                ) -> ::std::result::Result<Self, ::cellmap_runtime::TensorError> {
                    ::cellmap_runtime::check_compatible(&super::spec(), &spec)?;
                    Ok(Loader { inner: ::cellmap_runtime::TorchLoader::open(spec, options)? })
                }

                /// The next batch (`None` after the last validation batch).
                pub fn next_batch(
                    &mut self,
                ) -> ::std::option::Option<::std::result::Result<Batch<'_>, ::cellmap_runtime::TensorError>> {
                    self.inner.next_batch().map(|r| r.map(|inner| Batch { inner }))
                }

                /// Batches per epoch.
                pub fn batches_per_epoch(&self) -> u64 {
                    self.inner.loader().batches_per_epoch()
        }
    }
        }
}

/// The formatted `examples/stream.rs`: streams batches and prints samples/s.
pub fn stream_rs(spec_text: &str, spec_label: &str, names: &crate::names::RustNames) -> Result<String, GenerateError> {
    let krate = Ident::new(&names.crate_ident, Span::call_site());
    let tokens = quote! {
        //! Streams training batches through the generated loader and prints samples/s.
        //!
        //! `cargo run --release --example stream -- [BATCHES]`; with `CELLMAP_STREAM_JSON=1` the
        //! last line is a JSON object.

        use std::time::Instant;

        fn main() -> ::std::result::Result<(), ::std::boxed::Box<dyn ::std::error::Error>> {
            let batches: u64 = ::std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(40);
            let opening = Instant::now();
            let mut loader = #krate::Loader::train()?;
            let open_seconds = opening.elapsed().as_secs_f64();
            let mut first_batch_seconds = None;
            // Warm-up: fill the chunk cache and the scratch memory.
            for _ in 0..20 {
                if let Some(batch) = loader.next_batch() {
                    batch?;
                    first_batch_seconds.get_or_insert_with(|| opening.elapsed().as_secs_f64());
                }
            }
            let first_batch_seconds = first_batch_seconds.unwrap_or(f64::NAN);
            let start = Instant::now();
            let mut samples = 0usize;
            for _ in 0..batches {
                let Some(batch) = loader.next_batch() else { break };
                let batch = batch?;
                samples += batch.len();
            }
            let seconds = start.elapsed().as_secs_f64().max(1e-9);
            let rate = samples as f64 / seconds;
            if ::std::env::var_os("CELLMAP_STREAM_JSON").is_some() {
                println!(
                    "{{\"samples\": {samples}, \"seconds\": {seconds:.3}, \"samples_per_s\": {rate:.2}, \"open_seconds\": {open_seconds:.4}, \"first_batch_seconds\": {first_batch_seconds:.4}}}"
                );
            } else {
                println!(
                    "loader started in {:.1} ms, first batch after {:.1} ms; {samples} samples in {seconds:.2} s: {rate:.1} samples/s ({} bytes per batch)",
                    open_seconds * 1e3,
                    first_batch_seconds * 1e3,
                    #krate::BATCH_BYTES
                );
            }
            Ok(())
        }
    };
    let file: syn::File = syn::parse2(tokens).map_err(|e| GenerateError::Syntax(e.to_string()))?;
    Ok(format!(
        "// @generated by cellmap-compile {TOOL_VERSION} from `{spec_label}` (spec hash {}). Do not edit.\n{}",
        spec_hash(spec_text),
        prettyplease::unparse(&file)
    ))
}

/// What an embedded plan holds, as the crate's docs and README say it.
const PLAN_HOLDS: &str = "the levels read, centre grids, validation tiles and, for voxel weighting, class counts";

/// The README's sentence on the embedded plan.
fn plan_note(plan: Option<&Plan>) -> String {
    match plan {
        Some(plan) => format!(
            "The crate embeds the plan of the spec's data (`plan()`: {} datasets, {PLAN_HOLDS}): its loaders \
             open the data and check it against the plan (an error names what changed, e.g. a level's shape) \
             instead of planning again. Rebuild the crate when the data changes.",
            plan.datasets.len()
        ),
        None => "The crate was generated without its data (`cellmap-compile build --no-plan`, or the data was not \
                 readable then): its loaders plan the data when they start."
            .to_owned(),
    }
}

fn fill(template: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = template.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn classes_table(spec: &Spec, names: &crate::names::RustNames) -> String {
    let mut s = String::from("| channel | class | constant |\n|---|---|---|\n");
    for (i, (c, n)) in spec.classes().iter().zip(&names.classes).enumerate() {
        s.push_str(&format!("| {i} | `{c}` | `class::{}` |\n", n.to_uppercase()));
    }
    s
}

fn arrays_table(spec: &Spec, names: &crate::names::RustNames) -> String {
    let b = spec.loader().batch_size;
    let mut s = String::from(
        "| array | accessor | kind | tensor shape | voxel size (nm) | bytes per batch |\n|---|---|---|---|---|---|\n",
    );
    let rows = spec
        .inputs()
        .iter()
        .zip(&names.inputs)
        .map(|(a, n)| (a, n, "input", 1))
        .chain(
            spec.targets()
                .iter()
                .zip(&names.targets)
                .map(|(a, n)| (a, n, "target", spec.classes().len())),
        );
    for (a, n, kind, c) in rows {
        let [z, y, x] = a.shape_vox;
        let shape = if spec.is_2d() {
            format!("[{b}, {c}, {y}, {x}]")
        } else {
            format!("[{b}, {c}, {z}, {y}, {x}]")
        };
        s.push_str(&format!(
            "| `{}` | `batch.{n}()` | {kind} | `{shape}` {} | {:?} | {} |\n",
            a.name,
            a.dtype,
            a.voxel_size_nm,
            b * c * z * y * x * a.dtype.size_bytes()
        ));
    }
    s
}

fn renamed_table(names: &crate::names::RustNames) -> String {
    if names.renamed.is_empty() {
        return "No name needed changing.".to_owned();
    }
    let mut s = String::from(
        "Names that are not Rust identifiers were mapped deterministically:\n\n| spec name | Rust name |\n|---|---|\n",
    );
    for (from, to) in &names.renamed {
        s.push_str(&format!("| `{from}` | `{to}` |\n"));
    }
    s
}
