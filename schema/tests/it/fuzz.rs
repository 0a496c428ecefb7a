//! `parse` never panics: random bytes and random mutations of the examples (bounded, a few seconds).

use std::path::Path;

use proptest::prelude::*;

use super::root;

fn examples() -> Vec<String> {
    ["minimal", "full", "2d"]
        .iter()
        .map(|n| std::fs::read_to_string(root().join(format!("examples/{n}.yaml"))).unwrap())
        .collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    DeleteLine(usize),
    DuplicateLine(usize),
    Insert(usize, String),
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
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
            Mutation::DeleteLine(at) | Mutation::DuplicateLine(at) => {
                let s = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let i = at % lines.len();
                    if matches!(m, Mutation::DeleteLine(_)) {
                        lines.remove(i);
                    } else {
                        lines.insert(i, lines[i]);
                    }
                }
                bytes = lines.join("\n").into_bytes();
            }
            Mutation::Flip(..) => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(a, b)| Mutation::Flip(a, b)),
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), "[\\[\\]{}:,&*!|>'\"#\\- \\t\\n.a-z0-9]{1,8}").prop_map(|(a, s)| Mutation::Insert(a, s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_examples_never_panic(which in 0usize..3, mutations in proptest::collection::vec(mutation(), 1..6)) {
        let text = apply(&examples()[which], &mutations);
        let _ = cellmap_schema::parse(&text, &root().join("examples/fuzz.yaml"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = cellmap_schema::parse(&text, Path::new("fuzz.yaml"));
    }
}
