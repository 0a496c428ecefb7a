//! Fault injection through the real loader on stores written by the tests: corrupt, truncated,
//! missing, unreadable and vanishing chunks, malformed metadata, non-finite floats, label arrays
//! of unexpected data types, worker panics and a chunk cache shared by two loaders. Every consumer
//! runs under a timeout (a hang fails the test) and every good sample is compared voxel for voxel
//! with a direct zarrs read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use cellmap_runtime::{Batch, FaultHook, Loader, PipelineError, store::ChunkCache, synth::SynthVariant};
use cellmap_schema::{ErrorPolicy, Spec, Split};
use serde_json::json;
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

use crate::common::{Fmt, write_group, write_pyramid};
use crate::loader::{
    CLASSES, CROP1_T, CROP2_T, Fixture, RAW_T0, binarize, direct, options, same, spec, spec_doc, spec_of, spec_with,
    start, synth,
};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Run `f` on its own thread; a result later than [`TIMEOUT`] is a hang and fails the test.
pub(crate) fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within {TIMEOUT:?} (a hang)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the consumer thread panicked"),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// True when sample `b` of a training batch (synthetic spec) equals direct reads of `store`.
fn sample_matches(batch: &Batch<'_>, b: usize, store: &Path) -> bool {
    let Some(m) = batch.meta().nth(b) else { return false };
    let raw = &batch.array(0)[b * 4096..(b + 1) * 4096];
    let raw_group = store.join("recon-1/em/fibsem-uint8");
    if !same(raw, &direct(&raw_group, start(m.centre_nm, RAW_T0, 16), [16; 3])) {
        return false;
    }
    CLASSES.iter().enumerate().all(|(c, class)| {
        let group = store.join("recon-1/labels/groundtruth/crop1").join(class);
        let want = binarize(&direct(&group, start(m.centre_nm, CROP1_T, 12), [12; 3]));
        same(&batch.array(1)[(b * 4 + c) * 1728..(b * 4 + c + 1) * 1728], &want)
    })
}

/// A synthetic v2 store, a pristine copy of it, and the raw s0 chunk that sample 0 of training
/// batch 0 reads.
struct Damaged {
    fixture: Fixture,
    pristine: PathBuf,
    chunk: [i64; 3],
    chunk_file: PathBuf,
}

fn prepare() -> Damaged {
    let fixture = synth(SynthVariant::V2);
    let pristine = fixture._tmp.path().join("pristine.zarr");
    copy_dir(&fixture.dir, &pristine);
    let centre = {
        let mut loader = Loader::open(spec(&fixture.dir), options(Split::Train)).unwrap();
        let batch = loader.next_batch().unwrap().unwrap();
        batch.meta().next().unwrap().centre_nm
    };
    // Raw s0 chunks are 32³ with a `/` separator.
    let chunk = start(centre, RAW_T0, 16).map(|v| v.div_euclid(32));
    let chunk_file = fixture.dir.join(format!(
        "recon-1/em/fibsem-uint8/s0/{}/{}/{}",
        chunk[0], chunk[1], chunk[2]
    ));
    assert!(chunk_file.is_file(), "{}", chunk_file.display());
    Damaged {
        fixture,
        pristine,
        chunk,
        chunk_file,
    }
}

#[derive(Clone, Copy, Debug)]
enum ChunkFault {
    /// The chunk file's bytes replaced by random bytes of the same length.
    RandomBytes,
    /// The chunk file cut to half its length.
    Truncated,
    /// The chunk file replaced by a directory: the read fails with EISDIR, even for root (for
    /// whom `chmod 000` does not stop reads).
    Unreadable,
}

fn damage(path: &Path, fault: ChunkFault) {
    let bytes = std::fs::read(path).unwrap();
    match fault {
        ChunkFault::RandomBytes => {
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let random: Vec<u8> = bytes
                .iter()
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 56) as u8
                })
                .collect();
            std::fs::write(path, random).unwrap();
        }
        ChunkFault::Truncated => std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap(),
        ChunkFault::Unreadable => {
            std::fs::remove_file(path).unwrap();
            std::fs::create_dir(path).unwrap();
            std::fs::write(path.join("0"), b"not a chunk").unwrap();
        }
    }
}

fn with_policy(dir: &Path, policy: ErrorPolicy) -> Spec {
    let policy = match policy {
        ErrorPolicy::Fail => "fail",
        ErrorPolicy::SkipAndLog => "skip_and_log",
    };
    spec_with(dir, |d| d["loader"]["on_error"] = json!(policy))
}

const ALL_FAULTS: [ChunkFault; 3] = [ChunkFault::RandomBytes, ChunkFault::Truncated, ChunkFault::Unreadable];

#[test]
fn a_bad_chunk_under_fail_names_the_array_and_the_chunk() {
    for fault in ALL_FAULTS {
        let d = prepare();
        damage(&d.chunk_file, fault);
        let dir = d.fixture.dir.clone();
        let err = within("fail policy", move || {
            let mut loader = Loader::open(with_policy(&dir, ErrorPolicy::Fail), options(Split::Train)).unwrap();
            let first = loader.next_batch().unwrap().err();
            // The consumer can go on asking: the loader is not wedged by the error.
            let _ = loader.next_batch().unwrap();
            first
        });
        let Some(PipelineError::Sample(err)) = err else {
            panic!("{fault:?}: batch 0 reads the damaged chunk, expected a sample error, got {err:?}")
        };
        let msg = err.to_string();
        let [z, y, x] = d.chunk;
        assert_eq!(err.batch, 0, "{msg}");
        assert!(msg.contains("array `raw`"), "{fault:?}: {msg}");
        assert!(msg.contains(&format!("chunk [{z}, {y}, {x}]")), "{fault:?}: {msg}");
        assert!(msg.contains("recon-1/em/fibsem-uint8/s0`"), "{fault:?}: {msg}");
        assert!(msg.contains(&format!("(key `s0/{z}/{y}/{x}`)")), "{fault:?}: {msg}");
        assert!(msg.contains("could not be decoded"), "{fault:?}: {msg}");
    }
}

#[test]
fn a_bad_chunk_under_skip_and_log_is_replaced_counted_and_iteration_goes_on() {
    for fault in ALL_FAULTS {
        let d = prepare();
        damage(&d.chunk_file, fault);
        let (dir, pristine) = (d.fixture.dir.clone(), d.pristine.clone());
        let (skipped, checked) = within("skip_and_log", move || {
            let mut loader = Loader::open(with_policy(&dir, ErrorPolicy::SkipAndLog), options(Split::Train)).unwrap();
            let mut checked = 0;
            for n in 0..6 {
                let batch = loader.next_batch().unwrap().unwrap();
                assert_eq!(batch.len(), 3, "batch {n} is complete");
                for b in 0..3 {
                    // Replacements never read the bad chunk, so they equal the pristine store.
                    assert!(sample_matches(&batch, b, &pristine), "{fault:?}: batch {n} sample {b}");
                    checked += 1;
                }
            }
            (loader.skipped_samples(), checked)
        });
        assert_eq!(checked, 18);
        assert!(skipped >= 1, "{fault:?}: the failed sample is counted");
    }
}

#[test]
fn a_missing_chunk_reads_as_the_fill_value_under_both_policies() {
    for policy in [ErrorPolicy::Fail, ErrorPolicy::SkipAndLog] {
        let d = prepare();
        std::fs::remove_file(&d.chunk_file).unwrap();
        let dir = d.fixture.dir.clone();
        within("missing chunk", move || {
            let mut loader = Loader::open(with_policy(&dir, policy), options(Split::Train)).unwrap();
            for n in 0..4 {
                let batch = loader.next_batch().unwrap().unwrap();
                for b in 0..3 {
                    assert!(sample_matches(&batch, b, &dir), "{policy:?}: batch {n} sample {b}");
                }
                if n == 0 {
                    // Synthetic raw is never below 45: zeros are the missing chunk's fill value.
                    assert!(batch.array(0)[..4096].contains(&0.0));
                }
            }
            assert_eq!(loader.skipped_samples(), 0);
        });
    }
}

#[test]
fn a_chunk_deleted_while_the_loader_runs_reads_as_before_or_as_the_fill_value() {
    let d = prepare();
    let (dir, pristine, victim) = (d.fixture.dir.clone(), d.pristine.clone(), d.chunk_file.clone());
    let deleted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&deleted);
    within("deleted chunk", move || {
        let mut o = options(Split::Train);
        o.no_cache = true;
        o.fault_hook = Some(FaultHook(Arc::new(move |batch, _| {
            if batch == 2 && !flag.swap(true, Ordering::SeqCst) {
                std::fs::remove_file(&victim).unwrap();
            }
        })));
        let mut loader = Loader::open(with_policy(&dir, ErrorPolicy::Fail), o).unwrap();
        for n in 0..8 {
            let batch = loader.next_batch().unwrap().unwrap();
            for b in 0..3 {
                assert!(
                    sample_matches(&batch, b, &pristine) || sample_matches(&batch, b, &dir),
                    "batch {n} sample {b} matches neither the store before nor after the deletion"
                );
            }
        }
        assert_eq!(loader.skipped_samples(), 0);
    });
    assert!(deleted.load(Ordering::SeqCst));
}

#[test]
fn malformed_metadata_is_a_clear_error_at_open() {
    // v2: the raw group's `.zattrs` cut mid-document.
    let f = synth(SynthVariant::V2);
    let zattrs = f.dir.join("recon-1/em/fibsem-uint8/.zattrs");
    let text = std::fs::read_to_string(&zattrs).unwrap();
    std::fs::write(&zattrs, &text[..text.len() / 2]).unwrap();
    let s = spec(&f.dir);
    // Where the dataset is declared in the fixture's spec text.
    let origin = s.datasets()[0].origin.clone();
    let msg = match Loader::open(s, options(Split::Train)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a truncated .zattrs opened"),
    };
    assert!(msg.starts_with(&format!("{origin}: dataset train #0: `")), "{msg}");
    assert!(
        msg.contains("recon-1/em/fibsem-uint8/.zattrs` is not valid JSON: "),
        "{msg}"
    );

    // v3: a label level's `zarr.json` without its array fields.
    let f = synth(SynthVariant::V3);
    let level = f.dir.join("recon-1/labels/groundtruth/crop1/mito/s0/zarr.json");
    std::fs::write(&level, r#"{"zarr_format": 3, "node_type": "array"}"#).unwrap();
    let msg = match Loader::open(spec(&f.dir), options(Split::Train)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a zarr.json without array fields opened"),
    };
    assert!(msg.contains("crop1/mito/s0`: cannot open the array: "), "{msg}");
}

/// Label arrays of a float dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Labels {
    F32,
    Bool,
}

/// A float32 raw pyramid (32³, 8³ chunks) with NaN, +∞ and −∞ sprinkled through s0, and one
/// class `mito`; returns the spec's document (see [`spec_of`]) and the raw s0 data.
fn float_dataset(root: &Path, labels: Labels) -> (serde_json::Value, Vec<f32>) {
    let fmt = Fmt::V2 {
        compressor: json!(null),
        sep: "/",
    };
    let raw = root.join("raw");
    let (mut d0, _) = write_pyramid::<f32>(&raw, &fmt, [32; 3], [8; 3], None);
    for (i, v) in d0.iter_mut().enumerate() {
        if i % 5 == 0 {
            *v = f32::NAN;
        } else if i % 7 == 0 {
            *v = f32::INFINITY;
        } else if i % 11 == 0 {
            *v = f32::NEG_INFINITY;
        }
    }
    let store = Arc::new(FilesystemStore::new(&raw).unwrap());
    Array::open(store, "/s0")
        .unwrap()
        .store_array_subset(&ArraySubset::new_with_shape(vec![32; 3]), &d0)
        .unwrap();
    let mito = root.join("labels/mito");
    match labels {
        Labels::F32 => {
            write_pyramid::<f32>(&mito, &fmt, [32; 3], [8; 3], None);
        }
        Labels::Bool => {
            write_pyramid::<u8>(&mito, &fmt, [32; 3], [8; 3], None);
            for level in ["s0", "s1"] {
                let path = mito.join(level).join(".zarray");
                let text = std::fs::read_to_string(&path).unwrap().replace("|u1", "|b1");
                std::fs::write(&path, text.replace("\"fill_value\": 0", "\"fill_value\": false")).unwrap();
            }
        }
    }
    write_group(root, "labels", 2, None);
    let mut doc = spec_doc(root);
    doc["classes"] = json!(["mito"]);
    doc["arrays"] = json!({
        "inputs": {"raw": {"shape": [8, 8, 8], "scale": [8, 8, 8]}},
        "targets": {"labels": {"shape": [8, 8, 8], "scale": [8, 8, 8]}},
    });
    doc["data"]["datasets"] = json!([{
        "split": "train",
        "raw": raw.display().to_string(),
        "targets": format!("{}/labels/{{class}}", root.display()),
        "classes": ["mito"],
    }]);
    (doc, d0)
}

/// A direct f32 read of `shape` voxels from `start` of `group/s0` (inside the array).
fn direct_f32(group: &Path, start: [i64; 3], shape: [usize; 3]) -> Vec<f32> {
    let store = Arc::new(FilesystemStore::new(group).unwrap());
    let array = Array::open(store, "/s0").unwrap();
    let ranges: Vec<std::ops::Range<u64>> = (0..3)
        .map(|a| start[a] as u64..(start[a] + shape[a] as i64) as u64)
        .collect();
    array
        .retrieve_array_subset::<Vec<f32>>(&ArraySubset::new_with_ranges(&ranges))
        .unwrap()
}

#[test]
fn non_finite_raw_values_pass_through_unless_nan_to_num_says_so() {
    let nan_to_num = json!({"nan_to_num": {"nan": 0, "posinf": 1, "neginf": -1}});
    for transforms in [json!([]), json!([nan_to_num])] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let (mut doc, _) = float_dataset(&root, Labels::F32);
        let replace = transforms.as_array().is_some_and(|t| !t.is_empty());
        doc["augment"]["inputs"] = transforms;
        let s = spec_of(&doc);
        within("float raw", move || {
            let mut loader = Loader::open(s, options(Split::Train)).unwrap();
            let (mut nan, mut inf) = (0, 0);
            for _ in 0..3 {
                let batch = loader.next_batch().unwrap().unwrap();
                for (b, m) in batch.meta().enumerate() {
                    let at = start(m.centre_nm, RAW_T0, 8);
                    let mut want = direct_f32(&root.join("raw"), at, [8; 3]);
                    if replace {
                        for v in &mut want {
                            *v = if v.is_nan() {
                                0.0
                            } else if *v == f32::INFINITY {
                                1.0
                            } else if *v == f32::NEG_INFINITY {
                                -1.0
                            } else {
                                *v
                            };
                        }
                    }
                    let got = &batch.array(0)[b * 512..(b + 1) * 512];
                    assert!(same(got, &want), "raw of sample {b}, nan_to_num {replace}");
                    nan += got.iter().filter(|v| v.is_nan()).count();
                    inf += got.iter().filter(|v| v.is_infinite()).count();
                    // float32 labels binarize like integer ones.
                    let labels = binarize(&direct_f32(&root.join("labels/mito"), at, [8; 3]));
                    assert!(same(&batch.array(1)[b * 512..(b + 1) * 512], &labels));
                }
            }
            if replace {
                assert_eq!((nan, inf), (0, 0));
            } else {
                assert!(
                    nan > 0 && inf > 0,
                    "the batches hold the non-finite voxels ({nan}, {inf})"
                );
            }
        });
    }
}

#[test]
fn a_bool_label_array_is_an_error_at_plan_time() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec_of(&float_dataset(tmp.path(), Labels::Bool).0);
    let msg = match Loader::open(s, options(Split::Train)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("bool labels opened"),
    };
    assert!(msg.contains("labels/mito/s0"), "{msg}");
    assert!(msg.contains("unsupported data type `bool / |b1`"), "{msg}");
}

#[test]
fn a_worker_panic_through_the_loader_is_reported_and_the_loader_drops_cleanly() {
    let f = synth(SynthVariant::V2);
    let hook: Arc<dyn Fn(u64, usize) + Send + Sync> = Arc::new(|batch, position| {
        if batch == 1 && position == 2 {
            panic!("injected fault at batch {batch}, position {position}");
        }
    });
    let probe = Arc::clone(&hook);
    let dir = f.dir.clone();
    let outcome = within("worker panic", move || {
        let mut o = options(Split::Train);
        o.fault_hook = Some(FaultHook(hook));
        let mut loader = Loader::open(spec(&dir), o).unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            match loader.next_batch() {
                Some(Ok(b)) => seen.push(Ok(b.step())),
                Some(Err(e)) => seen.push(Err(e)),
                None => break,
            }
        }
        drop(loader);
        seen
    });
    // Batch 0 may or may not complete before the panic stops the pipeline; from then on every
    // call reports the panic.
    let first_err = outcome.iter().position(Result::is_err).expect("the panic is reported");
    assert!(first_err <= 1, "{outcome:?}");
    for r in &outcome[first_err..] {
        match r {
            Err(PipelineError::WorkerPanicked { message, .. }) => {
                assert_eq!(message, "injected fault at batch 1, position 2");
            }
            other => panic!("expected the worker panic, got {other:?}"),
        }
    }
    // Every worker has exited and released the job (which holds the hook).
    assert_eq!(Arc::strong_count(&probe), 1);
}

#[test]
fn a_training_and_a_validation_loader_share_one_cache_and_stay_exact() {
    let f = synth(SynthVariant::V2);
    let cache = Arc::new(ChunkCache::new(64 << 20));
    let train = {
        let (dir, cache) = (f.dir.clone(), Arc::clone(&cache));
        std::thread::spawn(move || {
            let mut o = options(Split::Train);
            o.cache = Some(cache);
            let mut loader = Loader::open(spec(&dir), o).unwrap();
            for n in 0..12 {
                let batch = loader.next_batch().unwrap().unwrap();
                for b in 0..3 {
                    assert!(sample_matches(&batch, b, &dir), "train batch {n} sample {b}");
                }
            }
        })
    };
    let (dir, cache2) = (f.dir.clone(), Arc::clone(&cache));
    let tiles = within("validation with a shared cache", move || {
        let mut o = options(Split::Validate);
        o.cache = Some(cache2);
        let mut loader = Loader::open(spec(&dir), o).unwrap();
        let mut tiles = 0;
        while let Some(batch) = loader.next_batch() {
            let batch = batch.unwrap();
            for (b, m) in batch.meta().enumerate().filter(|(_, m)| m.idx >= 0) {
                let raw = &batch.array(0)[b * 4096..(b + 1) * 4096];
                let raw_group = dir.join("recon-1/em/fibsem-uint8");
                assert!(same(raw, &direct(&raw_group, start(m.centre_nm, RAW_T0, 16), [16; 3])));
                for (c, class) in CLASSES.iter().enumerate() {
                    let got = &batch.array(1)[(b * 4 + c) * 1728..(b * 4 + c + 1) * 1728];
                    if *class == "pm" {
                        assert!(got.iter().all(|v| v.is_nan()), "crop2 does not annotate pm");
                    } else {
                        let group = dir.join("recon-1/labels/groundtruth/crop2").join(class);
                        let want = binarize(&direct(&group, start(m.centre_nm, CROP2_T, 12), [12; 3]));
                        assert!(same(got, &want), "tile {} class {class}", m.idx);
                    }
                }
                tiles += 1;
            }
        }
        tiles
    });
    train.join().unwrap();
    assert_eq!(tiles, 125);
    let stats = cache.stats();
    assert!(stats.hits > 0, "{stats:?}");
}

/// True when tile `b` of a validation batch equals direct reads of `store` (crop2, no `pm`).
fn tile_matches(batch: &Batch<'_>, b: usize, store: &Path) -> bool {
    let Some(m) = batch.meta().nth(b) else { return false };
    let raw = &batch.array(0)[b * 4096..(b + 1) * 4096];
    let raw_group = store.join("recon-1/em/fibsem-uint8");
    if !same(raw, &direct(&raw_group, start(m.centre_nm, RAW_T0, 16), [16; 3])) {
        return false;
    }
    CLASSES.iter().enumerate().all(|(c, class)| {
        let got = &batch.array(1)[(b * 4 + c) * 1728..(b * 4 + c + 1) * 1728];
        if *class == "pm" {
            return got.iter().all(|v| v.is_nan());
        }
        let group = store.join("recon-1/labels/groundtruth/crop2").join(class);
        same(
            got,
            &binarize(&direct(&group, start(m.centre_nm, CROP2_T, 12), [12; 3])),
        )
    })
}

#[test]
fn a_bad_chunk_in_a_validation_tile_fails_or_leaves_the_tile_empty() {
    let d = prepare();
    // Raw chunk [1, 1, 1] (voxels 32..64) lies under crop2: some validation tiles read it.
    let victim = d.fixture.dir.join("recon-1/em/fibsem-uint8/s0/1/1/1");
    damage(&victim, ChunkFault::RandomBytes);
    let (dir, pristine) = (d.fixture.dir.clone(), d.pristine.clone());
    let (tiles, empty, skipped, errors) = within("validation with a bad chunk", move || {
        let mut loader = Loader::open(with_policy(&dir, ErrorPolicy::SkipAndLog), options(Split::Validate)).unwrap();
        let (mut tiles, mut empty) = (0, 0);
        while let Some(batch) = loader.next_batch() {
            let batch = batch.unwrap();
            for (b, m) in batch.meta().enumerate() {
                if m.idx >= 0 {
                    assert!(tile_matches(&batch, b, &pristine), "tile {}", m.idx);
                    tiles += 1;
                } else if batch.step() < 41 {
                    // Not the tail of the last batch (125 tiles in batches of 3): a skipped tile.
                    let raw = &batch.array(0)[b * 4096..(b + 1) * 4096];
                    assert!(
                        raw.iter().all(|v| *v == 0.0),
                        "an empty position holds the input pad value"
                    );
                    empty += 1;
                }
            }
        }
        let skipped = loader.skipped_samples();
        let mut loader = Loader::open(with_policy(&dir, ErrorPolicy::Fail), options(Split::Validate)).unwrap();
        let mut errors = Vec::new();
        while let Some(batch) = loader.next_batch() {
            if let Err(e) = batch {
                errors.push(e.to_string());
            }
        }
        (tiles, empty, skipped, errors)
    });
    assert!(empty > 0, "some tiles read the bad chunk");
    assert_eq!(tiles + empty, 125, "every tile is either read or skipped");
    assert_eq!(skipped, empty as u64, "each skipped tile is counted once");
    assert!(!errors.is_empty());
    for e in &errors {
        assert!(
            e.contains("array `raw`") && e.contains("chunk [1, 1, 1] (key `s0/1/1/1`)"),
            "{e}"
        );
    }
}
