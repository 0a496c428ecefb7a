//! The house rules of `docs/architecture.md`, checked over the workspace's own sources: no file
//! over 800 lines, no function over 100 lines outside tests, no `too_many_arguments` allow, and no
//! import cycle between sibling modules of a crate. Generated code (`tests/golden/`) is exempt.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;

use crate::root;

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 100;

/// The crates whose `src/` trees are modules of one crate each.
const CRATES: [&str; 4] = ["schema", "runtime", "codegen", "python"];

/// Every hand-written Rust file of the workspace (tests and benches included).
fn sources() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in CRATES {
        walk(&root().join(dir), &mut out);
    }
    out.sort();
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                walk(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

fn parse(path: &Path) -> syn::File {
    let text = fs::read_to_string(path).unwrap();
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", relative(path)))
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .to_token_stream()
                .to_string()
                .replace(' ', "")
                .contains("cfg(test)")
    })
}

fn is_test_fn(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        let p = a.path();
        p.is_ident("test") || p.segments.last().is_some_and(|s| s.ident == "test") || p.is_ident("proptest")
    })
}

/// A source file under a `tests/` or `benches/` folder: a test, exempt from the function rule.
fn is_test_file(path: &Path) -> bool {
    path.components()
        .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "benches")
}

#[test]
fn no_file_is_over_800_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter_map(|p| {
            let n = fs::read_to_string(p).unwrap().lines().count();
            (n > MAX_FILE_LINES).then(|| format!("{} ({n} lines)", relative(p)))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines (split them by concept): {long:#?}"
    );
}

/// Collects `(name, lines)` of every function outside tests in `items`.
fn functions(items: &[syn::Item], out: &mut Vec<(String, usize, usize)>) {
    fn add(out: &mut Vec<(String, usize, usize)>, name: String, from: proc_macro2::Span, to: proc_macro2::Span) {
        let (a, b) = (from.start().line, to.end().line);
        out.push((name, a, b - a + 1));
    }
    for item in items {
        match item {
            syn::Item::Fn(f) if !is_test_fn(&f.attrs) => {
                add(
                    out,
                    f.sig.ident.to_string(),
                    f.sig.fn_token.span,
                    f.block.brace_token.span.close(),
                );
            }
            syn::Item::Impl(imp) if !is_cfg_test(&imp.attrs) => {
                for it in &imp.items {
                    if let syn::ImplItem::Fn(f) = it {
                        add(
                            out,
                            f.sig.ident.to_string(),
                            f.sig.fn_token.span,
                            f.block.brace_token.span.close(),
                        );
                    }
                }
            }
            syn::Item::Trait(tr) => {
                for it in &tr.items {
                    if let syn::TraitItem::Fn(syn::TraitItemFn {
                        sig,
                        default: Some(block),
                        ..
                    }) = it
                    {
                        add(
                            out,
                            sig.ident.to_string(),
                            sig.fn_token.span,
                            block.brace_token.span.close(),
                        );
                    }
                }
            }
            syn::Item::Mod(m) if !is_cfg_test(&m.attrs) => {
                if let Some((_, inner)) = &m.content {
                    functions(inner, out);
                }
            }
            _ => {}
        }
    }
}

#[test]
fn no_function_outside_tests_is_over_100_lines() {
    let mut long = Vec::new();
    for path in sources().iter().filter(|p| !is_test_file(p)) {
        let mut fns = Vec::new();
        functions(&parse(path).items, &mut fns);
        for (name, line, n) in fns {
            if n > MAX_FN_LINES {
                long.push(format!("{}:{line} fn {name} ({n} lines)", relative(path)));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them where they do several things): {long:#?}"
    );
}

#[test]
fn no_too_many_arguments_allow() {
    let hits: Vec<String> = sources()
        .iter()
        .flat_map(|p| {
            let text = fs::read_to_string(p).unwrap();
            text.lines()
                .enumerate()
                .filter(|(_, l)| l.contains(concat!("clippy::", "too_many_arguments")))
                .map(|(i, _)| format!("{}:{}", relative(p), i + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        hits.is_empty(),
        "group the arguments into a struct instead of allowing the lint: {hits:#?}"
    );
}

/// The module path of a file under `src/` (`src/a/b.rs` and `src/a/b/mod.rs` are `[a, b]`;
/// `lib.rs`, `main.rs` are the root).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "lib" | "main" | "mod") {
        parts.push(stem.to_owned());
    }
    parts
}

/// Every path that starts with `crate`, `super` or `self` in `tokens`, brace groups of `use`
/// trees expanded, as absolute module paths (relative to the crate root).
fn paths(tokens: TokenStream, here: &[String], out: &mut Vec<Vec<String>>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        if let TokenTree::Group(g) = &tokens[i] {
            paths(g.stream(), here, out);
            i += 1;
            continue;
        }
        let base = match &tokens[i] {
            TokenTree::Ident(id) if id == "crate" => Some(Vec::new()),
            TokenTree::Ident(id) if id == "self" => Some(here.to_vec()),
            TokenTree::Ident(id) if id == "super" => Some(here[..here.len().saturating_sub(1)].to_vec()),
            _ => None,
        };
        let preceded_by_colons = i > 0 && matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == ':');
        if let (Some(base), false) = (base, preceded_by_colons) {
            i = follow(&tokens, i + 1, base, out);
        } else {
            i += 1;
        }
    }
}

/// Follows `:: ident :: ident …` (and `{…}` use groups) from `tokens[i]`, pushing the paths.
fn follow(tokens: &[TokenTree], mut i: usize, mut path: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    loop {
        let colons = matches!((tokens.get(i), tokens.get(i + 1)),
            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':');
        if !colons {
            out.push(path);
            return i;
        }
        match tokens.get(i + 2) {
            Some(TokenTree::Ident(id)) if id == "super" => {
                path.pop();
                i += 3;
            }
            Some(TokenTree::Ident(id)) => {
                path.push(id.to_string());
                i += 3;
            }
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                for part in split_commas(g.stream()) {
                    let mut sub = path.clone();
                    let mut j = 0;
                    if let Some(TokenTree::Ident(id)) = part.first() {
                        if id != "self" {
                            sub.push(id.to_string());
                        }
                        j = 1;
                    }
                    follow(&part, j, sub, out);
                }
                return i + 3;
            }
            _ => {
                out.push(path);
                return i + 2;
            }
        }
    }
}

fn split_commas(stream: TokenStream) -> Vec<Vec<TokenTree>> {
    let mut parts = vec![Vec::new()];
    for t in stream {
        match &t {
            TokenTree::Punct(p) if p.as_char() == ',' => parts.push(Vec::new()),
            _ => parts.last_mut().unwrap().push(t),
        }
    }
    parts.retain(|p| !p.is_empty());
    parts
}

/// Items of a file without its `#[cfg(test)]` items.
fn non_test_tokens(file: &syn::File) -> TokenStream {
    let mut ts = TokenStream::new();
    for item in &file.items {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Impl(i) => &i.attrs,
            _ => &Vec::new(),
        };
        if !is_cfg_test(attrs) {
            item.to_tokens(&mut ts);
        }
    }
    ts
}

/// Edges between sibling modules: `a::x` uses `a::y` (x ≠ y) gives `a: x → y`.
fn sibling_edges(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<(String, String)>> {
    let mut files = Vec::new();
    walk(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_path(src, f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for file in &files {
        if file.components().any(|c| c.as_os_str() == "tests") {
            continue; // `src/foo/tests.rs` and friends: test modules
        }
        let here = module_path(src, file);
        let mut found = Vec::new();
        paths(non_test_tokens(&parse(file)), &here, &mut found);
        for target in found {
            // The longest prefix of `target` that is a module of this crate.
            let Some(len) = (1..=target.len()).rev().find(|&n| modules.contains(&target[..n])) else {
                continue;
            };
            let target = &target[..len];
            let common = here.iter().zip(target).take_while(|(a, b)| a == b).count();
            if common < here.len() && common < target.len() {
                edges
                    .entry(here[..common].to_vec())
                    .or_default()
                    .insert((here[common].clone(), target[common].clone()));
            }
        }
    }
    edges
}

/// One cycle in the directed graph `edges`, if any.
fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let nodes: BTreeSet<&String> = edges.iter().flat_map(|(a, b)| [a, b]).collect();
    fn dfs<'a>(
        n: &'a String,
        edges: &'a BTreeSet<(String, String)>,
        stack: &mut Vec<&'a String>,
        done: &mut BTreeSet<&'a String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| *s == n) {
            let mut cycle: Vec<String> = stack[pos..].iter().map(|s| (*s).clone()).collect();
            cycle.push(n.clone());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n);
        for (_, b) in edges.iter().filter(|(a, _)| a == n) {
            if let Some(c) = dfs(b, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n);
        None
    }
    let mut done = BTreeSet::new();
    nodes
        .into_iter()
        .find_map(|n| dfs(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_cycle_between_sibling_modules() {
    let mut cycles = Vec::new();
    for krate in CRATES {
        for (parent, edges) in sibling_edges(&root().join(krate).join("src")) {
            if let Some(cycle) = find_cycle(&edges) {
                let at = if parent.is_empty() {
                    "crate".to_owned()
                } else {
                    format!("crate::{}", parent.join("::"))
                };
                cycles.push(format!("{krate}: under {at}: {}", cycle.join(" → ")));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "module import cycles (move the shared piece down a layer): {cycles:#?}"
    );
}

#[test]
fn the_cycle_finder_finds_cycles_and_only_cycles() {
    let set = |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
    assert_eq!(find_cycle(&set(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(
        find_cycle(&set(&[("a", "b"), ("b", "c"), ("c", "a")])).map(|c| c.len()),
        Some(4)
    );
    let mut found = Vec::new();
    let here = vec!["plan".to_owned(), "fit".to_owned()];
    let ts: TokenStream =
        "use crate::{store::{Level, open}, sample}; use super::cache::X; fn f() { crate::rng::Rng::new() }"
            .parse()
            .unwrap();
    paths(ts, &here, &mut found);
    let found: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        found,
        [
            "store::Level",
            "store::open",
            "sample",
            "plan::cache::X",
            "rng::Rng::new"
        ]
    );
}
