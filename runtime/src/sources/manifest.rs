//! `manifest.json`: what the training cache holds and what it was copied from.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::store::ChunkBox;
use crate::store::Level;

/// File name of the manifest inside the cache folder.
pub const MANIFEST: &str = "manifest.json";

/// Format version written and read.
pub(crate) const FORMAT: u32 = 1;

/// The cache's table of contents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// Rechunked copies of source levels.
    pub arrays: Vec<CopyEntry>,
    /// Packed binary classes.
    pub packs: Vec<PackEntry>,
}

/// The metadata of a source level a cached array was copied from; the cached array is used only
/// while the opened source still has exactly this metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceMeta {
    /// `location/path` of the source array.
    pub array: String,
    /// Its element type (`uint8`, …).
    pub dtype: String,
    /// Spatial shape, voxels, `z y x`.
    pub shape_vox: [u64; 3],
    /// Spatial decode unit, voxels.
    pub chunk_shape_vox: [u64; 3],
    /// Voxel size, nm.
    pub scale_nm: [f64; 3],
    /// Translation, nm.
    pub translation_nm: [f64; 3],
}

impl SourceMeta {
    /// The metadata of an opened level.
    pub fn of(level: &Level) -> SourceMeta {
        SourceMeta {
            array: level.array_location().to_owned(),
            dtype: level.dtype.name().to_owned(),
            shape_vox: level.shape_vox,
            chunk_shape_vox: level.chunk_shape_vox,
            scale_nm: level.scale_nm,
            translation_nm: level.translation_nm,
        }
    }

    /// What differs between this (as cached) and `now` (as opened), if anything.
    pub fn differences(&self, now: &SourceMeta) -> Option<String> {
        let mut d = Vec::new();
        if self.dtype != now.dtype {
            d.push(format!("dtype {} → {}", self.dtype, now.dtype));
        }
        if self.shape_vox != now.shape_vox {
            d.push(format!("shape {:?} → {:?}", self.shape_vox, now.shape_vox));
        }
        if self.chunk_shape_vox != now.chunk_shape_vox {
            d.push(format!("chunks {:?} → {:?}", self.chunk_shape_vox, now.chunk_shape_vox));
        }
        if self.scale_nm != now.scale_nm {
            d.push(format!("voxel size {:?} → {:?} nm", self.scale_nm, now.scale_nm));
        }
        if self.translation_nm != now.translation_nm {
            d.push(format!(
                "translation {:?} → {:?} nm",
                self.translation_nm, now.translation_nm
            ));
        }
        (!d.is_empty()).then(|| d.join(", "))
    }
}

/// A rechunked copy of one source level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyEntry {
    /// The source.
    pub source: SourceMeta,
    /// The cached array's path inside the cache folder.
    pub path: String,
    /// The cache's chunk shape, voxels.
    pub chunk_shape_vox: [u64; 3],
    /// Chunk boxes written (`[lo, hi)` chunk indices of the cache's grid).
    pub written: Vec<ChunkBox>,
}

/// Binary classes of one crop packed as bits of one array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackEntry {
    /// The packed array's path inside the cache folder.
    pub path: String,
    /// Element type of the packed array (`uint8` … `uint64`).
    pub dtype: String,
    /// The cache's chunk shape, voxels.
    pub chunk_shape_vox: [u64; 3],
    /// The packed classes.
    pub members: Vec<PackMember>,
}

/// One class of a pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackMember {
    /// The class's label level.
    pub source: SourceMeta,
    /// Its bit: 1 where the label is non-zero.
    pub bit: u32,
}

impl Manifest {
    /// Read `dir/manifest.json`.
    ///
    /// # Errors
    /// A message naming the file: missing, unreadable, not a manifest, or of another format.
    pub fn read(dir: &Path) -> Result<Manifest, String> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("{} does not exist", path.display())
            } else {
                format!("{}: {e}", path.display())
            }
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a training cache manifest: {e}", path.display()))?;
        if manifest.format != FORMAT {
            return Err(format!(
                "{}: format {} (this runtime reads format {FORMAT})",
                path.display(),
                manifest.format
            ));
        }
        Ok(manifest)
    }

    /// Write `dir/manifest.json` through a temporary file, so a reader sees the old manifest or
    /// the new one, never a part.
    ///
    /// # Errors
    /// The I/O error, naming the file.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let path = dir.join(MANIFEST);
        let tmp = dir.join(format!(".{MANIFEST}.{}", std::process::id()));
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
    }
}
