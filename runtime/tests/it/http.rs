//! Reading groups over HTTP (the default `remote` feature) from a tiny file server on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cellmap_runtime::{
    kernels::StridedDest, read::WindowRequest, read::read_window, store::ChunkCache, store::Multiscale,
    store::OpenError,
};

use crate::common::{Fmt, blosc, write_pyramid};

/// Serve the files under `root` (GET and HEAD; a single `Range: bytes=a-b` is answered with 206
/// and `Content-Range`, as object stores and static file servers do). Returns the base URL and a
/// request counter.
fn serve(root: PathBuf) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::Relaxed);
            let root = root.clone();
            std::thread::spawn(move || handle(stream, &root));
        }
    });
    (url, requests)
}

fn handle(mut stream: TcpStream, root: &Path) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = value.trim().strip_prefix("bytes=").map(str::to_string);
        }
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let rel = path.trim_start_matches('/');
    let file = root.join(rel);
    let body = if rel.split('/').any(|c| c == "..") || !file.is_file() {
        None
    } else {
        std::fs::read(&file).ok()
    };
    let _ = match body {
        Some(body) => {
            let total = body.len();
            let (status, body, extra) = match range.as_deref().and_then(|r| byte_range(r, total)) {
                Some((a, b)) => (
                    "206 Partial Content",
                    body[a..=b].to_vec(),
                    format!("Content-Range: bytes {a}-{b}/{total}\r\n"),
                ),
                None => ("200 OK", body, String::new()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).and_then(|()| {
                if method == "GET" {
                    stream.write_all(&body)
                } else {
                    Ok(())
                }
            })
        }
        None => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
}

/// Inclusive byte bounds of `a-b`, `a-` or `-n` within `total` bytes.
fn byte_range(spec: &str, total: usize) -> Option<(usize, usize)> {
    let (a, b) = spec.split_once('-')?;
    let last = total.checked_sub(1)?;
    match (a.parse::<usize>().ok(), b.parse::<usize>().ok()) {
        (Some(a), Some(b)) if a <= b && a <= last => Some((a, b.min(last))),
        (Some(a), None) if a <= last => Some((a, last)),
        (None, Some(n)) if n > 0 => Some((total.saturating_sub(n), last)),
        _ => None,
    }
}

#[test]
fn http_reads_equal_filesystem_reads() {
    let dir = tempfile::tempdir().unwrap();
    write_pyramid::<u16>(
        &dir.path().join("v2"),
        &Fmt::V2 {
            compressor: blosc("zstd", 1),
            sep: "/",
        },
        [30, 20, 25],
        [8, 8, 8],
        None,
    );
    write_pyramid::<u8>(
        &dir.path().join("v3"),
        &Fmt::V3Sharded { inner: vec![8, 8, 8] },
        [30, 20, 25],
        [16, 16, 16],
        None,
    );
    let (url, requests) = serve(dir.path().to_path_buf());
    for v in ["v2", "v3"] {
        let local = Multiscale::open(dir.path().join(v).to_str().unwrap()).unwrap();
        let remote = Multiscale::open(&format!("{url}/{v}/")).unwrap();
        assert_eq!(remote.location, format!("{url}/{v}/"), "the location as given");
        assert_eq!(remote.levels.len(), 2);
        for (l, r) in local.levels.iter().zip(&remote.levels) {
            assert_eq!(
                (l.shape_vox, l.scale_nm, l.translation_nm, l.dtype),
                (r.shape_vox, r.scale_nm, r.translation_nm, r.dtype)
            );
            assert_eq!(r.array_location(), format!("{url}/{v}/{}", r.path));
            let cache = ChunkCache::new(1 << 20);
            let (start, shape) = ([-2i64, 3, 5], [12usize, 15, 22]);
            let mut a = vec![0f32; 12 * 15 * 22];
            let mut b = vec![1f32; a.len()];
            read_window(
                l,
                None,
                &WindowRequest {
                    start_vox: start,
                    fill: -1.0,
                },
                StridedDest::new(&mut a, 0, [330, 22, 1], shape).unwrap(),
            )
            .unwrap();
            read_window(
                r,
                Some(&cache),
                &WindowRequest {
                    start_vox: start,
                    fill: -1.0,
                },
                StridedDest::new(&mut b, 0, [330, 22, 1], shape).unwrap(),
            )
            .unwrap();
            assert_eq!(a, b, "{v} {}", l.path);
            let before = requests.load(Ordering::Relaxed);
            read_window(
                r,
                Some(&cache),
                &WindowRequest {
                    start_vox: start,
                    fill: -1.0,
                },
                StridedDest::new(&mut b, 0, [330, 22, 1], shape).unwrap(),
            )
            .unwrap();
            assert_eq!(
                requests.load(Ordering::Relaxed),
                before,
                "a warm cache makes no requests"
            );
            assert_eq!(a, b);
        }
    }
    let e = Multiscale::open(&format!("{url}/nothing-here")).unwrap_err();
    assert!(matches!(e, OpenError::NotAGroup { .. }), "{e}");
    std::fs::remove_dir_all(dir.path().join("v2/s1")).unwrap();
    let e = Multiscale::open(&format!("{url}/v2")).unwrap_err();
    assert!(
        matches!(&e, OpenError::MissingLevel { level, .. } if level == "s1"),
        "{e}"
    );
}

/// Opening reads each metadata document once: a group's `.zattrs` (or `zarr.json`) and each
/// level's `.zarray` (or `zarr.json`); a v2 level's `.zattrs` only when its attributes are asked
/// for; a v2 group expected as v2 is not probed for a `zarr.json`. Counted as requests to a
/// server (one connection per request).
#[test]
fn opening_a_group_reads_each_metadata_document_once() {
    let dir = tempfile::tempdir().unwrap();
    let fmt = Fmt::V2 {
        compressor: blosc("zstd", 1),
        sep: "/",
    };
    write_pyramid::<u8>(&dir.path().join("v2"), &fmt, [16; 3], [8; 3], None);
    write_pyramid::<u8>(
        &dir.path().join("v3"),
        &Fmt::V3Sharded { inner: vec![4; 3] },
        [16; 3],
        [8; 3],
        None,
    );
    std::fs::write(dir.path().join("v2/s0/.zattrs"), r#"{"class_counts": {"mito": 7}}"#).unwrap();
    let (url, requests) = serve(dir.path().to_path_buf());
    let counted = |f: &dyn Fn() -> Multiscale| {
        let before = requests.load(Ordering::Relaxed);
        let ms = f();
        (ms, requests.load(Ordering::Relaxed) - before)
    };
    let v2 = format!("{url}/v2");
    let (ms, n) = counted(&|| Multiscale::open_for(&v2, Some(2), &[]).unwrap());
    assert_eq!((ms.zarr_format, ms.levels.len(), n), (2, 2, 3), ".zattrs + 2 × .zarray");
    let before = requests.load(Ordering::Relaxed);
    let attrs = ms.levels[0].attributes();
    assert_eq!(attrs["class_counts"]["mito"], 7);
    assert!(ms.levels[1].attributes().is_empty(), "s1 has no .zattrs");
    assert!(ms.levels[0].attributes().contains_key("class_counts"));
    assert_eq!(
        requests.load(Ordering::Relaxed) - before,
        2,
        "each level's .zattrs read once, when asked"
    );
    let (_, n) = counted(&|| Multiscale::open(&v2).unwrap());
    assert_eq!(n, 4, "without an expected format, a zarr.json is looked for first");
    // Opened for a spec's voxel sizes: the levels up to the coarsest one they choose (s0 at
    // 8 nm, s1 at 16 nm; a finer request than any level still reads the finest).
    for (needed, levels) in [
        (vec![[8.0; 3]], 1),
        (vec![[4.0; 3]], 1),
        (vec![[12.0; 3]], 1),
        (vec![[16.0; 3]], 2),
        (vec![[8.0; 3], [64.0; 3]], 2),
    ] {
        let (ms, n) = counted(&|| Multiscale::open_for(&v2, Some(2), &needed).unwrap());
        assert_eq!(ms.levels.len(), levels, "{needed:?}");
        assert_eq!(
            n,
            1 + levels as u64,
            ".zattrs + the opened levels' .zarray ({needed:?})"
        );
        assert_eq!(&*ms.levels[0].path, "s0");
    }
    // A chunk is one request (a GET, no HEAD for its size first): 16³ in 8³ chunks is 8.
    let before = requests.load(Ordering::Relaxed);
    let mut out = vec![0f32; 16 * 16 * 16];
    let request = WindowRequest {
        start_vox: [0; 3],
        fill: 0.0,
    };
    let dest = StridedDest::new(&mut out, 0, [256, 16, 1], [16; 3]).unwrap();
    read_window(&ms.levels[0], None, &request, dest).unwrap();
    assert_eq!(requests.load(Ordering::Relaxed) - before, 8, "one request per chunk");
    let v3 = format!("{url}/v3");
    for expected in [2, 3] {
        let (ms, n) = counted(&|| Multiscale::open_for(&v3, Some(expected), &[]).unwrap());
        assert_eq!(ms.zarr_format, 3);
        let probes = if expected == 2 { 1 } else { 0 };
        assert_eq!(n, probes + 3, "zarr.json + 2 × s*/zarr.json (expected v{expected})");
    }
    let (ms, n) = counted(&|| Multiscale::open(&v3).unwrap());
    assert_eq!(n, 3);
    assert!(ms.levels[0].attributes().is_empty());
}

/// A group with both formats' metadata is read in the format it is expected in; `open` prefers
/// zarr v3. A folder without group metadata is no group; a group without `multiscales` says so.
#[test]
fn the_expected_format_decides_only_where_both_formats_are_present() {
    let dir = tempfile::tempdir().unwrap();
    let both = dir.path().join("both");
    write_pyramid::<u8>(
        &both,
        &Fmt::V2 {
            compressor: blosc("lz4", 1),
            sep: "/",
        },
        [16; 3],
        [8; 3],
        None,
    );
    // A zarr v3 group document whose levels have no zarr.json of their own.
    std::fs::write(
        both.join("zarr.json"),
        serde_json::json!({"zarr_format": 3, "node_type": "group",
            "attributes": std::fs::read_to_string(both.join(".zattrs")).map(|s| serde_json::from_str::<serde_json::Value>(&s).unwrap()).unwrap()})
            .to_string(),
    )
    .unwrap();
    let path = both.to_str().unwrap();
    let e = Multiscale::open(path).unwrap_err();
    assert!(
        matches!(&e, OpenError::MissingLevel { level, .. } if level == "s0"),
        "{e}"
    );
    let ms = Multiscale::open_for(path, Some(2), &[]).unwrap();
    assert_eq!((ms.zarr_format, ms.levels.len()), (2, 2));
    assert!(matches!(
        Multiscale::open_for(path, Some(3), &[]).unwrap_err(),
        OpenError::MissingLevel { .. }
    ));

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for expected in [2, 3] {
        let e = Multiscale::open_for(empty.to_str().unwrap(), Some(expected), &[]).unwrap_err();
        assert!(matches!(e, OpenError::NotAGroup { .. }), "{e}");
    }
    std::fs::write(empty.join(".zgroup"), r#"{"zarr_format": 2}"#).unwrap();
    let e = Multiscale::open_for(empty.to_str().unwrap(), Some(2), &[]).unwrap_err();
    assert!(matches!(e, OpenError::NoMultiscales { .. }), "{e}");
    std::fs::remove_file(empty.join(".zgroup")).unwrap();
    std::fs::write(empty.join(".zattrs"), r#"{"other": 1}"#).unwrap();
    for expected in [2, 3] {
        let e = Multiscale::open_for(empty.to_str().unwrap(), Some(expected), &[]).unwrap_err();
        assert!(matches!(e, OpenError::NoMultiscales { .. }), "{e}");
    }
    let e = Multiscale::open_for(dir.path().join("missing").to_str().unwrap(), Some(2), &[]).unwrap_err();
    assert!(matches!(e, OpenError::NotFound { .. }), "{e}");
}
