//! Integration tests of cellmap-runtime.

mod alloc;
mod common;
mod fixture;
mod loader;
mod multiscale;
mod pipeline;
mod synth;
mod window;
