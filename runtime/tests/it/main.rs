//! Integration tests of cellmap-runtime.

mod alloc;
mod augment;
mod class_weights;
mod common;
mod compressed;
mod direct;
mod exclusion;
mod faults;
mod fetch;
mod fixture;
mod fuzz;
#[cfg(feature = "remote")]
mod http;
mod intensity;
mod loader;
mod memory;
mod multiscale;
mod pipeline;
mod predict;
#[cfg(feature = "remote")]
mod s3;
mod sampler;
mod schema_enums;
mod slicing;
mod split_values;
mod synth;
#[cfg(feature = "torch")]
mod torch;
mod training_cache;
mod window;
