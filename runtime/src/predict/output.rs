//! The on-disk side of the writer: OME-NGFF group and array metadata, and a store whose writes are
//! atomic (a temporary file renamed over the key), so a killed writer never leaves a half-written
//! chunk under a chunk key.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use zarrs::storage::{Bytes, OffsetBytesIterator, StorageError, StoreKey, StorePrefix, WritableStorageTraits};

use cellmap_schema::PredictDtype;

use super::PredictError;

/// Name of the folder (inside each class group) holding one completion marker per written chunk.
pub(super) const DONE_DIR: &str = ".cellmap-done";

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PredictError + '_ {
    move |source| PredictError::Io {
        path: path.display().to_string(),
        source,
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Write `bytes` to `path` atomically: a unique temporary file in the same folder, then a rename.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A write-only filesystem store rooted at a folder whose `set` is atomic (temp file + rename).
#[derive(Debug)]
pub(super) struct AtomicStore {
    root: PathBuf,
}

impl AtomicStore {
    pub(super) fn new(root: PathBuf) -> Self {
        AtomicStore { root }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

impl WritableStorageTraits for AtomicStore {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        write_atomic(&self.path(key.as_str()), &value).map_err(StorageError::from)
    }

    fn set_partial_many(&self, key: &StoreKey, _offset_values: OffsetBytesIterator) -> Result<(), StorageError> {
        Err(StorageError::Other(format!(
            "partial writes of `{}` are not supported by the prediction writer",
            key.as_str()
        )))
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        match std::fs::remove_file(self.path(key.as_str())) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        match std::fs::remove_dir_all(self.path(prefix.as_str())) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn supports_set_partial(&self) -> bool {
        false
    }
}

/// Everything the metadata of one output group needs.
pub(super) struct GroupMeta<'a> {
    pub(super) class: &'a str,
    pub(super) zarr_format: u8,
    pub(super) dtype: PredictDtype,
    pub(super) shape_vox: [u64; 3],
    pub(super) chunk_vox: [usize; 3],
    pub(super) scale_nm: [f64; 3],
    pub(super) translation_nm: [f64; 3],
}

/// The OME-NGFF `multiscales` list of a one-level group (`s0`).
fn multiscales(m: &GroupMeta<'_>, with_version: bool) -> Value {
    let axes: Vec<Value> = ["z", "y", "x"]
        .iter()
        .map(|a| json!({"name": a, "type": "space", "unit": "nanometer"}))
        .collect();
    let mut ms = json!({
        "name": m.class,
        "axes": axes,
        "datasets": [{"path": "s0", "coordinateTransformations": [
            {"type": "scale", "scale": m.scale_nm},
            {"type": "translation", "translation": m.translation_nm}]}],
    });
    if with_version && let Some(o) = ms.as_object_mut() {
        o.insert("version".into(), json!("0.4"));
    }
    json!([ms])
}

/// `(file, json)` pairs of the group and its `s0` array, relative to the group folder.
pub(super) fn group_files(m: &GroupMeta<'_>) -> Vec<(String, Value)> {
    let (v2_dtype, v3_dtype) = match m.dtype {
        PredictDtype::Float32 => ("<f4", "float32"),
        PredictDtype::Uint8 => ("|u1", "uint8"),
    };
    if m.zarr_format == 2 {
        vec![
            (".zgroup".into(), json!({"zarr_format": 2})),
            (".zattrs".into(), json!({"multiscales": multiscales(m, true)})),
            (
                "s0/.zarray".into(),
                json!({"zarr_format": 2, "shape": m.shape_vox, "chunks": m.chunk_vox, "dtype": v2_dtype,
                    "compressor": {"id": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 1, "blocksize": 0},
                    "fill_value": 0, "order": "C", "filters": null, "dimension_separator": "/"}),
            ),
        ]
    } else {
        vec![
            (
                "zarr.json".into(),
                json!({"zarr_format": 3, "node_type": "group", "attributes": {"ome": {
                    "version": "0.5", "multiscales": multiscales(m, false)}}}),
            ),
            (
                "s0/zarr.json".into(),
                json!({"zarr_format": 3, "node_type": "array", "shape": m.shape_vox, "data_type": v3_dtype,
                    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": m.chunk_vox}},
                    "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                    "fill_value": 0,
                    "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                               {"name": "zstd", "configuration": {"level": 3, "checksum": false}}],
                    "dimension_names": ["z", "y", "x"], "attributes": {}}),
            ),
        ]
    }
}

/// Write the metadata files of a group, or check that existing ones are identical.
pub(super) fn ensure_group(dir: &Path, m: &GroupMeta<'_>) -> Result<(), PredictError> {
    for (file, value) in group_files(m) {
        let path = dir.join(&file);
        match std::fs::read(&path) {
            Ok(existing) => {
                let same = serde_json::from_slice::<Value>(&existing).is_ok_and(|v| v == value);
                if !same {
                    return Err(PredictError::Incompatible {
                        path: path.display().to_string(),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = serde_json::to_string_pretty(&value).unwrap_or_default();
                write_atomic(&path, text.as_bytes()).map_err(io_err(&path))?;
            }
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Ok(())
}

/// Make every folder between the zarr container root (the deepest ancestor named `*.zarr`) and
/// `dir` (exclusive) a plain group, unless it already is a zarr node.
pub(super) fn ensure_parent_groups(dir: &Path, zarr_format: u8) -> Result<(), PredictError> {
    let ancestors: Vec<&Path> = dir.ancestors().skip(1).collect();
    let Some(root_pos) = ancestors
        .iter()
        .position(|a| a.extension().is_some_and(|e| e == "zarr"))
    else {
        return Ok(());
    };
    for a in ancestors[..=root_pos].iter().rev() {
        let is_node = [".zgroup", ".zarray", "zarr.json"].iter().any(|f| a.join(f).exists());
        if is_node {
            continue;
        }
        let (file, value) = if zarr_format == 2 {
            (".zgroup", json!({"zarr_format": 2}))
        } else {
            (
                "zarr.json",
                json!({"zarr_format": 3, "node_type": "group", "attributes": {}}),
            )
        };
        let path = a.join(file);
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        write_atomic(&path, text.as_bytes()).map_err(io_err(&path))?;
    }
    Ok(())
}

/// The completion marker of chunk `index` in a group.
pub(super) fn marker_path(group: &Path, index: [u64; 3]) -> PathBuf {
    group
        .join(DONE_DIR)
        .join(format!("{}.{}.{}", index[0], index[1], index[2]))
}
