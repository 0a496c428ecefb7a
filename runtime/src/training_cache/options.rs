//! The settings, report and errors of writing a training cache.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use cellmap_schema::{SliceAxis, Spec};

use crate::plan::PlanError;
use crate::store::SourceDtype;

/// The codec of the cached arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheCodec {
    /// No compression: the decode is a copy; the most disk.
    None,
    /// blosc-lz4 (level 1): near-copy decode speed, some compression (labels a lot). The default.
    #[default]
    Lz4,
    /// zstd (level 1): smaller files, slower decodes.
    Zstd,
}

impl CacheCodec {
    /// Every codec, in the order the command line lists them.
    pub const ALL: [CacheCodec; 3] = [CacheCodec::None, CacheCodec::Lz4, CacheCodec::Zstd];

    /// The codec called `name` ([`CacheCodec::name`]).
    pub fn from_name(name: &str) -> Option<CacheCodec> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            CacheCodec::None => "none",
            CacheCodec::Lz4 => "lz4",
            CacheCodec::Zstd => "zstd",
        }
    }

    /// The zarr v3 codec chain for elements of `dtype`.
    pub(super) fn codecs(self, dtype: SourceDtype) -> serde_json::Value {
        let bytes = json!({"name": "bytes", "configuration": {"endian": "little"}});
        match self {
            CacheCodec::None => json!([bytes]),
            CacheCodec::Lz4 => {
                let size = dtype.size_bytes();
                let shuffle = if size > 1 { "shuffle" } else { "noshuffle" };
                json!([bytes, {"name": "blosc", "configuration": {"cname": "lz4", "clevel": 1,
                    "shuffle": shuffle, "typesize": size, "blocksize": 0}}])
            }
            CacheCodec::Zstd => json!([bytes, {"name": "zstd", "configuration": {"level": 1, "checksum": false}}]),
        }
    }
}

/// How the cache is written.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheOptions {
    /// Chunk shape of the cached arrays, voxels `z y x` (clipped to each array's shape).
    pub chunk: [u64; 3],
    /// Their codec.
    pub codec: CacheCodec,
    /// Reach (nm per axis) around each dataset's box that raw levels are cached over; `None`:
    /// what the spec's input windows can reach under its spatial transforms ([`input_reach_nm`]).
    pub reach_nm: Option<[f64; 3]>,
    /// Arrays written at once (each also reads its blocks in parallel): reads of remote sources
    /// wait on the network. Default: the spec's `loader.fetch_concurrency`.
    pub threads: usize,
    /// Binary classes packed into one array, in `[1, 64]`: 8 (the default) packs them as the bits
    /// of a byte; more share one decode among more classes but make every class read wider
    /// elements (`uint16` … `uint64`).
    pub classes_per_pack: usize,
    /// Copy every array again, even those the cache holds from the same source metadata (after
    /// relabelling a crop in place: contents are not compared).
    pub force: bool,
    /// Remove the array folders the new manifest no longer names (arrays replaced by this run or
    /// earlier ones). Only when no loader reads the cache: one that opened the previous manifest
    /// reads the removed arrays.
    pub prune: bool,
}

impl CacheOptions {
    /// The defaults for `spec`: chunks of 32³ voxels for 3D samples, single planes of 128² for
    /// 2D samples sliced along one axis (a slice reads one plane per chunk), lz4.
    pub fn for_spec(spec: &Spec) -> CacheOptions {
        let chunk = match (spec.is_2d(), spec.sampling().slice_axis) {
            (true, SliceAxis::Z) => [1, 128, 128],
            (true, SliceAxis::Y) => [128, 1, 128],
            (true, SliceAxis::X) => [128, 128, 1],
            _ => [32, 32, 32],
        };
        CacheOptions {
            chunk,
            codec: CacheCodec::default(),
            reach_nm: None,
            threads: spec.loader().fetch_concurrency.max(1),
            classes_per_pack: 8,
            force: false,
            prune: false,
        }
    }
}

/// What [`super::write`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheReport {
    /// The cache folder.
    pub dir: PathBuf,
    /// Raw and label arrays copied now.
    pub copies_written: usize,
    /// Packs (binary classes of a crop) written now.
    pub packs_written: usize,
    /// Classes in the packs written now.
    pub classes_packed: usize,
    /// Copies and packs already in the cache, current, and kept.
    pub kept: usize,
    /// Chunks written.
    pub chunks_written: u64,
    /// Decoded source bytes read.
    pub source_bytes: u64,
    /// Bytes of the cache's files on disk after writing (and pruning).
    pub disk_bytes: u64,
    /// Array folders the manifest no longer names (replaced ones, left for loaders that opened
    /// the previous manifest); removed when [`CacheOptions::prune`] is set.
    pub unreferenced: Vec<PathBuf>,
    /// Wall time.
    pub elapsed: Duration,
}

/// What can stop [`super::write`].
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The spec cannot be planned.
    #[error(transparent)]
    Plan(#[from] Box<PlanError>),
    /// A file of the cache cannot be written.
    #[error("{path}: {message}")]
    Io {
        /// The file or folder.
        path: String,
        /// What happened.
        message: String,
    },
    /// A source array cannot be read, or a cached array written.
    #[error("caching `{source_array}` into {array}: {message}")]
    Copy {
        /// The source array.
        source_array: String,
        /// The cached array's folder.
        array: String,
        /// What happened.
        message: String,
    },
}

pub(super) fn io_err(path: &Path, e: &dyn std::fmt::Display) -> CacheError {
    CacheError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}
