//! Opening groups, level choice, geometry and every `OpenError`.

use std::path::Path;

use cellmap_runtime::{
    Box3, geometry::crop_start_vox, store::Multiscale, store::OpenError, store::SourceDtype, store::choose_level,
};
use serde_json::json;

use crate::common::{Fmt, LevelMeta, blosc, ms_attrs, write_array, write_group, write_pyramid, zyx_axes};

fn v2() -> Fmt {
    Fmt::V2 {
        compressor: blosc("lz4", 1),
        sep: "/",
    }
}

fn open(p: &Path) -> Result<Multiscale, OpenError> {
    Multiscale::open(p.to_str().unwrap())
}

#[test]
fn opens_v2_and_v3_with_geometry() {
    for fmt in [v2(), Fmt::V3Sharded { inner: vec![4, 4, 4] }] {
        let dir = tempfile::tempdir().unwrap();
        write_pyramid::<u8>(dir.path(), &fmt, [20, 18, 16], [8, 8, 8], None);
        let ms = open(dir.path()).unwrap();
        assert_eq!(ms.axes, ["z", "y", "x"]);
        let s0 = &ms.levels[0];
        let s1 = &ms.levels[1];
        assert_eq!((&*s0.path, &*s1.path), ("s0", "s1"));
        assert_eq!(s0.scale_nm, [8.0; 3]);
        assert_eq!(s0.translation_nm, [40.0, 24.0, 16.0]);
        assert_eq!(s1.translation_nm, [44.0, 28.0, 20.0]);
        assert_eq!(s0.shape_vox, [20, 18, 16]);
        assert_eq!(s1.shape_vox, [10, 9, 8]);
        assert_eq!(s0.dtype, SourceDtype::U8);
        assert_ne!(s0.id, s1.id);
        // Voxel-centre convention: s0 covers [t - 4, t + (n - 0.5)·8].
        assert_eq!(s0.bounds_nm(), Box3::new([36.0, 20.0, 12.0], [196.0, 164.0, 140.0]));
        // s1's box is the same physical extent (it is a 2× downsampling of s0).
        assert_eq!(s1.bounds_nm(), s0.bounds_nm());
        assert_eq!(s0.array_location(), format!("{}/s0", dir.path().display()));
        let slash = Multiscale::open(&format!("{}/", dir.path().display())).unwrap();
        assert_eq!(slash.levels[1].array_location(), format!("{}/s1", dir.path().display()));
    }
}

#[test]
fn plain_string_axes_and_missing_translation() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_group(
        root,
        "",
        2,
        Some(ms_attrs(
            2,
            json!(["z", "y", "x"]),
            &[("s0", vec![8.0, 4.0, 4.0], None)],
        )),
    );
    write_array::<u16>(root, "s0", &v2(), &[4, 5, 6], &[4, 4, 4], 0);
    let ms = open(root).unwrap();
    assert_eq!(ms.levels[0].translation_nm, [0.0; 3]);
    assert_eq!(ms.levels[0].scale_nm, [8.0, 4.0, 4.0]);
    assert_eq!(ms.levels[0].dtype, SourceDtype::U16);
}

#[test]
fn leading_channel_axis_is_read_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    write_pyramid::<u8>(dir.path(), &v2(), [10, 10, 10], [8, 8, 8], Some(2));
    let ms = open(dir.path()).unwrap();
    assert_eq!(ms.axes, ["c", "z", "y", "x"]);
    assert!(ms.levels[0].has_channel_axis);
    assert_eq!(ms.levels[0].shape_vox, [10, 10, 10]);
    assert_eq!(ms.levels[0].scale_nm, [8.0; 3]);
}

/// A pyramid of tiny levels with the given scales (for `choose_level`).
fn pyramid_with_scales(root: &Path, scales: &[[f64; 3]]) -> Multiscale {
    let levels: Vec<(String, Vec<f64>, Option<Vec<f64>>)> = scales
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("s{i}"), s.to_vec(), None))
        .collect();
    let refs: Vec<LevelMeta<'_>> = levels
        .iter()
        .map(|(p, s, t)| (p.as_str(), s.clone(), t.clone()))
        .collect();
    write_group(root, "", 2, Some(ms_attrs(2, zyx_axes(), &refs)));
    for (p, _, _) in &levels {
        write_array::<u8>(root, p, &v2(), &[2, 2, 2], &[2, 2, 2], 0);
    }
    open(root).unwrap()
}

#[test]
fn choose_level_isotropic() {
    let dir = tempfile::tempdir().unwrap();
    let ms = pyramid_with_scales(dir.path(), &[[4.0; 3], [8.0; 3], [16.0; 3], [32.0; 3]]);
    let c = |r: [f64; 3]| {
        let c = choose_level(&ms.levels, r);
        (c.index, c.exact, c.finer_than_available)
    };
    assert_eq!(c([8.0; 3]), (1, true, false));
    assert_eq!(c([8.000_000_1; 3]), (1, true, false));
    assert_eq!(c([12.0; 3]), (1, false, false));
    assert_eq!(c([16.0, 16.0, 8.0]), (1, false, false));
    assert_eq!(c([64.0; 3]), (3, false, false));
    assert_eq!(c([32.0; 3]), (3, true, false));
    assert_eq!(c([4.0; 3]), (0, true, false));
    assert_eq!(c([2.0; 3]), (0, false, true));
    assert_eq!(c([4.0, 4.0, 3.9]), (0, false, true));
}

#[test]
fn choose_level_anisotropic() {
    let dir = tempfile::tempdir().unwrap();
    let ms = pyramid_with_scales(dir.path(), &[[8.0, 4.0, 4.0], [8.0, 8.0, 8.0], [16.0, 16.0, 16.0]]);
    let c = |r: [f64; 3]| {
        let c = choose_level(&ms.levels, r);
        (c.index, c.exact, c.finer_than_available)
    };
    assert_eq!(c([8.0, 4.0, 4.0]), (0, true, false));
    assert_eq!(c([8.0; 3]), (1, true, false));
    assert_eq!(c([8.0, 6.0, 6.0]), (0, false, false));
    assert_eq!(c([12.0, 12.0, 12.0]), (1, false, false));
    assert_eq!(c([4.0; 3]), (0, false, true));
    assert_eq!(c([16.0, 8.0, 8.0]), (1, false, false));
}

#[test]
fn crop_start_worked_examples() {
    // c=100, t=4, s=8, N=4: (100-4)/8 = 12; 12 - 1.5 + 0.5 = 11 → start 11 (centres 92..116 nm).
    assert_eq!(crop_start_vox(100.0, 4.0, 8.0, 4), 11);
    // c=100, t=0, s=8, N=4: 12.5 - 1.5 + 0.5 = 11.5 → 11 (centres 88, 96, 104, 112: mean 100).
    assert_eq!(crop_start_vox(100.0, 0.0, 8.0, 4), 11);
    // c=100, t=4, s=8, N=5: 12 - 2 + 0.5 = 10.5 → 10 (centres 84..116: mean 100).
    assert_eq!(crop_start_vox(100.0, 4.0, 8.0, 5), 10);
    // Synthetic s1: t = 44, s = 16; c = 140, N = 2: 6 - 0.5 + 0.5 = 6 → 6 (centres 140, 156).
    assert_eq!(crop_start_vox(140.0, 44.0, 16.0, 2), 6);
    // Left of the volume: c=0, t=40, s=8, N=3: -5 - 1 + 0.5 = -5.5 → -6.
    assert_eq!(crop_start_vox(0.0, 40.0, 8.0, 3), -6);
}

fn expect_err(root: &Path) -> OpenError {
    match open(root) {
        Ok(ms) => panic!("expected an error, opened {ms:?}"),
        Err(e) => e,
    }
}

#[test]
fn open_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let loc = |p: &Path| p.to_str().unwrap().to_string();

    let missing = base.join("nope");
    let e = expect_err(&missing);
    assert!(
        matches!(&e, OpenError::NotFound { location } if *location == loc(&missing)),
        "{e}"
    );
    assert!(e.to_string().contains(&loc(&missing)));

    let empty = base.join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(expect_err(&empty), OpenError::NotAGroup { .. }));

    let e = Multiscale::open("gs://bucket/x.zarr").unwrap_err();
    assert!(
        matches!(&e, OpenError::UnsupportedScheme { scheme, .. } if scheme == "gs"),
        "{e}"
    );
    #[cfg(not(feature = "remote"))]
    for (url, want) in [("s3://bucket/x.zarr", "s3"), ("http://127.0.0.1:1/x.zarr", "http")] {
        let e = Multiscale::open(url).unwrap_err();
        assert!(
            matches!(&e, OpenError::UnsupportedScheme { scheme, .. } if scheme == want),
            "{e}"
        );
        assert!(e.to_string().contains("`remote` feature"), "{e}");
    }

    let plain = base.join("plain");
    write_group(&plain, "", 2, Some(json!({"foo": 1})));
    let e = expect_err(&plain);
    assert!(matches!(e, OpenError::NoMultiscales { .. }));
    assert!(e.to_string().contains("multiscales"));
    let plain3 = base.join("plain3");
    write_group(&plain3, "", 3, None);
    assert!(matches!(expect_err(&plain3), OpenError::NoMultiscales { .. }));

    let bad_json = base.join("badjson");
    write_group(&bad_json, "", 2, None);
    std::fs::write(bad_json.join(".zattrs"), "{not json").unwrap();
    assert!(matches!(expect_err(&bad_json), OpenError::InvalidJson { .. }));

    let no_datasets = base.join("nodatasets");
    write_group(
        &no_datasets,
        "",
        2,
        Some(json!({"multiscales": [{"axes": ["z", "y", "x"]}]})),
    );
    let e = expect_err(&no_datasets);
    assert!(matches!(e, OpenError::InvalidMetadata { .. }));
    assert!(e.to_string().contains("datasets"), "{e}");

    let no_scale = base.join("noscale");
    write_group(
        &no_scale,
        "",
        2,
        Some(json!({"multiscales": [{"axes": ["z", "y", "x"],
        "datasets": [{"path": "s0", "coordinateTransformations": [{"type": "translation", "translation": [1, 2, 3]}]}]}]})),
    );
    assert!(expect_err(&no_scale).to_string().contains("no `scale`"));

    let mid = base.join("middle");
    let axes = json!([{"name": "z", "type": "space"}, {"name": "c", "type": "channel"},
        {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]);
    write_group(
        &mid,
        "",
        2,
        Some(ms_attrs(2, axes, &[("s0", vec![1.0, 1.0, 8.0, 8.0], None)])),
    );
    let e = expect_err(&mid);
    assert!(
        matches!(&e, OpenError::NonSpatialAxis { axis, index: 1, .. } if axis == "c"),
        "{e}"
    );

    let order = base.join("xyz");
    write_group(
        &order,
        "",
        2,
        Some(ms_attrs(2, json!(["x", "y", "z"]), &[("s0", vec![8.0; 3], None)])),
    );
    assert!(matches!(expect_err(&order), OpenError::UnsupportedAxes { .. }));
    let two_d = base.join("2d");
    write_group(
        &two_d,
        "",
        2,
        Some(ms_attrs(2, json!(["y", "x"]), &[("s0", vec![8.0; 2], None)])),
    );
    assert!(matches!(expect_err(&two_d), OpenError::UnsupportedAxes { .. }));

    let count = base.join("count");
    write_group(
        &count,
        "",
        2,
        Some(ms_attrs(2, zyx_axes(), &[("s0", vec![8.0; 3], None)])),
    );
    write_array::<u8>(&count, "s0", &v2(), &[2, 3, 4, 5], &[2, 3, 4, 5], 0);
    let e = expect_err(&count);
    assert!(
        matches!(&e, OpenError::AxisCountMismatch { level, metadata_axes: 3, array_dims: 4, .. } if level == "s0"),
        "{e}"
    );

    let lvl = base.join("missinglevel");
    write_group(
        &lvl,
        "",
        2,
        Some(ms_attrs(
            2,
            zyx_axes(),
            &[("s0", vec![8.0; 3], None), ("s1", vec![16.0; 3], None)],
        )),
    );
    write_array::<u8>(&lvl, "s0", &v2(), &[4, 4, 4], &[4, 4, 4], 0);
    let e = expect_err(&lvl);
    assert!(
        matches!(&e, OpenError::MissingLevel { level, .. } if level == "s1"),
        "{e}"
    );
    assert!(e.to_string().contains("missinglevel/s1"), "{e}");

    let dtype = base.join("dtype");
    write_group(
        &dtype,
        "",
        2,
        Some(ms_attrs(2, zyx_axes(), &[("s0", vec![8.0; 3], None)])),
    );
    std::fs::create_dir_all(dtype.join("s0")).unwrap();
    std::fs::write(
        dtype.join("s0/.zarray"),
        json!({"zarr_format": 2, "shape": [2, 2, 2], "chunks": [2, 2, 2], "dtype": "|b1",
            "compressor": null, "fill_value": false, "order": "C", "filters": null})
        .to_string(),
    )
    .unwrap();
    let e = expect_err(&dtype);
    assert!(
        matches!(&e, OpenError::UnsupportedDtype { level, .. } if level == "s0"),
        "{e}"
    );

    let codec = base.join("codec");
    write_group(
        &codec,
        "",
        2,
        Some(ms_attrs(2, zyx_axes(), &[("s0", vec![8.0; 3], None)])),
    );
    std::fs::create_dir_all(codec.join("s0")).unwrap();
    std::fs::write(
        codec.join("s0/.zarray"),
        json!({"zarr_format": 2, "shape": [2, 2, 2], "chunks": [2, 2, 2], "dtype": "|u1",
            "compressor": {"id": "no-such-codec"}, "fill_value": 0, "order": "C", "filters": null})
        .to_string(),
    )
    .unwrap();
    assert!(matches!(expect_err(&codec), OpenError::LevelOpen { .. }));
}
