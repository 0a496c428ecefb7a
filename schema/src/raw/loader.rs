//! The YAML form of `loader`: batch size, threads, memory budgets, fetching, error policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn default_batch_size() -> u32 {
    1
}

fn default_workers() -> u32 {
    2
}

fn default_prefetch() -> u32 {
    4
}

fn default_device() -> String {
    "cpu".to_owned()
}

fn default_cache_bytes() -> u64 {
    1 << 30
}

fn default_fetch_concurrency() -> u32 {
    16
}

fn default_fetch_ahead() -> u32 {
    4
}

/// Loader settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLoader {
    /// Samples per batch, in `[1, 65536]`. Default: `1`.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 65_536))]
    pub batch_size: u32,
    /// Worker threads, in `[1, 1024]`. Default: `2`.
    #[serde(default = "default_workers")]
    #[schemars(range(min = 1, max = 1024))]
    pub workers: u32,
    /// Batches in flight (ring slots), in `[1, 1024]`. Default: `4`.
    #[serde(default = "default_prefetch")]
    #[schemars(range(min = 1, max = 1024))]
    pub prefetch: u32,
    /// Device of the batch tensors: `cpu`, `cuda` (device 0) or `cuda:N`. Default: `cpu`.
    #[serde(default = "default_device")]
    #[schemars(regex(pattern = r"^(cpu|cuda(:[0-9]{1,3})?)$"))]
    pub device: String,
    /// Pin host buffers for faster transfers. Default: `true` when `device` is CUDA, else `false`.
    #[serde(default)]
    pub pin_memory: Option<bool>,
    /// Byte budget of the shared decoded-chunk cache. Default: `1073741824` (1 GiB). Once full,
    /// a missed chunk is kept only on its second recent miss: with data far larger than the
    /// cache, chunks read once evict nothing and are decoded only as far as their read needs.
    #[serde(default = "default_cache_bytes")]
    #[schemars(range(max = u64::MAX))]
    pub cache_bytes: u64,
    /// Byte budget of the compressed tier: encoded chunk bytes kept in memory as the store returned
    /// them, read when the decoded-chunk cache misses before the store is asked (a decode instead
    /// of a request; blosc-zstd EM chunks are 3–10× smaller than decoded, so this holds that much
    /// more of the working set). `0` turns it off. Default (unset): `536870912` (512 MiB) for data
    /// on `s3://` and `http(s)://` stores only; local files are read from the OS page cache, which
    /// already keeps their encoded bytes. A number applies to local files too.
    #[serde(default)]
    #[schemars(range(max = u64::MAX))]
    pub compressed_cache_bytes: Option<u64>,
    /// Chunks fetched and decoded at once when a read needs several that are not in the chunk
    /// cache (one bounded pool of this many threads, shared by the loader's workers), in
    /// `[1, 1024]`; `1` fetches one chunk after the other. Hides the latency of remote stores (S3,
    /// HTTP, shared disks). Local files decoded without zarrs (zarr v2/v3 raw, blosc, zstd or
    /// gzip) go to this pool only on a machine with more than twice as many cores as `workers`;
    /// otherwise each worker decodes its own, which is faster on busy cores. Fetching ahead
    /// (`fetch_ahead`) has a pool of its own: this many threads for local files, 16 times as
    /// many for remote data, whose requests mostly wait (256 in flight by default: at 50 ms a
    /// request, about 5,000 requests per second, some 400 samples/s of a dozen chunk requests
    /// each). Default: `16`.
    #[serde(default = "default_fetch_concurrency")]
    #[schemars(range(min = 1, max = 1024))]
    pub fetch_concurrency: u32,
    /// Training batches ahead of the one being assembled whose chunks are fetched into the chunk
    /// cache in the background (their centres and spatial draws are known in advance), in
    /// `[0, 64]`; `0` turns fetching ahead off. It never evicts chunks that batches in flight
    /// have used, and does nothing without a cache (`cache_bytes: 0`) or with elastic
    /// deformation. Reading remote data, the batches ahead must cover the store's latency: at
    /// 50 ms a request, `2` reached 40 % of the rate of local files in our measurements and `4`
    /// 78 %. Default: `4`.
    #[serde(default = "default_fetch_ahead")]
    #[schemars(range(max = 64))]
    pub fetch_ahead: u32,
    /// What to do with a sample that cannot be read. Default: `fail`.
    #[serde(default)]
    pub on_error: RawOnError,
    /// Local folder of the training cache that `cellmap-compile cache` writes for this spec
    /// (relative to the spec's folder): the arrays the plan reads, rechunked for sample windows
    /// with a fast codec, and every binary class of a crop packed as the bits of one array. The
    /// loader reads through it, and reads from the data itself whatever it does not hold (a
    /// region outside the cached margin, an array whose metadata changed since the cache was
    /// written). Default: none (read the data directly).
    #[serde(default)]
    #[schemars(length(min = 1), example = &"cache/train")]
    pub training_cache: Option<String>,
}

impl Default for RawLoader {
    fn default() -> Self {
        RawLoader {
            batch_size: default_batch_size(),
            workers: default_workers(),
            prefetch: default_prefetch(),
            device: default_device(),
            pin_memory: None,
            cache_bytes: default_cache_bytes(),
            compressed_cache_bytes: None,
            fetch_concurrency: default_fetch_concurrency(),
            fetch_ahead: default_fetch_ahead(),
            on_error: RawOnError::default(),
            training_cache: None,
        }
    }
}

/// Policy for unreadable samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawOnError {
    /// Stop and return the error.
    #[default]
    Fail,
    /// Replace the sample by another, count and log the event.
    SkipAndLog,
}
