//! cellmap-compile runtime: OME-NGFF access, geometry, the plan, sampling, augmentation and the
//! batch pipeline that feeds training.
//!
//! ```text
//! Spec ──plan()──► Planned { Plan, sources }      levels, boxes, centre grids, batch bytes
//!      ──Loader::open()──► persistent workers filling a preallocated ring of batches
//!      ──next_batch()──► Batch: [B, C, Z, Y, X] f32 arrays (+ torch tensors with `torch`)
//! ```
//!
//! Storage ([`store`]): [`store::Multiscale::open`] opens an OME-NGFF group,
//! [`store::choose_level`] picks a scale level, [`store::decode_chunk`] decodes a chunk and
//! [`store::ChunkCache`] shares decoded chunks. Kernels ([`kernels`]): copies into a
//! [`kernels::StridedDest`], [`kernels::gather`], non-temporal stores; the kernels know nothing
//! of storage, and storage uses one of them (narrowing a decoded chunk).
//! On top: [`read::read_window`] reads a voxel window through the cache, the [`sample::Reader`]
//! reads whole samples, and [`synth::write_synthetic`] writes a CellMap-layout dataset. The
//! compute layer: [`augment::draw_spatial`], [`augment::SampleGrid`] and
//! [`augment::apply_value_transforms`]. The samplers: [`sampler::TrainSampler`] and validation
//! tiles sharded with [`sampler::shard`]. The crate root holds what a training program uses; see
//! `docs/architecture.md` for the map.
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
/// The `f16` and `bf16` element types of `float16` and `bfloat16` batch arrays.
pub use half;

mod batch_array;
mod cpu;
pub mod dtype;
mod layout;
mod loader;
mod parallel;
#[cfg(feature = "torch")]
mod tensor;

pub mod augment;
pub mod diagnostics;
pub mod geometry;
pub mod kernels;
pub mod memory;
pub mod npy;
pub mod pipeline;
pub mod plan;
pub mod predict;
pub mod read;
pub mod rng;
pub mod sample;
pub mod sampler;
pub mod slicing;
pub mod sources;
pub mod store;
pub mod synth;
pub mod training_cache;

// The root: what a training program, a generated crate and the Python package use. Everything
// else lives in the module named after its concept (`store`, `read`, `kernels`, `augment`,
// `sample`, `sampler`, `pipeline`, `predict`, ...; see docs/architecture.md).
pub use batch_array::{BatchArray, BatchArray2d};
pub use geometry::Box3;
pub use layout::{ArrayLayout, BatchLayout};
#[doc(hidden)]
pub use loader::FaultHook;
pub use loader::{
    Batch, Loader, LoaderError, LoaderJob, LoaderOptions, NextOwned, OwnedBatch, REMOTE_AHEAD_PER_FETCH, SampleFailure,
    check_compatible,
};
pub use pipeline::{BatchData, PipelineError, SampleMeta};
pub use plan::{
    CentreGrid, ClassCount, ClassPlan, ClassWeight, DatasetPlan, Excluded, LevelPlan, Plan, PlanError, PlanOptions,
    PlanOrigin, Planned, SplitClassWeights, StaleReason, batch_layout, plan, plan_cached,
};
pub use sampler::DistInfo;
#[cfg(feature = "torch")]
pub use tch;
#[cfg(feature = "torch")]
pub use tensor::{OwnedTorchBatch, TensorError, TorchBatch, TorchLoader, torch_device};
