//! Storage: where data lives and how it is decoded, with no kernels in it.
//!
//! - [`location`]: a location string (a path, an `s3://` or an `http(s)://` URL; the URLs with
//!   the default `remote` feature) opened as a zarrs storage, one file per backend, with the
//!   remote settings of [`RemoteOptions`];
//! - [`multiscale`]: OME-NGFF metadata, the scale levels and their geometry ([`Multiscale`],
//!   [`Level`], [`choose_level`]);
//! - [`chunk`]: chunk keys, decoding ([`decode_chunk`]), fetching through the cache, and
//!   [`count_nonzero`];
//! - [`cache`]: the decoded-chunk cache shared by every reader ([`ChunkCache`], [`ChunkData`]);
//! - [`encoded`]: its compressed tier, encoded chunk bytes kept as the store returned them and
//!   read on a decoded miss before the store is asked ([`CompressedOptions`], [`CompressedStats`]);
//! - [`fetch`]: the bounded pools that fetch several missing chunks at once and ahead, the
//!   benchmarking delay per request, and the fetch counters ([`FetchOptions`], [`FetchStats`]);
//! - [`error`]: [`OpenError`] (naming the location) and [`ChunkError`] (naming the array path and
//!   the chunk's store key).
//!
//! Copying decoded chunks into crops is the business of [`crate::read`] and [`crate::kernels`];
//! a decoded chunk is narrowed with [`crate::kernels`]' narrowing pass.

pub(crate) mod ahead;
pub(crate) mod budget;
pub(crate) mod cache;
pub(crate) mod cached;
pub(crate) mod chunk;
pub(crate) mod chunk_data;
pub(crate) mod direct;
pub(crate) mod dtype;
pub(crate) mod encoded;
pub(crate) mod error;
pub(crate) mod fetch;
pub(crate) mod location;
pub(crate) mod multiscale;
mod ngff;
pub(crate) mod pool;

pub use cache::{CacheStats, ChunkCache, ChunkKey};
pub use chunk::{count_nonzero, decode_chunk};
pub use chunk_data::ChunkData;
pub use encoded::{CompressedOptions, CompressedStats, DEFAULT_COMPRESSED_CACHE_BYTES, ENTRY_OVERHEAD_BYTES};
pub use error::{ChunkError, FetchError, OpenError, RemoteErrorKind};
pub use fetch::{FetchOptions, FetchStats, STORE_DELAY_ENV, store_delay_from_env};
pub use location::{RemoteConfigError, RemoteOptions, S3Credentials};
pub use multiscale::{ChunkBox, Level, LevelChoice, Multiscale, SourceDtype, choose_level};

/// Whether `location` is a URL (`scheme://…`) rather than a filesystem path.
pub fn is_url(location: &str) -> bool {
    location
        .split_once("://")
        .is_some_and(|(scheme, _)| !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric()))
}
