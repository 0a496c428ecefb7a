//! Integration tests of cellmap-runtime.

mod pipeline;
