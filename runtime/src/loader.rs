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

mod ahead;
mod batch;
mod job;
mod options;

pub use batch::{Batch, NextOwned, OwnedBatch};
pub use job::{LoaderJob, SampleFailure};
pub use options::{FaultHook, LoaderError, LoaderOptions, REMOTE_AHEAD_PER_FETCH, check_compatible};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cellmap_schema::{Device, ErrorPolicy, Spec};

use crate::memory::{MemoryNeed, check_fits, spec_is_remote};
#[cfg(feature = "torch")]
use crate::pipeline::SlotMemory;
use crate::pipeline::{Leased, Pipeline, PipelineError, PipelineOptions, RingMemory, SampleJob};
use crate::plan::{Plan, PlanOptions, Planned, foreground_index, plan};
use crate::sample::Reader;
use crate::sampler::{DatasetGrid, TrainSampler};
use crate::store::{
    CacheStats, ChunkCache, CompressedOptions, CompressedStats, FetchOptions, FetchStats, store_delay_from_env,
};

use ahead::FetchAhead;
use job::{JobKind, dataset_grid};

/// Attempts per batch position under `skip_and_log` before the loader gives up.
const MAX_ATTEMPTS: u32 = 16;

/// A loader over one split of a spec.
pub struct Loader {
    pipeline: Pipeline<LoaderJob>,
    spec: Arc<Spec>,
    planned: Arc<Planned>,
    cache: Option<Arc<ChunkCache>>,
    /// The cache reads go through: `cache`, or one without budget under `no_cache` (its fetch
    /// pool and counters still serve the reads).
    reads: Arc<ChunkCache>,
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
        // Under the benchmarking delay local files stand in for a remote store: read as remote data.
        let delay = options.store_delay.or_else(store_delay_from_env);
        let remote = spec_is_remote(&spec) || delay.is_some();
        let cache = open_cache(&spec, &planned.plan, &options, remote)?;
        let reads = cache.clone().unwrap_or_else(|| Arc::new(ChunkCache::new(0)));
        let workers = options.workers.unwrap_or(spec.loader().workers);
        let concurrency = options.fetch_concurrency.unwrap_or(spec.loader().fetch_concurrency);
        reads.configure_fetch(FetchOptions {
            concurrency,
            delay,
            local_on_pool: options.local_on_pool.unwrap_or_else(|| cores_to_spare(workers)),
            ahead_concurrency: options.ahead_concurrency.unwrap_or(if remote {
                concurrency.saturating_mul(REMOTE_AHEAD_PER_FETCH)
            } else {
                concurrency
            }),
        });
        let reader = Reader::new(Arc::clone(&spec), Arc::clone(&planned), Some(Arc::clone(&reads)));
        let batch_size = spec.loader().batch_size as u64;
        let batches_per_epoch = (spec.sampling().iterations_per_epoch / batch_size).max(1);
        let kind = job_kind(&spec, &planned, &datasets, &options)?;
        // A validation pass is the same at every epoch: only the step says where to resume it.
        let first_batch = match kind {
            JobKind::Train { .. } => options.epoch * batches_per_epoch + options.step,
            JobKind::Tiles { .. } => options.step,
        };
        let pipeline_options = pipeline_options(&spec, &options);
        let fetch_ahead = options.fetch_ahead.unwrap_or(spec.loader().fetch_ahead);
        let ahead = match kind {
            JobKind::Train { .. } => FetchAhead::new(fetch_ahead, pipeline_options.prefetch, &reads, remote),
            JobKind::Tiles { .. } => None,
        };
        let job = LoaderJob {
            reader,
            split,
            dist: options.dist,
            seed: options.seed.unwrap_or(spec.sampling().seed),
            batch_size,
            first_batch,
            batches_per_epoch,
            datasets,
            kind,
            fault_hook: options.fault_hook.clone(),
            // Batches in the ring and batches fetched ahead are read or listed while a worker
            // asks for a later epoch: the epochs they span stay cached.
            epochs_behind: 1 + ((pipeline_options.prefetch + fetch_ahead) as u64).div_ceil(batches_per_epoch),
            ahead,
        };
        let pipeline = Pipeline::try_start(job, planned.plan.batch.clone(), &pipeline_options)?;
        Ok(Loader {
            pipeline,
            spec,
            planned,
            cache,
            reads,
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

    /// Counters of the chunk cache's compressed tier (`None` without a cache).
    pub fn compressed_stats(&self) -> Option<CompressedStats> {
        self.cache.as_ref().map(|c| c.compressed_stats())
    }

    /// Counters of the chunks this loader's reads fetched (with or without a cache; shared with
    /// the loaders that share its cache).
    pub fn fetch_stats(&self) -> FetchStats {
        self.reads.fetch_stats()
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

    /// The memory of array `i` of ring slot `slot`.
    #[cfg(feature = "torch")]
    pub(crate) fn slot_memory(&self, slot: usize, i: usize) -> Option<&SlotMemory> {
        self.pipeline.slot_memory(slot, i)
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

/// The chunk cache of a loader (shared, new, or none), after checking that the ring and the cache
/// fit in the memory the machine offers: refused before anything is allocated. A shared cache
/// counts with what it may still grow by. `remote`: some data is remote, or stands in for remote
/// data (the benchmarking delay); the compressed tier's default budget holds only then.
fn open_cache(
    spec: &Spec,
    plan: &Plan,
    options: &LoaderOptions,
    remote: bool,
) -> Result<Option<Arc<ChunkCache>>, LoaderError> {
    let compressed =
        CompressedOptions::from_setting(options.compressed_cache_bytes.or(spec.loader().compressed_cache_bytes));
    let (cache_bytes, compressed_cache_bytes) = match (&options.cache, options.no_cache) {
        (_, true) => (0, 0),
        (Some(shared), false) => {
            let tier = shared.compressed_stats();
            (
                shared.budget_bytes().saturating_sub(shared.stats().bytes),
                tier.budget_bytes.saturating_sub(tier.bytes),
            )
        }
        (None, false) => (spec.loader().cache_bytes, compressed.held_bytes(remote)),
    };
    check_fits(&MemoryNeed {
        batch_size: plan.batch.batch_size,
        batch_bytes: plan.batch_bytes,
        prefetch: options.prefetch.unwrap_or(spec.loader().prefetch),
        cache_bytes,
        compressed_cache_bytes,
    })?;
    if options.no_cache {
        return Ok(None);
    }
    let cache = options
        .cache
        .clone()
        .unwrap_or_else(|| Arc::new(ChunkCache::new(spec.loader().cache_bytes).with_compressed(compressed)));
    Ok(Some(cache))
}

/// Training draws (with the foreground index when the spec biases sampling) or this rank's
/// validation tiles.
fn job_kind(
    spec: &Spec,
    planned: &Planned,
    datasets: &[usize],
    options: &LoaderOptions,
) -> Result<JobKind, LoaderError> {
    let dist = options.dist;
    if !options.split.is_train() && spec.sampling().validation_tiling {
        let all: Vec<(usize, u64)> = datasets
            .iter()
            .flat_map(|&i| (0..planned.plan.datasets[i].tiles.len()).map(move |t| (i, t)))
            .collect();
        let tiles = crate::sampler::shard(&all, dist.rank, dist.world_size)
            .copied()
            .collect();
        return Ok(JobKind::Tiles { tiles });
    }
    let mut grids: Vec<DatasetGrid> = datasets
        .iter()
        .map(|&i| dataset_grid(&planned.plan, i, spec.classes().len()))
        .collect();
    if let Some(bias) = &spec.sampling().foreground {
        let class = spec
            .classes()
            .iter()
            .position(|c| *c == bias.class)
            .unwrap_or(usize::MAX);
        for (grid, &i) in grids.iter_mut().zip(datasets) {
            let d = &planned.plan.datasets[i];
            grid.foreground =
                foreground_index(spec, d, &planned.sources[i], class).map_err(|source| LoaderError::Foreground {
                    origin: d.origin.clone(),
                    class: bias.class.clone(),
                    source: Box::new(source),
                })?;
        }
    }
    // The seed override draws the centres too, not only the augmentation.
    let mut sampling = spec.sampling().clone();
    sampling.seed = options.seed.unwrap_or(sampling.seed);
    // Locality visits are interleaved across the positions of a batch (see `sampler`).
    let sampler =
        TrainSampler::new(grids, &sampling, dist.rank, dist.world_size)?.interleaved(spec.loader().batch_size as u64);
    Ok(JobKind::Train {
        sampler,
        epochs: Mutex::new(Vec::new()),
    })
}

/// Whether the machine has more cores to spare than `workers` keep busy (more than twice as many
/// cores as workers): then the misses of a window of local files are decoded on the fetch pool,
/// in parallel ([`FetchOptions::local_on_pool`]). With one spare core per worker or fewer the
/// hand-off costs what the parallel decode saves (2 cores, 1 worker: 0.82–1.2× for 128³ samples, 0.95–0.98×
/// for 40 classes, same run).
fn cores_to_spare(workers: usize) -> bool {
    std::thread::available_parallelism().is_ok_and(|cores| cores.get() > 2 * workers)
}

/// The pipeline settings of a loader: the spec's, overridden by the options.
fn pipeline_options(spec: &Spec, options: &LoaderOptions) -> PipelineOptions {
    PipelineOptions {
        workers: options.workers.unwrap_or(spec.loader().workers),
        prefetch: options.prefetch.unwrap_or(spec.loader().prefetch),
        on_error: spec.loader().on_error,
        max_attempts: if spec.loader().on_error == ErrorPolicy::Fail {
            1
        } else {
            MAX_ATTEMPTS
        },
        memory: options.ring_memory,
        // Pinning needs a CUDA runtime and only helps copies to a CUDA device.
        pin: matches!(options.ring_memory, RingMemory::External(_))
            && spec.loader().pin_memory
            && matches!(spec.loader().device, Device::Cuda(_)),
    }
}
