//! Synthetic data at the scale of real training sets: many raw volumes, many crops, many
//! classes, a choice of codec. For benchmarks of cold reads, caches that hold a fraction of the
//! working set, and time to first batch (see `docs/bench.md`).
//!
//! ```text
//! DIR/datasplit.csv   DIR/spec.yaml
//! DIR/{v2,v3}/vol{i}.zarr/recon-1/em/fibsem-uint8/{s0,s1,s2}
//! DIR/{v2,v3}/vol{i}.zarr/recon-1/labels/groundtruth/crop{j}/{class}/{s0,s1}
//! ```
//!
//! Volume `i` is the scene of seed `seed + i`. Its crops lie at offsets drawn from the seed, on
//! the raw s0 grid and not aligned with chunks; crop `j` (numbered across volumes from 1) is in
//! the validate split when `j % 5 == 0`, else in train. Classes: `mito`, `er`, `nuc`, `pm`, then
//! `c4`, `c5`, …: class `k ≥ 4` is material `k mod 4` inside the band
//! `(⌊z/8⌋ + ⌊y/8⌋ + ⌊x/8⌋) mod ⌈classes/4⌉ = ⌊k/4⌋` of the volume's voxels, so every class is
//! a distinct, sparse binary label.

use std::fmt::Write as _;
use std::sync::Arc;

use rayon::prelude::*;
use zarrs::filesystem::FilesystemStore;

use super::scene::{ER, MITO, NUC1, NUC2, PM, make_scene, mix};
use super::{
    CLASSES, Data, Dims, Raw, S0_NM, SynthCodec, SynthCrop, SynthError, SynthOptions, T0_NM, Writer, downsample,
    io_err, level_translation,
};

/// The scale of a [`SynthOptions::many`] dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthMany {
    /// Raw volumes (separate zarr containers).
    pub volumes: usize,
    /// Label crops in all, spread evenly over the volumes.
    pub crops: usize,
    /// Classes per crop (≥ 1; the first four are the scene's materials).
    pub classes: usize,
    /// Edge of a crop in s0 voxels (at most the raw volume's edge).
    pub crop_vox: u64,
}

impl Default for SynthMany {
    fn default() -> Self {
        Self {
            volumes: 20,
            crops: 300,
            classes: 4,
            crop_vox: 64,
        }
    }
}

/// The class names of a many-class dataset.
pub(crate) fn class_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|k| CLASSES.get(k).map_or_else(|| format!("c{k}"), |c| (*c).to_string()))
        .collect()
}

/// Whether the voxel of material `code` at `[z, y, x]` belongs to class `k`.
fn in_class(k: usize, bands: usize, code: u8, v: [usize; 3]) -> bool {
    let material = match k % 4 {
        0 => code == MITO,
        1 => code == ER,
        2 => code == NUC1 || code == NUC2,
        _ => code == PM,
    };
    material && (k < 4 || (v[0] / 8 + v[1] / 8 + v[2] / 8) % bands == k / 4)
}

/// Write the volumes, their crops, the CSV and the spec into `tmp`; the crops written.
pub(super) fn build_many(
    tmp: &std::path::Path,
    options: &SynthOptions,
    many: &SynthMany,
    d: &Dims,
) -> Result<(Raw, Vec<SynthCrop>), SynthError> {
    if many.volumes == 0 || many.crops == 0 || many.classes == 0 || many.crop_vox == 0 || many.crop_vox > d.raw {
        return Err(SynthError::Layout(format!(
            "{} volumes, {} crops, {} classes and crops of {}³ voxels: each must be at least 1, and crops at most the volume's {}³",
            many.volumes, many.crops, many.classes, many.crop_vox, d.raw
        )));
    }
    let classes = class_names(many.classes);
    let n = d.raw as usize;
    let mut crops = Vec::new();
    let mut first_raw = None;
    for volume in 0..many.volumes {
        let seed = options.seed.wrapping_add(volume as u64);
        let scene = make_scene(d.raw, seed);
        let mut codes = vec![0u8; n * n * n];
        codes.par_chunks_mut(n * n).enumerate().for_each(|(z, plane)| {
            for (i, c) in plane.iter_mut().enumerate() {
                *c = scene.code([z as f64, (i / n) as f64, (i % n) as f64]);
            }
        });
        let raw = Raw::render(d, &codes, seed);
        let count = many.crops / many.volumes + usize::from(volume < many.crops % many.volumes);
        let first = crops.len() + 1;
        let layouts: Vec<ManyCrop> = (0..count)
            .map(|c| ManyCrop::place(first + c, seed, c, many.crop_vox, d.raw))
            .collect();
        let mut foreground = vec![Vec::new(); layouts.len()];
        for (v, variant) in options.variants.iter().enumerate() {
            let root = tmp.join(variant.dir_name()).join(format!("vol{volume}.zarr"));
            std::fs::create_dir_all(&root).map_err(io_err(&root))?;
            let store = Arc::new(FilesystemStore::new(&root).map_err(|e| SynthError::Zarr {
                path: root.display().to_string(),
                message: e.to_string(),
            })?);
            let w = Writer {
                root: &root,
                store,
                variant: *variant,
                dims: d,
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
            for (crop, fg) in layouts.iter().zip(&mut foreground) {
                let counts = crop.write(&w, &codes, n, &classes)?;
                if v == 0 {
                    *fg = counts;
                }
            }
        }
        crops.extend(
            layouts
                .iter()
                .zip(foreground)
                .map(|(c, fg)| c.report(volume, &classes, fg)),
        );
        first_raw.get_or_insert(raw);
    }
    write_csv_and_spec(tmp, options, many, &crops)?;
    let raw = first_raw.ok_or_else(|| SynthError::Layout("no volume written".to_owned()))?;
    Ok((raw, crops))
}

/// One crop of a many-crop dataset.
struct ManyCrop {
    number: usize,
    start: [u64; 3],
    size: u64,
}

impl ManyCrop {
    /// Crop `number`, the `index`-th of its volume, at an offset drawn from the volume's seed.
    fn place(number: usize, seed: u64, index: usize, size: u64, raw: u64) -> ManyCrop {
        let room = raw - size + 1;
        let start = [0u64, 1, 2].map(|a| mix(seed ^ ((index as u64) << 8 | a).wrapping_mul(0x9E37_79B9)) % room);
        ManyCrop { number, start, size }
    }

    fn translation_nm(&self) -> [f64; 3] {
        [0, 1, 2].map(|a| T0_NM[a] + self.start[a] as f64 * S0_NM)
    }

    /// Write every class (s0, s1); the foreground voxels per class at s0.
    fn write(&self, w: &Writer<'_>, codes: &[u8], n: usize, classes: &[String]) -> Result<Vec<u64>, SynthError> {
        let group = format!("recon-1/labels/groundtruth/crop{}", self.number);
        w.group(&group, None)?;
        let t = self.translation_nm();
        let scales = vec![[S0_NM; 3], [2.0 * S0_NM; 3]];
        let translations = vec![t, level_translation(t, 1)];
        let bands = classes.len().div_ceil(4);
        let s = self.size as usize;
        let start = self.start.map(|v| v as usize);
        let mut foreground = Vec::with_capacity(classes.len());
        for (k, class) in classes.iter().enumerate() {
            let class_group = format!("{group}/{class}");
            w.group(&class_group, Some((class, &scales, &translations)))?;
            let mut bin = vec![0u8; s * s * s];
            for z in 0..s {
                for y in 0..s {
                    for x in 0..s {
                        let v = [z + start[0], y + start[1], x + start[2]];
                        let code = codes[(v[0] * n + v[1]) * n + v[2]];
                        bin[(z * s + y) * s + x] = u8::from(in_class(k, bands, code, v));
                    }
                }
            }
            foreground.push(bin.iter().filter(|v| **v != 0).count() as u64);
            let shape0 = [self.size; 3];
            let bin1 = downsample(&bin, shape0, |v| v.iter().copied().max().unwrap_or(0));
            w.array(&format!("{class_group}/s0"), shape0, Data::U8(&bin))?;
            w.array(&format!("{class_group}/s1"), shape0.map(|v| v / 2), Data::U8(&bin1))?;
        }
        Ok(foreground)
    }

    fn report(&self, volume: usize, classes: &[String], foreground_vox: Vec<u64>) -> SynthCrop {
        SynthCrop {
            name: format!("vol{volume}/crop{}", self.number),
            split: if self.number.is_multiple_of(5) {
                "validate"
            } else {
                "train"
            }
            .to_owned(),
            classes: classes.to_vec(),
            shape_vox: [self.size; 3],
            translation_nm: self.translation_nm(),
            foreground_vox,
        }
    }
}

/// The datasplit CSV over the first variant's volumes, and a spec of 64³ arrays over every class.
fn write_csv_and_spec(
    tmp: &std::path::Path,
    options: &SynthOptions,
    many: &SynthMany,
    crops: &[SynthCrop],
) -> Result<(), SynthError> {
    let variant = options.variants[0].dir_name();
    let mut csv = String::new();
    for c in crops {
        let (volume, crop) = c.name.split_once('/').unwrap_or(("vol0", c.name.as_str()));
        let _ = writeln!(
            csv,
            "\"{}\",\"{variant}/{volume}.zarr\",\"recon-1/em/fibsem-uint8\",\"{variant}/{volume}.zarr\",\"recon-1/labels/groundtruth/{crop}/[{}]\"",
            c.split,
            c.classes.join(",")
        );
    }
    let csv_path = tmp.join("datasplit.csv");
    std::fs::write(&csv_path, csv).map_err(io_err(&csv_path))?;
    let edge = many.crop_vox.min(64);
    let spec = format!(
        "version: 1\nname: synth-many\nclasses: [{}]\narrays:\n  inputs:\n    raw: {{ shape: [{edge}, {edge}, {edge}], scale: [8, 8, 8] }}\n  targets:\n    labels: {{ shape: [{edge}, {edge}, {edge}], scale: [8, 8, 8] }}\ndata:\n  csv: datasplit.csv\nsampling:\n  seed: 42\n  pad: true\nloader:\n  batch_size: 8\n  workers: 2\n",
        class_names(many.classes).join(", ")
    );
    let spec_path = tmp.join("spec.yaml");
    std::fs::write(&spec_path, spec).map_err(io_err(&spec_path))?;
    Ok(())
}

/// The v2 compressor and v3 inner codec of `codec`.
pub(super) fn codec_json(codec: SynthCodec) -> (serde_json::Value, serde_json::Value) {
    use serde_json::json;
    match codec {
        SynthCodec::BloscZstd => (
            json!({"id": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 1, "blocksize": 0}),
            json!({"name": "zstd", "configuration": {"level": 3, "checksum": false}}),
        ),
        SynthCodec::BloscLz4 => (
            json!({"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}),
            json!({"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "shuffle",
                "typesize": 1, "blocksize": 0}}),
        ),
        SynthCodec::Gzip => (
            json!({"id": "gzip", "level": 5}),
            json!({"name": "gzip", "configuration": {"level": 5}}),
        ),
    }
}
