//! Opening the storage behind a location string.
//!
//! A location is a filesystem path, or (with the `http` cargo feature) an `http://`/`https://` URL
//! read through `zarrs_http`. Every reader goes through [`open_store`], which returns a zarrs
//! [`ReadableStorage`] rooted at the location, so another backend only adds a branch here.

use std::path::Path;
use std::sync::Arc;

use zarrs::filesystem::FilesystemStore;
use zarrs::storage::{ReadableStorage, StoreKey};

use crate::multiscale::OpenError;

/// The storage of one location plus the location string for error messages.
#[derive(Clone)]
pub(crate) struct Store {
    pub(crate) location: String,
    pub(crate) storage: ReadableStorage,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// Open the storage rooted at `location`: a filesystem path, or with the `http` feature an
/// `http://`/`https://` URL.
pub(crate) fn open_store(location: &str) -> Result<Store, OpenError> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return open_http(location);
    }
    if let Some(scheme) = ["s3://", "gs://"].into_iter().find(|s| location.starts_with(s)) {
        return Err(OpenError::UnsupportedScheme {
            location: location.to_string(),
            scheme: scheme.trim_end_matches("://").to_string(),
        });
    }
    let path = Path::new(location);
    if !path.exists() {
        return Err(OpenError::NotFound {
            location: location.to_string(),
        });
    }
    if !path.is_dir() {
        return Err(OpenError::NotAGroup {
            location: location.to_string(),
        });
    }
    let store = FilesystemStore::new(path).map_err(|e| OpenError::Storage {
        location: location.to_string(),
        message: e.to_string(),
    })?;
    let trimmed = location.trim_end_matches('/');
    Ok(Store {
        location: if trimmed.is_empty() { location } else { trimmed }.to_string(),
        storage: Arc::new(store),
    })
}

impl Store {
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

#[cfg(feature = "http")]
fn open_http(location: &str) -> Result<Store, OpenError> {
    let store = zarrs_http::HTTPStore::new(location.trim_end_matches('/')).map_err(|e| OpenError::Storage {
        location: location.to_string(),
        message: e.to_string(),
    })?;
    Ok(Store {
        location: location.trim_end_matches('/').to_string(),
        storage: Arc::new(store),
    })
}

#[cfg(not(feature = "http"))]
fn open_http(location: &str) -> Result<Store, OpenError> {
    Err(OpenError::UnsupportedScheme {
        location: location.to_string(),
        scheme: location.split_once("://").map_or("http", |(s, _)| s).to_string(),
    })
}
