//! Helpers that write small zarr stores with zarrs (no mocks).

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use zarrs::array::{Array, ArraySubset, ElementOwned};
use zarrs::filesystem::FilesystemStore;

/// How to encode an array.
#[derive(Clone, Debug)]
pub(crate) enum Fmt {
    /// zarr v2 with a compressor (`null` allowed) and a dimension separator.
    V2 { compressor: Value, sep: &'static str },
    /// zarr v3 sharded: shard shape = chunk shape, inner chunk shape, zstd inner codec.
    V3Sharded { inner: Vec<u64> },
}

impl Fmt {
    pub(crate) fn zarr_format(&self) -> u8 {
        match self {
            Fmt::V2 { .. } => 2,
            Fmt::V3Sharded { .. } => 3,
        }
    }
}

pub(crate) fn blosc(cname: &str, shuffle: u8) -> Value {
    json!({"id": "blosc", "cname": cname, "clevel": 5, "shuffle": shuffle, "blocksize": 0})
}

fn write_json(dir: &Path, file: &str, v: &Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(file), serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// Write a group (with optional attributes) at `root/rel`.
pub(crate) fn write_group(root: &Path, rel: &str, zarr_format: u8, attrs: Option<Value>) {
    let dir = root.join(rel);
    if zarr_format == 2 {
        write_json(&dir, ".zgroup", &json!({"zarr_format": 2}));
        if let Some(a) = attrs {
            write_json(&dir, ".zattrs", &a);
        }
    } else {
        write_json(
            &dir,
            "zarr.json",
            &json!({"zarr_format": 3, "node_type": "group", "attributes": attrs.unwrap_or(json!({}))}),
        );
    }
}

/// `(v2 dtype, v3 dtype)` of an element type.
pub(crate) trait Dt: ElementOwned + Copy + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    const V2: &'static str;
    const V3: &'static str;
    fn from_index(v: u64) -> Self;
    fn to_f32(self) -> f32;
}
impl Dt for u8 {
    const V2: &'static str = "|u1";
    const V3: &'static str = "uint8";
    fn from_index(v: u64) -> Self {
        (v % 251) as u8
    }
    fn to_f32(self) -> f32 {
        f32::from(self)
    }
}
impl Dt for u16 {
    const V2: &'static str = "<u2";
    const V3: &'static str = "uint16";
    fn from_index(v: u64) -> Self {
        (v % 60_000) as u16
    }
    fn to_f32(self) -> f32 {
        f32::from(self)
    }
}
impl Dt for i16 {
    const V2: &'static str = "<i2";
    const V3: &'static str = "int16";
    fn from_index(v: u64) -> Self {
        ((v % 60_000) as i32 - 30_000) as i16
    }
    fn to_f32(self) -> f32 {
        f32::from(self)
    }
}
impl Dt for u64 {
    const V2: &'static str = "<u8";
    const V3: &'static str = "uint64";
    fn from_index(v: u64) -> Self {
        v * 3 + 1
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
}
impl Dt for f32 {
    const V2: &'static str = "<f4";
    const V3: &'static str = "float32";
    fn from_index(v: u64) -> Self {
        (v % 10_007) as f32 * 0.5 - 100.0
    }
    fn to_f32(self) -> f32 {
        self
    }
}

/// Write an array at `root/rel` with the given shape/chunks and fill value 0, filled with
/// `T::from_index(flat index · 7 + salt)`; returns the data.
pub(crate) fn write_array<T: Dt>(
    root: &Path,
    rel: &str,
    fmt: &Fmt,
    shape: &[u64],
    chunks: &[u64],
    salt: u64,
) -> Vec<T> {
    let dir = root.join(rel);
    match fmt {
        Fmt::V2 { compressor, sep } => write_json(
            &dir,
            ".zarray",
            &json!({"zarr_format": 2, "shape": shape, "chunks": chunks, "dtype": T::V2,
                "compressor": compressor, "fill_value": 0, "order": "C", "filters": null,
                "dimension_separator": sep}),
        ),
        Fmt::V3Sharded { inner } => write_json(
            &dir,
            "zarr.json",
            &json!({"zarr_format": 3, "node_type": "array", "shape": shape, "data_type": T::V3,
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": 0,
                "codecs": [{"name": "sharding_indexed", "configuration": {"chunk_shape": inner,
                    "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                               {"name": "zstd", "configuration": {"level": 3, "checksum": false}}],
                    "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
                    "index_location": "end"}}],
                "attributes": {}}),
        ),
    }
    let n: u64 = shape.iter().product();
    let data: Vec<T> = (0..n).map(|i| T::from_index(i * 7 + salt)).collect();
    store_data(root, rel, shape, &data);
    data
}

/// Write an array at `root/rel` (as [`write_array`] does) holding `data`.
pub(crate) fn write_array_data<T: Dt>(root: &Path, rel: &str, fmt: &Fmt, shape: &[u64], chunks: &[u64], data: &[T]) {
    write_array::<T>(root, rel, fmt, shape, chunks, 0);
    store_data(root, rel, shape, data);
}

fn store_data<T: Dt>(root: &Path, rel: &str, shape: &[u64], data: &[T]) {
    let store = Arc::new(FilesystemStore::new(root).unwrap());
    let array = Array::open(store, &format!("/{rel}")).unwrap();
    array
        .store_array_subset(&ArraySubset::new_with_shape(shape.to_vec()), data)
        .unwrap();
}

/// One level of [`ms_attrs`]: path, scale, optional translation.
pub(crate) type LevelMeta<'a> = (&'a str, Vec<f64>, Option<Vec<f64>>);

/// OME-NGFF `multiscales` metadata (the 0.4 `.zattrs` body, or the 0.5 `ome` body).
pub(crate) fn ms_attrs(zarr_format: u8, axes: Value, levels: &[LevelMeta<'_>]) -> Value {
    let datasets: Vec<Value> = levels
        .iter()
        .map(|(p, s, t)| {
            let mut ct = vec![json!({"type": "scale", "scale": s})];
            if let Some(t) = t {
                ct.push(json!({"type": "translation", "translation": t}));
            }
            json!({"path": p, "coordinateTransformations": ct})
        })
        .collect();
    let ms = json!([{"version": if zarr_format == 2 { "0.4" } else { "0.5" }, "name": "test",
        "axes": axes, "datasets": datasets}]);
    if zarr_format == 2 {
        json!({"multiscales": ms})
    } else {
        json!({"ome": {"version": "0.5", "multiscales": ms}})
    }
}

pub(crate) fn zyx_axes() -> Value {
    json!([
        {"name": "z", "type": "space", "unit": "nanometer"},
        {"name": "y", "type": "space", "unit": "nanometer"},
        {"name": "x", "type": "space", "unit": "nanometer"}
    ])
}

/// A two-level pyramid (s0 shape `shape0`, s1 half of it) at `root`, scales 8/16 nm and the
/// voxel-centre translations `[40, 24, 16]` / `+4`. With `channels`, a leading `c` axis of that
/// size. Returns the data of s0 and s1.
pub(crate) fn write_pyramid<T: Dt>(
    root: &Path,
    fmt: &Fmt,
    shape0: [u64; 3],
    chunks: [u64; 3],
    channels: Option<u64>,
) -> (Vec<T>, Vec<T>) {
    let zf = fmt.zarr_format();
    let shape1 = shape0.map(|s| s.div_ceil(2));
    let (axes, lead_s, lead_t) = match channels {
        None => (zyx_axes(), vec![], vec![]),
        Some(_) => {
            let mut a = vec![json!({"name": "c", "type": "channel"})];
            a.extend(zyx_axes().as_array().unwrap().iter().cloned());
            (Value::Array(a), vec![1.0], vec![0.0])
        }
    };
    let level = |s: f64, t: [f64; 3]| {
        let mut sv = lead_s.clone();
        sv.extend([s; 3]);
        let mut tv = lead_t.clone();
        tv.extend(t);
        (sv, Some(tv))
    };
    let (s0s, s0t) = level(8.0, [40.0, 24.0, 16.0]);
    let (s1s, s1t) = level(16.0, [44.0, 28.0, 20.0]);
    write_group(
        root,
        "",
        zf,
        Some(ms_attrs(zf, axes, &[("s0", s0s, s0t), ("s1", s1s, s1t)])),
    );
    let full = |s: [u64; 3]| {
        let mut v: Vec<u64> = channels.into_iter().collect();
        v.extend(s);
        v
    };
    let mut c = chunks.to_vec();
    if channels.is_some() {
        c.insert(0, 1);
    }
    let d0 = write_array::<T>(root, "s0", fmt, &full(shape0), &c, 0);
    let d1 = write_array::<T>(root, "s1", fmt, &full(shape1), &c, 3);
    (d0, d1)
}

/// A sample request with spatial and value augmentation on (epoch 0, rank 0); override fields
/// with struct update syntax.
pub(crate) fn sample_request(
    dataset: usize,
    centre_nm: [f64; 3],
    seed: u64,
    index: u64,
) -> cellmap_runtime::sample::SampleRequest {
    cellmap_runtime::sample::SampleRequest {
        dataset,
        centre_nm,
        key: cellmap_runtime::rng::SampleKey {
            seed,
            epoch: 0,
            rank: 0,
            index,
        },
        spatial: true,
        values: true,
    }
}

/// An error and its sources, `" / "`-joined: what a person reads.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut chain = vec![e.to_string()];
    let mut source = e.source();
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    chain.join(" / ")
}
