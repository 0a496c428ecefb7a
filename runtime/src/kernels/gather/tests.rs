use super::*;

const I: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

#[test]
fn linear_ramp_is_exact_and_fill_outside() {
    // Level 6³, value = z + 2y + 4x; grid at half-voxel offsets, partly outside the level.
    let level = [6u64; 3];
    let src: Vec<f32> = (0..216)
        .map(|i| ((i / 36) + 2 * ((i / 6) % 6) + 4 * (i % 6)) as f32)
        .collect();
    let g = SampleGrid::new([2.75, 2.5, 4.25], [4, 4, 4], [1.0; 3], &I, [0.0; 3], [1.0; 3]);
    let mut out = vec![0.0; 64];
    gather(
        &GatherSource {
            src: &src,
            start: [0; 3],
            shape: [6; 3],
            level_shape: level,
        },
        &GatherParams {
            grid: &g,
            elastic: None,
            interpolation: Interpolation::Linear,
            fill: -1.0,
        },
        &mut out,
    )
    .unwrap();
    for pz in 0..4 {
        for py in 0..4 {
            for px in 0..4 {
                let u = g.index_of([pz, py, px]);
                let v = out[pz * 16 + py * 4 + px];
                if u.iter().all(|c| (-0.5..5.5).contains(c)) {
                    // Clamped neighbours beyond n−1 reproduce the edge value.
                    let c = u.map(|c| c.clamp(0.0, 5.0));
                    assert_eq!(v, (c[0] + 2.0 * c[1] + 4.0 * c[2]) as f32, "{u:?}");
                } else {
                    assert_eq!(v, -1.0, "{u:?}");
                }
            }
        }
    }
}

/// Outputs of a megabyte and more are staged per row and written with non-temporal stores;
/// raw (linear, from `u8` and `f32` windows) and packed labels (nearest) must still equal the
/// checked per-voxel path, bit for bit, under a rotation, with the window inside a larger
/// level and parts of the grid outside it.
#[test]
fn large_rotated_outputs_equal_the_checked_path() {
    let (a, b) = (0.61f64, 0.37f64);
    let (rz, rx) = ([[1.0, 0.0, 0.0], [0.0, a.cos(), -a.sin()], [0.0, a.sin(), a.cos()]], b);
    let m: [[f64; 3]; 3] = {
        let ry = [[rx.cos(), 0.0, rx.sin()], [0.0, 1.0, 0.0], [-rx.sin(), 0.0, rx.cos()]];
        let mut m = [[0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = (0..3).map(|k| rz[i][k] * ry[k][j]).sum();
            }
        }
        m
    };
    let level = [90u64, 100, 110];
    let grid = SampleGrid::new([30.3, 50.1, 87.8], [66, 70, 72], [1.0; 3], &m, [0.0; 3], [1.0; 3]);
    const { assert!(66 * 70 * 72 * 4 >= crate::kernels::stream::STREAM_MIN_BYTES) };
    let (start, shape) = grid.source_window(Interpolation::Linear, [0.0; 3]);
    let lo = start.map(|v| v.max(0));
    let size = [0, 1, 2].map(|b| ((start[b] + shape[b] as i64).min(level[b] as i64) - lo[b]) as usize);
    let n: usize = size.iter().product();
    let bytes: Vec<u8> = (0..n).map(|i| (i * 2_654_435_761 % 251) as u8).collect();
    let floats: Vec<f32> = bytes.iter().map(|&v| f32::from(v) * 0.5 - 3.0).collect();

    // The checked path at every voxel, on the gather's coordinates.
    let anchor = plan(&grid, None).unwrap().anchor;
    let reference = |pick: &dyn Fn([f32; 3]) -> f32| {
        let [nz, ny, nx] = grid.shape;
        let s2 = grid.step[2].map(|v| v as f32);
        let mut want = vec![0f32; nz * ny * nx];
        for pz in 0..nz {
            for py in 0..ny {
                let base = row_origin(&grid, anchor.map(|v| v as f64), pz, py);
                for px in 0..nx {
                    want[(pz * ny + py) * nx + px] = pick(along(base, s2, px as f32));
                }
            }
        }
        want
    };
    let mut wb = SourceWindow::new(&GatherSource {
        src: &bytes,
        start: lo,
        shape: size,
        level_shape: level,
    })
    .unwrap();
    let mut wf = SourceWindow::new(&GatherSource {
        src: &floats,
        start: lo,
        shape: size,
        level_shape: level,
    })
    .unwrap();
    (wb.anchor, wf.anchor) = (anchor, anchor);
    let want_b = reference(&|u| wb.linear_checked(u).unwrap().unwrap_or(-1.0));
    let want_f = reference(&|u| wf.linear_checked(u).unwrap().unwrap_or(-1.0));
    assert!(
        want_b.iter().filter(|v| **v == -1.0).count() > 1000,
        "part of the grid is outside the level"
    );
    let mut got = vec![0f32; want_b.len()];
    gather(
        &GatherSource {
            src: &bytes,
            start: lo,
            shape: size,
            level_shape: level,
        },
        &GatherParams {
            grid: &grid,
            elastic: None,
            interpolation: Interpolation::Linear,
            fill: -1.0,
        },
        &mut got,
    )
    .unwrap();
    assert!(
        got.iter().zip(&want_b).all(|(g, w)| g.to_bits() == w.to_bits()),
        "u8 linear"
    );
    gather(
        &GatherSource {
            src: &floats,
            start: lo,
            shape: size,
            level_shape: level,
        },
        &GatherParams {
            grid: &grid,
            elastic: None,
            interpolation: Interpolation::Linear,
            fill: -1.0,
        },
        &mut got,
    )
    .unwrap();
    assert!(
        got.iter().zip(&want_f).all(|(g, w)| g.to_bits() == w.to_bits()),
        "f32 linear"
    );

    // Packed labels: 3 classes, class 1 unknown.
    let (start, shape) = grid.source_window(Interpolation::Nearest, [0.0; 3]);
    let lo2 = start.map(|v| v.max(0));
    assert_eq!(lo2, lo);
    let size2 = [0, 1, 2].map(|b| ((start[b] + shape[b] as i64).min(level[b] as i64) - lo[b]) as usize);
    let packed: Vec<u8> = (0..size2.iter().product::<usize>())
        .map(|i| (i * 40_503 % 8) as u8)
        .collect();
    let mut wp = SourceWindow::new(&GatherSource {
        src: &packed,
        start: lo,
        shape: size2,
        level_shape: level,
    })
    .unwrap();
    wp.anchor = anchor;
    let mut out = vec![0f32; 3 * want_b.len()];
    gather_labels_packed(
        &GatherSource {
            src: &packed,
            start: lo,
            shape: size2,
            level_shape: level,
        },
        &LabelParams {
            grid: &grid,
            elastic: None,
            classes: 3,
            unknown_mask: 0b010,
            fill: 7.0,
        },
        &mut out,
    )
    .unwrap();
    for c in 0..3 {
        let want = reference(&|u| match wp.nearest_checked(u).unwrap() {
            None => 7.0,
            Some(_) if c == 1 => f32::NAN,
            Some(i) => f32::from(packed[i] >> c & 1),
        });
        let got = &out[c * want.len()..(c + 1) * want.len()];
        if c == 1 {
            assert!(got.iter().all(|v| v.is_nan()));
        } else {
            assert!(
                got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()),
                "class {c}"
            );
        }
    }
}

#[test]
fn too_small_window_is_an_error() {
    let src = vec![0u8; 8];
    let g = SampleGrid::new([2.0; 3], [3, 3, 3], [1.0; 3], &I, [0.0; 3], [1.0; 3]);
    let mut out = vec![0.0; 27];
    let err = gather(
        &GatherSource {
            src: &src,
            start: [0; 3],
            shape: [2; 3],
            level_shape: [10; 3],
        },
        &GatherParams {
            grid: &g,
            elastic: None,
            interpolation: Interpolation::Nearest,
            fill: 0.0,
        },
        &mut out,
    );
    assert!(matches!(err, Err(GatherError::OutsideWindow { .. })));
    let err = gather(
        &GatherSource {
            src: &src,
            start: [9, 0, 0],
            shape: [2; 3],
            level_shape: [10; 3],
        },
        &GatherParams {
            grid: &g,
            elastic: None,
            interpolation: Interpolation::Nearest,
            fill: 0.0,
        },
        &mut out,
    );
    assert!(matches!(err, Err(GatherError::WindowOutsideLevel { .. })));
    let err = gather(
        &GatherSource {
            src: &src,
            start: [0; 3],
            shape: [2; 3],
            level_shape: [10; 3],
        },
        &GatherParams {
            grid: &g,
            elastic: None,
            interpolation: Interpolation::Nearest,
            fill: 0.0,
        },
        &mut out[..3],
    );
    assert!(matches!(err, Err(GatherError::OutputLength { .. })));
}

/// A gather into `f16`, `bf16` or `u8` with a map equals the `f32` gather mapped and converted,
/// for a small output (rows converted in place) and one over a megabyte (rows streamed).
#[test]
fn typed_gathers_equal_the_f32_gather_converted() {
    use crate::dtype::BatchElem;
    use half::{bf16, f16};
    fn check<O: BatchElem + crate::kernels::Element>(n: usize, src: &[u8], g: &SampleGrid) {
        let source = GatherSource {
            src,
            start: [0; 3],
            shape: [n + 4; 3],
            level_shape: [n as u64 + 4; 3],
        };
        let params = GatherParams {
            grid: g,
            elastic: None,
            interpolation: Interpolation::Linear,
            fill: f32::NAN,
        };
        let map = |x: f32| (x - 3.0) / 7.0;
        let mut reference = vec![0f32; n * n * n];
        gather(&source, &params, &mut reference).unwrap();
        let mut typed = vec![O::default(); n * n * n];
        gather_map(&source, &params, map, &mut typed).unwrap();
        for (k, (t, r)) in typed.iter().zip(&reference).enumerate() {
            let want = O::from_f32(map(*r));
            let same = *t == want || (t.to_f32().is_nan() && want.to_f32().is_nan());
            assert!(same, "{:?} voxel {k}: {t:?} != {want:?}", O::DTYPE);
        }
    }
    // 104³ voxels: over a megabyte in every type (streamed rows).
    for n in [12usize, 104] {
        let m = n + 4;
        let src: Vec<u8> = (0..m * m * m).map(|i| (i * 37 % 251) as u8).collect();
        let a = 0.4f64;
        let rot = [[1.0, 0.0, 0.0], [0.0, a.cos(), -a.sin()], [0.0, a.sin(), a.cos()]];
        let c = m as f64 / 2.0;
        let g = SampleGrid::new([c, c, c], [n; 3], [1.0; 3], &rot, [0.0; 3], [1.0; 3]);
        check::<f16>(n, &src, &g);
        check::<bf16>(n, &src, &g);
        check::<u8>(n, &src, &g);
    }
}
