//! [`TileLoader`]: the inputs of batches of tiles, read with context into preallocated buffers.
//!
//! Each input is the crop of `window_vox` voxels centred on the unclipped tile, read from the raw
//! level [`choose_level`] picks for the input's voxel size (a strided copy when the voxel size
//! matches, resampled with the input's interpolation otherwise); voxels outside the raw data get
//! the spec's input pad value. The deterministic entries (`normalize`, `binarize`, `nan_to_num`,
//! `gaussian_blur`) of the validation input transforms (`augment.validate.inputs`, by default those of
//! `augment.inputs`) are applied; random ones (noise, contrast, gamma) are not. A unit that reads a
//! dataset's raw volume (a validation crop, or a `predict.raw` path that a dataset names) takes that
//! dataset's own `normalize`, and `scale: dtype` is resolved against the dtype of the level read, as
//! the loader does ([`crate::sample::intensity`]).

use std::sync::Arc;

use cellmap_schema::{ArraySpec, DatasetSpec, OutputDtype, PredictRegion, Spec, Split, ValueTransform};

use super::{PredictError, PredictPlan};
use crate::augment::spatial::SpatialDraw;
use crate::augment::value::{ValueScratch, apply_value_transforms};
use crate::rng::{Rng, STREAM_VALUE, SampleKey};
use crate::sample::intensity::resolve_dtype;
use crate::sample::{CropContext, ReadInfo, SampleScratch, read_crop};
use crate::store::ChunkCache;
use crate::store::{Level, Multiscale, choose_level};

/// Inputs of one batch of tiles.
#[derive(Debug, Clone, Default)]
pub struct TileBatch {
    /// Tile ids, in batch order (`B = tiles.len()`).
    pub tiles: Vec<usize>,
    /// Per input, `[capacity, 1, Z, Y, X]` f32; the first `B` samples are this batch's.
    buffers: Vec<Vec<f32>>,
    /// Voxels of one sample per input.
    sample_len: Vec<usize>,
}

impl TileBatch {
    /// Input `i` of the batch: `[B, 1, Z, Y, X]` f32 (Z Y X = that input's `window_vox`).
    pub fn input(&self, i: usize) -> &[f32] {
        let n = self.sample_len.get(i).copied().unwrap_or(0) * self.tiles.len();
        self.buffers.get(i).and_then(|b| b.get(..n)).unwrap_or_default()
    }

    /// Number of inputs.
    pub fn inputs(&self) -> usize {
        self.buffers.len()
    }
}

/// Reads the inputs of a list of tiles, batch by batch, into buffers allocated once.
#[derive(Debug)]
pub struct TileLoader {
    plan: Arc<PredictPlan>,
    tiles: Vec<usize>,
    next: usize,
    batch_size: usize,
    /// `[unit][input]`: the level read.
    levels: Vec<Vec<Level>>,
    /// Per input: the crop read (window shape, voxel size, interpolation).
    arrays: Vec<ArraySpec>,
    /// `[unit][input]`: the value transforms (see [`unit_transforms`]).
    transforms: Vec<Vec<Vec<ValueTransform>>>,
    fill: f32,
    cache: ChunkCache,
    scratch: SampleScratch,
    values: ValueScratch,
    seed: u64,
    batch: TileBatch,
}

impl TileLoader {
    /// A loader over `tiles` (ids of `plan`, e.g. [`super::Writer::pending`]) in batches of
    /// `batch_size` (at least 1).
    ///
    /// # Errors
    /// [`PredictError::Open`] when a raw group cannot be opened.
    pub fn open(
        spec: &Spec,
        plan: Arc<PredictPlan>,
        tiles: Vec<usize>,
        batch_size: usize,
    ) -> Result<TileLoader, PredictError> {
        let batch_size = batch_size.max(1);
        let mut opened: Vec<(String, Multiscale)> = Vec::new();
        let mut levels = Vec::with_capacity(plan.units.len());
        for unit in &plan.units {
            let ms = match opened.iter().find(|(r, _)| *r == unit.raw) {
                Some((_, ms)) => ms.clone(),
                None => {
                    let ms = Multiscale::open(&unit.raw).map_err(|e| PredictError::Open {
                        raw: unit.raw.clone(),
                        source: Box::new(e),
                    })?;
                    opened.push((unit.raw.clone(), ms.clone()));
                    ms
                }
            };
            let per_input = plan
                .inputs
                .iter()
                .filter_map(|i| ms.levels.get(choose_level(&ms.levels, i.voxel_size_nm).index).cloned())
                .collect();
            levels.push(per_input);
        }
        let arrays: Vec<ArraySpec> = plan
            .inputs
            .iter()
            .map(|i| ArraySpec {
                name: i.name.clone(),
                shape_vox: i.window_vox,
                voxel_size_nm: i.voxel_size_nm,
                interpolation: spec
                    .inputs()
                    .get(i.spec_index)
                    .map_or(cellmap_schema::Interpolation::Linear, |a| a.interpolation),
                dtype: OutputDtype::Float32,
            })
            .collect();
        let transforms = unit_transforms(spec, &plan, &levels);
        let sample_len: Vec<usize> = arrays.iter().map(ArraySpec::voxels).collect();
        let batch = TileBatch {
            tiles: Vec::with_capacity(batch_size),
            buffers: sample_len.iter().map(|n| vec![0f32; n * batch_size]).collect(),
            sample_len,
        };
        let largest = arrays.iter().map(ArraySpec::voxels).max().unwrap_or(0);
        Ok(TileLoader {
            plan,
            tiles,
            next: 0,
            batch_size,
            levels,
            arrays,
            transforms,
            fill: spec.sampling().pad_value_inputs,
            cache: ChunkCache::new(spec.loader().cache_bytes),
            scratch: SampleScratch::default(),
            values: ValueScratch::with_capacity(largest),
            seed: spec.sampling().seed,
            batch,
        })
    }

    /// Tiles this loader reads in total.
    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    /// True when there is no tile to read.
    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    /// The level read for input `input` of unit `unit`.
    pub fn level(&self, unit: usize, input: usize) -> Option<&Level> {
        self.levels.get(unit).and_then(|l| l.get(input))
    }

    /// Read the inputs of one tile into `dest` (one slice per input, `window_vox` voxels each).
    ///
    /// # Errors
    /// [`PredictError::UnknownTile`] or [`PredictError::Read`].
    pub fn read_tile(&mut self, tile: usize, dest: &mut [&mut [f32]]) -> Result<(), PredictError> {
        for (i, out) in dest.iter_mut().enumerate() {
            self.read_input(tile, i, out)?;
        }
        Ok(())
    }

    /// The next batch (up to `batch_size` tiles), or `None` when every tile has been read.
    pub fn next_batch(&mut self) -> Option<Result<&TileBatch, PredictError>> {
        if self.next >= self.tiles.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.tiles.len());
        let mut batch = std::mem::take(&mut self.batch);
        batch.tiles.clear();
        batch.tiles.extend_from_slice(&self.tiles[self.next..end]);
        self.next = end;
        let mut result = Ok(());
        'tiles: for (b, &tile) in batch.tiles.iter().enumerate() {
            for (i, (buffer, &n)) in batch.buffers.iter_mut().zip(&batch.sample_len).enumerate() {
                let out = buffer.get_mut(b * n..(b + 1) * n).unwrap_or_default();
                result = self.read_input(tile, i, out);
                if result.is_err() {
                    break 'tiles;
                }
            }
        }
        self.batch = batch;
        Some(result.map(|()| &self.batch))
    }

    /// Read input `i` of one tile into `out`.
    fn read_input(&mut self, tile: usize, i: usize, out: &mut [f32]) -> Result<(), PredictError> {
        let t = self.plan.tile(tile)?;
        let raw = self.plan.units.get(t.unit).map(|u| u.raw.clone()).unwrap_or_default();
        let fail = |input: &str, message: String| PredictError::Read {
            tile,
            raw: raw.clone(),
            input: input.to_owned(),
            message,
        };
        let array = self.arrays.get(i).ok_or_else(|| fail("?", format!("no input #{i}")))?;
        let level = self
            .levels
            .get(t.unit)
            .and_then(|l| l.get(i))
            .ok_or_else(|| fail(&array.name, "no level".into()))?;
        if out.len() != array.voxels() {
            return Err(fail(
                &array.name,
                format!("destination has {} voxels, expected {}", out.len(), array.voxels()),
            ));
        }
        let mut info = ReadInfo {
            strided: 0,
            gathered: 0,
            from_packs: 0,
        };
        let draw = SpatialDraw::identity();
        let ctx = CropContext {
            cache: Some(&self.cache),
            level,
            array,
            draw: &draw,
            centre_nm: t.centre_nm,
            fill: self.fill,
        };
        let transforms = self
            .transforms
            .get(t.unit)
            .and_then(|u| u.get(i))
            .map_or(&[][..], Vec::as_slice);
        let fused = read_crop(&ctx, transforms.first(), &mut self.scratch, out, &mut info)
            .map_err(|e| fail(&array.name, e.to_string()))?;
        let transforms = &transforms[usize::from(fused)..];
        if !transforms.is_empty() {
            let key = SampleKey {
                seed: self.seed,
                epoch: 0,
                rank: 0,
                index: tile as u64,
            };
            let mut rng = Rng::new(key, STREAM_VALUE + i as u64);
            apply_value_transforms(transforms, out, array.shape_vox, &mut rng, &mut self.values)
                .map_err(|e| fail(&array.name, e.to_string()))?;
        }
        Ok(())
    }
}

/// `[unit][input]`: the deterministic validation input transforms of each unit, with the `normalize`
/// of the dataset it reads (the validation dataset of a `validation` unit, else the first dataset whose
/// raw path is the unit's) and `scale: dtype` resolved against the dtype of each input's level.
fn unit_transforms(spec: &Spec, plan: &PredictPlan, levels: &[Vec<Level>]) -> Vec<Vec<Vec<ValueTransform>>> {
    let validation: Vec<&DatasetSpec> = spec.datasets_of(Split::Validate).collect();
    plan.units
        .iter()
        .zip(levels)
        .enumerate()
        .map(|(u, (unit, levels))| {
            let dataset = match spec.predict().map(|p| &p.region) {
                Some(PredictRegion::Validation) => validation.get(u).copied(),
                _ => spec.datasets().iter().find(|d| d.raw == unit.raw),
            };
            let list = spec
                .augment()
                .inputs_with(Split::Validate, dataset.and_then(|d| d.normalize.as_ref()));
            let deterministic: Vec<ValueTransform> = list.iter().filter(|t| !t.is_random()).cloned().collect();
            levels
                .iter()
                .map(|level| resolve_dtype(&deterministic, level.dtype))
                .collect()
        })
        .collect()
}
