//! Opening an OME-NGFF multiscale group: its scale levels, their geometry and their arrays.
//!
//! Supported: zarr v2 with OME-NGFF 0.4 (`.zgroup` + `.zattrs` → `multiscales[0]`) and zarr v3 with
//! OME-NGFF 0.5 (`zarr.json` → `attributes.ome.multiscales[0]`), sharded arrays included.
//! `axes` may be objects (`{name, type, unit}`) or plain strings. The last three axes must be the
//! spatial axes `z y x` in that order; one leading channel axis (type `channel` or name `c`) is
//! allowed and only its index 0 is read. Per-level `coordinateTransformations` give `scale` and an
//! optional `translation` (missing = 0); the multiscale-level transformations are ignored, as in
//! cellmap-data.
//!
//! # Geometry
//!
//! World coordinates are nanometres on the axes `z y x`. Voxel `i` of a level with scale `s` and
//! translation `t` is **centred** at `t + i·s`; the level covers `[t − s/2, t + (n − ½)·s]`
//! ([`Level::bounds_nm`]). A crop of `N` voxels centred at `c` starts at voxel
//! `floor((c − t)/s − (N − 1)/2 + 0.5)` ([`crate::geometry::crop_start_vox`]). Note: cellmap-data 2026.3
//! treats the translation as the voxel corner instead, shifting crops by up to one voxel and
//! misaligning levels.
//!
//! ```no_run
//! use cellmap_runtime::{store::Multiscale, store::choose_level};
//! let ms = Multiscale::open("data/jrc.zarr/recon-1/em/fibsem-uint8")?;
//! let choice = choose_level(&ms.levels, [8.0, 8.0, 8.0]);
//! println!("{} at {:?} nm", ms.levels[choice.index].path, ms.levels[choice.index].scale_nm);
//! # Ok::<(), cellmap_runtime::store::OpenError>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use zarrs::array::{Array, ArrayShardedExt, ArrayShardedReadableExtCache};
use zarrs::metadata::ArrayMetadata;
use zarrs::metadata::v2::ArrayMetadataV2;
use zarrs::metadata::v3::ArrayMetadataV3;
use zarrs::storage::{ReadableStorageTraits, StoreKey};

use super::direct::DirectChunks;
pub use super::dtype::SourceDtype;

use super::encoded::{StoreTier, TieredStorage};
use super::error::OpenError;
use super::location::{Location, RemoteOptions, open_location, open_location_with};
use super::ngff::{invalid, parse_axes, parse_transforms, read_multiscales};
use crate::geometry::Box3;

/// A half-open box of chunk indices `[lo, hi)` per axis, `z y x`.
pub type ChunkBox = [[u64; 3]; 2];

/// How a level of the training cache is read.
#[derive(Debug)]
pub(crate) enum CacheRole {
    /// A rechunked copy of `source`, written inside `written` (chunk boxes of the cache's grid).
    Copy {
        /// The level it copies.
        source: Level,
        /// Chunks the cache holds.
        written: Vec<ChunkBox>,
        /// Chunks read from the source because the cache does not hold them.
        fallbacks: AtomicU64,
    },
    /// Bit `bit` of `pack`: 1 where `source` is non-zero.
    Bit {
        /// The label level it stands for.
        source: Level,
        /// The packed array.
        pack: Arc<Level>,
        /// The class's bit.
        bit: u32,
    },
}

impl CacheRole {
    /// The source level this cached level stands for.
    pub(crate) fn source(&self) -> &Level {
        match self {
            CacheRole::Copy { source, .. } | CacheRole::Bit { source, .. } => source,
        }
    }
}

/// The opened zarrs array of a level plus what decoding needs.
pub(crate) struct LevelArray {
    pub(crate) array: Array<dyn ReadableStorageTraits>,
    /// Shard-index cache when the array is exclusively sharded (reads go per inner chunk).
    pub(crate) sharded: Option<ArrayShardedReadableExtCache>,
    /// `location/path`, for error messages.
    pub(crate) array_location: String,
    /// The direct decoder of the array's chunks when its layout allows one (else zarrs decodes
    /// them; see [`super::direct`]).
    /// Worked out on the first decode ([`LevelArray::direct`]): opening a level costs nothing more.
    /// Shared with the views of the array ([`LevelArray::tiered`]), so it is worked out once per
    /// level and a sharded array's kept shard indexes serve every view.
    direct: Arc<OnceLock<Option<DirectChunks>>>,
    /// The store's location (a path or a URL), which the direct decoder reads files under.
    store_location: String,
    /// The level's chunks are decoded by the reader that needs them ([`Level::decoded_in_place`]).
    pub(crate) in_place: bool,
    /// The tier this view reads through ([`LevelArray::tiered`]); `None` for the level's own array.
    pub(crate) tiered: Option<Arc<TieredStorage>>,
    /// A zarr v2 array's `.zattrs`, read the first time they are asked for.
    pub(crate) v2_attributes: OnceLock<serde_json::Map<String, Value>>,
}

impl LevelArray {
    /// The direct decoder of the array's chunks, when its layout allows one (see
    /// [`super::direct`]); worked out once, on first use.
    pub(crate) fn direct(&self) -> Option<&DirectChunks> {
        self.direct
            .get_or_init(|| {
                let metadata = self.array.metadata();
                let zarr_format = if matches!(metadata, ArrayMetadata::V2(_)) { 2 } else { 3 };
                let dtype = SourceDtype::of(self.array.data_type())?;
                DirectChunks::detect(
                    &self.store_location,
                    &self.array,
                    &layout_json(metadata),
                    zarr_format,
                    dtype,
                )
            })
            .as_ref()
    }

    /// The same array read through `tier` (requests counted and delayed, encoded values kept in
    /// the compressed tier when it keeps this level's), with a shard-index cache of its own.
    pub(crate) fn tiered(&self, level_id: u64, tier: &Arc<StoreTier>) -> LevelArray {
        let storage = Arc::new(TieredStorage {
            inner: self.array.storage(),
            tier: Arc::clone(tier),
            level_id,
            keep: tier.keeps(&self.array_location),
        });
        let array = self
            .array
            .with_storage::<dyn ReadableStorageTraits>(Arc::clone(&storage) as Arc<dyn ReadableStorageTraits>);
        LevelArray {
            sharded: self.sharded.as_ref().map(|_| ArrayShardedReadableExtCache::new(&array)),
            array,
            array_location: self.array_location.clone(),
            direct: Arc::clone(&self.direct),
            store_location: self.store_location.clone(),
            in_place: self.in_place,
            tiered: Some(storage),
            v2_attributes: self.v2_attributes.clone(),
        }
    }

    /// The array's user attributes. A zarr v2 array's `.zattrs` is read the first time they are
    /// asked for (opening reads only `.zarray`); one that is missing, unreadable or not a JSON
    /// object counts as no attributes, and what uses them computes the value instead.
    fn attributes(&self) -> &serde_json::Map<String, Value> {
        if !matches!(self.array.metadata(), ArrayMetadata::V2(_)) {
            return self.array.attributes();
        }
        self.v2_attributes.get_or_init(|| {
            let key = format!("{}/.zattrs", self.array.path().as_str().trim_matches('/'));
            StoreKey::new(key.trim_start_matches('/'))
                .ok()
                .and_then(|k| self.array.storage().get(&k).ok().flatten())
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or_default()
        })
    }
}

static NEXT_LEVEL_ID: AtomicU64 = AtomicU64::new(1);

/// One scale level of a multiscale group.
#[derive(Clone)]
pub struct Level {
    /// The level's path inside the group, e.g. `s0` (shared: a level is cloned where chunks are
    /// listed to fetch ahead, which must not allocate).
    pub path: Arc<str>,
    /// Voxel size (nm), `z y x`.
    pub scale_nm: [f64; 3],
    /// World position (nm) of the centre of voxel 0, `z y x`.
    pub translation_nm: [f64; 3],
    /// Spatial shape (voxels), `z y x`.
    pub shape_vox: [u64; 3],
    /// Spatial shape of the unit that is decoded at once (voxels): the chunk, or the inner chunk
    /// of a sharded array.
    pub chunk_shape_vox: [u64; 3],
    /// Spatial shard shape (voxels) when the array is sharded.
    pub shard_shape_vox: Option<[u64; 3]>,
    /// Element type.
    pub dtype: SourceDtype,
    /// True when the array has a leading channel axis (index 0 is read).
    pub has_channel_axis: bool,
    /// Unique id of this opened level (cache keys).
    pub id: u64,
    pub(crate) array: Arc<LevelArray>,
    /// How the level is read when it comes from the training cache (`None`: from its array).
    pub(crate) cached: Option<Arc<CacheRole>>,
}

impl std::fmt::Debug for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Level")
            .field("path", &self.path)
            .field("scale_nm", &self.scale_nm)
            .field("translation_nm", &self.translation_nm)
            .field("shape_vox", &self.shape_vox)
            .field("chunk_shape_vox", &self.chunk_shape_vox)
            .field("shard_shape_vox", &self.shard_shape_vox)
            .field("dtype", &self.dtype)
            .field("has_channel_axis", &self.has_channel_axis)
            .field("id", &self.id)
            .field("cached", &self.cached.is_some())
            .finish_non_exhaustive()
    }
}

impl Level {
    /// The world box the level covers: `[t − s/2, t + (n − ½)·s]` per axis.
    #[must_use]
    pub fn bounds_nm(&self) -> Box3 {
        let mut b = Box3::new([0.0; 3], [0.0; 3]);
        for a in 0..3 {
            let (t, s) = (self.translation_nm[a], self.scale_nm[a]);
            let n = self.shape_vox[a] as f64;
            b.lo_nm[a] = t - s / 2.0;
            b.hi_nm[a] = t + (n - 0.5) * s;
        }
        b
    }

    /// The array's user attributes (`.zattrs` of a v2 array, `attributes` of a v3 `zarr.json`).
    #[must_use]
    pub fn attributes(&self) -> &serde_json::Map<String, serde_json::Value> {
        match &self.cached {
            Some(role) => role.source().attributes(),
            None => self.array.attributes(),
        }
    }

    /// `location/path` of the level's array.
    #[must_use]
    pub fn array_location(&self) -> &str {
        &self.array.array_location
    }

    /// Number of chunks (decode units) per axis.
    #[must_use]
    pub fn chunk_grid_shape(&self) -> [u64; 3] {
        self.chunk_grid_shape_for(self.chunk_shape_vox)
    }

    /// Number of chunks of shape `chunk` per axis.
    #[must_use]
    pub fn chunk_grid_shape_for(&self, chunk: [u64; 3]) -> [u64; 3] {
        [0, 1, 2].map(|a| self.shape_vox[a].div_ceil(chunk[a].max(1)))
    }

    /// Chunks of this training-cache level read from its source because the cache does not hold
    /// them; `None` for a level that is not a cached copy.
    #[must_use]
    pub fn cache_fallbacks(&self) -> Option<u64> {
        match self.cached.as_deref() {
            Some(CacheRole::Copy { fallbacks, .. }) => Some(fallbacks.load(Ordering::Relaxed)),
            _ => None,
        }
    }

    /// True when the level's chunks are decoded without zarrs' codec pipeline, straight into
    /// recycled memory (see the `direct` module: unsharded zarr v2 or v3, C order,
    /// little-endian, no filter, raw, blosc, zstd or gzip, numeric fill value).
    #[must_use]
    pub fn decodes_directly(&self) -> bool {
        self.array.direct().is_some()
    }

    /// True when the level's chunks are decoded by the reader that needs them, not handed to
    /// a fetch pool nor read through a cache's tier: the training cache's local chunk files,
    /// whose decode is shorter than a hand-off and for which no delay stands in for a store.
    pub(crate) fn decoded_in_place(&self) -> bool {
        self.array.in_place && self.array.direct().is_some()
    }

    /// True when the level is read through the training cache.
    #[must_use]
    pub fn is_cached(&self) -> bool {
        self.cached.is_some()
    }

    /// Open the array `path` of `store` (the training cache's folder; 3 spatial axes) with this
    /// level's geometry; it must have this level's spatial shape.
    pub(crate) fn open_like(&self, store: &Location, path: &str) -> Result<Level, OpenError> {
        // The training cache writes zarr v3.
        let mut level = open_level_meta(store, (path, 3), (self.scale_nm, self.translation_nm), 3, false)?;
        // The training cache's local chunk files are decoded by the reader that needs them.
        if !super::is_url(&store.location)
            && let Some(array) = Arc::get_mut(&mut level.array)
        {
            array.in_place = true;
        }
        if level.shape_vox != self.shape_vox {
            return Err(OpenError::LevelOpen {
                location: store.location.clone(),
                level: path.to_owned(),
                message: format!(
                    "shape {:?} differs from its source's {:?} ({})",
                    level.shape_vox,
                    self.shape_vox,
                    self.array_location()
                ),
            });
        }
        Ok(level)
    }

    /// This level read from its cached copy `copy` ([`Level::open_like`]), which holds the chunks
    /// in `written`.
    pub(crate) fn cached_copy(&self, copy: Level, written: Vec<ChunkBox>) -> Level {
        Level {
            path: self.path.clone(),
            cached: Some(Arc::new(CacheRole::Copy {
                source: self.clone(),
                written,
                fallbacks: AtomicU64::new(0),
            })),
            ..copy
        }
    }

    /// This (binary label) level read as bit `bit` of the packed array `pack`.
    pub(crate) fn cached_bit(&self, pack: &Arc<Level>, bit: u32) -> Level {
        Level {
            path: self.path.clone(),
            scale_nm: self.scale_nm,
            translation_nm: self.translation_nm,
            shape_vox: self.shape_vox,
            chunk_shape_vox: pack.chunk_shape_vox,
            shard_shape_vox: None,
            dtype: SourceDtype::U8,
            has_channel_axis: false,
            id: NEXT_LEVEL_ID.fetch_add(1, Ordering::Relaxed),
            array: Arc::clone(&pack.array),
            cached: Some(Arc::new(CacheRole::Bit {
                source: self.clone(),
                pack: Arc::clone(pack),
                bit,
            })),
        }
    }
}

/// An opened OME-NGFF multiscale group.
#[derive(Clone, Debug)]
pub struct Multiscale {
    /// The location as given.
    pub location: String,
    /// The levels in metadata order (normally finest first): all of them, or for a group opened
    /// for a spec's voxel sizes ([`Multiscale::open_for`]) the first ones up to the coarsest the
    /// spec reads; a level's index is its index in the metadata either way.
    pub levels: Vec<Level>,
    /// Zarr format version (2 or 3).
    pub zarr_format: u8,
    /// Axis names from the metadata, e.g. `["z", "y", "x"]` or `["c", "z", "y", "x"]`.
    pub axes: Vec<String>,
}

/// The level [`choose_level`] picked for a requested voxel size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelChoice {
    /// Index into the level list.
    pub index: usize,
    /// Every axis equals the request within 1e-6 relative.
    pub exact: bool,
    /// Even the finest level is coarser than the request (the caller should warn and resample).
    pub finer_than_available: bool,
}

const REL_TOL: f64 = 1e-6;

/// Pick the coarsest level whose scale is not coarser than `requested_nm` on any axis
/// (1e-6 relative tolerance); if every level is coarser somewhere, the finest level with
/// `finer_than_available = true`. "Coarsest" compares voxel volumes; ties keep the earlier level.
///
/// # Panics
/// Never for a non-empty `levels`; with an empty slice it returns index 0 with
/// `finer_than_available = true` (the caller owns non-emptiness: [`Multiscale::open`] guarantees it).
#[must_use]
pub fn choose_level(levels: &[Level], requested_nm: [f64; 3]) -> LevelChoice {
    choose_scale(levels.len(), |i| levels[i].scale_nm, requested_nm)
}

/// [`choose_level`] over `n` levels whose voxel sizes `scale(i)` gives.
fn choose_scale(n: usize, scale: impl Fn(usize) -> [f64; 3], requested_nm: [f64; 3]) -> LevelChoice {
    let volume = |i: usize| scale(i).iter().product::<f64>();
    let not_coarser = |i: usize| (0..3).all(|a| scale(i)[a] <= requested_nm[a] * (1.0 + REL_TOL));
    let mut best: Option<usize> = None;
    for i in 0..n {
        if not_coarser(i) && best.is_none_or(|b| volume(i) > volume(b)) {
            best = Some(i);
        }
    }
    let (index, finer_than_available) = match best {
        Some(i) => (i, false),
        None => {
            let mut finest = 0;
            for i in 0..n {
                if volume(i) < volume(finest) {
                    finest = i;
                }
            }
            (finest, true)
        }
    };
    let exact =
        index < n && (0..3).all(|a| (scale(index)[a] - requested_nm[a]).abs() <= REL_TOL * requested_nm[a].abs());
    LevelChoice {
        index,
        exact,
        finer_than_available,
    }
}

impl Multiscale {
    /// Open the multiscale group at `location` (a filesystem path, or an `s3://` or `http(s)://`
    /// URL read with the settings of the environment, [`RemoteOptions::from_env`]).
    ///
    /// # Errors
    /// An [`OpenError`] naming the location for a missing path, a group without `multiscales`,
    /// malformed metadata, unsupported axes, a missing level, a mismatched axis count or an
    /// unsupported data type; [`OpenError::Remote`] naming the URL for a failed request.
    pub fn open(location: &str) -> Result<Multiscale, OpenError> {
        Self::open_store(location, open_location(location)?, None, &[])
    }

    /// [`Multiscale::open`] for a spec's reads: only the levels up to the coarsest one that
    /// [`choose_level`] picks for a voxel size of `needed_nm` are opened (every level when it is
    /// empty), so `levels` is a prefix of the metadata's list and each level keeps its index
    /// there; coarser levels, which the spec never reads, cost no metadata read. With
    /// `expected_format`, that zarr format's group metadata is looked for first (a class group of
    /// a dataset whose raw group has that format: a zarr v2 group is then opened without looking
    /// for a `zarr.json`); a group holding both formats' metadata is read in the expected one,
    /// where [`Multiscale::open`] prefers v3.
    ///
    /// # Errors
    /// As [`Multiscale::open`].
    pub fn open_for(
        location: &str,
        expected_format: Option<u8>,
        needed_nm: &[[f64; 3]],
    ) -> Result<Multiscale, OpenError> {
        Self::open_store(location, open_location(location)?, expected_format, needed_nm)
    }

    /// [`Multiscale::open`] with explicit remote settings instead of the environment's.
    ///
    /// # Errors
    /// As [`Multiscale::open`].
    pub fn open_with(location: &str, remote: &RemoteOptions) -> Result<Multiscale, OpenError> {
        Self::open_store(location, open_location_with(location, Some(remote))?, None, &[])
    }

    fn open_store(
        location: &str,
        store: Location,
        expected: Option<u8>,
        needed_nm: &[[f64; 3]],
    ) -> Result<Multiscale, OpenError> {
        let (zarr_format, multiscales) = read_multiscales(&store, expected)?;
        let ms = multiscales
            .as_array()
            .and_then(|a| a.first())
            .ok_or_else(|| invalid(location, "`multiscales` must be a non-empty list"))?;
        let axes = parse_axes(location, ms.get("axes"))?;
        let has_channel = axes.len() == 4;
        let datasets = ms
            .get("datasets")
            .and_then(Value::as_array)
            .filter(|d| !d.is_empty())
            .ok_or_else(|| invalid(location, "`multiscales[0].datasets` must be a non-empty list"))?;
        let mut described = Vec::with_capacity(datasets.len());
        for (i, ds) in datasets.iter().enumerate() {
            let path = ds
                .get("path")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(location, &format!("`datasets[{i}].path` is missing")))?;
            described.push((path, parse_transforms(location, i, ds, axes.len())?));
        }
        // The prefix up to the coarsest level a needed voxel size chooses.
        let scale = |i: usize| described[i].1.0;
        let opened = needed_nm
            .iter()
            .map(|&v| choose_scale(described.len(), scale, v).index + 1)
            .max()
            .unwrap_or(described.len());
        described.truncate(opened);
        // A remote group's levels are opened side by side (a round trip each); local ones in turn.
        let threads = if super::is_url(location) { described.len() } else { 1 };
        let levels = crate::parallel::map(&described, threads, |&(path, transforms)| {
            open_level_meta(&store, (path, zarr_format), transforms, axes.len(), has_channel)
        })
        .into_iter()
        .collect::<Result<Vec<Level>, OpenError>>()?;
        Ok(Multiscale {
            location: location.to_string(),
            levels,
            zarr_format,
            axes,
        })
    }
}

/// Largest decoded chunk (decode unit) a level may have.
const MAX_CHUNK_BYTES: u64 = 1 << 30;
/// Most inner chunks a shard may hold (its index is 16 bytes per inner chunk).
const MAX_CHUNKS_PER_SHARD: u64 = 1 << 24;

/// The zarrs array `path` of `store` from its metadata document, read once where the group's
/// `zarr_format` puts it (`zarr.json` or `.zarray`; a v2 array's `.zattrs` is read only when its
/// attributes are asked for, [`Level::attributes`]).
fn open_array(store: &Location, path: &str, zarr_format: u8) -> Result<Array<dyn ReadableStorageTraits>, OpenError> {
    let key = path.trim_matches('/');
    let level_err = |message: String| OpenError::LevelOpen {
        location: store.location.clone(),
        level: path.to_string(),
        message,
    };
    let file = if zarr_format == 3 { "zarr.json" } else { ".zarray" };
    let doc_key = if key.is_empty() {
        file.to_string()
    } else {
        format!("{key}/{file}")
    };
    let doc = store.get_bytes(&doc_key)?.ok_or_else(|| OpenError::MissingLevel {
        location: store.location.clone(),
        level: path.to_string(),
    })?;
    let invalid = |e: serde_json::Error| level_err(format!("invalid metadata `{doc_key}`: {e}"));
    let metadata = if zarr_format == 3 {
        let v3: ArrayMetadataV3 = serde_json::from_slice(&doc).map_err(invalid)?;
        // As zarrs' own open: an extension field the reader must understand is refused.
        if let Some((name, _)) = v3.additional_fields.iter().find(|(_, f)| f.must_understand()) {
            return Err(level_err(format!("unsupported additional field `{name}`")));
        }
        ArrayMetadata::V3(v3)
    } else {
        ArrayMetadata::V2(serde_json::from_slice::<ArrayMetadataV2>(&doc).map_err(invalid)?)
    };
    Array::new_with_metadata(store.storage.clone(), &format!("/{key}"), metadata).map_err(|e| level_err(e.to_string()))
}

/// The fields of `metadata` that say how its chunks are stored (keys, codecs, element type, fill
/// value), as JSON for [`DirectChunks::detect`].
fn layout_json(metadata: &ArrayMetadata) -> Value {
    let json = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
    match metadata {
        ArrayMetadata::V2(m) => serde_json::json!({
            "dtype": json(serde_json::to_value(&m.dtype)),
            "compressor": json(serde_json::to_value(&m.compressor)),
            "fill_value": json(serde_json::to_value(&m.fill_value)),
            "order": json(serde_json::to_value(m.order)),
            "filters": json(serde_json::to_value(&m.filters)),
            "dimension_separator": json(serde_json::to_value(m.dimension_separator)),
        }),
        ArrayMetadata::V3(m) => serde_json::json!({
            "data_type": json(serde_json::to_value(&m.data_type)),
            "chunk_grid": json(serde_json::to_value(&m.chunk_grid)),
            "chunk_key_encoding": json(serde_json::to_value(&m.chunk_key_encoding)),
            "fill_value": json(serde_json::to_value(&m.fill_value)),
            "codecs": json(serde_json::to_value(&m.codecs)),
            "storage_transformers": json(serde_json::to_value(&m.storage_transformers)),
        }),
    }
}

/// Open the level array `path` of `store` (zarr `zarr_format`) with its geometry, and its
/// direct decoder when its layout allows one ([`super::direct`]).
fn open_level_meta(
    store: &Location,
    (path, zarr_format): (&str, u8),
    (scale_nm, translation_nm): ([f64; 3], [f64; 3]),
    n_axes: usize,
    has_channel_axis: bool,
) -> Result<Level, OpenError> {
    let location = &store.location;
    let level_err = |message: String| OpenError::LevelOpen {
        location: location.clone(),
        level: path.to_string(),
        message,
    };
    let array = open_array(store, path, zarr_format)?;
    if array.dimensionality() != n_axes {
        return Err(OpenError::AxisCountMismatch {
            location: location.clone(),
            level: path.to_string(),
            metadata_axes: n_axes,
            array_dims: array.dimensionality(),
        });
    }
    let dtype = SourceDtype::of(array.data_type()).ok_or_else(|| OpenError::UnsupportedDtype {
        location: location.clone(),
        level: path.to_string(),
        dtype: array.data_type().to_string(),
    })?;
    if let ArrayMetadata::V3(meta) = array.metadata()
        && meta.chunk_grid.name() != "regular"
    {
        return Err(level_err(format!(
            "chunk grid {:?} is not supported; expected `regular`",
            meta.chunk_grid.name()
        )));
    }
    let spatial = |v: &[u64]| [v[n_axes - 3], v[n_axes - 2], v[n_axes - 1]];
    let shape = array.shape().to_vec();
    let zero = vec![0u64; n_axes];
    let chunk: Vec<u64> = array
        .chunk_shape(&zero)
        .map_err(|e| level_err(e.to_string()))?
        .iter()
        .map(|c| c.get())
        .collect();
    check_decode_unit(&array, dtype, &chunk).map_err(level_err)?;
    let (sharded, chunk_shape_vox, shard_shape_vox) = if array.is_exclusively_sharded()
        && let Some(sub) = array.effective_subchunk_shape()
    {
        let sub: Vec<u64> = sub.iter().map(|c| c.get()).collect();
        // zarrs panics on an inner chunk shape of the wrong dimensionality (fuzz regression
        // `tests/fuzz/regressions/metadata/inner_chunk_rank`).
        if sub.len() != n_axes {
            return Err(level_err(format!(
                "the sharding codec's inner chunk shape {sub:?} has {} dimensions; the array has {n_axes}",
                sub.len()
            )));
        }
        (
            Some(ArrayShardedReadableExtCache::new(&array)),
            spatial(&sub),
            Some(spatial(&chunk)),
        )
    } else {
        (None, spatial(&chunk), None)
    };
    let level = Level {
        path: Arc::from(path),
        scale_nm,
        translation_nm,
        shape_vox: spatial(&shape),
        chunk_shape_vox,
        shard_shape_vox,
        dtype,
        has_channel_axis,
        id: NEXT_LEVEL_ID.fetch_add(1, Ordering::Relaxed),
        array: Arc::new(LevelArray {
            array,
            sharded,
            array_location: format!("{location}/{}", path.trim_matches('/')),
            direct: Arc::new(OnceLock::new()),
            // A relative path made absolute now: a process that changes its working folder later
            // still reads the same files.
            store_location: match super::is_url(location) {
                true => location.clone(),
                false => std::path::absolute(location)
                    .ok()
                    .and_then(|p| p.to_str().map(str::to_owned))
                    .unwrap_or_else(|| location.clone()),
            },
            in_place: false,
            tiered: None,
            v2_attributes: OnceLock::new(),
        }),
        cached: None,
    };
    Ok(level)
}

/// Refuse decode units no machine can hold (a fill-value chunk is allocated whole): fuzz
/// regression `tests/fuzz/regressions/metadata/huge_chunk`.
fn check_decode_unit(
    array: &Array<dyn ReadableStorageTraits>,
    dtype: SourceDtype,
    chunk: &[u64],
) -> Result<(), String> {
    let unit: Vec<u64> = match array.effective_subchunk_shape() {
        Some(sub) if array.is_exclusively_sharded() => sub.iter().map(|c| c.get()).collect(),
        _ => chunk.to_vec(),
    };
    let unit_bytes = unit
        .iter()
        .try_fold(dtype.size_bytes() as u64, |acc, &n| acc.checked_mul(n))
        .unwrap_or(u64::MAX);
    let per_shard = chunk
        .iter()
        .zip(&unit)
        .try_fold(1u64, |acc, (&c, &u)| acc.checked_mul(c.div_ceil(u.max(1))))
        .unwrap_or(u64::MAX);
    if unit_bytes > MAX_CHUNK_BYTES || per_shard > MAX_CHUNKS_PER_SHARD {
        return Err(format!(
            "chunk shape {unit:?} ({unit_bytes} bytes decoded, {per_shard} per shard) exceeds the supported {MAX_CHUNK_BYTES} bytes per chunk and {MAX_CHUNKS_PER_SHARD} chunks per shard"
        ));
    }
    Ok(())
}
