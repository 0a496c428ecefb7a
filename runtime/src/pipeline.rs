//! The batch pipeline: one persistent worker pool filling a fixed ring of preallocated batch slots.
//!
//! ```text
//!   workers (fixed count, started once) ──claim (batch, position)──► slot = batch % prefetch
//!        │ fill the sample straight into its place in the slot's buffers
//!        ▼
//!   slot complete ──► consumer: `Pipeline::next()` returns a `BatchGuard` borrowing the slot
//!                     dropping the guard releases the slot for batch + prefetch
//! ```
//!
//! Nothing is allocated per batch or per sample in the steady state: the slots, their
//! metadata arrays and every worker's scratch are allocated when the pipeline starts.
//! Batches come out in order. A worker that fails a sample either retries it with a
//! replacement (the [`SampleJob`] decides what a retry reads) or hands the error to the
//! consumer, depending on the [`ErrorPolicy`].

mod lease;
mod ring;
mod worker;

pub use lease::{BatchGuard, BatchLease, Leased};
pub use ring::{BatchData, ExternalAllocator, RingMemory, SampleOut};
#[cfg(feature = "torch")]
pub(crate) use ring::{ExternalBuffer, SlotMemory};

use std::error::Error;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cellmap_schema::ErrorPolicy;

use crate::layout::BatchLayout;
use crate::memory::MemoryError;

/// What a worker reports about one sample it filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleMeta {
    /// Sample index within its epoch (training) or tile index (validation); `-1` for an unused position.
    pub idx: i64,
    /// Dataset index within its split; `-1` for an unused position.
    pub dataset: i32,
    /// World centre of the sample in nm, `[z, y, x]`.
    pub centre_nm: [f64; 3],
}

impl SampleMeta {
    /// Meta of a batch position that holds no sample (the tail of the last validation batch).
    pub const EMPTY: SampleMeta = SampleMeta {
        idx: -1,
        dataset: -1,
        centre_nm: [f64::NAN; 3],
    };
}

/// The cause of a sample failure: the job's own error value, shared (errors are cloned to every
/// consumer call that reports them) and compared by its message.
#[derive(Clone)]
pub struct Cause(Arc<dyn Error + Send + Sync + 'static>);

impl Cause {
    /// Wrap a job's error.
    pub fn new(error: impl Error + Send + Sync + 'static) -> Self {
        Cause(Arc::new(error))
    }

    /// The job's error, to inspect or downcast (`cause.error().downcast_ref::<SampleFailure>()`).
    pub fn error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

/// A sample failure, with the context a person needs to find the bad data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("batch {batch}, position {position}: {cause}")]
pub struct SampleError {
    /// Batch number since the pipeline started.
    pub batch: u64,
    /// Position within the batch.
    pub position: usize,
    /// The job's error, naming dataset, array, centre and chunk where known.
    pub cause: Cause,
}

/// Errors the consumer receives.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PipelineError {
    /// A sample could not be read and the policy is `fail`.
    #[error(transparent)]
    Sample(#[from] SampleError),
    /// A worker thread panicked; the pipeline has stopped.
    #[error("worker thread {worker} panicked: {message}")]
    WorkerPanicked {
        /// Worker number.
        worker: usize,
        /// Panic payload, when it was a string.
        message: String,
    },
    /// `skip_and_log` could not find a readable replacement within the retry budget.
    #[error(
        "batch {batch}, position {position}: no readable replacement after {attempts} attempts; last error: {last}"
    )]
    RetriesExhausted {
        /// Batch number.
        batch: u64,
        /// Position within the batch.
        position: usize,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: Cause,
    },
}

/// The work a pipeline runs: which sample goes where, and how to fill it.
pub trait SampleJob: Send + Sync + 'static {
    /// Per-worker scratch memory, allocated once per worker at start.
    type Scratch: Send + 'static;

    /// Why a sample could not be filled.
    type Error: Error + Send + Sync + 'static;

    /// Allocate one worker's scratch.
    fn scratch(&self) -> Self::Scratch;

    /// Batches this job yields, or `None` for an endless stream.
    fn batches(&self) -> Option<u64>;

    /// Fill sample `position` of batch `batch`. `attempt` is 0 first, then counts replacements
    /// under `skip_and_log`: a job must read a different sample for each attempt.
    /// Return `Ok(None)` for a position that holds no sample (it is then filled with
    /// the job itself and reported as [`SampleMeta::EMPTY`]).
    fn fill(
        &self,
        scratch: &mut Self::Scratch,
        batch: u64,
        position: usize,
        attempt: u32,
        out: &mut SampleOut<'_>,
    ) -> Result<Option<SampleMeta>, Self::Error>;
}

/// Slot states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// Being filled for batch `batch`; `remaining` positions not yet done.
    Filling { batch: u64, remaining: usize },
    /// Complete, waiting for the consumer.
    Ready { batch: u64 },
    /// Lent to the consumer.
    Borrowed { batch: u64 },
}

struct State {
    slots: Vec<SlotState>,
    /// Next (batch, position) to claim, as `batch · B + position`.
    next_claim: u64,
    /// Next batch the consumer receives.
    next_consume: u64,
    /// First error per batch, kept until the consumer reaches that batch.
    errors: Vec<(u64, PipelineError)>,
    /// Fatal error: the pipeline stops.
    fatal: Option<PipelineError>,
}

struct Shared<J: SampleJob> {
    job: J,
    layout: Arc<BatchLayout>,
    policy: ErrorPolicy,
    max_attempts: u32,
    slots: Vec<BatchData>,
    state: Mutex<State>,
    /// Workers wait here for a free slot.
    work: Condvar,
    /// The consumer waits here for a ready slot.
    done: Condvar,
    shutdown: AtomicBool,
    skipped: AtomicU64,
}

/// Counters of a running pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PipelineStats {
    /// Samples replaced under `skip_and_log`.
    pub skipped_samples: u64,
    /// Batches handed to the consumer.
    pub batches: u64,
}

/// Settings of a pipeline.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Worker threads (≥ 1).
    pub workers: usize,
    /// Ring slots (≥ 1).
    pub prefetch: usize,
    /// Policy for unreadable samples.
    pub on_error: ErrorPolicy,
    /// Attempts per position under `skip_and_log` before giving up.
    pub max_attempts: u32,
    /// Where slot memory comes from: host buffers, or another library's allocator (libtorch
    /// tensors, set by the torch interop).
    pub memory: RingMemory,
    /// Ask an external allocator for page-locked memory (for CUDA copies).
    pub pin: bool,
}

/// A running pipeline: a fixed pool of workers and a fixed ring of slots.
pub struct Pipeline<J: SampleJob> {
    shared: Arc<Shared<J>>,
    workers: Vec<JoinHandle<()>>,
    batches: u64,
}

impl<J: SampleJob> Pipeline<J> {
    /// Allocate the ring and start the workers.
    ///
    /// # Panics
    /// When the ring cannot be allocated; [`Pipeline::try_start`] returns the error instead.
    pub fn start(job: J, layout: BatchLayout, options: &PipelineOptions) -> Self {
        Self::try_start(job, layout, options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Allocate the ring and start the workers; a ring the system refuses is an error, not an
    /// abort (nothing is left allocated).
    ///
    /// # Errors
    /// [`MemoryError::Allocation`] when a slot's memory cannot be allocated.
    pub fn try_start(job: J, layout: BatchLayout, options: &PipelineOptions) -> Result<Self, MemoryError> {
        let prefetch = options.prefetch.max(1);
        let layout = Arc::new(layout);
        let slots = (0..prefetch)
            .map(|_| BatchData::allocate(&layout, options))
            .collect::<Result<Vec<_>, _>>()?;
        let limit = job.batches();
        let states = (0..prefetch as u64)
            .map(|b| match limit {
                Some(n) if b >= n => SlotState::Ready { batch: u64::MAX },
                _ => SlotState::Filling {
                    batch: b,
                    remaining: layout.batch_size,
                },
            })
            .collect();
        let shared = Arc::new(Shared {
            job,
            layout,
            policy: options.on_error,
            max_attempts: options.max_attempts.max(1),
            slots,
            state: Mutex::new(State {
                slots: states,
                next_claim: 0,
                next_consume: 0,
                errors: Vec::new(),
                fatal: None,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            shutdown: AtomicBool::new(false),
            skipped: AtomicU64::new(0),
        });
        let workers = (0..options.workers.max(1))
            .map(|w| {
                let shared = Arc::clone(&shared);
                // Scratch is allocated here, before `start` returns, so that a worker scheduled
                // late still allocates nothing once batches flow.
                let scratch = shared.job.scratch();
                std::thread::Builder::new()
                    .name(format!("cellmap-worker-{w}"))
                    .spawn(move || worker::worker_main(&shared, w, scratch))
                    .unwrap_or_else(|e| panic!("cannot start worker thread: {e}"))
            })
            .collect();
        Ok(Pipeline {
            shared,
            workers,
            batches: 0,
        })
    }

    /// The job this pipeline runs.
    pub fn job(&self) -> &J {
        &self.shared.job
    }

    /// The batch layout.
    pub fn layout(&self) -> &BatchLayout {
        &self.shared.layout
    }

    /// Bytes of tensor memory held by the ring (`prefetch × batch_bytes`).
    pub fn ring_bytes(&self) -> u64 {
        self.shared.slots.iter().map(BatchData::bytes).sum()
    }

    /// Number of ring slots (the prefetch depth).
    pub fn slot_count(&self) -> usize {
        self.shared.slots.len()
    }

    /// The memory of array `i` of ring slot `slot`.
    #[cfg(feature = "torch")]
    pub(crate) fn slot_memory(&self, slot: usize, i: usize) -> Option<&SlotMemory> {
        self.shared.slots.get(slot)?.memory(i)
    }

    /// Number of worker threads (fixed for the pipeline's lifetime).
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Counters.
    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            skipped_samples: self.shared.skipped.load(Ordering::Relaxed),
            batches: self.batches,
        }
    }

    /// The next batch in order, `None` at the end of a finite job.
    ///
    /// Blocks until the batch is complete. The batch borrows its slot: drop it (or call
    /// [`BatchGuard::recycle`]) to let the workers refill the slot.
    pub fn next_batch(&mut self) -> Option<Result<BatchGuard<'_, J>, PipelineError>> {
        match take_next(&self.shared, None) {
            Taken::Slot { slot, batch } => {
                self.batches += 1;
                Some(Ok(BatchGuard {
                    pipeline: self,
                    slot,
                    batch,
                }))
            }
            Taken::Failed(e) => Some(Err(e)),
            Taken::End => None,
            // Unreachable without a deadline; reported as the end rather than a panic.
            Taken::TimedOut { .. } => None,
        }
    }

    /// The next batch in order as an owned lease, waiting at most `timeout`.
    ///
    /// A [`BatchLease`] keeps its ring slot reserved until the lease (and every clone of an
    /// `Arc` holding it) is dropped, independently of the pipeline's lifetime: this is what
    /// zero-copy hand-off to another owner (a Python tensor) needs. While leases are held the
    /// ring has fewer free slots; when every slot is leased the next batch cannot be filled and
    /// this returns [`Leased::Pending`] with `slot_held` set.
    pub fn next_lease(&mut self, timeout: Duration) -> Leased<J> {
        match take_next(&self.shared, Some(timeout)) {
            Taken::Slot { slot, batch } => {
                self.batches += 1;
                Leased::Batch(BatchLease {
                    shared: Arc::clone(&self.shared),
                    slot,
                    batch,
                })
            }
            Taken::Failed(e) => Leased::Failed(e),
            Taken::End => Leased::End,
            Taken::TimedOut { slot_held } => Leased::Pending { slot_held },
        }
    }
}

/// What [`take_next`] found.
enum Taken {
    Slot { slot: usize, batch: u64 },
    Failed(PipelineError),
    End,
    TimedOut { slot_held: bool },
}

/// Take the next batch's slot for the consumer (marking it borrowed), waiting at most `timeout`.
fn take_next<J: SampleJob>(shared: &Shared<J>, timeout: Option<Duration>) -> Taken {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut state = lock(&shared.state);
    let batch = state.next_consume;
    if shared.job.batches().is_some_and(|n| batch >= n) {
        return Taken::End;
    }
    let slot = (batch % shared.slots.len() as u64) as usize;
    loop {
        if let Some(fatal) = &state.fatal {
            return Taken::Failed(fatal.clone());
        }
        let ready = state.slots[slot] == (SlotState::Ready { batch });
        if ready {
            state.next_consume += 1;
            if let Some(i) = state.errors.iter().position(|(b, _)| *b == batch) {
                // The failed batch is skipped: its slot goes straight back to the workers.
                let (_, err) = state.errors.swap_remove(i);
                release_slot(shared, &mut state, slot, batch);
                return Taken::Failed(err);
            }
            state.slots[slot] = SlotState::Borrowed { batch };
            return Taken::Slot { slot, batch };
        }
        match deadline {
            None => state = wait(&shared.done, state),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let slot_held = matches!(state.slots[slot], SlotState::Borrowed { batch: b } if b < batch);
                    return Taken::TimedOut { slot_held };
                }
                state = shared
                    .done
                    .wait_timeout(state, left)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
    }
}

impl<J: SampleJob> Drop for Pipeline<J> {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _state = lock(&self.shared.state);
            self.shared.work.notify_all();
            self.shared.done.notify_all();
        }
        for handle in self.workers.drain(..) {
            // A panicking worker has already been reported as fatal.
            let _ = handle.join();
        }
    }
}

/// Hand a consumed slot to the batch `prefetch` places later.
fn release_slot<J: SampleJob>(shared: &Shared<J>, state: &mut State, slot: usize, batch: u64) {
    let next = batch + shared.slots.len() as u64;
    state.slots[slot] = if shared.job.batches().is_some_and(|n| next >= n) {
        SlotState::Ready { batch: u64::MAX }
    } else {
        SlotState::Filling {
            batch: next,
            remaining: shared.layout.batch_size,
        }
    };
    shared.work.notify_all();
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn wait<'a>(c: &Condvar, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    c.wait(g).unwrap_or_else(std::sync::PoisonError::into_inner)
}
