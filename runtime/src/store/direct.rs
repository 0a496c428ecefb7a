//! Chunks decoded directly: the stored bytes of a chunk (a file read, the compressed tier's
//! copy, or one request to a remote store) decompressed straight into the chunk's memory, which
//! comes from the chunk pool ([`super::pool`]). No zarrs codec pipeline runs, so a chunk decoded
//! on a cache miss costs no allocation once the pool and the per-thread buffers are warm.
//!
//! It applies to the arrays whose layout [`layout::Layout::detect`] recognises, which is what
//! OME-NGFF EM data and labels are written as: zarr v2 or v3, C order, little-endian or
//! one-byte elements, no filter, stored as is or with one of blosc, zstd or gzip (and numcodecs'
//! zlib, for a build of zarrs that opens such arrays), a numeric fill value. The layout is
//! worked out on a level's first decode ([`super::multiscale`]), and the chunk key is checked
//! against zarrs' own then, so a key encoding this module spells differently is left to zarrs.
//! A sharded zarr v3 array whose inner chunks are stored that way has its shard indexes read once
//! and kept (checked against their CRC-32C), and each inner chunk read as one byte range
//! ([`shard`]). Transposes, chunk checksums, big-endian elements and other compressors are
//! decoded by zarrs as before.
//!
//! Blosc frames whose blocks are zstd streams are walked here ([`blosc`]) and each stream
//! decoded with the thread's zstd context: c-blosc makes a context per block, which runs
//! `cpuid`, slow on a virtual machine. A chunk decoded for one read alone (nobody keeps it:
//! [`Part`]) has only the blocks decoded that hold the bytes the read needs.
//!
//! Reads keep every rule of the zarrs path: requests through a chunk cache's tier are delayed
//! and counted the same way, and the same store key is what the compressed tier keeps, so a
//! chunk fetched ahead as stored bytes is found by the read that decodes it.

mod blosc;
mod codec;
mod layout;
mod shard;

use std::cell::{Cell, RefCell};
use std::io::{Read, Seek};
use std::ops::Range;

use serde_json::Value;
use zarrs::array::{Array, ArrayShardedExt};
use zarrs::storage::byte_range::ByteRange;
use zarrs::storage::{MaybeBytes, ReadableStorageTraits, StorageError, StoreKey};

use super::chunk_data::ChunkData;
use super::dtype::SourceDtype;
use super::encoded::TieredStorage;
use super::pool;
use layout::Layout;

/// An array whose chunks are decoded directly (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct DirectChunks {
    layout: Layout,
    /// Store keys of the array's chunks start with this (`raw/s0/`; empty at the store's root).
    prefix: String,
    /// The store's folder, when it is local files: a chunk is one file read.
    root: Option<String>,
    /// Elements of one chunk (an inner chunk of a sharded array), every axis (a channel axis
    /// included).
    elements: usize,
    /// The shards of a sharded array, whose keys [`DirectChunks::prefix`] and the layout spell.
    shards: Option<shard::Shards>,
}

/// The part of a chunk that one read needs, for a chunk decoded for that read alone (nobody
/// keeps it): the byte range of its decoded elements. A frame whose blocks can be decoded one
/// by one (blosc with zstd blocks, see [`blosc`]) has only the blocks that overlap the range
/// decoded; the rest of the chunk's memory is left as it was. Other frames decode whole.
pub(crate) struct Part {
    /// Bytes of the decoded chunk the read needs.
    pub(crate) bytes: Range<usize>,
    /// Bytes decoded, set by the read.
    pub(crate) decoded: Cell<usize>,
}

/// A chunk that could not be read: its store key, and why.
pub(crate) struct DirectError {
    pub(crate) key: String,
    pub(crate) failure: Failure,
}

/// Why a chunk's bytes could not be had or decoded.
pub(crate) enum Failure {
    /// The store failed (a remote request).
    Store(StorageError),
    /// A file could not be read, or its bytes did not decode to the chunk.
    Decode(String),
}

thread_local! {
    /// The chunk's store key, then its file path: built per read without allocating.
    static KEY: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
    /// A chunk file's bytes.
    static FILE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl DirectChunks {
    /// The direct reader of `array` (of `dtype`, metadata document `meta` in zarr
    /// `zarr_format`, in the store at `location`), or `None` when its layout is not one this
    /// module decodes (see the module docs).
    pub(crate) fn detect(
        location: &str,
        array: &Array<dyn ReadableStorageTraits>,
        meta: &Value,
        zarr_format: u8,
        dtype: SourceDtype,
    ) -> Option<DirectChunks> {
        let (layout, index) = match Layout::detect(meta, zarr_format, dtype) {
            Some(layout) => (layout, None),
            None if zarr_format == 3 => {
                let (layout, index) = Layout::detect_sharded(meta, dtype)?;
                (layout, Some(index))
            }
            None => return None,
        };
        let mut prefix = array.path().as_str().trim_matches('/').to_owned();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        // The key of a chunk away from the origin on every axis, spelled both ways.
        let indices: Vec<u64> = (1..=array.dimensionality() as u64).collect();
        let mut key = prefix.clone();
        layout.write_key(&mut key, &indices);
        if array.chunk_key(&indices).as_str() != key {
            return None;
        }
        let shape: Vec<u64> = array
            .chunk_shape(&vec![0; array.dimensionality()])
            .ok()?
            .iter()
            .map(|c| c.get())
            .collect();
        let (unit, shards) = match index {
            None => (shape, None),
            Some(index) => {
                let inner: Vec<u64> = array.effective_subchunk_shape()?.iter().map(|c| c.get()).collect();
                if inner.len() != shape.len() || shape.iter().zip(&inner).any(|(s, i)| s % i != 0) {
                    return None;
                }
                let per_shard = shape.iter().zip(&inner).map(|(s, i)| s / i).collect();
                (inner, Some(shard::Shards::new(per_shard, index)))
            }
        };
        let elements = unit
            .iter()
            .try_fold(1usize, |n, &c| n.checked_mul(usize::try_from(c).ok()?))?;
        Some(DirectChunks {
            layout,
            prefix,
            root: (!super::is_url(location)).then(|| location.to_owned()),
            elements,
            shards,
        })
    }

    /// Chunk `chunk` (spatial indices; a leading channel index 0 when `has_channel_axis`) as
    /// `dtype` elements, read through `tiered` (a chunk cache's tier over the level's store) or,
    /// without one, from `own` (the level's array); a chunk never written holds the fill value.
    /// With `part`, only the bytes it names are sure to be decoded ([`Part`]).
    ///
    /// # Errors
    /// [`Failure::Store`] for a failed request to the store, [`Failure::Decode`] for a file that
    /// cannot be read or bytes that do not decode to the chunk's size; with the chunk's key.
    pub(crate) fn read(
        &self,
        (dtype, has_channel_axis): (SourceDtype, bool),
        own: &Array<dyn ReadableStorageTraits>,
        tiered: Option<&TieredStorage>,
        chunk: [u64; 3],
        part: Option<&Part>,
    ) -> Result<ChunkData, DirectError> {
        KEY.with_borrow_mut(|(key, path)| {
            if let Some(shards) = &self.shards {
                return self
                    .read_inner(
                        shards,
                        (dtype, has_channel_axis),
                        (own, tiered),
                        chunk,
                        (key, path),
                        part,
                    )
                    .map_err(|failure| DirectError {
                        key: key.clone(),
                        failure,
                    });
            }
            self.write_chunk_key(key, has_channel_axis, chunk);
            self.read_key(dtype, (own, tiered), (key, path), None, part)
                .map_err(|failure| DirectError {
                    key: key.clone(),
                    failure,
                })
        })
    }

    /// `f` of the store key of chunk `chunk` (as [`DirectChunks::read`] spells it), built
    /// without allocating.
    pub(crate) fn with_key<R>(&self, has_channel_axis: bool, chunk: [u64; 3], f: impl FnOnce(&str) -> R) -> R {
        KEY.with_borrow_mut(|(key, _)| {
            self.write_chunk_key(key, has_channel_axis, chunk);
            f(key)
        })
    }

    /// Make `key` the store key of chunk `chunk`.
    fn write_chunk_key(&self, key: &mut String, has_channel_axis: bool, chunk: [u64; 3]) {
        let full = [0, chunk[0], chunk[1], chunk[2]];
        self.write_key_at(key, if has_channel_axis { &full } else { &full[1..] });
    }

    /// Make `key` the store key of the stored value (a chunk, or a shard) at `indices`, every
    /// axis.
    fn write_key_at(&self, key: &mut String, indices: &[u64]) {
        key.clear();
        key.push_str(&self.prefix);
        self.layout.write_key(key, indices);
    }

    /// The chunk stored at `key` (at `range` of its value, an inner chunk of a shard: offset and
    /// length), decoded: from the tier's copy, else one read of the store behind it (a file
    /// read, unless the tier keeps this level's values, or one request), counted by the tier.
    fn read_key(
        &self,
        dtype: SourceDtype,
        (own, tiered): (&Array<dyn ReadableStorageTraits>, Option<&TieredStorage>),
        (key, path): (&str, &mut String),
        range: Option<(u64, usize)>,
        part: Option<&Part>,
    ) -> Result<ChunkData, Failure> {
        let byte_range = range.map(|(offset, length)| ByteRange::FromStart(offset, Some(length as u64)));
        if let Some(t) = tiered {
            if let Some(held) = t.held(key, byte_range) {
                return self.decode(dtype, held.as_deref(), part).map_err(Failure::Decode);
            }
            t.start_request();
        }
        let keep = tiered.is_some_and(|t| t.keep);
        if let (Some(root), false) = (&self.root, keep) {
            file_path(path, root, key);
            let (data, len) = match range {
                None => self.read_file(dtype, path, part)?,
                Some((offset, length)) => self.read_file_range(dtype, path, (offset, length), part)?,
            };
            if let Some(t) = tiered {
                t.received_len(len);
            }
            return Ok(data);
        }
        let mut got = self.get(own, tiered, key, path, byte_range)?;
        if let Some(t) = tiered {
            got = t.received(key, byte_range, got);
        }
        match (got, range) {
            (None, Some(_)) => Err(Failure::Decode("the shard is gone".to_owned())),
            (got, _) => self.decode(dtype, got.as_deref(), part).map_err(Failure::Decode),
        }
    }

    /// Inner chunk `chunk` of a sharded array: its shard's key in `key`, its place from the
    /// shard's index, then its bytes (one range) decoded.
    fn read_inner(
        &self,
        shards: &shard::Shards,
        (dtype, has_channel_axis): (SourceDtype, bool),
        (own, tiered): (&Array<dyn ReadableStorageTraits>, Option<&TieredStorage>),
        chunk: [u64; 3],
        (key, path): (&mut String, &mut String),
        part: Option<&Part>,
    ) -> Result<ChunkData, Failure> {
        let full = [0, chunk[0], chunk[1], chunk[2]];
        let full = if has_channel_axis { &full[..] } else { &full[1..] };
        let mut outer = [0u64; 4];
        let mut inner = [0u64; 4];
        for (a, (&c, &n)) in full.iter().zip(shards.per_shard()).enumerate() {
            outer[a] = c / n;
            inner[a] = c % n;
        }
        let dims = full.len();
        self.write_key_at(key, &outer[..dims]);
        match shards.place(key, &inner[..dims], own, tiered)? {
            shard::Place::Missing => self.decode(dtype, None, part).map_err(Failure::Decode),
            shard::Place::At { offset, length } => {
                let length = usize::try_from(length).map_err(|e| Failure::Decode(e.to_string()))?;
                self.read_key(dtype, (own, tiered), (key, path), Some((offset, length)), part)
            }
        }
    }

    /// The stored value at `key` (`range` of it, or whole): read from the store behind the tier
    /// (or the array's own).
    fn get(
        &self,
        own: &Array<dyn ReadableStorageTraits>,
        tiered: Option<&TieredStorage>,
        key: &str,
        path: &mut String,
        range: Option<ByteRange>,
    ) -> Result<MaybeBytes, Failure> {
        if let (Some(root), None) = (&self.root, range) {
            // Kept in the tier: the bytes are owned.
            file_path(path, root, key);
            return match std::fs::read(path.as_str()) {
                Ok(bytes) => Ok(Some(bytes.into())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Failure::Decode(e.to_string())),
            };
        }
        let store_key = StoreKey::new(key).map_err(|e| Failure::Decode(e.to_string()))?;
        match (tiered, range) {
            (Some(t), None) => t.inner.get(&store_key),
            (Some(t), Some(range)) => t.inner.get_partial(&store_key, range),
            (None, None) => own.storage().get(&store_key),
            (None, Some(range)) => own.storage().get_partial(&store_key, range),
        }
        .map_err(Failure::Store)
    }

    /// Inner chunk bytes `offset .. offset + length` of the shard file at `path`, decoded, and
    /// their length.
    fn read_file_range(
        &self,
        dtype: SourceDtype,
        path: &str,
        (offset, length): (u64, usize),
        part: Option<&Part>,
    ) -> Result<(ChunkData, usize), Failure> {
        FILE.with_borrow_mut(|bytes| {
            bytes.clear();
            bytes.resize(length, 0);
            if !shard::read_at(path, offset, bytes)? {
                return Err(Failure::Decode("the shard's file is gone".to_owned()));
            }
            let data = self.decode(dtype, Some(bytes), part).map_err(Failure::Decode)?;
            Ok((data, length))
        })
    }

    /// The chunk in the file at `path`, and the file's length: a missing file holds the fill
    /// value. A file stored as is is read straight into the chunk's memory.
    fn read_file(&self, dtype: SourceDtype, path: &str, part: Option<&Part>) -> Result<(ChunkData, usize), Failure> {
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((self.decode(dtype, None, part).map_err(Failure::Decode)?, 0));
            }
            Err(e) => return Err(Failure::Decode(e.to_string())),
        };
        if self.layout.codec == codec::Codec::Raw {
            let mut len = 0;
            let data = pool::filled(dtype, self.elements, |dst| {
                len = dst.len();
                let short = |e: std::io::Error| format!("{e}: the file holds fewer bytes than the chunk's {len}");
                f.read_exact(dst).map_err(short)?;
                match f.read(&mut [0u8; 1]) {
                    Ok(0) => {
                        if let Some(part) = part {
                            part.decoded.set(len);
                        }
                        Ok(())
                    }
                    Ok(_) => Err(format!("the file holds more bytes than the chunk's {len}")),
                    Err(e) => Err(e.to_string()),
                }
            })
            .map_err(Failure::Decode)?;
            return Ok((data, len));
        }
        FILE.with_borrow_mut(|bytes| {
            if let (Some(part), codec::Codec::Blosc) = (part, self.layout.codec) {
                if let Some(read) = self.read_blosc_part(dtype, &mut f, bytes, part)? {
                    return Ok(read);
                }
                f.rewind().map_err(|e| Failure::Decode(e.to_string()))?;
            }
            bytes.clear();
            f.read_to_end(bytes).map_err(|e| Failure::Decode(e.to_string()))?;
            let data = self.decode(dtype, Some(bytes), part).map_err(Failure::Decode)?;
            Ok((data, bytes.len()))
        })
    }

    /// The chunk in the blosc file `f`, of which only `part` is needed: its header and block
    /// offsets read, then only the blocks that hold `part` (into `bytes`, at their place in the
    /// frame), decoded; and the bytes read. `None` (nothing decoded) for a frame whose blocks
    /// do not decode one by one or are not stored in order: the caller reads it whole.
    fn read_blosc_part(
        &self,
        dtype: SourceDtype,
        f: &mut std::fs::File,
        bytes: &mut Vec<u8>,
        part: &Part,
    ) -> Result<Option<(ChunkData, usize)>, Failure> {
        let io = |e: std::io::Error| Failure::Decode(e.to_string());
        let nbytes = self.elements * dtype.size_bytes();
        let mut header = [0u8; 16];
        if f.read_exact(&mut header).is_err() {
            return Ok(None);
        }
        let Some((offsets_end, cbytes)) = blosc::offsets_end(&header, nbytes) else {
            return Ok(None);
        };
        // The buffer only grows: the bytes not read are never looked at (the decode checks
        // that the blocks it needs lie in what was read).
        if bytes.len() < cbytes {
            bytes.resize(cbytes, 0);
        }
        bytes[..16].copy_from_slice(&header);
        if f.read_exact(&mut bytes[16..offsets_end]).is_err() {
            return Ok(None);
        }
        let Some(range) = blosc::blocks_range(&bytes[..offsets_end], nbytes, cbytes, &part.bytes) else {
            return Ok(None);
        };
        f.seek(std::io::SeekFrom::Start(range.start as u64)).map_err(io)?;
        f.read_exact(&mut bytes[range.clone()]).map_err(|e| {
            Failure::Decode(format!(
                "{e}: the file is shorter than its blosc frame's {cbytes} bytes"
            ))
        })?;
        let read = offsets_end + range.len();
        let data = pool::filled(dtype, self.elements, |dst| {
            let decoded = codec::blosc_loaded(&bytes[..cbytes], dst, (Some(part.bytes.clone()), Some(range)))?;
            part.decoded.set(decoded);
            Ok(())
        })
        .map_err(Failure::Decode)?;
        Ok(Some((data, read)))
    }

    /// The chunk decoded from its stored bytes (`None`: never written, the fill value); with
    /// `part`, at least the bytes it names.
    fn decode(&self, dtype: SourceDtype, stored: Option<&[u8]>, part: Option<&Part>) -> Result<ChunkData, String> {
        pool::filled(dtype, self.elements, |dst| {
            let range = part.map(|p| p.bytes.clone());
            let decoded = match stored {
                Some(bytes) => self.layout.codec.decode(bytes, dst, range)?,
                None => {
                    let range = range.unwrap_or(0..dst.len());
                    self.layout.fill(&mut dst[range.clone()]);
                    range.len()
                }
            };
            if let Some(part) = part {
                part.decoded.set(decoded);
            }
            Ok(())
        })
    }
}

/// Make `path` the file of store key `key` in the store folder `root`.
fn file_path(path: &mut String, root: &str, key: &str) {
    path.clear();
    path.push_str(root);
    path.push('/');
    path.push_str(key);
}
