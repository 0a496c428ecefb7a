//! Integration tests of cellmap-runtime.

mod augment;
mod sampler;
