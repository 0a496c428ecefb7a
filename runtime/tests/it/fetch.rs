//! Many chunk requests in flight: window reads fetch the chunks the cache misses at once on the
//! cache's pool, and the loader fetches the chunks of later batches ahead. A fixed delay per
//! chunk request (`FetchOptions::delay`, the `CELLMAP_STORE_DELAY_MS` aid) stands for a remote
//! store; the in-flight high-water mark says whether requests overlapped.

use std::time::{Duration, Instant};

use cellmap_runtime::{
    Loader, PipelineError, kernels::StridedDest, read::WindowRequest, read::read_window, store::ChunkCache,
    store::FetchOptions, store::Multiscale, synth::SynthVariant,
};
use cellmap_schema::Split;
use serde_json::json;

use crate::loader::{options, spec_with, synth};

/// The delay of the tests that show requests overlapping: long enough that the pools'
/// threads wake and start theirs while the first one waits, on a loaded two-core machine too.
const OVERLAP_DELAY: Duration = Duration::from_millis(100);

fn cache(concurrency: usize, delay: Option<Duration>) -> ChunkCache {
    let cache = ChunkCache::new(64 << 20);
    assert!(cache.configure_fetch(FetchOptions {
        concurrency,
        delay,
        ..FetchOptions::default()
    }));
    cache
}

/// Read the `[40; 3]` window at voxel 10 of the synthetic raw s0 (32³ chunks: 8 of them); the
/// error as text.
pub(crate) fn read_raw(ms: &Multiscale, cache: Option<&ChunkCache>) -> Result<Vec<f32>, String> {
    let mut out = vec![0f32; 40 * 40 * 40];
    let dest = StridedDest::c_order(&mut out, [40; 3]).unwrap();
    read_window(
        &ms.levels[0],
        cache,
        &WindowRequest {
            start_vox: [10; 3],
            fill: 0.0,
        },
        dest,
    )
    .map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn a_window_fetches_its_missing_chunks_at_once_and_reads_the_same_voxels() {
    let f = synth(SynthVariant::V2);
    let ms = Multiscale::open(&f.dir.join("recon-1/em/fibsem-uint8").display().to_string()).unwrap();
    let plain = read_raw(&ms, None).unwrap();
    let k = 8u64;

    let sequential = cache(1, Some(OVERLAP_DELAY));
    let t = Instant::now();
    assert_eq!(read_raw(&ms, Some(&sequential)).unwrap(), plain);
    let sequential_wall = t.elapsed();
    let s = sequential.fetch_stats();
    assert_eq!((s.chunks, s.max_in_flight), (k, 1), "{s:?}");
    assert!(sequential_wall >= OVERLAP_DELAY * k as u32, "{sequential_wall:?}");

    let concurrent = cache(16, Some(OVERLAP_DELAY));
    let t = Instant::now();
    assert_eq!(read_raw(&ms, Some(&concurrent)).unwrap(), plain);
    let wall = t.elapsed();
    let s = concurrent.fetch_stats();
    assert_eq!(s.chunks, k, "{s:?}");
    // One after the other, the 8 requests cannot overlap and take 8 × 100 ms at least.
    assert!(s.max_in_flight >= 4, "{s:?}");
    assert!(wall < OVERLAP_DELAY * k as u32, "{wall:?}");
    assert!(
        s.wait_seconds > 0.0 && s.decode_seconds > 0.0 && s.bytes == k * 32 * 32 * 32,
        "{s:?}"
    );
    let c = concurrent.stats();
    assert_eq!((c.hits, c.misses), (0, k));

    // Warm: nothing fetched again, the same voxels.
    assert_eq!(read_raw(&ms, Some(&concurrent)).unwrap(), plain);
    assert_eq!(concurrent.fetch_stats().chunks, k);
    assert_eq!(concurrent.stats().hits, k);

    // A cache without budget still fetches at once (the loader's `no_cache`).
    let none = ChunkCache::new(0);
    none.configure_fetch(FetchOptions {
        concurrency: 16,
        delay: Some(OVERLAP_DELAY),
        ..FetchOptions::default()
    });
    assert_eq!(read_raw(&ms, Some(&none)).unwrap(), plain);
    assert!(none.fetch_stats().max_in_flight >= 4);
}

#[test]
fn a_bad_chunk_among_several_fetched_at_once_names_the_array_and_the_key() {
    let f = synth(SynthVariant::V2);
    let chunk_file = f.dir.join("recon-1/em/fibsem-uint8/s0/1/0/1");
    std::fs::write(&chunk_file, b"not a chunk").unwrap();
    let ms = Multiscale::open(&f.dir.join("recon-1/em/fibsem-uint8").display().to_string()).unwrap();
    let cache = cache(16, None);
    let mut out = vec![0f32; 40 * 40 * 40];
    let dest = StridedDest::c_order(&mut out, [40; 3]).unwrap();
    let err = read_window(
        &ms.levels[0],
        Some(&cache),
        &WindowRequest {
            start_vox: [10; 3],
            fill: 0.0,
        },
        dest,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("recon-1/em/fibsem-uint8/s0`"), "{err}");
    assert!(
        err.contains("(key `s0/1/0/1`)") && err.contains("chunk [1, 0, 1]"),
        "{err}"
    );
}

/// Every batch of `n` from a training loader over `spec`, flattened, with the loader's fetch
/// counters.
pub(crate) fn batches(
    spec: cellmap_schema::Spec,
    n: usize,
    edit: impl FnOnce(&mut cellmap_runtime::LoaderOptions),
) -> (Vec<Vec<u32>>, cellmap_runtime::store::FetchStats) {
    let mut o = options(Split::Train);
    edit(&mut o);
    let mut loader = Loader::open(spec, o).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let batch = loader
            .next_batch()
            .unwrap()
            .map_err(|e: PipelineError| e.to_string())
            .unwrap();
        let mut bits = Vec::new();
        for i in 0..batch.arrays() {
            bits.extend(batch.array(i).iter().map(|v| v.to_bits()));
        }
        out.push(bits);
    }
    (out, loader.fetch_stats())
}

#[test]
fn batches_are_identical_with_and_without_concurrent_fetches_and_fetching_ahead() {
    let f = synth(SynthVariant::V3);
    // Rotation, mirror and transpose: the windows fetched ahead come from the spatial draws.
    let spec = || {
        spec_with(&f.dir, |d| {
            d["augment"]["spatial"] = json!({"mirror": {"z": 0.5, "y": 0.5, "x": 0.5}, "transpose": ["z", "y", "x"], "rotate": {"z": [-180, 180]}});
            d["sampling"]["iterations_per_epoch"] = json!(30);
        })
    };
    let n = 8;
    let (off, off_stats) = batches(spec(), n, |o| {
        o.fetch_concurrency = Some(1);
        o.fetch_ahead = Some(0);
    });
    // Each of the 2 workers fetches one chunk at a time.
    assert!(
        off_stats.max_in_flight <= 2 && off_stats.ahead_chunks == 0,
        "{off_stats:?}"
    );
    let (on, on_stats) = batches(spec(), n, |o| {
        o.fetch_concurrency = Some(8);
        o.fetch_ahead = Some(3);
        o.store_delay = Some(Duration::from_millis(5));
    });
    assert!(off == on, "batches differ with fetching at once and ahead");
    assert!(on_stats.max_in_flight > 2, "{on_stats:?}");
    // Batches 2 ..= 4 are scheduled when batch 1 starts, long before a worker reaches batch 4.
    assert!(on_stats.ahead_chunks > 0, "{on_stats:?}");
    // Without a cache: fetched at once, nothing ahead, the same batches.
    let (none, none_stats) = batches(spec(), n, |o| {
        o.no_cache = true;
        o.fetch_concurrency = Some(8);
    });
    assert!(off == none, "batches differ without a cache");
    assert_eq!(none_stats.ahead_chunks, 0, "{none_stats:?}");
}

/// Local files decoded directly: a window's misses decoded on the fetch pool, several at once
/// (the default with cores to spare), give the same batches as the workers decoding them
/// one after the other (the default when they keep every core busy).
#[test]
fn local_misses_on_the_pool_or_in_the_worker_give_the_same_batches() {
    let f = synth(SynthVariant::V2);
    let spec = || {
        spec_with(&f.dir, |d| {
            d["augment"]["spatial"] = json!({"mirror": {"z": 0.5, "y": 0.5, "x": 0.5}, "transpose": ["z", "y", "x"]});
            d["sampling"]["iterations_per_epoch"] = json!(30);
        })
    };
    let n = 6;
    let run = |on_pool: bool| {
        batches(spec(), n, |o| {
            o.no_cache = true;
            o.fetch_concurrency = Some(8);
            o.fetch_ahead = Some(0);
            o.local_on_pool = Some(on_pool);
        })
    };
    let (in_worker, in_worker_stats) = run(false);
    let (on_pool, on_pool_stats) = run(true);
    assert!(in_worker == on_pool, "batches differ between the pool and the worker");
    // Each of the 2 workers decodes one chunk at a time itself; on the pool, a window's misses.
    assert!(
        in_worker_stats.max_in_flight <= 2 && in_worker_stats.pooled == 0,
        "{in_worker_stats:?}"
    );
    assert!(on_pool_stats.pooled > 0, "{on_pool_stats:?}");
}

#[test]
fn a_cache_without_room_fetches_nothing_ahead_rather_than_decoding_twice() {
    let f = synth(SynthVariant::V3);
    let spec = |cache_bytes: u64| {
        spec_with(&f.dir, |d| {
            d["augment"]["spatial"] = json!({"rotate": {"z": [-180, 180]}});
            d["sampling"]["iterations_per_epoch"] = json!(30);
            d["loader"]["cache_bytes"] = json!(cache_bytes);
        })
    };
    let n = 6;
    let (reference, _) = batches(spec(1 << 20), n, |o| o.no_cache = true);
    // A cache smaller than any chunk (at a byte per voxel): nothing fetched ahead is decoded.
    let (tiny, stats) = batches(spec(1000), n, |o| o.fetch_ahead = Some(3));
    assert!(tiny == reference, "batches differ with a cache without room");
    assert_eq!((stats.ahead_chunks, stats.ahead_discarded), (0, 0), "{stats:?}");
    assert!(stats.ahead_skipped > 0, "{stats:?}");
    // With room, chunks are fetched ahead and kept.
    let (roomy, stats) = batches(spec(256 << 20), n, |o| {
        o.fetch_ahead = Some(3);
        o.store_delay = Some(Duration::from_millis(5));
    });
    assert!(roomy == reference, "batches differ with fetching ahead");
    assert!(stats.ahead_chunks > 0 && stats.ahead_skipped == 0, "{stats:?}");
}

/// A decoded cache without room but a compressed tier that keeps the data: the chunks of the
/// batches ahead are fetched into the tier as stored bytes, not decoded (their reads then decode
/// them without asking the store); the batches are those read without any cache. Without the
/// tier, nothing is fetched ahead, as above.
#[test]
fn without_room_chunks_ahead_are_fetched_into_the_compressed_tier() {
    let f = synth(SynthVariant::V2);
    let spec = |tier: u64| {
        spec_with(&f.dir, |d| {
            d["augment"]["spatial"] = json!({"rotate": {"z": [-180, 180]}});
            d["sampling"]["iterations_per_epoch"] = json!(30);
            d["loader"]["cache_bytes"] = json!(1000);
            d["loader"]["compressed_cache_bytes"] = json!(tier);
        })
    };
    let n = 6;
    let (reference, _) = batches(spec(0), n, |o| o.no_cache = true);
    let (ahead, stats) = batches(spec(64 << 20), n, |o| {
        o.fetch_ahead = Some(3);
        o.store_delay = Some(Duration::from_millis(5));
    });
    assert!(
        ahead == reference,
        "batches differ with chunks fetched ahead into the tier"
    );
    assert!(stats.ahead_encoded > 0, "{stats:?}");
    assert_eq!((stats.ahead_chunks, stats.ahead_discarded), (0, 0), "{stats:?}");
    let (none, stats) = batches(spec(0), n, |o| o.fetch_ahead = Some(3));
    assert!(none == reference);
    assert_eq!(stats.ahead_encoded, 0, "{stats:?}");
    assert!(stats.ahead_skipped > 0, "{stats:?}");
}

/// Under the benchmarking delay local files stand in for a remote store and are read as remote
/// data: the compressed tier's default (remote levels only) keeps them, so the chunks of the
/// batches ahead that the decoded cache has no room for are fetched into it, and the
/// fetch-ahead pool (16 × the fetch concurrency for remote data) keeps more requests in flight
/// than the fetch pool and the workers could. The batches are those read without any cache.
#[test]
fn under_the_delay_local_files_are_read_as_remote_data() {
    let f = synth(SynthVariant::V2);
    let spec = || {
        spec_with(&f.dir, |d| {
            d["augment"]["spatial"] = json!({"rotate": {"z": [-180, 180]}});
            d["sampling"]["iterations_per_epoch"] = json!(30);
            d["loader"]["cache_bytes"] = json!(1000);
        })
    };
    let n = 6;
    let (reference, _) = batches(spec(), n, |o| o.no_cache = true);
    let (delayed, stats) = batches(spec(), n, |o| {
        o.fetch_concurrency = Some(2);
        o.fetch_ahead = Some(3);
        // Long enough that 9 of the ahead pool's threads are waiting at once on a loaded
        // two-core machine too.
        o.store_delay = Some(OVERLAP_DELAY);
    });
    assert!(delayed == reference, "batches differ under the delay");
    assert!(stats.ahead_encoded > 0, "{stats:?}");
    // The fetch pool's 2 threads, the 2 workers and an ahead pool as small as the fetch pool
    // would account for 6 at most (measured: 4); the ahead pool has 32 threads.
    assert!(stats.max_in_flight > 8, "{stats:?}");
    // Without the delay the same local files are not kept in the tier: nothing goes ahead.
    let (plain, stats) = batches(spec(), n, |o| {
        o.fetch_concurrency = Some(2);
        o.fetch_ahead = Some(3);
    });
    assert!(plain == reference, "batches differ");
    assert_eq!(stats.ahead_encoded, 0, "{stats:?}");
    assert!(stats.ahead_skipped > 0, "{stats:?}");
}

/// Dropping a loader stops its fetching ahead: the chunks still queued for batches nobody will
/// read are left (the cache here is shared, so it outlives the loader; with a remote store that
/// stopped answering, the queue would otherwise keep the pool retrying). Only the requests in
/// flight at the drop, one per fetch-ahead thread, may still land.
#[test]
fn a_dropped_loader_leaves_the_chunks_it_had_not_fetched_ahead() {
    use std::sync::Arc;

    use cellmap_runtime::store::{CompressedOptions, FetchStats};

    let f = synth(SynthVariant::V2);
    let spec = spec_with(&f.dir, |d| {
        d["augment"]["spatial"] = json!({"rotate": {"z": [-180, 180]}});
        d["sampling"]["iterations_per_epoch"] = json!(60);
        d["loader"]["cache_bytes"] = json!(1000);
    });
    let cache = Arc::new(ChunkCache::new(1000).with_compressed(CompressedOptions {
        budget_bytes: 64 << 20,
        remote_only: false,
    }));
    let mut o = options(Split::Train);
    o.cache = Some(Arc::clone(&cache));
    o.fetch_concurrency = Some(2);
    o.ahead_concurrency = Some(2);
    o.fetch_ahead = Some(8);
    o.store_delay = Some(Duration::from_millis(100));
    let mut loader = Loader::open(spec, o).unwrap();
    // Batch 1's start (before it is handed out) schedules batches 2 ..= 9.
    for _ in 0..2 {
        loader.next_batch().unwrap().unwrap();
    }
    drop(loader);
    let ahead = |s: FetchStats| s.ahead_chunks + s.ahead_encoded;
    let at_drop = ahead(cache.fetch_stats());
    // 2 threads at 100 ms a request would fetch about 12 more chunks of the 8 batches listed.
    std::thread::sleep(Duration::from_millis(600));
    let later = ahead(cache.fetch_stats());
    assert!(
        later <= at_drop + 2,
        "{at_drop} fetched ahead at the drop, {later} later"
    );
}

/// Nothing is fetched ahead while the first batch is read: its samples want every core. One
/// worker and one ring slot: while the consumer holds batch 0, no later batch has started, so
/// nothing is scheduled ahead however long it waits; once batches follow, the chunks of the
/// batches after the next are fetched ahead as usual.
#[test]
fn nothing_is_fetched_ahead_while_the_first_batch_is_read() {
    let f = synth(SynthVariant::V2);
    let spec = spec_with(&f.dir, |d| {
        d["augment"]["spatial"] = json!({"rotate": {"z": [-180, 180]}});
        d["sampling"]["iterations_per_epoch"] = json!(30);
    });
    let mut o = options(Split::Train);
    o.workers = Some(1);
    o.prefetch = Some(1);
    o.fetch_ahead = Some(4);
    let mut loader = Loader::open(spec, o).unwrap();
    let cache = std::sync::Arc::clone(loader.cache().expect("the loader has a chunk cache"));
    let ahead = |s: cellmap_runtime::store::FetchStats| (s.ahead_chunks, s.ahead_encoded, s.ahead_skipped);
    let first = loader.next_batch().unwrap().unwrap();
    // Fetching batches 1 ..= 4 ahead at the start of batch 0 would have listed tens of chunks
    // by now (local files: decoded straight into the cache).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ahead(cache.fetch_stats()), (0, 0, 0), "{:?}", cache.fetch_stats());
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ahead(cache.fetch_stats()) == (0, 0, 0) && Instant::now() < deadline {
        loader.next_batch().unwrap().unwrap();
    }
    assert!(cache.fetch_stats().ahead_chunks > 0, "{:?}", cache.fetch_stats());
}
