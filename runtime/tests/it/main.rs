//! Integration tests of cellmap-runtime.

mod alloc;
mod augment;
mod class_weights;
mod common;
mod exclusion;
mod faults;
mod fetch;
mod fixture;
mod fuzz;
#[cfg(feature = "http")]
mod http;
mod loader;
mod memory;
mod multiscale;
mod pipeline;
mod predict;
mod sampler;
mod split_values;
mod synth;
#[cfg(feature = "torch")]
mod torch;
mod window;
