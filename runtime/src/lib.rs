//! cellmap-compile runtime: OME-NGFF access, geometry, the plan, sampling, augmentation and the
//! batch pipeline that feeds training.
//!
//! ```text
//! Spec ──plan()──► Planned { Plan, sources }      levels, boxes, centre grids, batch bytes
//!      ──Loader::open()──► persistent workers filling a preallocated ring of batches
//!      ──next_batch()──► Batch: [B, C, Z, Y, X] f32 arrays (+ torch tensors with `torch`)
//! ```
//!
//! Storage (`store`): [`Multiscale::open`] opens an OME-NGFF group, [`choose_level`] picks a
//! scale level, [`decode_chunk`] decodes a chunk and [`ChunkCache`] shares decoded chunks.
//! Kernels (`kernels`): copies into a [`StridedDest`], [`gather`], non-temporal stores, one
//! CPU-feature dispatch; neither knows the other. On top: [`read_window`] reads a voxel window
//! through the cache into a [`StridedDest`], the [`Reader`] reads whole samples, and
//! [`write_synthetic`] writes a small CellMap-layout dataset. The compute layer:
//! [`draw_spatial`], [`SampleGrid`] and [`apply_value_transforms`]. The samplers:
//! [`TrainSampler`] and validation tiles sharded with [`shard`].
//!
//! ```no_run
//! use cellmap_runtime::{Loader, LoaderOptions};
//! let spec = cellmap_schema::load(std::path::Path::new("spec.yaml")).expect("valid spec").spec;
//! let mut loader = Loader::open(spec, LoaderOptions::train().expect("rank"))?;
//! while let Some(batch) = loader.next_batch() {
//!     let batch = batch?;
//!     let raw = batch.array(0); // [B, 1, Z, Y, X]
//!     # let _ = raw;
//!     break;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use cellmap_schema;

mod alloc_count;
mod augment;
mod batch_array;
mod cpu;
mod geometry;
mod huge_pages;
mod kernels;
mod layout;
mod loader;
mod memory;
pub mod npy;
mod pipeline;
mod plan;
mod predict;
mod read;
mod rng;
mod sample;
mod sampler;
mod sources;
mod store;
mod synth;
#[cfg(feature = "torch")]
mod tensor;

pub use alloc_count::{CountingAllocator, allocations, cpu_seconds, peak_rss_bytes, rss_bytes, thread_count};
pub use augment::elastic::{ElasticDraw, ElasticField};
pub use augment::grid::{SampleGrid, StridedMap};
pub use augment::spatial::{SPATIAL_RNG_DRAWS, SpatialDraw, draw_spatial, draw_spatial_into};
pub use augment::value::{ValueError, ValueScratch, apply_value_transforms};
pub use batch_array::BatchArray;
pub use geometry::{Box3, crop_start_vox, voxel_centre_nm};
pub use huge_pages::HostBuffer;
pub use kernels::{
    DestError, GatherError, GatherParams, GatherSource, LabelParams, StridedDest, copy_strided, gather,
    gather_labels_packed,
};
pub use layout::{ArrayLayout, BatchLayout};
#[doc(hidden)]
pub use loader::FaultHook;
pub use loader::{
    Batch, Loader, LoaderError, LoaderJob, LoaderOptions, NextOwned, OwnedBatch, SampleFailure, check_compatible,
};
pub use memory::{MEMORY_LIMIT_ENV, MemoryAvailable, MemoryError, MemoryNeed, available_memory, check_fits};
pub use pipeline::{
    BatchData, BatchGuard, BatchLease, Cause, ExternalAllocator, Leased, Pipeline, PipelineError, PipelineOptions,
    PipelineStats, RingMemory, SampleError, SampleJob, SampleMeta, SampleOut,
};
pub use plan::{
    CentreGrid, ClassCount, ClassPlan, ClassWeight, DatasetPlan, Excluded, LevelPlan, Plan, PlanError, PlanOptions,
    PlanOrigin, Planned, SplitClassWeights, StaleReason, batch_layout, default_plan_cache_dir, plan, plan_cache_path,
    plan_cached,
};
pub use predict::{
    IdentityModel, PredictError, PredictInput, PredictPlan, PredictRun, PredictUnit, Tile, TileBatch, TileLoader,
    WriteHook, Writer, run_identity, run_model,
};
pub use read::{
    PackRequest, ReadError, WindowElem, WindowReport, WindowRequest, read_window, read_window_binarize,
    read_window_map, read_window_pack,
};
pub use rng::{Rng, STREAM_CENTRE, STREAM_EPOCH, STREAM_SPATIAL, STREAM_VALUE, SampleKey};
pub use sample::{
    CropError, ReadInfo, Reader, SampleAt, SampleDest, SampleReadError, SampleRequest, SampleScratch, read_level_crop,
    transformed_window_vox,
};
pub use sampler::{
    DatasetGrid, DistError, DistInfo, EpochDraws, ForegroundIndex, SampleChoice, SamplerError, TrainSampler,
    VOXEL_WEIGHT_FLOOR, shard,
};
pub use sources::{ClassSource, DatasetError, DatasetSources};
pub use store::{
    CacheStats, ChunkCache, ChunkData, ChunkError, ChunkKey, FetchOptions, FetchStats, Level, LevelChoice, Multiscale,
    OpenError, STORE_DELAY_ENV, SourceDtype, choose_level, count_nonzero, decode_chunk, store_delay_from_env,
};
pub use synth::{
    SynthCodec, SynthCrop, SynthError, SynthMany, SynthOptions, SynthReport, SynthSize, SynthVariant, write_synthetic,
};
#[cfg(feature = "torch")]
pub use tch;
#[cfg(feature = "torch")]
pub use tensor::{OwnedTorchBatch, TensorError, TorchBatch, TorchLoader, torch_device};
