//! The JSON Schema of the spec (generated from [`RawSpec`] by schemars) and validation of a document
//! against it, with every error turned into a located [`Diagnostic`].

use std::path::Path;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::raw::RawSpec;
use crate::yaml::{PositionIndex, escape_segment};

/// The JSON Schema of the spec format (draft 2020-12), as committed in `schema/cellmap.schema.json`.
pub fn json_schema() -> Value {
    let schema = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<RawSpec>();
    schema.to_value()
}

/// [`json_schema`] pretty-printed with a final newline: the exact content of `schema/cellmap.schema.json`.
pub fn json_schema_string() -> String {
    let mut s = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    s.push('\n');
    s
}

fn validator() -> Option<&'static (Value, Validator)> {
    static VALIDATOR: OnceLock<Option<(Value, Validator)>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema = json_schema();
            let validator = jsonschema::validator_for(&schema).ok()?;
            Some((schema, validator))
        })
        .as_ref()
}

/// Validates a document against the schema; returns every error found, in document order.
pub(crate) fn validate(doc: &Value, file: &Path, positions: &PositionIndex) -> Vec<Diagnostic> {
    let Some((schema, validator)) = validator() else {
        return vec![Diagnostic::error(
            file,
            (1, 1),
            "",
            "internal error: the spec schema does not compile",
        )];
    };
    let mut out = Vec::new();
    for error in validator.iter_errors(doc) {
        convert(&error, schema, file, positions, &mut out);
    }
    // A misspelt key also makes the key it was meant to be missing: report only the misspelling.
    let suggested: Vec<(String, String)> = out
        .iter()
        .filter_map(|d| {
            let key = d.hint.as_deref()?.strip_prefix("did you mean `")?.strip_suffix("`?")?;
            let parent = d.pointer.rsplit_once('/')?.0;
            Some((parent.to_owned(), format!("missing required key `{key}`")))
        })
        .collect();
    out.retain(|d| !suggested.iter().any(|(p, m)| *p == d.pointer && *m == d.message));
    out.sort_by(|a, b| (a.line, a.column, &a.message).cmp(&(b.line, b.column, &b.message)));
    out.dedup();
    out
}

/// A value as shown in messages, shortened to 40 characters.
fn show(value: &Value) -> String {
    let full = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if full.chars().count() > 40 {
        format!("{}…", full.chars().take(39).collect::<String>())
    } else {
        full
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn kind_name(t: &jsonschema::JsonType) -> &'static str {
    match t {
        jsonschema::JsonType::Array => "a list",
        jsonschema::JsonType::Boolean => "a boolean",
        jsonschema::JsonType::Integer => "an integer",
        jsonschema::JsonType::Null => "null",
        jsonschema::JsonType::Number => "a number",
        jsonschema::JsonType::Object => "a mapping",
        jsonschema::JsonType::String => "a string",
    }
}

/// The schema node at a JSON pointer into the schema.
fn schema_at<'a>(schema: &'a Value, pointer: &str) -> Option<&'a Value> {
    schema.pointer(pointer)
}

/// Property names allowed by the object schema whose keyword at `schema_path` failed.
fn allowed_keys(schema: &Value, schema_path: &str) -> Vec<String> {
    let parent = schema_path.rsplit_once('/').map_or("", |(p, _)| p);
    schema_at(schema, parent)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn convert(
    error: &ValidationError<'_>,
    schema: &Value,
    file: &Path,
    positions: &PositionIndex,
    out: &mut Vec<Diagnostic>,
) {
    let pointer = error.instance_path().as_str().to_owned();
    let instance = error.instance();
    let at = positions.value(&pointer);
    let diag = |message: String| Diagnostic::error(file, at, pointer.clone(), message);
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = allowed_keys(schema, error.schema_path().as_str());
            for key in unexpected {
                let key_pointer = format!("{pointer}/{}", escape_segment(key));
                let mut d = Diagnostic::error(
                    file,
                    positions.key(&key_pointer),
                    key_pointer,
                    format!("unknown key `{key}`"),
                )
                .expected(format!("one of {}", list(&allowed)));
                d.hint = did_you_mean(key, allowed.iter().map(String::as_str));
                out.push(d);
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = show(property);
            out.push(diag(format!("missing required key `{name}`")).hint(format!("add `{name}:` to this mapping")));
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => kind_name(t).to_owned(),
                TypeKind::Multiple(set) => set.iter().map(|t| kind_name(&t)).collect::<Vec<_>>().join(" or "),
            };
            out.push(not_expected(diag, instance, expected));
        }
        ValidationErrorKind::Enum { options } => {
            let names: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(show).collect())
                .unwrap_or_default();
            let given = show(instance);
            let d = diag(format!("`{given}` is not an allowed value")).expected(format!("one of {}", list(&names)));
            out.push(d.maybe_hint(did_you_mean(&given, names.iter().map(String::as_str))));
        }
        ValidationErrorKind::Constant { expected_value } => {
            out.push(
                diag(format!("`{}` is not allowed", show(instance))).expected(format!("`{}`", show(expected_value))),
            );
        }
        ValidationErrorKind::Minimum { limit } | ValidationErrorKind::ExclusiveMinimum { limit } => {
            out.push(diag(format!("`{}` is below the minimum", show(instance))).expected(format!("a value ≥ {limit}")));
        }
        ValidationErrorKind::Maximum { limit } | ValidationErrorKind::ExclusiveMaximum { limit } => {
            out.push(diag(format!("`{}` is above the maximum", show(instance))).expected(format!("a value ≤ {limit}")));
        }
        ValidationErrorKind::MinItems { limit } => {
            out.push(
                diag(format!("list has {} items, too few", array_len(instance))).expected(format!("at least {limit}")),
            );
        }
        ValidationErrorKind::MaxItems { limit } => {
            out.push(
                diag(format!("list has {} items, too many", array_len(instance))).expected(format!("at most {limit}")),
            );
        }
        ValidationErrorKind::MinProperties { limit } => {
            out.push(diag("mapping is empty".to_owned()).expected(format!("at least {limit} entry")));
        }
        ValidationErrorKind::Pattern { pattern } => {
            out.push(
                diag(format!("`{}` has the wrong form", show(instance)))
                    .expected(format!("a string matching `{pattern}`")),
            );
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            one_of(error, context, schema, file, positions, out);
        }
        _ => out.push(diag(error.to_string())),
    }
}

fn not_expected(diag: impl Fn(String) -> Diagnostic, instance: &Value, expected: String) -> Diagnostic {
    match instance.as_str() {
        Some(s @ (".nan" | ".inf" | "-.inf")) => diag(format!("non-finite number `{s}`"))
            .expected(expected)
            .hint("use a finite number"),
        _ => diag(format!(
            "{} is not allowed here: `{}`",
            type_name(instance),
            show(instance)
        ))
        .expected(expected),
    }
}

fn array_len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

fn list(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// An `anyOf`/`oneOf` failure: report the branch that got furthest into the value, or, for a single-key
/// mapping matching none of the externally tagged variants, an unknown variant with a "did you mean".
fn one_of(
    error: &ValidationError<'_>,
    context: &[Vec<ValidationError<'static>>],
    schema: &Value,
    file: &Path,
    positions: &PositionIndex,
    out: &mut Vec<Diagnostic>,
) {
    let pointer = error.instance_path().as_str().to_owned();
    // An optional union (`anyOf: [union, null]`) given a value: what matters is the union's failure.
    if let Some((inner, inner_context)) = optional_union(error, context) {
        one_of(inner, inner_context, schema, file, positions, out);
        return;
    }
    let depth =
        |errs: &Vec<ValidationError<'static>>| errs.iter().map(|e| e.instance_path().as_str().len()).max().unwrap_or(0);
    let best = context
        .iter()
        .filter(|errs| !errs.is_empty())
        .max_by_key(|errs| (depth(errs), usize::MAX - errs.len()));
    if let Some(best) = best
        && depth(best) > pointer.len()
    {
        for e in best {
            convert(e, schema, file, positions, out);
        }
        return;
    }
    let branches = Branches {
        context,
        instance: error.instance(),
        pointer,
        file,
        positions,
    };
    out.push(
        branches
            .unknown_variant()
            .or_else(|| branches.not_a_constant())
            .unwrap_or_else(|| branches.no_form()),
    );
}

/// The inner union of an `anyOf: [union, {type: null}]` that a non-null value failed, and its branches.
fn optional_union<'e>(
    error: &ValidationError<'_>,
    context: &'e [Vec<ValidationError<'static>>],
) -> Option<(&'e ValidationError<'static>, &'e [Vec<ValidationError<'static>>])> {
    if error.instance().is_null() || context.len() != 2 {
        return None;
    }
    let pointer = error.instance_path().as_str();
    let mut union = None;
    for errs in context {
        match errs.as_slice() {
            [e] if e.instance_path().as_str() == pointer => match e.kind() {
                ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
                    union = Some((e, context.as_slice()));
                }
                ValidationErrorKind::Type {
                    kind: TypeKind::Single(jsonschema::JsonType::Null),
                } => {}
                _ => return None,
            },
            _ => return None,
        }
    }
    union
}

/// Errors of nested unions at the union's own value, flattened (a `$ref` to an enum of constants
/// inside an untagged union fails as a union of its own).
fn flatten<'e>(errs: &'e [ValidationError<'static>], pointer: &str, out: &mut Vec<&'e ValidationError<'static>>) {
    for e in errs {
        match e.kind() {
            ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context }
                if e.instance_path().as_str() == pointer =>
            {
                for inner in context {
                    flatten(inner, pointer, out);
                }
            }
            _ => out.push(e),
        }
    }
}

/// A `oneOf` that no branch matched, with no branch failing deeper than the value itself.
struct Branches<'a> {
    context: &'a [Vec<ValidationError<'static>>],
    instance: &'a Value,
    pointer: String,
    file: &'a Path,
    positions: &'a PositionIndex,
}

impl Branches<'_> {
    fn errors(&self) -> impl Iterator<Item = &ValidationError<'static>> {
        let mut out = Vec::new();
        for errs in self.context {
            flatten(errs, &self.pointer, &mut out);
        }
        out.into_iter()
    }

    /// A mapping whose key names no variant of an externally tagged enum (the `required` keys of
    /// the branches).
    fn unknown_variant(&self) -> Option<Diagnostic> {
        let variants: Vec<String> = self
            .errors()
            .filter_map(|e| match e.kind() {
                ValidationErrorKind::Required { property } => Some(show(property)),
                _ => None,
            })
            .collect();
        let map = self.instance.as_object().filter(|_| !variants.is_empty())?;
        let pointer = &self.pointer;
        let given: Vec<&String> = map.keys().collect();
        let d = match given.as_slice() {
            [one] => {
                let key_pointer = format!("{pointer}/{}", escape_segment(one));
                Diagnostic::error(
                    self.file,
                    self.positions.key(&key_pointer),
                    key_pointer,
                    format!("unknown transform `{one}`"),
                )
                .maybe_hint(did_you_mean(one, variants.iter().map(String::as_str)))
            }
            _ => Diagnostic::error(
                self.file,
                self.positions.value(pointer),
                pointer.clone(),
                format!("expected a single-key mapping, found {} keys", given.len()),
            ),
        };
        Some(d.expected(format!("one of {}", list(&variants))))
    }

    /// A string that is none of the allowed constants.
    fn not_a_constant(&self) -> Option<Diagnostic> {
        let constants: Vec<String> = self
            .errors()
            .filter_map(|e| match e.kind() {
                ValidationErrorKind::Constant { expected_value } => Some(show(expected_value)),
                _ => None,
            })
            .collect();
        let given = self.instance.as_str().filter(|_| !constants.is_empty())?;
        // The other forms of an untagged union (`scale: 255` beside `scale: dtype`).
        let mut forms: Vec<&str> = self
            .errors()
            .filter_map(|e| match e.kind() {
                ValidationErrorKind::Type {
                    kind: TypeKind::Single(t),
                } if *t != jsonschema::JsonType::String => Some(kind_name(t)),
                _ => None,
            })
            .collect();
        forms.dedup();
        let mut expected = format!("one of {}", list(&constants));
        for form in forms {
            expected.push_str(&format!(", or {form}"));
        }
        let d = Diagnostic::error(
            self.file,
            self.positions.value(&self.pointer),
            self.pointer.clone(),
            format!("`{}` is not an allowed value", show(self.instance)),
        )
        .expected(expected)
        .maybe_hint(did_you_mean(given, constants.iter().map(String::as_str)));
        Some(d)
    }

    /// Anything else: the forms the branches accept.
    fn no_form(&self) -> Diagnostic {
        let alternatives: Vec<String> = self
            .context
            .iter()
            .filter_map(|errs| {
                errs.iter().find_map(|e| match e.kind() {
                    ValidationErrorKind::Type {
                        kind: TypeKind::Single(t),
                    } => Some(kind_name(t).to_owned()),
                    ValidationErrorKind::Enum { options } => Some(format!(
                        "one of {}",
                        list(
                            &options
                                .as_array()
                                .map(|a| a.iter().map(show).collect::<Vec<_>>())
                                .unwrap_or_default()
                        )
                    )),
                    _ => None,
                })
            })
            .collect();
        let d = Diagnostic::error(
            self.file,
            self.positions.value(&self.pointer),
            self.pointer.clone(),
            format!("`{}` matches none of the allowed forms", show(self.instance)),
        );
        if alternatives.is_empty() {
            d
        } else {
            d.expected(alternatives.join(", or "))
        }
    }
}
