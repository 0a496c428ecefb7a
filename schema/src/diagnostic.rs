//! Diagnostics: one problem in a spec, located by file, line, column and JSON pointer, and its renderings.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The spec is invalid.
    Error,
    /// The spec is valid but something was adjusted or looks wrong.
    Warning,
}

impl Severity {
    /// The lowercase name (`error`, `warning`).
    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem found in a spec (or a file it names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file the problem is in (the spec, or a datasplit CSV).
    pub file: PathBuf,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1 (in characters).
    pub column: usize,
    /// JSON pointer into the spec document (`/arrays/inputs/raw/shape/2`); empty for the whole document.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
    /// What was expected, if that helps.
    pub expected: Option<String>,
    /// How to fix it, if known.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at a place.
    pub fn error(
        file: impl Into<PathBuf>,
        (line, column): (usize, usize),
        pointer: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.into(),
            line,
            column,
            pointer: pointer.into(),
            message: message.into(),
            expected: None,
            hint: None,
        }
    }

    /// The same diagnostic as a warning.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    /// Sets what was expected.
    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    /// Sets the hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the hint when there is one.
    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:column: severity: message [at pointer]`, then `expected` and `hint` lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.severity.name(),
            self.message
        )?;
        if !self.pointer.is_empty() {
            write!(f, " (at `{}`)", self.pointer)?;
        }
        if let Some(expected) = &self.expected {
            write!(f, "\n  expected: {expected}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// All problems found in one spec, in document order. The `Err` side of [`crate::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Number of errors (not warnings).
    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.severity == Severity::Error).count()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render_human(&self.0))
    }
}

impl std::error::Error for Diagnostics {}

/// Human rendering: one block per diagnostic (see [`Diagnostic`]'s `Display`), each ending in a newline.
pub fn render_human(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    out
}

/// JSON rendering: an array of diagnostic objects (pretty-printed, with a final newline).
pub fn render_json(diagnostics: &[Diagnostic]) -> String {
    let mut out = serde_json::to_string_pretty(diagnostics).unwrap_or_else(|_| "[]".to_owned());
    out.push('\n');
    out
}

/// GitHub Actions workflow-command rendering: `::error file=…,line=…,col=…::message`, one line each.
pub fn render_github(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let mut message = d.message.clone();
        if !d.pointer.is_empty() {
            message.push_str(&format!(" (at `{}`)", d.pointer));
        }
        if let Some(expected) = &d.expected {
            message.push_str(&format!("\nexpected: {expected}"));
        }
        if let Some(hint) = &d.hint {
            message.push_str(&format!("\nhint: {hint}"));
        }
        out.push_str(&format!(
            "::{} file={},line={},col={}::{}\n",
            d.severity.name(),
            escape_property(&d.file.display().to_string()),
            d.line,
            d.column,
            escape_data(&message)
        ));
    }
    out
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Levenshtein distance in characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(above + 1).min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The closest candidate to `word`, if close enough to be a plausible typo, as a "did you mean" hint.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (word.chars().count() / 3).max(1) + 1;
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            did_you_mean("clases", ["classes", "name"]).as_deref(),
            Some("did you mean `classes`?")
        );
        assert_eq!(did_you_mean("zzzzzz", ["classes", "name"]), None);
    }

    #[test]
    fn github_escapes() {
        let d = Diagnostic::error("a,b.yaml", (3, 5), "/x", "bad\nvalue 100%");
        assert_eq!(
            render_github(&[d]),
            "::error file=a%2Cb.yaml,line=3,col=5::bad%0Avalue 100%25 (at `/x`)\n"
        );
    }
}
