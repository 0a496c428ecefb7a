//! A store written by zarr-python 2.18 (`tests/fixtures/zarr-python/make.py`) reads identically.

use std::path::PathBuf;

use cellmap_runtime::{kernels::StridedDest, read::WindowRequest, read::read_window, store::Multiscale};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/zarr-python/fixture.zarr")
}

fn formula(z: usize, y: usize, x: usize) -> u8 {
    ((z * 7 + y * 3 + x) % 251) as u8
}

#[test]
fn zarr_python_multiscale_reads_identically() {
    let ms = Multiscale::open(fixture().join("raw").to_str().unwrap()).unwrap();
    assert_eq!(ms.levels.len(), 2);
    let (s0, s1) = (&ms.levels[0], &ms.levels[1]);
    assert_eq!(s0.shape_vox, [24, 20, 16]);
    assert_eq!(s0.scale_nm, [8.0, 8.0, 8.0]);
    assert_eq!(s0.translation_nm, [40.0, 24.0, 16.0]);
    assert_eq!(s1.shape_vox, [12, 10, 8]);
    assert_eq!(s1.scale_nm, [16.0, 16.0, 16.0]);
    assert_eq!(s1.translation_nm, [44.0, 28.0, 20.0]);
    let mut out = vec![0u8; 24 * 20 * 16];
    read_window(
        s0,
        None,
        &WindowRequest {
            start_vox: [0; 3],
            fill: 0,
        },
        StridedDest::new(&mut out, 0, [320, 16, 1], [24, 20, 16]).unwrap(),
    )
    .unwrap();
    for z in 0..24 {
        for y in 0..20 {
            for x in 0..16 {
                assert_eq!(out[(z * 20 + y) * 16 + x], formula(z, y, x), "s0 {z} {y} {x}");
            }
        }
    }
    // s1 = s0[::2, ::2, ::2].
    let mut out = vec![0u8; 12 * 10 * 8];
    read_window(
        s1,
        None,
        &WindowRequest {
            start_vox: [0; 3],
            fill: 0,
        },
        StridedDest::new(&mut out, 0, [80, 8, 1], [12, 10, 8]).unwrap(),
    )
    .unwrap();
    for z in 0..12 {
        for y in 0..10 {
            for x in 0..8 {
                assert_eq!(
                    out[(z * 10 + y) * 8 + x],
                    formula(2 * z, 2 * y, 2 * x),
                    "s1 {z} {y} {x}"
                );
            }
        }
    }
}

#[test]
fn zarr_python_gzip_uint16_reads_identically() {
    let ms = Multiscale::open(fixture().join("labels").to_str().unwrap()).unwrap();
    let s0 = &ms.levels[0];
    assert_eq!(s0.shape_vox, [24, 20, 16]);
    let mut out = vec![0f32; 10 * 9 * 8];
    // An unaligned window hanging over the end: fill 9999 outside.
    read_window(
        s0,
        None,
        &WindowRequest {
            start_vox: [17, 13, 11],
            fill: 9999.0,
        },
        StridedDest::new(&mut out, 0, [72, 8, 1], [10, 9, 8]).unwrap(),
    )
    .unwrap();
    for i in 0..10 {
        for j in 0..9 {
            for k in 0..8 {
                let (z, y, x) = (17 + i, 13 + j, 11 + k);
                let want = if z < 24 && y < 20 && x < 16 {
                    ((z * 400 + y * 20 + x) % 65_000) as f32
                } else {
                    9999.0
                };
                assert_eq!(out[(i * 9 + j) * 8 + k], want);
            }
        }
    }
}
