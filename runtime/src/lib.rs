//! cellmap runtime.
//!
//! Storage half: [`Multiscale::open`] opens an OME-NGFF group, [`choose_level`] picks a scale
//! level, [`read_window`] reads a voxel window into a strided buffer (optionally through a shared
//! [`ChunkCache`]), and [`write_synthetic`] writes a small CellMap-layout dataset.

mod chunk_cache;
mod geometry;
mod multiscale;
mod store;
mod synth;
mod window;

pub use chunk_cache::{CacheStats, ChunkCache, ChunkData, ChunkKey};
pub use geometry::{Box3, crop_start_vox, voxel_centre_nm};
pub use multiscale::{Level, LevelChoice, Multiscale, OpenError, SourceDtype, choose_level};
pub use synth::{
    SynthCrop, SynthError, SynthOptions, SynthReport, SynthSize, SynthVariant, write_synthetic,
};
pub use window::{ReadError, WindowElem, WindowReport, count_nonzero, decode_chunk, read_window};
