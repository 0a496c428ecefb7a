//! `parse` never panics (bounded proptest fuzzing, a few seconds per target): mutations of the
//! committed corpus `tests/fuzz/corpus/spec/` (the examples and the invalid catalogue) and of
//! `tests/fuzz/corpus/datasplit/` (datasplit CSVs read through a spec's `data.csv`), and random
//! bytes. The hostile `deep_nesting.yaml` (100 kB) stays out of the mutation corpus; the catalogue
//! test covers it.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::root;

/// The files of `tests/fuzz/corpus/<target>/`, sorted by name.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = root().join("tests/fuzz/corpus").join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Truncate(usize),
    Insert(usize, String),
}

fn apply(bytes: &[u8], mutations: &[Mutation]) -> String {
    let mut bytes = bytes.to_vec();
    for m in mutations {
        match m {
            Mutation::Flip(at, b) if !bytes.is_empty() => {
                let i = at % bytes.len();
                bytes[i] ^= b;
            }
            Mutation::Insert(at, s) => {
                let i = at % (bytes.len() + 1);
                bytes.splice(i..i, s.bytes());
            }
            Mutation::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Mutation::DeleteLine(_) | Mutation::DuplicateLine(_) | Mutation::SwapLines(..) => {
                let s = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let n = lines.len();
                    match *m {
                        Mutation::DeleteLine(at) => {
                            lines.remove(at % n);
                        }
                        Mutation::DuplicateLine(at) => lines.insert(at % n, lines[at % n]),
                        Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
                        _ => {}
                    }
                }
                bytes = lines.join("\n").into_bytes();
            }
            Mutation::Flip(..) => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Mutations that insert `alphabet` strings (YAML or CSV syntax).
fn mutation(alphabet: &'static str) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(a, b)| Mutation::Flip(a, b)),
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), alphabet).prop_map(|(a, s)| Mutation::Insert(a, s)),
        (
            any::<usize>(),
            prop_oneof![
                Just("-1"),
                Just("0"),
                Just("1e309"),
                Just("18446744073709551616"),
                Just(".nan"),
                Just("null"),
                Just("~"),
                Just("[]"),
                Just("{}"),
                Just("*a"),
                Just("&a ")
            ]
        )
            .prop_map(|(a, s)| Mutation::Insert(a, s.to_owned())),
    ]
}

const YAML_ALPHABET: &str = "[\\[\\]{}:,&*!|>'\"#\\- \\t\\n.a-z0-9]{1,8}";
const CSV_ALPHABET: &str = "[\\[\\],\"\\n\\r #a-z0-9/]{1,8}";

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), failure_persistence: None, ..ProptestConfig::default() })]

    /// Specs (examples and the invalid catalogue), parsed as if they sat in `examples/` (so a
    /// `csv: datasplit.csv` finds `examples/datasplit.csv`).
    #[test]
    fn mutated_spec_corpus_never_panics(which in any::<usize>(), mutations in proptest::collection::vec(mutation(YAML_ALPHABET), 1..6)) {
        let files = corpus("spec");
        let (_, bytes) = &files[which % files.len()];
        let text = apply(bytes, &mutations);
        let _ = cellmap_schema::parse(&text, &root().join("examples/fuzz.yaml"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(500), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = cellmap_schema::parse(&text, Path::new("fuzz.yaml"));
    }

    /// Datasplit CSVs from the corpus, mutated, read through `examples/minimal.yaml`'s `data.csv`.
    #[test]
    fn mutated_datasplit_corpus_never_panics(which in any::<usize>(), mutations in proptest::collection::vec(mutation(CSV_ALPHABET), 1..6)) {
        let files = corpus("datasplit");
        let (_, bytes) = &files[which % files.len()];
        let csv = apply(bytes, &mutations);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("datasplit.csv"), csv).unwrap();
        let spec = std::fs::read_to_string(root().join("examples/minimal.yaml")).unwrap();
        let _ = cellmap_schema::parse(&spec, &dir.path().join("spec.yaml"));
    }
}

#[test]
fn the_corpus_holds_the_examples_and_the_catalogue() {
    let names: Vec<String> = corpus("spec")
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for example in ["minimal.yaml", "full.yaml", "2d.yaml"] {
        assert!(names.iter().any(|n| n == example), "{example}");
    }
    let invalid = std::fs::read_dir(root().join("tests/specs/invalid"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") && n != "deep_nesting.yaml")
        .count();
    assert_eq!(names.iter().filter(|n| n.starts_with("invalid-")).count(), invalid);
    assert!(corpus("datasplit").len() >= 5);
}

/// The CSV harness reaches the datasplit reader: the example parses, a bad CSV is reported in it.
#[test]
fn the_datasplit_harness_reaches_the_csv_reader() {
    let spec = std::fs::read_to_string(root().join("examples/minimal.yaml")).unwrap();
    let read = |name: &str| {
        let dir = tempfile::tempdir().unwrap();
        let csv = std::fs::read(root().join("tests/fuzz/corpus/datasplit").join(name)).unwrap();
        std::fs::write(dir.path().join("datasplit.csv"), csv).unwrap();
        cellmap_schema::parse(&spec, &dir.path().join("spec.yaml")).map(|c| c.spec.datasets().len())
    };
    assert_eq!(read("example.csv").unwrap(), 3);
    let errors = read("invalid-header.csv").unwrap_err();
    assert!(errors.0.iter().any(|d| d.file.ends_with("datasplit.csv")), "{errors:?}");
}

/// Cases per fuzz target: the CI default, or `CELLMAP_FUZZ_CASES` for a longer local run.
fn cases(default: u32) -> u32 {
    std::env::var("CELLMAP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
