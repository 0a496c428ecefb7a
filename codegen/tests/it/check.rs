//! `check` and `schema`: exit codes, formats, the data check.

use super::{root, run};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn examples_are_valid() {
    let o = run(&[
        "check",
        "examples/minimal.yaml",
        "examples/full.yaml",
        "examples/2d.yaml",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(stdout(&o), "");
}

#[test]
fn every_invalid_spec_exits_1_with_its_golden_text() {
    let dir = root().join("tests/specs/invalid");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let rel = format!("tests/specs/invalid/{}", path.file_name().unwrap().to_string_lossy());
        let o = run(&["check", &rel]);
        assert_eq!(o.status.code(), Some(1), "{rel}");
        let golden = std::fs::read_to_string(path.with_extension("txt")).unwrap();
        assert_eq!(stdout(&o), golden, "{rel}");
        n += 1;
    }
    assert!(n >= 25);
}

#[test]
fn github_format_prints_annotations() {
    let o = run(&[
        "check",
        "--format",
        "github",
        "examples/minimal.yaml",
        "tests/specs/invalid/unknown_key_nested.yaml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        "::error file=tests/specs/invalid/unknown_key_nested.yaml,line=16,col=3::unknown key `batch_sise` (at `/loader/batch_sise`)\
         %0Aexpected: one of `batch_size`, `workers`, `prefetch`, `device`, `pin_memory`, `cache_bytes`, `compressed_cache_bytes`, `fetch_concurrency`, `fetch_ahead`, `on_error`, `training_cache`\
         %0Ahint: did you mean `batch_size`?\n"
    );
}

#[test]
fn json_format_is_an_array() {
    let o = run(&["check", "--format", "json", "tests/specs/invalid/zero_shape.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["pointer"], "/arrays/targets/labels/shape/2");
    assert_eq!(v[0]["line"], 9);
    assert_eq!(v[0]["severity"], "error");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["check"]).status.code(), Some(2));
    assert_eq!(
        run(&["check", "--format", "xml", "examples/minimal.yaml"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn schema_prints_the_committed_schema() {
    let o = run(&["schema"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        std::fs::read_to_string(root().join("schema/cellmap.schema.json")).unwrap()
    );
}

fn write_multiscale_v2(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(".zgroup"), r#"{"zarr_format": 2}"#).unwrap();
    std::fs::write(
        dir.join(".zattrs"),
        r#"{"multiscales": [{"version": "0.4", "datasets": [{"path": "s0"}]}]}"#,
    )
    .unwrap();
}

fn write_multiscale_v3(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("zarr.json"),
        r#"{"zarr_format": 3, "node_type": "group", "attributes": {"ome": {"multiscales": [{"datasets": [{"path": "s0"}]}]}}}"#,
    )
    .unwrap();
}

#[test]
fn data_flag_checks_multiscale_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_multiscale_v2(&d.join("a.zarr/raw"));
    write_multiscale_v3(&d.join("a.zarr/crop1/mito"));
    std::fs::create_dir_all(d.join("a.zarr/crop1/er")).unwrap(); // exists, no metadata
    let spec = "version: 1\nname: t\nclasses: [mito, er, nuc]\narrays:\n  inputs: {raw: {shape: [4, 4, 4], scale: [8, 8, 8]}}\n  targets: {labels: {shape: [4, 4, 4], scale: [8, 8, 8]}}\ndata:\n  datasets:\n    - {split: train, raw: a.zarr/raw, targets: 'a.zarr/crop1/[mito,er,nuc]'}\n";
    let spec_path = d.join("spec.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    let spec_arg = spec_path.to_str().unwrap();

    let o = run(&["check", spec_arg]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    let o = run(&["check", "--data", spec_arg]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    let at = format!("{spec_arg}:9:7: error: ");
    let base = std::path::absolute(d).unwrap();
    assert_eq!(
        lines[0],
        format!(
            "{at}class `er` group `{}` is not an OME-NGFF multiscale group: neither `zarr.json` nor `.zattrs` found",
            base.join("a.zarr/crop1/er").display()
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "{at}class `nuc` group `{}` does not exist",
            base.join("a.zarr/crop1/nuc").display()
        )
    );

    std::fs::remove_dir(d.join("a.zarr/crop1/er")).unwrap();
    write_multiscale_v2(&d.join("a.zarr/crop1/er"));
    write_multiscale_v2(&d.join("a.zarr/crop1/nuc"));
    let o = run(&["check", "--data", spec_arg]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn data_flag_reports_unreachable_remote_groups_with_the_url() {
    let tmp = tempfile::tempdir().unwrap();
    // A port nobody listens on: the S3 endpoint and an HTTP server that are down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = format!(
        "version: 1\nname: t\nclasses: [mito]\narrays:\n  inputs: {{raw: {{shape: [4, 4, 4], scale: [8, 8, 8]}}}}\n  targets: {{labels: {{shape: [4, 4, 4], scale: [8, 8, 8]}}}}\ndata:\n  datasets:\n    - {{split: train, raw: 's3://bucket/a.zarr/raw', targets: 's3://bucket/a.zarr/crop1/[mito]'}}\n    - {{split: validate, raw: 'http://127.0.0.1:{port}/b.zarr/raw', targets: 'http://127.0.0.1:{port}/b.zarr/crop1/{{class}}'}}\n"
    );
    let spec_path = tmp.path().join("spec.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    let spec_arg = spec_path.to_str().unwrap();
    assert_eq!(run(&["check", spec_arg]).status.code(), Some(0));

    let started = std::time::Instant::now();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cellmap-compile"))
        .args(["check", "--data", spec_arg])
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("CELLMAP_REMOTE_RETRIES", "0")
        .env("CELLMAP_REMOTE_CONNECT_TIMEOUT_S", "2")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(": error: ")).collect();
    assert!(lines.len() >= 3, "{out}");
    let s3 = lines
        .iter()
        .find(|l| l.contains("raw group: `s3://bucket/a.zarr/raw`"))
        .expect(&out);
    assert!(s3.starts_with(&format!("{spec_arg}:9:7: error: ")), "{s3}");
    assert!(
        s3.contains("the server cannot be reached") && s3.contains("hint: check the host and port"),
        "{s3}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("class `mito` group: `s3://bucket/a.zarr/crop1/mito`")),
        "{out}"
    );
    assert!(
        lines.iter().any(
            |l| l.contains(&format!("raw group: `http://127.0.0.1:{port}/b.zarr/raw`"))
                && l.contains("the server cannot be reached")
        ),
        "{out}"
    );
    assert!(
        out.contains("CELLMAP_REMOTE_"),
        "the diagnostic's hint names the settings: {out}"
    );
}
