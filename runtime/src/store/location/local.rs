//! Filesystem locations.

use std::path::Path;
use std::sync::Arc;

use zarrs::filesystem::FilesystemStore;

use super::{Backend, Location, RemoteOptions};
use crate::store::error::OpenError;

/// Every location no other backend claims is a path.
pub(super) const BACKEND: Backend = Backend { claims: |_| true, open };

fn open(location: &str, _remote: Option<&RemoteOptions>) -> Result<Location, OpenError> {
    let path = Path::new(location);
    // One `stat`: a path that cannot be looked up counts as missing.
    let Ok(meta) = std::fs::metadata(path) else {
        return Err(OpenError::NotFound {
            location: location.to_string(),
        });
    };
    if !meta.is_dir() {
        return Err(OpenError::NotAGroup {
            location: location.to_string(),
        });
    }
    let store = FilesystemStore::new(path).map_err(|e| OpenError::Storage {
        location: location.to_string(),
        message: e.to_string(),
    })?;
    let trimmed = location.trim_end_matches('/');
    Ok(Location {
        location: if trimmed.is_empty() { location } else { trimmed }.to_string(),
        storage: Arc::new(store),
        explain_missing: None,
        dir: Some(path.to_path_buf()),
    })
}
