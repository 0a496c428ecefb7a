//! `http://` and `https://` locations, read through `zarrs_http` (the `http` cargo feature; a
//! build without it reports the scheme as unsupported).

use super::{Backend, Location};
use crate::store::error::OpenError;

pub(super) const BACKEND: Backend = Backend {
    claims: |location| location.starts_with("http://") || location.starts_with("https://"),
    open,
};

#[cfg(feature = "http")]
fn open(location: &str) -> Result<Location, OpenError> {
    let store = zarrs_http::HTTPStore::new(location.trim_end_matches('/')).map_err(|e| OpenError::Storage {
        location: location.to_string(),
        message: e.to_string(),
    })?;
    Ok(Location {
        location: location.trim_end_matches('/').to_string(),
        storage: std::sync::Arc::new(store),
    })
}

#[cfg(not(feature = "http"))]
fn open(location: &str) -> Result<Location, OpenError> {
    Err(OpenError::UnsupportedScheme {
        location: location.to_string(),
        scheme: location.split_once("://").map_or("http", |(s, _)| s).to_string(),
    })
}
