//! Integration tests of cellmap-runtime.

mod alloc;
mod common;
mod fixture;
#[cfg(feature = "http")]
mod http;
mod loader;
mod multiscale;
mod pipeline;
mod synth;
#[cfg(feature = "torch")]
mod torch;
mod window;
