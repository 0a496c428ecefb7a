//! The compressed tier (issue #15): encoded chunk bytes kept in memory as the store returned them,
//! read on a decoded-cache miss before the store is asked. Real stores (the synthetic zarr v2 and
//! sharded v3 data on disk), exact voxels and exact request and byte counts.

use std::time::Duration;

use cellmap_runtime::{
    Loader, store::ChunkCache, store::CompressedOptions, store::ENTRY_OVERHEAD_BYTES, store::FetchOptions,
    store::Multiscale, synth::SynthVariant,
};
use cellmap_schema::Split;
use serde_json::json;

use crate::fetch::{batches, read_raw};
use crate::loader::{options, spec_with, synth};

/// Decoded bytes of one 32³ uint8 chunk of the synthetic raw s0: a decoded cache this small holds
/// one of the 8 chunks a window reads.
const ONE_CHUNK: u64 = 32 * 32 * 32;

fn cache(decoded_bytes: u64, compressed_bytes: u64, concurrency: usize) -> ChunkCache {
    let cache = ChunkCache::new(decoded_bytes).with_compressed(CompressedOptions {
        budget_bytes: compressed_bytes,
        remote_only: false,
    });
    assert!(cache.configure_fetch(FetchOptions {
        concurrency,
        delay: Some(Duration::from_millis(2)),
        ..FetchOptions::default()
    }));
    cache
}

fn raw(f: &crate::loader::Fixture) -> Multiscale {
    Multiscale::open(&f.dir.join("recon-1/em/fibsem-uint8").display().to_string()).unwrap()
}

/// Sum of the sizes of the chunk files under `s0` of raw (the encoded bytes of every chunk).
fn chunk_file_bytes(f: &crate::loader::Fixture, keys: &[&str]) -> u64 {
    let s0 = f.dir.join("recon-1/em/fibsem-uint8/s0");
    keys.iter().map(|k| std::fs::metadata(s0.join(k)).unwrap().len()).sum()
}

/// The 8 chunk keys of the window (chunks 0 and 1 on each axis, `/` separator).
const KEYS: [&str; 8] = ["0/0/0", "0/0/1", "0/1/0", "0/1/1", "1/0/0", "1/0/1", "1/1/0", "1/1/1"];

#[test]
fn a_second_read_that_misses_the_decoded_cache_asks_the_store_nothing() {
    let f = synth(SynthVariant::V2);
    let ms = raw(&f);
    let plain = read_raw(&ms, None).unwrap();
    for concurrency in [1, 8] {
        let tiered = cache(ONE_CHUNK, 64 << 20, concurrency);
        assert_eq!(read_raw(&ms, Some(&tiered)).unwrap(), plain);
        let first = tiered.fetch_stats();
        assert_eq!(first.store_requests, 8, "{first:?}");
        assert_eq!(first.store_bytes, chunk_file_bytes(&f, &KEYS), "{first:?}");
        assert_eq!(read_raw(&ms, Some(&tiered)).unwrap(), plain);
        let second = tiered.fetch_stats();
        // The decoded cache holds one chunk: the second read decodes again, from the tier.
        assert!(second.chunks >= first.chunks + 7, "{second:?}");
        assert_eq!(second.store_requests, 8, "{second:?}");
        let t = tiered.compressed_stats();
        assert_eq!((t.misses, t.entries), (8, 8), "{t:?}");
        assert_eq!(t.hits, second.chunks - first.chunks, "{t:?}");
        // Exact accounting: the bytes of the 8 chunk files plus the overhead per entry.
        assert_eq!(t.value_bytes, chunk_file_bytes(&f, &KEYS), "{t:?}");
        assert_eq!(t.bytes, t.value_bytes + 8 * ENTRY_OVERHEAD_BYTES, "{t:?}");
    }
    // Without the tier the same second read asks the store again.
    let off = cache(ONE_CHUNK, 0, 1);
    assert_eq!(read_raw(&ms, Some(&off)).unwrap(), plain);
    assert_eq!(read_raw(&ms, Some(&off)).unwrap(), plain);
    let s = off.fetch_stats();
    assert_eq!(s.store_requests, s.chunks, "{s:?}");
    assert!(s.store_requests >= 15, "{s:?}");
    assert_eq!(off.compressed_stats().entries, 0);
}

#[test]
fn sharded_arrays_keep_their_inner_chunks_and_shard_indexes() {
    let f = synth(SynthVariant::V3);
    let ms = raw(&f);
    assert!(ms.levels[0].shard_shape_vox.is_some());
    let plain = read_raw(&ms, None).unwrap();
    let tiered = cache(ONE_CHUNK, 64 << 20, 8);
    assert_eq!(read_raw(&ms, Some(&tiered)).unwrap(), plain);
    let first = tiered.fetch_stats();
    assert!(first.store_requests >= 8, "{first:?}");
    assert_eq!(read_raw(&ms, Some(&tiered)).unwrap(), plain);
    let second = tiered.fetch_stats();
    assert!(second.chunks >= first.chunks + 7, "{second:?}");
    assert_eq!(second.store_requests, first.store_requests, "{second:?}");
    let t = tiered.compressed_stats();
    assert_eq!(t.bytes, t.value_bytes + t.entries * ENTRY_OVERHEAD_BYTES, "{t:?}");
    assert_eq!(t.value_bytes, first.store_bytes, "{t:?}");
}

#[test]
fn eviction_keeps_the_tier_within_its_budget() {
    let f = synth(SynthVariant::V2);
    let ms = raw(&f);
    let plain = read_raw(&ms, None).unwrap();
    let sizes: Vec<u64> = KEYS.iter().map(|k| chunk_file_bytes(&f, &[k])).collect();
    // Room for the three largest chunks, not four.
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    let budget = sorted[5..].iter().sum::<u64>() + 3 * ENTRY_OVERHEAD_BYTES;
    let small = cache(0, budget, 1);
    for round in 0..3 {
        assert_eq!(read_raw(&ms, Some(&small)).unwrap(), plain, "round {round}");
        let t = small.compressed_stats();
        assert!(t.bytes <= budget, "{t:?}");
        assert!(t.entries >= 1 && t.entries <= 3, "{t:?}");
        assert_eq!(t.bytes, t.value_bytes + t.entries * ENTRY_OVERHEAD_BYTES, "{t:?}");
        // Every read of the store was a miss that was then kept or evicted: none is lost.
        assert_eq!(t.misses, small.fetch_stats().store_requests, "{t:?}");
        assert_eq!(t.evictions + t.entries, t.misses, "{t:?}");
    }
    small.clear_compressed();
    let t = small.compressed_stats();
    assert_eq!((t.entries, t.bytes, t.value_bytes), (0, 0, 0));
}

#[test]
fn a_failed_request_is_not_kept() {
    let f = synth(SynthVariant::V2);
    let ms = raw(&f);
    let plain = read_raw(&ms, None).unwrap();
    let chunk = f.dir.join("recon-1/em/fibsem-uint8/s0/1/0/1");
    let saved = std::fs::read(&chunk).unwrap();
    // A directory where the chunk file was: the store's read fails (as root too).
    std::fs::remove_file(&chunk).unwrap();
    std::fs::create_dir(&chunk).unwrap();
    let tiered = cache(0, 64 << 20, 1);
    let err = read_raw(&ms, Some(&tiered)).unwrap_err();
    assert!(err.contains("s0/1/0/1"), "{err}");
    let before = tiered.compressed_stats();
    std::fs::remove_dir(&chunk).unwrap();
    std::fs::write(&chunk, &saved).unwrap();
    // The chunk is asked for again and read right; the chunks kept before are not.
    let requests = tiered.fetch_stats().store_requests;
    assert_eq!(read_raw(&ms, Some(&tiered)).unwrap(), plain);
    let asked = tiered.fetch_stats().store_requests - requests;
    assert_eq!(asked, 8 - before.entries, "{before:?}");
    assert_eq!(tiered.compressed_stats().entries, 8);
}

#[test]
fn batches_are_identical_with_the_tier_on_off_and_without_a_cache() {
    for variant in [SynthVariant::V2, SynthVariant::V3] {
        let f = synth(variant);
        // A decoded cache far smaller than the working set: reads go to the tier.
        let spec = |tier: Option<u64>| {
            spec_with(&f.dir, |d| {
                d["augment"]["spatial"] = json!({"mirror": {"z": 0.5}, "rotate": {"z": [-180, 180]}});
                d["sampling"]["iterations_per_epoch"] = json!(30);
                d["loader"]["cache_bytes"] = json!(4 * ONE_CHUNK);
                if let Some(t) = tier {
                    d["loader"]["compressed_cache_bytes"] = json!(t);
                }
            })
        };
        let n = 6;
        let on = batches(spec(Some(64 << 20)), n, |_| {}).0;
        let off = batches(spec(Some(0)), n, |_| {}).0;
        let none = batches(spec(None), n, |o| o.no_cache = true).0;
        let overridden = batches(spec(None), n, |o| o.compressed_cache_bytes = Some(64 << 20)).0;
        assert!(on == off, "{variant:?}: batches differ with the tier on and off");
        assert!(on == none, "{variant:?}: batches differ without a cache");
        assert!(on == overridden, "{variant:?}: batches differ with the option's tier");
    }
}

#[test]
fn the_default_tier_keeps_local_data_out_and_a_spec_budget_keeps_it() {
    let f = synth(SynthVariant::V2);
    let spec = |tier: Option<u64>| {
        spec_with(&f.dir, |d| {
            d["loader"]["cache_bytes"] = json!(ONE_CHUNK);
            if let Some(t) = tier {
                d["loader"]["compressed_cache_bytes"] = json!(t);
            }
        })
    };
    for (tier, kept) in [(None, false), (Some(0), false), (Some(32 << 20), true)] {
        let mut o = options(Split::Train);
        o.fetch_ahead = Some(0);
        let mut loader = Loader::open(spec(tier), o).unwrap();
        for _ in 0..3 {
            loader.next_batch().unwrap().unwrap();
        }
        let t = loader.compressed_stats().unwrap();
        assert_eq!(t.entries > 0, kept, "{tier:?}: {t:?}");
        let expect_budget = tier.unwrap_or(cellmap_runtime::store::DEFAULT_COMPRESSED_CACHE_BYTES);
        assert_eq!(t.budget_bytes, expect_budget);
        let need = cellmap_runtime::memory::compressed_cache_bytes(loader.spec());
        assert_eq!(need, tier.unwrap_or(0), "{tier:?}");
    }
}
