//! Whether a loader fits in memory, checked before anything is allocated.
//!
//! A loader holds a ring of `prefetch` batches, allocated once at start, a chunk cache that
//! grows up to `loader.cache_bytes`, and a compressed tier of encoded chunks that grows up to
//! `loader.compressed_cache_bytes` (by default only over remote data: [`compressed_cache_bytes`]). [`check_fits`] compares their sum with the memory the
//! machine offers and refuses a loader that cannot fit, with the numbers and the keys to change,
//! instead of letting an allocation abort the process (or the kernel kill it once the ring's
//! pages are written). `cellmap-compile plan`, `cellmap-compile check --data` and every
//! [`crate::Loader`] (the generated crates' and the Python package's included) call it.
//!
//! The memory offered is the smallest of:
//!
//! - `MemAvailable` of `/proc/meminfo` (free memory plus what the kernel can reclaim);
//! - under cgroup v2, `memory.max − (memory.current − inactive_file)` of the process's cgroup
//!   and of every ancestor that sets `memory.max` (file cache that is not in use counts as free);
//! - under cgroup v1, `memory.limit_in_bytes − (memory.usage_in_bytes − total_inactive_file)`.
//!
//! The environment variable [`MEMORY_LIMIT_ENV`] (`CELLMAP_MEMORY_LIMIT_BYTES`) replaces the
//! detection: a number of bytes is the memory offered (tests and CI use it to make the check
//! deterministic; a scheduler's allocation can be given this way), `off` skips the check. Where
//! nothing can be read (not Linux), the check passes.
//!
//! ```
//! use cellmap_runtime::{memory::MemoryAvailable, memory::MemoryNeed};
//! let need = MemoryNeed { batch_size: 8, batch_bytes: 1 << 20, prefetch: 4, cache_bytes: 1 << 30, compressed_cache_bytes: 0 };
//! assert_eq!(need.ring_bytes(), 4 << 20);
//! let offered = MemoryAvailable { bytes: 512 << 20, source: "a test".into() };
//! let err = need.fits_in(&offered).unwrap_err().to_string();
//! assert!(err.contains("`loader.cache_bytes`"));
//! ```

mod huge_pages;

pub use huge_pages::HostBuffer;

use std::path::{Path, PathBuf};

use cellmap_schema::Spec;

use crate::plan::{Plan, batch_layout};

/// The environment variable that replaces the detection of available memory: bytes, or `off`.
pub const MEMORY_LIMIT_ENV: &str = "CELLMAP_MEMORY_LIMIT_BYTES";

/// What a loader holds in memory: its ring, its chunk cache and the cache's compressed tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryNeed {
    /// Samples per batch (`loader.batch_size`).
    pub batch_size: usize,
    /// Bytes of one batch.
    pub batch_bytes: u64,
    /// Ring slots (`loader.prefetch`).
    pub prefetch: usize,
    /// Bytes the chunk cache may grow to (`loader.cache_bytes`; 0 without a cache).
    pub cache_bytes: u64,
    /// Bytes the compressed tier may grow to ([`compressed_cache_bytes`]; 0 without one).
    pub compressed_cache_bytes: u64,
}

/// Bytes the compressed tier of a loader of `spec` may hold: `loader.compressed_cache_bytes`
/// when set; unset, [`crate::store::DEFAULT_COMPRESSED_CACHE_BYTES`] when a dataset of the spec
/// is on a remote store (`s3://`, `http(s)://`), else 0.
pub fn compressed_cache_bytes(spec: &Spec) -> u64 {
    crate::store::CompressedOptions::from_setting(spec.loader().compressed_cache_bytes).held_bytes(spec_is_remote(spec))
}

/// Whether a dataset of `spec` (raw or targets) is on a remote store.
pub fn spec_is_remote(spec: &Spec) -> bool {
    let url = |s: &str| {
        s.split_once("://")
            .is_some_and(|(scheme, _)| !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric()))
    };
    spec.datasets()
        .iter()
        .any(|d| url(&d.raw) || d.targets.as_ref().is_some_and(|t| url(&t.template)))
}

impl MemoryNeed {
    /// The memory a loader of `spec` needs, with the spec's batch size, prefetch and cache
    /// budget (no data is read: the batch bytes follow from the arrays).
    pub fn of_spec(spec: &Spec) -> Self {
        MemoryNeed {
            batch_size: spec.loader().batch_size,
            batch_bytes: batch_layout(spec).batch_bytes(),
            prefetch: spec.loader().prefetch,
            cache_bytes: spec.loader().cache_bytes,
            compressed_cache_bytes: compressed_cache_bytes(spec),
        }
    }

    /// The memory a loader over `plan` needs, with the cache budget of `spec`.
    pub fn of_plan(plan: &Plan, spec: &Spec) -> Self {
        MemoryNeed {
            batch_size: plan.batch.batch_size,
            batch_bytes: plan.batch_bytes,
            prefetch: plan.prefetch,
            cache_bytes: spec.loader().cache_bytes,
            compressed_cache_bytes: compressed_cache_bytes(spec),
        }
    }

    /// Bytes of the ring: `prefetch × batch_bytes` (at least one slot, as the pipeline allocates).
    pub fn ring_bytes(&self) -> u64 {
        self.batch_bytes.saturating_mul(self.prefetch.max(1) as u64)
    }

    /// Ring, cache and compressed tier together.
    pub fn total_bytes(&self) -> u64 {
        self.ring_bytes()
            .saturating_add(self.cache_bytes)
            .saturating_add(self.compressed_cache_bytes)
    }

    /// `Ok` when the ring and the cache fit in `available`.
    ///
    /// # Errors
    /// [`MemoryError::TooLarge`] with both sides when they do not.
    pub fn fits_in(&self, available: &MemoryAvailable) -> Result<(), MemoryError> {
        if self.total_bytes() > available.bytes {
            return Err(MemoryError::TooLarge {
                need: *self,
                available: available.clone(),
            });
        }
        Ok(())
    }
}

/// Memory the machine offers, and where the number comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryAvailable {
    /// Bytes.
    pub bytes: u64,
    /// Where it was read (`MemAvailable in /proc/meminfo`, a cgroup's files, the environment).
    pub source: String,
}

/// Why a loader's memory was refused or could not be allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// The ring and the chunk cache need more memory than the machine offers.
    #[error("{}", too_large(need, available))]
    TooLarge {
        /// What the loader needs.
        need: MemoryNeed,
        /// What the machine offers.
        available: MemoryAvailable,
    },
    /// [`MEMORY_LIMIT_ENV`] is neither a number of bytes nor `off`.
    #[error("`CELLMAP_MEMORY_LIMIT_BYTES` is `{0}`; expected a number of bytes or `off`")]
    BadLimit(String),
    /// Allocating ring memory failed (the check passed, but the system refused the memory).
    #[error(
        "cannot allocate {bytes} bytes ({:.1} MiB) of batch memory: {reason}; lower `loader.batch_size` or `loader.prefetch`",
        mib(*bytes)
    )]
    Allocation {
        /// Bytes asked for.
        bytes: u64,
        /// The system's answer.
        reason: String,
    },
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn too_large(need: &MemoryNeed, available: &MemoryAvailable) -> String {
    let (tier, keys) = if need.compressed_cache_bytes > 0 {
        (
            format!(
                " and its compressed tier up to {} bytes ({:.1} MiB, `loader.compressed_cache_bytes`)",
                need.compressed_cache_bytes,
                mib(need.compressed_cache_bytes)
            ),
            "`loader.batch_size`, `loader.prefetch`, `loader.cache_bytes` or `loader.compressed_cache_bytes`",
        )
    } else {
        (
            String::new(),
            "`loader.batch_size`, `loader.prefetch` or `loader.cache_bytes`",
        )
    };
    format!(
        "not enough memory for the loader: the batch ring needs {} bytes ({:.1} MiB = `loader.prefetch` {} × {} bytes per batch of `loader.batch_size` {}) and the chunk cache up to {} bytes ({:.1} MiB, `loader.cache_bytes`){tier}, {} bytes in all, but {} bytes ({:.1} MiB) are available ({}); lower {keys}",
        need.ring_bytes(),
        mib(need.ring_bytes()),
        need.prefetch.max(1),
        need.batch_bytes,
        need.batch_size,
        need.cache_bytes,
        mib(need.cache_bytes),
        need.total_bytes(),
        available.bytes,
        mib(available.bytes),
        available.source
    )
}

/// Refuse `need` when it does not fit in the memory the machine offers (see the module docs);
/// `Ok` when it fits, when the check is `off`, or when nothing can be measured.
///
/// # Errors
/// [`MemoryError::TooLarge`] with the numbers, [`MemoryError::BadLimit`] when
/// `CELLMAP_MEMORY_LIMIT_BYTES` is malformed.
pub fn check_fits(need: &MemoryNeed) -> Result<(), MemoryError> {
    match available_memory()? {
        Some(available) => need.fits_in(&available),
        None => Ok(()),
    }
}

/// The memory the machine offers this process: [`MEMORY_LIMIT_ENV`] when set, else the
/// smallest of `MemAvailable` and the cgroup's headroom. `None` when the check is `off` or
/// nothing can be read.
///
/// # Errors
/// [`MemoryError::BadLimit`] when the variable is set but malformed.
pub fn available_memory() -> Result<Option<MemoryAvailable>, MemoryError> {
    if let Some(value) = std::env::var_os(MEMORY_LIMIT_ENV) {
        let value = value.to_string_lossy().trim().to_owned();
        if value.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bytes = value
            .replace('_', "")
            .parse::<u64>()
            .map_err(|_| MemoryError::BadLimit(value.clone()))?;
        return Ok(Some(MemoryAvailable {
            bytes,
            source: format!("`{MEMORY_LIMIT_ENV}`"),
        }));
    }
    Ok(detect(Path::new("/proc"), Path::new("/sys/fs/cgroup")))
}

/// The smallest of `MemAvailable` (under `proc`) and the cgroup headroom (under `cgroup_root`).
fn detect(proc: &Path, cgroup_root: &Path) -> Option<MemoryAvailable> {
    let meminfo = std::fs::read_to_string(proc.join("meminfo")).ok();
    let mut best = meminfo
        .as_deref()
        .and_then(|m| field(m, "MemAvailable:"))
        .map(|kib| MemoryAvailable {
            bytes: kib.saturating_mul(1024),
            source: "`MemAvailable` in /proc/meminfo".to_owned(),
        });
    let cgroups = std::fs::read_to_string(proc.join("self/cgroup")).unwrap_or_default();
    for headroom in [cgroup_v2(&cgroups, cgroup_root), cgroup_v1(&cgroups, cgroup_root)]
        .into_iter()
        .flatten()
    {
        if best.as_ref().is_none_or(|b| headroom.bytes < b.bytes) {
            best = Some(headroom);
        }
    }
    best
}

/// The first number after `key` on the line that starts with it (`/proc/meminfo`, `memory.stat`).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A file holding one number (`max` and other words give `None`).
fn number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The directory of the process's cgroup under `mount`, or `mount` itself (a container sees its
/// own cgroup at the mount's root).
fn cgroup_dir(mount: &Path, relative: &str) -> PathBuf {
    let dir = mount.join(relative.trim_start_matches('/'));
    if dir.is_dir() { dir } else { mount.to_path_buf() }
}

/// Headroom under cgroup v2: the tightest `memory.max − (memory.current − inactive_file)` from
/// the process's cgroup up to the mount.
fn cgroup_v2(cgroups: &str, root: &Path) -> Option<MemoryAvailable> {
    let relative = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mut dir = cgroup_dir(root, relative);
    let mut best: Option<MemoryAvailable> = None;
    loop {
        if let Some(max) = number(&dir.join("memory.max")) {
            let current = number(&dir.join("memory.current")).unwrap_or(0);
            let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
            let inactive = field(&stat, "inactive_file ").unwrap_or(0);
            let used = current.saturating_sub(inactive);
            let bytes = max.saturating_sub(used);
            if best.as_ref().is_none_or(|b| bytes < b.bytes) {
                best = Some(MemoryAvailable {
                    bytes,
                    source: format!(
                        "cgroup v2 `{}`: `memory.max` {max} − `memory.current` {current} + {inactive} inactive file cache",
                        dir.display()
                    ),
                });
            }
        }
        if dir == root || !dir.pop() || !dir.starts_with(root) {
            break;
        }
    }
    best
}

/// Headroom under cgroup v1: `memory.limit_in_bytes − (memory.usage_in_bytes − total_inactive_file)`.
fn cgroup_v1(cgroups: &str, root: &Path) -> Option<MemoryAvailable> {
    let relative = cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == "memory").then_some(path)
    })?;
    let dir = cgroup_dir(&root.join("memory"), relative);
    let limit = number(&dir.join("memory.limit_in_bytes"))?;
    let usage = number(&dir.join("memory.usage_in_bytes")).unwrap_or(0);
    let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
    let inactive = field(&stat, "total_inactive_file ").unwrap_or(0);
    let bytes = limit.saturating_sub(usage.saturating_sub(inactive));
    Some(MemoryAvailable {
        bytes,
        source: format!(
            "cgroup v1 `{}`: `memory.limit_in_bytes` {limit} − `memory.usage_in_bytes` {usage} + {inactive} inactive file cache",
            dir.display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const MEMINFO: &str = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n";

    #[test]
    fn meminfo_alone() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("proc/meminfo"), MEMINFO);
        let a = detect(&tmp.path().join("proc"), &tmp.path().join("cg")).unwrap();
        assert_eq!(a.bytes, 8_000_000 * 1024);
        assert!(a.source.contains("MemAvailable"));
    }

    #[test]
    fn cgroup_v2_limit_of_the_process_or_an_ancestor_wins_when_tighter() {
        let tmp = tempfile::tempdir().unwrap();
        let (proc, cg) = (tmp.path().join("proc"), tmp.path().join("cg"));
        write(&proc.join("meminfo"), MEMINFO);
        write(&proc.join("self/cgroup"), "0::/job/step\n");
        write(&cg.join("job/step/memory.max"), "max\n");
        write(&cg.join("job/step/memory.current"), "5\n");
        write(&cg.join("job/memory.max"), "4000000000\n");
        write(&cg.join("job/memory.current"), "1500000000\n");
        write(
            &cg.join("job/memory.stat"),
            "anon 1000000000\ninactive_file 500000000\nactive_file 1\n",
        );
        let a = detect(&proc, &cg).unwrap();
        assert_eq!(a.bytes, 4_000_000_000 - 1_000_000_000);
        assert!(
            a.source.contains("cgroup v2") && a.source.contains("memory.max"),
            "{}",
            a.source
        );
        // A limit above MemAvailable leaves MemAvailable.
        write(&cg.join("job/memory.max"), "400000000000\n");
        assert_eq!(detect(&proc, &cg).unwrap().bytes, 8_000_000 * 1024);
    }

    #[test]
    fn cgroup_v2_inside_a_namespace_reads_the_mount_root() {
        let tmp = tempfile::tempdir().unwrap();
        let (proc, cg) = (tmp.path().join("proc"), tmp.path().join("cg"));
        write(&proc.join("meminfo"), MEMINFO);
        write(&proc.join("self/cgroup"), "0::/\n");
        write(&cg.join("memory.max"), "2000000000\n");
        write(&cg.join("memory.current"), "500000000\n");
        assert_eq!(detect(&proc, &cg).unwrap().bytes, 1_500_000_000);
    }

    #[test]
    fn cgroup_v1_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let (proc, cg) = (tmp.path().join("proc"), tmp.path().join("cg"));
        write(&proc.join("meminfo"), MEMINFO);
        write(
            &proc.join("self/cgroup"),
            "5:devices:/\n4:memory:/gone/elsewhere\n0::/\n",
        );
        write(&cg.join("memory/memory.limit_in_bytes"), "3000000000\n");
        write(&cg.join("memory/memory.usage_in_bytes"), "2000000000\n");
        write(
            &cg.join("memory/memory.stat"),
            "cache 1\ntotal_inactive_file 1000000000\n",
        );
        let a = detect(&proc, &cg).unwrap();
        assert_eq!(a.bytes, 2_000_000_000);
        assert!(a.source.contains("cgroup v1"), "{}", a.source);
    }

    #[test]
    fn refusal_names_every_number_and_key() {
        let need = MemoryNeed {
            batch_size: 1000,
            batch_bytes: 41_943_040_000,
            prefetch: 4,
            cache_bytes: 1 << 30,
            compressed_cache_bytes: 0,
        };
        let available = MemoryAvailable {
            bytes: 8 << 30,
            source: "a test".into(),
        };
        let err = need.fits_in(&available).unwrap_err().to_string();
        assert_eq!(
            err,
            "not enough memory for the loader: the batch ring needs 167772160000 bytes (160000.0 MiB = `loader.prefetch` 4 × 41943040000 bytes per batch of `loader.batch_size` 1000) and the chunk cache up to 1073741824 bytes (1024.0 MiB, `loader.cache_bytes`), 168845901824 bytes in all, but 8589934592 bytes (8192.0 MiB) are available (a test); lower `loader.batch_size`, `loader.prefetch` or `loader.cache_bytes`"
        );
        let exact = MemoryAvailable {
            bytes: need.total_bytes(),
            source: "exact".into(),
        };
        assert_eq!(need.fits_in(&exact), Ok(()));
        let tiered = MemoryNeed {
            compressed_cache_bytes: 1 << 29,
            ..need
        };
        let err = tiered.fits_in(&exact).unwrap_err().to_string();
        assert!(
            err.contains("and its compressed tier up to 536870912 bytes (512.0 MiB, `loader.compressed_cache_bytes`), 169382772736 bytes in all"),
            "{err}"
        );
        assert!(err.ends_with("or `loader.compressed_cache_bytes`"), "{err}");
    }
}
