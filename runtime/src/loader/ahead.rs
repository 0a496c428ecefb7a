//! Fetching ahead: while a batch is assembled, the chunks of the next training batches are
//! fetched into the chunk cache in the background.
//!
//! A worker starting batch `b ≥ 1` (position 0) schedules batches `b + 1 ..= b + ahead` not yet
//! scheduled (nothing is fetched ahead while the first batch is read: time to the first batch
//! comes first): for each of their samples it makes the same draw the loader's job makes (centre,
//! key, spatial transform from the key), lists the chunks the sample reads
//! ([`Reader::sample_chunks`]), marks the cached ones as used and hands the missing ones to the
//! cache's fetch-ahead pool. Bounds: at most `ahead` batches ahead and `ahead` scheduled batches
//! queued (while that many are still fetching, later batches wait for a later batch start to
//! claim them, or their reads fetch the chunks themselves); a chunk fetched ahead
//! is inserted only when it fits without evicting an entry used since the start of batch
//! `b − slots − ahead`, which every batch in flight (and every batch scheduled ahead) has used
//! or marked since. One that does not fit is fetched as stored bytes into the compressed tier
//! where the tier keeps its level (remote data, unsharded): the latency is hidden, the decode is
//! left to the read. Nothing without a cache, nor for specs with elastic deformation (its draw
//! allocates and its window needs the field evaluated: those reads only fetch at once). The batches themselves do not change: the data
//! a read finds in the cache is the data it would decode.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use crate::store::ahead::{Ahead, ahead_kind};
use crate::store::chunk::{fetch_encoded_many, wants_encoded};
use crate::store::{ChunkCache, ChunkKey, Level};

use crate::sample::{Reader, SampleRequest};

/// Batches whose start ticks are kept.
const TICKS: usize = 64;

/// The fetch-ahead state of a training loader.
pub(super) struct FetchAhead {
    /// Batches fetched ahead (≥ 1).
    batches: u64,
    /// Ring slots (batches in flight at most).
    slots: u64,
    cache: Arc<ChunkCache>,
    /// First batch (pipeline numbering) not scheduled yet.
    next: AtomicU64,
    /// One fetch ahead per scheduled batch range that may be in flight at once (`batches` of
    /// them), kept and refilled: one that a pool thread still holds is in flight.
    fetches: Vec<Mutex<Arc<Ahead>>>,
    /// `(batch + 1, cache clock)` when a worker started batch `batch`, at `batch mod TICKS`.
    started: Vec<(AtomicU64, AtomicU64)>,
    /// The compressed tier keeps some of the data (remote data): samples prefetch their chunks.
    remote: bool,
    /// Set when the loader is dropped: the chunks still queued are not fetched (a cache shared
    /// with another loader, or a server that stopped answering, would otherwise keep the pool
    /// busy with batches nobody reads).
    stop: Arc<AtomicBool>,
}

impl Drop for FetchAhead {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl FetchAhead {
    /// Fetching `batches` ahead into `cache` for a ring of `slots`; `None` when that is off (0
    /// batches, a cache without budget, or more batches in flight than the ticks kept).
    pub(super) fn new(batches: usize, slots: usize, cache: &Arc<ChunkCache>, remote: bool) -> Option<Self> {
        let (batches, slots) = (batches as u64, slots as u64);
        if batches == 0 || cache.budget_bytes() == 0 || slots + batches + 1 >= TICKS as u64 {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        Some(FetchAhead {
            batches,
            slots,
            cache: Arc::clone(cache),
            next: AtomicU64::new(0),
            fetches: (0..batches)
                .map(|_| Mutex::new(Arc::new(Ahead::new(cache, Arc::clone(&stop)))))
                .collect(),
            started: (0..TICKS).map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect(),
            remote: remote && cache.compressed_stats().budget_bytes > 0,
            stop,
        })
    }

    /// Record the start of `batch` (the eviction floor of later batches).
    fn record(&self, batch: u64) {
        let (tag, tick) = &self.started[(batch % TICKS as u64) as usize];
        tick.store(self.cache.clock(), Ordering::Relaxed);
        tag.store(batch + 1, Ordering::Release);
    }

    /// The batches to schedule at the start of `batch`, if any.
    fn claim(&self, batch: u64) -> Option<std::ops::RangeInclusive<u64>> {
        let last = batch + self.batches;
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let from = next.max(batch + 1);
            if from > last {
                return None;
            }
            match self
                .next
                .compare_exchange_weak(next, last + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(from..=last),
                Err(now) => next = now,
            }
        }
    }

    /// The eviction floor for chunks scheduled at the start of `batch` (0: evict nothing).
    fn floor(&self, batch: u64) -> u64 {
        let Some(oldest) = batch.checked_sub(self.slots + self.batches) else {
            return 0;
        };
        let (tag, tick) = &self.started[(oldest % TICKS as u64) as usize];
        let t = tick.load(Ordering::Relaxed);
        if tag.load(Ordering::Acquire) == oldest + 1 {
            t
        } else {
            0
        }
    }
}

impl FetchAhead {
    /// Fetch the chunks `request` reads, of every array, at once into the compressed tier as
    /// stored bytes (remote data: see [`fetch_encoded_many`]) before the sample's arrays are read
    /// one after another, so that a sample whose chunks were not fetched ahead waits one round
    /// trip, not one per array. Nothing for data the tier does not keep (local files).
    pub(super) fn prefetch_sample(&self, reader: &Reader, request: &SampleRequest) {
        if !self.remote || reader.spec().augment().spatial.elastic.is_some() {
            return;
        }
        let draw = reader.spatial_draw(request);
        // Only the chunks not held yet are listed: a sample whose chunks are all in memory
        // allocates nothing here.
        let mut chunks: Vec<(Level, [u64; 3])> = Vec::new();
        reader.sample_chunks(request, &draw, &mut |level, chunk| {
            if wants_encoded(&self.cache, level, chunk) {
                chunks.push((level.clone(), chunk));
            }
        });
        if chunks.is_empty() {
            return;
        }
        let refs: Vec<(&Level, [u64; 3])> = chunks.iter().map(|(l, c)| (l, *c)).collect();
        fetch_encoded_many(&self.cache, &refs);
    }

    /// Schedule the batches ahead of `batch` (see the module docs); called by the worker that
    /// starts `batch`. `request(t, position)` is the request position `position` of batch `t`
    /// reads first (`None`: nothing to read).
    pub(super) fn schedule(
        &self,
        batch: u64,
        reader: &Reader,
        batch_size: usize,
        request: impl Fn(u64, usize) -> Option<SampleRequest>,
    ) {
        // An elastic draw allocates its lattice and its window needs the field evaluated: specs
        // with elastic deformation leave their chunks to the reads (fetched at once there).
        if reader.spec().augment().spatial.elastic.is_some() {
            return;
        }
        self.record(batch);
        // Nothing goes ahead of the first batch: its samples want every core, and the chunks
        // of the batches after it would compete with them (300 crops, 2 cores: 0.100 s to the
        // first batch with batches 1 ..= 4 fetched meanwhile, 0.060 s without; medians of 9).
        // The batches after the next are scheduled when the next one starts.
        if batch == 0 {
            return;
        }
        // With as many ranges scheduled before still fetching, these are left for a later start
        // to claim (claimed now, they would never be fetched ahead).
        for fetch in &self.fetches {
            let mut held = match fetch.try_lock() {
                Ok(held) => held,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            let Some(ahead) = Arc::get_mut(&mut held) else { continue };
            let Some(range) = self.claim(batch) else { return };
            if self.list(ahead, range, batch, reader, batch_size, &request) {
                Ahead::start(&held);
            }
            return;
        }
    }

    /// List into `ahead` the chunks of batches `range` to fetch ahead (scheduled at the start of
    /// `batch`); whether there are any.
    fn list(
        &self,
        ahead: &mut Ahead,
        range: std::ops::RangeInclusive<u64>,
        batch: u64,
        reader: &Reader,
        batch_size: usize,
        request: &impl Fn(u64, usize) -> Option<SampleRequest>,
    ) -> bool {
        let floor = self.floor(batch);
        let cache = &self.cache;
        let list = ahead.list_mut(floor);
        // Listed are only the chunks that may go ahead ([`ahead_kind`] against the room left by
        // entries unused since `floor`; decided again when the list is fetched, as the room has
        // changed by then). The others are counted as skipped without being listed, so a cache
        // full of chunks in use (a working set larger than the cache) schedules nothing.
        let mut room = cache.room_before(floor);
        let mut skipped = 0;
        for t in range {
            for position in 0..batch_size {
                let Some(request) = request(t, position) else { continue };
                let draw = reader.spatial_draw(&request);
                reader.sample_chunks(&request, &draw, &mut |level, chunk| {
                    // The training cache's chunk files are read where they are needed (see
                    // `Source` in `read::window`): a local decode is shorter than the hand-off.
                    if level.decoded_in_place() {
                        return;
                    }
                    let key = ChunkKey {
                        level_id: level.id,
                        chunk,
                    };
                    if cache.touch(&key) {
                        return;
                    }
                    if ahead_kind(cache, level, &mut room).is_none() {
                        skipped += 1;
                        return;
                    }
                    list.push(level, chunk);
                });
            }
        }
        if skipped > 0 {
            cache.fetch_counters.ahead_skipped.fetch_add(skipped, Ordering::Relaxed);
        }
        list.sort_dedup();
        !list.is_empty()
    }
}
