//! The ring pipeline with deterministic jobs: order, content, policies, panics, shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cellmap_runtime::{
    ArrayLayout, BatchLayout, PipelineError, SampleMeta, pipeline::Leased, pipeline::Pipeline,
    pipeline::PipelineOptions, pipeline::SampleJob, pipeline::SampleOut,
};
use cellmap_schema::ErrorPolicy;

/// Writes `batch·10⁶ + position·10³ + array·100 + attempt` into every element, with a
/// configurable failure on some (batch, position, attempt).
struct Formula {
    batches: Option<u64>,
    fail: fn(u64, usize, u32) -> bool,
    panic_at: Option<(u64, usize)>,
    delay: Duration,
    live_scratch: Arc<AtomicUsize>,
}

struct Scratch(Arc<AtomicUsize>);

impl Drop for Scratch {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SampleJob for Formula {
    type Scratch = Scratch;
    type Error = std::io::Error;

    fn scratch(&self) -> Scratch {
        self.live_scratch.fetch_add(1, Ordering::SeqCst);
        Scratch(Arc::clone(&self.live_scratch))
    }

    fn batches(&self) -> Option<u64> {
        self.batches
    }

    fn fill(
        &self,
        _scratch: &mut Scratch,
        batch: u64,
        position: usize,
        attempt: u32,
        out: &mut SampleOut<'_>,
    ) -> Result<Option<SampleMeta>, std::io::Error> {
        if self.panic_at == Some((batch, position)) {
            panic!("injected panic at batch {batch}");
        }
        if (self.fail)(batch, position, attempt) {
            return Err(std::io::Error::other(format!(
                "injected failure at batch {batch} position {position}"
            )));
        }
        std::thread::sleep(self.delay);
        for a in 0..out.arrays() {
            let v = value(batch, position, a, attempt);
            out.array(a).fill_f32(v);
        }
        Ok(Some(SampleMeta {
            idx: (batch * 10 + position as u64) as i64,
            dataset: a_dataset(position),
            centre_nm: [batch as f64, position as f64, 0.0],
        }))
    }
}

fn a_dataset(position: usize) -> i32 {
    (position % 3) as i32
}

fn value(batch: u64, position: usize, array: usize, attempt: u32) -> f32 {
    (batch * 1_000_000 + position as u64 * 1000 + array as u64 * 100 + u64::from(attempt)) as f32
}

fn never(_: u64, _: usize, _: u32) -> bool {
    false
}

fn layout() -> BatchLayout {
    BatchLayout {
        batch_size: 3,
        arrays: vec![
            ArrayLayout {
                name: "raw".into(),
                channels: 1,
                shape_vox: [2, 3, 4],
                dtype: cellmap_schema::OutputDtype::Float32,
                spatial_dims: 3,
            },
            ArrayLayout {
                name: "labels".into(),
                channels: 2,
                shape_vox: [1, 2, 5],
                dtype: cellmap_schema::OutputDtype::Float32,
                spatial_dims: 3,
            },
        ],
    }
}

fn options(workers: usize, prefetch: usize, on_error: ErrorPolicy) -> PipelineOptions {
    PipelineOptions {
        workers,
        prefetch,
        on_error,
        max_attempts: 4,
        memory: cellmap_runtime::pipeline::RingMemory::Host,
        pin: false,
    }
}

fn job(batches: Option<u64>) -> Formula {
    Formula {
        batches,
        fail: never,
        panic_at: None,
        delay: Duration::ZERO,
        live_scratch: Arc::new(AtomicUsize::new(0)),
    }
}

#[test]
fn batches_arrive_in_order_with_exact_content_for_any_worker_and_slot_count() {
    for (workers, prefetch) in [(1, 1), (1, 3), (2, 1), (2, 2), (4, 3)] {
        let mut p = Pipeline::start(job(Some(7)), layout(), &options(workers, prefetch, ErrorPolicy::Fail));
        let mut seen = 0;
        while let Some(batch) = p.next_batch() {
            let batch = batch.unwrap();
            assert_eq!(batch.number(), seen);
            for (a, per_sample) in [(0usize, 24usize), (1, 20)] {
                let data = batch.array(a);
                assert_eq!(data.len(), 3 * per_sample);
                for (position, sample) in data.chunks(per_sample).enumerate() {
                    let want = value(seen, position, a, 0);
                    assert!(
                        sample.iter().all(|v| *v == want),
                        "workers {workers} prefetch {prefetch} batch {seen}"
                    );
                }
            }
            let meta: Vec<SampleMeta> = batch.meta().collect();
            assert_eq!(
                meta.iter().map(|m| m.idx).collect::<Vec<_>>(),
                vec![seen as i64 * 10, seen as i64 * 10 + 1, seen as i64 * 10 + 2]
            );
            assert_eq!(meta.iter().map(|m| m.dataset).collect::<Vec<_>>(), vec![0, 1, 2]);
            assert_eq!(batch.len(), 3);
            seen += 1;
        }
        assert_eq!(seen, 7);
        assert_eq!(p.stats().batches, 7);
    }
}

#[test]
fn ring_bytes_are_prefetch_times_batch_bytes() {
    let l = layout();
    // raw: 3 · 1 · 24 · 4 B = 288; labels: 3 · 2 · 10 · 4 B = 240.
    assert_eq!(l.batch_bytes(), 288 + 240);
    for prefetch in 1..4 {
        let p = Pipeline::start(job(Some(1)), l.clone(), &options(1, prefetch, ErrorPolicy::Fail));
        assert_eq!(p.ring_bytes(), prefetch as u64 * 528);
    }
}

#[test]
fn fail_policy_reports_the_failed_batch_and_continues_with_the_next() {
    let mut j = job(Some(5));
    j.fail = |batch, position, _| batch == 2 && position == 1;
    let mut p = Pipeline::start(j, layout(), &options(2, 2, ErrorPolicy::Fail));
    let mut results = Vec::new();
    while let Some(batch) = p.next_batch() {
        results.push(batch.map(|b| b.number()).map_err(|e| e.to_string()));
    }
    assert_eq!(results.len(), 5);
    assert_eq!(results[0], Ok(0));
    assert_eq!(results[1], Ok(1));
    assert_eq!(
        results[2],
        Err("batch 2, position 1: injected failure at batch 2 position 1".to_owned())
    );
    assert_eq!(results[3], Ok(3));
    assert_eq!(results[4], Ok(4));
}

#[test]
fn skip_and_log_replaces_failed_samples_and_counts_them() {
    let mut j = job(Some(4));
    // Positions 0 and 2 of batch 1 fail on their first two attempts.
    j.fail = |batch, position, attempt| batch == 1 && position != 1 && attempt < 2;
    let mut p = Pipeline::start(j, layout(), &options(2, 2, ErrorPolicy::SkipAndLog));
    let mut n = 0;
    while let Some(batch) = p.next_batch() {
        let batch = batch.unwrap();
        let raw = batch.array(0);
        for position in 0..3 {
            let attempt = if batch.number() == 1 && position != 1 { 2 } else { 0 };
            assert_eq!(raw[position * 24], value(batch.number(), position, 0, attempt));
        }
        n += 1;
    }
    assert_eq!(n, 4);
    assert_eq!(p.stats().skipped_samples, 4);
}

#[test]
fn skip_and_log_gives_up_after_the_attempt_budget() {
    let mut j = job(Some(2));
    j.fail = |batch, position, _| batch == 0 && position == 0;
    let mut p = Pipeline::start(j, layout(), &options(1, 1, ErrorPolicy::SkipAndLog));
    match p.next_batch() {
        Some(Err(PipelineError::RetriesExhausted {
            batch: 0,
            position: 0,
            attempts: 4,
            ..
        })) => {}
        other => panic!(
            "expected RetriesExhausted, got {:?}",
            other.map(|r| r.map(|b| b.number()))
        ),
    }
    assert_eq!(p.next_batch().map(|r| r.map(|b| b.number())), Some(Ok(1)));
}

#[test]
fn a_worker_panic_reaches_the_consumer_and_nothing_hangs() {
    let mut j = job(None);
    j.panic_at = Some((3, 2));
    let live = Arc::clone(&j.live_scratch);
    let mut p = Pipeline::start(j, layout(), &options(2, 2, ErrorPolicy::Fail));
    let mut outcome = None;
    for _ in 0..10 {
        match p.next_batch() {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                outcome = Some(e);
                break;
            }
            None => break,
        }
    }
    match outcome {
        Some(PipelineError::WorkerPanicked { message, .. }) => assert_eq!(message, "injected panic at batch 3"),
        other => panic!("expected a worker panic, got {other:?}"),
    }
    drop(p);
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "every worker exited and dropped its scratch"
    );
}

#[test]
fn dropping_mid_epoch_returns_quickly_and_stops_every_worker() {
    let mut j = job(None);
    j.delay = Duration::from_millis(20);
    let live = Arc::clone(&j.live_scratch);
    let mut p = Pipeline::start(j, layout(), &options(2, 3, ErrorPolicy::Fail));
    let first = p.next_batch().unwrap().unwrap().number();
    assert_eq!(first, 0);
    assert_eq!(p.worker_count(), 2);
    let t = Instant::now();
    drop(p);
    assert!(t.elapsed() < Duration::from_secs(1), "drop took {:?}", t.elapsed());
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn a_slow_consumer_holds_back_the_workers() {
    // Endless job, 2 slots: while the consumer holds batch 0, at most batch 1 can be filled.
    let j = job(None);
    let mut p = Pipeline::start(j, layout(), &options(2, 2, ErrorPolicy::Fail));
    let b0 = p.next_batch().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let before = b0.array(0)[0];
    assert_eq!(before, value(0, 0, 0, 0), "slot 0 was not overwritten while borrowed");
    drop(b0);
    for n in 1..20 {
        assert_eq!(p.next_batch().unwrap().unwrap().number(), n);
    }
}

/// Unwrap a `Leased::Batch`, waiting up to 5 s.
fn lease<J: SampleJob>(p: &mut Pipeline<J>) -> cellmap_runtime::pipeline::BatchLease<J> {
    match p.next_lease(Duration::from_secs(5)) {
        Leased::Batch(b) => b,
        Leased::Failed(e) => panic!("failed: {e}"),
        Leased::End => panic!("end"),
        Leased::Pending { slot_held } => panic!("pending (slot held: {slot_held})"),
    }
}

#[test]
fn leases_keep_their_slot_until_the_last_arc_is_dropped_and_outlive_the_pipeline() {
    let mut p = Pipeline::start(job(None), layout(), &options(2, 2, ErrorPolicy::Fail));
    let first = Arc::new(lease(&mut p));
    let view = Arc::clone(&first);
    let second = lease(&mut p);
    assert_eq!((first.number(), second.number()), (0, 1));
    assert_eq!(first.array(0)[0], value(0, 0, 0, 0));
    assert_eq!(second.array(1)[20], value(1, 1, 1, 0));
    assert_eq!(second.meta().map(|m| m.idx).collect::<Vec<_>>(), vec![10, 11, 12]);
    drop(second);
    // Batch 2 needs slot 0, which `first` (and its clone) still hold: it cannot be filled.
    assert!(matches!(
        p.next_lease(Duration::from_millis(50)),
        Leased::Pending { slot_held: true }
    ));
    drop(first);
    assert!(matches!(
        p.next_lease(Duration::from_millis(50)),
        Leased::Pending { slot_held: true }
    ));
    // The slot's contents are untouched while a view remains.
    assert!(
        view.array(0)
            .iter()
            .all(|v| *v == value(0, 0, 0, 0) || *v == value(0, 1, 0, 0) || *v == value(0, 2, 0, 0))
    );
    assert_eq!(view.array(0)[24], value(0, 1, 0, 0));
    drop(view);
    let third = lease(&mut p);
    assert_eq!(third.number(), 2);
    assert_eq!(third.array(0)[0], value(2, 0, 0, 0));
    // A lease outlives its pipeline: memory stays valid, the drop does not block.
    drop(p);
    assert_eq!(third.array(1)[0], value(2, 0, 1, 0));
    drop(third);
}

#[test]
fn leases_end_a_finite_job_and_report_failures_in_order() {
    fn fail_batch_one(batch: u64, _: usize, _: u32) -> bool {
        batch == 1
    }
    let mut j = job(Some(3));
    j.fail = fail_batch_one;
    let mut p = Pipeline::start(j, layout(), &options(2, 2, ErrorPolicy::Fail));
    assert_eq!(lease(&mut p).number(), 0);
    assert!(matches!(p.next_lease(Duration::from_secs(5)), Leased::Failed(PipelineError::Sample(e)) if e.batch == 1));
    assert_eq!(lease(&mut p).number(), 2);
    assert!(matches!(p.next_lease(Duration::from_secs(5)), Leased::End));
}
