//! YAML reading: hostile-input checks, parsing with serde-saphyr under strict budgets, and an index from
//! JSON pointers to source positions so later errors can name `line:column`.

use std::collections::HashMap;
use std::path::Path;

use serde_saphyr::granit_parser::{Event, Parser};
use serde_saphyr::options::AliasLimits;
use serde_saphyr::{DuplicateKeyPolicy, MergeKeyPolicy, NonFiniteFloatPolicy, Options};

use crate::diagnostic::Diagnostic;

/// Largest spec accepted, in bytes. Specs are a few KiB; anything near this is not a spec.
pub const MAX_SPEC_BYTES: usize = 1 << 20;

/// Deepest nesting accepted (a spec needs about 6 levels).
const MAX_DEPTH: usize = 32;

/// Where a node (and, for a mapping entry, its key) starts: `(line, column)`, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodePosition {
    /// The key of the mapping entry holding the node, if any.
    pub(crate) key: Option<(usize, usize)>,
    /// The node itself.
    pub(crate) value: (usize, usize),
}

/// JSON pointer → source position of every node of a document.
#[derive(Debug, Clone, Default)]
pub(crate) struct PositionIndex {
    nodes: HashMap<String, NodePosition>,
}

impl PositionIndex {
    /// Position of the node at `pointer`, or of its nearest ancestor that has one (nodes expanded from
    /// aliases have none), or `1:1`.
    pub(crate) fn value(&self, pointer: &str) -> (usize, usize) {
        self.find(pointer).map_or((1, 1), |p| p.value)
    }

    /// Position of the key of the entry at `pointer` (falling back to the value, then ancestors).
    pub(crate) fn key(&self, pointer: &str) -> (usize, usize) {
        self.find(pointer).map_or((1, 1), |p| p.key.unwrap_or(p.value))
    }

    /// The pointer of the last node starting at or before `at` (for errors the parser stopped at).
    pub(crate) fn pointer_before(&self, at: (usize, usize)) -> String {
        self.nodes
            .iter()
            .filter(|(_, p)| p.value <= at)
            .max_by(|a, b| (a.1.value, a.0.len()).cmp(&(b.1.value, b.0.len())))
            .map(|(k, _)| k.clone())
            .unwrap_or_default()
    }

    fn find(&self, pointer: &str) -> Option<NodePosition> {
        let mut p = pointer;
        loop {
            if let Some(found) = self.nodes.get(p) {
                return Some(*found);
            }
            let cut = p.rfind('/')?;
            p = &p[..cut];
        }
    }
}

/// Escapes one JSON pointer segment (RFC 6901).
pub(crate) fn escape_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Checks that need no parser: size, emptiness, tab indentation.
pub(crate) fn precheck(text: &str, file: &Path) -> Result<(), Vec<Diagnostic>> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(vec![
            Diagnostic::error(
                file,
                (1, 1),
                "",
                format!("spec is {} bytes, over the limit of {MAX_SPEC_BYTES} bytes", text.len()),
            )
            .hint("a spec is a few KiB of YAML; is this the right file?"),
        ]);
    }
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let indent: String = line.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
        let rest = &line[indent.len()..];
        if let Some(col) = indent.chars().position(|c| c == '\t')
            && !rest.is_empty()
            && !rest.starts_with('#')
        {
            errors.push(
                Diagnostic::error(file, (i + 1, col + 1), "", "tab character used for indentation")
                    .expected("spaces")
                    .hint("YAML forbids tabs in indentation; indent with spaces"),
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---" || l.trim() == "...");
    if blank {
        return Err(vec![
            Diagnostic::error(file, (1, 1), "", "spec is empty")
                .expected("a mapping with `version`, `name`, `classes`, `arrays` and `data`")
                .hint("start from examples/minimal.yaml"),
        ]);
    }
    Ok(())
}

fn options() -> Options {
    let budget = serde_saphyr::budget! {
        max_reader_input_bytes: Some(MAX_SPEC_BYTES),
        max_events: 200_000,
        max_aliases: 1_000,
        max_anchors: 1_000,
        max_depth: MAX_DEPTH,
        max_documents: 1,
        max_nodes: 100_000,
        max_total_scalar_bytes: MAX_SPEC_BYTES,
        max_merge_keys: 0,
        flow_nesting_limit: MAX_DEPTH,
    };
    let mut alias_limits = AliasLimits::default();
    alias_limits.max_total_replayed_events = 10_000;
    alias_limits.max_replay_stack_depth = 8;
    alias_limits.max_alias_expansions_per_anchor = 100;
    serde_saphyr::options! {
        budget: budget,
        duplicate_keys: DuplicateKeyPolicy::Error,
        merge_keys: MergeKeyPolicy::Error,
        alias_limits: alias_limits,
        non_finite_float_policy: NonFiniteFloatPolicy::AsString,
        strict_booleans: true,
        with_snippet: false,
        crop_radius: 0,
    }
}

/// Parses the document into a JSON value (under budgets against alias bombs and deep nesting) and
/// indexes the position of every node.
pub(crate) fn parse(text: &str, file: &Path) -> Result<(serde_json::Value, PositionIndex), Vec<Diagnostic>> {
    precheck(text, file)?;
    let value: serde_json::Value = match serde_saphyr::from_str_with_options(text, options()) {
        Ok(v) => v,
        Err(e) => {
            let mut d = syntax_error(&e, file);
            d.pointer = index(text).pointer_before((d.line, d.column));
            return Err(vec![d]);
        }
    };
    if value.is_null() {
        return Err(vec![
            Diagnostic::error(file, (1, 1), "", "spec is empty").hint("start from examples/minimal.yaml"),
        ]);
    }
    Ok((value, index(text)))
}

fn syntax_error(e: &serde_saphyr::Error, file: &Path) -> Diagnostic {
    let position = e.location().map_or((1, 1), |l| {
        (
            usize::try_from(l.line()).unwrap_or(1).max(1),
            usize::try_from(l.column()).unwrap_or(1).max(1),
        )
    });
    let raw = e.without_snippet().to_string();
    // serde-saphyr appends the position; we print it in front already.
    let mut message = match raw.find(" at line ") {
        Some(cut) => raw[..cut].to_owned(),
        None => raw,
    };
    // Advice meant for the library's caller, not for the spec's author.
    if let Some(cut) = message.find(", set DuplicateKeyPolicy") {
        message.truncate(cut);
    }
    let lower = message.to_lowercase();
    let hint = if lower.contains("duplicate") {
        "each key may appear once per mapping; remove or merge the repeated key"
    } else if lower.contains("budget") || lower.contains("alias") || lower.contains("anchor") {
        "specs need no anchors or aliases; write the values out"
    } else if lower.contains("depth") || lower.contains("nest") || lower.contains("recursion") {
        "a spec nests a handful of levels; check the brackets and indentation"
    } else if lower.contains("merge") {
        "write the merged keys out; `<<` merge keys are not supported"
    } else {
        "check the YAML syntax near this position (brackets closed, consistent indentation, `key: value`)"
    };
    Diagnostic::error(file, position, "", format!("invalid YAML: {message}")).hint(hint)
}

enum Frame {
    Map {
        pointer: String,
        key: Option<(String, (usize, usize))>,
    },
    Seq {
        pointer: String,
        next: usize,
    },
    /// A complex (collection) mapping key being skipped; counts nested collections.
    Skip(usize),
}

/// Walks the parser events (no recursion) and records each node's position.
fn index(text: &str) -> PositionIndex {
    let mut nodes = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        if stack.len() > 2 * MAX_DEPTH {
            break; // only reached after a parse error; pointers this deep are of no use
        }
        let at = (span.start.line(), span.start.col() + 1);
        let is_start = matches!(event, Event::SequenceStart(..) | Event::MappingStart(..));
        let is_end = matches!(event, Event::SequenceEnd | Event::MappingEnd);
        let is_node = is_start || matches!(event, Event::Scalar(..) | Event::Alias(..));
        if let Some(Frame::Skip(depth)) = stack.last_mut() {
            if is_start {
                *depth += 1;
            } else if is_end {
                if *depth == 0 {
                    stack.pop();
                    // the complex key is done; its value follows with no usable pointer segment
                    if let Some(Frame::Map { key, .. }) = stack.last_mut() {
                        *key = Some(("?".to_owned(), at));
                    }
                } else {
                    *depth -= 1;
                }
            }
            continue;
        }
        if is_end {
            stack.pop();
            continue;
        }
        if !is_node {
            continue;
        }
        // Is this node a key, or a value at some pointer?
        let (pointer, key_at) = match stack.last_mut() {
            None => (String::new(), None),
            Some(Frame::Map { pointer, key }) => match key.take() {
                None => {
                    if let Event::Scalar(s, ..) = &event {
                        *key = Some((s.to_string(), at));
                    } else if is_start {
                        stack.push(Frame::Skip(0));
                    } else {
                        *key = Some(("?".to_owned(), at));
                    }
                    continue;
                }
                Some((k, k_at)) => (format!("{pointer}/{}", escape_segment(&k)), Some(k_at)),
            },
            Some(Frame::Seq { pointer, next }) => {
                let p = format!("{pointer}/{next}");
                *next += 1;
                (p, None)
            }
            Some(Frame::Skip(_)) => continue,
        };
        nodes
            .entry(pointer.clone())
            .or_insert(NodePosition { key: key_at, value: at });
        match event {
            Event::MappingStart(..) => stack.push(Frame::Map { pointer, key: None }),
            Event::SequenceStart(..) => stack.push(Frame::Seq { pointer, next: 0 }),
            _ => {}
        }
    }
    PositionIndex { nodes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_nested_nodes() {
        let text = "a:\n  b: [1, 2, {c: 3}]\n  d:\n    - x\n";
        let (_, idx) = parse(text, Path::new("t.yaml")).unwrap();
        assert_eq!(idx.value("/a"), (2, 3));
        assert_eq!(idx.key("/a/b"), (2, 3));
        assert_eq!(idx.value("/a/b"), (2, 6));
        assert_eq!(idx.value("/a/b/1"), (2, 10));
        assert_eq!(idx.value("/a/b/2/c"), (2, 17));
        assert_eq!(idx.key("/a/b/2/c"), (2, 14));
        assert_eq!(idx.value("/a/d/0"), (4, 7));
        assert_eq!(idx.value("/a/d/7/zz"), (4, 5));
    }

    #[test]
    fn deep_block_nesting_is_refused_quickly() {
        let text: String = (0..1000).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        let err = parse(&text, Path::new("t.yaml")).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err[0].pointer.starts_with("/k/k/k"), "{:?}", err[0]);
    }

    #[test]
    fn tabs_are_refused_with_position() {
        let err = parse("a:\n\tb: 1\n", Path::new("t.yaml")).unwrap_err();
        assert_eq!((err[0].line, err[0].column), (2, 1));
    }
}
