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
    /// Per array: blosc-lz4 where it saves at least a tenth of the bytes (tried on the array's
    /// first block; packed classes always), else none. Raw EM rarely compresses with lz4, and an
    /// uncompressed chunk is read straight into the chunk's memory. The default.
    #[default]
    Auto,
    /// No compression: the decode is one file read into the chunk's memory; the most disk.
    None,
    /// blosc-lz4 (level 1): near-copy decode speed, some compression (labels a lot).
    Lz4,
    /// zstd (level 1): smaller files, slower decodes (read through zarrs).
    Zstd,
}

/// The share of its bytes lz4 must save on an array's first block for [`CacheCodec::Auto`] to
/// compress the array.
const AUTO_MIN_SAVING: f64 = 0.1;

impl CacheCodec {
    /// Every codec, in the order the command line lists them.
    pub const ALL: [CacheCodec; 4] = [CacheCodec::Auto, CacheCodec::None, CacheCodec::Lz4, CacheCodec::Zstd];

    /// The codec called `name` ([`CacheCodec::name`]).
    pub fn from_name(name: &str) -> Option<CacheCodec> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            CacheCodec::Auto => "auto",
            CacheCodec::None => "none",
            CacheCodec::Lz4 => "lz4",
            CacheCodec::Zstd => "zstd",
        }
    }

    /// The codec an array is written with: [`CacheCodec::Auto`] resolved against `sample`, the
    /// bytes of the array's first block as stored (elements of `typesize` bytes).
    pub(super) fn resolve(self, sample: &[u8], typesize: usize) -> CacheCodec {
        if self != CacheCodec::Auto {
            return self;
        }
        match lz4_size(sample, typesize) {
            Some(n) if (n as f64) <= (1.0 - AUTO_MIN_SAVING) * sample.len() as f64 => CacheCodec::Lz4,
            _ => CacheCodec::None,
        }
    }

    /// The zarr v3 codec chain for elements of `dtype` (`Auto` resolved: see
    /// [`CacheCodec::resolve`]; unresolved it writes lz4).
    pub(super) fn codecs(self, dtype: SourceDtype) -> serde_json::Value {
        let bytes = json!({"name": "bytes", "configuration": {"endian": "little"}});
        match self {
            CacheCodec::None => json!([bytes]),
            CacheCodec::Auto => CacheCodec::Lz4.codecs(dtype),
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

/// Bytes of `data` compressed as the lz4 codec writes it (blosc-lz4, level 1, shuffled for
/// elements wider than a byte); `None` when blosc refuses.
fn lz4_size(data: &[u8], typesize: usize) -> Option<usize> {
    if data.is_empty() {
        return None;
    }
    // blosc's worst case: the input plus its 16-byte header.
    let mut out = vec![0u8; data.len() + 16];
    let shuffle = i32::from(typesize > 1);
    // SAFETY: `data` is valid for `data.len()` bytes and `out` for `out.len()`, which the call
    // does not exceed; the compressor name is a NUL-terminated string.
    let n = unsafe {
        blosc_src::blosc_compress_ctx(
            1,
            shuffle,
            typesize.max(1),
            data.len(),
            data.as_ptr().cast(),
            out.as_mut_ptr().cast(),
            out.len(),
            c"lz4".as_ptr(),
            0,
            1,
        )
    };
    usize::try_from(n).ok().filter(|&n| n > 0)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `auto` picks lz4 for bytes it shrinks by a tenth (runs, shuffled small integers) and none
    /// for noise; the explicit codecs stay as they are.
    #[test]
    fn auto_resolves_by_what_lz4_saves() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..1 << 15)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let runs: Vec<u8> = (0..1 << 15).map(|i| u8::from(i % 1000 < 300)).collect();
        let small_u16: Vec<u8> = (0..1u16 << 14).flat_map(|i| (i % 300).to_le_bytes()).collect();
        assert_eq!(CacheCodec::Auto.resolve(&noise, 1), CacheCodec::None);
        assert_eq!(CacheCodec::Auto.resolve(&runs, 1), CacheCodec::Lz4);
        assert_eq!(CacheCodec::Auto.resolve(&small_u16, 2), CacheCodec::Lz4);
        assert_eq!(CacheCodec::Auto.resolve(&[], 1), CacheCodec::None);
        assert_eq!(CacheCodec::Zstd.resolve(&noise, 1), CacheCodec::Zstd);
        assert_eq!(CacheCodec::from_name("auto"), Some(CacheCodec::Auto));
    }
}
