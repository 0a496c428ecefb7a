//! The prediction loop ([`run_model`]) and an identity "model" ([`IdentityModel`]) that emits an
//! input's voxels as every class, so an output path can be tested end to end without a network.

use std::sync::Arc;
use std::time::Instant;

use cellmap_schema::Spec;

use super::input::{TileBatch, TileLoader};
use super::writer::Writer;
use super::{PredictError, PredictPlan};
use crate::sampler::DistInfo;

/// Relative tolerance when comparing voxel sizes.
const REL_TOL: f64 = 1e-6;

/// What a prediction run did.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PredictRun {
    /// Tiles of the whole plan.
    pub tiles_total: usize,
    /// Tiles of this rank found complete on disk and skipped.
    pub tiles_skipped: usize,
    /// Tiles written by this run.
    pub tiles_written: u64,
    /// Uncompressed bytes of the written chunks (whole tiles, every written class).
    pub bytes_written: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Emits the central tile of one input (its window minus the context) as every model channel.
/// The input must have the output voxel size.
#[derive(Debug, Clone)]
pub struct IdentityModel {
    input: usize,
    window_vox: [usize; 3],
    context_vox: [usize; 3],
    tile_vox: [usize; 3],
    channels: usize,
}

impl IdentityModel {
    /// The identity of input `input` (an index into [`PredictPlan::inputs`]).
    ///
    /// # Errors
    /// [`PredictError::Identity`] when there is no such input or its voxel size differs from the
    /// output's.
    pub fn new(plan: &PredictPlan, input: usize) -> Result<IdentityModel, PredictError> {
        let i = plan.inputs.get(input).ok_or_else(|| PredictError::Identity {
            message: format!(
                "input #{input} does not exist (the prediction reads {})",
                plan.inputs.len()
            ),
        })?;
        let same =
            (0..3).all(|a| (i.voxel_size_nm[a] - plan.voxel_size_nm[a]).abs() <= REL_TOL * plan.voxel_size_nm[a]);
        if !same {
            return Err(PredictError::Identity {
                message: format!(
                    "input `{}` is at {:?} nm but the output at {:?} nm; the identity needs equal voxel sizes",
                    i.name, i.voxel_size_nm, plan.voxel_size_nm
                ),
            });
        }
        Ok(IdentityModel {
            input,
            window_vox: i.window_vox,
            context_vox: plan.context_vox,
            tile_vox: plan.tile_vox,
            channels: plan.model_channels,
        })
    }

    /// Fill `out` (`[B, C, Z, Y, X]`) from the batch's input.
    pub fn forward(&self, batch: &TileBatch, out: &mut [f32]) {
        let [wz, wy, wx] = self.window_vox;
        let [cz, cy, cx] = self.context_vox;
        let [tz, ty, tx] = self.tile_vox;
        let tile = tz * ty * tx;
        let input = batch.input(self.input);
        for (b, sample) in input.chunks_exact(wz * wy * wx).enumerate() {
            for c in 0..self.channels {
                let base = (b * self.channels + c) * tile;
                for z in 0..tz {
                    for y in 0..ty {
                        let s = ((z + cz) * wy + y + cy) * wx + cx;
                        let d = base + (z * ty + y) * tx;
                        if let (Some(dst), Some(src)) = (out.get_mut(d..d + tx), sample.get(s..s + tx)) {
                            dst.copy_from_slice(src);
                        }
                    }
                }
            }
        }
    }
}

/// Run `model` over the pending tiles of this rank: read inputs in batches, call
/// `model(batch, outputs)` with `outputs` = `[B, C, Z, Y, X]` f32 (zeroed), write them.
///
/// # Errors
/// The first read, model or write error.
pub fn run_model(
    spec: &Spec,
    writer: &Writer,
    dist: DistInfo,
    batch_size: usize,
    mut model: impl FnMut(&TileBatch, &mut [f32]) -> Result<(), PredictError>,
) -> Result<PredictRun, PredictError> {
    let start = Instant::now();
    let plan: Arc<PredictPlan> = writer.plan().clone();
    let mine = plan.shard(dist.rank, dist.world_size).len();
    let pending = writer.pending(dist);
    let skipped = mine - pending.len();
    let per_tile = plan.model_channels * plan.tile_voxels();
    let mut outputs = vec![0f32; batch_size.max(1) * per_tile];
    let mut loader = TileLoader::open(spec, plan.clone(), pending, batch_size)?;
    let before = writer.tiles_completed();
    while let Some(batch) = loader.next_batch() {
        let batch = batch?;
        let out = &mut outputs[..batch.tiles.len() * per_tile];
        out.fill(0.0);
        model(batch, out)?;
        writer.write_batch(&batch.tiles, out)?;
    }
    let tiles_written = writer.tiles_completed() - before;
    Ok(PredictRun {
        tiles_total: plan.tile_count(),
        tiles_skipped: skipped,
        tiles_written,
        bytes_written: tiles_written * (plan.tile_voxels() * plan.classes.len() * plan.dtype.size_bytes()) as u64,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// [`run_model`] with the [`IdentityModel`] of input `input`.
///
/// # Errors
/// As [`IdentityModel::new`] and [`run_model`].
pub fn run_identity(
    spec: &Spec,
    writer: &Writer,
    dist: DistInfo,
    batch_size: usize,
    input: usize,
) -> Result<PredictRun, PredictError> {
    let model = IdentityModel::new(writer.plan(), input)?;
    run_model(spec, writer, dist, batch_size, |batch, out| {
        model.forward(batch, out);
        Ok(())
    })
}
