//! How a loader is opened ([`LoaderOptions`]), why it may refuse ([`LoaderError`]), and the
//! compatibility check of a spec with code compiled for another.

use std::sync::Arc;

use cellmap_schema::{Spec, Split};

use crate::memory::MemoryError;
use crate::pipeline::RingMemory;
use crate::plan::PlanError;
use crate::sampler::{DistError, DistInfo, SamplerError};
use crate::store::ChunkCache;

/// Threads fetching ahead per fetch thread, for remote data ([`LoaderOptions::ahead_concurrency`]):
/// 16 fetch threads × 16 keep 256 requests in flight, which at 50 ms a request is about 5,000
/// requests per second, some 400 samples/s of a dozen chunk requests each.
pub const REMOTE_AHEAD_PER_FETCH: usize = 16;

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
    /// Disable the chunk cache and its compressed tier (cold reads, for benchmarks).
    pub no_cache: bool,
    /// Override the spec's `loader.compressed_cache_bytes` (the compressed tier's budget; 0 =
    /// off, for every store). A shared cache keeps its own tier.
    pub compressed_cache_bytes: Option<u64>,
    /// Override the spec's `loader.fetch_concurrency` (chunks one read fetches at once). A
    /// shared cache keeps the fetch pool of the first loader that used it.
    pub fetch_concurrency: Option<usize>,
    /// Override the spec's `loader.fetch_ahead` (training batches fetched ahead; 0 = off).
    pub fetch_ahead: Option<usize>,
    /// Whether a window's misses of local files decoded directly go to the fetch pool, several
    /// at once, rather than being decoded one after the other by the worker that needs them
    /// ([`crate::store::FetchOptions::local_on_pool`]). Default: when the machine has more
    /// than twice as many cores as the loader has workers (cores to spare for the pool).
    pub local_on_pool: Option<bool>,
    /// Chunks fetched ahead at once ([`crate::store::FetchOptions::ahead_concurrency`]). Default:
    /// [`REMOTE_AHEAD_PER_FETCH`] × the fetch concurrency for remote data (and under the
    /// benchmarking delay), whose requests mostly wait; the fetch concurrency for local files,
    /// whose fetches are decodes.
    pub ahead_concurrency: Option<usize>,
    /// A fixed delay before every chunk request, to measure how the loader hides the latency of
    /// a remote store with a local one (a benchmarking aid). Default: the
    /// [`crate::store::STORE_DELAY_ENV`] environment variable (milliseconds), else none.
    pub store_delay: Option<std::time::Duration>,
    /// Where the ring's memory comes from (the torch interop sets libtorch tensors).
    pub ring_memory: RingMemory,
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
        let dist = DistInfo::from_env()?;
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
            compressed_cache_bytes: None,
            fetch_concurrency: None,
            fetch_ahead: None,
            local_on_pool: None,
            ahead_concurrency: None,
            store_delay: None,
            ring_memory: RingMemory::Host,
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
    Sampler(#[from] SamplerError),
    /// The foreground centres of a dataset could not be read.
    #[error("{origin}: foreground of `{class}`: {source}")]
    Foreground {
        /// Where the dataset is declared.
        origin: String,
        /// The biased class.
        class: String,
        /// What failed.
        #[source]
        source: Box<crate::plan::ForegroundError>,
    },
    /// RANK / WORLD_SIZE are malformed.
    #[error("distributed settings: {0}")]
    Dist(#[from] DistError),
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
    if expected.classes() != actual.classes() {
        return Err(LoaderError::Incompatible(format!(
            "classes {:?} instead of {:?}",
            actual.classes(),
            expected.classes()
        )));
    }
    let shape = |a: &[cellmap_schema::ArraySpec]| -> Vec<(String, [usize; 3], [f64; 3])> {
        a.iter()
            .map(|a| (a.name.clone(), a.shape_vox, a.voxel_size_nm))
            .collect()
    };
    for (kind, e, a) in [
        ("inputs", &expected.inputs(), &actual.inputs()),
        ("targets", &expected.targets(), &actual.targets()),
    ] {
        if shape(e) != shape(a) {
            return Err(LoaderError::Incompatible(format!(
                "{kind} {:?} instead of {:?}",
                shape(a),
                shape(e)
            )));
        }
    }
    if expected.loader().batch_size != actual.loader().batch_size {
        return Err(LoaderError::Incompatible(format!(
            "batch size {} instead of {}",
            actual.loader().batch_size,
            expected.loader().batch_size
        )));
    }
    Ok(())
}
