//! Issue #16: a loader whose ring and chunk cache do not fit in memory is refused before
//! anything is allocated, with the numbers and the keys to change; a ring the system refuses is
//! an error, not an abort.
//!
//! `CELLMAP_MEMORY_LIMIT_BYTES` is process-wide, so the tests that set it run themselves again
//! in a child process (this test binary, filtered to the one test) with the variable set.

use std::process::Command;

use cellmap_runtime::{
    ArrayLayout, BatchLayout, Loader, LoaderError, memory::MEMORY_LIMIT_ENV, memory::MemoryError, pipeline::Pipeline,
    pipeline::PipelineOptions, synth::SynthVariant,
};
use cellmap_schema::{ErrorPolicy, Split};

use serde_json::json;

use crate::loader::{options, spec, spec_with, synth};

/// Marks the child process that runs a test's body.
const CHILD: &str = "CELLMAP_MEMORY_TEST_CHILD";

/// Run the test `name` (in this module) alone in a child process with `limit` as the memory
/// limit; `true` in the child, where the caller goes on with the test's body.
fn in_child_with_limit(name: &str, limit: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let test = format!("memory::{name}");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env(MEMORY_LIMIT_ENV, limit)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{test} failed in the child:\n{text}");
    assert!(text.contains("1 passed"), "{test} did not run in the child:\n{text}");
    false
}

#[test]
fn issue16_loader_refuses_a_ring_and_cache_larger_than_the_memory_limit() {
    if !in_child_with_limit(
        "issue16_loader_refuses_a_ring_and_cache_larger_than_the_memory_limit",
        "100000000",
    ) {
        return;
    }
    let f = synth(SynthVariant::V2);
    // raw 16³ + 4 classes × 12³ floats per sample = 44_032 bytes; 4096 samples per batch.
    let s = spec_with(&f.dir, |d| {
        d["loader"]["batch_size"] = json!(4096);
        d["loader"]["prefetch"] = json!(2);
        d["loader"]["cache_bytes"] = json!(64 << 20);
    });
    let batch_bytes: u64 = 4096 * (16 * 16 * 16 + 4 * 12 * 12 * 12) * 4;
    assert_eq!(batch_bytes, 180_355_072);
    let err = Loader::open(s, options(Split::Train)).err().expect("refused");
    assert!(
        matches!(err, LoaderError::Memory(MemoryError::TooLarge { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "not enough memory for the loader: the batch ring needs 360710144 bytes (344.0 MiB = `loader.prefetch` 2 × 180355072 bytes per batch of `loader.batch_size` 4096) and the chunk cache up to 67108864 bytes (64.0 MiB, `loader.cache_bytes`), 427819008 bytes in all, but 100000000 bytes (95.4 MiB) are available (`CELLMAP_MEMORY_LIMIT_BYTES`); lower `loader.batch_size`, `loader.prefetch` or `loader.cache_bytes`"
    );
}

#[test]
fn issue16_the_limit_counts_the_prefetch_override_and_no_cache() {
    if !in_child_with_limit(
        "issue16_the_limit_counts_the_prefetch_override_and_no_cache",
        "200000000",
    ) {
        return;
    }
    let f = synth(SynthVariant::V2);
    let s = spec_with(&f.dir, |d| {
        d["loader"]["batch_size"] = json!(4096);
        d["loader"]["prefetch"] = json!(2);
    });
    // 2 × 180 MB does not fit in 200 MB; one slot without a cache does.
    let mut o = options(Split::Train);
    o.prefetch = Some(1);
    o.no_cache = true;
    o.workers = Some(1);
    let loader = Loader::open(s.clone(), o).expect("one slot fits");
    assert_eq!(loader.ring_bytes(), 180_355_072);
    drop(loader);
    let err = Loader::open(s, options(Split::Train)).err().expect("two slots do not");
    assert!(
        err.to_string().contains("`loader.prefetch` 2 × 180355072 bytes"),
        "{err}"
    );
}

#[test]
fn issue16_a_malformed_limit_is_an_error() {
    if !in_child_with_limit("issue16_a_malformed_limit_is_an_error", "12GB") {
        return;
    }
    let f = synth(SynthVariant::V2);
    let err = Loader::open(spec(&f.dir), options(Split::Train))
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        "`CELLMAP_MEMORY_LIMIT_BYTES` is `12GB`; expected a number of bytes or `off`"
    );
}

#[test]
fn issue16_a_ring_the_system_refuses_is_an_error_not_an_abort() {
    struct Nothing;
    impl cellmap_runtime::pipeline::SampleJob for Nothing {
        type Scratch = ();
        type Error = std::io::Error;
        fn scratch(&self) {}
        fn batches(&self) -> Option<u64> {
            Some(1)
        }
        fn fill(
            &self,
            _: &mut (),
            _: u64,
            _: usize,
            _: u32,
            _: &mut cellmap_runtime::pipeline::SampleOut<'_>,
        ) -> Result<Option<cellmap_runtime::SampleMeta>, std::io::Error> {
            Ok(None)
        }
    }
    // One sample of 2^58 floats (1 EiB): no address space maps it, whatever the overcommit policy.
    let layout = BatchLayout {
        batch_size: 1,
        arrays: vec![ArrayLayout {
            name: "raw".into(),
            channels: 1,
            shape_vox: [1 << 20, 1 << 20, 1 << 18],
            dtype: cellmap_schema::OutputDtype::Float32,
            spatial_dims: 3,
        }],
    };
    let options = PipelineOptions {
        workers: 1,
        prefetch: 2,
        on_error: ErrorPolicy::Fail,
        max_attempts: 1,
        memory: cellmap_runtime::pipeline::RingMemory::Host,
        pin: false,
    };
    let err = Pipeline::try_start(Nothing, layout, &options).err().expect("refused");
    assert!(matches!(err, MemoryError::Allocation { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("cannot allocate 1152921504606846976 bytes"),
        "{err}"
    );
}

/// Issue #15: the compressed tier counts: a spec's `loader.compressed_cache_bytes` (and the
/// `LoaderOptions` override) pushes a loader that fits without it over the limit; unset, local
/// data adds nothing (the default tier keeps remote levels only).
#[test]
fn issue15_the_limit_counts_the_compressed_tier() {
    if !in_child_with_limit("issue15_the_limit_counts_the_compressed_tier", "100000000") {
        return;
    }
    let f = synth(SynthVariant::V2);
    let s = |tier: Option<u64>| {
        spec_with(&f.dir, |d| {
            d["loader"]["cache_bytes"] = json!(64 << 20);
            if let Some(t) = tier {
                d["loader"]["compressed_cache_bytes"] = json!(t);
            }
        })
    };
    assert!(Loader::open(s(None), options(Split::Train)).is_ok());
    assert!(Loader::open(s(Some(16 << 20)), options(Split::Train)).is_ok());
    let err = Loader::open(s(Some(64 << 20)), options(Split::Train))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains(
            "and the chunk cache up to 67108864 bytes (64.0 MiB, `loader.cache_bytes`) and its compressed tier up to 67108864 bytes (64.0 MiB, `loader.compressed_cache_bytes`)"
        ) && err.ends_with("`loader.cache_bytes` or `loader.compressed_cache_bytes`"),
        "{err}"
    );
    let mut o = options(Split::Train);
    o.compressed_cache_bytes = Some(64 << 20);
    assert!(Loader::open(s(None), o).is_err(), "the override counts too");
    let mut o = options(Split::Train);
    o.no_cache = true;
    assert!(Loader::open(s(Some(64 << 20)), o).is_ok(), "no cache, no tier");
}
