//! Integration tests of cellmap-runtime.

mod alloc;
mod common;
mod faults;
mod fixture;
mod fuzz;
#[cfg(feature = "http")]
mod http;
mod loader;
mod multiscale;
mod pipeline;
mod synth;
mod window;
