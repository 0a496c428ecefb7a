//! Opening the storage behind a location string.
//!
//! A location is a filesystem path ([`local`]), or with the `http` cargo feature an
//! `http://`/`https://` URL ([`http`], read through `zarrs_http`). Every reader goes through
//! [`open_location`], which asks each backend of [`BACKENDS`] in turn whether the location is
//! its own and returns a zarrs [`ReadableStorage`] rooted there: another backend (S3 through
//! `object_store`, say) is one more file with a [`Backend`] and one more entry in the list.

use zarrs::storage::{ReadableStorage, StoreKey};

use super::error::OpenError;

mod http;
mod local;

/// One kind of storage, chosen by the location's form.
pub(crate) struct Backend {
    /// Whether `location` is this backend's (a scheme prefix, or anything for the filesystem).
    pub(crate) claims: fn(&str) -> bool,
    /// Open the storage rooted at `location`.
    pub(crate) open: fn(&str) -> Result<Location, OpenError>,
}

/// The backends in the order they are asked; the filesystem comes last and claims the rest.
const BACKENDS: [Backend; 3] = [http::BACKEND, UNSUPPORTED, local::BACKEND];

/// Object-store schemes no backend of this build reads yet.
const UNSUPPORTED: Backend = Backend {
    claims: |location| unsupported_scheme(location).is_some(),
    open: |location| {
        Err(OpenError::UnsupportedScheme {
            location: location.to_string(),
            scheme: unsupported_scheme(location).unwrap_or_default().to_string(),
        })
    },
};

fn unsupported_scheme(location: &str) -> Option<&'static str> {
    ["s3", "gs"]
        .into_iter()
        .find(|s| location.strip_prefix(s).is_some_and(|rest| rest.starts_with("://")))
}

/// The storage of one location plus the location string for error messages.
#[derive(Clone)]
pub(crate) struct Location {
    pub(crate) location: String,
    pub(crate) storage: ReadableStorage,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// Open the storage rooted at `location`: a filesystem path, or with the `http` feature an
/// `http://`/`https://` URL.
pub(crate) fn open_location(location: &str) -> Result<Location, OpenError> {
    let backend = BACKENDS
        .iter()
        .find(|b| (b.claims)(location))
        .unwrap_or(&local::BACKEND);
    (backend.open)(location)
}

impl Location {
    /// Read and parse a JSON document at `key`; `Ok(None)` when it does not exist.
    pub(crate) fn get_json(&self, key: &str) -> Result<Option<serde_json::Value>, OpenError> {
        let store_key = StoreKey::new(key).map_err(|e| OpenError::Storage {
            location: self.location.clone(),
            message: e.to_string(),
        })?;
        let bytes = self.storage.get(&store_key).map_err(|e| OpenError::Storage {
            location: format!("{}/{key}", self.location),
            message: e.to_string(),
        })?;
        match bytes {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| OpenError::InvalidJson {
                    location: format!("{}/{key}", self.location),
                    message: e.to_string(),
                }),
        }
    }
}
