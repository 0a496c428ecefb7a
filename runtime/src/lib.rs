//! cellmap runtime.

mod augment;
mod rng;
mod sampler;

pub use augment::elastic::{ElasticDraw, ElasticField};
pub use augment::gather::{GatherError, copy_strided, gather, gather_labels_packed};
pub use augment::grid::{SampleGrid, StridedMap};
pub use augment::spatial::{SPATIAL_RNG_DRAWS, SpatialDraw, draw_spatial};
pub use augment::value::{ValueError, ValueScratch, apply_value_transforms};
pub use rng::{Rng, STREAM_CENTRE, STREAM_EPOCH, STREAM_SPATIAL, STREAM_VALUE, SampleKey};
pub use sampler::{
    DatasetGrid, DistError, DistInfo, EpochDraws, ForegroundIndex, SampleChoice, SamplerError,
    TrainSampler, VOXEL_WEIGHT_FLOOR, shard,
};
