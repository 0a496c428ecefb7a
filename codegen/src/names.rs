//! Spec names → Rust identifiers, deterministically.
//!
//! A class or array name becomes a lowercase identifier: every character other than an ASCII
//! letter, digit or `_` becomes `_`, a leading digit gets the prefix `n_`, and a Rust keyword or a
//! name the generated `Batch` already uses gets a trailing `_`. So `er-lumen` → `er_lumen`,
//! `2nd` → `n_2nd`, `type` → `type_`, `len` → `len_`. Two names that map to the same identifier
//! are an error naming both.

use std::collections::BTreeMap;

use cellmap_schema::Spec;

/// Rust keywords (strict and reserved), which cannot be identifiers.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn",
    "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "static",
    "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do",
    "final", "gen", "macro", "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// Methods of the generated `Batch` that an array accessor must not shadow.
const BATCH_METHODS: &[&str] = &["epoch", "step", "meta", "len", "is_empty", "untyped", "new"];

/// The identifiers of a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RustNames {
    /// The crate name with `-` replaced by `_`.
    pub crate_ident: String,
    /// One identifier per class, in class order.
    pub classes: Vec<String>,
    /// One identifier per input array, in spec order.
    pub inputs: Vec<String>,
    /// One identifier per target array, in spec order.
    pub targets: Vec<String>,
    /// `(spec name, identifier)` for every name that changed, sorted.
    pub renamed: Vec<(String, String)>,
}

/// Two spec names map to one identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{kind} names `{first}` and `{second}` both become the Rust identifier `{ident}`; rename one of them in the spec"
)]
pub struct NameError {
    /// `class` or `array`.
    pub kind: &'static str,
    /// The first name.
    pub first: String,
    /// The second name.
    pub second: String,
    /// The shared identifier.
    pub ident: String,
}

/// The identifier of one name.
pub fn rust_ident(name: &str, reserved: &[&str]) -> String {
    let mut ident: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if ident.is_empty() {
        ident.push('_');
    }
    if ident.starts_with(|c: char| c.is_ascii_digit()) {
        ident.insert_str(0, "n_");
    }
    if ident == "_" || KEYWORDS.contains(&ident.as_str()) || reserved.contains(&ident.as_str()) {
        ident.push('_');
    }
    ident
}

/// The identifiers of a spec's classes and arrays.
pub fn rust_names(spec: &Spec) -> Result<RustNames, NameError> {
    let mut renamed = BTreeMap::new();
    let classes = unique("class", spec.classes().iter().map(String::as_str), &[], &mut renamed)?;
    let array_names = spec.inputs().iter().chain(spec.targets()).map(|a| a.name.as_str());
    let arrays = unique("array", array_names, BATCH_METHODS, &mut renamed)?;
    let (inputs, targets) = arrays.split_at(spec.inputs().len());
    Ok(RustNames {
        crate_ident: spec.name().replace('-', "_"),
        classes,
        inputs: inputs.to_vec(),
        targets: targets.to_vec(),
        renamed: renamed.into_iter().collect(),
    })
}

fn unique<'a>(
    kind: &'static str,
    names: impl Iterator<Item = &'a str>,
    reserved: &[&str],
    renamed: &mut BTreeMap<String, String>,
) -> Result<Vec<String>, NameError> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for name in names {
        let ident = rust_ident(name, reserved);
        if let Some(first) = seen.get(&ident) {
            return Err(NameError {
                kind,
                first: first.clone(),
                second: name.to_owned(),
                ident,
            });
        }
        seen.insert(ident.clone(), name.to_owned());
        if ident != name {
            renamed.insert(name.to_owned(), ident.clone());
        }
        out.push(ident);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_deterministically() {
        assert_eq!(rust_ident("mito", &[]), "mito");
        assert_eq!(rust_ident("er-lumen", &[]), "er_lumen");
        assert_eq!(rust_ident("2nd", &[]), "n_2nd");
        assert_eq!(rust_ident("type", &[]), "type_");
        assert_eq!(rust_ident("Nuc", &[]), "nuc");
        assert_eq!(rust_ident("len", BATCH_METHODS), "len_");
        assert_eq!(rust_ident("", &[]), "__");
    }
}
