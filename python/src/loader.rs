//! `NativeLoader`: the generic Rust loader behind `cellmap_compile.Loader`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use cellmap_runtime::{
    DistInfo, Loader, LoaderOptions, NextOwned, OwnedBatch, PlanOptions, PlanOrigin, Planned, plan,
    plan::default_plan_cache_dir, plan_cached,
};
use cellmap_schema::{Device, Spec, Split};

use crate::dlpack::typed_capsule;
use crate::errors::{SlotsHeldError, cellmap_error};

/// How long to wait for a batch between signal checks.
const POLL: Duration = Duration::from_millis(50);
/// How long a batch may wait on a slot held by an earlier batch before giving up.
const HELD_PATIENCE: Duration = Duration::from_millis(500);

/// One batch as Python values: epoch, step, one capsule per array, idx, dataset, centre_nm.
type PyBatch = (u64, u64, Vec<Py<PyAny>>, Vec<i64>, Vec<i64>, Vec<(f64, f64, f64)>);

/// Rank and world size: both given, or both from torchrun's environment.
pub(crate) fn dist(rank: Option<usize>, world_size: Option<usize>) -> PyResult<DistInfo> {
    let info = match (rank, world_size) {
        (None, None) => DistInfo::from_env().map_err(cellmap_error)?,
        (Some(rank), Some(world_size)) => DistInfo {
            rank,
            world_size,
            local_rank: std::env::var("LOCAL_RANK")
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

/// Plan `spec`'s data, over the plan cache in `cache_dir` (or the default folder) when there is one.
pub(crate) fn open_plan(spec: &Spec, cache_dir: Option<PathBuf>) -> Result<(Planned, PlanOrigin), String> {
    match cache_dir.or_else(default_plan_cache_dir) {
        Some(dir) => plan_cached(spec, PlanOptions::default(), &dir).map_err(|e| e.to_string()),
        None => plan(spec, PlanOptions::default())
            .map(|p| (p, PlanOrigin::Planned))
            .map_err(|e| e.to_string()),
    }
}

/// Open `spec`'s data over a plan made earlier (a generated package's embedded plan, JSON): the
/// data is checked against it, not planned again; a stale plan is an error.
fn open_embedded(spec: &Spec, json: &str) -> Result<Planned, String> {
    let plan = serde_json::from_str(json).map_err(|e| format!("the embedded plan cannot be read: {e}"))?;
    Planned::open(spec, plan).map_err(|e| e.to_string())
}

/// The options of a [`NativeLoader`]: a dict with the Python `Loader`'s keyword arguments (only
/// `split` is required; a missing key takes the Python default).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub(crate) struct LoaderArgs {
    /// `train`, `validate` or `test`.
    split: String,
    /// Rank; with `world_size`, or neither to read torchrun's environment.
    #[pyo3(default)]
    rank: Option<usize>,
    /// World size; with `rank`.
    #[pyo3(default)]
    world_size: Option<usize>,
    /// Overrides `sampling.seed` for this loader (the spec stays as validated).
    #[pyo3(default)]
    seed: Option<u64>,
    /// Epoch to start (or resume) at.
    #[pyo3(default)]
    epoch: u64,
    /// Step within the epoch to resume at.
    #[pyo3(default)]
    step: u64,
    /// Plan cache folder (default: `$CELLMAP_CACHE_DIR` or `~/.cache/cellmap-compile/plans`).
    #[pyo3(default)]
    cache_dir: Option<PathBuf>,
    /// A plan made earlier, as JSON (a generated package's embedded plan).
    #[pyo3(default)]
    plan: Option<String>,
    /// Read through this training cache folder instead of the spec's `loader.training_cache`.
    #[pyo3(default)]
    training_cache: Option<PathBuf>,
}

/// The Rust loader behind the Python `Loader`: an endless training stream or one validation
/// pass, yielding batches as DLPack capsules.
#[pyclass(module = "cellmap_compile._native")]
pub(crate) struct NativeLoader {
    loader: Loader,
    spec: Arc<Spec>,
    origin: PlanOrigin,
}

#[pymethods]
impl NativeLoader {
    /// Validate the spec, plan its data (or open it over the cached plan) and start the workers;
    /// the GIL is released meanwhile. `args` holds the Python `Loader`'s keyword arguments (see
    /// [`LoaderArgs`]).
    #[new]
    fn new(py: Python<'_>, text: &str, source: &str, args: LoaderArgs) -> PyResult<Self> {
        let split: Split = crate::spec::split(&args.split)?;
        let mut spec = crate::spec::parse(py, text, source)?.spec;
        if let Some(dir) = args.training_cache {
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            spec = spec.with_training_cache(Some(dir.display().to_string()));
        }
        let spec = Arc::new(spec);
        let mut options = LoaderOptions::new(split, dist(args.rank, args.world_size)?);
        options.epoch = args.epoch;
        options.step = args.step;
        options.seed = args.seed;
        let opened = Arc::clone(&spec);
        let (plan, cache_dir) = (args.plan, args.cache_dir);
        let (loader, origin) = py
            .detach(move || -> Result<(Loader, PlanOrigin), String> {
                let (planned, origin) = match plan {
                    Some(json) => (open_embedded(&opened, &json)?, PlanOrigin::Embedded),
                    None => open_plan(&opened, cache_dir)?,
                };
                let loader = Loader::with_plan(opened, Arc::new(planned), options).map_err(|e| e.to_string())?;
                Ok((loader, origin))
            })
            .map_err(cellmap_error)?;
        Ok(NativeLoader { loader, spec, origin })
    }

    /// The next batch, or `None` after the last validation batch. Waits with the GIL released,
    /// checking for signals (Ctrl-C) every 50 ms.
    fn next_batch(&mut self, py: Python<'_>) -> PyResult<Option<PyBatch>> {
        let mut held_since: Option<Instant> = None;
        loop {
            let loader = &mut self.loader;
            match py.detach(|| loader.next_owned(POLL)) {
                NextOwned::Batch(batch) => return batch_values(py, Arc::new(batch)).map(Some),
                NextOwned::Failed(e) => return Err(cellmap_error(e)),
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
                            self.loader.slot_count()
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

    /// Ring slots.
    fn prefetch(&self) -> usize {
        self.loader.slot_count()
    }

    /// The spec's device: `cpu` or `cuda:N`.
    fn device(&self) -> String {
        match self.spec.loader().device {
            Device::Cpu => "cpu".to_owned(),
            Device::Cuda(n) => format!("cuda:{n}"),
        }
    }

    /// Whether the spec asks for pinned host memory.
    fn pin_memory(&self) -> bool {
        self.spec.loader().pin_memory
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

    /// The plan as JSON (as `cellmap-compile plan --json` prints it, with each dataset's
    /// `input_transforms`).
    fn plan_json(&self) -> PyResult<String> {
        cellmap_runtime::sample::intensity::plan_json(self.loader.spec(), self.loader.planned())
            .and_then(|v| serde_json::to_string(&v))
            .map_err(cellmap_error)
    }

    /// The validated spec as JSON.
    fn spec_json(&self) -> PyResult<String> {
        serde_json::to_string(&*self.spec).map_err(cellmap_error)
    }

    /// `"cache"`, `"planned"` or `"embedded"`: where this loader's plan came from.
    fn plan_origin(&self) -> &'static str {
        self.origin.name()
    }

    /// Samples skipped under `on_error: skip_and_log`.
    fn skipped_samples(&self) -> u64 {
        self.loader.skipped_samples()
    }
}

/// A batch as `(epoch, step, capsules, idx, dataset, centre_nm)`.
fn batch_values(py: Python<'_>, batch: Arc<OwnedBatch>) -> PyResult<PyBatch> {
    let layout = batch.layout();
    let mut arrays = Vec::with_capacity(layout.arrays.len());
    for (i, a) in layout.arrays.iter().enumerate() {
        // `[B, C, Z, Y, X]`, or `[B, C, Y, X]` for a 2D spec: the same memory either way.
        let shape = a.tensor_shape(layout.batch_size);
        let view = batch.view(i);
        let data = view.as_bytes().as_ptr();
        // SAFETY: array `i` of the batch holds `B·C·Z·Y·X` elements of its dtype in its ring
        // slot, which the workers do not write while an `Arc` of the batch (moved into the
        // capsule) is alive.
        arrays.push(unsafe { typed_capsule(py, Arc::clone(&batch), data, view.dtype(), &shape) }?);
    }
    let meta: Vec<_> = batch.meta().collect();
    Ok((
        batch.epoch(),
        batch.step(),
        arrays,
        meta.iter().map(|m| m.idx).collect(),
        meta.iter().map(|m| i64::from(m.dataset)).collect(),
        meta.iter()
            .map(|m| (m.centre_nm[0], m.centre_nm[1], m.centre_nm[2]))
            .collect(),
    ))
}
