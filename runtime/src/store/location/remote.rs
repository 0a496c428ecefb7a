//! Settings shared by the remote backends ([`RemoteOptions`]: timeouts, retries, S3 credentials,
//! region and endpoint, read from the environment like the AWS SDKs do) and, with the `remote`
//! feature, the machinery that turns an `object_store` client into a synchronous zarrs store:
//! one shared tokio runtime and a cache of clients, one per bucket or HTTP origin, so that every
//! group of a bucket shares one connection pool.
//!
//! Environment variables (read when a remote location is opened):
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `CELLMAP_REMOTE_TIMEOUT_S` | 30 | one request, connect to last byte |
//! | `CELLMAP_REMOTE_CONNECT_TIMEOUT_S` | 5 | establishing a connection |
//! | `CELLMAP_REMOTE_RETRIES` | 3 | retries of a failed request (exponential backoff) |
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | — | S3 credentials |
//! | `AWS_PROFILE` | `default` | profile in `~/.aws/credentials` and `~/.aws/config` |
//! | `AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE` | `~/.aws/…` | where the profiles are |
//! | `AWS_REGION`, `AWS_DEFAULT_REGION` | profile's, else `us-east-1` | S3 region |
//! | `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` | profile's `endpoint_url`, else AWS | an S3-compatible store (http allowed) |
//! | `AWS_SKIP_SIGNATURE` | `false` | `true`: unsigned requests even with credentials |
//!
//! Without credentials S3 requests are unsigned, as a public bucket (CellMap's
//! `janelia-cosem-datasets`) needs. Profiles give static keys only (no `credential_process`,
//! SSO or role assumption). Reads block the calling thread on the shared runtime, so they must
//! not be made from inside another tokio runtime's async context (zarrs' adapter panics there).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::store::error::RemoteConfigError;

/// S3 credentials (an access key, optionally with a session token).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets (errors and logs show options).
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// How remote (`s3://`, `http(s)://`) locations are read. [`RemoteOptions::from_env`] is what
/// every location string opened without explicit options uses.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RemoteOptions {
    /// Limit of one request, from connecting to the last byte.
    pub timeout: Duration,
    /// Limit of establishing a connection.
    pub connect_timeout: Duration,
    /// Retries of a failed request (transient server errors, timeouts, refused connections),
    /// with exponential backoff; a request gives up after `(retries + 1) × timeout` at most.
    pub retries: usize,
    /// S3 credentials; `None` sends unsigned requests (public buckets).
    pub credentials: Option<S3Credentials>,
    /// S3 region.
    pub region: String,
    /// The endpoint of an S3-compatible store (e.g. `http://127.0.0.1:9000`); `None` for AWS.
    pub s3_endpoint: Option<String>,
}

impl Default for RemoteOptions {
    /// Unsigned requests to AWS in `us-east-1`, 30 s per request, 5 s to connect, 3 retries.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retries: 3,
            credentials: None,
            region: "us-east-1".into(),
            s3_endpoint: None,
        }
    }
}

impl RemoteOptions {
    /// The settings of this process's environment (see the table in the module docs of
    /// `store::location::remote`, or the README's "Data in S3 or over HTTP").
    ///
    /// # Errors
    /// A [`RemoteConfigError`] for a malformed number, a named profile that does not exist or
    /// an access key without its secret.
    pub fn from_env() -> Result<Self, RemoteConfigError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Self::from_lookup(
            |name| std::env::var(name).ok().filter(|v| !v.is_empty()),
            home.as_deref(),
        )
    }

    /// [`RemoteOptions::from_env`] over any variable lookup and home folder (for tests and
    /// embedders that keep settings elsewhere).
    ///
    /// # Errors
    /// As [`RemoteOptions::from_env`].
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>, home: Option<&Path>) -> Result<Self, RemoteConfigError> {
        let mut o = Self::default();
        if let Some(s) = seconds(&var, "CELLMAP_REMOTE_TIMEOUT_S")? {
            o.timeout = s;
        }
        if let Some(s) = seconds(&var, "CELLMAP_REMOTE_CONNECT_TIMEOUT_S")? {
            o.connect_timeout = s;
        }
        if let Some(v) = var("CELLMAP_REMOTE_RETRIES") {
            o.retries = v.trim().parse().map_err(|_| RemoteConfigError {
                variable: "CELLMAP_REMOTE_RETRIES".into(),
                message: format!("`{v}` is not a whole number of retries (e.g. 3)"),
            })?;
        }

        let named_profile = var("AWS_PROFILE");
        let profile_name = named_profile.clone().unwrap_or_else(|| "default".into());
        let file = |variable: &str, default: &str| {
            var(variable)
                .map(PathBuf::from)
                .or_else(|| home.map(|h| h.join(".aws").join(default)))
        };
        let credentials_file = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
        let config_file = file("AWS_CONFIG_FILE", "config");
        let read = |p: &Option<PathBuf>| p.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
        let creds_ini = read(&credentials_file).map(|t| parse_ini(&t)).unwrap_or_default();
        let config_ini = read(&config_file).map(|t| parse_ini(&t)).unwrap_or_default();
        let from_credentials = creds_ini.get(&profile_name);
        let config_section = if profile_name == "default" {
            "default".to_string()
        } else {
            format!("profile {profile_name}")
        };
        let from_config = config_ini.get(&config_section);
        if named_profile.is_some() && from_credentials.is_none() && from_config.is_none() {
            return Err(RemoteConfigError {
                variable: "AWS_PROFILE".into(),
                message: format!(
                    "profile `{profile_name}` is not in {} nor in {} (as `[{config_section}]`); unset `AWS_PROFILE` or add the profile",
                    shown(&credentials_file),
                    shown(&config_file)
                ),
            });
        }
        let profile = |key: &str| {
            from_credentials
                .and_then(|s| s.get(key))
                .or_else(|| from_config.and_then(|s| s.get(key)))
                .cloned()
        };

        o.credentials = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Some(S3Credentials {
                access_key_id,
                secret_access_key,
                session_token: var("AWS_SESSION_TOKEN"),
            }),
            (Some(_), None) | (None, Some(_)) => {
                return Err(RemoteConfigError {
                    variable: "AWS_ACCESS_KEY_ID".into(),
                    message: "set both `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, or neither (unsigned requests)"
                        .into(),
                });
            }
            (None, None) => match (profile("aws_access_key_id"), profile("aws_secret_access_key")) {
                (Some(access_key_id), Some(secret_access_key)) => Some(S3Credentials {
                    access_key_id,
                    secret_access_key,
                    session_token: profile("aws_session_token"),
                }),
                _ => None,
            },
        };
        if var("AWS_SKIP_SIGNATURE").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1") {
            o.credentials = None;
        }
        if let Some(region) = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .or_else(|| profile("region"))
        {
            o.region = region;
        }
        o.s3_endpoint = var("AWS_ENDPOINT_URL_S3")
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .or_else(|| profile("endpoint_url"));
        Ok(o)
    }
}

fn shown(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map_or_else(|| "`~/.aws/…` (no HOME)".into(), |p| format!("`{}`", p.display()))
}

fn seconds(var: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<Duration>, RemoteConfigError> {
    let Some(v) = var(name) else { return Ok(None) };
    match v.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        _ => Err(RemoteConfigError {
            variable: name.into(),
            message: format!("`{v}` is not a positive number of seconds (e.g. 30)"),
        }),
    }
}

/// The sections of an AWS-style INI file: `[name]` headers, `key = value` lines, `#`/`;`
/// comments; keys lowercased. Enough for credentials and config files (no nested sections).
pub(crate) fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut sections: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            sections.entry(name.clone()).or_default();
            current = Some(name);
        } else if let (Some(section), Some((k, v))) = (&current, line.split_once('=')) {
            sections
                .entry(section.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    sections
}

/// The `object_store` → zarrs bridge (`remote` feature).
#[cfg(feature = "remote")]
mod client {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};

    use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
    use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator};
    use zarrs::storage::{
        Bytes, MaybeBytes, MaybeBytesIterator, ReadableStorage, ReadableStorageTraits, StorageError, StoreKey,
    };
    use zarrs_object_store::AsyncObjectStore;
    use zarrs_storage::storage_adapter::async_to_sync::{AsyncToSyncBlockOn, AsyncToSyncStorageAdapter};

    use super::RemoteOptions;
    use crate::store::error::{OpenError, RemoteErrorKind};

    /// Worker threads of the shared runtime: they only drive sockets and timers (decoding runs on
    /// the caller's threads), so two keep up with many concurrent requests.
    const WORKER_THREADS: usize = 2;

    /// The one tokio runtime of the process for remote I/O, built on first use.
    fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
        static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
        RUNTIME
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(WORKER_THREADS)
                    .thread_name("cellmap-remote")
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the tokio runtime for remote I/O: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Runs a store's futures to completion on the caller's thread, with the shared runtime's
    /// reactor and timers.
    struct BlockOn(tokio::runtime::Handle);

    impl AsyncToSyncBlockOn for BlockOn {
        fn block_on<F: core::future::Future>(&self, future: F) -> F::Output {
            self.0.block_on(future)
        }
    }

    /// The options a location is opened with: the caller's, else the environment's.
    pub(in crate::store::location) fn options_or_env<'a>(
        location: &str,
        remote: Option<&'a RemoteOptions>,
    ) -> Result<std::borrow::Cow<'a, RemoteOptions>, OpenError> {
        match remote {
            Some(o) => Ok(std::borrow::Cow::Borrowed(o)),
            None => RemoteOptions::from_env()
                .map(std::borrow::Cow::Owned)
                .map_err(|source| OpenError::RemoteConfig {
                    location: location.to_string(),
                    source,
                }),
        }
    }

    /// `store` as a synchronous zarrs store ([`RemoteStorage`]).
    pub(in crate::store::location) fn readable(
        location: &str,
        store: Arc<dyn ObjectStore>,
    ) -> Result<ReadableStorage, OpenError> {
        let runtime = runtime().map_err(|message| OpenError::Storage {
            location: location.to_string(),
            message,
        })?;
        Ok(Arc::new(RemoteStorage {
            adapter: AsyncToSyncStorageAdapter::new(
                Arc::new(AsyncObjectStore::new(store.clone())),
                BlockOn(runtime.handle().clone()),
            ),
            store,
            runtime: runtime.handle().clone(),
        }))
    }

    /// A synchronous zarrs store over `object_store`. zarrs' async-to-sync adapter reads a whole
    /// value as a ranged read from 0 to its size, so every chunk or metadata document cost a
    /// `HEAD` and a `GET`; here every read is one `GET` with its range in the request (none, from
    /// an offset, both ends, or the last bytes), and byte ranges with both ends known (inner
    /// chunks of a shard) go out together. Only `size_key` goes through the adapter.
    struct RemoteStorage {
        adapter: AsyncToSyncStorageAdapter<AsyncObjectStore<Arc<dyn ObjectStore>>, BlockOn>,
        store: Arc<dyn ObjectStore>,
        runtime: tokio::runtime::Handle,
    }

    /// A missing object is `None`; other failures keep `object_store`'s message (as the adapter's).
    fn found<T>(result: Result<T, object_store::Error>) -> Result<Option<T>, StorageError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StorageError::Other(e.to_string())),
        }
    }

    impl RemoteStorage {
        /// One `GET` of `path`, the whole value or `range` of it; `None` when it does not exist.
        fn read(
            &self,
            path: &object_store::path::Path,
            range: Option<object_store::GetRange>,
        ) -> Result<MaybeBytes, StorageError> {
            let options = object_store::GetOptions {
                range,
                ..Default::default()
            };
            found(
                self.runtime
                    .block_on(async { self.store.get_opts(path, options).await?.bytes().await }),
            )
        }
    }

    impl ReadableStorageTraits for RemoteStorage {
        fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
            self.read(&object_store::path::Path::from(key.as_str()), None)
        }

        fn get_partial_many<'a>(
            &'a self,
            key: &StoreKey,
            byte_ranges: ByteRangeIterator<'a>,
        ) -> Result<MaybeBytesIterator<'a>, StorageError> {
            let ranges: Vec<ByteRange> = byte_ranges.collect();
            let path = object_store::path::Path::from(key.as_str());
            let bounded: Option<Vec<std::ops::Range<u64>>> = ranges
                .iter()
                .map(|r| match *r {
                    ByteRange::FromStart(start, Some(len)) => Some(start..start.saturating_add(len)),
                    _ => None,
                })
                .collect();
            if let Some(bounded) = bounded {
                let Some(parts) = found(self.runtime.block_on(self.store.get_ranges(&path, &bounded)))? else {
                    return Ok(None);
                };
                let checked: Vec<Result<Bytes, StorageError>> = bounded
                    .iter()
                    .zip(parts)
                    .map(|(range, bytes)| {
                        let want = range.end - range.start;
                        if bytes.len() as u64 == want {
                            Ok(bytes)
                        } else {
                            Err(StorageError::Other(format!(
                                "a ranged read returned {} bytes, expected {want}",
                                bytes.len()
                            )))
                        }
                    })
                    .collect();
                return Ok(Some(Box::new(checked.into_iter())));
            }
            // A whole value, the rest from an offset or the last bytes (a shard's index): one
            // GET each, the range in the request; the object's size is never asked for.
            let mut parts = Vec::with_capacity(ranges.len());
            for r in &ranges {
                let range = match *r {
                    ByteRange::FromStart(0, None) => None,
                    ByteRange::FromStart(start, None) => Some(object_store::GetRange::Offset(start)),
                    ByteRange::FromStart(start, Some(len)) => {
                        Some(object_store::GetRange::Bounded(start..start.saturating_add(len)))
                    }
                    ByteRange::Suffix(len) => Some(object_store::GetRange::Suffix(len)),
                };
                match self.read(&path, range)? {
                    Some(bytes) => parts.push(Ok(bytes)),
                    None => return Ok(None),
                }
            }
            Ok(Some(Box::new(parts.into_iter())))
        }

        fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
            self.adapter.size_key(key)
        }

        fn supports_get_partial(&self) -> bool {
            true
        }
    }

    /// Run one future on the shared runtime (opening probes).
    pub(in crate::store::location) fn block_on<F: core::future::Future>(
        location: &str,
        f: F,
    ) -> Result<F::Output, OpenError> {
        let runtime = runtime().map_err(|message| OpenError::Storage {
            location: location.to_string(),
            message,
        })?;
        Ok(runtime.block_on(f))
    }

    /// Timeouts of `options` (rustls, native roots).
    pub(in crate::store::location) fn client_options(options: &RemoteOptions) -> ClientOptions {
        ClientOptions::new()
            .with_timeout(options.timeout)
            .with_connect_timeout(options.connect_timeout)
    }

    /// Exponential backoff from 200 ms (doubling, at most 5 s) for `options.retries` retries,
    /// within `(retries + 1) × timeout` from the first attempt.
    pub(in crate::store::location) fn retry_config(options: &RemoteOptions) -> RetryConfig {
        let attempts = u32::try_from(options.retries.saturating_add(1)).unwrap_or(u32::MAX);
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: std::time::Duration::from_millis(200),
                max_backoff: std::time::Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: options.retries,
            retry_timeout: options.timeout.saturating_mul(attempts),
        }
    }

    /// The client for `key` (a bucket with its settings, an HTTP origin with its settings),
    /// built by `build` on first use and shared afterwards.
    pub(in crate::store::location) fn cached_store(
        key: String,
        build: impl FnOnce() -> Result<Arc<dyn ObjectStore>, object_store::Error>,
    ) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
        static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
        let stores = STORES.get_or_init(Mutex::default);
        if let Some(s) = stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return Ok(s.clone());
        }
        let store = build()?;
        Ok(stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key)
            .or_insert(store)
            .clone())
    }

    /// The kind of a typed `object_store` error; `None` where only the message tells.
    fn kind_of(e: &object_store::Error) -> Option<RemoteErrorKind> {
        match e {
            object_store::Error::NotFound { .. } => Some(RemoteErrorKind::NotFound),
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                Some(RemoteErrorKind::AccessDenied)
            }
            _ => None,
        }
    }

    /// An [`OpenError::Remote`] for a failed request to `url` while opening `location`.
    pub(in crate::store::location) fn open_error(location: &str, url: &str, e: &object_store::Error) -> OpenError {
        let message = e.to_string();
        OpenError::Remote {
            location: location.to_string(),
            url: url.to_string(),
            kind: kind_of(e).unwrap_or_else(|| RemoteErrorKind::classify(&message)),
            message,
        }
    }
}

#[cfg(feature = "remote")]
pub(super) use client::{block_on, cached_store, client_options, open_error, options_or_env, readable, retry_config};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_and_keys() {
        let ini = parse_ini(
            "# c\n[default]\naws_access_key_id = AK\nAWS_Secret_Access_Key=SK \n\n[profile  work]\nregion = eu-west-2\n; x\n",
        );
        assert_eq!(ini["default"]["aws_access_key_id"], "AK");
        assert_eq!(ini["default"]["aws_secret_access_key"], "SK");
        assert_eq!(ini["profile work"]["region"], "eu-west-2");
    }

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn defaults_are_unsigned_us_east_1() {
        let o = RemoteOptions::from_lookup(lookup(&[]), None).unwrap();
        assert_eq!(o, RemoteOptions::default());
        assert_eq!(o.credentials, None);
        assert_eq!(o.region, "us-east-1");
    }

    #[test]
    fn environment_then_profile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::write(
            dir.path().join(".aws/credentials"),
            "[default]\naws_access_key_id=D\naws_secret_access_key=DS\n[work]\naws_access_key_id=W\naws_secret_access_key=WS\naws_session_token=WT\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(".aws/config"),
            "[default]\nregion=eu-central-1\n[profile work]\nregion = us-west-2\nendpoint_url = http://127.0.0.1:9000\n",
        )
        .unwrap();
        let home = Some(dir.path());
        let o = RemoteOptions::from_lookup(lookup(&[]), home).unwrap();
        assert_eq!(o.credentials.as_ref().unwrap().access_key_id, "D");
        assert_eq!(o.region, "eu-central-1");
        assert_eq!(o.s3_endpoint, None);
        let o = RemoteOptions::from_lookup(lookup(&[("AWS_PROFILE", "work")]), home).unwrap();
        let c = o.credentials.unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token.as_deref()),
            ("W", Some("WT"))
        );
        assert_eq!(o.region, "us-west-2");
        assert_eq!(o.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        let o = RemoteOptions::from_lookup(
            lookup(&[
                ("AWS_PROFILE", "work"),
                ("AWS_ACCESS_KEY_ID", "E"),
                ("AWS_SECRET_ACCESS_KEY", "ES"),
                ("AWS_REGION", "ap-south-1"),
                ("AWS_ENDPOINT_URL", "http://localhost:1"),
                ("CELLMAP_REMOTE_TIMEOUT_S", "2.5"),
                ("CELLMAP_REMOTE_RETRIES", "0"),
            ]),
            home,
        )
        .unwrap();
        assert_eq!(o.credentials.as_ref().unwrap().access_key_id, "E");
        assert_eq!(o.credentials.as_ref().unwrap().session_token, None);
        assert_eq!(o.region, "ap-south-1");
        assert_eq!(o.s3_endpoint.as_deref(), Some("http://localhost:1"));
        assert_eq!((o.timeout, o.retries), (Duration::from_millis(2500), 0));
        assert!(!format!("{o:?}").contains("ES"), "secrets are not printed");
        let o = RemoteOptions::from_lookup(lookup(&[("AWS_SKIP_SIGNATURE", "true")]), home).unwrap();
        assert_eq!(o.credentials, None);
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let e = RemoteOptions::from_lookup(lookup(&[("CELLMAP_REMOTE_TIMEOUT_S", "soon")]), None).unwrap_err();
        assert_eq!(e.variable, "CELLMAP_REMOTE_TIMEOUT_S");
        let e = RemoteOptions::from_lookup(lookup(&[("AWS_PROFILE", "nope")]), None).unwrap_err();
        assert!(e.to_string().contains("profile `nope`"), "{e}");
        let e = RemoteOptions::from_lookup(lookup(&[("AWS_ACCESS_KEY_ID", "A")]), None).unwrap_err();
        assert!(e.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{e}");
    }
}
