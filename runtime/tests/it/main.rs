//! Integration tests of cellmap-runtime.

mod alloc;
mod common;
mod fixture;
#[cfg(feature = "http")]
mod http;
mod multiscale;
mod synth;
mod window;
