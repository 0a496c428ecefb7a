//! What the consumer holds: a [`BatchGuard`] borrowing the pipeline, or a [`BatchLease`] that
//! owns its slot's reservation. Both dereference to [`BatchData`]; dropping either hands the
//! slot back to the workers.

use std::ops::Deref;
use std::sync::Arc;

use super::ring::BatchData;
use super::{Pipeline, PipelineError, SampleJob, Shared, lock, release_slot};

/// The outcome of [`Pipeline::next_lease`].
pub enum Leased<J: SampleJob> {
    /// The next batch.
    Batch(BatchLease<J>),
    /// The next batch failed (it is skipped; the following call moves on).
    Failed(PipelineError),
    /// A finite job has yielded all its batches.
    End,
    /// The batch is not complete yet. `slot_held` is true when its slot is still leased by an
    /// earlier batch, so it cannot complete until that lease is dropped.
    Pending {
        /// The slot the batch needs is held by an earlier, still-live lease.
        slot_held: bool,
    },
}

/// A complete batch that owns a reservation of its ring slot until dropped.
///
/// Unlike [`BatchGuard`] it does not borrow the pipeline: it can be moved to another thread or
/// shared through an `Arc`, and it keeps the slot's memory alive even after the pipeline stops.
pub struct BatchLease<J: SampleJob> {
    pub(super) shared: Arc<Shared<J>>,
    pub(super) slot: usize,
    pub(super) batch: u64,
}

impl<J: SampleJob> BatchLease<J> {
    /// Batch number since the pipeline started.
    pub fn number(&self) -> u64 {
        self.batch
    }
}

impl<J: SampleJob> Deref for BatchLease<J> {
    type Target = BatchData;

    fn deref(&self) -> &BatchData {
        &self.shared.slots[self.slot]
    }
}

impl<J: SampleJob> Drop for BatchLease<J> {
    fn drop(&mut self) {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        release_slot(shared, &mut state, self.slot, self.batch);
    }
}

/// A complete batch, borrowing its ring slot until dropped.
pub struct BatchGuard<'p, J: SampleJob> {
    pub(super) pipeline: &'p Pipeline<J>,
    pub(super) slot: usize,
    pub(super) batch: u64,
}

impl<J: SampleJob> BatchGuard<'_, J> {
    /// Batch number since the pipeline started.
    pub fn number(&self) -> u64 {
        self.batch
    }

    /// The ring slot this batch borrows (`number mod prefetch`).
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Release the slot now (same as dropping the guard).
    pub fn recycle(self) {}
}

impl<J: SampleJob> Deref for BatchGuard<'_, J> {
    type Target = BatchData;

    fn deref(&self) -> &BatchData {
        &self.pipeline.shared.slots[self.slot]
    }
}

impl<J: SampleJob> Drop for BatchGuard<'_, J> {
    fn drop(&mut self) {
        let shared = &*self.pipeline.shared;
        let mut state = lock(&shared.state);
        release_slot(shared, &mut state, self.slot, self.batch);
    }
}
