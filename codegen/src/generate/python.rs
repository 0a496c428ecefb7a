//! Spec → the Python face of a loader crate (`build --python`).
//!
//! ```text
//! DIR/pyproject.toml                 maturin build of py/ (templates/pyproject.toml.in)
//! DIR/py/Cargo.toml, py/src/lib.rs   the pyo3 extension `<crate>._native` (abi3-py311), built with quote!
//! DIR/python/<crate>/__init__.py     the `Loader` that yields dicts of torch tensors (templates/)
//! DIR/python/<crate>/__init__.pyi    its type stubs, with the spec's array names
//! ```
//!
//! The native half hands each batch array over as a DLPack capsule that owns an
//! `Arc<OwnedBatch>`: the ring slot stays reserved until the last tensor viewing it is freed.

use std::collections::BTreeMap;
use std::path::Path;

use proc_macro2::TokenStream;
use quote::quote;

use cellmap_schema::Spec;

use super::{GenerateError, GeneratedFile, RuntimeDep, TOOL_VERSION, fill, spec_hash, toml_string};
use crate::names::rust_names;

/// Keys of the batch dict besides the arrays; no array may use them.
pub const META_KEYS: [&str; 3] = ["idx", "dataset", "centre_nm"];

/// The Python files of a spec's crate (added to [`super::generate`]'s with `--python`).
pub fn generate_python(
    spec: &Spec,
    spec_text: &str,
    spec_label: &str,
    runtime: &RuntimeDep,
) -> Result<Vec<GeneratedFile>, GenerateError> {
    let names = rust_names(spec)?;
    if let Some(clash) = spec
        .inputs
        .iter()
        .chain(&spec.targets)
        .find(|a| META_KEYS.contains(&a.name.as_str()))
    {
        return Err(GenerateError::PythonName(clash.name.clone()));
    }
    let package = names.crate_ident.clone();
    let mut vars = BTreeMap::new();
    vars.insert("name", spec.name.clone());
    vars.insert("package", package.clone());
    vars.insert("tool_version", TOOL_VERSION.to_owned());
    vars.insert("spec_label", spec_label.to_owned());
    vars.insert("spec_hash", spec_hash(spec_text));
    let (runtime_dep, codegen_dep) = match runtime {
        RuntimeDep::Path(p) => {
            let codegen = Path::new(p)
                .parent()
                .map_or_else(|| "codegen".to_owned(), |d| d.join("codegen").display().to_string());
            (
                format!("{{ path = {} }}", toml_string(p)),
                format!("{{ path = {} }}", toml_string(&codegen)),
            )
        }
        RuntimeDep::Version(v) => (toml_string(v), toml_string(v)),
    };
    vars.insert("runtime_dep", runtime_dep);
    vars.insert("codegen_dep", codegen_dep);
    vars.insert("batch_size", spec.loader.batch_size.to_string());
    vars.insert("classes", python_list(spec.classes.iter()));
    vars.insert("inputs", python_list(spec.inputs.iter().map(|a| &a.name)));
    vars.insert("targets", python_list(spec.targets.iter().map(|a| &a.name)));
    vars.insert("batch_fields", batch_fields(spec));
    let lib = native_rs(spec, spec_text, spec_label, &names.crate_ident)?;
    Ok(vec![
        GeneratedFile {
            path: "pyproject.toml".into(),
            contents: fill(include_str!("../../../templates/pyproject.toml.in"), &vars),
        },
        GeneratedFile {
            path: "py/Cargo.toml".into(),
            contents: fill(include_str!("../../../templates/python-Cargo.toml.in"), &vars),
        },
        GeneratedFile {
            path: "py/src/lib.rs".into(),
            contents: lib,
        },
        GeneratedFile {
            path: format!("python/{package}/__init__.py"),
            contents: fill(include_str!("../../../templates/python-init.py.in"), &vars),
        },
        GeneratedFile {
            path: format!("python/{package}/__init__.pyi"),
            contents: fill(include_str!("../../../templates/python-init.pyi.in"), &vars),
        },
        GeneratedFile {
            path: format!("python/{package}/py.typed"),
            contents: String::new(),
        },
    ])
}

/// A Python list literal of strings (JSON string escapes are valid Python).
fn python_list<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let quoted: Vec<String> = items
        .map(|s| serde_json::Value::String(s.clone()).to_string())
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// The `Batch` TypedDict's fields for the stub, one line per array.
fn batch_fields(spec: &Spec) -> String {
    let b = spec.loader.batch_size;
    let c = spec.classes.len();
    let mut s = String::new();
    for (a, channels, kind) in spec
        .inputs
        .iter()
        .map(|a| (a, 1, "input"))
        .chain(spec.targets.iter().map(|a| (a, c, "target")))
    {
        let [z, y, x] = a.shape_vox;
        let key = serde_json::Value::String(a.name.clone()).to_string();
        s.push_str(&format!(
            "        {key}: torch.Tensor,  # {kind}, float32 [{b}, {channels}, {z}, {y}, {x}]\n"
        ));
    }
    s
}

/// The formatted `py/src/lib.rs`.
fn native_rs(spec: &Spec, spec_text: &str, spec_label: &str, crate_ident: &str) -> Result<String, GenerateError> {
    let tokens = native_tokens(spec, crate_ident);
    let file: syn::File = syn::parse2(tokens).map_err(|e| GenerateError::Syntax(e.to_string()))?;
    Ok(format!(
        "// @generated by cellmap-compile {TOOL_VERSION} from `{spec_label}` (spec hash {}). Do not edit:\n\
         // change the spec and run `cellmap-compile build --python` again.\n{}",
        spec_hash(spec_text),
        prettyplease::unparse(&file)
    ))
}

fn native_tokens(spec: &Spec, crate_ident: &str) -> TokenStream {
    let krate = proc_macro2::Ident::new(crate_ident, proc_macro2::Span::call_site());
    let doc = format!(
        " The native half of the Python package `{crate_ident}` (loader of the cellmap spec `{}`).",
        spec.name
    );
    let module_path = format!("{crate_ident}._native");
    quote! {
        #![doc = #doc]
        #![doc = ""]
        #![doc = " Batches leave Rust as DLPack capsules (`torch.from_dlpack`) that view the ring slot"]
        #![doc = " directly; each capsule owns an `Arc` of the batch, so the slot is released when the"]
        #![doc = " last tensor viewing it is freed."]

        use std::ffi::c_void;
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        use ::cellmap_runtime::cellmap_schema::{Device, Spec, Split};
        use ::cellmap_runtime::{DistInfo, Loader, LoaderOptions, NextOwned, OwnedBatch};
        use ::pyo3::exceptions::{PyRuntimeError, PyValueError};
        use ::pyo3::types::{PyModule, PyModuleMethods};
        use ::pyo3::{Bound, Py, PyAny, PyErr, PyResult, Python, pyclass, pymethods, pymodule};

        ::pyo3::create_exception!(
            _native,
            CellmapError,
            PyRuntimeError,
            "An error of the cellmap loader; the message is the one the CLI prints."
        );
        ::pyo3::create_exception!(
            _native,
            SlotsHeldError,
            CellmapError,
            "Every ring slot is held by live tensors of earlier batches, so no new batch can be filled."
        );

        /// How long to wait for a batch between signal checks.
        const POLL: Duration = Duration::from_millis(50);
        /// How long a batch may wait on a slot held by an earlier batch before giving up.
        const HELD_PATIENCE: Duration = Duration::from_millis(500);
        /// The capsule name DLPack consumers look for.
        const DLTENSOR: &[u8] = b"dltensor\0";

        /// DLPack `DLDevice`.
        #[repr(C)]
        struct DlDevice {
            device_type: i32,
            device_id: i32,
        }

        /// DLPack `DLDataType`.
        #[repr(C)]
        struct DlDataType {
            code: u8,
            bits: u8,
            lanes: u16,
        }

        /// DLPack `DLTensor`.
        #[repr(C)]
        struct DlTensor {
            data: *mut c_void,
            device: DlDevice,
            ndim: i32,
            dtype: DlDataType,
            shape: *mut i64,
            strides: *mut i64,
            byte_offset: u64,
        }

        /// DLPack `DLManagedTensor` (unversioned, as `torch.from_dlpack` accepts in a capsule).
        #[repr(C)]
        struct DlManagedTensor {
            dl_tensor: DlTensor,
            manager_ctx: *mut c_void,
            deleter: Option<unsafe extern "C" fn(*mut DlManagedTensor)>,
        }

        /// What a capsule keeps alive: the batch (hence its ring slot) and the shape arrays.
        struct Held {
            _batch: Arc<OwnedBatch>,
            shape: [i64; 5],
            strides: [i64; 5],
        }

        /// The DLPack deleter: frees the tensor and drops its share of the batch.
        unsafe extern "C" fn delete_managed(managed: *mut DlManagedTensor) {
            if managed.is_null() {
                return;
            }
            // SAFETY: `managed` and its context were made by `Box::into_raw` in `capsule`, and
            // DLPack calls the deleter exactly once.
            unsafe {
                let managed = Box::from_raw(managed);
                drop(Box::from_raw(managed.manager_ctx.cast::<Held>()));
            }
        }

        /// Capsule destructor: a capsule still named `dltensor` was never consumed, so it frees
        /// its tensor; a consumed one (renamed `used_dltensor`) belongs to its consumer.
        unsafe extern "C" fn capsule_destructor(capsule: *mut ::pyo3::ffi::PyObject) {
            // SAFETY: called by Python with a live capsule; the name is NUL-terminated.
            unsafe {
                let name = DLTENSOR.as_ptr().cast();
                if ::pyo3::ffi::PyCapsule_IsValid(capsule, name) == 1 {
                    let managed = ::pyo3::ffi::PyCapsule_GetPointer(capsule, name).cast::<DlManagedTensor>();
                    delete_managed(managed);
                }
            }
        }

        /// A DLPack capsule viewing array `i` of `batch` as a float32 `[B, C, Z, Y, X]` CPU tensor.
        fn capsule(py: Python<'_>, batch: &Arc<OwnedBatch>, i: usize) -> PyResult<Py<PyAny>> {
            let layout = batch.layout();
            let a = layout
                .arrays
                .get(i)
                .ok_or_else(|| CellmapError::new_err(format!("no array {i} in the batch layout")))?;
            let [z, y, x] = a.shape_vox;
            let shape = [layout.batch_size, a.channels, z, y, x].map(|n| n as i64);
            let mut strides = [1i64; 5];
            for d in (0..4).rev() {
                strides[d] = strides[d + 1] * shape[d + 1];
            }
            let mut held = Box::new(Held {
                _batch: Arc::clone(batch),
                shape,
                strides,
            });
            let data = batch.array(i).as_ptr().cast_mut().cast::<c_void>();
            let dl_tensor = DlTensor {
                data,
                device: DlDevice {
                    device_type: 1,
                    device_id: 0,
                },
                ndim: 5,
                dtype: DlDataType {
                    code: 2,
                    bits: 32,
                    lanes: 1,
                },
                shape: held.shape.as_mut_ptr(),
                strides: held.strides.as_mut_ptr(),
                byte_offset: 0,
            };
            let managed = Box::into_raw(Box::new(DlManagedTensor {
                dl_tensor,
                manager_ctx: Box::into_raw(held).cast::<c_void>(),
                deleter: Some(delete_managed),
            }));
            // SAFETY: a valid pointer, a NUL-terminated static name and a destructor that
            // handles both the consumed and the unconsumed capsule.
            let raw = unsafe {
                ::pyo3::ffi::PyCapsule_New(managed.cast(), DLTENSOR.as_ptr().cast(), Some(capsule_destructor))
            };
            if raw.is_null() {
                // SAFETY: the capsule was not made, so nothing else owns `managed`.
                unsafe { delete_managed(managed) };
                return Err(PyErr::fetch(py));
            }
            // SAFETY: `raw` is a new, owned reference.
            Ok(unsafe { Bound::from_owned_ptr(py, raw) }.unbind())
        }

        /// One batch as Python values: epoch, step, one capsule per array, idx, dataset, centre_nm.
        type PyBatch = (u64, u64, Vec<Py<PyAny>>, Vec<i64>, Vec<i64>, Vec<(f64, f64, f64)>);

        fn loader_error(e: impl ::std::fmt::Display) -> PyErr {
            CellmapError::new_err(e.to_string())
        }

        fn parse_split(split: &str) -> PyResult<Split> {
            match split {
                "train" => Ok(Split::Train),
                "validate" => Ok(Split::Validate),
                other => Err(PyValueError::new_err(format!(
                    "unknown split `{other}` (expected `train` or `validate`)"
                ))),
            }
        }

        fn dist(rank: Option<usize>, world_size: Option<usize>) -> PyResult<DistInfo> {
            let info = match (rank, world_size) {
                (None, None) => DistInfo::from_env().map_err(loader_error)?,
                (Some(rank), Some(world_size)) => DistInfo {
                    rank,
                    world_size,
                    local_rank: ::std::env::var("LOCAL_RANK")
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0),
                },
                _ => {
                    return Err(PyValueError::new_err(
                        "pass both `rank` and `world_size`, or neither to read torchrun's `RANK` and `WORLD_SIZE`",
                    ));
                }
            };
            if info.world_size == 0 || info.rank >= info.world_size {
                return Err(PyValueError::new_err(format!(
                    "rank {} is not below world size {}",
                    info.rank, info.world_size
                )));
            }
            Ok(info)
        }

        /// The Rust loader behind the Python `Loader`: an endless training stream or one
        /// validation pass, yielding batches as DLPack capsules.
        #[pyclass(module = #module_path)]
        struct NativeLoader {
            loader: Loader,
            spec: Spec,
            split: Split,
        }

        #[pymethods]
        impl NativeLoader {
            /// Plan the data and start the workers (the GIL is released meanwhile).
            #[new]
            #[pyo3(signature = (split = "train", rank = None, world_size = None, seed = None, epoch = 0, step = 0))]
            fn new(
                py: Python<'_>,
                split: &str,
                rank: Option<usize>,
                world_size: Option<usize>,
                seed: Option<u64>,
                epoch: u64,
                step: u64,
            ) -> PyResult<Self> {
                let split = parse_split(split)?;
                let mut options = LoaderOptions::new(split, dist(rank, world_size)?);
                options.epoch = epoch;
                options.step = step;
                options.seed = seed;
                let spec = #krate::spec();
                let loader = py
                    .detach(move || #krate::open_loader(options))
                    .map_err(loader_error)?;
                Ok(NativeLoader { loader, spec, split })
            }

            /// The next batch, or `None` after the last validation batch. Waits with the GIL
            /// released, checking for signals (Ctrl-C) every 50 ms.
            fn next_batch(&mut self, py: Python<'_>) -> PyResult<Option<PyBatch>> {
                let mut held_since: Option<Instant> = None;
                loop {
                    let loader = &mut self.loader;
                    match py.detach(|| loader.next_owned(POLL)) {
                        NextOwned::Batch(batch) => {
                            let batch = Arc::new(batch);
                            let arrays = (0..batch.layout().arrays.len())
                                .map(|i| capsule(py, &batch, i))
                                .collect::<PyResult<Vec<_>>>()?;
                            let meta: Vec<_> = batch.meta().collect();
                            return Ok(Some((
                                batch.epoch(),
                                batch.step(),
                                arrays,
                                meta.iter().map(|m| m.idx).collect(),
                                meta.iter().map(|m| i64::from(m.dataset)).collect(),
                                meta.iter()
                                    .map(|m| (m.centre_nm[0], m.centre_nm[1], m.centre_nm[2]))
                                    .collect(),
                            )));
                        }
                        NextOwned::Failed(e) => return Err(loader_error(e)),
                        NextOwned::End => return Ok(None),
                        NextOwned::Pending { slot_held } => {
                            py.check_signals()?;
                            if !slot_held {
                                held_since = None;
                            } else if held_since.get_or_insert_with(Instant::now).elapsed() > HELD_PATIENCE {
                                return Err(SlotsHeldError::new_err(format!(
                                    "all {} ring slots are held by tensors of earlier batches that are still alive; \
                                     drop them (keep `.clone()`s of what you store), use handoff=\"copy\", or raise \
                                     `loader.prefetch` in the spec",
                                    self.spec.loader.prefetch
                                )));
                            }
                        }
                    }
                }
            }

            /// Batches per epoch (training) or of the pass (validation).
            fn batches_per_epoch(&self) -> u64 {
                self.loader.batches_per_epoch()
            }

            /// Ring slots (the spec's `loader.prefetch`).
            fn prefetch(&self) -> usize {
                self.spec.loader.prefetch
            }

            /// The spec's device: `cpu` or `cuda:N`.
            fn device(&self) -> String {
                match self.spec.loader.device {
                    Device::Cpu => "cpu".to_owned(),
                    Device::Cuda(n) => format!("cuda:{n}"),
                }
            }

            /// Whether the spec asks for pinned host memory.
            fn pin_memory(&self) -> bool {
                self.spec.loader.pin_memory
            }

            /// The arrays in batch order: `(name, channels, [z, y, x])`.
            fn arrays(&self) -> Vec<(String, usize, [usize; 3])> {
                self.loader
                    .plan()
                    .batch
                    .arrays
                    .iter()
                    .map(|a| (a.name.clone(), a.channels, a.shape_vox))
                    .collect()
            }

            /// The plan as JSON (as `cellmap-compile plan --json` prints it).
            fn plan_json(&self) -> PyResult<String> {
                ::serde_json::to_string(self.loader.plan()).map_err(loader_error)
            }

            /// Draw batch `step` of this loader's split as a PNG grid at `path` (as
            /// `cellmap-compile preview` does), with a separate one-slot loader.
            fn preview(&self, py: Python<'_>, path: ::std::path::PathBuf, step: u64) -> PyResult<()> {
                let spec = self.spec.clone();
                let split = self.split;
                py.detach(move || -> Result<(), String> {
                    let mut options = LoaderOptions::train().map_err(|e| e.to_string())?;
                    options.split = split;
                    options.step = step;
                    options.prefetch = Some(1);
                    let mut loader = Loader::open(spec.clone(), options).map_err(|e| e.to_string())?;
                    let batch = match loader.next_batch() {
                        Some(Ok(b)) => b,
                        Some(Err(e)) => return Err(e.to_string()),
                        None => return Err(format!("the {} split yields no batch", split.name())),
                    };
                    let n = spec.inputs.len() + spec.targets.len();
                    let arrays: Vec<&[f32]> = (0..n).map(|i| batch.array(i)).collect();
                    let image = ::cellmap_codegen::preview::render(&spec, &arrays, batch.len());
                    image.write_png(&path).map_err(|e| format!("`{}`: {e}", path.display()))
                })
                .map_err(CellmapError::new_err)
            }
        }

        /// The extension module.
        #[pymodule]
        fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
            m.add_class::<NativeLoader>()?;
            m.add("CellmapError", m.py().get_type::<CellmapError>())?;
            m.add("SlotsHeldError", m.py().get_type::<SlotsHeldError>())?;
            m.add("BATCH_SIZE", #krate::BATCH_SIZE)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "version: 1\nname: my-cells\nclasses: [mito, er]\narrays:\n  inputs:\n    raw: { shape: [8, 8, 8], scale: [4, 4, 4] }\n  targets:\n    labels: { shape: [4, 4, 4], scale: [4, 4, 4] }\ndata:\n  datasets:\n    - { split: train, raw: /data/a.zarr/raw, targets: \"/data/a.zarr/labels/{class}\" }\n";

    fn files(text: &str) -> Result<Vec<GeneratedFile>, GenerateError> {
        let spec = cellmap_schema::parse(text, Path::new("spec.yaml")).unwrap().spec;
        generate_python(&spec, text, "spec.yaml", &RuntimeDep::Path("/src/runtime".into()))
    }

    #[test]
    fn the_package_files_are_byte_stable_and_name_the_module() {
        let a = files(SPEC).unwrap();
        assert_eq!(a, files(SPEC).unwrap());
        let paths: Vec<&str> = a.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "pyproject.toml",
                "py/Cargo.toml",
                "py/src/lib.rs",
                "python/my_cells/__init__.py",
                "python/my_cells/__init__.pyi",
                "python/my_cells/py.typed"
            ]
        );
        let text = |p: &str| a.iter().find(|f| f.path == p).unwrap().contents.clone();
        assert!(text("pyproject.toml").contains("module-name = \"my_cells._native\"\n"));
        let cargo = text("py/Cargo.toml");
        assert!(
            cargo.contains("cellmap-runtime = { path = \"/src/runtime\" }\n"),
            "{cargo}"
        );
        assert!(
            cargo.contains("cellmap-codegen = { path = \"/src/codegen\" }\n"),
            "{cargo}"
        );
        assert!(cargo.contains("my-cells = { path = \"..\" }\n"), "{cargo}");
        let lib = text("py/src/lib.rs");
        assert!(lib.starts_with("// @generated by cellmap-compile"));
        assert!(lib.contains("let spec = my_cells::spec();"), "{lib}");
        syn::parse_file(&lib).unwrap();
        let init = text("python/my_cells/__init__.py");
        assert!(init.contains("INPUTS: list[str] = [\"raw\"]\n"));
        assert!(init.contains("CLASSES: list[str] = [\"mito\", \"er\"]\n"));
        let stub = text("python/my_cells/__init__.pyi");
        assert!(
            stub.contains("        \"labels\": torch.Tensor,  # target, float32 [1, 2, 4, 4, 4]\n"),
            "{stub}"
        );
        assert!(
            !a.iter().any(|f| f.contents.contains("{{")),
            "an unfilled template variable"
        );
    }

    #[test]
    fn an_array_named_like_a_metadata_key_is_an_error() {
        let err = files(&SPEC.replace("labels:", "idx:")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "array `idx` clashes with a metadata key of the Python batch dict (`idx`, `dataset`, `centre_nm`); rename it in the spec"
        );
    }
}
