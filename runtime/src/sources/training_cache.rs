//! Reading through the training cache: opened levels swapped for their cached copies.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

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
    /// Packs opened so far: every class of a pack shares one opened array (one decode memo).
    packs: Mutex<HashMap<usize, Result<Arc<Level>, String>>>,
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
            manifest,
            copies,
            members,
            packs: Mutex::new(HashMap::new()),
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

    /// Pack `p`, opened once with the geometry of its member `like`.
    fn pack(&self, p: usize, like: &Level) -> Result<Arc<Level>, String> {
        let lock = || self.packs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(opened) = lock().get(&p) {
            return opened.clone();
        }
        // Opened without the lock (datasets open in parallel); if two threads open the same
        // pack, the first one stored is the one every class shares.
        let entry = &self.manifest.packs[p];
        let opened = like
            .open_like(&self.store, &entry.path)
            .map(Arc::new)
            .map_err(|e| format!("training cache: {e}; reading its classes from their sources"));
        lock().entry(p).or_insert(opened).clone()
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
