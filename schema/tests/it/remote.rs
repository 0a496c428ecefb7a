//! `s3://` and `http(s)://` locations pass through validation as written: in `data.datasets`,
//! in datasplit CSV rows (joined root + path, never onto the spec's folder) and in `predict.raw`.

const ARRAYS: &str = "arrays:\n  inputs: {raw: {shape: [8, 8, 8], scale: [8, 8, 8]}}\n  targets: {labels: {shape: [8, 8, 8], scale: [8, 8, 8]}}\n";

#[test]
fn urls_in_datasets_and_predict_are_kept_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        "version: 1\nname: remote\nclasses: [mito, er]\n{ARRAYS}data:\n  datasets:\n    - split: train\n      raw: s3://janelia-cosem-datasets/jrc_hela-2/jrc_hela-2.zarr/recon-1/em/fibsem-uint8\n      targets: s3://janelia-cosem-datasets/jrc_hela-2/jrc_hela-2.zarr/recon-1/labels/groundtruth/crop155/[mito,er]\n    - split: validate\n      raw: https://example.org/data/b.zarr/recon-1/em/fibsem-uint8/\n      targets: http://127.0.0.1:8080/b.zarr/crop2/{{class}}\npredict:\n  raw: [s3://bucket/c.zarr/recon-1/em/fibsem-uint8]\n  output: preds.zarr/{{dataset}}/{{class}}\n  model_classes: [mito, er]\n  scale: [8, 8, 8]\n"
    );
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, spec).unwrap();
    let s = cellmap_schema::load(&path).unwrap_or_else(|e| panic!("{e}")).spec;
    let d = s.datasets();
    assert_eq!(
        d[0].raw,
        "s3://janelia-cosem-datasets/jrc_hela-2/jrc_hela-2.zarr/recon-1/em/fibsem-uint8"
    );
    let t = d[0].targets.as_ref().unwrap();
    assert_eq!(
        t.path_of("mito"),
        "s3://janelia-cosem-datasets/jrc_hela-2/jrc_hela-2.zarr/recon-1/labels/groundtruth/crop155/mito"
    );
    assert_eq!(t.annotated.as_deref(), Some(&["mito".to_owned(), "er".to_owned()][..]));
    assert_eq!(d[1].raw, "https://example.org/data/b.zarr/recon-1/em/fibsem-uint8/");
    assert_eq!(
        d[1].targets.as_ref().unwrap().path_of("er"),
        "http://127.0.0.1:8080/b.zarr/crop2/er"
    );
    let p = s.predict().unwrap();
    assert_eq!(p.raw, ["s3://bucket/c.zarr/recon-1/em/fibsem-uint8"]);
    // A relative output still resolves against the spec's folder.
    assert!(
        p.output
            .starts_with(&std::path::absolute(dir.path()).unwrap().display().to_string()),
        "{}",
        p.output
    );
}

#[test]
fn urls_in_datasplit_rows_are_joined_not_resolved() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("split.csv"),
        "\"train\",\"s3://janelia-cosem-datasets/jrc_hela-2/jrc_hela-2.zarr\",\"recon-1/em/fibsem-uint8\",\"s3://janelia-cosem-datasets/jrc_hela-2/jrc_hela-2.zarr\",\"recon-1/labels/groundtruth/crop155/[mito,er]\"\n\"validate\",\"https://example.org/b.zarr/raw\",\"https://example.org/b.zarr/crop2/[mito]\"\n",
    )
    .unwrap();
    let path = dir.path().join("spec.yaml");
    std::fs::write(
        &path,
        format!("version: 1\nname: remote\nclasses: [mito, er]\n{ARRAYS}data:\n  csv: split.csv\n"),
    )
    .unwrap();
    let s = cellmap_schema::load(&path).unwrap_or_else(|e| panic!("{e}")).spec;
    let d = s.datasets();
    assert_eq!(
        d[0].raw,
        "s3://janelia-cosem-datasets/jrc_hela-2/jrc_hela-2.zarr/recon-1/em/fibsem-uint8"
    );
    assert_eq!(
        d[0].targets.as_ref().unwrap().path_of("er"),
        "s3://janelia-cosem-datasets/jrc_hela-2/jrc_hela-2.zarr/recon-1/labels/groundtruth/crop155/er"
    );
    assert_eq!(d[1].raw, "https://example.org/b.zarr/raw");
    assert_eq!(
        d[1].targets.as_ref().unwrap().path_of("mito"),
        "https://example.org/b.zarr/crop2/mito"
    );
}
