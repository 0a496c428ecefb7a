//! Opening the storage behind a location string.
//!
//! A location is a filesystem path ([`local`]), an `s3://bucket/prefix` URL ([`s3`]) or an
//! `http://`/`https://` URL ([`http`]); the remote ones are read through `object_store`'s S3 and
//! HTTP clients (the `remote` cargo feature, on by default) with the settings of
//! [`RemoteOptions`] ([`remote`]: timeouts, retries, credentials, endpoint). Every reader goes
//! through [`open_location`], which asks each backend of [`BACKENDS`] in turn whether the location
//! is its own and returns a zarrs [`ReadableStorage`] rooted there: another backend (`gs://`, say)
//! is one more file with a [`Backend`] and one more entry in the list.

use zarrs::storage::{ReadableStorage, StoreKey};

use super::error::{OpenError, RemoteErrorKind};
use super::is_url;

mod http;
mod local;
mod remote;
mod s3;

pub use remote::{RemoteConfigError, RemoteOptions, S3Credentials};

/// One kind of storage, chosen by the location's form.
pub(crate) struct Backend {
    /// Whether `location` is this backend's (a scheme prefix, or anything for the filesystem).
    pub(crate) claims: fn(&str) -> bool,
    /// Open the storage rooted at `location`, with explicit remote settings or (`None`) those of
    /// the environment ([`RemoteOptions::from_env`], read only when a remote location is opened).
    pub(crate) open: fn(&str, Option<&RemoteOptions>) -> Result<Location, OpenError>,
}

/// The backends in the order they are asked; the filesystem comes last and claims the rest.
const BACKENDS: [Backend; 4] = [s3::BACKEND, http::BACKEND, UNSUPPORTED, local::BACKEND];

/// Object-store schemes no backend of this build reads.
const UNSUPPORTED: Backend = Backend {
    claims: |location| unsupported_scheme(location).is_some(),
    open: |location, _| {
        Err(OpenError::UnsupportedScheme {
            location: location.to_string(),
            scheme: unsupported_scheme(location).unwrap_or_default().to_string(),
        })
    },
};

fn unsupported_scheme(location: &str) -> Option<&'static str> {
    ["gs", "gcs", "az", "abfs"]
        .into_iter()
        .find(|s| location.strip_prefix(s).is_some_and(|rest| rest.starts_with("://")))
}

/// Why a location holds no group metadata, asked only when none is found: a backend that can
/// tell a missing bucket or an empty prefix from a folder without metadata (S3, by one listing)
/// returns that error; `Ok` leaves it to the caller.
pub(crate) type ExplainMissing = std::sync::Arc<dyn Fn() -> Result<(), OpenError> + Send + Sync>;

/// The storage of one location plus the location string for error messages.
#[derive(Clone)]
pub(crate) struct Location {
    pub(crate) location: String,
    pub(crate) storage: ReadableStorage,
    /// See [`ExplainMissing`]; `None` for backends whose reads already say it.
    pub(crate) explain_missing: Option<ExplainMissing>,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// Open the storage rooted at `location`: a filesystem path, an `s3://` or an `http(s)://` URL
/// (the latter two with the settings of the environment, see [`RemoteOptions::from_env`]).
pub(crate) fn open_location(location: &str) -> Result<Location, OpenError> {
    open_location_with(location, None)
}

/// [`open_location`] with explicit remote settings (`None`: those of the environment).
pub(crate) fn open_location_with(location: &str, remote: Option<&RemoteOptions>) -> Result<Location, OpenError> {
    let backend = BACKENDS
        .iter()
        .find(|b| (b.claims)(location))
        .unwrap_or(&local::BACKEND);
    (backend.open)(location, remote)
}

impl Location {
    /// The error that explains why no group metadata was found here, if the backend can tell
    /// (a missing bucket, an empty prefix); `Ok` otherwise.
    pub(crate) fn explain_missing(&self) -> Result<(), OpenError> {
        self.explain_missing.as_ref().map_or(Ok(()), |explain| explain())
    }

    /// Read and parse a JSON document at `key`; `Ok(None)` when it does not exist.
    pub(crate) fn get_json(&self, key: &str) -> Result<Option<serde_json::Value>, OpenError> {
        match self.get_bytes(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| OpenError::InvalidJson {
                    location: format!("{}/{key}", self.location),
                    message: e.to_string(),
                }),
        }
    }

    /// Read the value at `key` whole; `Ok(None)` when it does not exist.
    pub(crate) fn get_bytes(&self, key: &str) -> Result<Option<zarrs::storage::Bytes>, OpenError> {
        let store_key = StoreKey::new(key).map_err(|e| OpenError::Storage {
            location: self.location.clone(),
            message: e.to_string(),
        })?;
        self.storage.get(&store_key).map_err(|e| {
            let url = format!("{}/{key}", self.location);
            let message = e.to_string();
            if is_url(&self.location) {
                OpenError::Remote {
                    location: self.location.clone(),
                    kind: RemoteErrorKind::classify(&message),
                    url,
                    message,
                }
            } else {
                OpenError::Storage { location: url, message }
            }
        })
    }
}
