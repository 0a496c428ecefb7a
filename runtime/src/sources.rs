//! The data behind one dataset of a spec: its raw multiscale group and one source per class.
//!
//! For each class of the spec, a dataset's crop either annotates it (its label group is
//! read), or does not. A class it does not annotate is *unknown* (all-NaN channel), unless
//! the spec's `class_relations` name a mutually exclusive class the crop does annotate:
//! then the class is *inferred* — 0 (a true negative) wherever a related class is present,
//! NaN elsewhere.

use std::path::Path;

use cellmap_schema::{DatasetSpec, Spec};

use crate::store::{Multiscale, OpenError};

/// Where the values of one class channel come from in one dataset.
#[derive(Debug, Clone)]
pub enum ClassSource {
    /// The crop annotates the class: its label group.
    Annotated(Multiscale),
    /// Not annotated, but mutually exclusive with these annotated classes (indices into the
    /// spec's class list): 0 where any of them is present, NaN elsewhere.
    Inferred(Vec<usize>),
    /// Not annotated and nothing to infer from: NaN everywhere.
    Unknown,
}

impl ClassSource {
    /// Short name of the source kind, for tables.
    pub fn kind(&self) -> &'static str {
        match self {
            ClassSource::Annotated(_) => "annotated",
            ClassSource::Inferred(_) => "inferred",
            ClassSource::Unknown => "unknown",
        }
    }
}

/// An opened dataset: raw plus one source per spec class, in class order.
#[derive(Debug, Clone)]
pub struct DatasetSources {
    /// The dataset as the spec declares it.
    pub spec: DatasetSpec,
    /// The raw multiscale group.
    pub raw: Multiscale,
    /// One source per class of the spec.
    pub classes: Vec<ClassSource>,
    /// Things a person should know (a listed class whose group is missing, …).
    pub warnings: Vec<String>,
}

/// A dataset that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: dataset {split} #{index}: {source}")]
pub struct DatasetError {
    /// Where the dataset is declared (`file:line:column`).
    pub origin: String,
    /// Its split.
    pub split: &'static str,
    /// Its index within the split.
    pub index: usize,
    /// What went wrong.
    #[source]
    pub source: Box<OpenError>,
}

impl DatasetSources {
    /// Open the raw group and every class group of one dataset.
    pub fn open(spec: &Spec, dataset: &DatasetSpec) -> Result<Self, DatasetError> {
        let wrap = |source| DatasetError {
            origin: dataset.origin.clone(),
            split: dataset.split.name(),
            index: dataset.index,
            source: Box::new(source),
        };
        let raw = Multiscale::open(&dataset.raw).map_err(wrap)?;
        let mut warnings = Vec::new();
        let mut annotated: Vec<Option<Multiscale>> = vec![None; spec.classes.len()];
        if let Some(targets) = &dataset.targets {
            for (c, class) in spec.classes.iter().enumerate() {
                let listed = targets.annotated.as_ref().map(|l| l.iter().any(|a| a == class));
                let path = targets.path_of(class);
                // A remote group is probed by opening it: one that is not there (an empty
                // prefix, no group metadata) counts as missing, like a missing folder.
                let opened = match listed {
                    Some(false) => None,
                    _ if is_url(&path) => match Multiscale::open(&path) {
                        Err(OpenError::NotFound { .. } | OpenError::NotAGroup { .. }) => None,
                        other => Some(other),
                    },
                    _ if Path::new(&path).exists() => Some(Multiscale::open(&path)),
                    _ => None,
                };
                match (listed, opened) {
                    (Some(false), _) | (None, None) => {}
                    (Some(true), None) => warnings.push(format!(
                        "class `{class}` is listed as annotated but `{path}` does not exist; its channel is unknown (NaN)"
                    )),
                    (_, Some(m)) => annotated[c] = Some(m.map_err(wrap)?),
                }
            }
        }
        let is_annotated: Vec<bool> = annotated.iter().map(Option::is_some).collect();
        let classes = spec
            .classes
            .iter()
            .enumerate()
            .map(|(c, class)| match annotated[c].take() {
                Some(m) => ClassSource::Annotated(m),
                None => {
                    let related: Vec<usize> = spec
                        .class_relations
                        .get(class)
                        .into_iter()
                        .flatten()
                        .filter_map(|r| spec.classes.iter().position(|k| k == r))
                        .filter(|&k| is_annotated[k])
                        .collect();
                    if related.is_empty() {
                        ClassSource::Unknown
                    } else {
                        ClassSource::Inferred(related)
                    }
                }
            })
            .collect();
        Ok(DatasetSources {
            spec: dataset.clone(),
            raw,
            classes,
            warnings,
        })
    }

    /// Classes (indices) whose source is a label group.
    pub fn annotated(&self) -> impl Iterator<Item = usize> + '_ {
        self.classes
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, ClassSource::Annotated(_)))
            .map(|(c, _)| c)
    }
}

/// Whether `location` is a URL (`s3://…`, `https://…`) rather than a filesystem path.
fn is_url(location: &str) -> bool {
    location
        .split_once("://")
        .is_some_and(|(scheme, _)| !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric()))
}
