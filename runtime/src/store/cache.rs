//! A decoded-chunk cache shared by every reader thread.
//!
//! Keys are `(level id, chunk indices)`; values are decoded chunks ([`ChunkData`], integer chunks
//! narrowed to the smallest unsigned type that holds their values: [`ChunkData::narrowed`]),
//! shared as `Arc`s so a hit costs a lock, a hash lookup and a reference-count increment, and
//! never allocates. The cache is split into shards (one mutex each) to keep
//! contention low; eviction is least-recently-used per shard, driven by one global byte budget.
//! A budget of 0 disables caching. Two threads that miss the same chunk at once may both decode
//! it; the first insert wins and both get identical data.
//!
//! Admission ([`ChunkCache::admit`]): while the budget has room every miss is kept. Once it is
//! full, a missed chunk is kept only when it was missed before, recently (a direct-mapped table
//! of the last misses' key hashes, as large as the number of such chunks the budget holds, at
//! most 65,536). With a working set far larger than the cache (hundreds of crops)
//! most chunks are read once before they would be evicted: decoding them whole to cache them,
//! and evicting a chunk to make room, cost time and kept nothing useful. A chunk not kept is
//! decoded only as far as its read needs ([`crate::store::chunk`]'s `fetch_planes`).
//!
//! ```
//! use cellmap_runtime::store::ChunkCache;
//! let cache = ChunkCache::new(256 << 20);
//! assert_eq!(cache.stats().hits, 0);
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::budget::claim;
use super::chunk_data::ChunkData;
use super::encoded::{CompressedOptions, CompressedStats, StoreTier};
use super::fetch::{FetchCounters, FetchOptions, FetchStats, Fetcher};
use super::multiscale::LevelArray;

/// Cache key: an opened level ([`crate::store::Level::id`]) and spatial chunk indices `z y x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    /// The level's unique id.
    pub level_id: u64,
    /// Chunk indices `z y x` (decode units: inner chunks of sharded arrays).
    pub chunk: [u64; 3],
}

/// Counters of a [`ChunkCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found the chunk.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Chunks dropped to stay within the budget.
    pub evictions: u64,
    /// Decoded bytes currently held.
    pub bytes: u64,
    /// Misses not kept: the cache was full and the chunk had not been missed recently
    /// ([`ChunkCache::admit`]).
    pub declined: u64,
}

struct Entry {
    data: Arc<ChunkData>,
    bytes: u64,
    last_used: u64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<ChunkKey, Entry>,
}

const SHARDS: usize = 16;

/// Entries a shard's table is first sized for at most ([`ChunkCache::reserve`]).
const MAX_SHARD_ENTRIES: usize = 1 << 16;

/// Misses a full cache remembers at most to decide what it keeps ([`ChunkCache::admit`]):
/// 512 KiB of key hashes.
pub(crate) const DOORKEEPER_SLOTS: usize = 1 << 16;

/// Misses a full cache remembers at least.
const DOORKEEPER_MIN_SLOTS: usize = 64;

/// A byte-budgeted, thread-safe cache of decoded chunks (see the module docs).
pub struct ChunkCache {
    budget_bytes: u64,
    shards: Vec<Mutex<Shard>>,
    clock: AtomicU64,
    bytes: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    declined: AtomicU64,
    /// Hashes of recent misses of a full cache, one per slot (0: none; [`ChunkCache::admit`]).
    doorkeeper: Box<[AtomicU64]>,
    /// How misses are fetched (set once, [`ChunkCache::configure_fetch`]).
    fetcher: OnceLock<Fetcher>,
    pub(crate) fetch_counters: FetchCounters,
    /// The compressed tier, the store delay and the store-request counters
    /// ([`ChunkCache::with_compressed`]).
    pub(crate) tier: Arc<StoreTier>,
    /// Per level read through this cache, its array over the tiered store (made on first miss).
    views: Mutex<HashMap<u64, Arc<LevelArray>>>,
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache")
            .field("budget_bytes", &self.budget_bytes)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl ChunkCache {
    /// A cache holding at most `budget_bytes` of decoded data (0 = no caching).
    #[must_use]
    pub fn new(budget_bytes: u64) -> Self {
        Self {
            budget_bytes,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            clock: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            declined: AtomicU64::new(0),
            // Nothing to remember without a budget.
            doorkeeper: (0..if budget_bytes > 0 { DOORKEEPER_SLOTS } else { 0 })
                .map(|_| AtomicU64::new(0))
                .collect(),
            fetcher: OnceLock::new(),
            fetch_counters: FetchCounters::default(),
            tier: Arc::new(StoreTier::new(CompressedOptions::OFF)),
            views: Mutex::new(HashMap::new()),
        }
    }

    /// This cache with a compressed tier (module `store::encoded`): encoded chunk bytes
    /// kept in memory, read on a decoded miss before the store is asked.
    #[must_use]
    pub fn with_compressed(mut self, options: CompressedOptions) -> Self {
        let delay = self.tier.delay.get().copied();
        let tier = StoreTier::new(options);
        if let Some(delay) = delay {
            let _ = tier.delay.set(delay);
        }
        self.tier = Arc::new(tier);
        self.views = Mutex::new(HashMap::new());
        self
    }

    /// Counters of the compressed tier (all zero without one).
    #[must_use]
    pub fn compressed_stats(&self) -> CompressedStats {
        self.tier.cache.stats()
    }

    /// Drop every encoded chunk of the compressed tier.
    pub fn clear_compressed(&self) {
        self.tier.cache.clear();
    }

    /// The array of `level` as this cache reads its misses: over the level's store wrapped in
    /// the tier (`TieredStorage`), made once per level.
    pub(crate) fn level_view(&self, level: &super::multiscale::Level) -> Arc<LevelArray> {
        let mut views = self.views.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            views
                .entry(level.id)
                .or_insert_with(|| Arc::new(level.array.tiered(level.id, &self.tier))),
        )
    }

    /// Set how this cache fetches the chunks it misses (see [`crate::store::fetch`]); the first
    /// call wins (a cache shared between loaders keeps the first one's pools). Returns whether
    /// this call set them. Without a call, misses are fetched one after the other.
    pub fn configure_fetch(&self, options: FetchOptions) -> bool {
        let mut set = false;
        self.fetcher.get_or_init(|| {
            set = true;
            let _ = self.tier.delay.set(options.delay);
            Fetcher::new(options)
        });
        set
    }

    /// Chunks one read fetches at once (1 until [`ChunkCache::configure_fetch`]).
    #[must_use]
    pub fn fetch_concurrency(&self) -> usize {
        self.fetcher().map_or(1, |f| f.options.concurrency)
    }

    /// True when reads of local files are decoded by the reader that needs them rather than on
    /// the fetch pool: the training cache's files, and chunks decoded directly from local files
    /// with no benchmarking delay standing in for a remote store, unless the fetch options put
    /// them on the pool ([`FetchOptions::local_on_pool`]). Such a decode is shorter than the
    /// hand-off to the pool and back (measured 1.1–1.4× faster with every core busy, and it
    /// allocates nothing).
    pub(crate) fn decodes_local_in_place(&self, level: &super::multiscale::Level) -> bool {
        level.decoded_in_place()
            || (!self.tier.reads_as_remote(level.array_location())
                && !self.fetcher().is_some_and(|f| f.options.local_on_pool)
                && level.decodes_directly())
    }

    pub(crate) fn fetcher(&self) -> Option<&Fetcher> {
        self.fetcher.get()
    }

    /// Counters of the chunks fetched through this cache.
    #[must_use]
    pub fn fetch_stats(&self) -> FetchStats {
        let mut stats = self.fetch_counters.stats();
        stats.store_requests = self.tier.requests.load(Ordering::Relaxed);
        stats.store_bytes = self.tier.request_bytes.load(Ordering::Relaxed);
        // The delay is slept inside the timed retrieval: the decode time leaves it out.
        let delay_s = self.tier.delay_ns.load(Ordering::Relaxed) as f64 * 1e-9;
        stats.decode_seconds = (stats.decode_seconds - delay_s).max(0.0);
        stats
    }

    /// The cache's use clock (one tick per lookup or insert): entries used at or after a tick
    /// read now are protected from fetch-ahead evictions ([`ChunkCache::insert_ahead`]).
    #[must_use]
    pub fn clock(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    /// True when the chunk is cached; counts nothing and changes no use time.
    #[must_use]
    pub fn contains(&self, key: &ChunkKey) -> bool {
        self.lock(Self::shard_index(key)).map.contains_key(key)
    }

    /// Mark a cached chunk as used now without counting a hit (a chunk a batch ahead will read);
    /// false when it is not cached.
    pub fn touch(&self, key: &ChunkKey) -> bool {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut shard = self.lock(Self::shard_index(key));
        match shard.map.get_mut(key) {
            Some(entry) => {
                entry.last_used = tick;
                true
            }
            None => false,
        }
    }

    /// The byte budget.
    #[must_use]
    pub fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }

    /// Current counters.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            declined: self.declined.load(Ordering::Relaxed),
        }
    }

    /// Whether a chunk of `bytes` decoded bytes that [`ChunkCache::get`] just missed should be
    /// kept ([`ChunkCache::insert`]): always while the budget has room for it; once the cache is
    /// full, only when the same key was declined before within about as many misses as the
    /// budget holds chunks of that size (at least 64, at most 65,536), so a chunk
    /// read once does not evict one that is read again. Never for a chunk larger than the
    /// budget, or without one. Never allocates or locks; a declined miss is counted
    /// ([`CacheStats::declined`]).
    pub fn admit(&self, key: &ChunkKey, bytes: u64) -> bool {
        if self.budget_bytes == 0 || bytes > self.budget_bytes {
            return false;
        }
        if self.bytes.load(Ordering::Relaxed) + bytes <= self.budget_bytes {
            return true;
        }
        // Never 0, the empty slot.
        let h = Self::mix(key) | 1;
        let held = usize::try_from(self.budget_bytes / bytes.max(1)).unwrap_or(usize::MAX);
        let slots = held
            .checked_next_power_of_two()
            .unwrap_or(DOORKEEPER_SLOTS)
            .clamp(DOORKEEPER_MIN_SLOTS, DOORKEEPER_SLOTS);
        // Bits below those the shard index takes.
        let slot = (h >> 24) as usize & (slots - 1);
        if self
            .doorkeeper
            .get(slot)
            .is_some_and(|s| s.swap(h, Ordering::Relaxed) == h)
        {
            return true;
        }
        self.declined.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// A cheap mix of the key; no hasher allocation.
    fn mix(key: &ChunkKey) -> u64 {
        let mut h = key.level_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for c in key.chunk {
            h = (h ^ c).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        }
        h
    }

    fn shard_index(key: &ChunkKey) -> usize {
        (Self::mix(key) >> 59) as usize % SHARDS
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A poisoned shard only means another thread panicked mid-update of plain data; the map
        // is still consistent (every update is a single insert/remove).
        self.shards[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Look a chunk up, counting a hit or a miss. Never allocates.
    pub fn get(&self, key: &ChunkKey) -> Option<Arc<ChunkData>> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut shard = self.lock(Self::shard_index(key));
        if let Some(entry) = shard.map.get_mut(key) {
            entry.last_used = tick;
            self.hits.fetch_add(1, Ordering::Relaxed);
            Some(entry.data.clone())
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Insert a decoded chunk and return the cached copy (an existing entry wins). Chunks larger
    /// than the whole budget are returned without being cached, and so is one whose room other
    /// inserts took each of the few times it was made (`claim_room`).
    pub fn insert(&self, key: ChunkKey, data: Arc<ChunkData>) -> Arc<ChunkData> {
        let bytes = data.byte_len() as u64;
        if bytes > self.budget_bytes {
            return data;
        }
        let own = Self::shard_index(&key);
        // Another reader's copy already cached wins; this one goes back to the chunk pool (or
        // the next decode allocates).
        let existing = |shard: &Shard| shard.map.get(&key).map(|entry| entry.data.clone());
        let cached = existing(&self.lock(own));
        if let Some(cached) = cached {
            super::pool::recycle(data);
            return cached;
        }
        // Evicting everything else still leaves no room only while other inserts hold claims.
        if !self.claim_room(own, bytes, u64::MAX) {
            return data;
        }
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut shard = self.lock(own);
        if let Some(cached) = existing(&shard) {
            drop(shard);
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
            super::pool::recycle(data);
            return cached;
        }
        Self::reserve(&mut shard, self.budget_bytes, bytes);
        shard.map.insert(
            key,
            Entry {
                data: data.clone(),
                bytes,
                last_used: tick,
            },
        );
        data
    }

    /// Count `incoming` bytes against the budget before the entry they are for goes in, evicting
    /// least-recently-used entries last used before tick `floor` (any entry: `u64::MAX`) until
    /// they fit; false when they do not. Claiming first keeps the held bytes within the budget
    /// at every moment while threads insert at once: making room and then adding, two threads
    /// could both see the same room and both take it.
    fn claim_room(&self, own: usize, incoming: u64, floor: u64) -> bool {
        claim(&self.bytes, self.budget_bytes, incoming, || {
            self.make_room_before(own, incoming, floor)
        })
    }

    /// Size a shard's table, on its first insert, for twice its share of a budget full of chunks
    /// of `bytes` (at most [`MAX_SHARD_ENTRIES`]): a table grown one entry at a time while
    /// chunks come and go allocates again whenever the keys happen to crowd into one shard.
    fn reserve(shard: &mut Shard, budget_bytes: u64, bytes: u64) {
        if shard.map.capacity() == 0 {
            let chunks = budget_bytes / bytes.max(1);
            let share = usize::try_from(chunks.div_ceil(SHARDS as u64) * 2).unwrap_or(MAX_SHARD_ENTRIES);
            shard.map.reserve(share.clamp(4, MAX_SHARD_ENTRIES));
        }
    }

    /// Insert a chunk fetched ahead, evicting only entries last used before tick `floor` (see
    /// [`ChunkCache::clock`]); false (and not inserted) when it does not fit that way. An
    /// existing entry is kept. A chunk not inserted goes back to the chunk pool.
    pub fn insert_ahead(&self, key: ChunkKey, data: Arc<ChunkData>, floor: u64) -> bool {
        let bytes = data.byte_len() as u64;
        if bytes > self.budget_bytes {
            super::pool::recycle(data);
            return false;
        }
        let own = Self::shard_index(&key);
        if self.lock(own).map.contains_key(&key) {
            super::pool::recycle(data);
            return true;
        }
        if !self.claim_room(own, bytes, floor) {
            super::pool::recycle(data);
            return false;
        }
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut shard = self.lock(own);
        Self::reserve(&mut shard, self.budget_bytes, bytes);
        match shard.map.entry(key) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Entry {
                    data,
                    bytes,
                    last_used: tick,
                });
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                drop(shard);
                self.bytes.fetch_sub(bytes, Ordering::Relaxed);
                super::pool::recycle(data);
            }
        }
        true
    }

    /// Bytes that inserts evicting only entries last used before `floor` could take now: the free
    /// budget plus those entries (one pass over the shards; a snapshot, as reads insert too).
    pub(crate) fn room_before(&self, floor: u64) -> u64 {
        let mut room = self.budget_bytes.saturating_sub(self.bytes.load(Ordering::Relaxed));
        for i in 0..SHARDS {
            let shard = self.lock(i);
            room += shard
                .map
                .values()
                .filter(|e| e.last_used < floor)
                .map(|e| e.bytes)
                .sum::<u64>();
        }
        room
    }

    /// Evict least-recently-used entries last used before `floor`, own shard first, until
    /// `incoming` more bytes fit; false when they still do not.
    fn make_room_before(&self, own: usize, incoming: u64, floor: u64) -> bool {
        for step in 0..SHARDS {
            if self.bytes.load(Ordering::Relaxed) + incoming <= self.budget_bytes {
                return true;
            }
            let mut shard = self.lock((own + step) % SHARDS);
            while self.bytes.load(Ordering::Relaxed) + incoming > self.budget_bytes {
                let oldest = shard
                    .map
                    .iter()
                    .filter(|(_, e)| e.last_used < floor)
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| *k);
                let Some(oldest) = oldest else { break };
                if let Some(e) = shard.map.remove(&oldest) {
                    self.bytes.fetch_sub(e.bytes, Ordering::Relaxed);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                    super::pool::recycle(e.data);
                }
            }
        }
        self.bytes.load(Ordering::Relaxed) + incoming <= self.budget_bytes
    }

    /// Drop every entry (counters other than `bytes` are kept).
    pub fn clear(&self) {
        for i in 0..SHARDS {
            let mut shard = self.lock(i);
            for (_, e) in shard.map.drain() {
                self.bytes.fetch_sub(e.bytes, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> ChunkKey {
        ChunkKey {
            level_id: 7,
            chunk: [i, 0, 0],
        }
    }

    #[test]
    fn budget_hits_and_eviction() {
        let cache = ChunkCache::new(250);
        assert!(cache.get(&key(0)).is_none());
        cache.insert(key(0), Arc::new(ChunkData::U8(vec![1; 100])));
        cache.insert(key(1), Arc::new(ChunkData::U16(vec![2; 50])));
        assert_eq!(cache.stats().bytes, 200);
        assert_eq!(cache.get(&key(0)).as_deref(), Some(&ChunkData::U8(vec![1; 100])));
        // key(1) is now least recently used; a third chunk evicts it.
        cache.insert(key(2), Arc::new(ChunkData::U8(vec![3; 100])));
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.evictions, s.bytes), (1, 1, 1, 200));
        assert!(cache.get(&key(1)).is_none());
        assert!(cache.get(&key(0)).is_some());
        // Larger than the budget: returned, not cached.
        let big = cache.insert(key(3), Arc::new(ChunkData::U8(vec![0; 300])));
        assert_eq!(big.len(), 300);
        assert!(cache.get(&key(3)).is_none());
        cache.clear();
        assert_eq!(cache.stats().bytes, 0);
    }

    #[test]
    fn zero_budget_caches_nothing() {
        let cache = ChunkCache::new(0);
        cache.insert(key(0), Arc::new(ChunkData::U8(vec![1])));
        assert!(cache.get(&key(0)).is_none());
        assert_eq!(cache.stats().bytes, 0);
    }

    #[test]
    fn ahead_inserts_never_evict_recent_entries() {
        let cache = ChunkCache::new(200);
        cache.insert(key(0), Arc::new(ChunkData::U8(vec![1; 100])));
        let floor = cache.clock();
        cache.insert(key(1), Arc::new(ChunkData::U8(vec![2; 100])));
        // key(1) was used at or after the floor, key(0) before it: only key(0) may go.
        assert!(cache.insert_ahead(key(2), Arc::new(ChunkData::U8(vec![3; 100])), floor));
        assert!(!cache.contains(&key(0)) && cache.contains(&key(1)) && cache.contains(&key(2)));
        assert!(!cache.insert_ahead(key(3), Arc::new(ChunkData::U8(vec![4; 100])), floor));
        assert!(cache.contains(&key(1)) && cache.contains(&key(2)) && !cache.contains(&key(3)));
        // Neither `contains` nor `touch` counts a hit or a miss.
        assert!(cache.touch(&key(1)));
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.evictions, s.bytes), (0, 0, 1, 200));
    }

    /// While the budget has room every miss is kept; once full, a key is kept on its second
    /// miss and not its first, whatever the others missed in between are (when they fit in the
    /// table), so chunks read once never evict the cache's chunks. Never without a budget, nor
    /// for a chunk larger than it.
    #[test]
    fn a_full_cache_admits_a_key_on_its_second_miss() {
        let cache = ChunkCache::new(200);
        assert!(cache.admit(&key(0), 100) && cache.admit(&key(1), 100));
        cache.insert(key(0), Arc::new(ChunkData::U8(vec![1; 100])));
        assert!(cache.admit(&key(1), 100), "room for one more");
        cache.insert(key(1), Arc::new(ChunkData::U8(vec![2; 100])));
        assert_eq!(cache.stats().declined, 0);
        // Full: 64 keys missed once each are all declined (2 chunks of 100 bytes fit, so the
        // table has its 64 slots; these keys fall in distinct ones).
        let once: Vec<u64> = (10..10_000).filter(|&i| distinct_slot(i)).take(63).collect();
        for &i in &once {
            assert!(!cache.admit(&key(i), 100), "{i} missed once");
        }
        assert_eq!(cache.stats().declined, 63);
        // Missed again, each is kept; a third miss (it was evicted since) is kept at once.
        for &i in &once {
            assert!(cache.admit(&key(i), 100), "{i} missed twice");
        }
        assert!(cache.admit(&key(once[0]), 100));
        assert_eq!(cache.stats().declined, 63);
        assert!(!cache.admit(&key(3), 201), "larger than the budget");
        let none = ChunkCache::new(0);
        assert!(!none.admit(&key(0), 1) && !none.admit(&key(0), 1) && !none.admit(&key(0), 0));
        assert_eq!(none.stats().declined, 0);
    }

    /// Whether key `i` is the first of the keys from 10 up to `i` in its slot of a 64-slot
    /// table.
    fn distinct_slot(i: u64) -> bool {
        let slot = |k: u64| (ChunkCache::mix(&key(k)) | 1) >> 24 & 63;
        (10..i).all(|j| slot(j) != slot(i))
    }

    /// Threads inserting at once never hold more than the budget, at any moment (a thread
    /// watches the held bytes throughout), and every byte held is an entry's once they stop.
    #[test]
    fn inserts_at_once_never_hold_more_than_the_budget() {
        let cache = ChunkCache::new(300);
        let most = crate::store::budget::most_held_while(
            4,
            || cache.stats().bytes,
            |t| {
                // One chunk shared by every entry: evictions do not return it to the pool.
                let shared = Arc::new(ChunkData::U8(vec![0; 100]));
                for i in 0..50_000 {
                    if i % 4 == 0 {
                        cache.insert_ahead(key(t << 32 | i), shared.clone(), cache.clock());
                    } else {
                        cache.insert(key(t << 32 | i), shared.clone());
                    }
                }
            },
        );
        assert!(most <= 300, "held {most} bytes of a 300-byte budget");
        let held: u64 = (0..4u64)
            .flat_map(|t| (0..50_000).map(move |i| key(t << 32 | i)))
            .filter(|k| cache.contains(k))
            .count() as u64
            * 100;
        assert_eq!(cache.stats().bytes, held);
        assert!(held > 0);
    }

    #[test]
    fn first_insert_wins() {
        let cache = ChunkCache::new(1000);
        cache.insert(key(0), Arc::new(ChunkData::U8(vec![1; 10])));
        let got = cache.insert(key(0), Arc::new(ChunkData::U8(vec![2; 10])));
        assert_eq!(*got, ChunkData::U8(vec![1; 10]));
        assert_eq!(cache.stats().bytes, 10);
    }
}
