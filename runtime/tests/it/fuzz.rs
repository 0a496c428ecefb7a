//! The OME-NGFF metadata reader never panics (bounded proptest fuzzing): tempdir stores whose
//! `.zgroup` / `.zattrs` / `.zarray` / `zarr.json` are structured or byte-level mutations of the
//! valid seeds in `tests/fuzz/corpus/metadata/<seed>/`. When a mutated store opens, a small
//! window of every level is read too (chunks are absent: the fill value).

use std::path::{Path, PathBuf};

use cellmap_runtime::{kernels::StridedDest, read::WindowRequest, read::read_window, store::Multiscale};
use proptest::prelude::*;
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Cases per fuzz target: the CI default, or `CELLMAP_FUZZ_CASES` for a longer local run.
fn cases(default: u32) -> u32 {
    std::env::var("CELLMAP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One seed store: its metadata files (path relative to the group, contents).
type Seed = Vec<(PathBuf, Vec<u8>)>;

fn files_under(dir: &Path, base: &Path, out: &mut Seed) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            files_under(&path, base, out);
        } else {
            out.push((
                path.strip_prefix(base).unwrap().to_path_buf(),
                std::fs::read(&path).unwrap(),
            ));
        }
    }
}

fn seeds() -> Vec<Seed> {
    let dir = root().join("tests/fuzz/corpus/metadata");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names
        .iter()
        .map(|d| {
            let mut files = Vec::new();
            files_under(d, d, &mut files);
            files.sort();
            files
        })
        .collect()
}

/// A structured edit of the `n`-th JSON node (depth-first), or a byte-level edit.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, Value),
    Remove(usize),
    Duplicate(usize),
    Truncate(usize),
    Flip(usize, u8),
}

fn replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1)),
        Just(json!(3)),
        Just(json!(4_294_967_296u64)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(0.5)),
        Just(json!(-8.0)),
        Just(json!(1e308)),
        Just(json!("")),
        Just(json!("s0")),
        Just(json!("../..")),
        Just(json!("float32")),
        Just(json!("bool")),
        Just(json!("c")),
        Just(json!(null)),
        Just(json!(true)),
        Just(json!([])),
        Just(json!({})),
        Just(json!([1, 2])),
        Just(json!([0, 0, 0])),
        Just(json!([1e12, 1e12, 1e12])),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), replacement()).prop_map(|(n, v)| Edit::Replace(n, v)),
        2 => any::<usize>().prop_map(Edit::Remove),
        1 => any::<usize>().prop_map(Edit::Duplicate),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), 1u8..=255).prop_map(|(a, b)| Edit::Flip(a, b)),
    ]
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// Apply `edit` to node `*n` below `v` (counting down); true once applied.
fn edit_node(v: &mut Value, n: &mut usize, edit: &Edit) -> bool {
    if *n == 0 {
        if let Edit::Replace(_, with) = edit {
            *v = with.clone();
        }
        return true;
    }
    *n -= 1;
    let remove = matches!(edit, Edit::Remove(_));
    match v {
        Value::Array(items) => {
            for i in 0..items.len() {
                if *n == 0 && !matches!(edit, Edit::Replace(..)) {
                    if remove {
                        items.remove(i);
                    } else {
                        let copy = items[i].clone();
                        items.insert(i, copy);
                    }
                    return true;
                }
                if edit_node(&mut items[i], n, edit) {
                    return true;
                }
            }
        }
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if *n == 0 && remove {
                    map.remove(&k);
                    return true;
                }
                if edit_node(map.get_mut(&k).unwrap(), n, edit) {
                    return true;
                }
            }
        }
        _ => {}
    }
    false
}

fn mutate(bytes: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    for e in edits {
        match e {
            Edit::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Edit::Flip(at, b) if !bytes.is_empty() => {
                let i = at % bytes.len();
                bytes[i] ^= b;
            }
            Edit::Flip(..) => {}
            Edit::Replace(n, _) | Edit::Remove(n) | Edit::Duplicate(n) => {
                if let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) {
                    let mut k = n % count(&v);
                    edit_node(&mut v, &mut k, e);
                    bytes = serde_json::to_vec_pretty(&v).unwrap();
                }
            }
        }
    }
    bytes
}

/// Write `seed` with file `which` replaced by `contents` into `dir`; open it; read a window of
/// every level that opened. Returns whether the store opened.
fn open_mutated(dir: &Path, seed: &Seed, which: usize, contents: &[u8]) -> bool {
    for (i, (rel, bytes)) in seed.iter().enumerate() {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, if i == which { contents } else { bytes }).unwrap();
    }
    let Ok(ms) = Multiscale::open(&dir.display().to_string()) else {
        return false;
    };
    for level in &ms.levels {
        let mut out = vec![0f32; 4 * 4 * 4];
        let _ = read_window(
            level,
            None,
            &WindowRequest {
                start_vox: [-1, 0, 1],
                fill: f32::NAN,
            },
            StridedDest::new(&mut out, 0, [16, 4, 1], [4, 4, 4]).unwrap(),
        );
    }
    true
}

#[test]
fn every_seed_opens_unmutated() {
    let seeds = seeds();
    assert!(seeds.len() >= 6, "{}", seeds.len());
    for (s, seed) in seeds.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            open_mutated(dir.path(), seed, usize::MAX, &[]),
            "seed {s} does not open"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(400), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_metadata_never_panics(s in any::<usize>(), f in any::<usize>(), edits in proptest::collection::vec(edit(), 1..4)) {
        let seeds = seeds();
        let seed = &seeds[s % seeds.len()];
        let which = f % seed.len();
        let contents = mutate(&seed[which].1, &edits);
        if let Some(trace) = std::env::var_os("CELLMAP_FUZZ_TRACE") {
            // A long local run: keep the case on disk, in case it aborts the process (OOM).
            let text = format!("{}\n{}", seed[which].0.display(), String::from_utf8_lossy(&contents));
            std::fs::write(trace, text).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        open_mutated(dir.path(), seed, which, &contents);
    }
}

/// Every input the fuzzer crashed on, committed under `tests/fuzz/regressions/metadata/<name>/`
/// as a whole store, with the error it must now give.
#[test]
fn fuzz_regressions_give_errors_not_panics() {
    let cases = [
        (
            "huge_chunk",
            "huge_chunk/s0`: cannot open the array: chunk shape [4294967296, 32, 32] (35184372088832 bytes decoded, 1 per shard) exceeds the supported 1073741824 bytes per chunk and 16777216 chunks per shard",
        ),
        (
            "inner_chunk_rank",
            "inner_chunk_rank/s0`: cannot open the array: the sharding codec's inner chunk shape [32, 32] has 2 dimensions; the array has 3",
        ),
    ];
    let dir = root().join("tests/fuzz/regressions/metadata");
    let committed = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(committed, cases.len(), "every committed regression has a case here");
    for (name, want) in cases {
        let store = dir.join(name);
        match Multiscale::open(&store.display().to_string()) {
            Ok(_) => panic!("{name} opened"),
            Err(e) => assert!(e.to_string().ends_with(want), "{name}: {e}"),
        }
    }
}
