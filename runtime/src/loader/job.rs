//! The loader's [`SampleJob`]: which sample each batch position reads (a training draw or a
//! validation tile), and reading it.

use std::sync::{Arc, Mutex};

use cellmap_schema::Split;

use crate::pipeline::{SampleJob, SampleMeta, SampleOut};
use crate::plan::Plan;
use crate::rng::{Rng, SampleKey};
use crate::sample::{Reader, SampleReadError, SampleRequest, SampleScratch};
use crate::sampler::{DatasetGrid, DistInfo, EpochDraws, TrainSampler};

use super::FaultHook;
use super::ahead::FetchAhead;

/// Why a loader could not fill a batch position.
#[derive(Debug, thiserror::Error)]
pub enum SampleFailure {
    /// The sampler's epoch has fewer draws than the position needs (an empty split).
    #[error("the sampler has no draw {pick} in epoch {epoch}")]
    NoDraw {
        /// The epoch.
        epoch: u64,
        /// The draw asked for.
        pick: u64,
    },
    /// Reading the sample failed.
    #[error(transparent)]
    Read(#[from] Box<SampleReadError>),
}

/// What one batch position reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Draw {
    /// A sample of dataset `dataset` (plan index) at `centre_nm`.
    Sample {
        dataset: usize,
        centre_nm: [f64; 3],
        idx: i64,
        split_index: usize,
    },
    /// No sample (the tail of the last validation batch, or an unreadable tile under `skip_and_log`).
    Empty,
}

/// The sample job of a loader.
pub struct LoaderJob {
    pub(super) reader: Reader,
    pub(super) split: Split,
    pub(super) dist: DistInfo,
    pub(super) seed: u64,
    pub(super) batch_size: u64,
    /// Batch number of the pipeline's batch 0 (training resume).
    pub(super) first_batch: u64,
    pub(super) batches_per_epoch: u64,
    /// Plan indices of this split's datasets.
    pub(super) datasets: Vec<usize>,
    pub(super) kind: JobKind,
    pub(super) fault_hook: Option<FaultHook>,
    /// Epochs before the one a worker asks for whose draws stay cached: the batches in the ring
    /// and those fetched ahead may still read (or list) them. With a spare that is refilled
    /// rather than reallocated, `epochs_behind + 2` epochs are kept.
    pub(super) epochs_behind: u64,
    /// Fetching the chunks of later batches ahead (training with a cache).
    pub(super) ahead: Option<FetchAhead>,
}

pub(super) enum JobKind {
    Train {
        sampler: TrainSampler,
        /// The epochs whose sequential draws are computed (see [`LoaderJob::epochs_behind`]).
        epochs: Mutex<Vec<(u64, Arc<EpochDraws>)>>,
    },
    Tiles {
        /// This rank's tiles: (plan dataset index, tile linear index).
        tiles: Vec<(usize, u64)>,
    },
}

impl LoaderJob {
    /// Batches of a whole validation pass, or `None` for the endless training stream.
    pub(super) fn pass_batches(&self) -> Option<u64> {
        match &self.kind {
            JobKind::Train { .. } => None,
            JobKind::Tiles { tiles } => Some((tiles.len() as u64).div_ceil(self.batch_size)),
        }
    }

    /// What position `position` of batch `batch` (pipeline numbering) reads at attempt `attempt`.
    fn draw(&self, batch: u64, position: usize, attempt: u32) -> Result<Draw, SampleFailure> {
        let batch = self.first_batch + batch;
        match &self.kind {
            JobKind::Train { sampler, epochs } => {
                let epoch = batch / self.batches_per_epoch;
                let i = (batch % self.batches_per_epoch) * self.batch_size + position as u64;
                let draws = self.epoch_draws(sampler, epochs, epoch);
                let pick = if attempt == 0 {
                    i
                } else {
                    // A replacement: a uniformly drawn draw of the same epoch, keyed by the attempt.
                    let mut rng = Rng::new(self.key(epoch, i), u64::from(attempt) << 32);
                    rng.below(draws.len().max(1))
                };
                let choice = draws
                    .get(pick % draws.len().max(1))
                    .ok_or(SampleFailure::NoDraw { epoch, pick })?;
                let plan_index = self.datasets[choice.dataset];
                let grid = &self.reader.planned().plan.datasets[plan_index].grid;
                Ok(Draw::Sample {
                    dataset: plan_index,
                    centre_nm: grid.centre(choice.grid_index),
                    idx: i as i64,
                    split_index: choice.dataset,
                })
            }
            JobKind::Tiles { tiles } => {
                let t = batch * self.batch_size + position as u64;
                if attempt > 0 {
                    // A tile has no replacement: under `skip_and_log` an unreadable tile leaves
                    // its position empty (counted and logged once), and the pass goes on.
                    return Ok(Draw::Empty);
                }
                let Some(&(plan_index, tile)) = tiles.get(t as usize) else {
                    return Ok(Draw::Empty);
                };
                let grid = &self.reader.planned().plan.datasets[plan_index].tiles;
                Ok(Draw::Sample {
                    dataset: plan_index,
                    centre_nm: grid.centre(grid.unravel(tile)),
                    idx: t as i64,
                    split_index: self.reader.planned().plan.datasets[plan_index].index,
                })
            }
        }
    }

    fn epoch_draws(
        &self,
        sampler: &TrainSampler,
        epochs: &Mutex<Vec<(u64, Arc<EpochDraws>)>>,
        epoch: u64,
    ) -> Arc<EpochDraws> {
        let mut cached = epochs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, d)) = cached.iter().find(|(e, _)| *e == epoch) {
            return Arc::clone(d);
        }
        // Workers straddle epoch boundaries with prefetch and fetching ahead: the epochs from
        // `epoch − epochs_behind` on stay. An older one that no worker holds any more is refilled
        // in place (no allocation once the cache has warmed up); otherwise a new one is made.
        let stale = |e: u64| e + self.epochs_behind < epoch;
        if let Some((e, d)) = cached.iter_mut().find(|(e, d)| stale(*e) && Arc::strong_count(d) == 1)
            && let Some(draws) = Arc::get_mut(d)
        {
            sampler.epoch_into(epoch, draws);
            *e = epoch;
            return Arc::clone(d);
        }
        let draws = Arc::new(sampler.epoch(epoch));
        // Bounded: stale epochs beyond the spare are dropped (a worker still holding one keeps
        // its own reference).
        if cached.len() as u64 >= self.epochs_behind + 2 {
            cached.retain(|(e, _)| !stale(*e));
        }
        cached.push((epoch, Arc::clone(&draws)));
        draws
    }

    /// The request of a drawn sample of batch `batch` (pipeline numbering).
    fn request(&self, batch: u64, dataset: usize, centre_nm: [f64; 3], idx: i64, attempt: u32) -> SampleRequest {
        let epoch = match self.kind {
            JobKind::Train { .. } => (self.first_batch + batch) / self.batches_per_epoch,
            JobKind::Tiles { .. } => 0,
        };
        SampleRequest {
            dataset,
            centre_nm,
            key: self.key(epoch, idx as u64 | (u64::from(attempt) << 48)),
            spatial: self.split.is_train(),
            values: true,
        }
    }

    fn key(&self, epoch: u64, index: u64) -> SampleKey {
        SampleKey {
            seed: self.seed,
            epoch,
            rank: self.dist.rank as u64,
            index,
        }
    }
}

impl SampleJob for LoaderJob {
    type Scratch = SampleScratch;
    type Error = SampleFailure;

    fn scratch(&self) -> SampleScratch {
        self.reader.scratch()
    }

    /// Batches left in the pass: a validation loader opened at step `s` yields the pass's
    /// batches from `s` on.
    fn batches(&self) -> Option<u64> {
        self.pass_batches().map(|n| n.saturating_sub(self.first_batch))
    }

    fn fill(
        &self,
        scratch: &mut SampleScratch,
        batch: u64,
        position: usize,
        attempt: u32,
        out: &mut SampleOut<'_>,
    ) -> Result<Option<SampleMeta>, SampleFailure> {
        if let Some(hook) = &self.fault_hook {
            (hook.0)(batch, position);
        }
        if let (Some(ahead), 0, 0) = (&self.ahead, position, attempt) {
            ahead.schedule(batch, &self.reader, self.batch_size as usize, |t, p| {
                match self.draw(t, p, 0) {
                    Ok(Draw::Sample {
                        dataset,
                        centre_nm,
                        idx,
                        ..
                    }) => Some(self.request(t, dataset, centre_nm, idx, 0)),
                    _ => None,
                }
            });
        }
        match self.draw(batch, position, attempt)? {
            Draw::Empty => {
                let spec = self.reader.spec();
                for i in 0..out.arrays() {
                    let fill = if i < spec.inputs().len() {
                        spec.sampling().pad_value_inputs
                    } else {
                        f32::NAN
                    };
                    out.array(i).fill_f32(fill);
                }
                Ok(None)
            }
            Draw::Sample {
                dataset,
                centre_nm,
                idx,
                split_index,
            } => {
                let request = self.request(batch, dataset, centre_nm, idx, attempt);
                if let Some(ahead) = &self.ahead {
                    ahead.prefetch_sample(&self.reader, &request);
                }
                self.reader.read(scratch, &request, out).map_err(Box::new)?;
                Ok(Some(SampleMeta {
                    idx,
                    dataset: split_index as i32,
                    centre_nm,
                }))
            }
        }
    }
}
/// The sampler's view of one planned dataset.
pub(super) fn dataset_grid(plan: &Plan, index: usize, classes: usize) -> DatasetGrid {
    let d = &plan.datasets[index];
    let annotated = d.targets.first().map_or(vec![false; classes], |t| {
        t.iter()
            .map(|c| matches!(c, crate::plan::ClassPlan::Annotated(_)))
            .collect()
    });
    let (foreground, total) = match &d.class_counts {
        Some(counts) => (
            counts.iter().map(|c| c.foreground).collect(),
            counts.iter().map(|c| c.total).collect(),
        ),
        None => (vec![0; classes], vec![0; classes]),
    };
    DatasetGrid {
        grid_shape: d.grid.shape,
        annotated,
        foreground_voxels: foreground,
        total_voxels: total,
        foreground: None,
    }
}
