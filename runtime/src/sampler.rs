//! Training-centre samplers over abstract per-dataset sample-centre grids.
//!
//! A dataset contributes a grid of candidate centres (`grid_shape`, possibly 10⁹ of them); no
//! sampler ever lists them: a centre is a uniform integer below the grid size, unravelled, or the
//! `k`-th set bit of a [`ForegroundIndex`].
//!
//! Determinism: sample `i` of epoch `e` on rank `r` is drawn from [`Rng`]s keyed by
//! `(seed, e, r, i)`, so it is the same whatever thread asks and in whatever order. What must be
//! sequential (the class-balanced greedy sequence) is precomputed by [`TrainSampler::epoch`] in
//! `O(iterations_per_epoch)`; resuming at step `k` needs only that call. Different ranks key
//! different streams, so their draws are independent.
//!
//! Random layout of one sample (stream [`STREAM_CENTRE`]): the dataset draw (for `uniform`, one
//! unbiased integer below the total number of centres, which also fixes the centre), the
//! foreground coin, then the centre (or the foreground rank) as an unbiased integer.
//!
//! With `sampling.locality` `n > 1` ([`TrainSampler::interleaved`] sets the batch size), sample `i`
//! is draw `order[i]` of the same draws: a permutation, computed per epoch by
//! [`TrainSampler::epoch`], that reads `n` draws of a crop at one batch position of `n`
//! consecutive batches (the scheme is in `sampler/locality.rs`). The epoch's draws are those of
//! locality 1, so every weighting keeps its per-epoch counts and centre law; `class_balanced`
//! keeps its balance over the epoch, no longer over every prefix of it.
//!
//! ```
//! use cellmap_runtime::{sampler::DatasetGrid, sampler::TrainSampler};
//! use cellmap_schema::{PadPolicy, Sampling, Weighting};
//! let sampling = Sampling {
//!     seed: 1, iterations_per_epoch: 4, weighting: Weighting::Uniform, foreground: None,
//!     pad: PadPolicy { train: true, validate: true }, pad_value_inputs: 0.0,
//!     pad_value_targets: f32::NAN, validation_tiling: true, slice_axis: Default::default(),
//!     locality: 1,
//! };
//! let grid = DatasetGrid { grid_shape: [2, 3, 4], annotated: vec![true], foreground_voxels: vec![],
//!     total_voxels: vec![], foreground: None };
//! let sampler = TrainSampler::new(vec![grid], &sampling, 0, 1).unwrap();
//! let epoch = sampler.epoch(0);
//! let choice = epoch.get(3).unwrap();
//! assert!(choice.grid_index[2] < 4);
//! assert!(epoch.get(4).is_none());
//! ```

mod distributed;
mod foreground;
mod locality;

pub use distributed::{DistError, DistInfo, shard};
pub use foreground::ForegroundIndex;

use std::sync::Arc;

use cellmap_schema::{Sampling, Weighting};

use crate::rng::{Rng, STREAM_CENTRE, STREAM_EPOCH, SampleKey};
use locality::Locality;

/// Floor of a dataset's `voxel_weighted` probability, as a fraction of the uniform share
/// `1 / n_datasets` (cellmap-data clamps its dataset weights to at least 0.1).
pub const VOXEL_WEIGHT_FLOOR: f64 = 0.1;

/// Why a sampler could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamplerError {
    /// No dataset has a non-empty grid.
    #[error("no training dataset has a sample centre (all {datasets} grids are empty)")]
    NoCentres {
        /// Datasets given.
        datasets: usize,
    },
    /// Datasets disagree on the number of classes.
    #[error("dataset {dataset} lists {got} classes in `{field}`, dataset 0 lists {expected}")]
    ClassCount {
        /// Offending dataset.
        dataset: usize,
        /// The field (`annotated`, `foreground_voxels` or `total_voxels`).
        field: &'static str,
        /// Its length.
        got: usize,
        /// Classes of dataset 0.
        expected: usize,
    },
    /// `class_balanced` with no class annotated in any non-empty dataset.
    #[error("`class_balanced` sampling needs a class annotated in some dataset; none is")]
    NoAnnotatedClass,
    /// The rank is not below the world size.
    #[error("rank {rank} is not below the world size {world_size}")]
    RankOutOfRange {
        /// The rank.
        rank: usize,
        /// The world size.
        world_size: usize,
    },
    /// A foreground index covers another grid than its dataset's.
    #[error("dataset {dataset}: foreground index has grid `{index:?}`, the dataset `{grid:?}`")]
    ForegroundShape {
        /// Offending dataset.
        dataset: usize,
        /// Shape of the index.
        index: [u64; 3],
        /// Shape of the dataset grid.
        grid: [u64; 3],
    },
    /// A foreground mask does not have one flag per centre.
    #[error("foreground mask of grid `{grid_shape:?}` needs {expected} flags, got {got}")]
    MaskLength {
        /// The grid.
        grid_shape: [u64; 3],
        /// Centres of the grid.
        expected: u64,
        /// Flags given.
        got: u64,
    },
    /// `sampling.locality` above 1 with more draws per epoch than its order can index.
    #[error(
        "`sampling.locality: {locality}` reorders at most 4294967295 draws per epoch, \
         `iterations_per_epoch` is {iterations}; lower it or set `locality: 1`"
    )]
    LocalityEpochTooLong {
        /// The locality.
        locality: u32,
        /// Draws per epoch.
        iterations: u64,
    },
    /// A grid's size overflows the address space.
    #[error("grid `{grid_shape:?}` has too many centres to index")]
    GridTooLarge {
        /// The grid.
        grid_shape: [u64; 3],
    },
}

/// One training dataset (crop) as the sampler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetGrid {
    /// Candidate centres per axis `[z, y, x]` (the plan's valid sample box at target resolution).
    pub grid_shape: [u64; 3],
    /// Per class: annotated in this crop.
    pub annotated: Vec<bool>,
    /// Per class: foreground voxels in this crop (`voxel_weighted` only; may be empty otherwise).
    pub foreground_voxels: Vec<u64>,
    /// Per class: annotated voxels in this crop (`voxel_weighted` only; may be empty otherwise).
    pub total_voxels: Vec<u64>,
    /// Foreground centres of the spec's foreground-bias class, if any.
    pub foreground: Option<ForegroundIndex>,
}

impl DatasetGrid {
    /// Number of candidate centres (saturating).
    pub fn centres(&self) -> u64 {
        self.grid_shape.iter().fold(1u64, |a, &n| a.saturating_mul(n))
    }
}

/// One drawn training sample: a dataset and a centre of its grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampleChoice {
    /// Index into the sampler's datasets.
    pub dataset: usize,
    /// Centre in the dataset's grid, `[z, y, x]`.
    pub grid_index: [u64; 3],
    /// Whether the centre was drawn among foreground centres.
    pub on_foreground: bool,
}

/// How datasets are chosen, precomputed at construction.
#[derive(Debug, Clone)]
enum Choice {
    /// Prefix sums of grid sizes.
    Uniform { cumulative: Vec<u64> },
    /// Per class, the non-empty datasets annotating it; the active classes.
    ClassBalanced {
        crops_of: Vec<Vec<usize>>,
        active: Vec<usize>,
    },
    /// Prefix sums of dataset probabilities.
    Weighted { cumulative: Vec<f64> },
}

/// Draws training centres for one rank (see the module docs).
#[derive(Debug, Clone)]
pub struct TrainSampler {
    // Shared, so that cloning a sampler (each epoch's draws hold one) costs two reference counts.
    grids: Arc<[DatasetGrid]>,
    seed: u64,
    iterations: u64,
    foreground_fraction: f64,
    rank: usize,
    world_size: usize,
    choice: Arc<Choice>,
    locality: Locality,
}

impl TrainSampler {
    /// A sampler over `grids` with `sampling`'s seed, weighting, iterations and foreground bias
    /// (the bias uses each dataset's [`DatasetGrid::foreground`]; datasets without one, or with no
    /// foreground centre, fall back to uniform centres).
    ///
    /// `voxel_weighted`: class weight `w_c = bg_c / fg_c` over all datasets (1 when `fg_c = 0`),
    /// dataset weight `Σ_c fg_c(ds) · w_c`, normalised to probabilities (uniform when all are 0),
    /// each then raised to at least [`VOXEL_WEIGHT_FLOOR`]` / n` and renormalised.
    ///
    /// # Errors
    /// [`SamplerError`] when the grids are inconsistent or empty, the rank is out of range, or
    /// `class_balanced` finds no annotated class.
    pub fn new(
        grids: Vec<DatasetGrid>,
        sampling: &Sampling,
        rank: usize,
        world_size: usize,
    ) -> Result<TrainSampler, SamplerError> {
        if rank >= world_size {
            return Err(SamplerError::RankOutOfRange { rank, world_size });
        }
        let classes = grids.first().map_or(0, |g| g.annotated.len());
        for (i, g) in grids.iter().enumerate() {
            if g.annotated.len() != classes {
                return Err(SamplerError::ClassCount {
                    dataset: i,
                    field: "annotated",
                    got: g.annotated.len(),
                    expected: classes,
                });
            }
            if let Some(f) = &g.foreground
                && f.grid_shape() != g.grid_shape
            {
                return Err(SamplerError::ForegroundShape {
                    dataset: i,
                    index: f.grid_shape(),
                    grid: g.grid_shape,
                });
            }
        }
        if sampling.locality > 1 && sampling.iterations_per_epoch > u64::from(u32::MAX) {
            return Err(SamplerError::LocalityEpochTooLong {
                locality: sampling.locality,
                iterations: sampling.iterations_per_epoch,
            });
        }
        let sizes: Vec<u64> = grids.iter().map(DatasetGrid::centres).collect();
        if sizes.iter().all(|&s| s == 0) {
            return Err(SamplerError::NoCentres { datasets: grids.len() });
        }
        let choice = match sampling.weighting {
            Weighting::Uniform => {
                let mut total = 0u64;
                let cumulative = sizes.iter().map(|&s| {
                    total = total.saturating_add(s);
                    total
                });
                Choice::Uniform {
                    cumulative: cumulative.collect(),
                }
            }
            Weighting::ClassBalanced => {
                let mut crops_of = vec![Vec::new(); classes];
                for (i, g) in grids.iter().enumerate().filter(|(i, _)| sizes[*i] > 0) {
                    for (c, _) in g.annotated.iter().enumerate().filter(|(_, a)| **a) {
                        crops_of[c].push(i);
                    }
                }
                let active: Vec<usize> = (0..classes).filter(|&c| !crops_of[c].is_empty()).collect();
                if active.is_empty() {
                    return Err(SamplerError::NoAnnotatedClass);
                }
                Choice::ClassBalanced { crops_of, active }
            }
            Weighting::VoxelWeighted => Choice::Weighted {
                cumulative: voxel_weights(&grids, &sizes, classes)?,
            },
        };
        Ok(TrainSampler {
            grids: grids.into(),
            seed: sampling.seed,
            iterations: sampling.iterations_per_epoch,
            foreground_fraction: sampling.foreground.as_ref().map_or(0.0, |f| f.fraction),
            rank,
            world_size,
            choice: Arc::new(choice),
            locality: Locality {
                visits: u64::from(sampling.locality.max(1)),
                width: 1,
            },
        })
    }

    /// This sampler with its `sampling.locality` visits interleaved across `width` batch positions
    /// (the loader's batch size; see the module docs). Without it the width is 1: a crop's visit
    /// takes `locality` consecutive samples. No effect at locality 1.
    #[must_use]
    pub fn interleaved(mut self, width: u64) -> TrainSampler {
        self.locality.width = width.max(1);
        self
    }

    /// The datasets, in the order of [`SampleChoice::dataset`].
    pub fn grids(&self) -> &[DatasetGrid] {
        &self.grids
    }

    /// This sampler's rank and world size.
    pub fn rank(&self) -> (usize, usize) {
        (self.rank, self.world_size)
    }

    /// Samples per epoch on this rank.
    pub fn iterations_per_epoch(&self) -> u64 {
        self.iterations
    }

    fn key(&self, epoch: u64, index: u64) -> SampleKey {
        SampleKey {
            seed: self.seed,
            epoch,
            rank: self.rank as u64,
            index,
        }
    }

    /// Prepares epoch `epoch`: precomputes the class-balanced crop sequence (other weightings need
    /// nothing) and, at `sampling.locality` above 1, the order of the epoch's draws (`O(iterations)`
    /// draws of the datasets), after which any sample of the epoch can be drawn in any order.
    pub fn epoch(&self, epoch: u64) -> EpochDraws {
        let mut draws = EpochDraws {
            sampler: self.clone(),
            epoch,
            sequence: Vec::new(),
            counts: Vec::new(),
            ties: Vec::new(),
            order: Vec::new(),
            datasets: Vec::new(),
            per_dataset: Vec::new(),
        };
        self.epoch_into(epoch, &mut draws);
        draws
    }

    /// [`TrainSampler::epoch`] into existing draws (of any epoch of this sampler), reusing their
    /// memory: once they have held an epoch, refilling them allocates nothing.
    pub fn epoch_into(&self, epoch: u64, draws: &mut EpochDraws) {
        // A clone of the sampler is two reference counts, no allocation.
        draws.sampler = self.clone();
        draws.epoch = epoch;
        draws.sequence.clear();
        if let Choice::ClassBalanced { crops_of, active } = &*self.choice {
            let mut rng = Rng::new(self.key(epoch, 0), STREAM_EPOCH);
            let (counts, ties) = (&mut draws.counts, &mut draws.ties);
            counts.clear();
            counts.resize(crops_of.len(), 0);
            ties.clear();
            ties.reserve(active.len());
            draws.sequence.reserve(usize::try_from(self.iterations).unwrap_or(0));
            for _ in 0..self.iterations {
                let least = active.iter().map(|&c| counts[c]).min().unwrap_or(0);
                ties.clear();
                ties.extend(active.iter().copied().filter(|&c| counts[c] == least));
                let class = ties[rng.below(ties.len() as u64) as usize];
                let crops = &crops_of[class];
                let crop = crops[rng.below(crops.len() as u64) as usize];
                for (c, _) in self.grids[crop].annotated.iter().enumerate().filter(|(_, a)| **a) {
                    counts[c] += 1;
                }
                draws.sequence.push(crop as u32);
            }
        }
        draws.order.clear();
        if !self.locality.is_identity() {
            let mut datasets = std::mem::take(&mut draws.datasets);
            datasets.clear();
            // Draws of index < iterations exist (a class-balanced sequence has one per step).
            datasets.extend((0..self.iterations).map(|j| draws.draw(j).map_or(0, |c| c.dataset as u32)));
            self.locality
                .order(&datasets, self.grids.len(), &mut draws.per_dataset, &mut draws.order);
            draws.datasets = datasets;
        }
    }
}

/// Dataset probabilities for `voxel_weighted`, as prefix sums.
fn voxel_weights(grids: &[DatasetGrid], sizes: &[u64], classes: usize) -> Result<Vec<f64>, SamplerError> {
    for (i, g) in grids.iter().enumerate() {
        for (field, len) in [
            ("foreground_voxels", g.foreground_voxels.len()),
            ("total_voxels", g.total_voxels.len()),
        ] {
            if len != classes {
                return Err(SamplerError::ClassCount {
                    dataset: i,
                    field,
                    got: len,
                    expected: classes,
                });
            }
        }
    }
    let class_weight: Vec<f64> = (0..classes)
        .map(|c| {
            let fg: u64 = grids.iter().map(|g| g.foreground_voxels[c]).sum();
            let total: u64 = grids.iter().map(|g| g.total_voxels[c]).sum();
            if fg == 0 {
                1.0
            } else {
                total.saturating_sub(fg) as f64 / fg as f64
            }
        })
        .collect();
    let raw: Vec<f64> = grids
        .iter()
        .zip(sizes)
        .map(|(g, &s)| {
            if s == 0 {
                return 0.0;
            }
            (0..classes)
                .map(|c| g.foreground_voxels[c] as f64 * class_weight[c])
                .sum()
        })
        .collect();
    let eligible = sizes.iter().filter(|&&s| s > 0).count() as f64;
    let sum: f64 = raw.iter().sum();
    let floor = VOXEL_WEIGHT_FLOOR / eligible;
    let probs: Vec<f64> = raw
        .iter()
        .zip(sizes)
        .map(|(&w, &s)| match (s, sum > 0.0) {
            (0, _) => 0.0,
            (_, true) => (w / sum).max(floor),
            (_, false) => 1.0,
        })
        .collect();
    let total: f64 = probs.iter().sum();
    let mut acc = 0.0;
    Ok(probs
        .iter()
        .map(|p| {
            acc += p / total;
            acc
        })
        .collect())
}

/// Unravels a row-major index of a grid of `shape`.
fn unravel(linear: u64, shape: [u64; 3]) -> [u64; 3] {
    let x = linear % shape[2].max(1);
    let rest = linear / shape[2].max(1);
    [rest / shape[1].max(1), rest % shape[1].max(1), x]
}

/// One epoch's draws on one rank, random-access by sample index.
#[derive(Debug, Clone)]
pub struct EpochDraws {
    sampler: TrainSampler,
    epoch: u64,
    /// Class-balanced crop per step (empty for other weightings).
    sequence: Vec<u32>,
    /// Scratch of the class-balanced draw: samples per class so far.
    counts: Vec<u64>,
    /// Scratch of the class-balanced draw: the classes with the fewest samples.
    ties: Vec<usize>,
    /// `sampling.locality`: the draw read as sample `i` (empty at locality 1: draw `i`).
    order: Vec<u32>,
    /// Scratch of the locality order: the dataset of each draw.
    datasets: Vec<u32>,
    /// Scratch of the locality order, per dataset.
    per_dataset: Vec<[u64; 3]>,
}

impl EpochDraws {
    /// Samples in the epoch (`iterations_per_epoch`).
    pub fn len(&self) -> u64 {
        self.sampler.iterations
    }

    /// True when the epoch has no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The epoch number.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The key of sample `i` of this epoch (for the sample's other random streams).
    pub fn key(&self, i: u64) -> SampleKey {
        self.sampler.key(self.epoch, i)
    }

    /// Sample `i` of the epoch, `None` when `i ≥ iterations_per_epoch`: draw `i`, or at
    /// `sampling.locality` above 1 the draw its order puts there ([`EpochDraws::source`]).
    pub fn get(&self, i: u64) -> Option<SampleChoice> {
        self.draw(self.source(i)?)
    }

    /// The draw read as sample `i` (`i` itself at locality 1), `None` when `i ≥ iterations_per_epoch`.
    pub fn source(&self, i: u64) -> Option<u64> {
        if i >= self.sampler.iterations {
            return None;
        }
        if self.order.is_empty() {
            return Some(i);
        }
        self.order.get(usize::try_from(i).ok()?).map(|&j| u64::from(j))
    }

    /// Draw `i` of the epoch, in draw order.
    fn draw(&self, i: u64) -> Option<SampleChoice> {
        let s = &self.sampler;
        if i >= s.iterations {
            return None;
        }
        let mut rng = Rng::new(s.key(self.epoch, i), STREAM_CENTRE);
        let (dataset, uniform_centre) = match &*s.choice {
            Choice::Uniform { cumulative } => {
                let g = rng.below(cumulative.last().copied().unwrap_or(0));
                let d = cumulative.partition_point(|&c| c <= g);
                let before = if d == 0 { 0 } else { cumulative[d - 1] };
                (d, Some(g - before))
            }
            Choice::ClassBalanced { .. } => {
                rng.next_u64();
                (*self.sequence.get(usize::try_from(i).ok()?)? as usize, None)
            }
            Choice::Weighted { cumulative } => {
                let u = rng.uniform();
                let d = cumulative.partition_point(|&c| c <= u).min(cumulative.len() - 1);
                // Rounding can leave a zero-probability dataset at the end: step back to a real one.
                let d = (0..=d).rev().find(|&k| s.grids[k].centres() > 0).unwrap_or(d);
                (d, None)
            }
        };
        let grid = &s.grids[dataset];
        let coin = rng.bernoulli(s.foreground_fraction);
        let fg = grid.foreground.as_ref().filter(|f| coin && f.count() > 0);
        let (linear, on_foreground) = match (fg, uniform_centre) {
            (Some(f), _) => (f.select(rng.below(f.count()))?, true),
            (None, Some(c)) => (c, false),
            (None, None) => (rng.below(grid.centres()), false),
        };
        Some(SampleChoice {
            dataset,
            grid_index: unravel(linear, grid.grid_shape),
            on_foreground,
        })
    }
}
