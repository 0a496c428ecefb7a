//! A worker's loop: claim the next (batch, position) whose slot is being filled, fill it under
//! the error policy, and mark the slot ready when its last position is done.

use std::sync::atomic::Ordering;

use cellmap_schema::ErrorPolicy;

use super::ring::{BatchData, SampleOut};
use super::{Cause, PipelineError, SampleError, SampleJob, SampleMeta, Shared, SlotState, lock, wait};

pub(super) fn worker_main<J: SampleJob>(shared: &Shared<J>, worker: usize, mut scratch: J::Scratch) {
    let prefetch = shared.slots.len() as u64;
    while let Some((batch, position)) = claim(shared) {
        let slot_index = (batch % prefetch) as usize;
        let slot = &shared.slots[slot_index];
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fill_with_policy(shared, &mut scratch, slot, batch, position)
        }));
        let mut state = lock(&shared.state);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                if !state.errors.iter().any(|(b, _)| *b == batch) {
                    state.errors.push((batch, err));
                }
            }
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_owned());
                state.fatal = Some(PipelineError::WorkerPanicked { worker, message });
                shared.done.notify_all();
                shared.work.notify_all();
                return;
            }
        }
        if let SlotState::Filling { batch: b, remaining } = &mut state.slots[slot_index]
            && *b == batch
        {
            *remaining -= 1;
            if *remaining == 0 {
                state.slots[slot_index] = SlotState::Ready { batch };
                shared.done.notify_all();
            }
        }
    }
}

/// Claim the next (batch, position) once its slot is being filled for that batch; `None` when the
/// pipeline stops or a finite job has no batch left.
fn claim<J: SampleJob>(shared: &Shared<J>) -> Option<(u64, usize)> {
    let batch_size = shared.layout.batch_size as u64;
    let prefetch = shared.slots.len() as u64;
    let mut state = lock(&shared.state);
    loop {
        if shared.shutdown.load(Ordering::SeqCst) || state.fatal.is_some() {
            return None;
        }
        let claim = state.next_claim;
        let batch = claim / batch_size;
        if shared.job.batches().is_some_and(|n| batch >= n) {
            return None;
        }
        let slot = (batch % prefetch) as usize;
        if matches!(state.slots[slot], SlotState::Filling { batch: b, .. } if b == batch) {
            state.next_claim += 1;
            return Some((batch, (claim % batch_size) as usize));
        }
        state = wait(&shared.work, state);
    }
}

fn fill_with_policy<J: SampleJob>(
    shared: &Shared<J>,
    scratch: &mut J::Scratch,
    slot: &BatchData,
    batch: u64,
    position: usize,
) -> Result<(), PipelineError> {
    let mut last = None;
    for attempt in 0..shared.max_attempts {
        let mut out = SampleOut { slot, position };
        match shared.job.fill(scratch, batch, position, attempt, &mut out) {
            Ok(meta) => {
                out.set_meta(meta.unwrap_or(SampleMeta::EMPTY));
                return Ok(());
            }
            Err(error) => {
                let cause = Cause::new(error);
                match shared.policy {
                    ErrorPolicy::Fail => {
                        return Err(SampleError { batch, position, cause }.into());
                    }
                    ErrorPolicy::SkipAndLog => {
                        shared.skipped.fetch_add(1, Ordering::Relaxed);
                        eprintln!(
                            "cellmap: skipped a sample (batch {batch}, position {position}, attempt {attempt}): {cause}"
                        );
                        last = Some(cause);
                    }
                }
            }
        }
    }
    Err(PipelineError::RetriesExhausted {
        batch,
        position,
        attempts: shared.max_attempts,
        last: last.unwrap_or_else(|| Cause::new(NoAttempt)),
    })
}

/// The cause of a retry budget of zero attempts (never: the budget is at least 1).
#[derive(Debug, thiserror::Error)]
#[error("no attempt was made")]
struct NoAttempt;
