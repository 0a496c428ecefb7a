//! Writing the training cache of a spec: `cellmap-compile cache`.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde_json::json;
use zarrs::array::{Array, CodecOptions};
use zarrs::filesystem::FilesystemStore;

use cellmap_schema::{SliceAxis, Spec, Split, ValueTransform};

use crate::plan::{ClassPlan, DatasetPlan, PlanError, PlanOptions, plan};
use crate::sources::manifest::{CopyEntry, FORMAT, Manifest, PackEntry, PackMember, SourceMeta};
use crate::sources::{ClassSource, DatasetSources};
use crate::store::ChunkBox;
use crate::store::cached::pack_dtype;
use crate::store::{Level, SourceDtype};

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
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            CacheCodec::None => "none",
            CacheCodec::Lz4 => "lz4",
            CacheCodec::Zstd => "zstd",
        }
    }

    /// The zarr v3 codec chain for elements of `dtype`.
    fn codecs(self, dtype: SourceDtype) -> serde_json::Value {
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
    /// Binary classes packed into one array, in `[1, 64]`: 8 (the default) packs them as the bits
    /// of a byte; more share one decode among more classes but make every class read wider
    /// elements (`uint16` … `uint64`).
    pub classes_per_pack: usize,
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
            classes_per_pack: 8,
            prune: false,
        }
    }
}

/// What [`write`] did.
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

/// What can stop [`write`].
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

/// Blocks of cache chunks written at once, per axis (one source read per block).
const BLOCK_CHUNKS: u64 = 4;

/// A source level to copy over some chunk boxes.
struct CopyJob {
    source: Level,
    chunk: [u64; 3],
    boxes: Vec<ChunkBox>,
}

/// Binary classes of one crop sharing a geometry, packed into one array.
struct PackJob {
    members: Vec<Level>,
    chunk: [u64; 3],
}

/// Write (or bring up to date) the training cache of `spec` in `dir`: see the module docs.
/// Arrays the cache already holds, from the same source metadata, with the same chunks and over
/// the same boxes, are kept; entries of other specs sharing the folder are kept too.
///
/// # Errors
/// [`CacheError`]: the spec cannot be planned, a source cannot be read, the folder not written.
pub fn write(spec: &Spec, dir: &Path, options: &CacheOptions) -> Result<CacheReport, CacheError> {
    let start = Instant::now();
    let direct = spec.clone().with_training_cache(None);
    let planned = plan(&direct, PlanOptions::default()).map_err(Box::new)?;
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, &e))?;
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let old = Manifest::read(&dir).unwrap_or_default();
    let (copies, packs) = jobs(spec, &planned.plan.datasets, &planned.sources, options);
    let store = Arc::new(FilesystemStore::new(&dir).map_err(|e| io_err(&dir, &e))?);
    let counters = Counters::default();
    // Arrays are written to new folders (never over ones a manifest names), so a failed run or a
    // loader that opened the previous manifest never reads a half-written array.
    let generation = generation();
    let mut manifest = Manifest {
        format: FORMAT,
        arrays: Vec::new(),
        packs: Vec::new(),
    };
    let mut report = CacheReport::new(&dir);
    for job in &copies {
        let meta = SourceMeta::of(&job.source);
        let path = format!("arrays/{}-{generation}", name_of(&[&meta.array]));
        let current = old.arrays.iter().find(|e| {
            e.source == meta && e.chunk_shape_vox == job.chunk && job.boxes.iter().all(|b| e.written.contains(b))
        });
        if let Some(entry) = current {
            manifest.arrays.push(entry.clone());
            report.kept += 1;
            continue;
        }
        write_copy(&store, &dir, &path, job, options.codec, &counters)?;
        report.copies_written += 1;
        manifest.arrays.push(CopyEntry {
            source: meta,
            path,
            chunk_shape_vox: job.chunk,
            written: job.boxes.clone(),
        });
    }
    for job in &packs {
        let metas: Vec<SourceMeta> = job.members.iter().map(SourceMeta::of).collect();
        let names: Vec<&str> = metas.iter().map(|m| m.array.as_str()).collect();
        let path = format!("packs/{}-{generation}", name_of(&names));
        let members: Vec<PackMember> = metas
            .into_iter()
            .zip(0u32..)
            .map(|(source, bit)| PackMember { source, bit })
            .collect();
        if let Some(entry) = old
            .packs
            .iter()
            .find(|e| e.members == members && e.chunk_shape_vox == job.chunk)
        {
            manifest.packs.push(entry.clone());
            report.kept += 1;
            continue;
        }
        let dtype = write_pack(&store, &dir, &path, job, options.codec, &counters)?;
        report.packs_written += 1;
        report.classes_packed += members.len();
        manifest.packs.push(PackEntry {
            path,
            dtype: dtype.name().to_owned(),
            chunk_shape_vox: job.chunk,
            members,
        });
    }
    keep_others(&mut manifest, old);
    manifest.write(&dir).map_err(|message| CacheError::Io {
        path: dir.display().to_string(),
        message,
    })?;
    report.unreferenced = unreferenced(&dir, &manifest);
    if options.prune {
        for folder in &report.unreferenced {
            std::fs::remove_dir_all(folder).map_err(|e| io_err(folder, &e))?;
        }
    }
    report.chunks_written = counters.chunks.load(Ordering::Relaxed);
    report.source_bytes = counters.source_bytes.load(Ordering::Relaxed);
    report.disk_bytes = disk_bytes(&dir);
    report.elapsed = start.elapsed();
    Ok(report)
}

impl CacheReport {
    fn new(dir: &Path) -> CacheReport {
        CacheReport {
            dir: dir.to_path_buf(),
            copies_written: 0,
            packs_written: 0,
            classes_packed: 0,
            kept: 0,
            chunks_written: 0,
            source_bytes: 0,
            disk_bytes: 0,
            unreferenced: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }
}

/// A token naming this run's new array folders: the time in nanoseconds and the process id.
fn generation() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}{:x}", std::process::id())
}

/// Add to `manifest` the entries of `old` for sources it does not cache (other specs' arrays).
fn keep_others(manifest: &mut Manifest, old: Manifest) {
    let cached: HashSet<String> = manifest
        .arrays
        .iter()
        .map(|e| e.source.array.clone())
        .chain(
            manifest
                .packs
                .iter()
                .flat_map(|p| p.members.iter().map(|m| m.source.array.clone())),
        )
        .collect();
    manifest
        .arrays
        .extend(old.arrays.into_iter().filter(|e| !cached.contains(&e.source.array)));
    manifest.packs.extend(
        old.packs
            .into_iter()
            .filter(|p| p.members.iter().all(|m| !cached.contains(&m.source.array))),
    );
}

#[derive(Default)]
struct Counters {
    chunks: AtomicU64,
    source_bytes: AtomicU64,
}

fn io_err(path: &Path, e: &dyn std::fmt::Display) -> CacheError {
    CacheError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// A stable folder name for the cached array of `sources` (FNV-1a of their locations).
fn name_of(sources: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for s in sources {
        for b in s.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The reach (nm per axis) of input array `k`'s window around its centre under the spec's
/// spatial transforms: half its extent per axis; half the longest extent on every axis when axes
/// may be transposed or the sample is sliced along y, x or any axis; half the diagonal under
/// rotation; plus four standard deviations of elastic displacement and two voxels for
/// interpolation. A sample reaching further (an elastic tail) reads the source for those chunks.
pub fn input_reach_nm(spec: &Spec, k: usize) -> [f64; 3] {
    let array = &spec.inputs()[k];
    let extent: [f64; 3] = std::array::from_fn(|a| array.shape_vox[a] as f64 * array.voxel_size_nm[a]);
    let spatial = &spec.augment().spatial;
    let longest = extent.iter().copied().fold(0.0, f64::max);
    let mut reach = if spatial.rotate.iter().any(Option::is_some) {
        [0.5 * extent.iter().map(|e| e * e).sum::<f64>().sqrt(); 3]
    } else if spatial.transpose.len() >= 2 || (spec.is_2d() && spec.sampling().slice_axis != SliceAxis::Z) {
        [0.5 * longest; 3]
    } else {
        extent.map(|e| 0.5 * e)
    };
    let elastic = spatial.elastic.as_ref().map_or(0.0, |e| 4.0 * e.sigma_nm);
    for a in 0..3 {
        reach[a] += elastic + 2.0 * array.voxel_size_nm[a];
    }
    reach
}

/// Whether class `class` is binary in every split for this spec: each of its target lists starts
/// with `binarize` at a threshold in `[0, 1)` (so on unsigned labels it is `label ≠ 0`) and none
/// rescales by the label's dtype (which packing changes).
fn binary_everywhere(spec: &Spec, class: &str) -> bool {
    Split::ALL.iter().all(|&split| {
        let list = spec.augment().targets_for(split, class);
        matches!(list.first(), Some(ValueTransform::Binarize { threshold }) if (0.0..1.0).contains(threshold))
            && !list.iter().any(|t| matches!(t, ValueTransform::NormalizeDtype { .. }))
    })
}

fn is_unsigned(dtype: SourceDtype) -> bool {
    matches!(
        dtype,
        SourceDtype::U8 | SourceDtype::U16 | SourceDtype::U32 | SourceDtype::U64
    )
}

/// The cache's chunk shape for `level`: `chunk` clipped to its shape.
fn chunk_for(level: &Level, chunk: [u64; 3]) -> [u64; 3] {
    std::array::from_fn(|a| chunk[a].clamp(1, level.shape_vox[a].max(1)))
}

/// The chunk box of the cache chunks of `level` covering the world box `lo..hi` (nm), clipped
/// to the array.
fn chunk_box(level: &Level, chunk: [u64; 3], lo: [f64; 3], hi: [f64; 3]) -> Option<ChunkBox> {
    let mut b = [[0u64; 3]; 2];
    for a in 0..3 {
        let (t, s, n) = (level.translation_nm[a], level.scale_nm[a], level.shape_vox[a]);
        let first = ((lo[a] - t) / s).floor().max(0.0);
        let last = ((hi[a] - t) / s).ceil() + 1.0;
        let last = last.clamp(0.0, n as f64) as u64;
        let first = (first as u64).min(last);
        if first >= last {
            return None;
        }
        b[0][a] = first / chunk[a];
        b[1][a] = last.div_ceil(chunk[a]);
    }
    Some(b)
}

/// The world box every sample of a dataset is centred in: its data box, its centre grid and
/// its tiles.
fn centre_box(d: &DatasetPlan) -> ([f64; 3], [f64; 3]) {
    let mut lo = d.bbox_nm.lo_nm;
    let mut hi = d.bbox_nm.hi_nm;
    for g in [&d.grid, &d.tiles] {
        if g.is_empty() {
            continue;
        }
        let last = g.centre(g.shape.map(|n| n - 1));
        for a in 0..3 {
            lo[a] = lo[a].min(g.origin_nm[a].min(last[a]));
            hi[a] = hi[a].max(g.origin_nm[a].max(last[a]));
        }
    }
    (lo, hi)
}

/// The copies and packs of a plan.
fn jobs(
    spec: &Spec,
    datasets: &[DatasetPlan],
    sources: &[DatasetSources],
    options: &CacheOptions,
) -> (Vec<CopyJob>, Vec<PackJob>) {
    let mut copies: BTreeMap<String, CopyJob> = BTreeMap::new();
    let mut add_copy = |level: &Level, b: ChunkBox, chunk: [u64; 3]| {
        let job = copies
            .entry(level.array_location().to_owned())
            .or_insert_with(|| CopyJob {
                source: level.clone(),
                chunk,
                boxes: Vec::new(),
            });
        if !job.boxes.contains(&b) {
            job.boxes.push(b);
        }
    };
    let mut packs = Vec::new();
    for (d, s) in datasets.iter().zip(sources) {
        let (lo, hi) = centre_box(d);
        for (k, lp) in d.inputs.iter().enumerate() {
            let level = &s.raw.levels[lp.level];
            let chunk = chunk_for(level, options.chunk);
            let reach = options.reach_nm.unwrap_or_else(|| input_reach_nm(spec, k));
            let lo = std::array::from_fn(|a| lo[a] - reach[a]);
            let hi = std::array::from_fn(|a| hi[a] + reach[a]);
            if let Some(b) = chunk_box(level, chunk, lo, hi) {
                add_copy(level, b, chunk);
            }
        }
        // Binary classes grouped by geometry (packs of `classes_per_pack`); others copied whole.
        let mut groups: BTreeMap<String, Vec<Level>> = BTreeMap::new();
        for per_class in &d.targets {
            for (c, class_plan) in per_class.iter().enumerate() {
                let (ClassPlan::Annotated(lp), ClassSource::Annotated(ms)) = (class_plan, &s.classes[c]) else {
                    continue;
                };
                let level = &ms.levels[lp.level];
                if is_unsigned(level.dtype) && binary_everywhere(spec, &spec.classes()[c]) {
                    let key = format!("{:?}{:?}{:?}", level.scale_nm, level.translation_nm, level.shape_vox);
                    let group = groups.entry(key).or_default();
                    if !group.iter().any(|l| l.array_location() == level.array_location()) {
                        group.push(level.clone());
                    }
                } else {
                    let chunk = chunk_for(level, options.chunk);
                    let whole = [[0; 3], level.chunk_grid_shape_for(chunk)];
                    add_copy(level, whole, chunk);
                }
            }
        }
        for group in groups.into_values() {
            for members in group.chunks(options.classes_per_pack.clamp(1, 64)) {
                packs.push(PackJob {
                    chunk: chunk_for(&members[0], options.chunk),
                    members: members.to_vec(),
                });
            }
        }
    }
    (copies.into_values().collect(), packs)
}

/// Write the zarr v3 metadata of a cached array of `(shape, chunk shape, dtype)` in a new folder.
fn create_array(
    store: &Arc<FilesystemStore>,
    dir: &Path,
    path: &str,
    (shape, chunk, dtype): ([u64; 3], [u64; 3], SourceDtype),
    codec: CacheCodec,
    source: &str,
) -> Result<Array<FilesystemStore>, CacheError> {
    let folder = dir.join(path);
    std::fs::create_dir_all(&folder).map_err(|e| io_err(&folder, &e))?;
    let meta = json!({"zarr_format": 3, "node_type": "array", "shape": shape, "data_type": dtype.name(),
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunk}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0, "codecs": codec.codecs(dtype),
        "dimension_names": ["z", "y", "x"],
        "attributes": {"cellmap_training_cache": {"source": source}}});
    let file = folder.join("zarr.json");
    std::fs::write(&file, serde_json::to_string_pretty(&meta).unwrap_or_default()).map_err(|e| io_err(&file, &e))?;
    Array::open(Arc::clone(store), &format!("/{path}")).map_err(|e| CacheError::Copy {
        source_array: source.to_owned(),
        array: folder.display().to_string(),
        message: e.to_string(),
    })
}

/// The blocks (of up to [`BLOCK_CHUNKS`]³ chunks, clipped to each box) covering `boxes`, as
/// voxel ranges clipped to `shape`. Boxes that overlap write their common chunks twice, with the
/// same voxels.
fn blocks(boxes: &[ChunkBox], chunk: [u64; 3], shape: [u64; 3]) -> Vec<[Range<u64>; 3]> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for [lo, hi] in boxes {
        let n: [u64; 3] = std::array::from_fn(|a| hi[a].saturating_sub(lo[a]).div_ceil(BLOCK_CHUNKS));
        for i in 0..n[0] {
            for j in 0..n[1] {
                for k in 0..n[2] {
                    let first = [
                        lo[0] + i * BLOCK_CHUNKS,
                        lo[1] + j * BLOCK_CHUNKS,
                        lo[2] + k * BLOCK_CHUNKS,
                    ];
                    let ranges: [Range<u64>; 3] = std::array::from_fn(|a| {
                        let start = first[a] * chunk[a];
                        let end = ((first[a] + BLOCK_CHUNKS).min(hi[a]) * chunk[a]).min(shape[a]);
                        start..end
                    });
                    if seen.insert(ranges.clone()) {
                        out.push(ranges);
                    }
                }
            }
        }
    }
    out
}

/// `ranges` of a level's spatial axes, with channel 0 first when it has a channel axis.
fn full_ranges(level: &Level, ranges: &[Range<u64>; 3]) -> Vec<Range<u64>> {
    let mut full = Vec::with_capacity(4);
    if level.has_channel_axis {
        full.push(0..1);
    }
    full.extend(ranges.iter().cloned());
    full
}

fn codec_options() -> CodecOptions {
    CodecOptions::default().with_concurrent_target(1)
}

fn write_copy(
    store: &Arc<FilesystemStore>,
    dir: &Path,
    path: &str,
    job: &CopyJob,
    codec: CacheCodec,
    counters: &Counters,
) -> Result<(), CacheError> {
    let source = &job.source;
    let src_name = source.array_location();
    let array = create_array(
        store,
        dir,
        path,
        (source.shape_vox, job.chunk, source.dtype),
        codec,
        src_name,
    )?;
    let err = |e: &dyn std::fmt::Display| CacheError::Copy {
        source_array: src_name.to_owned(),
        array: dir.join(path).display().to_string(),
        message: e.to_string(),
    };
    let blocks = blocks(&job.boxes, job.chunk, source.shape_vox);
    blocks.par_iter().with_max_len(1).try_for_each(|ranges| {
        let full = full_ranges(source, ranges);
        let spatial: Vec<Range<u64>> = ranges.to_vec();
        macro_rules! copy {
            ($t:ty) => {{
                let data: Vec<$t> = source
                    .array
                    .array
                    .retrieve_array_subset_opt::<Vec<$t>>(&full, &codec_options())
                    .map_err(|e| err(&e))?;
                counters
                    .source_bytes
                    .fetch_add((data.len() * std::mem::size_of::<$t>()) as u64, Ordering::Relaxed);
                array
                    .store_array_subset_opt(&spatial, data, &codec_options())
                    .map_err(|e| err(&e))?;
            }};
        }
        match source.dtype {
            SourceDtype::U8 => copy!(u8),
            SourceDtype::U16 => copy!(u16),
            SourceDtype::U32 => copy!(u32),
            SourceDtype::U64 => copy!(u64),
            SourceDtype::I8 => copy!(i8),
            SourceDtype::I16 => copy!(i16),
            SourceDtype::I32 => copy!(i32),
            SourceDtype::I64 => copy!(i64),
            SourceDtype::F32 => copy!(f32),
            SourceDtype::F64 => copy!(f64),
        }
        counters
            .chunks
            .fetch_add(chunks_in(ranges, job.chunk), Ordering::Relaxed);
        Ok(())
    })
}

/// Cache chunks a block of voxel ranges holds.
fn chunks_in(ranges: &[Range<u64>; 3], chunk: [u64; 3]) -> u64 {
    (0..3)
        .map(|a| ranges[a].end.div_ceil(chunk[a]) - ranges[a].start / chunk[a])
        .product()
}

/// 1 where `level`'s voxels in `ranges` are non-zero.
fn nonzero(level: &Level, ranges: &[Range<u64>; 3], counters: &Counters) -> Result<Vec<bool>, String> {
    let full = full_ranges(level, ranges);
    macro_rules! mask {
        ($t:ty) => {{
            let data: Vec<$t> = level
                .array
                .array
                .retrieve_array_subset_opt::<Vec<$t>>(&full, &codec_options())
                .map_err(|e| e.to_string())?;
            counters
                .source_bytes
                .fetch_add((data.len() * std::mem::size_of::<$t>()) as u64, Ordering::Relaxed);
            data.iter().map(|&v| v != 0).collect()
        }};
    }
    Ok(match level.dtype {
        SourceDtype::U8 => mask!(u8),
        SourceDtype::U16 => mask!(u16),
        SourceDtype::U32 => mask!(u32),
        SourceDtype::U64 => mask!(u64),
        other => return Err(format!("packed classes are unsigned integers, got {other}")),
    })
}

fn write_pack(
    store: &Arc<FilesystemStore>,
    dir: &Path,
    path: &str,
    job: &PackJob,
    codec: CacheCodec,
    counters: &Counters,
) -> Result<SourceDtype, CacheError> {
    let first = &job.members[0];
    let dtype = pack_dtype(job.members.len()).unwrap_or(SourceDtype::U64);
    let names: Vec<&str> = job.members.iter().map(Level::array_location).collect();
    let label = names.join(", ");
    let array = create_array(store, dir, path, (first.shape_vox, job.chunk, dtype), codec, &label)?;
    let whole = [[[0; 3], first.chunk_grid_shape_for(job.chunk)]];
    let blocks = blocks(&whole, job.chunk, first.shape_vox);
    blocks.par_iter().with_max_len(1).try_for_each(|ranges| {
        let voxels = ranges.iter().map(|r| (r.end - r.start) as usize).product::<usize>();
        let mut bits = vec![0u64; voxels];
        for (bit, member) in job.members.iter().enumerate() {
            let mask = nonzero(member, ranges, counters).map_err(|message| CacheError::Copy {
                source_array: member.array_location().to_owned(),
                array: dir.join(path).display().to_string(),
                message,
            })?;
            for (b, m) in bits.iter_mut().zip(mask) {
                *b |= u64::from(m) << bit;
            }
        }
        let spatial: Vec<Range<u64>> = ranges.to_vec();
        let stored = match dtype {
            SourceDtype::U8 => array.store_array_subset_opt(
                &spatial,
                bits.iter().map(|&b| b as u8).collect::<Vec<_>>(),
                &codec_options(),
            ),
            SourceDtype::U16 => array.store_array_subset_opt(
                &spatial,
                bits.iter().map(|&b| b as u16).collect::<Vec<_>>(),
                &codec_options(),
            ),
            SourceDtype::U32 => array.store_array_subset_opt(
                &spatial,
                bits.iter().map(|&b| b as u32).collect::<Vec<_>>(),
                &codec_options(),
            ),
            _ => array.store_array_subset_opt(&spatial, bits, &codec_options()),
        };
        stored.map_err(|e| CacheError::Copy {
            source_array: label.clone(),
            array: dir.join(path).display().to_string(),
            message: e.to_string(),
        })?;
        counters
            .chunks
            .fetch_add(chunks_in(ranges, job.chunk), Ordering::Relaxed);
        Ok::<(), CacheError>(())
    })?;
    Ok(dtype)
}

/// Folders under `dir/arrays` and `dir/packs` that `manifest` does not name.
fn unreferenced(dir: &Path, manifest: &Manifest) -> Vec<PathBuf> {
    let named: HashSet<&str> = manifest
        .arrays
        .iter()
        .map(|e| e.path.as_str())
        .chain(manifest.packs.iter().map(|p| p.path.as_str()))
        .collect();
    let mut out = Vec::new();
    for kind in ["arrays", "packs"] {
        let Ok(entries) = std::fs::read_dir(dir.join(kind)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = format!("{kind}/{}", e.file_name().to_string_lossy());
            if !named.contains(name.as_str()) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Bytes of the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}
