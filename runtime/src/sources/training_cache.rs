//! Reading through the training cache: opened levels swapped for their cached copies.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use super::manifest::{Manifest, SourceMeta};
use super::{ClassSource, DatasetSources};
use crate::store::location::{Location, open_location};
use crate::store::{Level, Multiscale};

/// An opened training cache: its manifest, indexed by source array.
#[derive(Debug)]
pub struct TrainingCache {
    dir: String,
    /// The folder, opened once for every cached array.
    store: Location,
    manifest: Manifest,
    /// Source array → index into `manifest.arrays`.
    copies: HashMap<String, usize>,
    /// Source array → (index into `manifest.packs`, bit).
    members: HashMap<String, (usize, usize)>,
    /// Packs opened so far, by index into `manifest.packs`: every class of a pack shares one
    /// opened array (one decode memo); each pack is opened once, by the first class that asks.
    packs: Vec<OnceLock<Result<Arc<Level>, String>>>,
}

impl TrainingCache {
    /// Open the cache in the folder `dir` (its manifest).
    ///
    /// # Errors
    /// A message naming the manifest and what to do when it is missing or unreadable.
    pub fn open(dir: &str) -> Result<TrainingCache, String> {
        let manifest = Manifest::read(Path::new(dir))
            .map_err(|e| format!("training cache: {e}; write it with `cellmap-compile cache SPEC`"))?;
        let store = open_location(dir).map_err(|e| format!("training cache: {e}"))?;
        let copies = manifest
            .arrays
            .iter()
            .enumerate()
            .map(|(i, e)| (e.source.array.clone(), i))
            .collect();
        let members = manifest
            .packs
            .iter()
            .enumerate()
            .flat_map(|(p, pack)| {
                pack.members
                    .iter()
                    .enumerate()
                    .map(move |(m, member)| (member.source.array.clone(), (p, m)))
            })
            .collect();
        Ok(TrainingCache {
            dir: dir.to_owned(),
            store,
            packs: (0..manifest.packs.len()).map(|_| OnceLock::new()).collect(),
            manifest,
            copies,
            members,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The cached stand-in of `level`: `Ok(None)` when the cache does not hold it, `Err` (a
    /// warning to show) when it does but cannot be used (stale or unreadable), and the level is
    /// read from its source.
    ///
    /// # Errors
    /// As above.
    pub fn level(&self, level: &Level) -> Result<Option<Level>, String> {
        let array = level.array_location();
        if !self.copies.contains_key(array) && !self.members.contains_key(array) {
            return Ok(None);
        }
        let now = SourceMeta::of(level);
        let stale = |cached: &SourceMeta| {
            cached.differences(&now).map(|d| {
                format!(
                    "training cache {}: `{}` changed since it was cached ({d}); reading it from the source (run `cellmap-compile cache` again)",
                    self.dir, now.array
                )
            })
        };
        if let Some(&i) = self.copies.get(&now.array) {
            let entry = &self.manifest.arrays[i];
            if let Some(w) = stale(&entry.source) {
                return Err(w);
            }
            let copy = level
                .open_like(&self.store, &entry.path)
                .map_err(|e| format!("training cache: {e}; reading `{}` from the source", now.array))?;
            return Ok(Some(level.cached_copy(copy, entry.written.clone())));
        }
        if let Some(&(p, m)) = self.members.get(&now.array) {
            let member = &self.manifest.packs[p].members[m];
            if let Some(w) = stale(&member.source) {
                return Err(w);
            }
            let pack = self.pack(p, level)?;
            return Ok(Some(level.cached_bit(&pack, member.bit)));
        }
        Ok(None)
    }

    /// Pack `p`, opened once with the geometry of its member `like` (datasets open in parallel:
    /// another class of the pack waits for that open rather than opening it again).
    fn pack(&self, p: usize, like: &Level) -> Result<Arc<Level>, String> {
        self.packs[p]
            .get_or_init(|| {
                like.open_like(&self.store, &self.manifest.packs[p].path)
                    .map(Arc::new)
                    .map_err(|e| format!("training cache: {e}; reading its classes from their sources"))
            })
            .clone()
    }

    /// Swap every level of `ms` the cache holds; the warnings of those it holds but cannot use.
    pub fn apply(&self, ms: &mut Multiscale) -> Vec<String> {
        let mut warnings = Vec::new();
        for level in &mut ms.levels {
            match self.level(level) {
                Ok(Some(cached)) => *level = cached,
                Ok(None) => {}
                Err(w) => warnings.push(w),
            }
        }
        warnings
    }

    /// Swap the class levels of `sources` the cache holds (its raw is swapped by the caller, once
    /// per raw group); warnings go to the dataset's.
    pub fn apply_classes(&self, sources: &mut DatasetSources) {
        for class in &mut sources.classes {
            if let ClassSource::Annotated(ms) = class {
                let warnings = self.apply(ms);
                sources.warnings.extend(warnings);
            }
        }
    }
}

/// Chunks read from their sources because the training cache does not hold them, over every
/// cached level of `sources` (each level counted once however many datasets share it).
pub fn fallback_chunks<'a>(sources: impl IntoIterator<Item = &'a DatasetSources>) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    for s in sources {
        let classes = s.classes.iter().filter_map(|c| match c {
            ClassSource::Annotated(ms) => Some(ms),
            _ => None,
        });
        for ms in std::iter::once(&s.raw).chain(classes) {
            for level in &ms.levels {
                if let Some(n) = level.cache_fallbacks()
                    && seen.insert(level.id)
                {
                    total += n;
                }
            }
        }
    }
    total
}
