//! Chunks of the training cache's arrays read straight from their files.
//!
//! The training cache writes its arrays itself ([`crate::training_cache`]): zarr v3, one file per
//! chunk under `c/z/y/x`, little-endian `bytes`, then blosc or nothing, fill value 0. A chunk of
//! such an array is one file read into a per-thread buffer and one blosc decompression into the
//! chunk's memory, which comes from the chunk pool ([`super::pool`]): no zarrs codec pipeline,
//! no intermediate buffers, and once warm no allocation. Any other layout (zstd, sharding, a
//! hand-edited `zarr.json`) is read through zarrs as before.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Read;

use super::chunk_data::ChunkData;
use super::error::ChunkError;
use super::local_layout::{Codec, LocalChunks};
use super::multiscale::{Level, SourceDtype};
use super::pool;

impl LocalChunks {
    /// Chunk `chunk` of `level` (whose array this reads): a missing file reads as zeros, the
    /// fill value.
    ///
    /// # Errors
    /// [`ChunkError::Decode`] for a file that cannot be read or decoded, or that decodes to
    /// another size than the chunk's.
    pub(crate) fn read(&self, level: &Level, chunk: [u64; 3]) -> Result<ChunkData, ChunkError> {
        let elements = usize::try_from(level.chunk_shape_vox.iter().product::<u64>()).unwrap_or(usize::MAX);
        self.read_chunk(level.dtype, elements, chunk)
            .map_err(|message| ChunkError::Decode {
                array: level.array_location().to_owned(),
                key: format!("c/{}/{}/{}", chunk[0], chunk[1], chunk[2]),
                chunk,
                message,
            })
    }

    /// Chunk `chunk` as `elements` elements of `dtype`.
    fn read_chunk(&self, dtype: SourceDtype, elements: usize, chunk: [u64; 3]) -> Result<ChunkData, String> {
        FILE.with_borrow_mut(|file| {
            file.path.clear();
            let _ = write!(file.path, "{}/c/{}/{}/{}", self.folder, chunk[0], chunk[1], chunk[2]);
            let mut f = match std::fs::File::open(&file.path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(pool::zeroed(dtype, elements)),
                Err(e) => return Err(e.to_string()),
            };
            let bytes = elements * dtype.size_bytes();
            match self.codec {
                // Straight into the chunk's memory, then a check that the file ends there.
                Codec::Raw => pool::filled(dtype, elements, |dst| {
                    let short = |e: std::io::Error| format!("{e}: the file holds fewer bytes than the chunk's {bytes}");
                    f.read_exact(dst).map_err(short)?;
                    match f.read(&mut [0u8; 1]) {
                        Ok(0) => Ok(()),
                        Ok(_) => Err(format!("the file holds more bytes than the chunk's {bytes}")),
                        Err(e) => Err(e.to_string()),
                    }
                }),
                Codec::Blosc => {
                    file.bytes.clear();
                    f.read_to_end(&mut file.bytes).map_err(|e| e.to_string())?;
                    pool::filled(dtype, elements, |dst| blosc_decompress(&file.bytes, dst))
                }
            }
        })
    }
}

/// Decompress the blosc frame `src` into `dst`, whose length must be the frame's decoded size.
fn blosc_decompress(src: &[u8], dst: &mut [u8]) -> Result<(), String> {
    let bytes = dst.len();
    // A blosc header is 16 bytes; the sizes it gives are checked against the file and the chunk.
    if src.len() < 16 {
        return Err(format!(
            "a blosc frame of {} bytes is shorter than its header",
            src.len()
        ));
    }
    let (mut nbytes, mut cbytes, mut blocksize) = (0usize, 0usize, 0usize);
    // SAFETY: `src` holds at least the 16 header bytes the call reads.
    unsafe { blosc_src::blosc_cbuffer_sizes(src.as_ptr().cast(), &mut nbytes, &mut cbytes, &mut blocksize) };
    if cbytes > src.len() || nbytes != bytes {
        return Err(format!(
            "blosc frame of {cbytes} bytes decoding to {nbytes} in a file of {} bytes, for a chunk of {bytes} bytes",
            src.len()
        ));
    }
    // SAFETY: `src` holds the `cbytes` bytes of the frame (checked above); `dst` is valid for
    // `bytes` bytes, which is the frame's decoded size, the most the call writes.
    let n = unsafe { blosc_src::blosc_decompress_ctx(src.as_ptr().cast(), dst.as_mut_ptr().cast(), bytes, 1) };
    if usize::try_from(n).ok() != Some(bytes) {
        return Err(format!("blosc decompression failed ({n})"));
    }
    Ok(())
}

/// Per-thread memory of the reads: the path being built and the file's bytes.
#[derive(Default)]
struct FileBuffers {
    path: String,
    bytes: Vec<u8>,
}

thread_local! {
    static FILE: RefCell<FileBuffers> = RefCell::new(FileBuffers::default());
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use serde_json::Value;

    use serde_json::json;
    use zarrs::array::Array;
    use zarrs::filesystem::FilesystemStore;

    use super::*;

    /// An array of `dtype` 6×5×4 in chunks of 4³ with `codecs`, written by zarrs in `dir/a`; its
    /// metadata.
    fn write(dir: &Path, codecs: Value, u16s: bool) -> Value {
        let meta = json!({"zarr_format": 3, "node_type": "array", "shape": [6, 5, 4],
            "data_type": if u16s { "uint16" } else { "uint8" },
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4, 4, 4]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0, "codecs": codecs});
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::write(dir.join("a/zarr.json"), meta.to_string()).unwrap();
        let store = Arc::new(FilesystemStore::new(dir).unwrap());
        let array = Array::open(store, "/a").unwrap();
        let subset = array.subset_all();
        if u16s {
            let v: Vec<u16> = (0..120u16).map(|i| i * 517).collect();
            array.store_array_subset(&subset, &v).unwrap();
        } else {
            let v: Vec<u8> = (0..120u8).map(|i| i.wrapping_mul(37)).collect();
            array.store_array_subset(&subset, &v).unwrap();
        }
        // Chunk (1, 1, 0) is left unwritten: all zeros.
        let _ = std::fs::remove_file(dir.join("a/c/1/1/0"));
        meta
    }

    /// Every chunk read directly equals zarrs' decode of it, blosc-compressed or raw, `uint8`
    /// or `uint16`, a missing chunk included; a truncated file is an error naming the sizes.
    #[test]
    fn direct_reads_equal_zarrs_decodes() {
        let bytes = json!({"name": "bytes", "configuration": {"endian": "little"}});
        for (name, codecs, u16s) in [
            ("raw", json!([bytes]), false),
            (
                "lz4",
                json!([bytes, {"name": "blosc", "configuration": {"cname": "lz4", "clevel": 1,
                "shuffle": "noshuffle", "typesize": 1, "blocksize": 0}}]),
                false,
            ),
            (
                "lz4-u16",
                json!([bytes, {"name": "blosc", "configuration": {"cname": "lz4", "clevel": 1,
                "shuffle": "shuffle", "typesize": 2, "blocksize": 0}}]),
                true,
            ),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let meta = write(tmp.path(), codecs, u16s);
            let local = LocalChunks::detect(&tmp.path().join("a"), &meta).expect(name);
            let store = Arc::new(FilesystemStore::new(tmp.path()).unwrap());
            let array = Array::open(store, "/a").unwrap();
            let dtype = if u16s { SourceDtype::U16 } else { SourceDtype::U8 };
            for z in 0..2u64 {
                for y in 0..2u64 {
                    let got = local.read_chunk(dtype, 64, [z, y, 0]).unwrap();
                    let expected = if u16s {
                        ChunkData::U16(array.retrieve_chunk::<Vec<u16>>(&[z, y, 0]).unwrap())
                    } else {
                        ChunkData::U8(array.retrieve_chunk::<Vec<u8>>(&[z, y, 0]).unwrap())
                    };
                    assert_eq!(got, expected, "{name} chunk {z} {y}");
                }
            }
            assert_eq!(local.read_chunk(dtype, 64, [1, 1, 0]).unwrap().len(), 64);
            let file = tmp.path().join("a/c/0/0/0");
            let stored = std::fs::read(&file).unwrap();
            std::fs::write(&file, &stored[..stored.len() / 2]).unwrap();
            let err = local.read_chunk(dtype, 64, [0, 0, 0]).unwrap_err();
            assert!(err.contains("bytes"), "{name}: {err}");
        }
    }

    /// Layouts other than the training cache's are left to zarrs.
    #[test]
    fn other_layouts_are_not_read_directly() {
        let base = json!({"zarr_format": 3, "shape": [4, 4, 4], "fill_value": 0,
            "chunk_grid": {"name": "regular"},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}]});
        assert!(LocalChunks::detect(Path::new("/x"), &base).is_some());
        for (pointer, value) in [
            ("/fill_value", json!(3)),
            ("/zarr_format", json!(2)),
            ("/chunk_key_encoding/configuration/separator", json!(".")),
            ("/codecs", json!([{"name": "bytes"}, {"name": "zstd"}])),
            ("/codecs", json!([{"name": "sharding_indexed"}])),
            ("/shape", json!([1, 4, 4, 4])),
        ] {
            let mut meta = base.clone();
            *meta.pointer_mut(pointer).unwrap() = value;
            assert!(LocalChunks::detect(Path::new("/x"), &meta).is_none(), "{pointer}");
        }
    }
}
