//! The loader's batches: [`Batch`] borrows its ring slot, [`OwnedBatch`] owns the reservation.
//! Both dereference to [`BatchData`] (arrays, layout, per-sample metadata).

use std::ops::Deref;

use crate::pipeline::{BatchData, BatchGuard, BatchLease, PipelineError};

use super::LoaderJob;

/// A batch, borrowing its ring slot until dropped; its data through [`BatchData`].
pub struct Batch<'a> {
    pub(super) guard: BatchGuard<'a, LoaderJob>,
    pub(super) epoch: u64,
    pub(super) step: u64,
}

impl Batch<'_> {
    /// The epoch of this batch (0 for validation).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The step within the epoch (the batch number for validation).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The ring slot this batch borrows.
    pub fn slot(&self) -> usize {
        self.guard.slot()
    }
}

impl Deref for Batch<'_> {
    type Target = BatchData;

    fn deref(&self) -> &BatchData {
        &self.guard
    }
}

/// The outcome of [`super::Loader::next_owned`].
pub enum NextOwned {
    /// The next batch.
    Batch(OwnedBatch),
    /// The next batch failed (the following call moves on to the batch after it).
    Failed(PipelineError),
    /// The validation pass is complete.
    End,
    /// Not ready within the timeout; `slot_held` is true when the ring slot the batch needs is
    /// still held by an earlier [`OwnedBatch`], so it cannot complete until that one is dropped.
    Pending {
        /// An earlier, still-live batch holds the slot.
        slot_held: bool,
    },
}

/// A batch that owns the reservation of its ring slot until dropped; `Send + Sync`, so it can
/// be shared through an `Arc` by everything that views its memory. Its data through
/// [`BatchData`].
pub struct OwnedBatch {
    pub(super) lease: BatchLease<LoaderJob>,
    pub(super) epoch: u64,
    pub(super) step: u64,
}

impl OwnedBatch {
    /// The epoch of this batch (0 for validation).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The step within the epoch (the batch number for validation).
    pub fn step(&self) -> u64 {
        self.step
    }
}

impl Deref for OwnedBatch {
    type Target = BatchData;

    fn deref(&self) -> &BatchData {
        &self.lease
    }
}
