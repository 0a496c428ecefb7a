//! The data behind one dataset of a spec: its raw multiscale group and one source per class.
//!
//! For each class of the spec, a dataset's crop either annotates it (its label group is
//! read), or does not. A class it does not annotate is *unknown* (all-NaN channel), unless
//! the spec's `class_relations` name a mutually exclusive class the crop does annotate:
//! then the class is *inferred* — 0 (a true negative) wherever a related class is present,
//! NaN elsewhere.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use cellmap_schema::{DatasetSpec, Spec};

use crate::store::{Multiscale, OpenError, is_url};

pub(crate) mod manifest;
pub(crate) mod training_cache;

use training_cache::TrainingCache;

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
        Self::open_with_raw(spec, dataset, None)
    }

    /// Open the data of every dataset of `datasets`, [`OPEN_THREADS`] at a time (metadata reads
    /// wait on the store, a remote one most of all), each raw group once however many crops share
    /// it: those crops' raw levels are one opened array, so the chunk cache holds each raw chunk
    /// once. Results in the order of `datasets`.
    pub fn open_all<'a>(
        spec: &Spec,
        datasets: impl IntoIterator<Item = &'a DatasetSpec>,
    ) -> Vec<Result<Self, DatasetError>> {
        let datasets: Vec<&DatasetSpec> = datasets.into_iter().collect();
        let mut locations: Vec<&str> = datasets.iter().map(|d| d.raw.as_str()).collect();
        locations.sort_unstable();
        locations.dedup();
        // A raw group that fails to open is opened again by each dataset, for its own error.
        let raws = parallel_map(&locations, |location| Multiscale::open(location).ok());
        let mut raws: HashMap<&str, Multiscale> = locations
            .into_iter()
            .zip(raws)
            .filter_map(|(l, m)| Some((l, m?)))
            .collect();
        // The training cache: its levels replace those it holds, each raw group once.
        let cache = spec.loader().training_cache.as_deref().map(TrainingCache::open);
        let mut cache_warnings = Vec::new();
        match &cache {
            Some(Ok(cache)) => {
                for raw in raws.values_mut() {
                    cache_warnings.extend(cache.apply(raw));
                }
            }
            Some(Err(e)) => cache_warnings.push(e.clone()),
            None => {}
        }
        let mut opened = parallel_map(&datasets, |d| {
            let mut opened = Self::open_with_raw(spec, d, raws.get(d.raw.as_str()).cloned());
            if let (Some(Ok(cache)), Ok(sources)) = (&cache, &mut opened) {
                cache.apply_classes(sources);
            }
            opened
        });
        // Shown once, with the first dataset that opened.
        if let Some(first) = opened.iter_mut().find_map(|o| o.as_mut().ok()) {
            first.warnings.extend(cache_warnings);
        }
        opened
    }

    /// Open a dataset whose raw group may be open already.
    fn open_with_raw(spec: &Spec, dataset: &DatasetSpec, raw: Option<Multiscale>) -> Result<Self, DatasetError> {
        let wrap = |source| DatasetError {
            origin: dataset.origin.clone(),
            split: dataset.split.name(),
            index: dataset.index,
            source: Box::new(source),
        };
        let raw = match raw {
            Some(raw) => raw,
            None => Multiscale::open(&dataset.raw).map_err(wrap)?,
        };
        let mut warnings = Vec::new();
        let mut annotated: Vec<Option<Multiscale>> = vec![None; spec.classes().len()];
        if let Some(targets) = &dataset.targets {
            for (c, class) in spec.classes().iter().enumerate() {
                let listed = targets.annotated.as_ref().map(|l| l.iter().any(|a| a == class));
                let path = targets.path_of(class);
                // A remote group is probed by opening it: one that is not there (an empty
                // prefix, no group metadata) counts as missing, like a missing folder.
                // A class group is looked for in its raw group's zarr format first.
                let opened = match listed {
                    Some(false) => None,
                    _ => match Multiscale::open_expecting(&path, raw.zarr_format) {
                        Err(OpenError::NotFound { .. }) => None,
                        Err(OpenError::NotAGroup { .. }) if is_url(&path) => None,
                        other => Some(other),
                    },
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
            .classes()
            .iter()
            .enumerate()
            .map(|(c, class)| match annotated[c].take() {
                Some(m) => ClassSource::Annotated(m),
                None => {
                    let related: Vec<usize> = spec
                        .class_relations()
                        .get(class)
                        .into_iter()
                        .flatten()
                        .filter_map(|r| spec.classes().iter().position(|k| k == r))
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

/// Threads that open datasets at once ([`DatasetSources::open_all`]).
pub const OPEN_THREADS: usize = 16;

/// `f` over `items` on up to [`OPEN_THREADS`] scoped threads; results in the order of `items`.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = items.len().min(OPEN_THREADS);
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    results.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .flatten()
        .collect()
}
