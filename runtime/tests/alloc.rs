//! Steady-state allocation and thread counts of the pipeline, measured with a counting allocator.
//!
//! A separate test binary (no libtest harness) so that no other test allocates concurrently.

use cellmap_runtime::synth::SynthMany;
use cellmap_runtime::{
    ArrayLayout, BatchLayout, SampleMeta, pipeline::Pipeline, pipeline::PipelineOptions, pipeline::SampleJob,
    pipeline::SampleOut,
};
use cellmap_schema::ErrorPolicy;

#[global_allocator]
static GLOBAL: cellmap_runtime::diagnostics::CountingAllocator = cellmap_runtime::diagnostics::CountingAllocator;

struct Ramp;

impl SampleJob for Ramp {
    type Scratch = Vec<f32>;
    type Error = std::io::Error;

    fn scratch(&self) -> Vec<f32> {
        vec![0.0; 1000]
    }

    fn batches(&self) -> Option<u64> {
        None
    }

    fn fill(
        &self,
        scratch: &mut Vec<f32>,
        batch: u64,
        position: usize,
        _: u32,
        out: &mut SampleOut<'_>,
    ) -> Result<Option<SampleMeta>, std::io::Error> {
        for a in 0..out.arrays() {
            for (i, v) in out.array(a).typed::<f32>().expect("f32 layout").iter_mut().enumerate() {
                *v = (batch as usize + position + i) as f32 + scratch[i % 1000];
            }
        }
        Ok(Some(SampleMeta {
            idx: batch as i64,
            dataset: 0,
            centre_nm: [0.0; 3],
        }))
    }
}

fn threads() -> usize {
    cellmap_runtime::diagnostics::thread_count().unwrap_or(0)
}

fn main() {
    allocations_on_every_thread_are_counted();
    let layout = BatchLayout {
        batch_size: 4,
        arrays: vec![
            ArrayLayout {
                name: "raw".into(),
                channels: 1,
                shape_vox: [8, 16, 16],
                dtype: cellmap_schema::OutputDtype::Float32,
                spatial_dims: 3,
            },
            ArrayLayout {
                name: "labels".into(),
                channels: 3,
                shape_vox: [8, 16, 16],
                dtype: cellmap_schema::OutputDtype::Float32,
                spatial_dims: 3,
            },
        ],
    };
    let options = PipelineOptions {
        workers: 2,
        prefetch: 3,
        on_error: ErrorPolicy::Fail,
        max_attempts: 1,
        memory: cellmap_runtime::pipeline::RingMemory::Host,
        pin: false,
    };
    let mut p = Pipeline::start(Ramp, layout, &options);
    for _ in 0..20 {
        p.next_batch().unwrap().unwrap();
    }
    let threads_warm = threads();
    let before = cellmap_runtime::diagnostics::allocations();
    let n = 1000;
    for _ in 0..n {
        let b = p.next_batch().unwrap().unwrap();
        assert!(b.array(0)[0] >= 0.0);
    }
    let allocations = cellmap_runtime::diagnostics::allocations() - before;
    let threads_end = threads();
    println!(
        "pipeline: {allocations} allocations over {n} steady-state batches; threads {threads_warm} -> {threads_end}"
    );
    assert_eq!(allocations, 0, "steady-state batches must not allocate");
    assert_eq!(threads_warm, threads_end, "the thread count must not grow");
    drop(p);
    loader_on_synthetic_data(false, true);
    loader_on_synthetic_data(true, false);
    spatial_draws_do_not_allocate();
    training_cache_reads_without_a_chunk_cache();
    use cellmap_runtime::synth::{SynthCodec, SynthVariant};
    source_reads_without_a_chunk_cache(SynthVariant::V2, SynthCodec::BloscZstd);
    source_reads_without_a_chunk_cache(SynthVariant::V2, SynthCodec::Gzip);
    source_reads_without_a_chunk_cache(SynthVariant::V3, SynthCodec::BloscZstd);
    // 8 chunks: every window's chunks are in use, so nothing goes ahead.
    reads_through_a_cache_smaller_than_the_working_set(None, 262_144, 0);
    // 128 chunks of a working set of 40 crops: chunks unused for the batches in flight make room
    // for those of later batches.
    let many = SynthMany {
        volumes: 4,
        crops: 40,
        classes: 4,
        crop_vox: 32,
    };
    reads_through_a_cache_smaller_than_the_working_set(Some(many), 4 << 20, 2);
    println!("11 passed, 0 failed");
}

/// The counter is shared out between threads (one stripe each, more threads than stripes here):
/// every allocation of every thread is counted once. 20 threads that each allocate 1,000 boxes
/// count exactly 20,000 more than 20 threads that allocate none.
fn allocations_on_every_thread_are_counted() {
    let run = |boxes: usize| {
        let before = cellmap_runtime::diagnostics::allocations();
        let threads: Vec<_> = (0..20)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..boxes {
                        drop(std::hint::black_box(Box::new(t * boxes + i)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        cellmap_runtime::diagnostics::allocations() - before
    };
    let idle = run(0);
    let busy = run(1000);
    println!("counter: {busy} allocations by 20 threads of 1,000 boxes, {idle} by 20 idle threads");
    assert_eq!(busy - idle, 20_000);
}

/// The real loader on the synthetic dataset, with mirror, transpose, rotation and noise (and,
/// with `elastic`, a deformation drawn for half the samples; with `class_balanced`, that weighting
/// over epochs of 4 batches, so the measured batches cross 25 epoch boundaries): after warm-up
/// (chunk cache, scratch and epoch draws filled), no batch allocates and no thread appears.
fn loader_on_synthetic_data(elastic: bool, class_balanced: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let report = synthetic(tmp.path(), None);
    // The synthetic spec with smaller crops and every training augmentation, validated again.
    let mut text = std::fs::read_to_string(&report.spec_yaml)
        .unwrap()
        .replace("raw: { shape: [64, 64, 64]", "raw: { shape: [24, 24, 24]")
        .replace("labels: { shape: [64, 64, 64]", "labels: { shape: [16, 16, 16]");
    text.push_str("augment:\n  inputs: [{gaussian_noise: {mean: 0, std: 1}}]\n  spatial:\n");
    text.push_str("    mirror: {z: 0.5, y: 0.5, x: 0.5}\n    transpose: [y, x]\n    rotate: {z: [-30, 30]}\n");
    if elastic {
        text.push_str("    elastic: {spacing: [64, 64, 64], sigma: 4, probability: 0.5}\n");
    }
    if class_balanced {
        text = text.replace(
            "  seed: 42\n",
            "  seed: 42\n  weighting: class_balanced\n  iterations_per_epoch: 16\n",
        );
    }
    let spec = cellmap_schema::parse(&text, &report.spec_yaml).unwrap().spec;
    let mut options = cellmap_runtime::LoaderOptions::train().unwrap();
    options.dist = cellmap_runtime::DistInfo::single();
    let mut loader = cellmap_runtime::Loader::open(spec, options).unwrap();
    let (n, threads_warm) = (100, std::cell::Cell::new(0));
    let allocations = steady_allocations(&mut loader, n, || threads_warm.set(threads()));
    let threads_warm = threads_warm.get();
    println!(
        "loader: {allocations} allocations over {n} steady-state batches with rotation{}{}; threads {threads_warm} -> {}",
        if elastic { " and elastic" } else { "" },
        if class_balanced {
            ", class-balanced epochs of 4 batches"
        } else {
            ""
        },
        threads()
    );
    assert_eq!(allocations, 0, "steady-state loader batches must not allocate");
    assert_eq!(threads_warm, threads(), "the thread count must not grow");
}

/// Drawing a sample's spatial transform (mirror, transpose of all axes, rotation) allocates nothing.
fn spatial_draws_do_not_allocate() {
    use cellmap_runtime::{augment::draw_spatial, rng::Rng, rng::STREAM_SPATIAL, rng::SampleKey};
    use cellmap_schema::{Axis, Spatial};
    let spatial = Spatial {
        mirror: [0.5; 3],
        transpose: vec![Axis::X, Axis::Z, Axis::Y, Axis::X],
        rotate: [Some((-180.0, 180.0)); 3],
        elastic: None,
    };
    let before = cellmap_runtime::diagnostics::allocations();
    let mut permuted = 0;
    for index in 0..1000 {
        let key = SampleKey {
            seed: 1,
            epoch: 0,
            rank: 0,
            index,
        };
        let draw = draw_spatial(&spatial, &mut Rng::new(key, STREAM_SPATIAL), [1024.0; 3]);
        permuted += usize::from(!draw.is_axis_aligned());
    }
    let allocations = cellmap_runtime::diagnostics::allocations() - before;
    println!("draw_spatial: {allocations} allocations over 1000 draws");
    assert_eq!(allocations, 0, "spatial draws must not allocate");
    assert_eq!(permuted, 1000, "every draw rotates");
}

/// Every read decoding a chunk of the training cache (no chunk cache at all: each window reads
/// its chunk files again), with mirrors and transposes: after warm-up the chunk memory and the
/// `Arc`s sharing it are recycled, and no batch allocates.
fn training_cache_reads_without_a_chunk_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let report = synthetic(tmp.path(), None);
    let cache = tmp.path().join("training-cache");
    let mut text = std::fs::read_to_string(&report.spec_yaml).unwrap();
    text.push_str("augment:\n  spatial:\n    mirror: {z: 0.5, y: 0.5, x: 0.5}\n    transpose: [z, y, x]\n");
    let spec = cellmap_schema::parse(&text, &report.spec_yaml).unwrap().spec;
    let written = cellmap_runtime::training_cache::write(
        &spec,
        &cache,
        &cellmap_runtime::training_cache::CacheOptions::for_spec(&spec),
    )
    .unwrap();
    assert!(written.packs_written > 0, "{written:?}");
    text = text.replace(
        "loader:\n",
        &format!("loader:\n  training_cache: {}\n", cache.display()),
    );
    let spec = cellmap_schema::parse(&text, &report.spec_yaml).unwrap().spec;
    let mut options = cellmap_runtime::LoaderOptions::train().unwrap();
    options.dist = cellmap_runtime::DistInfo::single();
    options.no_cache = true;
    let mut loader = cellmap_runtime::Loader::open(spec, options).unwrap();
    let n = 100;
    let allocations = steady_allocations(&mut loader, n, || {});
    println!("training cache, no chunk cache: {allocations} allocations over {n} steady-state batches");
    assert_eq!(
        allocations, 0,
        "reads through the training cache must not allocate once warm"
    );
}

/// Every read decoding the source's chunks (`variant`, compressed with `codec`: zarr v3 is
/// sharded, so its inner chunks are read by byte range after the shard's index; no chunk cache at
/// all, so every window decodes its chunks again, as when the working set is far larger than
/// any cache), with mirrors and transposes: the chunks are decoded straight into recycled
/// memory, where they are read (local files go to the fetch pool only with a benchmarking
/// delay standing in for a remote store), and no batch allocates once warm, with the default
/// fetch concurrency or 1 (136 allocations per batch when zarrs decoded the chunks).
fn source_reads_without_a_chunk_cache(
    variant: cellmap_runtime::synth::SynthVariant,
    codec: cellmap_runtime::synth::SynthCodec,
) {
    let tmp = tempfile::tempdir().unwrap();
    let options = cellmap_runtime::synth::SynthOptions {
        size: cellmap_runtime::synth::SynthSize::Small,
        variants: vec![variant],
        codec,
        ..Default::default()
    };
    let report = cellmap_runtime::synth::write_synthetic(&tmp.path().join("synth"), &options).unwrap();
    let mut text = std::fs::read_to_string(&report.spec_yaml).unwrap();
    text.push_str("augment:\n  spatial:\n    mirror: {z: 0.5, y: 0.5, x: 0.5}\n    transpose: [z, y, x]\n");
    let spec = cellmap_schema::parse(&text, &report.spec_yaml).unwrap().spec;
    for concurrency in [Some(1), None] {
        let mut options = cellmap_runtime::LoaderOptions::train().unwrap();
        options.dist = cellmap_runtime::DistInfo::single();
        options.no_cache = true;
        options.fetch_concurrency = concurrency;
        // Decoded by the workers themselves, as on a machine whose cores they keep busy (with
        // cores to spare, the default puts a window's misses on the fetch pool, whose job queue
        // allocates a block per 63 jobs).
        options.local_on_pool = Some(false);
        let mut loader = cellmap_runtime::Loader::open(spec.clone(), options).unwrap();
        let n = 100;
        let allocations = steady_allocations(&mut loader, n, || {});
        println!(
            "source data ({variant:?}, {codec:?}), no chunk cache, fetch concurrency {concurrency:?}: {allocations} allocations over {n} steady-state batches"
        );
        assert_eq!(allocations, 0, "decoding missed chunks must not allocate once warm");
    }
}

/// A chunk cache far smaller than the chunks the samples read (a working set larger than the
/// cache, as with hundreds of crops): every batch misses, evicts and inserts. Evicted chunks, and
/// a reader's copy that another reader cached first, go back to the pool the next decodes fill,
/// so a batch allocates nothing once warm (10–16 allocations per batch before the cache handed
/// back the copies it did not keep). Not exactly 0 over every run: a new high of chunks held at
/// once (two workers, a window's chunks, the cache's) adds a buffer now and then (0–4 in 100
/// batches measured).
///
/// With fetching ahead (`fetch_ahead` batches, the default for training with a cache) the later
/// batches' chunks are listed and decoded on the fetch-ahead pool as well, into the same kept
/// lists and recycled buffers: 30–140 allocations per batch before the lists were kept (a list,
/// a level's path and a boxed job per scheduled range), 0 now. `cache_bytes` is large enough
/// here for chunks to go ahead, and the test checks that some did while it measured. `many`:
/// the data's crops and volumes instead of the two crops of the small dataset.
fn reads_through_a_cache_smaller_than_the_working_set(many: Option<SynthMany>, cache_bytes: u64, fetch_ahead: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let report = synthetic(tmp.path(), many);
    let mut text = std::fs::read_to_string(&report.spec_yaml).unwrap();
    text.push_str("augment:\n  spatial:\n    mirror: {z: 0.5, y: 0.5, x: 0.5}\n    transpose: [z, y, x]\n");
    // Chunks of 32³ bytes; a sample reads dozens. 4 samples per batch.
    text = text.replace("batch_size: 8", "batch_size: 4");
    text = text.replace("loader:\n", &format!("loader:\n  cache_bytes: {cache_bytes}\n"));
    let spec = cellmap_schema::parse(&text, &report.spec_yaml).unwrap().spec;
    assert_eq!(spec.loader().cache_bytes, cache_bytes);
    let mut options = cellmap_runtime::LoaderOptions::train().unwrap();
    options.dist = cellmap_runtime::DistInfo::single();
    options.local_on_pool = Some(false);
    options.fetch_ahead = Some(fetch_ahead);
    let mut loader = cellmap_runtime::Loader::open(spec, options).unwrap();
    let cache = std::sync::Arc::clone(loader.cache().expect("a chunk cache"));
    let n = 100;
    let warm = std::cell::Cell::new((0, 0));
    let allocations = steady_allocations(&mut loader, n, || {
        warm.set((cache.stats().evictions, cache.fetch_stats().ahead_chunks));
    });
    let evicted = cache.stats().evictions - warm.get().0;
    let ahead = cache.fetch_stats().ahead_chunks - warm.get().1;
    println!(
        "cache of {cache_bytes} bytes, smaller than the working set, fetching {fetch_ahead} batches ahead: \
         {allocations} allocations over {n} steady-state batches ({evicted} chunks evicted, {ahead} fetched ahead)"
    );
    assert!(evicted >= n as u64, "every batch misses and evicts");
    if fetch_ahead > 0 {
        assert!(ahead >= n as u64, "chunks of later batches are fetched ahead: {ahead}");
    }
    assert!(
        allocations <= n as u64 / 10,
        "misses through a full cache must not allocate once warm"
    );
}

/// The small synthetic dataset (zarr v2) under `dir`, with `many`'s crops and volumes when given.
fn synthetic(dir: &std::path::Path, many: Option<SynthMany>) -> cellmap_runtime::synth::SynthReport {
    let options = cellmap_runtime::synth::SynthOptions {
        many,
        size: cellmap_runtime::synth::SynthSize::Small,
        variants: vec![cellmap_runtime::synth::SynthVariant::V2],
        ..Default::default()
    };
    cellmap_runtime::synth::write_synthetic(&dir.join("synth"), &options).unwrap()
}

/// Allocations over `n` batches of `loader` after warm-up: 30 batches, then more until 10 in a
/// row allocate nothing (chunk cache, scratch and epoch draws filled; `warm` runs between warm-up
/// and the measured batches); every batch holds the spec's 4 samples.
fn steady_allocations(loader: &mut cellmap_runtime::Loader, n: usize, warm: impl FnOnce()) -> u64 {
    for _ in 0..30 {
        loader.next_batch().unwrap().unwrap();
    }
    // Which worker reads which sample depends on timing: on a loaded machine one worker may have
    // seen too few samples to have grown its scratch. Warm up until 10 batches in a row allocate
    // nothing (at most 200 more); an allocation that recurs is still caught by the `n` measured.
    for _ in 0..20 {
        let before = cellmap_runtime::diagnostics::allocations();
        for _ in 0..10 {
            loader.next_batch().unwrap().unwrap();
        }
        if cellmap_runtime::diagnostics::allocations() == before {
            break;
        }
    }
    warm();
    let before = cellmap_runtime::diagnostics::allocations();
    for _ in 0..n {
        let batch = loader.next_batch().unwrap().unwrap();
        assert_eq!(batch.len(), 4);
    }
    cellmap_runtime::diagnostics::allocations() - before
}
