//! cellmap-compile runtime: OME-NGFF access, geometry, sampling, augmentation and the batch pipeline.

pub mod pipeline;

pub use pipeline::{
    ArrayLayout, BatchGuard, BatchLayout, Pipeline, PipelineError, PipelineOptions, PipelineStats, SampleError,
    SampleJob, SampleMeta, SampleOut,
};
