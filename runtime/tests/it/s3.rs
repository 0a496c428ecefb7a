//! Reading `s3://` locations from a real S3-compatible server: moto (`moto_server` from
//! `moto[server]` on PyPI) on a free port of 127.0.0.1, one server per test, killed on drop. The
//! data is written with the crate's own writers, uploaded through object_store's S3 client (the
//! real protocol), then read back through `s3://bucket/…` and compared voxel for voxel with the
//! local copy.
//!
//! The server: `CELLMAP_MOTO_SERVER` (the `moto_server` executable; `.ci/run` creates
//! `~/.cache/cellmap-compile/moto-venv` and sets it), else that default path when it exists. When
//! neither is there the tests fail under CI (`CI` set) and are skipped with a notice elsewhere.
//!
//! Environment: every test passes its endpoint and settings as [`RemoteOptions`] except
//! [`s3_loader_batches_equal_local_ones_and_a_dead_server_ends_in_an_error`], which goes through
//! the spec path like a user and so through `AWS_ENDPOINT_URL`: it is the only test of this binary
//! that sets or reads S3 variables.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cellmap_runtime::{
    Loader, kernels::StridedDest, read::ReadError, read::WindowRequest, read::read_window, store::ChunkCache,
    store::ChunkError, store::CompressedOptions, store::Multiscale, store::OpenError, store::RemoteErrorKind,
    store::RemoteOptions, store::S3Credentials, synth::SynthOptions, synth::SynthSize, synth::SynthVariant,
    synth::write_synthetic, training_cache,
};
use cellmap_schema::Split;
use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;

use crate::faults::within;
use crate::loader::{options, same, spec_doc, spec_of};

const BUCKET: &str = "cellmap-test";

/// A running `moto_server`, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_executable() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CELLMAP_MOTO_SERVER").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let default = PathBuf::from(std::env::var_os("HOME")?).join(".cache/cellmap-compile/moto-venv/bin/moto_server");
    default.is_file().then_some(default)
}

/// Start moto, or `None` (test skipped) outside CI when it is not installed.
fn moto() -> Option<Moto> {
    let Some(exe) = moto_executable() else {
        let how = "set CELLMAP_MOTO_SERVER to a `moto_server` executable: python3 -m venv ~/.cache/cellmap-compile/moto-venv && ~/.cache/cellmap-compile/moto-venv/bin/pip install 'moto[server]' && export CELLMAP_MOTO_SERVER=~/.cache/cellmap-compile/moto-venv/bin/moto_server (.ci/run does this)";
        if std::env::var_os("CI").is_some() {
            panic!("the S3 tests need moto under CI: {how}");
        }
        eprintln!("note: S3 test skipped: {how}");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{}` (CELLMAP_MOTO_SERVER): {e}", exe.display()));
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto did not listen on port {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

/// A bare S3 `PUT /bucket` (create bucket; moto accepts unsigned requests), returning the status.
fn create_bucket(endpoint: &str, bucket: &str) -> u16 {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Upload every file under `dir` to `s3://bucket/prefix/…` through object_store's S3 client,
/// signed; `public` objects get the `public-read` ACL (moto, like S3, refuses unsigned reads of
/// private objects). The bucket must exist ([`create_bucket`]).
fn upload(endpoint: &str, bucket: &str, dir: &Path, prefix: &str, public: bool) {
    let mut headers = object_store::HeaderMap::new();
    if public {
        headers.insert("x-amz-acl", object_store::HeaderValue::from_static("public-read"));
    }
    let store = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_client_options(
            object_store::ClientOptions::new()
                .with_allow_http(true)
                .with_default_headers(headers),
        )
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .unwrap();
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for f in &files {
            let rel = f.strip_prefix(dir).unwrap().to_str().unwrap();
            let key = object_store::path::Path::from(format!("{prefix}/{rel}"));
            store.put(&key, std::fs::read(f).unwrap().into()).await.unwrap();
        }
    });
}

/// Options for the server at `endpoint`: short limits, so that failures come fast.
fn remote(endpoint: &str, credentials: Option<S3Credentials>) -> RemoteOptions {
    let mut o = RemoteOptions::default();
    o.s3_endpoint = Some(endpoint.to_string());
    o.credentials = credentials;
    o.timeout = Duration::from_secs(5);
    o.connect_timeout = Duration::from_secs(2);
    o.retries = 1;
    o
}

fn testing_credentials() -> Option<S3Credentials> {
    Some(S3Credentials {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
    })
}

/// The synthetic dataset in both formats, under `tmp/synth/{v2,v3}/synth.zarr`.
fn dataset(tmp: &Path) -> PathBuf {
    let dir = tmp.join("synth");
    write_synthetic(
        &dir,
        &SynthOptions {
            seed: 3,
            size: SynthSize::Small,
            variants: vec![SynthVariant::V2, SynthVariant::V3],
            ..SynthOptions::default()
        },
    )
    .unwrap();
    dir
}

fn window(
    level: &cellmap_runtime::store::Level,
    cache: Option<&ChunkCache>,
    start: [i64; 3],
) -> Result<Vec<f32>, ReadError> {
    let shape = [12usize, 15, 22];
    let mut out = vec![f32::NAN; 12 * 15 * 22];
    read_window(
        level,
        cache,
        &WindowRequest {
            start_vox: start,
            fill: -1.0,
        },
        StridedDest::new(&mut out, 0, [330, 22, 1], shape).unwrap(),
    )?;
    Ok(out)
}

const GROUPS: [&str; 2] = ["recon-1/em/fibsem-uint8", "recon-1/labels/groundtruth/crop1/mito"];

#[test]
fn s3_reads_equal_filesystem_reads_signed_and_unsigned_and_private_data_needs_credentials() {
    let Some(moto) = moto() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = dataset(tmp.path());
    assert_eq!(create_bucket(&moto.endpoint, BUCKET), 200);
    upload(&moto.endpoint, BUCKET, &dir, "synth", true);
    // Without credentials the requests are unsigned, as CellMap's public bucket needs; moto
    // serves them only for objects with a public ACL, like S3.
    for credentials in [testing_credentials(), None] {
        let o = remote(&moto.endpoint, credentials.clone());
        for v in ["v2", "v3"] {
            for g in GROUPS {
                let local = Multiscale::open(dir.join(v).join("synth.zarr").join(g).to_str().unwrap()).unwrap();
                let url = format!("s3://{BUCKET}/synth/{v}/synth.zarr/{g}/");
                let remote = Multiscale::open_with(&url, &o).unwrap();
                assert_eq!(remote.location, url, "the location as given");
                assert_eq!(remote.levels.len(), local.levels.len());
                for (l, r) in local.levels.iter().zip(&remote.levels) {
                    assert_eq!(
                        (l.shape_vox, l.scale_nm, l.translation_nm, l.dtype),
                        (r.shape_vox, r.scale_nm, r.translation_nm, r.dtype)
                    );
                    assert_eq!(r.array_location(), format!("{}/{}", url.trim_end_matches('/'), r.path));
                    let cache = ChunkCache::new(1 << 22);
                    for start in [[-2i64, 3, 5], [4, 9, 1]] {
                        let a = window(l, None, start).unwrap();
                        let b = window(r, Some(&cache), start).unwrap();
                        assert!(same(&a, &b), "{v} {g} {} {start:?} {credentials:?}", l.path);
                        assert!(same(&a, &window(r, None, start).unwrap()));
                    }
                }
            }
        }
    }
    upload(&moto.endpoint, BUCKET, &dir.join("v2"), "private", false);
    let url = format!("s3://{BUCKET}/private/synth.zarr/{}", GROUPS[0]);
    assert!(Multiscale::open_with(&url, &remote(&moto.endpoint, testing_credentials())).is_ok());
    let e = Multiscale::open_with(&url, &remote(&moto.endpoint, None)).unwrap_err();
    assert!(
        matches!(&e, OpenError::Remote { kind: RemoteErrorKind::AccessDenied, url: u, .. } if u.starts_with(&url)),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("access denied") && msg.contains("AWS_ACCESS_KEY_ID"),
        "{msg}"
    );
}

/// Issue #15's compressed tier over a real S3 server, as a loader over `s3://` data gets it by
/// default: a decoded cache too small for a single chunk, so every read decodes, and the second
/// round of reads is answered from the encoded bytes kept in memory without one request.
#[test]
fn s3_second_reads_past_a_small_decoded_cache_ask_the_server_nothing() {
    let Some(moto) = moto() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = dataset(tmp.path());
    assert_eq!(create_bucket(&moto.endpoint, BUCKET), 200);
    upload(&moto.endpoint, BUCKET, &dir, "synth", true);
    let o = remote(&moto.endpoint, None);
    for v in ["v2", "v3"] {
        for g in GROUPS {
            let local = Multiscale::open(dir.join(v).join("synth.zarr").join(g).to_str().unwrap()).unwrap();
            let url = format!("s3://{BUCKET}/synth/{v}/synth.zarr/{g}");
            let remote = Multiscale::open_with(&url, &o).unwrap();
            let cache = ChunkCache::new(1 << 12).with_compressed(CompressedOptions::from_setting(None));
            let starts = [[-2i64, 3, 5], [4, 9, 1], [20, 30, 28]];
            let want: Vec<Vec<f32>> = starts
                .iter()
                .map(|s| window(&local.levels[0], None, *s).unwrap())
                .collect();
            for (s, w) in starts.iter().zip(&want) {
                assert!(
                    same(w, &window(&remote.levels[0], Some(&cache), *s).unwrap()),
                    "{v} {g} {s:?}"
                );
            }
            let first = cache.fetch_stats();
            assert!(first.store_requests > 0, "{first:?}");
            for (s, w) in starts.iter().zip(&want) {
                assert!(
                    same(w, &window(&remote.levels[0], Some(&cache), *s).unwrap()),
                    "{v} {g} {s:?}"
                );
            }
            let second = cache.fetch_stats();
            assert_eq!(second.store_requests, first.store_requests, "{v} {g}: {second:?}");
            assert!(
                second.chunks > first.chunks,
                "{v} {g}: decoded again, from the tier: {second:?}"
            );
            let t = cache.compressed_stats();
            assert_eq!((t.misses, t.evictions), (first.store_requests, 0), "{v} {g}: {t:?}");
            assert_eq!(t.value_bytes, first.store_bytes, "{v} {g}: {t:?}");
        }
    }
}

#[test]
fn s3_missing_bucket_key_and_server_are_named_with_a_hint() {
    let Some(moto) = moto() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = dataset(tmp.path());
    assert_eq!(create_bucket(&moto.endpoint, BUCKET), 200);
    upload(&moto.endpoint, BUCKET, &dir.join("v2/synth.zarr"), "synth.zarr", true);
    let o = remote(&moto.endpoint, testing_credentials());

    let e = Multiscale::open_with("s3://no-such-bucket/synth.zarr/recon-1/em/fibsem-uint8", &o).unwrap_err();
    assert!(
        matches!(&e, OpenError::Remote { kind: RemoteErrorKind::MissingBucket, url, .. } if url.starts_with("s3://no-such-bucket/")),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("`s3://no-such-bucket/synth.zarr/recon-1/em/fibsem-uint8`"),
        "{msg}"
    );
    assert!(
        msg.contains("the bucket does not exist") && msg.contains("hint: check the bucket name"),
        "{msg}"
    );

    let e = Multiscale::open_with(&format!("s3://{BUCKET}/synth.zarr/recon-1/em/no-such-group"), &o).unwrap_err();
    assert!(matches!(e, OpenError::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("no-such-group` does not exist"), "{e}");

    // A prefix that holds objects but no group metadata (an array).
    let e = Multiscale::open_with(&format!("s3://{BUCKET}/synth.zarr/recon-1/em/fibsem-uint8/s0"), &o).unwrap_err();
    assert!(matches!(e, OpenError::NotAGroup { .. }), "{e:?}");

    // No server at all: named, fast, never a hang.
    let dead_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = remote(&format!("http://127.0.0.1:{dead_port}"), None);
    let t = Instant::now();
    let e = Multiscale::open_with(&format!("s3://{BUCKET}/synth.zarr/recon-1/em/fibsem-uint8"), &dead).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert!(
        matches!(
            &e,
            OpenError::Remote {
                kind: RemoteErrorKind::Unreachable,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("hint: check the host and port"), "{e}");
}

#[test]
fn s3_server_killed_mid_run_fails_fast_naming_the_url() {
    let Some(mut moto) = moto() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = dataset(tmp.path());
    assert_eq!(create_bucket(&moto.endpoint, BUCKET), 200);
    upload(&moto.endpoint, BUCKET, &dir.join("v2/synth.zarr"), "synth.zarr", true);
    let url = format!("s3://{BUCKET}/synth.zarr/recon-1/em/fibsem-uint8");
    let ms = Multiscale::open_with(&url, &remote(&moto.endpoint, None)).unwrap();
    let local = Multiscale::open(dir.join("v2/synth.zarr").join(GROUPS[0]).to_str().unwrap()).unwrap();
    let level = ms.levels[0].clone();
    assert!(same(
        &window(&level, None, [0, 0, 0]).unwrap(),
        &window(&local.levels[0], None, [0, 0, 0]).unwrap()
    ));
    moto.child.kill().unwrap();
    moto.child.wait().unwrap();
    let t = Instant::now();
    let e = within("a read from a dead server", move || {
        window(&level, None, [20, 20, 20]).unwrap_err()
    });
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    let ReadError::Chunk(ChunkError::Fetch(fetch)) = &e else {
        panic!("expected a fetch error, got {e:?}")
    };
    let (chunk_url, kind) = (&fetch.url, &fetch.kind);
    assert!(chunk_url.starts_with(&format!("{url}/s0/")), "{chunk_url}");
    assert_eq!(*kind, RemoteErrorKind::Unreachable, "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("could not be fetched from `{url}/s0/")), "{msg}");
    assert!(
        msg.contains(&moto.endpoint.replace("http://", "")),
        "the request's URL: {msg}"
    );
}

#[test]
fn s3_loader_batches_equal_local_ones_and_a_dead_server_ends_in_an_error() {
    let Some(mut moto) = moto() else { return };
    // SAFETY: the only test of this binary that sets or reads these variables (see the module
    // docs); the other threads of the binary read the environment only through std, whose lock
    // orders those reads with this write.
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL", &moto.endpoint);
        std::env::set_var("CELLMAP_REMOTE_TIMEOUT_S", "5");
        std::env::set_var("CELLMAP_REMOTE_RETRIES", "1");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = dataset(tmp.path());
    assert_eq!(create_bucket(&moto.endpoint, BUCKET), 200);
    upload(&moto.endpoint, BUCKET, &dir.join("v3/synth.zarr"), "synth.zarr", true);
    let local_dir = dir.join("v3/synth.zarr");
    let mut doc = spec_doc(&local_dir);
    doc["loader"]["on_error"] = serde_json::json!("skip_and_log");
    let local = spec_of(&doc);
    let root = local_dir.display().to_string();
    let remote_text = serde_json::to_string(&doc)
        .unwrap()
        .replace(&root, &format!("s3://{BUCKET}/synth.zarr"));
    let s3 = spec_of(&serde_json::from_str(&remote_text).unwrap());
    for d in s3.datasets() {
        assert!(d.raw.starts_with("s3://"));
    }
    let mut o = options(Split::Train);
    o.no_cache = true; // every sample reads the server
    let mut want = Loader::open(local.clone(), options(Split::Train)).unwrap();
    // The training cache written from the bucket; a loader reading through it, opened while the
    // server is up, needs no request once it reads.
    let cache = tmp.path().join("training-cache");
    let written = training_cache::write(&s3, &cache, &training_cache::CacheOptions::for_spec(&s3)).unwrap();
    assert!(written.copies_written == 1 && written.packs_written >= 1, "{written:?}");
    let through_spec = s3.clone().with_training_cache(Some(cache.display().to_string()));
    let mut through = Loader::open(through_spec, o.clone()).unwrap();
    let mut got = Loader::open(s3, o).unwrap();
    assert_eq!(want.plan().ring_bytes, got.plan().ring_bytes);
    for n in 0..3 {
        let a = want.next_batch().unwrap().unwrap();
        let b = got.next_batch().unwrap().unwrap();
        let (ma, mb): (Vec<_>, Vec<_>) = (a.meta().collect(), b.meta().collect());
        assert_eq!(format!("{ma:?}"), format!("{mb:?}"), "batch {n}: the same samples");
        for i in 0..2 {
            assert!(same(a.array(i), b.array(i)), "batch {n} array {i}");
        }
    }
    assert_eq!(got.skipped_samples(), 0);

    moto.child.kill().unwrap();
    moto.child.wait().unwrap();
    // With the server gone, the cached loader still gives the local batches.
    let mut want = Loader::open(local, options(Split::Train)).unwrap();
    for n in 0..3 {
        let a = want.next_batch().unwrap().unwrap();
        let b = through.next_batch().unwrap().unwrap();
        for i in 0..2 {
            assert!(same(a.array(i), b.array(i)), "through the cache: batch {n} array {i}");
        }
    }
    assert_eq!(through.skipped_samples(), 0);
    assert_eq!(training_cache::fallback_chunks(&through.planned().sources), 0);
    let endpoint = moto.endpoint.replace("http://", "");
    let t = Instant::now();
    let (msg, skipped) = within("the loader after the server died", move || {
        let mut msg = None;
        for _ in 0..8 {
            match got.next_batch() {
                Some(Err(e)) => {
                    msg = Some(e.to_string());
                    break;
                }
                Some(Ok(_)) => {}
                None => break,
            }
        }
        (msg, got.skipped_samples())
    });
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    let msg = msg.expect("a dead server ends in an error");
    assert!(skipped > 0, "the failed samples are counted under skip_and_log: {msg}");
    assert!(msg.contains("no readable replacement"), "{msg}");
    assert!(msg.contains(&format!("s3://{BUCKET}/synth.zarr/")), "{msg}");
    assert!(msg.contains(&endpoint), "{msg}");
    assert!(msg.contains("the server cannot be reached"), "{msg}");
}
