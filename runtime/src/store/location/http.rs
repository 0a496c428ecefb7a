//! `http://` and `https://` locations, read through `object_store`'s HTTP client (the `remote`
//! cargo feature; a build without it reports the scheme as unsupported). The server must answer
//! `GET` (with `Range` for sharded arrays: partial reads) and `HEAD`; no listing is needed.

use super::{Backend, Location, RemoteOptions};
use crate::store::error::OpenError;

pub(super) const BACKEND: Backend = Backend {
    claims: |location| location.starts_with("http://") || location.starts_with("https://"),
    open,
};

/// `https://host:port/a/b/` → (`https://host:port`, `a/b`).
fn split(location: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = location.split_once("://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    (!host.is_empty()).then(|| (&location[..scheme.len() + 3 + host.len()], path.trim_matches('/')))
}

#[cfg(feature = "remote")]
fn open(location: &str, remote: Option<&RemoteOptions>) -> Result<Location, OpenError> {
    use std::sync::Arc;

    use object_store::ObjectStore;
    use object_store::http::HttpBuilder;
    use object_store::prefix::PrefixStore;

    use super::remote::{cached_store, client_options, options_or_env, readable, retry_config};

    let options = &*options_or_env(location, remote)?;
    let Some((origin, path)) = split(location) else {
        return Err(OpenError::Storage {
            location: location.to_string(),
            message: "no host in the URL; expected `https://HOST/path/to/group`".into(),
        });
    };
    // One client (one connection pool) per origin and settings.
    let store = cached_store(format!("http\u{0}{origin}\u{0}{options:?}"), || {
        let store = HttpBuilder::new()
            .with_url(origin)
            .with_client_options(client_options(options).with_allow_http(true))
            .with_retry(retry_config(options))
            .build()?;
        Ok(Arc::new(store) as Arc<dyn ObjectStore>)
    })
    .map_err(|e| OpenError::Storage {
        location: location.to_string(),
        message: format!("cannot configure the HTTP client: {e}"),
    })?;
    let rooted: Arc<dyn ObjectStore> = if path.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, path))
    };
    Ok(Location {
        location: location.trim_end_matches('/').to_string(),
        storage: readable(location, rooted)?,
        explain_missing: None,
    })
}

#[cfg(not(feature = "remote"))]
fn open(location: &str, _remote: Option<&RemoteOptions>) -> Result<Location, OpenError> {
    let _ = split;
    Err(OpenError::UnsupportedScheme {
        location: location.to_string(),
        scheme: location.split_once("://").map_or("http", |(s, _)| s).to_string(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn origin_and_path() {
        assert_eq!(
            super::split("http://127.0.0.1:80/a/b/"),
            Some(("http://127.0.0.1:80", "a/b"))
        );
        assert_eq!(super::split("https://h"), Some(("https://h", "")));
        assert_eq!(super::split("https:///x"), None);
    }
}
