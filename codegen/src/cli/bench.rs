//! `cellmap-compile bench SPEC`: throughput, memory and allocations of the loader.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cellmap_runtime::{
    Loader, LoaderOptions, diagnostics::allocations, diagnostics::cpu_seconds, diagnostics::peak_rss_bytes,
    diagnostics::thread_count, memory::HostBuffer, store::CacheStats, store::CompressedStats, store::FetchStats,
};
use cellmap_schema::Split;

use super::{EXIT_INVALID, SplitArg, load_spec};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// The spec.
    spec: PathBuf,
    /// Batches measured after warm-up.
    #[arg(long, default_value_t = 50)]
    batches: u64,
    /// Batches run before measuring (fill the chunk cache, grow scratch memory).
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Split to read.
    #[arg(long, value_enum, default_value_t = SplitArg::Train)]
    split: SplitArg,
    /// No chunk cache: every read decodes its chunks (cold reads).
    #[arg(long)]
    no_cache: bool,
    /// Override the spec's worker count.
    #[arg(long)]
    workers: Option<usize>,
    /// Override `loader.fetch_concurrency` (chunks one read fetches at once; 1 = one after the
    /// other).
    #[arg(long)]
    fetch_concurrency: Option<usize>,
    /// Override `loader.fetch_ahead` (training batches fetched ahead; 0 = off).
    #[arg(long)]
    fetch_ahead: Option<usize>,
    /// Decode a window's misses of local files on the fetch pool, several at once (`true`), or
    /// in the worker that needs them (`false`). Default: on the pool when the machine has more
    /// than twice as many cores as workers.
    #[arg(long)]
    local_on_pool: Option<bool>,
    /// Chunks fetched ahead at once (threads of the fetch-ahead pool). Default: for remote data
    /// (or under `CELLMAP_STORE_DELAY_MS`) 16 × the fetch concurrency, else the fetch concurrency.
    #[arg(long)]
    ahead_concurrency: Option<usize>,
    /// Override `loader.compressed_cache_bytes` (the compressed tier's budget, for every store;
    /// 0 = off).
    #[arg(long)]
    compressed_cache_bytes: Option<u64>,
    /// Read through this training cache (written by `cellmap-compile cache`) instead of the
    /// spec's `loader.training_cache`.
    #[arg(long, conflicts_with = "no_training_cache")]
    training_cache: Option<PathBuf>,
    /// Read the data directly even when the spec names a training cache.
    #[arg(long)]
    no_training_cache: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Results of a benchmark run; printed as the last line (JSON).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct BenchReport {
    pub(crate) samples_per_s: f64,
    pub(crate) mb_per_s: f64,
    pub(crate) batches: u64,
    pub(crate) batch_size: usize,
    pub(crate) batch_bytes: u64,
    pub(crate) ring_bytes: u64,
    /// The process's peak resident memory by the end of the measured batches (read before the
    /// memory floor allocates a batch of its own).
    pub(crate) peak_rss_bytes: Option<u64>,
    pub(crate) allocations_per_batch: f64,
    pub(crate) cache_hit_rate: Option<f64>,
    pub(crate) floor_samples_per_s: f64,
    pub(crate) floor_ratio: f64,
    /// Samples/s if the workers did nothing but decode the chunks the measured samples decoded:
    /// measured samples × workers ÷ decode seconds (`None` when nothing was decoded). Reads
    /// that miss the chunk cache cannot beat it; what they spend beyond it is copying into the
    /// batch, filling, waiting.
    pub(crate) decode_floor_samples_per_s: Option<f64>,
    pub(crate) decode_floor_ratio: Option<f64>,
    pub(crate) workers: usize,
    /// CPU cores busy on average while the measured batches were loaded (CPU seconds of the
    /// whole process over wall seconds).
    pub(crate) cpu_cores: Option<f64>,
    pub(crate) threads_start: Option<usize>,
    pub(crate) threads_end: Option<usize>,
    pub(crate) plan_seconds: f64,
    /// Seconds from opening the loader (planning included) to the first batch.
    pub(crate) first_batch_seconds: f64,
    /// Chunks read from the data because the training cache does not hold them (whole run;
    /// `None` without a training cache).
    pub(crate) training_cache_fallbacks: Option<u64>,
    /// What the measured batches fetched.
    pub(crate) fetch: FetchReport,
}

/// Chunk fetching during the measured batches (from [`cellmap_runtime::store::FetchStats`]).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct FetchReport {
    pub(crate) cache_hit_rate: Option<f64>,
    /// Misses the full chunk cache did not keep (read once recently: decoded only as far as the
    /// read needs), over all misses (`None` without a chunk cache).
    pub(crate) misses_declined: Option<f64>,
    /// Chunks fetched and decoded per sample (demand and ahead).
    pub(crate) chunks_per_sample: f64,
    /// Decoded bytes per sample.
    pub(crate) decoded_bytes_per_sample: f64,
    /// Seconds in zarrs' chunk retrieval (store read and decode), summed over threads.
    pub(crate) decode_seconds: f64,
    /// Seconds workers waited for chunks not in the cache, summed over workers.
    pub(crate) fetch_wait_seconds: f64,
    /// Chunks fetched ahead into the cache.
    pub(crate) ahead_chunks: u64,
    /// Chunks fetched ahead as stored bytes into the compressed tier (no room decoded).
    pub(crate) ahead_encoded: u64,
    /// Chunks not fetched ahead: no room in the cache, no compressed tier for them.
    pub(crate) ahead_skipped: u64,
    /// Chunks fetched ahead and decoded, then not kept (wasted decodes).
    pub(crate) ahead_discarded: u64,
    /// Most chunk requests in flight at once (whole run).
    pub(crate) max_in_flight: u64,
    /// Chunks per sample a waiting read had decoded on the fetch pool (the rest the reading
    /// worker decoded itself, or were fetched ahead).
    pub(crate) pooled_per_sample: f64,
    /// Requests that reached the store per sample (reads the compressed tier answered are not).
    pub(crate) store_requests_per_sample: f64,
    /// Reads of the store the compressed tier answered, over all reads of the store (`None`
    /// without a tier).
    pub(crate) compressed_hit_rate: Option<f64>,
    /// Bytes the compressed tier holds at the end (charged: values plus per-entry overhead).
    pub(crate) compressed_bytes: u64,
    /// The compressed tier's budget (0 = off).
    pub(crate) compressed_budget_bytes: u64,
}

/// Counters sampled before and after the measured batches.
type Counters = (Option<CacheStats>, FetchStats, Option<CompressedStats>);

impl FetchReport {
    fn new(before: Counters, after: Counters, samples: u64) -> FetchReport {
        let cache_hit_rate = match (before.0, after.0) {
            (Some(a), Some(b)) => {
                let hits = b.hits - a.hits;
                let total = hits + (b.misses - a.misses);
                Some(if total == 0 { 1.0 } else { hits as f64 / total as f64 })
            }
            _ => None,
        };
        let misses_declined = match (before.0, after.0) {
            (Some(a), Some(b)) => {
                let misses = b.misses - a.misses;
                Some(if misses == 0 {
                    0.0
                } else {
                    (b.declined - a.declined) as f64 / misses as f64
                })
            }
            _ => None,
        };
        let tier = after.2.unwrap_or_default();
        let compressed_hit_rate = match (before.2, after.2) {
            (Some(a), Some(b)) if b.budget_bytes > 0 => {
                let hits = b.hits - a.hits;
                let total = hits + (b.misses - a.misses);
                Some(if total == 0 { 1.0 } else { hits as f64 / total as f64 })
            }
            _ => None,
        };
        let (a, b) = (before.1, after.1);
        let per_sample = |x: u64| x as f64 / samples.max(1) as f64;
        FetchReport {
            cache_hit_rate,
            misses_declined,
            chunks_per_sample: per_sample(b.chunks - a.chunks),
            decoded_bytes_per_sample: per_sample(b.bytes - a.bytes),
            decode_seconds: b.decode_seconds - a.decode_seconds,
            fetch_wait_seconds: b.wait_seconds - a.wait_seconds,
            ahead_chunks: b.ahead_chunks - a.ahead_chunks,
            ahead_encoded: b.ahead_encoded - a.ahead_encoded,
            ahead_skipped: b.ahead_skipped - a.ahead_skipped,
            ahead_discarded: b.ahead_discarded - a.ahead_discarded,
            max_in_flight: b.max_in_flight,
            pooled_per_sample: per_sample(b.pooled - a.pooled),
            store_requests_per_sample: per_sample(b.store_requests - a.store_requests),
            compressed_hit_rate,
            compressed_bytes: tier.bytes,
            compressed_budget_bytes: tier.budget_bytes,
        }
    }
}

pub(crate) fn run(args: &BenchArgs) -> ExitCode {
    let checked = match load_spec(&args.spec) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut spec = checked.spec;
    if let Some(dir) = &args.training_cache {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        spec = spec.with_training_cache(Some(dir.display().to_string()));
    } else if args.no_training_cache {
        spec = spec.with_training_cache(None);
    }
    let mut options = match LoaderOptions::train() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    options.split = Split::from(args.split);
    options.no_cache = args.no_cache;
    options.workers = args.workers;
    options.fetch_concurrency = args.fetch_concurrency;
    options.fetch_ahead = args.fetch_ahead;
    options.local_on_pool = args.local_on_pool;
    options.ahead_concurrency = args.ahead_concurrency;
    options.compressed_cache_bytes = args.compressed_cache_bytes;
    match bench(spec, options, args.warmup, args.batches, !args.quiet) {
        Ok(report) => {
            print_table(&report);
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// Run the loader for `warmup + batches` batches and measure the last `batches`.
pub(crate) fn bench(
    spec: cellmap_schema::Spec,
    options: LoaderOptions,
    warmup: u64,
    batches: u64,
    progress: bool,
) -> Result<BenchReport, String> {
    let t_plan = Instant::now();
    let workers = options.workers.unwrap_or(spec.loader().workers);
    let mut loader = Loader::open(spec, options).map_err(|e| e.to_string())?;
    let plan_seconds = t_plan.elapsed().as_secs_f64();
    let batch_size = loader.spec().loader().batch_size;
    let batch_bytes = loader.plan().batch_bytes;
    let threads_start = thread_count();
    let mut consumed = 0u64;
    let mut next = |loader: &mut Loader| -> Result<bool, String> {
        match loader.next_batch() {
            Some(Ok(batch)) => {
                std::hint::black_box(batch.view(0).as_bytes().first());
                consumed += 1;
                Ok(true)
            }
            Some(Err(e)) => Err(e.to_string()),
            None => Ok(false),
        }
    };
    let mut first_batch_seconds = None;
    for _ in 0..warmup {
        if !next(&mut loader)? {
            break;
        }
        first_batch_seconds.get_or_insert_with(|| t_plan.elapsed().as_secs_f64());
    }
    let bar = progress.then(|| progress_bar(batches));
    let stats_before = (loader.cache_stats(), loader.fetch_stats(), loader.compressed_stats());
    let cpu_before = cpu_seconds();
    let t = Instant::now();
    let mut measured = 0u64;
    // Every allocation of the process (workers included) while batches are measured, less
    // those of the progress bar.
    let allocs_before = allocations();
    let mut bar_allocs = 0u64;
    while measured < batches {
        if !next(&mut loader)? {
            break;
        }
        first_batch_seconds.get_or_insert_with(|| t_plan.elapsed().as_secs_f64());
        measured += 1;
        let before = allocations();
        if let Some(bar) = &bar {
            bar.inc(1);
            let s = t.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{:.1} samples/s  {:.0} MB/s",
                (measured * batch_size as u64) as f64 / s,
                (measured * batch_bytes) as f64 / s / 1e6
            ));
        }
        bar_allocs += allocations() - before;
    }
    let allocs = allocations() - allocs_before - bar_allocs;
    let elapsed = t.elapsed().max(Duration::from_nanos(1)).as_secs_f64();
    let cpu_cores = cpu_before.zip(cpu_seconds()).map(|(a, b)| (b - a) / elapsed);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let fetch = FetchReport::new(
        stats_before,
        (loader.cache_stats(), loader.fetch_stats(), loader.compressed_stats()),
        measured * batch_size as u64,
    );
    // Read before the floor is measured, which allocates a batch of its own.
    let peak_rss = peak_rss_bytes();
    let floor = memory_floor_samples_per_s(batch_bytes, batch_size, workers)?;
    let samples_per_s = (measured * batch_size as u64) as f64 / elapsed;
    let decode_floor = decode_floor_samples_per_s(measured * batch_size as u64, loader.worker_count(), &fetch);
    Ok(BenchReport {
        samples_per_s,
        mb_per_s: (measured * batch_bytes) as f64 / elapsed / 1e6,
        batches: measured,
        batch_size,
        batch_bytes,
        ring_bytes: loader.ring_bytes(),
        peak_rss_bytes: peak_rss,
        allocations_per_batch: allocs as f64 / measured.max(1) as f64,
        cache_hit_rate: fetch.cache_hit_rate,
        floor_samples_per_s: floor,
        floor_ratio: samples_per_s / floor,
        decode_floor_samples_per_s: decode_floor,
        decode_floor_ratio: decode_floor.map(|f| samples_per_s / f),
        workers: loader.worker_count(),
        cpu_cores,
        threads_start,
        threads_end: thread_count(),
        plan_seconds,
        first_batch_seconds: first_batch_seconds.unwrap_or(f64::NAN),
        training_cache_fallbacks: training_cache_fallbacks(&loader),
        fetch,
    })
}

/// The progress bar of the measured batches.
fn progress_bar(batches: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(batches);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} batches  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Samples/s if `workers` did nothing but the decoding `fetch` counted for `samples` samples
/// (see [`BenchReport::decode_floor_samples_per_s`]).
fn decode_floor_samples_per_s(samples: u64, workers: usize, fetch: &FetchReport) -> Option<f64> {
    (fetch.decode_seconds > 0.0).then(|| samples as f64 * workers as f64 / fetch.decode_seconds)
}

/// Chunks read from the data because the training cache does not hold them (`None` without
/// one).
fn training_cache_fallbacks(loader: &Loader) -> Option<u64> {
    loader
        .spec()
        .loader()
        .training_cache
        .as_ref()
        .map(|_| cellmap_runtime::training_cache::fallback_chunks(&loader.planned().sources))
}

/// Samples/s of the memory-bandwidth floor: `workers` threads converting cached uint8 voxels
/// into the float32 bytes of one batch, best of several runs. The batch is written to memory of
/// the same kind as the loader's ring ([`HostBuffer`]: huge pages where the kernel offers them).
///
/// # Errors
/// When the batch's memory (a second batch beside the loader's ring) cannot be allocated.
pub(crate) fn memory_floor_samples_per_s(batch_bytes: u64, batch_size: usize, workers: usize) -> Result<f64, String> {
    let n = (batch_bytes / 4) as usize;
    let mut source: Vec<u8> = Vec::new();
    source
        .try_reserve_exact(n)
        .map_err(|e| format!("memory floor: cannot allocate {n} bytes: {e}"))?;
    source.extend((0..n).map(|i| (i * 31 % 251) as u8));
    let mut ring = HostBuffer::try_zeroed(n).map_err(|e| format!("memory floor: {e}"))?;
    let dest = ring.as_mut_slice();
    let workers = workers.max(1);
    let part = n.div_ceil(workers).max(1);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for (d, src) in dest.chunks_mut(part).zip(source.chunks(part)) {
                s.spawn(move || {
                    for (o, i) in d.iter_mut().zip(src) {
                        *o = f32::from(*i);
                    }
                });
            }
        });
        std::hint::black_box(&dest);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(batch_size as f64 / best.max(1e-9))
}

fn print_table(r: &BenchReport) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("{:<24} {:>14}", "metric", "value");
    println!("{:<24} {:>14.1}", "samples/s", r.samples_per_s);
    println!("{:<24} {:>14.1}", "MB/s (batch bytes)", r.mb_per_s);
    println!("{:<24} {:>14}", "batches measured", r.batches);
    println!("{:<24} {:>14.2}", "batch MiB", mib(r.batch_bytes));
    println!("{:<24} {:>14.2}", "ring MiB", mib(r.ring_bytes));
    if let Some(rss) = r.peak_rss_bytes {
        println!("{:<24} {:>14.1}", "peak RSS MiB", mib(rss));
    }
    println!("{:<24} {:>14.2}", "allocations/batch", r.allocations_per_batch);
    if let Some(h) = r.cache_hit_rate {
        println!("{:<24} {:>13.1}%", "chunk-cache hit rate", h * 100.0);
    }
    if let Some(d) = r.fetch.misses_declined {
        println!("{:<24} {:>13.1}%", "misses not kept", d * 100.0);
    }
    println!("{:<24} {:>14.1}", "floor samples/s", r.floor_samples_per_s);
    println!("{:<24} {:>13.1}%", "of the floor", r.floor_ratio * 100.0);
    let f = &r.fetch;
    println!("{:<24} {:>14.2}", "chunks fetched/sample", f.chunks_per_sample);
    println!(
        "{:<24} {:>14.2}",
        "MiB decoded/sample",
        f.decoded_bytes_per_sample / (1024.0 * 1024.0)
    );
    println!("{:<24} {:>14.3}", "decode s (all threads)", f.decode_seconds);
    if let (Some(floor), Some(ratio)) = (r.decode_floor_samples_per_s, r.decode_floor_ratio) {
        println!("{:<24} {:>14.1}", "decode floor samples/s", floor);
        println!("{:<24} {:>13.1}%", "of the decode floor", ratio * 100.0);
    }
    println!("{:<24} {:>14.3}", "fetch wait s (workers)", f.fetch_wait_seconds);
    println!(
        "{:<24} {:>14}",
        "chunks fetched ahead",
        format!(
            "{} (+{} encoded, {} skipped, {} discarded)",
            f.ahead_chunks, f.ahead_encoded, f.ahead_skipped, f.ahead_discarded
        )
    );
    println!("{:<24} {:>14}", "most requests in flight", f.max_in_flight);
    println!("{:<24} {:>14.2}", "on the pool/sample", f.pooled_per_sample);
    println!("{:<24} {:>14.2}", "store requests/sample", f.store_requests_per_sample);
    if let Some(h) = f.compressed_hit_rate {
        println!("{:<24} {:>13.1}%", "compressed hit rate", h * 100.0);
        println!(
            "{:<24} {:>14}",
            "compressed MiB held",
            format!("{:.1} / {:.1}", mib(f.compressed_bytes), mib(f.compressed_budget_bytes))
        );
    }
    println!("{:<24} {:>14.3}", "s to first batch", r.first_batch_seconds);
    if let Some(n) = r.training_cache_fallbacks {
        println!("{:<24} {:>14}", "training cache misses", n);
    }
    println!("{:<24} {:>14}", "workers", r.workers);
    if let Some(c) = r.cpu_cores {
        println!("{:<24} {:>14.2}", "CPU cores busy", c);
    }
}
