//! The training cache's on-disk layout, as far as reading it directly needs: which arrays have
//! their chunk files read by [`super::local`] rather than through zarrs.

use std::path::Path;

use serde_json::Value;

/// How a chunk file is encoded after the little-endian `bytes` codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    /// Stored as is.
    Raw,
    /// One blosc frame (any of its compressors: the frame names its own).
    Blosc,
}

/// A training-cache array whose chunk files are read directly.
#[derive(Clone, Debug)]
pub(crate) struct LocalChunks {
    /// The array's folder.
    pub(crate) folder: String,
    pub(crate) codec: Codec,
}

impl LocalChunks {
    /// The direct reader of the array in `folder` with metadata `meta` (its `zarr.json`), when
    /// its layout is the training cache's (see the module docs); `None` otherwise.
    pub(crate) fn detect(folder: &Path, meta: &Value) -> Option<LocalChunks> {
        if cfg!(target_endian = "big") || meta["zarr_format"] != 3 || meta["shape"].as_array()?.len() != 3 {
            return None;
        }
        let keys = &meta["chunk_key_encoding"];
        let default_keys = keys["name"] == "default"
            && (keys["configuration"]["separator"] == "/" || keys["configuration"]["separator"].is_null());
        let fill_zero = meta["fill_value"].as_f64() == Some(0.0);
        if !default_keys || !fill_zero || meta["chunk_grid"]["name"] != "regular" {
            return None;
        }
        let codecs = meta["codecs"].as_array()?;
        let little = |c: &Value| {
            c["name"] == "bytes" && (c["configuration"]["endian"] == "little" || c["configuration"]["endian"].is_null())
        };
        let codec = match codecs.as_slice() {
            [bytes] if little(bytes) => Codec::Raw,
            [bytes, blosc] if little(bytes) && blosc["name"] == "blosc" => Codec::Blosc,
            _ => return None,
        };
        Some(LocalChunks {
            folder: folder.to_str()?.to_owned(),
            codec,
        })
    }
}
