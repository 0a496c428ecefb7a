//! The cellmap-compile spec model.

mod spec;

pub use spec::*;
