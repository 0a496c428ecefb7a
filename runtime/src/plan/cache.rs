//! Plans cached on disk, for loaders that read the spec at run time (the Python package).
//!
//! A cached plan is keyed by the whole validated spec (its data paths resolved, every default
//! filled in) and this runtime's version. Opening over it checks the data's metadata exactly as
//! a generated crate's embedded plan is checked ([`Planned::open`]: every level's path, voxel
//! size, translation and shape; every class annotated, inferred or unknown as planned); a plan
//! the data no longer matches is never used: it is planned again and the file replaced. As with
//! the embedded plan, voxel contents are not re-read, so class counts (voxel-weighted sampling)
//! follow a relabelled crop only after its metadata changes or the cache file is removed. A plan
//! that excluded a dataset is not reused: the reason (a crop too small, a class missing) may be
//! gone, so such a spec is planned at every open.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use cellmap_schema::Spec;

use super::{Plan, PlanError, PlanOptions, Planned, plan};

/// Where the plan a loader runs on came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanOrigin {
    /// Opened over a cached plan that still matches the data.
    Cache,
    /// Planned now (no cached plan, or a stale or unreadable one); the cache was written.
    Planned,
    /// Opened over a plan the caller kept (a generated package's embedded plan).
    Embedded,
}

impl PlanOrigin {
    /// `"cache"`, `"planned"` or `"embedded"`.
    pub fn name(self) -> &'static str {
        match self {
            PlanOrigin::Cache => "cache",
            PlanOrigin::Planned => "planned",
            PlanOrigin::Embedded => "embedded",
        }
    }
}

/// The file format: the key it was written for, and the plan.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    key: String,
    plan: Plan,
}

/// The default cache folder: `$CELLMAP_CACHE_DIR`, else `$XDG_CACHE_HOME/cellmap-compile/plans`,
/// else `~/.cache/cellmap-compile/plans`; `None` when none of them is set.
pub fn default_plan_cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("CELLMAP_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("cellmap-compile").join("plans")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("cellmap-compile").join("plans")))
}

/// The cache key of a spec: FNV-1a of its JSON form and this runtime's version.
fn cache_key(spec: &Spec) -> String {
    let json = serde_json::to_string(spec).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in env!("CARGO_PKG_VERSION").bytes().chain([0]).chain(json.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The file a spec's plan is cached in under `dir`.
pub fn plan_cache_path(spec: &Spec, dir: &Path) -> PathBuf {
    let name: String = spec
        .name()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{name}-{}.json", cache_key(spec)))
}

/// Open `spec`'s data over its cached plan in `dir`, or plan it and cache the plan.
///
/// A cache file that is missing, unreadable, written for another key or stale is replaced by a
/// fresh plan. Failing to write the cache (a read-only folder) is not an error: the plan is
/// returned with a warning that says so.
///
/// # Errors
/// What [`plan`] returns, and [`PlanError::Dataset`] when the data cannot be opened.
pub fn plan_cached(spec: &Spec, options: PlanOptions, dir: &Path) -> Result<(Planned, PlanOrigin), PlanError> {
    let path = plan_cache_path(spec, dir);
    let key = cache_key(spec);
    let cached = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
        .filter(|file| file.key == key);
    if let Some(file) = cached {
        // A count the caller asks for must be in the plan.
        let counted = !options.count_classes || file.plan.datasets.iter().all(|d| d.class_counts.is_some());
        if counted && accounts_for_every_dataset(spec, &file.plan) {
            match Planned::open(spec, file.plan) {
                Ok(planned) => return Ok((planned, PlanOrigin::Cache)),
                Err(PlanError::Stale { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let mut planned = plan(spec, options)?;
    if let Err(e) = write_atomically(
        &path,
        &CacheFile {
            key,
            plan: planned.plan.clone(),
        },
    ) {
        planned.plan.warnings.push(format!(
            "the plan could not be cached at `{}` ({e}); set CELLMAP_CACHE_DIR to a writable folder to open faster next time",
            path.display()
        ));
    }
    Ok((planned, PlanOrigin::Planned))
}

/// Whether a cached plan planned every dataset of the spec and excluded none: an exclusion
/// (a crop too small, an unreadable class) may no longer hold, and [`Planned::open`] checks only
/// the datasets a plan reads, so a plan with exclusions is planned again.
fn accounts_for_every_dataset(spec: &Spec, plan: &Plan) -> bool {
    let mut planned: Vec<_> = plan.datasets.iter().map(|d| (d.split, d.index)).collect();
    let mut declared: Vec<_> = spec.datasets().iter().map(|d| (d.split, d.index)).collect();
    planned.sort_unstable();
    declared.sort_unstable();
    plan.excluded.is_empty() && planned == declared
}

/// Write `file` to a temporary file beside `path`, then rename it into place, so that a reader
/// never sees half a plan.
fn write_atomically(path: &Path, file: &CacheFile) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("plan"),
        std::process::id()
    ));
    let json = serde_json::to_vec(file).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&json)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
