//! How chunks that are not in the cache are fetched: the bounded pools that fetch and decode
//! several at once ([`FetchOptions`]), a fixed delay per request for benchmarks, and the fetch
//! counters ([`FetchStats`]).
//!
//! A [`crate::store::ChunkCache`] owns one [`Fetcher`] once [`crate::store::ChunkCache::configure_fetch`] is
//! called (the loader does): a pool of `concurrency` threads for the chunks a read is waiting
//! for, and a second pool of `ahead_concurrency` threads, made on first use, for chunks fetched
//! ahead (so that a read never queues behind a speculative fetch). The second pool's threads
//! only sleep while idle ([`BlockingPool`]): remote data keeps hundreds of requests in flight
//! there. They run at a lower priority than the workers, so that speculative decoding takes only
//! the CPU the batches being assembled leave. Counters are relaxed atomics, bumped
//! once per chunk decoded, never per voxel or per batch.
//!
//! ```
//! use cellmap_runtime::{store::ChunkCache, store::FetchOptions};
//! let cache = ChunkCache::new(256 << 20);
//! assert!(cache.configure_fetch(FetchOptions { concurrency: 8, ..FetchOptions::default() }));
//! assert_eq!(cache.fetch_concurrency(), 8);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

pub(crate) mod blocking;

pub(crate) use blocking::BlockingPool;

/// The environment variable that adds a fixed delay (milliseconds) to every chunk request of a
/// loader's cache: a benchmarking aid that makes a local store behave like a remote one
/// (`CELLMAP_STORE_DELAY_MS=20 cellmap-compile bench SPEC`).
pub const STORE_DELAY_ENV: &str = "CELLMAP_STORE_DELAY_MS";

/// The delay [`STORE_DELAY_ENV`] asks for (`None` when unset, empty, zero or not a number).
#[must_use]
pub fn store_delay_from_env() -> Option<Duration> {
    let ms: f64 = std::env::var(STORE_DELAY_ENV).ok()?.trim().parse().ok()?;
    (ms.is_finite() && ms > 0.0).then(|| Duration::from_secs_f64(ms / 1000.0))
}

/// How a cache fetches the chunks it misses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    /// Chunks fetched and decoded at once (threads of the fetch pool); 1 fetches them one after
    /// the other on the reading thread.
    pub concurrency: usize,
    /// A fixed delay before every request that reaches the store (a benchmarking aid: see
    /// [`STORE_DELAY_ENV`]); reads answered by the compressed tier are not delayed.
    pub delay: Option<Duration>,
    /// Whether the chunks of local files decoded directly ([`crate::store::direct`]) that a read
    /// misses are also decoded on the pool, several at once. Off, the reader decodes them itself,
    /// one after the other: a local decode is shorter than the hand-off to the pool and back, so
    /// that is faster when the readers already keep every core busy, and allocates nothing (the
    /// pool's job queue does). On, the decodes of a window run in parallel on cores the readers
    /// leave idle. Remote data always uses the pool. Default: off.
    pub local_on_pool: bool,
    /// Chunks fetched ahead at once: threads of the fetch-ahead pool, which wait for the store
    /// (or the benchmarking delay) and then decode. Its threads sleep when idle and do not steal
    /// work from each other, so a few hundred of them cost nothing while they wait: remote data
    /// needs that many requests in flight to hide its latency. 0 = `concurrency`.
    pub ahead_concurrency: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            concurrency: 1,
            delay: None,
            local_on_pool: false,
            ahead_concurrency: 0,
        }
    }
}

/// Counters of the chunks a cache fetched (see [`crate::store::ChunkCache::fetch_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FetchStats {
    /// Chunks fetched and decoded (misses, and chunks fetched ahead).
    pub chunks: u64,
    /// Decoded bytes of those chunks (as stored, before narrowing).
    pub bytes: u64,
    /// Seconds spent in zarrs' chunk retrieval (store read and decode; not the benchmarking
    /// delay), summed over threads.
    pub decode_seconds: f64,
    /// Seconds reading threads spent waiting for chunks not in the cache (sequential fetches and
    /// concurrent ones alike, wall time summed over threads).
    pub wait_seconds: f64,
    /// Chunks fetched ahead into the cache.
    pub ahead_chunks: u64,
    /// Chunks fetched ahead as stored bytes into the compressed tier, not decoded: the cache had
    /// no room for them decoded, and the tier keeps their level (remote data).
    pub ahead_encoded: u64,
    /// Chunks not fetched ahead because the cache had no room (at a byte per voxel) without
    /// evicting chunks that batches in flight have used, and no compressed tier keeps them.
    pub ahead_skipped: u64,
    /// Chunks fetched ahead, decoded, then not kept: the room was taken meanwhile, or the chunk
    /// was larger than a byte per voxel (decode work wasted).
    pub ahead_discarded: u64,
    /// Most chunk requests in flight at once.
    pub max_in_flight: u64,
    /// Chunks a waiting read had decoded on the fetch pool, several at once (the rest of
    /// `chunks` minus the ones fetched ahead were decoded by the reading thread itself).
    pub pooled: u64,
    /// Requests that reached the store (whole values and byte ranges; reads answered by the
    /// compressed tier are not requests).
    pub store_requests: u64,
    /// Encoded bytes those requests returned.
    pub store_bytes: u64,
}

/// Relaxed counters behind [`FetchStats`].
#[derive(Debug, Default)]
pub(crate) struct FetchCounters {
    pub(crate) chunks: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) decode_ns: AtomicU64,
    pub(crate) wait_ns: AtomicU64,
    pub(crate) ahead_chunks: AtomicU64,
    pub(crate) ahead_encoded: AtomicU64,
    pub(crate) ahead_skipped: AtomicU64,
    pub(crate) ahead_discarded: AtomicU64,
    pub(crate) pooled: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

impl FetchCounters {
    pub(crate) fn stats(&self) -> FetchStats {
        let ns = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 * 1e-9;
        FetchStats {
            chunks: self.chunks.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            decode_seconds: ns(&self.decode_ns),
            wait_seconds: ns(&self.wait_ns),
            ahead_chunks: self.ahead_chunks.load(Ordering::Relaxed),
            ahead_encoded: self.ahead_encoded.load(Ordering::Relaxed),
            ahead_skipped: self.ahead_skipped.load(Ordering::Relaxed),
            ahead_discarded: self.ahead_discarded.load(Ordering::Relaxed),
            max_in_flight: self.max_in_flight.load(Ordering::Relaxed),
            pooled: self.pooled.load(Ordering::Relaxed),
            store_requests: 0,
            store_bytes: 0,
        }
    }

    /// A request starts: counted in flight until the guard drops.
    pub(crate) fn start_request(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(self)
    }

    /// Add `d` to a nanosecond counter.
    pub(crate) fn add_time(counter: &AtomicU64, d: Duration) {
        counter.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// A chunk request in flight ([`FetchCounters::start_request`]).
pub(crate) struct InFlight<'a>(&'a FetchCounters);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The pools of a cache (see the module docs).
pub(crate) struct Fetcher {
    pub(crate) options: FetchOptions,
    /// Chunks a read waits for; `None` when `concurrency` is 1.
    pub(crate) pool: Option<rayon::ThreadPool>,
    /// Chunks fetched ahead; made on first use.
    ahead: OnceLock<Option<BlockingPool>>,
    /// The pools' threads, joined when the fetcher is dropped (so dropping a loader ends every
    /// thread it started).
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        // Dropping a pool tells its threads to exit once idle; then wait for them (not for the
        // current thread: the last reference may be dropped by a task on a pool thread).
        drop(self.pool.take());
        drop(self.ahead.take());
        let me = std::thread::current().id();
        let threads = std::mem::take(
            self.threads
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn pool(threads: usize, name: &'static str, handles: &Mutex<Vec<JoinHandle<()>>>) -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .spawn_handler(|thread| {
            let mut builder = std::thread::Builder::new().name(format!("{name}-{}", thread.index()));
            if let Some(size) = thread.stack_size() {
                builder = builder.stack_size(size);
            }
            let handle = builder.spawn(|| thread.run())?;
            handles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(handle);
            Ok(())
        })
        .build()
        .ok()
}

impl Fetcher {
    pub(crate) fn new(options: FetchOptions) -> Self {
        let options = FetchOptions {
            concurrency: options.concurrency.max(1),
            ..options
        };
        let threads = Mutex::new(Vec::new());
        Fetcher {
            pool: (options.concurrency > 1)
                .then(|| pool(options.concurrency, "cellmap-fetch", &threads))
                .flatten(),
            options,
            ahead: OnceLock::new(),
            threads,
        }
    }

    /// The pool that fetches ahead (`None` when it could not be made).
    pub(crate) fn ahead_pool(&self) -> Option<&BlockingPool> {
        self.ahead
            .get_or_init(|| {
                let threads = match self.options.ahead_concurrency {
                    0 => self.options.concurrency,
                    n => n,
                };
                BlockingPool::new(threads, "cellmap-ahead", true, &self.threads)
            })
            .as_ref()
    }
}
