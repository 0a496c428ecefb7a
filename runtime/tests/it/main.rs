//! Integration tests of cellmap-runtime.

mod common;
mod fixture;
mod multiscale;
mod synth;
mod window;
