//! `check --data`: a light check that the data a spec names exists and is OME-NGFF multiscale
//! (zarr v2 `.zattrs` `multiscales`, or zarr v3 `zarr.json` `attributes.ome.multiscales`), and
//! that the loader's ring and chunk cache fit in the memory this machine offers. Remote groups
//! (`s3://`, `http(s)://`) are opened through the runtime, so a missing bucket, refused access or
//! an unreachable server is reported with the URL and the runtime's hint.

use std::path::{Path, PathBuf};

use cellmap_schema::{DatasetSpec, Diagnostic, Spec};

/// A problem with the data named by one dataset.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DataError {
    /// The group does not exist.
    #[error("{origin}: {role} group `{path}` does not exist")]
    Missing {
        /// `file:line[:column]` where the dataset is declared.
        origin: String,
        /// `raw` or `class `x``.
        role: String,
        /// The group path.
        path: String,
    },
    /// The group exists but has no multiscale metadata.
    #[error("{origin}: {role} group `{path}` is not an OME-NGFF multiscale group: {reason}")]
    NotMultiscale {
        /// `file:line[:column]` where the dataset is declared.
        origin: String,
        /// `raw` or `class `x``.
        role: String,
        /// The group path.
        path: String,
        /// What is missing.
        reason: String,
    },
    /// A remote group could not be read (unreachable server, missing bucket, access denied, …).
    #[error("{origin}: {role} group: {message}")]
    Remote {
        /// `file:line[:column]` where the dataset is declared.
        origin: String,
        /// `raw` or `class `x``.
        role: String,
        /// The runtime's error, naming the URL, with its hint.
        message: String,
    },
    /// No annotated class of a crop exists on disk.
    #[error("{origin}: no class group found under `{template}`")]
    NoClasses {
        /// `file:line[:column]` where the dataset is declared.
        origin: String,
        /// The target template.
        template: String,
    },
}

impl DataError {
    fn origin(&self) -> &str {
        match self {
            DataError::Missing { origin, .. }
            | DataError::NotMultiscale { origin, .. }
            | DataError::Remote { origin, .. }
            | DataError::NoClasses { origin, .. } => origin,
        }
    }

    /// A diagnostic located at the dataset's declaration.
    pub(crate) fn into_diagnostic(self) -> Diagnostic {
        let (file, line, column) = split_origin(self.origin());
        let hint = match &self {
            DataError::Remote { .. } => {
                "remote stores read the AWS_* and CELLMAP_REMOTE_* variables (README: \"Data in S3 or over HTTP\")"
            }
            _ => "check the path; relative paths resolve against the spec file's folder",
        };
        let message = self.to_string();
        let message = message.split_once(": ").map_or(message.clone(), |(_, m)| m.to_owned());
        Diagnostic::error(file, (line, column), "", message).hint(hint)
    }
}

/// Splits `file:line[:column]` from the right.
fn split_origin(origin: &str) -> (PathBuf, usize, usize) {
    let parts: Vec<&str> = origin.rsplitn(3, ':').collect();
    match parts.as_slice() {
        [c, l, f] if c.parse::<usize>().is_ok() && l.parse::<usize>().is_ok() => {
            (PathBuf::from(f), l.parse().unwrap_or(1), c.parse().unwrap_or(1))
        }
        [l, rest @ ..] if l.parse::<usize>().is_ok() => {
            let file = rest.iter().rev().copied().collect::<Vec<_>>().join(":");
            (PathBuf::from(file), l.parse().unwrap_or(1), 1)
        }
        _ => (PathBuf::from(origin), 1, 1),
    }
}

/// Why `path` is not a multiscale group, or `None` when it is one. `Err` when it does not exist.
fn multiscale_problem(path: &Path) -> Result<Option<String>, ()> {
    if !path.is_dir() {
        return Err(());
    }
    let v3 = path.join("zarr.json");
    let v2 = path.join(".zattrs");
    let (file, pointer) = if v3.is_file() {
        (v3, "/attributes/ome/multiscales")
    } else if v2.is_file() {
        (v2, "/multiscales")
    } else {
        return Ok(Some("neither `zarr.json` nor `.zattrs` found".to_owned()));
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => return Ok(Some(format!("cannot read `{}`: {e}", file.display()))),
    };
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(j) => j,
        Err(e) => return Ok(Some(format!("`{}` is not JSON: {e}", file.display()))),
    };
    match json.pointer(pointer).and_then(serde_json::Value::as_array) {
        Some(list) if !list.is_empty() => Ok(None),
        _ => Ok(Some(format!(
            "`{}` has no `{}` list",
            file.display(),
            &pointer[1..].replace('/', ".")
        ))),
    }
}

/// A remote group, opened through the runtime (the same client, settings and errors as the
/// loader). `Ok(false)` when it is not there (an empty prefix, no group metadata).
fn remote_group(path: &str) -> Result<bool, cellmap_runtime::store::OpenError> {
    use cellmap_runtime::store::OpenError;
    match cellmap_runtime::store::Multiscale::open(path) {
        Ok(_) => Ok(true),
        Err(OpenError::NotFound { .. } | OpenError::NotAGroup { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

fn check_remote_group(path: &str, role: String, origin: &str, out: &mut Vec<DataError>) {
    match remote_group(path) {
        Ok(true) => {}
        Ok(false) => out.push(DataError::Missing {
            origin: origin.to_owned(),
            role,
            path: path.to_owned(),
        }),
        Err(e) => out.push(DataError::Remote {
            origin: origin.to_owned(),
            role,
            message: e.to_string(),
        }),
    }
}

fn check_group(path: &str, role: String, origin: &str, out: &mut Vec<DataError>) {
    if cellmap_runtime::store::is_url(path) {
        return check_remote_group(path, role, origin, out);
    }
    match multiscale_problem(Path::new(path)) {
        Ok(None) => {}
        Ok(Some(reason)) => out.push(DataError::NotMultiscale {
            origin: origin.to_owned(),
            role,
            path: path.to_owned(),
            reason,
        }),
        Err(()) => out.push(DataError::Missing {
            origin: origin.to_owned(),
            role,
            path: path.to_owned(),
        }),
    }
}

fn check_dataset(d: &DatasetSpec, classes: &[String], out: &mut Vec<DataError>) {
    check_group(&d.raw, "raw".to_owned(), &d.origin, out);
    let Some(t) = &d.targets else { return };
    match &t.annotated {
        Some(annotated) => {
            for class in annotated {
                check_group(&t.path_of(class), format!("class `{class}`"), &d.origin, out);
            }
        }
        None if cellmap_runtime::store::is_url(&t.template) => {
            let (mut found, errors_before) = (0, out.len());
            for class in classes {
                let path = t.path_of(class);
                match remote_group(&path) {
                    Ok(true) => found += 1,
                    Ok(false) => {}
                    Err(e) => out.push(DataError::Remote {
                        origin: d.origin.clone(),
                        role: format!("class `{class}`"),
                        message: e.to_string(),
                    }),
                }
            }
            if found == 0 && out.len() == errors_before {
                out.push(DataError::NoClasses {
                    origin: d.origin.clone(),
                    template: t.template.clone(),
                });
            }
        }
        None => {
            let found = classes.iter().filter(|c| Path::new(&t.path_of(c)).is_dir()).count();
            if found == 0 {
                out.push(DataError::NoClasses {
                    origin: d.origin.clone(),
                    template: t.template.clone(),
                });
            }
            for class in classes.iter().filter(|c| Path::new(&t.path_of(c)).is_dir()) {
                check_group(&t.path_of(class), format!("class `{class}`"), &d.origin, out);
            }
        }
    }
}

/// Checks every dataset of a spec; returns all problems found.
pub(crate) fn check(spec: &Spec) -> Vec<DataError> {
    let mut out = Vec::new();
    for d in spec.datasets() {
        check_dataset(d, spec.classes(), &mut out);
    }
    out
}

/// The loader's memory refusal ([`cellmap_runtime::memory::check_fits`]) as a diagnostic at the spec's
/// `batch_size` key (or `loader`, or the first line when neither is written).
pub(crate) fn memory(spec: &Spec) -> Option<Diagnostic> {
    let err = cellmap_runtime::memory::check_fits(&cellmap_runtime::memory::MemoryNeed::of_spec(spec)).err()?;
    let text = std::fs::read_to_string(spec.source()).unwrap_or_default();
    let (line, column) = ["batch_size", "loader"]
        .iter()
        .find_map(|key| key_position(&text, key))
        .unwrap_or((1, 1));
    Some(
        Diagnostic::error(spec.source(), (line, column), "/loader", err.to_string())
            .hint("the batch ring is allocated at start; set `CELLMAP_MEMORY_LIMIT_BYTES` to check against another machine's memory"),
    )
}

/// A warning at the spec's `training_cache` key when the folder it names holds no readable
/// training cache manifest (the loader then reads the data directly).
pub(crate) fn training_cache(spec: &Spec) -> Option<Diagnostic> {
    let dir = spec.loader().training_cache.as_ref()?;
    let err = cellmap_runtime::training_cache::Manifest::read(Path::new(dir)).err()?;
    let text = std::fs::read_to_string(spec.source()).unwrap_or_default();
    let (line, column) = key_position(&text, "training_cache").unwrap_or((1, 1));
    Some(
        Diagnostic::error(
            spec.source(),
            (line, column),
            "/loader/training_cache",
            format!("training cache: {err}; until then the loader reads the data directly"),
        )
        .warning()
        .hint(format!(
            "write it with `cellmap-compile cache {}`",
            spec.source().display()
        )),
    )
}

/// Line and column (from 1) of the first `key:` outside comments.
fn key_position(text: &str, key: &str) -> Option<(usize, usize)> {
    let pattern = format!("{key}:");
    text.lines().enumerate().find_map(|(i, line)| {
        let code = line.split('#').next().unwrap_or("");
        code.match_indices(&pattern).find_map(|(at, _)| {
            let before = code[..at].chars().last();
            before
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
                .then_some((i + 1, code[..at].chars().count() + 1))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_outside_comments_and_longer_names() {
        let text = "# batch_size: 3\nloader: { my_batch_size: 2, batch_size: 1000 }\n";
        assert_eq!(key_position(text, "batch_size"), Some((2, 29)));
        assert_eq!(key_position(text, "loader"), Some((2, 1)));
        assert_eq!(key_position(text, "prefetch"), None);
    }

    #[test]
    fn origins_split() {
        assert_eq!(split_origin("a/b.yaml:3:7"), (PathBuf::from("a/b.yaml"), 3, 7));
        assert_eq!(split_origin("a/b.csv:12"), (PathBuf::from("a/b.csv"), 12, 1));
    }
}
