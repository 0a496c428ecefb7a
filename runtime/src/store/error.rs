//! The storage errors: opening a location or a multiscale group ([`OpenError`]) and reading one
//! chunk of a level ([`ChunkError`]); every variant names the location, and chunk errors the
//! array path and the chunk's store key. Failed requests to remote stores carry the URL and a
//! [`RemoteErrorKind`] whose hint says what to do.

/// What went wrong with a request to a remote store (`s3://`, `http(s)://`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// The S3 bucket does not exist.
    MissingBucket,
    /// The object does not exist.
    NotFound,
    /// The server refused the request (403/401: missing, wrong or expired credentials).
    AccessDenied,
    /// The server did not answer in time (after the retries).
    Timeout,
    /// The server cannot be reached (refused connection, unknown host, connection lost).
    Unreachable,
    /// Any other failure (server errors after the retries, malformed answers).
    Other,
}

impl RemoteErrorKind {
    /// The kind of a failure, from its message (the storage layer hands errors on as text).
    #[must_use]
    pub fn classify(message: &str) -> Self {
        let m = message.to_ascii_lowercase();
        let any = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
        if any(&["nosuchbucket", "specified bucket does not exist"]) {
            Self::MissingBucket
        } else if any(&[
            "accessdenied",
            "access denied",
            "403 forbidden",
            "401 unauthorized",
            "invalidaccesskeyid",
            "signaturedoesnotmatch",
            "expiredtoken",
            "permission denied",
        ]) {
            Self::AccessDenied
        } else if any(&["timed out", "deadline has elapsed"]) {
            Self::Timeout
        } else if any(&[
            "connect",
            "connection refused",
            "connection reset",
            "connection closed",
            "dns error",
            "error sending request",
            "broken pipe",
            "incomplete message",
        ]) {
            Self::Unreachable
        } else if any(&["nosuchkey", "404 not found", "not found"]) {
            Self::NotFound
        } else {
            Self::Other
        }
    }

    /// What the user can do about it.
    #[must_use]
    pub fn hint(self) -> &'static str {
        match self {
            Self::MissingBucket => {
                "check the bucket name (CellMap's public data is in `s3://janelia-cosem-datasets/…`) and, for an S3-compatible store, `AWS_ENDPOINT_URL`"
            }
            Self::NotFound => "check the path after the bucket or host; keys are case-sensitive",
            Self::AccessDenied => {
                "the store refused the request: for a private bucket set `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (or `AWS_PROFILE`) and `AWS_REGION`; for a public bucket leave them unset (requests are then unsigned) or set `AWS_SKIP_SIGNATURE=true`"
            }
            Self::Timeout => {
                "the server did not answer in time: check the network, or raise `CELLMAP_REMOTE_TIMEOUT_S` (default 30) and `CELLMAP_REMOTE_RETRIES` (default 3)"
            }
            Self::Unreachable => {
                "check the host and port in the URL (and `AWS_ENDPOINT_URL`), the network, and that the server is running; retry when it is back"
            }
            Self::Other => "retry; if it persists, check the URL and the server's status",
        }
    }
}

impl std::fmt::Display for RemoteErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::MissingBucket => "the bucket does not exist",
            Self::NotFound => "not found",
            Self::AccessDenied => "access denied",
            Self::Timeout => "timed out",
            Self::Unreachable => "the server cannot be reached",
            Self::Other => "the request failed",
        })
    }
}

/// Why a multiscale group could not be opened. Every variant names the location.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The location does not exist.
    #[error("`{location}` does not exist (expected an OME-NGFF multiscale group, e.g. `…/recon-1/em/fibsem-uint8`)")]
    NotFound {
        /// The location as given.
        location: String,
    },
    /// The location exists but is not a zarr group.
    #[error(
        "`{location}` is not a zarr group (no `.zgroup`, `.zattrs` or `zarr.json`); hint: point at the folder that holds `s0`, `s1`, …"
    )]
    NotAGroup {
        /// The location as given.
        location: String,
    },
    /// The location uses a scheme this build cannot read (`gs://`; `s3://` and `http(s)://` in a
    /// build without the `remote` feature).
    #[error(
        "`{location}`: `{scheme}` locations are not supported by this build; use a filesystem path, an `s3://` or an `http(s)://` URL (the last two need cellmap-runtime's default `remote` feature)"
    )]
    UnsupportedScheme {
        /// The location as given.
        location: String,
        /// The URL scheme, e.g. `http`.
        scheme: String,
    },
    /// A request to a remote store failed (after the retries).
    #[error("`{location}`: reading `{url}` failed: {kind} ({message}); hint: {}", kind.hint())]
    Remote {
        /// The location as given.
        location: String,
        /// The URL of the failed request.
        url: String,
        /// What went wrong.
        kind: RemoteErrorKind,
        /// The storage error.
        message: String,
    },
    /// The remote settings of the environment are unusable.
    #[error("`{location}`: remote store settings: {source}")]
    RemoteConfig {
        /// The location as given.
        location: String,
        /// The variable at fault.
        source: RemoteConfigError,
    },
    /// The storage layer failed.
    #[error("reading `{location}` failed: {message}")]
    Storage {
        /// The location or key that failed.
        location: String,
        /// The storage error.
        message: String,
    },
    /// A metadata document is not valid JSON.
    #[error("`{location}` is not valid JSON: {message}")]
    InvalidJson {
        /// The document's location.
        location: String,
        /// The parser error.
        message: String,
    },
    /// The group has no `multiscales` attribute.
    #[error(
        "`{location}` has no OME-NGFF `multiscales` attribute (expected `multiscales` in `.zattrs` for zarr v2 / OME-NGFF 0.4, or `ome.multiscales` in `zarr.json` for zarr v3 / 0.5); hint: is this a class folder without levels, or a parent group?"
    )]
    NoMultiscales {
        /// The group's location.
        location: String,
    },
    /// The `multiscales` metadata is malformed.
    #[error("`{location}`: invalid OME-NGFF metadata: {message}")]
    InvalidMetadata {
        /// The group's location.
        location: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A non-spatial axis appears somewhere other than a leading channel position.
    #[error(
        "`{location}`: axis `{axis}` at index {index} is not spatial; expected the last three axes to be `z y x`, optionally after one leading channel axis"
    )]
    NonSpatialAxis {
        /// The group's location.
        location: String,
        /// The axis name.
        axis: String,
        /// Its index in `axes`.
        index: usize,
    },
    /// The axes are not `[c] z y x`.
    #[error("`{location}`: unsupported axes {axes:?}; expected `[z, y, x]` or `[c, z, y, x]`")]
    UnsupportedAxes {
        /// The group's location.
        location: String,
        /// The axis names found.
        axes: Vec<String>,
    },
    /// The array of a level has a different number of dimensions than the metadata's axes.
    #[error("`{location}/{level}`: the array has {array_dims} dimensions but the metadata lists {metadata_axes} axes")]
    AxisCountMismatch {
        /// The group's location.
        location: String,
        /// The level path, e.g. `s0`.
        level: String,
        /// Number of axes in the metadata.
        metadata_axes: usize,
        /// Number of array dimensions.
        array_dims: usize,
    },
    /// A level listed in `datasets` does not exist.
    #[error("`{location}/{level}`: level listed in `multiscales` but missing on disk")]
    MissingLevel {
        /// The group's location.
        location: String,
        /// The level path.
        level: String,
    },
    /// A level's array metadata exists but cannot be opened.
    #[error("`{location}/{level}`: cannot open the array: {message}")]
    LevelOpen {
        /// The group's location.
        location: String,
        /// The level path.
        level: String,
        /// The zarrs error.
        message: String,
    },
    /// A level's data type is not one we read.
    #[error(
        "`{location}/{level}`: unsupported data type `{dtype}`; expected one of uint8/16/32/64, int8/16/32/64, float32, float64"
    )]
    UnsupportedDtype {
        /// The group's location.
        location: String,
        /// The level path.
        level: String,
        /// The data type as zarrs names it.
        dtype: String,
    },
}

/// Why one chunk of a level could not be read. Every variant names the array path and the store
/// key of the chunk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// A chunk could not be read or decoded (corrupt or truncated file, storage failure).
    #[error("`{array}`: chunk {chunk:?} (key `{key}`) could not be decoded: {message}")]
    Decode {
        /// The array location.
        array: String,
        /// The store key of the chunk (the shard for sharded arrays).
        key: String,
        /// Spatial chunk indices `z y x` (inner chunk for sharded arrays).
        chunk: [u64; 3],
        /// The zarrs error.
        message: String,
    },
    /// A chunk could not be fetched from a remote store (after the retries); boxed, so that read
    /// errors stay small.
    #[error(transparent)]
    Fetch(Box<FetchError>),
    /// A decoded chunk has fewer elements than its shape needs.
    #[error("`{array}`: chunk {chunk:?} (key `{key}`) decoded to {got} elements, expected {expected}")]
    ChunkSize {
        /// The array location.
        array: String,
        /// The store key of the chunk.
        key: String,
        /// Spatial chunk indices `z y x`.
        chunk: [u64; 3],
        /// Elements expected.
        expected: usize,
        /// Elements decoded.
        got: usize,
    },
}

/// A failed request for one chunk of a remote array: the URL, the store key and what to do.
#[derive(Debug, thiserror::Error)]
#[error("`{array}`: chunk {chunk:?} (key `{key}`) could not be fetched from `{url}`: {kind} ({message}); hint: {}", kind.hint())]
#[non_exhaustive]
pub struct FetchError {
    /// The array location.
    pub array: String,
    /// The store key of the chunk (the shard for sharded arrays).
    pub key: String,
    /// The URL of the chunk (the group's location and the key).
    pub url: String,
    /// Spatial chunk indices `z y x` (inner chunk for sharded arrays).
    pub chunk: [u64; 3],
    /// What went wrong.
    pub kind: RemoteErrorKind,
    /// The storage error.
    pub message: String,
}

impl ChunkError {
    /// The error for a failed read of `chunk` (store key `key`) of `level`: a storage failure of
    /// a remote array is a [`ChunkError::Fetch`], anything else a [`ChunkError::Decode`].
    pub(crate) fn from_read(level: &super::Level, key: String, chunk: [u64; 3], e: &zarrs::array::ArrayError) -> Self {
        let storage = matches!(
            e,
            zarrs::array::ArrayError::StorageError(_)
                | zarrs::array::ArrayError::CodecError(zarrs::array::CodecError::StorageError(_))
        );
        Self::from_message(level, key, chunk, e.to_string(), storage)
    }

    /// The error for a failed request for `chunk` (store key `key`) of `level`, as
    /// [`ChunkError::from_read`].
    pub(crate) fn from_storage(
        level: &super::Level,
        key: String,
        chunk: [u64; 3],
        e: &zarrs::storage::StorageError,
    ) -> Self {
        Self::from_message(level, key, chunk, e.to_string(), true)
    }

    /// A failure of the store (`storage`) of a remote array is a [`ChunkError::Fetch`];
    /// anything else a [`ChunkError::Decode`].
    fn from_message(level: &super::Level, key: String, chunk: [u64; 3], message: String, storage: bool) -> Self {
        let array = level.array_location();
        if storage && super::is_url(array) {
            // Store keys are relative to the group, the array location is `group/path`.
            let group = array
                .strip_suffix(level.path.trim_matches('/'))
                .unwrap_or(array)
                .trim_end_matches('/');
            Self::Fetch(Box::new(FetchError {
                url: format!("{group}/{key}"),
                array: array.to_string(),
                key,
                chunk,
                kind: RemoteErrorKind::classify(&message),
                message,
            }))
        } else {
            Self::Decode {
                array: array.to_string(),
                key,
                chunk,
                message,
            }
        }
    }
}

/// Why the remote settings of the environment are unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{variable}`: {message}")]
pub struct RemoteConfigError {
    /// The variable or file at fault.
    pub variable: String,
    /// What is wrong and the fix.
    pub message: String,
}
