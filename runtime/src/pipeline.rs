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

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cellmap_schema::ErrorPolicy;

use crate::memory::MemoryError;

/// Shape of one array of a batch: `[B, channels, Z, Y, X]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArrayLayout {
    /// Batch field name.
    pub name: String,
    /// Channels (1 for inputs, the class count for targets).
    pub channels: usize,
    /// Spatial shape `[z, y, x]` in voxels.
    pub shape_vox: [usize; 3],
}

impl ArrayLayout {
    /// Elements of one sample of this array (`channels · z · y · x`).
    pub fn sample_len(&self) -> usize {
        self.channels * self.shape_vox.iter().product::<usize>()
    }
}

/// Layout of every batch in the ring.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchLayout {
    /// Samples per batch.
    pub batch_size: usize,
    /// Arrays of a batch: inputs first, then targets, in spec order.
    pub arrays: Vec<ArrayLayout>,
}

impl BatchLayout {
    /// Exact bytes of the tensor data of one batch (f32 elements; every array counted once).
    pub fn batch_bytes(&self) -> u64 {
        self.arrays
            .iter()
            .map(|a| {
                (self.batch_size as u64)
                    .saturating_mul(a.sample_len() as u64)
                    .saturating_mul(std::mem::size_of::<f32>() as u64)
            })
            .fold(0, u64::saturating_add)
    }
}

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

/// A sample failure, with the context a person needs to find the bad data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("batch {batch}, position {position}: {message}")]
pub struct SampleError {
    /// Batch number since the pipeline started.
    pub batch: u64,
    /// Position within the batch.
    pub position: usize,
    /// The rendered cause, naming dataset, array, centre and chunk where known.
    pub message: String,
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
        last: String,
    },
}

/// The work a pipeline runs: which sample goes where, and how to fill it.
pub trait SampleJob: Send + Sync + 'static {
    /// Per-worker scratch memory, allocated once per worker at start.
    type Scratch: Send + 'static;

    /// Allocate one worker's scratch.
    fn scratch(&self) -> Self::Scratch;

    /// Batches this job yields, or `None` for an endless stream.
    fn batches(&self) -> Option<u64>;

    /// Fill sample `position` of batch `batch`. `attempt` is 0 first, then counts replacements
    /// under `skip_and_log`: a job must read a different sample for each attempt.
    /// Return `Ok(None)` for a position that holds no sample (it is then filled with
    /// [`SampleJob::fill_empty`] semantics by the job itself and reported as [`SampleMeta::EMPTY`]).
    fn fill(
        &self,
        scratch: &mut Self::Scratch,
        batch: u64,
        position: usize,
        attempt: u32,
        out: &mut SampleOut<'_>,
    ) -> Result<Option<SampleMeta>, String>;
}

/// The destination of one sample: its place in every array of a slot.
pub struct SampleOut<'a> {
    slot: &'a Slot,
    position: usize,
}

impl SampleOut<'_> {
    /// Number of arrays.
    pub fn arrays(&self) -> usize {
        self.slot.arrays.len()
    }

    /// This sample's region of array `i`: `channels · z · y · x` f32 values, channel-major.
    ///
    /// # Panics
    /// If `i` is not below [`SampleOut::arrays`].
    pub fn array(&mut self, i: usize) -> &mut [f32] {
        let buf = &self.slot.arrays[i];
        let len = buf.sample_len;
        // SAFETY: the claim protocol gives this worker exclusive use of `position` in this slot
        // until it reports completion; regions of different positions are disjoint, and the
        // slot's memory outlives the pipeline's workers.
        unsafe { std::slice::from_raw_parts_mut(buf.ptr.add(self.position * len), len) }
    }
}

/// Memory of one array of one slot.
struct SlotArray {
    ptr: *mut f32,
    sample_len: usize,
    memory: SlotMemory,
}

/// Who owns a slot array's memory.
enum SlotMemory {
    Host(crate::huge_pages::HostBuffer),
    #[cfg(feature = "torch")]
    Tensor(tch::Tensor),
}

struct Slot {
    arrays: Vec<SlotArray>,
    meta: Box<[UnsafeCell<SampleMeta>]>,
}

// SAFETY: slot memory is only written through the claim protocol (one writer per position,
// no reader until the slot is complete), so sharing the raw pointers across threads is sound.
unsafe impl Send for Slot {}
// SAFETY: as above.
unsafe impl Sync for Slot {}

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
    layout: BatchLayout,
    policy: ErrorPolicy,
    max_attempts: u32,
    slots: Vec<Slot>,
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
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineOptions {
    /// Worker threads (≥ 1).
    pub workers: usize,
    /// Ring slots (≥ 1).
    pub prefetch: usize,
    /// Policy for unreadable samples.
    pub on_error: ErrorPolicy,
    /// Attempts per position under `skip_and_log` before giving up.
    pub max_attempts: u32,
    /// Allocate slot memory as (pinned, when `pin`) torch tensors instead of plain host memory.
    pub torch_memory: bool,
    /// Pin torch host memory (for CUDA copies).
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
        let mut slots: Vec<Slot> = Vec::with_capacity(prefetch);
        for _ in 0..prefetch {
            let arrays = layout
                .arrays
                .iter()
                .map(|a| {
                    let len = layout
                        .batch_size
                        .checked_mul(a.sample_len())
                        .ok_or_else(|| MemoryError::Allocation {
                            bytes: u64::MAX,
                            reason: format!(
                                "{} samples of {} floats overflow the address space",
                                layout.batch_size,
                                a.sample_len()
                            ),
                        })?;
                    allocate(len, a.sample_len(), options)
                })
                .collect::<Result<Vec<_>, _>>()?;
            slots.push(Slot {
                arrays,
                meta: (0..layout.batch_size)
                    .map(|_| UnsafeCell::new(SampleMeta::EMPTY))
                    .collect(),
            });
        }
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
                    .spawn(move || worker_main(&shared, w, scratch))
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
        self.shared
            .slots
            .iter()
            .flat_map(|s| s.arrays.iter())
            .map(|a| slot_len(a) as u64 * std::mem::size_of::<f32>() as u64)
            .sum()
    }

    /// Number of ring slots (the prefetch depth).
    pub fn slot_count(&self) -> usize {
        self.shared.slots.len()
    }

    /// The torch tensor holding array `i` of ring slot `slot` (1-D, `B · C · Z · Y · X` f32),
    /// when the pipeline allocates torch memory.
    #[cfg(feature = "torch")]
    pub(crate) fn slot_tensor(&self, slot: usize, i: usize) -> Option<&tch::Tensor> {
        match &self.shared.slots.get(slot)?.arrays.get(i)?.memory {
            SlotMemory::Tensor(t) => Some(t),
            SlotMemory::Host(_) => None,
        }
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
    shared: Arc<Shared<J>>,
    slot: usize,
    batch: u64,
}

impl<J: SampleJob> BatchLease<J> {
    /// Batch number since the pipeline started.
    pub fn number(&self) -> u64 {
        self.batch
    }

    /// The data of array `i` (`[B, C, Z, Y, X]`, row-major).
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn array(&self, i: usize) -> &[f32] {
        let a = &self.shared.slots[self.slot].arrays[i];
        // SAFETY: the slot is Borrowed until this lease is dropped: no worker writes it.
        unsafe { std::slice::from_raw_parts(a.ptr, slot_len(a)) }
    }

    /// Number of arrays.
    pub fn arrays(&self) -> usize {
        self.shared.layout.arrays.len()
    }

    /// The batch layout.
    pub fn layout(&self) -> &BatchLayout {
        &self.shared.layout
    }

    /// Per-sample metadata, one entry per batch position.
    pub fn meta(&self) -> impl ExactSizeIterator<Item = SampleMeta> + '_ {
        // SAFETY: as in `array`.
        self.shared.slots[self.slot].meta.iter().map(|m| unsafe { *m.get() })
    }

    /// Number of positions holding a sample.
    pub fn len(&self) -> usize {
        self.meta().filter(|m| m.idx >= 0).count()
    }

    /// True when no position holds a sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<J: SampleJob> Drop for BatchLease<J> {
    fn drop(&mut self) {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        release_slot(shared, &mut state, self.slot, self.batch);
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

/// A complete batch, borrowing its ring slot until dropped.
pub struct BatchGuard<'p, J: SampleJob> {
    pipeline: &'p Pipeline<J>,
    slot: usize,
    batch: u64,
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

    /// The data of array `i` (`[B, C, Z, Y, X]`, row-major).
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn array(&self, i: usize) -> &[f32] {
        let a = &self.pipeline.shared.slots[self.slot].arrays[i];
        // SAFETY: the slot is Borrowed: no worker writes it until this guard is dropped.
        unsafe { std::slice::from_raw_parts(a.ptr, slot_len(a)) }
    }

    /// Per-sample metadata, one entry per batch position.
    pub fn meta(&self) -> impl ExactSizeIterator<Item = SampleMeta> + '_ {
        // SAFETY: as in `array`.
        self.pipeline.shared.slots[self.slot]
            .meta
            .iter()
            .map(|m| unsafe { *m.get() })
    }

    /// Number of positions holding a sample (smaller than the batch size only at the end of validation).
    pub fn len(&self) -> usize {
        self.meta().filter(|m| m.idx >= 0).count()
    }

    /// True when no position holds a sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The torch tensor backing array `i` (host memory; pinned when the pipeline pins).
    #[cfg(feature = "torch")]
    pub fn host_tensor(&self, i: usize) -> Option<&tch::Tensor> {
        match &self.pipeline.shared.slots[self.slot].arrays[i].memory {
            SlotMemory::Tensor(t) => Some(t),
            SlotMemory::Host(_) => None,
        }
    }

    /// Release the slot now (same as dropping the guard).
    pub fn recycle(self) {}
}

impl<J: SampleJob> Drop for BatchGuard<'_, J> {
    fn drop(&mut self) {
        let shared = &*self.pipeline.shared;
        let mut state = lock(&shared.state);
        release_slot(shared, &mut state, self.slot, self.batch);
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

fn slot_len(a: &SlotArray) -> usize {
    match &a.memory {
        SlotMemory::Host(b) => b.len(),
        #[cfg(feature = "torch")]
        SlotMemory::Tensor(t) => t.numel(),
    }
}

fn allocate(len: usize, sample_len: usize, options: &PipelineOptions) -> Result<SlotArray, MemoryError> {
    #[cfg(feature = "torch")]
    if options.torch_memory {
        let failed = |e: tch::TchError| MemoryError::Allocation {
            bytes: len as u64 * 4,
            reason: format!("torch: {e}"),
        };
        let size = i64::try_from(len).map_err(|_| MemoryError::Allocation {
            bytes: len as u64 * 4,
            reason: "too many elements for a tensor".to_owned(),
        })?;
        let mut t = tch::Tensor::f_zeros([size], (tch::Kind::Float, tch::Device::Cpu)).map_err(failed)?;
        if options.pin {
            // Page-locked host memory for fast (DMA) copies to a CUDA device. Callers pin only
            // when CUDA is available (the torch interop checks the device first); should pinning
            // still fail, the memory stays pageable: copies are then slower, never wrong.
            if let Ok(pinned) = t.f_pin_memory(tch::Device::Cuda(0)) {
                t = pinned;
            }
        }
        let ptr = t.data_ptr() as *mut f32;
        return Ok(SlotArray {
            ptr,
            sample_len,
            memory: SlotMemory::Tensor(t),
        });
    }
    let _ = options;
    let memory = crate::huge_pages::HostBuffer::try_zeroed(len)?;
    let ptr = memory.as_ptr();
    Ok(SlotArray {
        ptr,
        sample_len,
        memory: SlotMemory::Host(memory),
    })
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn wait<'a>(c: &Condvar, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    c.wait(g).unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn worker_main<J: SampleJob>(shared: &Shared<J>, worker: usize, mut scratch: J::Scratch) {
    let batch_size = shared.layout.batch_size as u64;
    let prefetch = shared.slots.len() as u64;
    loop {
        // Claim the next (batch, position) once its slot is being filled for that batch.
        let (batch, position) = {
            let mut state = lock(&shared.state);
            loop {
                if shared.shutdown.load(Ordering::SeqCst) || state.fatal.is_some() {
                    return;
                }
                let claim = state.next_claim;
                let batch = claim / batch_size;
                if shared.job.batches().is_some_and(|n| batch >= n) {
                    return;
                }
                let slot = (batch % prefetch) as usize;
                if matches!(state.slots[slot], SlotState::Filling { batch: b, .. } if b == batch) {
                    state.next_claim += 1;
                    break (batch, (claim % batch_size) as usize);
                }
                state = wait(&shared.work, state);
            }
        };
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

fn fill_with_policy<J: SampleJob>(
    shared: &Shared<J>,
    scratch: &mut J::Scratch,
    slot: &Slot,
    batch: u64,
    position: usize,
) -> Result<(), PipelineError> {
    let mut last = String::new();
    for attempt in 0..shared.max_attempts {
        let mut out = SampleOut { slot, position };
        match shared.job.fill(scratch, batch, position, attempt, &mut out) {
            Ok(meta) => {
                // SAFETY: exclusive use of `position` (see `SampleOut::array`).
                unsafe { *slot.meta[position].get() = meta.unwrap_or(SampleMeta::EMPTY) };
                return Ok(());
            }
            Err(message) => match shared.policy {
                ErrorPolicy::Fail => {
                    return Err(SampleError {
                        batch,
                        position,
                        message,
                    }
                    .into());
                }
                ErrorPolicy::SkipAndLog => {
                    shared.skipped.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "cellmap: skipped a sample (batch {batch}, position {position}, attempt {attempt}): {message}"
                    );
                    last = message;
                }
            },
        }
    }
    Err(PipelineError::RetriesExhausted {
        batch,
        position,
        attempts: shared.max_attempts,
        last,
    })
}
