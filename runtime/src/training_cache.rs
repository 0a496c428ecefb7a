//! The training cache: a local copy of what a spec's plan reads, laid out for sample windows.
//!
//! `cellmap-compile cache SPEC` ([`write`]) reads every array the plan reads once, from wherever
//! it lives (S3, HTTP, a shared disk, large zstd chunks), and writes into one local folder:
//!
//! - each raw level the plan reads, over the region its samples can reach (every dataset's box
//!   plus the input window's reach under the spec's spatial transforms), rechunked to
//!   [`CacheOptions::chunk`] with a fast codec ([`CacheCodec`]);
//! - every binary class of a crop packed as the bits of unsigned arrays (8 classes to a byte by
//!   default, up to 64 per array: [`CacheOptions::classes_per_pack`]; bit set where the label
//!   is non-zero), so that one decode serves 8 classes;
//! - labels that are not binary for this spec (no leading `binarize` with a threshold in
//!   `[0, 1)`, signed or float labels) rechunked whole;
//! - `manifest.json`, written last: for each cached array its source (location, dtype, shape,
//!   chunk shape, voxel size, translation) and the chunk boxes written.
//!
//! A loader whose spec names the folder (`loader.training_cache`) opens the data as always and
//! then swaps each level the manifest holds for its cached copy ([`TrainingCache::apply`]). The
//! geometry is the source's, so plans, windows and batches are the same voxel for voxel; an array
//! whose source metadata changed since the cache was written is read from the source (with a
//! warning), and a chunk outside the written boxes is read from the source and counted
//! ([`fallback_chunks`]). As with cached plans, voxel contents are not compared: rewrite the
//! cache (`cellmap-compile cache --force`) after relabelling a crop without changing its metadata.

mod arrays;
mod jobs;
mod options;
mod write;

pub use crate::sources::manifest::{CopyEntry, MANIFEST, Manifest, PackEntry, PackMember, SourceMeta};
pub use crate::sources::training_cache::{TrainingCache, fallback_chunks};
pub use jobs::input_reach_nm;
pub use options::{CacheCodec, CacheError, CacheOptions, CacheReport};
pub use write::{write, write_with_progress};
