//! A small synthetic CellMap-layout dataset, deterministic from a seed.
//!
//! The scene is one cell (a sphere whose shell is the plasma membrane `pm`) holding two nuclei
//! (`nuc`, large spheres), small ellipsoidal mitochondria (`mito`) and thin curved ER sheets
//! (`er`). Raw intensities depend on the structures (cytoplasm ~150, extracellular ~170,
//! membranes ~60, mito ~80, ER ~105, nuclei ~190, plus uniform noise of ±15), so a network can
//! learn the labels from raw.
//!
//! Layout (for each variant `v2` = zarr v2 + OME-NGFF 0.4, blosc-zstd with shuffle, `/`
//! separator; `v3` = zarr v3 + OME-NGFF 0.5, sharded with zstd inner chunks):
//!
//! ```text
//! DIR/datasplit.csv   DIR/spec.yaml
//! DIR/{v2,v3}/synth.zarr/recon-1/em/fibsem-uint8/{s0,s1,s2}          raw, 8/16/32 nm, uint8
//! DIR/{v2,v3}/synth.zarr/recon-1/labels/groundtruth/crop{1,2}/{class}/{s0,s1}   8/16 nm
//! ```
//!
//! Raw s0 has translation `[40, 24, 16]` nm; level `k` has scale `8·2^k` and translation
//! `t0 + (2^k − 1)·4` nm (voxel-centre convention, see [`crate::store::Multiscale`]); coarser raw levels
//! are 2×2×2 means, coarser labels 2×2×2 maxima. Crops lie on the raw s0 grid at non-chunk-aligned
//! offsets. `crop1` (train) has all four classes with `nuc` as uint64 instance ids (1, 2);
//! `crop2` (validate) lacks `pm`. Labels are uint8 0/1 otherwise.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde_json::{Value, json};
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

/// Dataset size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthSize {
    /// Raw 96³ voxels, crops 64³, chunks 32³ (fast, for tests).
    Small,
    /// Raw 192³ voxels, crops 160³ and 144³, chunks 64³ (v3: 128³ shards of 32³).
    Default,
}

/// Which on-disk formats to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthVariant {
    /// zarr v2 + OME-NGFF 0.4, blosc-zstd with shuffle, `/` dimension separator.
    V2,
    /// zarr v3 + OME-NGFF 0.5, sharded, zstd inner chunks.
    V3,
}

impl SynthVariant {
    fn dir_name(self) -> &'static str {
        match self {
            Self::V2 => "v2",
            Self::V3 => "v3",
        }
    }
}

/// The compressor of every array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SynthCodec {
    /// blosc with zstd and byte shuffle (v2), zstd (v3 inner chunks): what CellMap data uses.
    #[default]
    BloscZstd,
    /// blosc with lz4 and byte shuffle (v2 and v3).
    BloscLz4,
    /// gzip level 5 (v2 and v3).
    Gzip,
}

/// Options of [`write_synthetic`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthOptions {
    /// Seed of every random choice (structure placement, noise).
    pub seed: u64,
    /// Dataset size.
    pub size: SynthSize,
    /// Formats to write (the datasplit CSV points at the first one).
    pub variants: Vec<SynthVariant>,
    /// Replace `datasplit.csv`, `spec.yaml`, `v2/` and `v3/` in a non-empty `DIR`.
    pub force: bool,
    /// The compressor of every array.
    pub codec: SynthCodec,
    /// Many volumes, crops and classes instead of the one volume with two crops (see
    /// [`SynthMany`]); `size` sets each volume's size.
    pub many: Option<SynthMany>,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            seed: 42,
            size: SynthSize::Default,
            variants: vec![SynthVariant::V2, SynthVariant::V3],
            force: false,
            codec: SynthCodec::BloscZstd,
            many: None,
        }
    }
}

/// One label crop of the dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthCrop {
    /// `crop1` or `crop2`.
    pub name: String,
    /// `train` or `validate`.
    pub split: String,
    /// Annotated classes.
    pub classes: Vec<String>,
    /// s0 shape (voxels, `z y x`).
    pub shape_vox: [u64; 3],
    /// s0 translation (nm, `z y x`).
    pub translation_nm: [f64; 3],
    /// Foreground voxels per annotated class at s0 (same order as `classes`).
    pub foreground_vox: Vec<u64>,
}

/// What [`write_synthetic`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthReport {
    /// The output folder.
    pub dir: PathBuf,
    /// The zarr containers written (`DIR/v2/synth.zarr`, `DIR/v3/synth.zarr`).
    pub zarr_paths: Vec<PathBuf>,
    /// `DIR/datasplit.csv`.
    pub datasplit_csv: PathBuf,
    /// `DIR/spec.yaml`.
    pub spec_yaml: PathBuf,
    /// Raw shape per level s0..s2 (voxels).
    pub raw_shape_vox: Vec<[u64; 3]>,
    /// Raw scale per level s0..s2 (nm).
    pub raw_scale_nm: Vec<[f64; 3]>,
    /// Raw translation per level s0..s2 (nm).
    pub raw_translation_nm: Vec<[f64; 3]>,
    /// The label crops.
    pub crops: Vec<SynthCrop>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Why the synthetic dataset could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// `DIR` exists, is not empty and `force` is off.
    #[error("`{dir}` is not empty; pass force to replace its synthetic dataset")]
    NotEmpty {
        /// The output folder.
        dir: PathBuf,
    },
    /// No variant was requested.
    #[error("no variant requested; choose v2 and/or v3")]
    NoVariant,
    /// The requested layout cannot be written.
    #[error("synthetic layout: {0}")]
    Layout(String),
    /// A filesystem operation failed.
    #[error("`{path}`: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// zarrs failed to create or write an array.
    #[error("writing `{path}` failed: {message}")]
    Zarr {
        /// The array path.
        path: String,
        /// The zarrs error.
        message: String,
    },
}

mod many;
mod scene;

pub use many::SynthMany;

use many::{build_many, codec_json};
use scene::{ER, EXTRA, MITO, NUC1, NUC2, PM, make_scene, mix};

const CLASSES: [&str; 4] = ["mito", "er", "nuc", "pm"];
const T0_NM: [f64; 3] = [40.0, 24.0, 16.0];
const S0_NM: f64 = 8.0;

struct Dims {
    raw: u64,
    chunk: u64,
    shard: u64,
    inner: u64,
    crops: [([u64; 3], u64); 2],
}

fn dims(size: SynthSize) -> Dims {
    match size {
        SynthSize::Small => Dims {
            raw: 96,
            chunk: 32,
            shard: 64,
            inner: 32,
            crops: [([12, 20, 28], 64), ([30, 26, 20], 64)],
        },
        SynthSize::Default => Dims {
            raw: 192,
            chunk: 64,
            shard: 128,
            inner: 32,
            crops: [([12, 20, 28], 160), ([40, 30, 20], 144)],
        },
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write the synthetic dataset into `dir` (see the module docs for the layout).
///
/// Everything is written to a temporary sibling folder first and moved into `dir` at the end, so
/// an interrupted run leaves no half-written dataset in `dir`.
///
/// # Errors
/// [`SynthError::NotEmpty`] for a non-empty `dir` without `force`, [`SynthError::NoVariant`],
/// [`SynthError::Io`] and [`SynthError::Zarr`] for write failures.
pub fn write_synthetic(dir: &Path, options: &SynthOptions) -> Result<SynthReport, SynthError> {
    let started = Instant::now();
    if options.variants.is_empty() {
        return Err(SynthError::NoVariant);
    }
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io_err(dir))?;
        if entries.next().is_some() && !options.force {
            return Err(SynthError::NotEmpty { dir: dir.to_path_buf() });
        }
    }
    let name = dir
        .file_name()
        .map_or_else(|| "synth".into(), |n| n.to_string_lossy().into_owned());
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let tmp = parent.join(format!(".{name}.synth-tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let result = build(&tmp, options);
    let built = match result {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = swap_in(dir, &tmp, options) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    let (raw_shape_vox, raw_scale_nm, raw_translation_nm, crops) = built;
    Ok(SynthReport {
        dir: dir.to_path_buf(),
        zarr_paths: options
            .variants
            .iter()
            .map(|v| dir.join(v.dir_name()).join("synth.zarr"))
            .collect(),
        datasplit_csv: dir.join("datasplit.csv"),
        spec_yaml: dir.join("spec.yaml"),
        raw_shape_vox,
        raw_scale_nm,
        raw_translation_nm,
        crops,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Move the finished entries from `tmp` into `dir`. A replaced entry is first moved aside into
/// `tmp/.replaced`; if any move fails, every entry swapped so far is put back, so `dir` keeps
/// its previous contents.
fn swap_in(dir: &Path, tmp: &Path, options: &SynthOptions) -> Result<(), SynthError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let aside = tmp.join(".replaced");
    std::fs::create_dir_all(&aside).map_err(io_err(&aside))?;
    let mut entries: Vec<&str> = vec!["datasplit.csv", "spec.yaml"];
    entries.extend(options.variants.iter().map(|v| v.dir_name()));
    // (entry, whether a previous version was moved aside)
    let mut swapped: Vec<(&str, bool)> = Vec::new();
    let rollback = |swapped: &[(&str, bool)]| {
        for &(entry, had) in swapped.iter().rev() {
            let target = dir.join(entry);
            let _ = std::fs::remove_dir_all(&target).or_else(|_| std::fs::remove_file(&target));
            if had {
                let _ = std::fs::rename(aside.join(entry), &target);
            }
        }
    };
    for entry in entries {
        let target = dir.join(entry);
        let had = target.symlink_metadata().is_ok();
        if had && let Err(e) = std::fs::rename(&target, aside.join(entry)) {
            rollback(&swapped);
            return Err(io_err(&target)(e));
        }
        let source = tmp.join(entry);
        if let Err(e) = std::fs::rename(&source, &target) {
            if had {
                let _ = std::fs::rename(aside.join(entry), &target);
            }
            rollback(&swapped);
            return Err(io_err(&source)(e));
        }
        swapped.push((entry, had));
    }
    Ok(())
}

type Built = (Vec<[u64; 3]>, Vec<[f64; 3]>, Vec<[f64; 3]>, Vec<SynthCrop>);

/// Level `k` translation: `t0 + (2^k − 1)·s0/2`.
fn level_translation(t0: [f64; 3], k: u32) -> [f64; 3] {
    let shift = (f64::from(1u32 << k) - 1.0) * S0_NM / 2.0;
    t0.map(|t| t + shift)
}

fn build(tmp: &Path, options: &SynthOptions) -> Result<Built, SynthError> {
    let d = dims(options.size);
    if let Some(many) = &options.many {
        let (raw, crops) = build_many(tmp, options, many, &d)?;
        let raw_shapes = raw.levels.iter().map(|(_, s)| *s).collect();
        return Ok((raw_shapes, raw.scale, raw.translation, crops));
    }
    let n = d.raw as usize;
    let scene = make_scene(d.raw, options.seed);
    let mut codes = vec![0u8; n * n * n];
    codes.par_chunks_mut(n * n).enumerate().for_each(|(z, plane)| {
        for (i, c) in plane.iter_mut().enumerate() {
            *c = scene.code([z as f64, (i / n) as f64, (i % n) as f64]);
        }
    });
    let raw = Raw::render(&d, &codes, options.seed);
    let crops: Vec<CropLayout> = d
        .crops
        .iter()
        .enumerate()
        .map(|(ci, (start, size))| CropLayout {
            index: ci,
            start: *start,
            size: *size,
            classes: CLASSES
                .iter()
                .filter(|c| !(ci == 1 && **c == "pm"))
                .map(|c| (*c).to_string())
                .collect(),
            translation_nm: [0, 1, 2].map(|a| T0_NM[a] + start[a] as f64 * S0_NM),
        })
        .collect();
    let mut crop_reports = Vec::new();
    for (vi, variant) in options.variants.iter().enumerate() {
        let root = tmp.join(variant.dir_name()).join("synth.zarr");
        std::fs::create_dir_all(&root).map_err(io_err(&root))?;
        let store = Arc::new(FilesystemStore::new(&root).map_err(|e| SynthError::Zarr {
            path: root.display().to_string(),
            message: e.to_string(),
        })?);
        let w = Writer {
            root: &root,
            store,
            variant: *variant,
            dims: &d,
            codec: options.codec,
        };
        for g in [
            "",
            "recon-1",
            "recon-1/em",
            "recon-1/labels",
            "recon-1/labels/groundtruth",
        ] {
            w.group(g, None)?;
        }
        raw.write(&w)?;
        for crop in &crops {
            let fg = crop.write(&w, &codes, n)?;
            if vi == 0 {
                crop_reports.push(crop.report(fg));
            }
        }
    }
    write_csv_and_spec(tmp, &options.variants[0], &crop_reports)?;
    let raw_shapes = raw.levels.iter().map(|(_, s)| *s).collect();
    Ok((raw_shapes, raw.scale, raw.translation, crop_reports))
}

/// The raw volume: intensities per material plus noise, and two 2× mean-downsampled levels.
struct Raw {
    levels: Vec<(Vec<u8>, [u64; 3])>,
    scale: Vec<[f64; 3]>,
    translation: Vec<[f64; 3]>,
}

impl Raw {
    fn render(d: &Dims, codes: &[u8], seed: u64) -> Raw {
        let mut raw = vec![0u8; codes.len()];
        for (i, (r, c)) in raw.iter_mut().zip(codes).enumerate() {
            let base: f64 = match *c {
                EXTRA => 170.0,
                PM => 60.0,
                NUC1 | NUC2 => 190.0,
                MITO => 80.0,
                ER => 105.0,
                _ => 150.0,
            };
            let noise = (mix(seed ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)) % 31) as f64 - 15.0;
            *r = (base + noise).clamp(0.0, 255.0) as u8;
        }
        let mut levels = vec![(raw, [d.raw; 3])];
        for _ in 1..3 {
            let (prev, shape) = &levels[levels.len() - 1];
            let next = downsample(prev, *shape, |v| {
                ((v.iter().map(|&x| u32::from(x)).sum::<u32>() + 4) / 8) as u8
            });
            let shape = shape.map(|s| s / 2);
            levels.push((next, shape));
        }
        Raw {
            levels,
            scale: (0..3).map(|k| [S0_NM * f64::from(1u32 << k); 3]).collect(),
            translation: (0..3).map(|k| level_translation(T0_NM, k)).collect(),
        }
    }

    fn write(&self, w: &Writer<'_>) -> Result<(), SynthError> {
        let raw_group = "recon-1/em/fibsem-uint8";
        w.group(raw_group, Some((raw_group, &self.scale, &self.translation)))?;
        for (k, (data, shape)) in self.levels.iter().enumerate() {
            w.array(&format!("{raw_group}/s{k}"), *shape, Data::U8(data))?;
        }
        Ok(())
    }
}

/// One labelled crop: where it lies in the scene and which classes it annotates.
struct CropLayout {
    index: usize,
    start: [u64; 3],
    size: u64,
    classes: Vec<String>,
    translation_nm: [f64; 3],
}

impl CropLayout {
    /// Write every class of the crop (s0 and s1); returns the foreground voxels per class.
    fn write(&self, w: &Writer<'_>, codes: &[u8], n: usize) -> Result<Vec<u64>, SynthError> {
        let crop_group = format!("recon-1/labels/groundtruth/crop{}", self.index + 1);
        w.group(&crop_group, None)?;
        let scales = vec![[S0_NM; 3], [2.0 * S0_NM; 3]];
        let translations = vec![self.translation_nm, level_translation(self.translation_nm, 1)];
        let mut fg = Vec::new();
        for class in &self.classes {
            let group = format!("{crop_group}/{class}");
            w.group(&group, Some((class, &scales, &translations)))?;
            let ids = self.ids(class, codes, n);
            fg.push(ids.iter().filter(|v| **v != 0).count() as u64);
            let shape0 = [self.size; 3];
            if self.index == 0 && class == "nuc" {
                // Instance ids in one class, as CellMap crops have them.
                let ids1 = downsample(&ids, shape0, |v| v.iter().copied().max().unwrap_or(0));
                w.array(&format!("{group}/s0"), shape0, Data::U64(&ids))?;
                w.array(&format!("{group}/s1"), shape0.map(|v| v / 2), Data::U64(&ids1))?;
            } else {
                let bin: Vec<u8> = ids.iter().map(|v| u8::from(*v != 0)).collect();
                let bin1 = downsample(&bin, shape0, |v| v.iter().copied().max().unwrap_or(0));
                w.array(&format!("{group}/s0"), shape0, Data::U8(&bin))?;
                w.array(&format!("{group}/s1"), shape0.map(|v| v / 2), Data::U8(&bin1))?;
            }
        }
        Ok(fg)
    }

    /// The label ids of `class` over the crop (instances 1 and 2 for nuclei).
    fn ids(&self, class: &str, codes: &[u8], n: usize) -> Vec<u64> {
        let s = self.size as usize;
        let start = self.start.map(|v| v as usize);
        let mut ids = vec![0u64; s * s * s];
        for z in 0..s {
            for y in 0..s {
                for x in 0..s {
                    let c = codes[((z + start[0]) * n + y + start[1]) * n + x + start[2]];
                    ids[(z * s + y) * s + x] = match (class, c) {
                        ("nuc", NUC1) => 1,
                        ("nuc", NUC2) => 2,
                        ("mito", MITO) | ("er", ER) | ("pm", PM) => 1,
                        _ => 0,
                    };
                }
            }
        }
        ids
    }

    fn report(&self, foreground_vox: Vec<u64>) -> SynthCrop {
        SynthCrop {
            name: format!("crop{}", self.index + 1),
            split: if self.index == 0 { "train" } else { "validate" }.to_string(),
            classes: self.classes.clone(),
            shape_vox: [self.size; 3],
            translation_nm: self.translation_nm,
            foreground_vox,
        }
    }
}

/// The datasplit CSV (over the first variant's container) and the spec next to it.
fn write_csv_and_spec(tmp: &Path, variant: &SynthVariant, crops: &[SynthCrop]) -> Result<(), SynthError> {
    let container = format!("{}/synth.zarr", variant.dir_name());
    let mut csv = String::new();
    for c in crops {
        let _ = writeln!(
            csv,
            "\"{}\",\"{container}\",\"recon-1/em/fibsem-uint8\",\"{container}\",\"recon-1/labels/groundtruth/{}/[{}]\"",
            c.split,
            c.name,
            c.classes.join(",")
        );
    }
    let csv_path = tmp.join("datasplit.csv");
    std::fs::write(&csv_path, csv).map_err(io_err(&csv_path))?;
    let spec_path = tmp.join("spec.yaml");
    std::fs::write(&spec_path, SPEC_YAML).map_err(io_err(&spec_path))?;
    Ok(())
}

const SPEC_YAML: &str = "version: 1
name: synth
classes: [mito, er, nuc, pm]
arrays:
  inputs:
    raw: { shape: [64, 64, 64], scale: [8, 8, 8] }
  targets:
    labels: { shape: [64, 64, 64], scale: [8, 8, 8] }
data:
  csv: datasplit.csv
sampling:
  seed: 42
loader:
  batch_size: 4
";

/// 2×2×2 reduction of a cubic-ish C-order volume.
fn downsample<T: Copy + Default>(src: &[T], shape: [u64; 3], f: impl Fn(&[T; 8]) -> T) -> Vec<T> {
    let [sz, sy, sx] = shape.map(|v| usize::try_from(v).unwrap_or(0));
    let (nz, ny, nx) = (sz / 2, sy / 2, sx / 2);
    let mut out = vec![T::default(); nz * ny * nx];
    let mut block = [T::default(); 8];
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let mut b = 0;
                for dz in 0..2 {
                    for dy in 0..2 {
                        for dx in 0..2 {
                            block[b] = src[((2 * z + dz) * sy + 2 * y + dy) * sx + 2 * x + dx];
                            b += 1;
                        }
                    }
                }
                out[(z * ny + y) * nx + x] = f(&block);
            }
        }
    }
    out
}

enum Data<'a> {
    U8(&'a [u8]),
    U64(&'a [u64]),
}

struct Writer<'a> {
    root: &'a Path,
    store: Arc<FilesystemStore>,
    variant: SynthVariant,
    dims: &'a Dims,
    codec: SynthCodec,
}

type MultiscaleMeta<'a> = (&'a str, &'a Vec<[f64; 3]>, &'a Vec<[f64; 3]>);

impl Writer<'_> {
    fn write_json(&self, rel: &str, file: &str, value: &Value) -> Result<(), SynthError> {
        let dir = if rel.is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(rel)
        };
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join(file);
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        std::fs::write(&path, text).map_err(io_err(&path))
    }

    fn group(&self, rel: &str, multiscale: Option<MultiscaleMeta<'_>>) -> Result<(), SynthError> {
        let ms = multiscale.map(|(name, scales, translations)| {
            let axes: Vec<Value> = ["z", "y", "x"]
                .iter()
                .map(|a| json!({"name": a, "type": "space", "unit": "nanometer"}))
                .collect();
            let datasets: Vec<Value> = scales
                .iter()
                .zip(translations.iter())
                .enumerate()
                .map(|(k, (s, t))| {
                    json!({"path": format!("s{k}"), "coordinateTransformations": [
                        {"type": "scale", "scale": s}, {"type": "translation", "translation": t}]})
                })
                .collect();
            (name, axes, datasets)
        });
        match self.variant {
            SynthVariant::V2 => {
                self.write_json(rel, ".zgroup", &json!({"zarr_format": 2}))?;
                if let Some((name, axes, datasets)) = ms {
                    let attrs = json!({"multiscales": [{"version": "0.4", "name": name,
                        "axes": axes, "datasets": datasets}]});
                    self.write_json(rel, ".zattrs", &attrs)?;
                }
            }
            SynthVariant::V3 => {
                let attributes = match ms {
                    Some((name, axes, datasets)) => json!({"ome": {"version": "0.5",
                        "multiscales": [{"name": name, "axes": axes, "datasets": datasets}]}}),
                    None => json!({}),
                };
                self.write_json(
                    rel,
                    "zarr.json",
                    &json!({"zarr_format": 3, "node_type": "group", "attributes": attributes}),
                )?;
            }
        }
        Ok(())
    }

    fn array(&self, rel: &str, shape: [u64; 3], data: Data<'_>) -> Result<(), SynthError> {
        let d = self.dims;
        let (v2_dtype, v3_dtype) = match data {
            Data::U8(_) => ("|u1", "uint8"),
            Data::U64(_) => ("<u8", "uint64"),
        };
        match self.variant {
            SynthVariant::V2 => {
                let chunks = shape.map(|s| s.min(d.chunk));
                self.write_json(
                    rel,
                    ".zarray",
                    &json!({"zarr_format": 2, "shape": shape, "chunks": chunks, "dtype": v2_dtype,
                        "compressor": codec_json(self.codec).0,
                        "fill_value": 0, "order": "C", "filters": null, "dimension_separator": "/"}),
                )?;
            }
            SynthVariant::V3 => {
                let inner = shape.map(|s| s.min(d.inner));
                let shard = [0, 1, 2].map(|a| inner[a] * shape[a].min(d.shard).div_ceil(inner[a]));
                self.write_json(
                    rel,
                    "zarr.json",
                    &json!({"zarr_format": 3, "node_type": "array", "shape": shape,
                        "data_type": v3_dtype,
                        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": shard}},
                        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                        "fill_value": 0,
                        "codecs": [{"name": "sharding_indexed", "configuration": {
                            "chunk_shape": inner,
                            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                                       codec_json(self.codec).1],
                            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                                             {"name": "crc32c"}],
                            "index_location": "end"}}],
                        "attributes": {}}),
                )?;
            }
        }
        let zerr = |e: &dyn std::fmt::Display| SynthError::Zarr {
            path: self.root.join(rel).display().to_string(),
            message: e.to_string(),
        };
        let array = Array::open(self.store.clone(), &format!("/{rel}")).map_err(|e| zerr(&e))?;
        let subset = ArraySubset::new_with_shape(shape.to_vec());
        match data {
            Data::U8(v) => array.store_array_subset(&subset, v),
            Data::U64(v) => array.store_array_subset(&subset, v),
        }
        .map_err(|e| zerr(&e))
    }
}
