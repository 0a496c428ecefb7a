//! The compressed tier: encoded chunk bytes kept in memory, exactly as the store returned them,
//! consulted when the decoded-chunk cache misses and before the store is asked.
//!
//! Blosc-zstd EM chunks compress 3–10×, so a budget holds that many times more of the working set
//! than the same budget of decoded chunks: a decoded miss whose bytes are here costs a decode, not
//! a request (tens of milliseconds on S3). The tier sits at the storage layer: every read of a
//! [`crate::store::ChunkCache`]'s misses goes through a [`TieredStorage`] wrapped around the
//! level's store, which answers whole-value gets and byte-range gets (the inner chunks and shard
//! indexes of sharded arrays) from [`EncodedCache`] when it can, and otherwise asks the store and
//! keeps what came back. Keys are `(level id, store key, byte range)`; a missing value (a chunk
//! never written, read as the fill value) is kept too, so it is not asked for again. A failed
//! request keeps nothing. The bytes are never changed, so the decoded chunk is the one the store's
//! bytes give: the tier cannot change a batch.
//!
//! Budget and eviction follow the decoded cache: one byte budget, shards with one mutex each,
//! least recently used first within a shard, the new entry's shard first. Each entry is charged its bytes plus [`ENTRY_OVERHEAD_BYTES`] (the
//! key and the map's bookkeeping), so missing values count too and the tier holds at most its
//! budget.
//!
//! ```
//! use cellmap_runtime::store::{ChunkCache, CompressedOptions};
//! let cache = ChunkCache::new(64 << 20).with_compressed(CompressedOptions { budget_bytes: 256 << 20, remote_only: false });
//! assert_eq!(cache.compressed_stats().budget_bytes, 256 << 20);
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::budget::claim;
use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator};
use zarrs::storage::{
    Bytes, MaybeBytes, MaybeBytesIterator, ReadableStorage, ReadableStorageTraits, StorageError, StoreKey,
};

/// Bytes charged per entry on top of its value (key, map slot, reference counts).
pub const ENTRY_OVERHEAD_BYTES: u64 = 64;

/// Compressed-tier budget of a loader whose spec leaves `loader.compressed_cache_bytes` unset:
/// 512 MiB, for levels on remote stores only (local files have the OS page cache).
pub const DEFAULT_COMPRESSED_CACHE_BYTES: u64 = 512 << 20;

/// How a cache keeps encoded chunks ([`crate::store::ChunkCache::with_compressed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressedOptions {
    /// Byte budget of the encoded chunks held (0 = no tier).
    pub budget_bytes: u64,
    /// Keep only chunks of levels on remote stores (`s3://`, `http(s)://`); local files are read
    /// from the OS page cache, which already holds their encoded bytes.
    pub remote_only: bool,
}

impl CompressedOptions {
    /// No tier.
    pub const OFF: Self = CompressedOptions {
        budget_bytes: 0,
        remote_only: false,
    };

    /// The tier of a spec's `loader.compressed_cache_bytes`: unset is
    /// [`DEFAULT_COMPRESSED_CACHE_BYTES`] for remote levels only, a number is that budget for every
    /// level (0 = off).
    #[must_use]
    pub fn from_setting(setting: Option<u64>) -> Self {
        match setting {
            None => CompressedOptions {
                budget_bytes: DEFAULT_COMPRESSED_CACHE_BYTES,
                remote_only: true,
            },
            Some(budget_bytes) => CompressedOptions {
                budget_bytes,
                remote_only: false,
            },
        }
    }

    /// Bytes the tier may hold for a loader whose data is remote somewhere (`any_remote`) or not:
    /// the budget, or 0 when only remote levels use it and there are none.
    #[must_use]
    pub fn held_bytes(&self, any_remote: bool) -> u64 {
        if self.remote_only && !any_remote {
            0
        } else {
            self.budget_bytes
        }
    }
}

/// Counters of the compressed tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompressedStats {
    /// The byte budget.
    pub budget_bytes: u64,
    /// Store reads answered from the tier.
    pub hits: u64,
    /// Store reads the tier did not hold (each one a request to the store).
    pub misses: u64,
    /// Entries dropped to stay within the budget.
    pub evictions: u64,
    /// Entries held.
    pub entries: u64,
    /// Bytes charged for the entries held (their bytes plus [`ENTRY_OVERHEAD_BYTES`] each).
    pub bytes: u64,
    /// Bytes of the encoded values held (without the overhead).
    pub value_bytes: u64,
}

/// A store read: the level (whose store the key is relative to), the key, the byte range
/// (`None`: the whole value).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EncodedKey {
    level_id: u64,
    key: String,
    range: Option<(u8, u64, u64)>,
}

fn range_key(range: ByteRange) -> (u8, u64, u64) {
    match range {
        ByteRange::FromStart(offset, None) => (0, offset, u64::MAX),
        ByteRange::FromStart(offset, Some(len)) => (1, offset, len),
        ByteRange::Suffix(len) => (2, len, 0),
    }
}

struct Entry {
    value: MaybeBytes,
    charge: u64,
    last_used: u64,
}

const SHARDS: usize = 16;

/// A byte-budgeted, thread-safe LRU map of encoded store values (see the module docs).
pub(crate) struct EncodedCache {
    budget_bytes: u64,
    shards: Vec<Mutex<HashMap<EncodedKey, Entry>>>,
    clock: AtomicU64,
    bytes: AtomicU64,
    value_bytes: AtomicU64,
    entries: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl EncodedCache {
    pub(crate) fn new(budget_bytes: u64) -> Self {
        EncodedCache {
            budget_bytes,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            clock: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            value_bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> CompressedStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CompressedStats {
            budget_bytes: self.budget_bytes,
            hits: load(&self.hits),
            misses: load(&self.misses),
            evictions: load(&self.evictions),
            entries: load(&self.entries),
            bytes: load(&self.bytes),
            value_bytes: load(&self.value_bytes),
        }
    }

    fn shard_index(key: &EncodedKey) -> usize {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        (h >> 59) as usize % SHARDS
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, HashMap<EncodedKey, Entry>> {
        // Every update is a single insert or remove: a poisoned map is still consistent.
        self.shards[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value held for `key` (`Some(None)`: the store had no value), counting a hit or a miss.
    fn get(&self, key: &EncodedKey) -> Option<MaybeBytes> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut shard = self.lock(Self::shard_index(key));
        if let Some(entry) = shard.get_mut(key) {
            entry.last_used = tick;
            self.hits.fetch_add(1, Ordering::Relaxed);
            Some(entry.value.clone())
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    fn contains(&self, key: &EncodedKey) -> bool {
        self.lock(Self::shard_index(key)).contains_key(key)
    }

    /// Keep `value` for `key` (an existing entry is kept); values charged more than the whole
    /// budget are not kept.
    fn insert(&self, key: EncodedKey, value: MaybeBytes) {
        let len = value.as_ref().map_or(0, |b| b.len() as u64);
        let charge = len + ENTRY_OVERHEAD_BYTES;
        if charge > self.budget_bytes {
            return;
        }
        let own = Self::shard_index(&key);
        if self.lock(own).contains_key(&key) {
            return;
        }
        // The charge is claimed before the entry goes in, so inserts at once never hold more
        // than the budget (as in the decoded cache, `ChunkCache::claim`).
        if !claim(&self.bytes, self.budget_bytes, charge, || {
            self.make_room(own, charge);
            true
        }) {
            return;
        }
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut shard = self.lock(own);
        if let std::collections::hash_map::Entry::Vacant(slot) = shard.entry(key) {
            slot.insert(Entry {
                value,
                charge,
                last_used: tick,
            });
            self.value_bytes.fetch_add(len, Ordering::Relaxed);
            self.entries.fetch_add(1, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(charge, Ordering::Relaxed);
        }
    }

    /// Evict least-recently-used entries, own shard first, until `incoming` more bytes fit.
    fn make_room(&self, own: usize, incoming: u64) {
        for step in 0..SHARDS {
            if self.bytes.load(Ordering::Relaxed) + incoming <= self.budget_bytes {
                return;
            }
            let mut shard = self.lock((own + step) % SHARDS);
            while self.bytes.load(Ordering::Relaxed) + incoming > self.budget_bytes {
                let oldest = shard.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| k.clone());
                let Some(oldest) = oldest else { break };
                if let Some(e) = shard.remove(&oldest) {
                    self.bytes.fetch_sub(e.charge, Ordering::Relaxed);
                    let len = e.value.as_ref().map_or(0, |b| b.len() as u64);
                    self.value_bytes.fetch_sub(len, Ordering::Relaxed);
                    self.entries.fetch_sub(1, Ordering::Relaxed);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Drop every entry (counters other than the held bytes and entries are kept).
    pub(crate) fn clear(&self) {
        for i in 0..SHARDS {
            let mut shard = self.lock(i);
            for (_, e) in shard.drain() {
                self.bytes.fetch_sub(e.charge, Ordering::Relaxed);
                let len = e.value.as_ref().map_or(0, |b| b.len() as u64);
                self.value_bytes.fetch_sub(len, Ordering::Relaxed);
                self.entries.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// What the [`TieredStorage`] of every level of one chunk cache share: the tier, the benchmarking
/// delay and the store-request counters.
pub(crate) struct StoreTier {
    pub(crate) cache: EncodedCache,
    pub(crate) remote_only: bool,
    /// The delay before every request that reaches the store (set with the fetch options).
    pub(crate) delay: OnceLock<Option<Duration>>,
    /// Requests that reached the store (whole values and byte-range reads, one per call).
    pub(crate) requests: AtomicU64,
    /// Bytes those requests returned.
    pub(crate) request_bytes: AtomicU64,
    /// Nanoseconds slept for the benchmarking delay (left out of the decode time).
    pub(crate) delay_ns: AtomicU64,
}

impl StoreTier {
    pub(crate) fn new(options: CompressedOptions) -> Self {
        StoreTier {
            cache: EncodedCache::new(options.budget_bytes),
            remote_only: options.remote_only,
            delay: OnceLock::new(),
            requests: AtomicU64::new(0),
            request_bytes: AtomicU64::new(0),
            delay_ns: AtomicU64::new(0),
        }
    }

    /// Whether a level at `array_location` is read as remote data: it is on a remote store, or
    /// the benchmarking delay makes local files stand in for one.
    pub(crate) fn reads_as_remote(&self, array_location: &str) -> bool {
        super::is_url(array_location) || self.delay.get().copied().flatten().is_some()
    }

    /// Whether a level at `array_location` keeps its encoded chunks here.
    pub(crate) fn keeps(&self, array_location: &str) -> bool {
        self.cache.budget_bytes > 0 && (!self.remote_only || self.reads_as_remote(array_location))
    }

    /// A request to the store starts: sleep the benchmarking delay, count it.
    fn request(&self) {
        if let Some(delay) = self.delay.get().copied().flatten() {
            std::thread::sleep(delay);
            let ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
            self.delay_ns.fetch_add(ns, Ordering::Relaxed);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn received(&self, bytes: &MaybeBytes) {
        let len = bytes.as_ref().map_or(0, |b| b.len() as u64);
        self.request_bytes.fetch_add(len, Ordering::Relaxed);
    }
}

/// A level's store as a chunk cache reads it: requests counted and delayed, values kept in the
/// compressed tier when `keep` (see the module docs).
pub(crate) struct TieredStorage {
    pub(crate) inner: ReadableStorage,
    pub(crate) tier: Arc<StoreTier>,
    pub(crate) level_id: u64,
    pub(crate) keep: bool,
}

thread_local! {
    /// The key a lookup builds ([`TieredStorage::held`], [`TieredStorage::holds`]), reused: no
    /// allocation.
    static LOOKUP: std::cell::RefCell<EncodedKey> = const {
        std::cell::RefCell::new(EncodedKey {
            level_id: 0,
            key: String::new(),
            range: None,
        })
    };
}

impl TieredStorage {
    /// The tier's copy of `range` (`None`: all) of the value at store key `key`, looked up with
    /// the thread's reused key (no allocation); `None` when the tier does not hold it or does
    /// not keep this level's values. For readers that fetch and decode a chunk themselves
    /// ([`crate::store::direct`]): on `None` they call [`TieredStorage::start_request`], read
    /// the store behind the tier, then [`TieredStorage::received`].
    pub(crate) fn held(&self, key: &str, range: Option<ByteRange>) -> Option<MaybeBytes> {
        if !self.keep {
            return None;
        }
        LOOKUP.with_borrow_mut(|k| {
            k.level_id = self.level_id;
            k.key.clear();
            k.key.push_str(key);
            k.range = range.map(range_key);
            self.tier.cache.get(k)
        })
    }

    /// The store answered `got` for `range` (`None`: all) of the value at `key`: counted, and
    /// kept when the tier keeps this level's values (a range as a copy of its own, so that a
    /// slice of a larger response does not hold that response). Returns the value as kept.
    pub(crate) fn received(&self, key: &str, range: Option<ByteRange>, got: MaybeBytes) -> MaybeBytes {
        self.tier.received(&got);
        if !self.keep {
            return got;
        }
        let k = EncodedKey {
            level_id: self.level_id,
            key: key.to_owned(),
            range: range.map(range_key),
        };
        let kept = match range {
            None => got,
            Some(_) => got.map(|b| Bytes::copy_from_slice(&b)),
        };
        self.tier.cache.insert(k, kept.clone());
        kept
    }

    /// `range` (`None`: all) of the value at `key`: the tier's copy, else one request to the
    /// store behind it (delayed and counted, kept when the tier keeps this level's values).
    fn read_through(&self, key: &StoreKey, range: Option<ByteRange>) -> Result<MaybeBytes, StorageError> {
        if let Some(held) = self.held(key.as_str(), range) {
            return Ok(held);
        }
        self.start_request();
        let got = match range {
            None => self.inner.get(key)?,
            Some(range) => self.inner.get_partial(key, range)?,
        };
        Ok(self.received(key.as_str(), range, got))
    }

    /// Whether the tier holds the whole value at `key` (not counted as a hit or a miss).
    pub(crate) fn holds(&self, key: &str) -> bool {
        self.keep
            && LOOKUP.with_borrow_mut(|k| {
                k.level_id = self.level_id;
                k.key.clear();
                k.key.push_str(key);
                k.range = None;
                self.tier.cache.contains(k)
            })
    }

    /// A request is about to reach the store: the benchmarking delay is slept, the request counted.
    pub(crate) fn start_request(&self) {
        self.tier.request();
    }

    /// The store answered `len` bytes that are not kept (a file read into a reader's buffer).
    pub(crate) fn received_len(&self, len: usize) {
        self.tier.request_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
}

impl ReadableStorageTraits for TieredStorage {
    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        self.read_through(key, None)
    }

    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        if !self.keep {
            self.tier.request();
            return self.inner.get_partial_many(key, byte_ranges);
        }
        let mut out = Vec::new();
        for range in byte_ranges {
            match self.read_through(key, Some(range))? {
                Some(bytes) => out.push(Ok(bytes)),
                None => return Ok(None),
            }
        }
        Ok(Some(Box::new(out.into_iter())))
    }

    fn get_partial(&self, key: &StoreKey, byte_range: ByteRange) -> Result<MaybeBytes, StorageError> {
        self.read_through(key, Some(byte_range))
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        self.inner.size_key(key)
    }

    fn supports_get_partial(&self) -> bool {
        self.inner.supports_get_partial()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> EncodedKey {
        EncodedKey {
            level_id: 1,
            key: format!("s0/{i}"),
            range: None,
        }
    }

    #[test]
    fn budget_is_exact_and_eviction_is_least_recently_used() {
        let charge = |len: u64| len + ENTRY_OVERHEAD_BYTES;
        let cache = EncodedCache::new(charge(100) + charge(50) + charge(0));
        cache.insert(key(0), Some(Bytes::from(vec![1u8; 100])));
        cache.insert(key(1), Some(Bytes::from(vec![2u8; 50])));
        cache.insert(key(2), None);
        let s = cache.stats();
        assert_eq!(
            (s.entries, s.bytes, s.value_bytes),
            (3, charge(100) + charge(50) + charge(0), 150)
        );
        assert_eq!(cache.get(&key(0)), Some(Some(Bytes::from(vec![1u8; 100]))));
        assert_eq!(cache.get(&key(2)), Some(None));
        // A fourth value must evict one entry (least recently used in the shard it is found in,
        // the new key's shard first, as in the decoded cache); the budget holds exactly.
        cache.insert(key(3), Some(Bytes::from(vec![3u8; 50])));
        let s = cache.stats();
        assert_eq!((s.entries, s.evictions), (3, 1));
        assert!(s.bytes <= s.budget_bytes, "{s:?}");
        assert_eq!(s.bytes, s.value_bytes + 3 * ENTRY_OVERHEAD_BYTES, "{s:?}");
        assert_eq!(cache.get(&key(3)), Some(Some(Bytes::from(vec![3u8; 50]))));
        // Larger than the budget: not kept.
        cache.insert(key(4), Some(Bytes::from(vec![0u8; 1000])));
        assert_eq!(cache.get(&key(4)), None);
        assert!(cache.stats().bytes <= cache.stats().budget_bytes);
        cache.clear();
        let s = cache.stats();
        assert_eq!((s.entries, s.bytes, s.value_bytes), (0, 0, 0));
    }

    /// Threads inserting at once never hold more than the budget, at any moment, and the held
    /// bytes are those of the entries once they stop.
    #[test]
    fn inserts_at_once_never_hold_more_than_the_budget() {
        let budget = 3 * (100 + ENTRY_OVERHEAD_BYTES);
        let cache = EncodedCache::new(budget);
        let value = Bytes::from(vec![7u8; 100]);
        let most = crate::store::budget::most_held_while(
            4,
            || cache.stats().bytes,
            |t| {
                for i in 0..10_000 {
                    cache.insert(key(t * 1_000_000 + i), Some(value.clone()));
                }
            },
        );
        assert!(most <= budget, "held {most} bytes of a {budget}-byte budget");
        let s = cache.stats();
        assert!(s.entries >= 1 && s.entries <= 3, "{s:?}");
        assert_eq!(s.bytes, s.entries * (100 + ENTRY_OVERHEAD_BYTES), "{s:?}");
        assert_eq!(s.value_bytes, s.entries * 100, "{s:?}");
    }

    #[test]
    fn zero_budget_keeps_nothing() {
        let cache = EncodedCache::new(0);
        cache.insert(key(0), Some(Bytes::from_static(b"x")));
        assert_eq!(cache.get(&key(0)), None);
        assert_eq!(cache.stats().entries, 0);
    }
}
