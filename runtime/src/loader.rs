//! The loader: a planned spec, a sampler and the batch pipeline, yielding batches in order.
//!
//! ```text
//! Loader::open(spec, LoaderOptions::train())   endless, epoch after epoch
//! Loader::open(spec, LoaderOptions::validate()) one pass over this rank's validation tiles
//! ```
//!
//! Training batch `g` (counted from epoch 0, step 0) is batch `step = g mod bpe` of epoch
//! `g div bpe`, where `bpe = max(1, iterations_per_epoch div batch_size)`; its sample at
//! position `k` is draw `step·B + k` of that epoch. Every random choice of a draw is keyed by
//! `(seed, epoch, rank, draw)`, so batches are identical whatever the number of workers, and
//! resuming at `(epoch, step)` starts exactly where an uninterrupted run would be.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cellmap_schema::{Device, ErrorPolicy, Spec, Split};

use crate::memory::{MemoryError, MemoryNeed, check_fits};
use crate::pipeline::{
    BatchGuard, BatchLayout, BatchLease, Leased, Pipeline, PipelineError, PipelineOptions, SampleJob, SampleMeta,
    SampleOut,
};
use crate::plan::{Plan, PlanError, PlanOptions, Planned, foreground_index, plan};
use crate::rng::{Rng, SampleKey};
use crate::sample::{Reader, SampleRequest, SampleScratch};
use crate::sampler::{DatasetGrid, DistInfo, EpochDraws, TrainSampler};
use crate::store::{CacheStats, ChunkCache};

/// Attempts per batch position under `skip_and_log` before the loader gives up.
const MAX_ATTEMPTS: u32 = 16;

/// How to build a loader.
#[derive(Debug, Clone)]
pub struct LoaderOptions {
    /// The split to read.
    pub split: Split,
    /// Rank and world size (defaults: torchrun's environment, or a single process).
    pub dist: DistInfo,
    /// First epoch (training resume).
    pub epoch: u64,
    /// First step within the first epoch (training resume).
    pub step: u64,
    /// Override the spec's seed.
    pub seed: Option<u64>,
    /// Override the spec's worker count.
    pub workers: Option<usize>,
    /// Override the spec's prefetch.
    pub prefetch: Option<usize>,
    /// A chunk cache to share (e.g. between a training and a validation loader); by default
    /// each loader makes one with the spec's budget.
    pub cache: Option<Arc<ChunkCache>>,
    /// Disable the chunk cache (cold reads, for benchmarks).
    pub no_cache: bool,
    /// Allocate ring memory as torch tensors (set by the torch interop).
    pub torch_memory: bool,
    /// Test-only fault injection: called by a worker before it reads `(batch, position)`; a
    /// panic inside it is a worker panic. Not part of the stable API.
    #[doc(hidden)]
    pub fault_hook: Option<FaultHook>,
}

/// A fault-injection callback, `(batch, position)`, run by a worker before each sample read.
#[doc(hidden)]
#[derive(Clone)]
pub struct FaultHook(pub Arc<dyn Fn(u64, usize) + Send + Sync>);

impl std::fmt::Debug for FaultHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultHook")
    }
}

impl LoaderOptions {
    /// Training from epoch 0, step 0, rank and world size from the environment.
    pub fn train() -> Result<Self, LoaderError> {
        Self::for_split(Split::Train)
    }

    /// Validation, rank and world size from the environment.
    pub fn validate() -> Result<Self, LoaderError> {
        Self::for_split(Split::Validate)
    }

    /// The test split (read like validation: tiles, no augmentation), rank and world size from the
    /// environment.
    pub fn test() -> Result<Self, LoaderError> {
        Self::for_split(Split::Test)
    }

    fn for_split(split: Split) -> Result<Self, LoaderError> {
        let dist = DistInfo::from_env().map_err(|e| LoaderError::Dist(e.to_string()))?;
        Ok(Self::new(split, dist))
    }

    /// Options for `split` on rank `dist`, from epoch 0 and step 0, every setting from the spec.
    pub fn new(split: Split, dist: DistInfo) -> Self {
        LoaderOptions {
            split,
            dist,
            epoch: 0,
            step: 0,
            seed: None,
            workers: None,
            prefetch: None,
            cache: None,
            no_cache: false,
            torch_memory: false,
            fault_hook: None,
        }
    }
}

/// Why a loader could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// Planning failed.
    #[error(transparent)]
    Plan(#[from] Box<PlanError>),
    /// The split has no dataset.
    #[error("the spec has no {0} dataset")]
    EmptySplit(&'static str),
    /// The sampler could not be built.
    #[error("sampler: {0}")]
    Sampler(String),
    /// RANK / WORLD_SIZE are malformed.
    #[error("distributed settings: {0}")]
    Dist(String),
    /// A spec given to a generated loader does not have the loader's classes, arrays or batch size.
    #[error("the spec does not match the compiled loader: {0}; rebuild the crate with `cellmap-compile build`")]
    Incompatible(String),
    /// The ring and the chunk cache do not fit in the memory the machine offers, or the ring
    /// could not be allocated.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// Check that `actual` has the classes, arrays (names, shapes, voxel sizes) and batch size that
/// code compiled for `expected` relies on; data locations, sampling and augmentation may differ.
pub fn check_compatible(expected: &Spec, actual: &Spec) -> Result<(), LoaderError> {
    if expected.classes != actual.classes {
        return Err(LoaderError::Incompatible(format!(
            "classes {:?} instead of {:?}",
            actual.classes, expected.classes
        )));
    }
    let shape = |a: &[cellmap_schema::ArraySpec]| -> Vec<(String, [usize; 3], [f64; 3])> {
        a.iter()
            .map(|a| (a.name.clone(), a.shape_vox, a.voxel_size_nm))
            .collect()
    };
    for (kind, e, a) in [
        ("inputs", &expected.inputs, &actual.inputs),
        ("targets", &expected.targets, &actual.targets),
    ] {
        if shape(e) != shape(a) {
            return Err(LoaderError::Incompatible(format!(
                "{kind} {:?} instead of {:?}",
                shape(a),
                shape(e)
            )));
        }
    }
    if expected.loader.batch_size != actual.loader.batch_size {
        return Err(LoaderError::Incompatible(format!(
            "batch size {} instead of {}",
            actual.loader.batch_size, expected.loader.batch_size
        )));
    }
    Ok(())
}

/// What one batch position reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Draw {
    /// A sample of dataset `dataset` (plan index) at `centre_nm`.
    Sample {
        dataset: usize,
        centre_nm: [f64; 3],
        idx: i64,
        split_index: usize,
    },
    /// No sample (the tail of the last validation batch, or an unreadable tile under `skip_and_log`).
    Empty,
}

/// The sample job of a loader.
pub struct LoaderJob {
    reader: Reader,
    split: Split,
    dist: DistInfo,
    seed: u64,
    batch_size: u64,
    /// Batch number of the pipeline's batch 0 (training resume).
    first_batch: u64,
    batches_per_epoch: u64,
    /// Plan indices of this split's datasets.
    datasets: Vec<usize>,
    kind: JobKind,
    fault_hook: Option<FaultHook>,
}

/// Epoch draws a training loader keeps: the previous, the current and the next epoch, plus a spare
/// that is refilled rather than reallocated.
const EPOCHS_CACHED: usize = 4;

enum JobKind {
    Train {
        sampler: TrainSampler,
        /// The epochs whose sequential draws are computed (current and next).
        epochs: Mutex<Vec<(u64, Arc<EpochDraws>)>>,
    },
    Tiles {
        /// This rank's tiles: (plan dataset index, tile linear index).
        tiles: Vec<(usize, u64)>,
    },
}

impl LoaderJob {
    /// Batches of a whole validation pass, or `None` for the endless training stream.
    fn pass_batches(&self) -> Option<u64> {
        match &self.kind {
            JobKind::Train { .. } => None,
            JobKind::Tiles { tiles } => Some((tiles.len() as u64).div_ceil(self.batch_size)),
        }
    }

    fn draw(&self, batch: u64, position: usize, attempt: u32) -> Result<Draw, String> {
        let batch = self.first_batch + batch;
        match &self.kind {
            JobKind::Train { sampler, epochs } => {
                let epoch = batch / self.batches_per_epoch;
                let i = (batch % self.batches_per_epoch) * self.batch_size + position as u64;
                let draws = self.epoch_draws(sampler, epochs, epoch);
                let pick = if attempt == 0 {
                    i
                } else {
                    // A replacement: a uniformly drawn draw of the same epoch, keyed by the attempt.
                    let mut rng = Rng::new(self.key(epoch, i), u64::from(attempt) << 32);
                    rng.below(draws.len().max(1))
                };
                let choice = draws
                    .get(pick % draws.len().max(1))
                    .ok_or_else(|| format!("the sampler has no draw {pick} in epoch {epoch}"))?;
                let plan_index = self.datasets[choice.dataset];
                let grid = &self.reader.planned().plan.datasets[plan_index].grid;
                Ok(Draw::Sample {
                    dataset: plan_index,
                    centre_nm: grid.centre(choice.grid_index),
                    idx: i as i64,
                    split_index: choice.dataset,
                })
            }
            JobKind::Tiles { tiles } => {
                let t = batch * self.batch_size + position as u64;
                if attempt > 0 {
                    // A tile has no replacement: under `skip_and_log` an unreadable tile leaves
                    // its position empty (counted and logged once), and the pass goes on.
                    return Ok(Draw::Empty);
                }
                let Some(&(plan_index, tile)) = tiles.get(t as usize) else {
                    return Ok(Draw::Empty);
                };
                let grid = &self.reader.planned().plan.datasets[plan_index].tiles;
                Ok(Draw::Sample {
                    dataset: plan_index,
                    centre_nm: grid.centre(grid.unravel(tile)),
                    idx: t as i64,
                    split_index: self.reader.planned().plan.datasets[plan_index].index,
                })
            }
        }
    }

    fn epoch_draws(
        &self,
        sampler: &TrainSampler,
        epochs: &Mutex<Vec<(u64, Arc<EpochDraws>)>>,
        epoch: u64,
    ) -> Arc<EpochDraws> {
        let mut cached = epochs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, d)) = cached.iter().find(|(e, _)| *e == epoch) {
            return Arc::clone(d);
        }
        // Workers straddle an epoch boundary with prefetch: the epochs from `epoch − 1` on stay.
        // An older one that no worker holds any more is refilled in place (no allocation once
        // the cache has warmed up); otherwise a new one is made.
        let stale = |e: u64| e + 1 < epoch;
        if let Some((e, d)) = cached.iter_mut().find(|(e, d)| stale(*e) && Arc::strong_count(d) == 1)
            && let Some(draws) = Arc::get_mut(d)
        {
            sampler.epoch_into(epoch, draws);
            *e = epoch;
            return Arc::clone(d);
        }
        let draws = Arc::new(sampler.epoch(epoch));
        // Bounded: stale epochs beyond the spare are dropped (a worker still holding one keeps
        // its own reference).
        if cached.len() >= EPOCHS_CACHED {
            cached.retain(|(e, _)| !stale(*e));
        }
        cached.push((epoch, Arc::clone(&draws)));
        draws
    }

    fn key(&self, epoch: u64, index: u64) -> SampleKey {
        SampleKey {
            seed: self.seed,
            epoch,
            rank: self.dist.rank as u64,
            index,
        }
    }
}

impl SampleJob for LoaderJob {
    type Scratch = SampleScratch;

    fn scratch(&self) -> SampleScratch {
        self.reader.scratch()
    }

    /// Batches left in the pass: a validation loader opened at step `s` yields the pass's
    /// batches from `s` on.
    fn batches(&self) -> Option<u64> {
        self.pass_batches().map(|n| n.saturating_sub(self.first_batch))
    }

    fn fill(
        &self,
        scratch: &mut SampleScratch,
        batch: u64,
        position: usize,
        attempt: u32,
        out: &mut SampleOut<'_>,
    ) -> Result<Option<SampleMeta>, String> {
        if let Some(hook) = &self.fault_hook {
            (hook.0)(batch, position);
        }
        match self.draw(batch, position, attempt)? {
            Draw::Empty => {
                let spec = self.reader.spec();
                for i in 0..out.arrays() {
                    let fill = if i < spec.inputs.len() {
                        spec.sampling.pad_value_inputs
                    } else {
                        f32::NAN
                    };
                    out.array(i).fill(fill);
                }
                Ok(None)
            }
            Draw::Sample {
                dataset,
                centre_nm,
                idx,
                split_index,
            } => {
                let epoch = match self.kind {
                    JobKind::Train { .. } => (self.first_batch + batch) / self.batches_per_epoch,
                    JobKind::Tiles { .. } => 0,
                };
                let request = SampleRequest {
                    dataset,
                    centre_nm,
                    key: self.key(epoch, idx as u64 | (u64::from(attempt) << 48)),
                    spatial: self.split.is_train(),
                    values: true,
                };
                self.reader.read(scratch, &request, out).map_err(|e| e.to_string())?;
                Ok(Some(SampleMeta {
                    idx,
                    dataset: split_index as i32,
                    centre_nm,
                }))
            }
        }
    }
}

/// A loader over one split of a spec.
pub struct Loader {
    pipeline: Pipeline<LoaderJob>,
    spec: Arc<Spec>,
    planned: Arc<Planned>,
    cache: Option<Arc<ChunkCache>>,
    batches_per_epoch: u64,
    first_batch: u64,
}

impl Loader {
    /// Plan the spec's data and start a loader.
    pub fn open(spec: Spec, options: LoaderOptions) -> Result<Self, LoaderError> {
        let planned = plan(&spec, PlanOptions::default()).map_err(Box::new)?;
        Self::with_plan(Arc::new(spec), Arc::new(planned), options)
    }

    /// Start a loader over a plan made earlier for `spec` (a generated crate's embedded plan):
    /// the data is opened and checked against the plan ([`Planned::open`]), not planned again.
    pub fn open_planned(spec: Spec, plan: Plan, options: LoaderOptions) -> Result<Self, LoaderError> {
        let planned = Planned::open(&spec, plan).map_err(Box::new)?;
        Self::with_plan(Arc::new(spec), Arc::new(planned), options)
    }

    /// Start a loader over an existing plan (plans are shared between loaders of one spec).
    pub fn with_plan(spec: Arc<Spec>, planned: Arc<Planned>, options: LoaderOptions) -> Result<Self, LoaderError> {
        let split = options.split;
        let datasets: Vec<usize> = planned
            .plan
            .datasets
            .iter()
            .enumerate()
            .filter(|(_, d)| d.split == split)
            .map(|(i, _)| i)
            .collect();
        if datasets.is_empty() {
            return Err(LoaderError::EmptySplit(split.name()));
        }
        // Refuse, before anything is allocated, a ring and cache the machine cannot hold. A
        // shared cache counts with what it may still grow by.
        let cache_bytes = match (&options.cache, options.no_cache) {
            (_, true) => 0,
            (Some(shared), false) => shared.budget_bytes().saturating_sub(shared.stats().bytes),
            (None, false) => spec.loader.cache_bytes,
        };
        check_fits(&MemoryNeed {
            batch_size: planned.plan.batch.batch_size,
            batch_bytes: planned.plan.batch_bytes,
            prefetch: options.prefetch.unwrap_or(spec.loader.prefetch),
            cache_bytes,
        })?;
        let cache = if options.no_cache {
            None
        } else {
            Some(
                options
                    .cache
                    .clone()
                    .unwrap_or_else(|| Arc::new(ChunkCache::new(spec.loader.cache_bytes))),
            )
        };
        let reader = Reader::new(Arc::clone(&spec), Arc::clone(&planned), cache.clone());
        let batch_size = spec.loader.batch_size as u64;
        let batches_per_epoch = (spec.sampling.iterations_per_epoch / batch_size).max(1);
        let dist = options.dist;
        let kind = if split.is_train() || !spec.sampling.validation_tiling {
            let mut grids: Vec<DatasetGrid> = datasets
                .iter()
                .map(|&i| dataset_grid(&planned.plan, i, spec.classes.len()))
                .collect();
            if let Some(bias) = &spec.sampling.foreground {
                let class = spec.classes.iter().position(|c| *c == bias.class).unwrap_or(usize::MAX);
                for (grid, &i) in grids.iter_mut().zip(&datasets) {
                    let d = &planned.plan.datasets[i];
                    grid.foreground = foreground_index(&spec, d, &planned.sources[i], class).map_err(|e| {
                        LoaderError::Sampler(format!("{}: foreground of `{}`: {e}", d.origin, bias.class))
                    })?;
                }
            }
            // The seed override draws the centres too, not only the augmentation.
            let mut sampling = spec.sampling.clone();
            sampling.seed = options.seed.unwrap_or(sampling.seed);
            let sampler = TrainSampler::new(grids, &sampling, dist.rank, dist.world_size)
                .map_err(|e| LoaderError::Sampler(e.to_string()))?;
            JobKind::Train {
                sampler,
                epochs: Mutex::new(Vec::with_capacity(EPOCHS_CACHED + 1)),
            }
        } else {
            let all: Vec<(usize, u64)> = datasets
                .iter()
                .flat_map(|&i| (0..planned.plan.datasets[i].tiles.len()).map(move |t| (i, t)))
                .collect();
            let tiles = crate::sampler::shard(&all, dist.rank, dist.world_size)
                .copied()
                .collect();
            JobKind::Tiles { tiles }
        };
        // A validation pass is the same at every epoch: only the step says where to resume it.
        let first_batch = match kind {
            JobKind::Train { .. } => options.epoch * batches_per_epoch + options.step,
            JobKind::Tiles { .. } => options.step,
        };
        let job = LoaderJob {
            reader,
            split,
            dist,
            seed: options.seed.unwrap_or(spec.sampling.seed),
            batch_size,
            first_batch,
            batches_per_epoch,
            datasets,
            kind,
            fault_hook: options.fault_hook.clone(),
        };
        let pipeline_options = PipelineOptions {
            workers: options.workers.unwrap_or(spec.loader.workers),
            prefetch: options.prefetch.unwrap_or(spec.loader.prefetch),
            on_error: spec.loader.on_error,
            max_attempts: if spec.loader.on_error == ErrorPolicy::Fail {
                1
            } else {
                MAX_ATTEMPTS
            },
            torch_memory: options.torch_memory,
            // Pinning needs a CUDA runtime and only helps copies to a CUDA device.
            pin: options.torch_memory && spec.loader.pin_memory && matches!(spec.loader.device, Device::Cuda(_)),
        };
        let pipeline = Pipeline::try_start(job, planned.plan.batch.clone(), &pipeline_options)?;
        Ok(Loader {
            pipeline,
            spec,
            planned,
            cache,
            batches_per_epoch,
            first_batch,
        })
    }

    /// The next batch: endless for training, one pass for validation tiles.
    pub fn next_batch(&mut self) -> Option<Result<Batch<'_>, PipelineError>> {
        let first = self.first_batch;
        let bpe = self.batches_per_epoch;
        let validation = self.pipeline.job().batches().is_some();
        self.pipeline.next_batch().map(|r| {
            r.map(|guard| {
                let g = first + guard.number();
                let (epoch, step) = if validation { (0, g) } else { (g / bpe, g % bpe) };
                Batch { guard, epoch, step }
            })
        })
    }

    /// The next batch as an owned [`OwnedBatch`] that keeps its ring slot reserved until it
    /// is dropped (wherever it has been moved to), waiting at most `timeout` for it. Use this to
    /// hand batches to another owner without copying (e.g. Python tensors through DLPack).
    pub fn next_owned(&mut self, timeout: Duration) -> NextOwned {
        let first = self.first_batch;
        let bpe = self.batches_per_epoch;
        let validation = self.pipeline.job().batches().is_some();
        match self.pipeline.next_lease(timeout) {
            Leased::Batch(lease) => {
                let g = first + lease.number();
                let (epoch, step) = if validation { (0, g) } else { (g / bpe, g % bpe) };
                NextOwned::Batch(OwnedBatch { lease, epoch, step })
            }
            Leased::Failed(e) => NextOwned::Failed(e),
            Leased::End => NextOwned::End,
            Leased::Pending { slot_held } => NextOwned::Pending { slot_held },
        }
    }

    /// Training batches per epoch (`max(1, iterations_per_epoch div batch_size)`); for
    /// validation tiles, the batches of the pass.
    pub fn batches_per_epoch(&self) -> u64 {
        self.pipeline.job().pass_batches().unwrap_or(self.batches_per_epoch)
    }

    /// The spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.planned.plan
    }

    /// The plan with its opened sources.
    pub fn planned(&self) -> &Arc<Planned> {
        &self.planned
    }

    /// Statistics of the chunk cache (`None` without a cache).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// The chunk cache, to share with another loader.
    pub fn cache(&self) -> Option<&Arc<ChunkCache>> {
        self.cache.as_ref()
    }

    /// Bytes of the ring (equals `plan().ring_bytes` for the spec's prefetch).
    pub fn ring_bytes(&self) -> u64 {
        self.pipeline.ring_bytes()
    }

    /// Ring slots (the prefetch depth); batch `n` of this loader borrows slot `n mod slot_count`.
    pub fn slot_count(&self) -> usize {
        self.pipeline.slot_count()
    }

    /// The torch tensor holding array `i` of ring slot `slot`.
    #[cfg(feature = "torch")]
    pub(crate) fn slot_tensor(&self, slot: usize, i: usize) -> Option<&tch::Tensor> {
        self.pipeline.slot_tensor(slot, i)
    }

    /// Worker threads (fixed for the loader's lifetime).
    pub fn worker_count(&self) -> usize {
        self.pipeline.worker_count()
    }

    /// Samples replaced under `skip_and_log`.
    pub fn skipped_samples(&self) -> u64 {
        self.pipeline.stats().skipped_samples
    }
}

/// A batch, borrowing its ring slot until dropped.
pub struct Batch<'a> {
    guard: BatchGuard<'a, LoaderJob>,
    epoch: u64,
    step: u64,
}

impl Batch<'_> {
    /// The epoch of this batch (0 for validation).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The step within the epoch (the batch number for validation).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The ring slot this batch borrows.
    pub fn slot(&self) -> usize {
        self.guard.slot()
    }

    /// Array `i` of the batch layout (inputs, then targets), `[B, C, Z, Y, X]` row-major.
    pub fn array(&self, i: usize) -> &[f32] {
        self.guard.array(i)
    }

    /// Per-position metadata (`idx` −1 marks an empty position).
    pub fn meta(&self) -> impl ExactSizeIterator<Item = SampleMeta> + '_ {
        self.guard.meta()
    }

    /// Positions holding a sample.
    pub fn len(&self) -> usize {
        self.guard.len()
    }

    /// True when no position holds a sample.
    pub fn is_empty(&self) -> bool {
        self.guard.is_empty()
    }

    /// The torch tensor backing array `i`, when the loader allocates torch memory.
    #[cfg(feature = "torch")]
    pub fn host_tensor(&self, i: usize) -> Option<&tch::Tensor> {
        self.guard.host_tensor(i)
    }
}

/// The outcome of [`Loader::next_owned`].
pub enum NextOwned {
    /// The next batch.
    Batch(OwnedBatch),
    /// The next batch failed (the following call moves on to the batch after it).
    Failed(PipelineError),
    /// The validation pass is complete.
    End,
    /// Not ready within the timeout; `slot_held` is true when the ring slot the batch needs is
    /// still held by an earlier [`OwnedBatch`], so it cannot complete until that one is dropped.
    Pending {
        /// An earlier, still-live batch holds the slot.
        slot_held: bool,
    },
}

/// A batch that owns the reservation of its ring slot until dropped; `Send + Sync`, so it can
/// be shared through an `Arc` by everything that views its memory.
pub struct OwnedBatch {
    lease: BatchLease<LoaderJob>,
    epoch: u64,
    step: u64,
}

impl OwnedBatch {
    /// The epoch of this batch (0 for validation).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The step within the epoch (the batch number for validation).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Array `i` of the batch layout (inputs, then targets), `[B, C, Z, Y, X]` row-major.
    pub fn array(&self, i: usize) -> &[f32] {
        self.lease.array(i)
    }

    /// The batch layout (names and shapes of the arrays).
    pub fn layout(&self) -> &BatchLayout {
        self.lease.layout()
    }

    /// Per-position metadata (`idx` −1 marks an empty position).
    pub fn meta(&self) -> impl ExactSizeIterator<Item = SampleMeta> + '_ {
        self.lease.meta()
    }

    /// Positions holding a sample.
    pub fn len(&self) -> usize {
        self.lease.len()
    }

    /// True when no position holds a sample.
    pub fn is_empty(&self) -> bool {
        self.lease.is_empty()
    }
}

/// The sampler's view of one planned dataset.
fn dataset_grid(plan: &Plan, index: usize, classes: usize) -> DatasetGrid {
    let d = &plan.datasets[index];
    let annotated = d.targets.first().map_or(vec![false; classes], |t| {
        t.iter()
            .map(|c| matches!(c, crate::plan::ClassPlan::Annotated(_)))
            .collect()
    });
    let (foreground, total) = match &d.class_counts {
        Some(counts) => (
            counts.iter().map(|c| c.foreground).collect(),
            counts.iter().map(|c| c.total).collect(),
        ),
        None => (vec![0; classes], vec![0; classes]),
    };
    DatasetGrid {
        grid_shape: d.grid.shape,
        annotated,
        foreground_voxels: foreground,
        total_voxels: total,
        foreground: None,
    }
}
