//! [`Writer`]: model outputs of whole tiles into the output arrays, one chunk per tile and class,
//! then a completion marker per chunk.
//!
//! A chunk file is written to a temporary name and renamed over its key (see `output.rs`), and its
//! marker is created only after that rename, so a killed writer leaves every chunk either absent,
//! old or complete, and a chunk without a marker is rewritten after a restart. Chunks are tiles,
//! so parallel writers (threads or ranks) never touch the same file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use zarrs::array::Array;
use zarrs::filesystem::FilesystemStore;

use cellmap_schema::PredictDtype;

use super::output::{AtomicStore, GroupMeta, ensure_group, ensure_parent_groups, io_err, marker_path, write_atomic};
use super::{PredictError, PredictPlan, Tile, is_local};
use crate::sampler::DistInfo;

/// Called after every completed tile with the number of tiles this writer has completed; returning
/// `false` stops the run with [`PredictError::Stopped`] (tests use it to simulate a killed writer).
pub type WriteHook = Arc<dyn Fn(u64) -> bool + Send + Sync>;

/// Writes model outputs into the OME-NGFF groups of a [`PredictPlan`]. `Sync`: share it between
/// threads; every tile is independent.
pub struct Writer {
    plan: Arc<PredictPlan>,
    /// `[unit][class]`: the group folder and its `s0` array.
    outputs: Vec<Vec<(PathBuf, Array<AtomicStore>)>>,
    completed: AtomicU64,
    hook: Option<WriteHook>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("units", &self.plan.units.len())
            .field("completed", &self.completed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Create (or reopen) every output group of `plan`: group and array metadata are written when
    /// missing and must be identical when present, so a restarted run resumes where it stopped.
    ///
    /// # Errors
    /// [`PredictError::NotLocal`] for a URL output, [`PredictError::Incompatible`] when existing
    /// metadata differs, [`PredictError::Io`]/[`PredictError::Zarr`] for filesystem failures.
    pub fn create(plan: Arc<PredictPlan>) -> Result<Writer, PredictError> {
        let mut outputs = Vec::with_capacity(plan.units.len());
        for unit in &plan.units {
            let mut per_class = Vec::with_capacity(unit.groups.len());
            for (group, class) in unit.groups.iter().zip(&plan.classes) {
                if !is_local(group) {
                    return Err(PredictError::NotLocal { path: group.clone() });
                }
                let dir = PathBuf::from(group);
                ensure_parent_groups(&dir, plan.zarr_format)?;
                ensure_group(
                    &dir,
                    &GroupMeta {
                        class,
                        zarr_format: plan.zarr_format,
                        dtype: plan.dtype,
                        shape_vox: unit.shape_vox,
                        chunk_vox: plan.tile_vox,
                        scale_nm: plan.voxel_size_nm,
                        translation_nm: unit.translation_nm,
                    },
                )?;
                per_class.push((dir.clone(), open_array(&dir)?));
            }
            outputs.push(per_class);
        }
        Ok(Writer {
            plan,
            outputs,
            completed: AtomicU64::new(0),
            hook: None,
        })
    }

    /// Install a hook called after every completed tile.
    #[must_use]
    pub fn with_hook(mut self, hook: WriteHook) -> Writer {
        self.hook = Some(hook);
        self
    }

    /// The plan.
    pub fn plan(&self) -> &Arc<PredictPlan> {
        &self.plan
    }

    /// Tiles completed by this writer (not counting those found complete on disk).
    pub fn tiles_completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// True when every class chunk of `tile` has its completion marker.
    pub fn is_done(&self, tile: usize) -> bool {
        let Ok(t) = self.plan.tile(tile) else { return false };
        self.outputs
            .get(t.unit)
            .is_some_and(|classes| classes.iter().all(|(dir, _)| marker_path(dir, t.index).exists()))
    }

    /// The tiles of one rank (`ids[rank::world_size]`) that are not complete yet, in id order.
    pub fn pending(&self, dist: DistInfo) -> Vec<usize> {
        self.plan
            .shard(dist.rank, dist.world_size)
            .into_iter()
            .filter(|&t| !self.is_done(t))
            .collect()
    }

    /// Write the outputs of a batch: `outputs` is `[B, C, Z, Y, X]` f32 (C = model channels, Z Y X =
    /// the tile shape) for the tile ids `tiles`; tiles are written in parallel.
    ///
    /// # Errors
    /// [`PredictError::OutputLength`] for a wrongly sized batch, [`PredictError::UnknownTile`], a
    /// write failure, or [`PredictError::Stopped`] from the hook.
    pub fn write_batch(&self, tiles: &[usize], outputs: &[f32]) -> Result<(), PredictError> {
        let per_tile = self.plan.model_channels * self.plan.tile_voxels();
        if outputs.len() != tiles.len() * per_tile {
            return Err(PredictError::OutputLength {
                tiles: tiles.len(),
                channels: self.plan.model_channels,
                expected: tiles.len() * per_tile,
                got: outputs.len(),
            });
        }
        tiles
            .par_iter()
            .zip(outputs.par_chunks(per_tile.max(1)))
            .try_for_each(|(&t, out)| self.write_tile(t, out))
    }

    /// Write the output of one tile: `output` is `[C, Z, Y, X]` f32 for the model channels.
    ///
    /// # Errors
    /// As [`Writer::write_batch`].
    pub fn write_tile(&self, tile: usize, output: &[f32]) -> Result<(), PredictError> {
        let plan = &*self.plan;
        let voxels = plan.tile_voxels();
        if output.len() != plan.model_channels * voxels {
            return Err(PredictError::OutputLength {
                tiles: 1,
                channels: plan.model_channels,
                expected: plan.model_channels * voxels,
                got: output.len(),
            });
        }
        let t = plan.tile(tile)?;
        let classes = self.outputs.get(t.unit).ok_or(PredictError::UnknownTile {
            tile,
            tiles: plan.tile_count(),
        })?;
        let mut chunk = vec![0f32; voxels];
        let mut bytes = Vec::new();
        for ((dir, array), &channel) in classes.iter().zip(&plan.class_channels) {
            let src = output.get(channel * voxels..(channel + 1) * voxels).unwrap_or_default();
            clip_into(&t, plan.tile_vox, src, &mut chunk);
            let index = t.index.to_vec();
            let chunk_err = |e: zarrs::array::ArrayError| PredictError::Zarr {
                path: format!("{}/s0 chunk {:?}", dir.display(), t.index),
                message: e.to_string(),
            };
            match plan.dtype {
                PredictDtype::Float32 => array.store_chunk(&index, chunk.as_slice()).map_err(chunk_err)?,
                PredictDtype::Uint8 => {
                    bytes.clear();
                    bytes.extend(chunk.iter().map(|&v| to_u8(v)));
                    array.store_chunk(&index, bytes.as_slice()).map_err(chunk_err)?;
                }
            }
            let marker = marker_path(dir, t.index);
            write_atomic(&marker, b"").map_err(io_err(&marker))?;
        }
        let n = self.completed.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(hook) = &self.hook
            && !hook(n)
        {
            return Err(PredictError::Stopped { tiles: n });
        }
        Ok(())
    }
}

/// `round(clamp(v, 0, 1) · 255)`, NaN → 0.
fn to_u8(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// Copy the in-array part of a tile's output into a full chunk; the rest becomes 0 (the fill value),
/// so nothing outside the region is written.
fn clip_into(t: &Tile, tile_vox: [usize; 3], src: &[f32], chunk: &mut [f32]) {
    let [_, ty, tx] = tile_vox;
    if t.shape_vox == tile_vox {
        chunk.copy_from_slice(src);
        return;
    }
    chunk.fill(0.0);
    for z in 0..t.shape_vox[0] {
        for y in 0..t.shape_vox[1] {
            let row = (z * ty + y) * tx;
            let n = t.shape_vox[2];
            if let (Some(d), Some(s)) = (chunk.get_mut(row..row + n), src.get(row..row + n)) {
                d.copy_from_slice(s);
            }
        }
    }
}

/// The `s0` array of a group, opened for atomic writes.
fn open_array(dir: &Path) -> Result<Array<AtomicStore>, PredictError> {
    let zerr = |e: &dyn std::fmt::Display| PredictError::Zarr {
        path: format!("{}/s0", dir.display()),
        message: e.to_string(),
    };
    let fs = Arc::new(FilesystemStore::new(dir).map_err(|e| zerr(&e))?);
    let metadata = Array::open(fs, "/s0").map_err(|e| zerr(&e))?.metadata().clone();
    Array::new_with_metadata(Arc::new(AtomicStore::new(dir.to_path_buf())), "/s0", metadata).map_err(|e| zerr(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u8_conversion_clamps_and_rounds() {
        assert_eq!(
            [-1.0, 0.0, 0.5, 1.0 / 255.0, 1.0, 7.0, f32::NAN].map(to_u8),
            [0, 0, 128, 1, 255, 255, 0]
        );
    }

    #[test]
    fn clipped_tiles_zero_the_outside() {
        let t = Tile {
            id: 0,
            unit: 0,
            index: [0; 3],
            start_vox: [0; 3],
            shape_vox: [1, 1, 2],
            centre_nm: [0.0; 3],
        };
        let src: Vec<f32> = (1..=8).map(|v| v as f32).collect();
        let mut chunk = vec![9.0; 8];
        clip_into(&t, [2, 2, 2], &src, &mut chunk);
        assert_eq!(chunk, [1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
