//! Writing the training cache of a spec: `cellmap-compile cache`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use zarrs::filesystem::FilesystemStore;

use cellmap_schema::Spec;

use super::arrays::{Counters, write_copy, write_pack};
use super::jobs::{CopyJob, PackJob, jobs};
use super::options::{CacheCodec, CacheError, CacheOptions, CacheReport, io_err};
use crate::plan::{PlanOptions, plan};
use crate::sources::manifest::{CopyEntry, FORMAT, Manifest, PackEntry, PackMember, SourceMeta};

/// Write (or bring up to date) the training cache of `spec` in `dir`: see the module docs.
/// Arrays the cache already holds, from the same source metadata, with the same chunks and over
/// the same boxes, are kept; entries of other specs sharing the folder are kept too.
///
/// Arrays are written [`CacheOptions::threads`] at a time (reads of remote sources wait on the
/// network), each into a new folder, and the manifest is brought up to date every few seconds
/// and when the run ends or fails: an interrupted run keeps what it finished for the next.
///
/// # Errors
/// [`CacheError`]: the spec cannot be planned, a source cannot be read, the folder not written.
pub fn write(spec: &Spec, dir: &Path, options: &CacheOptions) -> Result<CacheReport, CacheError> {
    write_with_progress(spec, dir, options, &|_, _| {})
}

/// [`write`], calling `progress(done, total)` after each array (kept or written).
///
/// # Errors
/// As [`write`].
pub fn write_with_progress(
    spec: &Spec,
    dir: &Path,
    options: &CacheOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<CacheReport, CacheError> {
    let start = Instant::now();
    let direct = spec.clone().with_training_cache(None);
    let planned = plan(&direct, PlanOptions::default()).map_err(Box::new)?;
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, &e))?;
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let (copies, packs) = jobs(spec, &planned.plan.datasets, &planned.sources, options);
    let run = Run {
        store: Arc::new(FilesystemStore::new(&dir).map_err(|e| io_err(&dir, &e))?),
        old: Manifest::read(&dir).unwrap_or_default(),
        // New folders, never over ones a manifest names: a failed run or a loader that opened
        // the previous manifest never reads a half-written array.
        generation: generation(),
        codec: options.codec,
        force: options.force,
        counters: Counters::default(),
        state: Mutex::new(State {
            manifest: Manifest {
                format: FORMAT,
                arrays: Vec::new(),
                packs: Vec::new(),
            },
            report: CacheReport::new(&dir),
            checkpoint: Instant::now(),
        }),
        total: copies.len() + packs.len(),
        progress,
        dir,
    };
    let work: Vec<Job<'_>> = copies
        .iter()
        .map(Job::Copy)
        .chain(packs.iter().map(Job::Pack))
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads.max(1))
        .thread_name(|i| format!("cellmap-cache-{i}"))
        .build()
        .map_err(|e| io_err(&run.dir, &e))?;
    let outcome = pool.install(|| work.par_iter().with_max_len(1).try_for_each(|job| run.job(job)));
    let state = run.state.into_inner().unwrap_or_else(PoisonError::into_inner);
    let mut manifest = state.manifest;
    let mut report = state.report;
    keep_others(&mut manifest, run.old);
    manifest.write(&run.dir).map_err(|message| CacheError::Io {
        path: run.dir.display().to_string(),
        message,
    })?;
    outcome?;
    report.unreferenced = unreferenced(&run.dir, &manifest);
    if options.prune {
        for folder in &report.unreferenced {
            std::fs::remove_dir_all(folder).map_err(|e| io_err(folder, &e))?;
        }
    }
    report.chunks_written = run.counters.chunks.load(Ordering::Relaxed);
    report.source_bytes = run.counters.source_bytes.load(Ordering::Relaxed);
    report.disk_bytes = disk_bytes(&run.dir);
    report.elapsed = start.elapsed();
    Ok(report)
}

/// Seconds between manifest checkpoints.
const CHECKPOINT: Duration = Duration::from_secs(2);

/// One array to bring up to date.
enum Job<'a> {
    Copy(&'a CopyJob),
    Pack(&'a PackJob),
}

/// The manifest and report of the arrays done so far.
struct State {
    manifest: Manifest,
    report: CacheReport,
    checkpoint: Instant,
}

/// A run of [`write_with_progress`]: what every job shares.
struct Run<'a> {
    store: Arc<FilesystemStore>,
    dir: PathBuf,
    old: Manifest,
    generation: String,
    codec: CacheCodec,
    force: bool,
    counters: Counters,
    state: Mutex<State>,
    total: usize,
    progress: &'a (dyn Fn(usize, usize) + Sync),
}

impl Run<'_> {
    /// Keep or write one array, then record it (and checkpoint the manifest when due).
    fn job(&self, job: &Job<'_>) -> Result<(), CacheError> {
        match job {
            Job::Copy(job) => {
                let meta = SourceMeta::of(&job.source);
                let current = self.old.arrays.iter().find(|e| {
                    !self.force
                        && e.source == meta
                        && e.chunk_shape_vox == job.chunk
                        && job.boxes.iter().all(|b| e.written.contains(b))
                });
                let (entry, written) = match current {
                    Some(entry) => (entry.clone(), false),
                    None => {
                        let path = format!("arrays/{}-{}", name_of(&[&meta.array]), self.generation);
                        self.discard_on_error(
                            &path,
                            write_copy(&self.store, &self.dir, &path, job, self.codec, &self.counters),
                        )?;
                        let written = job.boxes.clone();
                        let entry = CopyEntry {
                            source: meta,
                            path,
                            chunk_shape_vox: job.chunk,
                            written,
                        };
                        (entry, true)
                    }
                };
                self.record(|s| {
                    s.manifest.arrays.push(entry);
                    if written {
                        s.report.copies_written += 1;
                    } else {
                        s.report.kept += 1;
                    }
                })
            }
            Job::Pack(job) => {
                let metas: Vec<SourceMeta> = job.members.iter().map(SourceMeta::of).collect();
                let names: Vec<&str> = metas.iter().map(|m| m.array.as_str()).collect();
                let path = format!("packs/{}-{}", name_of(&names), self.generation);
                let members: Vec<PackMember> = metas
                    .into_iter()
                    .zip(0u32..)
                    .map(|(source, bit)| PackMember { source, bit })
                    .collect();
                let current = self
                    .old
                    .packs
                    .iter()
                    .find(|e| !self.force && e.members == members && e.chunk_shape_vox == job.chunk);
                let (entry, written) = match current {
                    Some(entry) => (entry.clone(), false),
                    None => {
                        let dtype = self.discard_on_error(
                            &path,
                            write_pack(&self.store, &self.dir, &path, job, self.codec, &self.counters),
                        )?;
                        let entry = PackEntry {
                            path,
                            dtype: dtype.name().to_owned(),
                            chunk_shape_vox: job.chunk,
                            members,
                        };
                        (entry, true)
                    }
                };
                self.record(|s| {
                    if written {
                        s.report.packs_written += 1;
                        s.report.classes_packed += entry.members.len();
                    } else {
                        s.report.kept += 1;
                    }
                    s.manifest.packs.push(entry);
                })
            }
        }
    }

    /// `result`, after removing the folder `path` of an array whose writing failed (no manifest
    /// names it; best effort).
    fn discard_on_error<T>(&self, path: &str, result: Result<T, CacheError>) -> Result<T, CacheError> {
        if result.is_err() {
            let _ = std::fs::remove_dir_all(self.dir.join(path));
        }
        result
    }

    /// Apply `update` to the state, report progress, and write a checkpoint of the manifest (the
    /// arrays done, plus the previous manifest's others) when the last is older than
    /// [`CHECKPOINT`].
    fn record(&self, update: impl FnOnce(&mut State)) -> Result<(), CacheError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        update(&mut state);
        let done = state.manifest.arrays.len() + state.manifest.packs.len();
        (self.progress)(done, self.total);
        if state.checkpoint.elapsed() >= CHECKPOINT {
            state.checkpoint = Instant::now();
            let mut manifest = state.manifest.clone();
            keep_others(&mut manifest, self.old.clone());
            manifest.write(&self.dir).map_err(|message| CacheError::Io {
                path: self.dir.display().to_string(),
                message,
            })?;
        }
        Ok(())
    }
}

impl CacheReport {
    fn new(dir: &Path) -> CacheReport {
        CacheReport {
            dir: dir.to_path_buf(),
            copies_written: 0,
            packs_written: 0,
            classes_packed: 0,
            kept: 0,
            chunks_written: 0,
            source_bytes: 0,
            disk_bytes: 0,
            unreferenced: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }
}

/// A token naming this run's new array folders: the time in nanoseconds and the process id.
fn generation() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}{:x}", std::process::id())
}

/// Add to `manifest` the entries of `old` for sources it does not cache (other specs' arrays),
/// and sort both lists by source.
fn keep_others(manifest: &mut Manifest, old: Manifest) {
    let cached: HashSet<String> = manifest
        .arrays
        .iter()
        .map(|e| e.source.array.clone())
        .chain(
            manifest
                .packs
                .iter()
                .flat_map(|p| p.members.iter().map(|m| m.source.array.clone())),
        )
        .collect();
    manifest
        .arrays
        .extend(old.arrays.into_iter().filter(|e| !cached.contains(&e.source.array)));
    manifest.packs.extend(
        old.packs
            .into_iter()
            .filter(|p| p.members.iter().all(|m| !cached.contains(&m.source.array))),
    );
    // A stable order, whatever order the arrays were finished in.
    manifest.arrays.sort_by(|a, b| a.source.array.cmp(&b.source.array));
    manifest
        .packs
        .sort_by(|a, b| a.members[0].source.array.cmp(&b.members[0].source.array));
}

/// A stable folder name for the cached array of `sources` (FNV-1a of their locations).
fn name_of(sources: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for s in sources {
        for b in s.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Folders under `dir/arrays` and `dir/packs` that `manifest` does not name.
fn unreferenced(dir: &Path, manifest: &Manifest) -> Vec<PathBuf> {
    let named: HashSet<&str> = manifest
        .arrays
        .iter()
        .map(|e| e.path.as_str())
        .chain(manifest.packs.iter().map(|p| p.path.as_str()))
        .collect();
    let mut out = Vec::new();
    for kind in ["arrays", "packs"] {
        let Ok(entries) = std::fs::read_dir(dir.join(kind)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = format!("{kind}/{}", e.file_name().to_string_lossy());
            if !named.contains(name.as_str()) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Bytes of the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}
