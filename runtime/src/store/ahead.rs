//! Chunks fetched ahead into a cache on its fetch-ahead pool, for the batches a loader reads next
//! (the loader lists them: `loader::ahead`).
//!
//! The state of one fetch ahead, [`Ahead`], is kept by the loader and refilled for every range of
//! batches it schedules: the list of chunks, the jobs decided from it and the counters that share
//! them out between the pool's threads keep their memory, and the pool queues the state by
//! reference ([`SharedJob`]). Once its vectors have grown to a range's chunks, fetching ahead
//! allocates nothing (local data, whose decodes go to recycled buffers: a remote request
//! allocates in its HTTP client).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::cache::{ChunkCache, ChunkKey};
use super::chunk::{fetch_encoded, load, tier_keeps_chunks};
use super::fetch::blocking::SharedJob;
use super::multiscale::Level;

/// Chunks to fetch ahead, per level. Cleared and refilled range after range: a level's entry
/// keeps its vector of chunks, so listing allocates nothing once the vectors have grown.
#[derive(Default)]
pub(crate) struct AheadList {
    /// Per level, its chunks; the entries from `used` on are spare.
    levels: Vec<(Level, Vec<[u64; 3]>)>,
    used: usize,
}

impl AheadList {
    /// Empty the list (keeping its memory).
    pub(crate) fn clear(&mut self) {
        for (_, chunks) in &mut self.levels[..self.used] {
            chunks.clear();
        }
        self.used = 0;
    }

    /// Add chunk `chunk` of `level`.
    pub(crate) fn push(&mut self, level: &Level, chunk: [u64; 3]) {
        if let Some((_, chunks)) = self.levels[..self.used].iter_mut().find(|(l, _)| l.id == level.id) {
            chunks.push(chunk);
            return;
        }
        match self.levels.get_mut(self.used) {
            Some((spare, chunks)) => {
                if spare.id != level.id {
                    // A `Level` clone counts references; it does not allocate.
                    *spare = level.clone();
                }
                chunks.clear();
                chunks.push(chunk);
            }
            None => self.levels.push((level.clone(), vec![chunk])),
        }
        self.used += 1;
    }

    /// Nothing listed.
    pub(crate) fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Every level's chunks in index order, each once.
    pub(crate) fn sort_dedup(&mut self) {
        for (_, chunks) in &mut self.levels[..self.used] {
            chunks.sort_unstable();
            chunks.dedup();
        }
    }

    /// The levels listed, with their chunks.
    pub(crate) fn levels(&self) -> &[(Level, Vec<[u64; 3]>)] {
        &self.levels[..self.used]
    }
}

/// A job of a fetch ahead: `(index into the list, chunk, fetched encoded only)`.
type AheadJob = (usize, [u64; 3], bool);

/// One fetch ahead into a cache: its list of chunks and the state its threads share. Filled while
/// the owner holds it alone ([`Ahead::list_mut`], through `Arc::get_mut`), then queued on the
/// cache's fetch-ahead pool by reference ([`Ahead::start`]). The owner may fill it again once
/// every thread working on it has let it go (`Arc::get_mut` succeeds again).
pub(crate) struct Ahead {
    cache: Arc<ChunkCache>,
    /// Set by the loader when it is dropped: the jobs not taken are left.
    stop: Arc<AtomicBool>,
    list: AheadList,
    /// Chunks fetched ahead are inserted only when they fit without evicting entries used at or
    /// after this tick ([`ChunkCache::insert_ahead`]).
    floor: u64,
    /// Decided from the list by the first thread to run ([`ahead_kind`] against the room the
    /// cache has then); the others are counted as skipped.
    jobs: Mutex<Vec<AheadJob>>,
    /// The jobs are decided.
    planned: AtomicBool,
    /// The next job not taken.
    next: AtomicUsize,
}

impl Ahead {
    /// An empty fetch ahead into `cache`, left when `stop` is set.
    pub(crate) fn new(cache: &Arc<ChunkCache>, stop: Arc<AtomicBool>) -> Self {
        Ahead {
            cache: Arc::clone(cache),
            stop,
            list: AheadList::default(),
            floor: 0,
            jobs: Mutex::new(Vec::new()),
            planned: AtomicBool::new(false),
            next: AtomicUsize::new(0),
        }
    }

    /// The list, emptied, for chunks inserted without evicting entries used at or after `floor`;
    /// the jobs are decided anew when the fetch starts.
    pub(crate) fn list_mut(&mut self, floor: u64) -> &mut AheadList {
        self.floor = floor;
        *self.planned.get_mut() = false;
        *self.next.get_mut() = 0;
        self.list.clear();
        &mut self.list
    }

    /// Fetch the list into the cache in the background on its fetch-ahead pool: each chunk
    /// decoded and inserted when it fits (or fetched as stored bytes into the compressed tier,
    /// [`ahead_kind`]); failures are left for the read that needs the chunk to report. Nothing is
    /// scheduled when the cache has no fetch-ahead pool.
    pub(crate) fn start(this: &Arc<Self>) {
        if let Some(pool) = this.cache.fetcher().and_then(|f| f.ahead_pool()) {
            pool.spawn(Arc::clone(this) as Arc<dyn SharedJob>);
        }
    }

    /// Decide the jobs (see [`Ahead::jobs`]) and how many of the pool's threads share them.
    fn plan(&self) -> usize {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.clear();
        let mut room = self.cache.room_before(self.floor);
        let mut skipped = 0;
        for (l, (level, chunks)) in self.list.levels().iter().enumerate() {
            for &chunk in chunks {
                match ahead_kind(&self.cache, level, &mut room) {
                    Some(encoded) => jobs.push((l, chunk, encoded)),
                    None => skipped += 1,
                }
            }
        }
        if skipped > 0 {
            self.cache
                .fetch_counters
                .ahead_skipped
                .fetch_add(skipped, Ordering::Relaxed);
        }
        jobs.len()
    }

    /// The job `i`, if there is one.
    fn job(&self, i: usize) -> Option<AheadJob> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner).get(i).copied()
    }

    /// Take jobs until none is left or `stop` is set.
    fn drain(&self) {
        let counters = &self.cache.fetch_counters;
        while !self.stop.load(Ordering::Relaxed) {
            let Some((l, chunk, encoded)) = self.job(self.next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            let level = &self.list.levels()[l].0;
            let key = ChunkKey {
                level_id: level.id,
                chunk,
            };
            if self.cache.contains(&key) {
                continue;
            }
            if encoded {
                if fetch_encoded(level, &self.cache, chunk) {
                    counters.ahead_encoded.fetch_add(1, Ordering::Relaxed);
                }
            } else if let Ok(data) = load(level, &self.cache, chunk, None) {
                if self.cache.insert_ahead(key, data, self.floor) {
                    counters.ahead_chunks.fetch_add(1, Ordering::Relaxed);
                } else {
                    counters.ahead_discarded.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl SharedJob for Ahead {
    /// The first thread to run plans the jobs and queues the fetch once more for each further
    /// thread it wants (as many as there are jobs, up to the pool's threads); every thread then
    /// takes the next job not taken until none is left.
    fn run(self: Arc<Self>) {
        if !self.planned.swap(true, Ordering::AcqRel) {
            let jobs = self.plan();
            if let Some(pool) = self.cache.fetcher().and_then(|f| f.ahead_pool()) {
                for _ in 1..jobs.clamp(1, pool.threads()) {
                    pool.spawn(Arc::clone(&self) as Arc<dyn SharedJob>);
                }
            }
        }
        self.drain();
    }
}

/// How a chunk of `level` goes ahead into `cache`, given the `room` (bytes) the cache can give
/// chunks fetched ahead without evicting entries in use: decoded (`Some(false)`, taking a byte
/// per voxel from `room`, the least a decoded chunk of any type takes) while it fits, else as
/// stored bytes into the compressed tier where the tier keeps the level (`Some(true)`: remote
/// data; its read then decodes it without a request), else not at all (`None`). A chunk decoded
/// ahead and then refused would be decoded twice, which with a cache far smaller than the
/// working set costs more than it saves.
pub(crate) fn ahead_kind(cache: &ChunkCache, level: &Level, room: &mut u64) -> Option<bool> {
    let least = level.chunk_shape_vox.iter().product::<u64>();
    if least <= *room {
        *room -= least;
        Some(false)
    } else {
        tier_keeps_chunks(cache, level).then_some(true)
    }
}
