//! Which arrays have their chunks decoded directly ([`super`]): the layout read from an array's
//! metadata document (`.zarray` or `zarr.json`), its chunk keys and its fill value.

use serde_json::Value;

use super::codec::Codec;
use crate::store::dtype::SourceDtype;

/// How chunk keys are spelled after the array's own path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyStyle {
    /// zarr v3's `default` encoding: `c` then the indices, `c/0/1/2` (or `c.0.1.2`).
    Default(char),
    /// zarr v2's keys (and v3's `v2` encoding): the indices alone, `0.1.2` (or `0/1/2`).
    V2(char),
}

/// What reading a chunk directly needs to know of its array.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Layout {
    pub(crate) codec: Codec,
    pub(crate) keys: KeyStyle,
    /// The fill value's little-endian bytes (an element's worth), what a missing chunk holds.
    pub(crate) fill: Vec<u8>,
}

impl Layout {
    /// The layout of an array of `dtype` with metadata `meta` (zarr `zarr_format`) when its
    /// chunks can be decoded directly: C order, little-endian (or one-byte) elements, no filter,
    /// at most one compressor among [`Codec`]'s, a regular grid and a numeric fill value.
    /// `None` for anything else (sharding, transposes, checksums, big-endian, other
    /// compressors), which zarrs decodes.
    pub(crate) fn detect(meta: &Value, zarr_format: u8, dtype: SourceDtype) -> Option<Layout> {
        if cfg!(target_endian = "big") {
            return None;
        }
        match zarr_format {
            2 => Self::detect_v2(meta, dtype),
            3 => Self::detect_v3(meta, dtype),
            _ => None,
        }
    }

    fn detect_v2(meta: &Value, dtype: SourceDtype) -> Option<Layout> {
        let little = match meta["dtype"].as_str()?.as_bytes().first()? {
            b'<' => true,
            b'|' => dtype.size_bytes() == 1,
            _ => false,
        };
        let no_filters = meta["filters"].is_null() || meta["filters"].as_array().is_some_and(Vec::is_empty);
        let c_order = meta["order"].is_null() || meta["order"] == "C";
        if !little || !no_filters || !c_order {
            return None;
        }
        let codec = match &meta["compressor"] {
            Value::Null => Codec::Raw,
            c => match c["id"].as_str()? {
                "blosc" => Codec::Blosc,
                "zstd" => Codec::Zstd,
                "gzip" => Codec::Gzip,
                "zlib" => Codec::Zlib,
                _ => return None,
            },
        };
        let separator = match meta["dimension_separator"].as_str() {
            None | Some(".") => '.',
            Some("/") => '/',
            Some(_) => return None,
        };
        Some(Layout {
            codec,
            keys: KeyStyle::V2(separator),
            fill: fill_bytes(&meta["fill_value"], dtype)?,
        })
    }

    fn detect_v3(meta: &Value, dtype: SourceDtype) -> Option<Layout> {
        let codec = codec_chain(meta["codecs"].as_array()?, dtype.size_bytes())?;
        Self::v3_around(meta, dtype, codec)
    }

    /// The layout of a zarr v3 array whose chunks (or a shard's inner chunks) are stored with
    /// `codec`: its chunk keys and fill value, when its grid is regular, no storage transformer
    /// applies, and both are spelled in a way this module reads.
    fn v3_around(meta: &Value, dtype: SourceDtype, codec: Codec) -> Option<Layout> {
        let transformers = &meta["storage_transformers"];
        if name(&meta["chunk_grid"]) != Some("regular") || transformers.as_array().is_some_and(|t| !t.is_empty()) {
            return None;
        }
        let keys = &meta["chunk_key_encoding"];
        let separator = |default: char| match keys["configuration"]["separator"].as_str() {
            None => Some(default),
            Some("/") => Some('/'),
            Some(".") => Some('.'),
            Some(_) => None,
        };
        let keys = match name(keys)? {
            "default" => KeyStyle::Default(separator('/')?),
            "v2" => KeyStyle::V2(separator('.')?),
            _ => return None,
        };
        Some(Layout {
            codec,
            keys,
            fill: fill_bytes(&meta["fill_value"], dtype)?,
        })
    }

    /// The layout of a sharded zarr v3 array (see [`Layout::detect`]): its keys are the shards',
    /// its codec and fill value its inner chunks'. With the shard index's layout.
    pub(crate) fn detect_sharded(meta: &Value, dtype: SourceDtype) -> Option<(Layout, ShardIndex)> {
        let [sharding] = meta["codecs"].as_array()?.as_slice() else {
            return None;
        };
        if cfg!(target_endian = "big") || name(sharding) != Some("sharding_indexed") {
            return None;
        }
        let config = &sharding["configuration"];
        let inner = codec_chain(config["codecs"].as_array()?, dtype.size_bytes())?;
        let crc32c = match config["index_codecs"].as_array()?.as_slice() {
            [bytes] if little_bytes(bytes, 8) => false,
            [bytes, crc] if little_bytes(bytes, 8) && name(crc) == Some("crc32c") => true,
            _ => return None,
        };
        let at_end = match config["index_location"].as_str() {
            None | Some("end") => true,
            Some("start") => false,
            Some(_) => return None,
        };
        Some((Self::v3_around(meta, dtype, inner)?, ShardIndex { crc32c, at_end }))
    }

    /// Append the key of the chunk at `indices` (relative to the array) to `out`.
    pub(crate) fn write_key(&self, out: &mut String, indices: &[u64]) {
        use std::fmt::Write as _;
        let separator = match self.keys {
            KeyStyle::Default(s) => {
                out.push('c');
                if indices.is_empty() {
                    return;
                }
                out.push(s);
                s
            }
            KeyStyle::V2(s) => {
                if indices.is_empty() {
                    out.push('0');
                    return;
                }
                s
            }
        };
        for (i, index) in indices.iter().enumerate() {
            if i > 0 {
                out.push(separator);
            }
            let _ = write!(out, "{index}");
        }
    }

    /// Fill `dst` (whole elements) with the fill value.
    pub(crate) fn fill(&self, dst: &mut [u8]) {
        if self.fill.iter().all(|&b| b == self.fill[0]) {
            dst.fill(self.fill[0]);
        } else {
            for element in dst.chunks_exact_mut(self.fill.len()) {
                element.copy_from_slice(&self.fill);
            }
        }
    }
}

/// How a shard's index is stored: little-endian `(offset, length)` pairs, one per inner chunk in C
/// order, then a CRC-32C of them when `crc32c`; at the shard's end or start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ShardIndex {
    pub(crate) crc32c: bool,
    pub(crate) at_end: bool,
}

/// A zarr v3 `bytes` codec that stores elements of `size` bytes little-endian.
fn little_bytes(c: &Value, size: usize) -> bool {
    name(c) == Some("bytes")
        && match c["configuration"]["endian"].as_str() {
            Some("little") => true,
            None => size == 1,
            Some(_) => false,
        }
}

/// The compressor of the zarr v3 codec chain `codecs` (elements of `size` bytes): `bytes`, then
/// at most one of blosc, zstd or gzip.
fn codec_chain(codecs: &[Value], size: usize) -> Option<Codec> {
    match codecs {
        [bytes] if little_bytes(bytes, size) => Some(Codec::Raw),
        [bytes, compressor] if little_bytes(bytes, size) => match name(compressor)? {
            "blosc" => Some(Codec::Blosc),
            "zstd" => Some(Codec::Zstd),
            "gzip" => Some(Codec::Gzip),
            _ => None,
        },
        _ => None,
    }
}

/// The name of a zarr v3 extension point: `{"name": …, "configuration": …}`, or the name alone.
fn name(v: &Value) -> Option<&str> {
    v.as_str().or_else(|| v["name"].as_str())
}

/// The little-endian bytes of the fill value `v` as a `dtype` element: a number that the type
/// holds exactly, or `"NaN"`, `"Infinity"`, `"-Infinity"` for floats. `None` otherwise (a `null`
/// v2 fill value, a hex float), which zarrs handles.
fn fill_bytes(v: &Value, dtype: SourceDtype) -> Option<Vec<u8>> {
    fn int<T: TryFrom<i64> + TryFrom<u64>>(v: &Value) -> Option<T> {
        match (v.as_i64(), v.as_u64()) {
            (Some(i), _) => T::try_from(i).ok(),
            (None, Some(u)) => T::try_from(u).ok(),
            _ => None,
        }
    }
    let float = || -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) if s == "NaN" => Some(f64::NAN),
            Value::String(s) if s == "Infinity" => Some(f64::INFINITY),
            Value::String(s) if s == "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        }
    };
    Some(match dtype {
        SourceDtype::U8 => int::<u8>(v)?.to_le_bytes().to_vec(),
        SourceDtype::U16 => int::<u16>(v)?.to_le_bytes().to_vec(),
        SourceDtype::U32 => int::<u32>(v)?.to_le_bytes().to_vec(),
        SourceDtype::U64 => int::<u64>(v)?.to_le_bytes().to_vec(),
        SourceDtype::I8 => int::<i8>(v)?.to_le_bytes().to_vec(),
        SourceDtype::I16 => int::<i16>(v)?.to_le_bytes().to_vec(),
        SourceDtype::I32 => int::<i32>(v)?.to_le_bytes().to_vec(),
        SourceDtype::I64 => int::<i64>(v)?.to_le_bytes().to_vec(),
        SourceDtype::F32 => (float()? as f32).to_le_bytes().to_vec(),
        SourceDtype::F64 => float()?.to_le_bytes().to_vec(),
    })
}
