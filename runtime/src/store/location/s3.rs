//! `s3://bucket/prefix` locations, read through `object_store`'s S3 client (the `remote` cargo
//! feature; a build without it reports the scheme as unsupported). Requests are unsigned when
//! [`RemoteOptions::credentials`] is `None` (public buckets such as CellMap's
//! `janelia-cosem-datasets`); an S3-compatible store is reached through
//! [`RemoteOptions::s3_endpoint`] (`AWS_ENDPOINT_URL`), path-style, http allowed.

use super::{Backend, Location, RemoteOptions};
use crate::store::error::OpenError;

pub(super) const BACKEND: Backend = Backend {
    claims: |location| location.starts_with("s3://"),
    open,
};

/// `s3://bucket/a/b/` → (`bucket`, `a/b`).
fn split(location: &str) -> Option<(&str, &str)> {
    let rest = location.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket, prefix.trim_matches('/')))
}

#[cfg(feature = "remote")]
fn open(location: &str, remote: Option<&RemoteOptions>) -> Result<Location, OpenError> {
    use std::sync::Arc;

    use object_store::ObjectStore;
    use object_store::prefix::PrefixStore;

    use super::remote::{cached_store, options_or_env, readable};

    let options = &*options_or_env(location, remote)?;
    let Some((bucket, prefix)) = split(location) else {
        return Err(OpenError::Storage {
            location: location.to_string(),
            message: "no bucket in the URL; expected `s3://BUCKET/path/to/group`".into(),
        });
    };
    // One client (one connection pool) per bucket and settings.
    let secret = options.credentials.as_ref().map(|c| c.secret_access_key.as_str());
    let key = format!("s3\u{0}{bucket}\u{0}{options:?}\u{0}{secret:?}");
    let store = cached_store(key, || s3_client(bucket, options)).map_err(|e| OpenError::Storage {
        location: location.to_string(),
        message: format!("cannot configure the S3 client: {e}"),
    })?;

    let rooted: Arc<dyn ObjectStore> = if prefix.is_empty() {
        store.clone()
    } else {
        Arc::new(PrefixStore::new(store.clone(), prefix))
    };
    // Listed only when the group's metadata is not found (a listing per group would double
    // the requests of opening, and S3 serves listings slower than reads).
    let (location_, bucket, prefix) = (location.to_string(), bucket.to_string(), prefix.to_string());
    Ok(Location {
        location: location.trim_end_matches('/').to_string(),
        storage: readable(location, rooted)?,
        explain_missing: Some(Arc::new(move || probe(&location_, &bucket, &prefix, &store))),
    })
}

/// The S3 client of one bucket: endpoint, region, credentials or unsigned requests, retries.
#[cfg(feature = "remote")]
fn s3_client(
    bucket: &str,
    options: &RemoteOptions,
) -> Result<std::sync::Arc<dyn object_store::ObjectStore>, object_store::Error> {
    use std::sync::Arc;

    use object_store::ObjectStore;
    use object_store::aws::AmazonS3Builder;

    use super::remote::{client_options, retry_config};

    let allow_http = options.s3_endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&options.region)
        .with_client_options(client_options(options).with_allow_http(allow_http))
        .with_retry(retry_config(options));
    if let Some(endpoint) = &options.s3_endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
    }
    builder = match &options.credentials {
        Some(c) => {
            let b = builder
                .with_access_key_id(&c.access_key_id)
                .with_secret_access_key(&c.secret_access_key);
            match &c.session_token {
                Some(t) => b.with_token(t),
                None => b,
            }
        }
        None => builder.with_skip_signature(true),
    };
    Ok(Arc::new(builder.build()?) as Arc<dyn ObjectStore>)
}

/// One listing under the prefix tells a missing bucket and an empty prefix apart from a group
/// without metadata (asked when no group metadata was found). A store that forbids listing may
/// still allow reads: then the reads decide.
#[cfg(feature = "remote")]
fn probe(
    location: &str,
    bucket: &str,
    prefix: &str,
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
) -> Result<(), OpenError> {
    use super::remote::{block_on, open_error};
    use crate::store::error::RemoteErrorKind;

    let listing_path = object_store::path::Path::from(prefix);
    let probe = block_on(location, store.list_with_delimiter(Some(&listing_path)))?;
    match probe {
        Ok(listing) if listing.objects.is_empty() && listing.common_prefixes.is_empty() => {
            return Err(OpenError::NotFound {
                location: location.to_string(),
            });
        }
        Ok(_) => {}
        Err(e) => match open_error(location, &format!("s3://{bucket}/{prefix}"), &e) {
            OpenError::Remote {
                kind: RemoteErrorKind::AccessDenied,
                ..
            } => {}
            // Listing a missing prefix gives an empty list, not an error: the bucket is missing.
            OpenError::Remote {
                location,
                url,
                kind: RemoteErrorKind::NotFound,
                message,
            } => {
                return Err(OpenError::Remote {
                    location,
                    url,
                    kind: RemoteErrorKind::MissingBucket,
                    message,
                });
            }
            error => return Err(error),
        },
    }
    Ok(())
}

#[cfg(not(feature = "remote"))]
fn open(location: &str, _remote: Option<&RemoteOptions>) -> Result<Location, OpenError> {
    let _ = split;
    Err(OpenError::UnsupportedScheme {
        location: location.to_string(),
        scheme: "s3".into(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn bucket_and_prefix() {
        assert_eq!(super::split("s3://b/a/c/"), Some(("b", "a/c")));
        assert_eq!(super::split("s3://b"), Some(("b", "")));
        assert_eq!(super::split("s3:///x"), None);
    }
}
