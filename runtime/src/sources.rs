//! The data behind one dataset of a spec: its raw multiscale group and one source per class.
//!
//! For each class of the spec, a dataset's crop either annotates it (its label group is
//! read), or does not. A class it does not annotate is *unknown* (all-NaN channel), unless
//! the spec's `class_relations` name a mutually exclusive class the crop does annotate:
//! then the class is *inferred* — 0 (a true negative) wherever a related class is present,
//! NaN elsewhere.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use cellmap_schema::{DatasetSpec, Spec};

use crate::parallel;
use crate::store::{Multiscale, OpenError, is_url};

pub use crate::parallel::{OPEN_THREADS, REMOTE_OPEN_THREADS};

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

/// A class group as opened: `None` where the crop has none (a missing folder, or over a remote
/// store no group metadata), else the group or why it failed.
type OpenedGroup = Option<Result<Multiscale, OpenError>>;

impl DatasetSources {
    /// Open the raw group and every class group of one dataset.
    pub fn open(spec: &Spec, dataset: &DatasetSpec) -> Result<Self, DatasetError> {
        let needed = needed_scales(spec);
        let raw = Multiscale::open_for(&dataset.raw, None, &needed).map_err(|e| dataset_error(dataset, e))?;
        let groups = class_groups(spec, dataset)
            .into_iter()
            .map(|(c, path)| (c, open_class_group(&path, raw.zarr_format, &needed)))
            .collect();
        Self::assemble(spec, dataset, raw, groups)
    }

    /// Open the data of every dataset of `datasets`: each raw group once however many crops share
    /// it (those crops' raw levels are one opened array, so the chunk cache holds each raw chunk
    /// once), then every class group of every dataset in one pool of [`OPEN_THREADS`] threads
    /// ([`REMOTE_OPEN_THREADS`] when a location is remote: each metadata document is a round
    /// trip), so that a dataset's groups are opened side by side, not one after another. Results
    /// in the order of `datasets`.
    pub fn open_all<'a>(
        spec: &Spec,
        datasets: impl IntoIterator<Item = &'a DatasetSpec>,
    ) -> Vec<Result<Self, DatasetError>> {
        let datasets: Vec<&DatasetSpec> = datasets.into_iter().collect();
        let remote = datasets
            .iter()
            .any(|d| is_url(&d.raw) || d.targets.as_ref().is_some_and(|t| is_url(&t.path_of(""))));
        let threads = if remote { REMOTE_OPEN_THREADS } else { OPEN_THREADS };
        let mut locations: Vec<&str> = datasets.iter().map(|d| d.raw.as_str()).collect();
        locations.sort_unstable();
        locations.dedup();
        // A raw group that fails to open is opened again by each dataset, for its own error.
        let needed = needed_scales(spec);
        let raws = parallel::map(&locations, threads, |location| {
            Multiscale::open_for(location, None, &needed).ok()
        });
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
        // Every class group of every dataset whose raw group opened, in its raw group's format.
        let wanted: Vec<(usize, usize, String, u8)> = datasets
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i, d, raws.get(d.raw.as_str())?.zarr_format)))
            .flat_map(|(i, d, format)| {
                class_groups(spec, d)
                    .into_iter()
                    .map(move |(c, path)| (i, c, path, format))
            })
            .collect();
        let groups = parallel::map(&wanted, threads, |(_, _, path, format)| {
            open_class_group(path, *format, &needed)
        });
        let mut by_dataset: Vec<Vec<(usize, OpenedGroup)>> = datasets.iter().map(|_| Vec::new()).collect();
        for ((i, c, _, _), group) in wanted.into_iter().zip(groups) {
            by_dataset[i].push((c, group));
        }
        let assembled: Vec<Mutex<Result<Self, DatasetError>>> = datasets
            .iter()
            .zip(by_dataset)
            .map(|(d, groups)| {
                let opened = match raws.get(d.raw.as_str()) {
                    Some(raw) => Self::assemble(spec, d, raw.clone(), groups),
                    None => Self::open(spec, d),
                };
                Mutex::new(opened)
            })
            .collect();
        // Cached stand-ins of the class levels (local files), dataset by dataset side by side.
        if let Some(Ok(cache)) = &cache {
            parallel::map(&assembled, threads, |cell| {
                if let Ok(sources) = &mut *cell.lock().unwrap_or_else(PoisonError::into_inner) {
                    cache.apply_classes(sources);
                }
            });
        }
        let mut opened: Vec<Result<Self, DatasetError>> = assembled
            .into_iter()
            .map(|cell| cell.into_inner().unwrap_or_else(PoisonError::into_inner))
            .collect();
        // Shown once, with the first dataset that opened.
        if let Some(first) = opened.iter_mut().find_map(|o| o.as_mut().ok()) {
            first.warnings.extend(cache_warnings);
        }
        opened
    }

    /// The dataset from its opened raw group and the class groups of [`class_groups`] as opened.
    fn assemble(
        spec: &Spec,
        dataset: &DatasetSpec,
        raw: Multiscale,
        groups: Vec<(usize, OpenedGroup)>,
    ) -> Result<Self, DatasetError> {
        let mut warnings = Vec::new();
        let mut annotated: Vec<Option<Multiscale>> = vec![None; spec.classes().len()];
        for (c, group) in groups {
            let class = &spec.classes()[c];
            let listed = dataset
                .targets
                .as_ref()
                .and_then(|t| t.annotated.as_ref())
                .is_some_and(|l| l.iter().any(|a| a == class));
            match group {
                Some(opened) => annotated[c] = Some(opened.map_err(|e| dataset_error(dataset, e))?),
                None if listed => warnings.push(format!(
                    "class `{class}` is listed as annotated but `{}` does not exist; its channel is unknown (NaN)",
                    dataset.targets.as_ref().map(|t| t.path_of(class)).unwrap_or_default()
                )),
                None => {}
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

/// The class groups `dataset` may have, as (class index, location): every class of the spec
/// unless its targets list the annotated classes and leave it out.
fn class_groups(spec: &Spec, dataset: &DatasetSpec) -> Vec<(usize, String)> {
    let Some(targets) = &dataset.targets else {
        return Vec::new();
    };
    spec.classes()
        .iter()
        .enumerate()
        .filter(|(_, class)| targets.annotated.as_ref().is_none_or(|l| l.iter().any(|a| a == *class)))
        .map(|(c, class)| (c, targets.path_of(class)))
        .collect()
}

/// The voxel sizes a spec reads at: its input and target arrays'. A group is opened up to the
/// coarsest level these choose ([`Multiscale::open_for`]): the plan chooses among those.
fn needed_scales(spec: &Spec) -> Vec<[f64; 3]> {
    spec.inputs()
        .iter()
        .chain(spec.targets())
        .map(|a| a.voxel_size_nm)
        .collect()
}

/// Open the class group at `path` for the voxel sizes `needed`, its raw group's `zarr_format`
/// looked for first; `None` where there is none: a missing path, or (remote, where folders do
/// not exist) no group metadata.
fn open_class_group(path: &str, zarr_format: u8, needed: &[[f64; 3]]) -> OpenedGroup {
    match Multiscale::open_for(path, Some(zarr_format), needed) {
        Err(OpenError::NotFound { .. }) => None,
        Err(OpenError::NotAGroup { .. }) if is_url(path) => None,
        other => Some(other),
    }
}

fn dataset_error(dataset: &DatasetSpec, source: OpenError) -> DatasetError {
    DatasetError {
        origin: dataset.origin.clone(),
        split: dataset.split.name(),
        index: dataset.index,
        source: Box::new(source),
    }
}
