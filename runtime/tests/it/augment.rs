//! Properties of spatial draws, sample grids and the gather kernels.

use cellmap_runtime::{
    augment::ElasticDraw, augment::ElasticField, augment::SampleGrid, augment::SpatialDraw, augment::draw_spatial,
    kernels::GatherParams, kernels::GatherSource, kernels::LabelParams, kernels::copy_strided, kernels::gather,
    kernels::gather_labels_packed, rng::Rng, rng::SampleKey,
};
use cellmap_schema::{Axis, Elastic, Interpolation, Spatial};
use proptest::prelude::*;

const FILL: f32 = -1.0;

fn rng(seed: u64) -> Rng {
    Rng::new(
        SampleKey {
            seed,
            epoch: 0,
            rank: 0,
            index: 0,
        },
        3,
    )
}

fn voxels(shape: [usize; 3]) -> usize {
    shape.iter().product()
}

/// A volume whose voxel values are their row-major indices (all distinct).
fn ids(shape: [usize; 3]) -> Vec<u16> {
    (0..voxels(shape) as u16).collect()
}

fn level_of(shape: [usize; 3]) -> [u64; 3] {
    shape.map(|n| n as u64)
}

/// Samples a whole level (scale 1, translation 0) on the grid of `matrix`.
fn sample<T: Copy + Into<f32> + Default + 'static>(
    src: &[T],
    level: [usize; 3],
    centre: [f64; 3],
    out_shape: [usize; 3],
    matrix: &[[f64; 3]; 3],
    interpolation: Interpolation,
) -> Vec<f32> {
    let grid = SampleGrid::new(centre, out_shape, [1.0; 3], matrix, [0.0; 3], [1.0; 3]);
    let mut out = vec![0.0; voxels(out_shape)];
    gather(
        &GatherSource {
            src,
            start: [0; 3],
            shape: level,
            level_shape: level_of(level),
        },
        &GatherParams {
            grid: &grid,
            elastic: None,
            interpolation,
            fill: FILL,
        },
        &mut out,
    )
    .unwrap();
    out
}

fn centre_of(level: [usize; 3]) -> [f64; 3] {
    level.map(|n| (n as f64 - 1.0) / 2.0)
}

/// Copies the box `[start, start + shape)` (clipped to the level) out of a level.
fn read_window<T: Copy>(
    src: &[T],
    level: [usize; 3],
    start: [i64; 3],
    shape: [usize; 3],
) -> ([i64; 3], [usize; 3], Vec<T>) {
    let lo = [0, 1, 2].map(|b| start[b].clamp(0, level[b] as i64));
    let hi = [0, 1, 2].map(|b| (start[b] + shape[b] as i64).clamp(0, level[b] as i64));
    let clipped = [0, 1, 2].map(|b| (hi[b] - lo[b]) as usize);
    let mut out = Vec::with_capacity(voxels(clipped));
    for z in lo[0]..hi[0] {
        for y in lo[1]..hi[1] {
            for x in lo[2]..hi[2] {
                out.push(src[(z as usize * level[1] + y as usize) * level[2] + x as usize]);
            }
        }
    }
    (lo, clipped, out)
}

fn mirror_spec(flags: [bool; 3]) -> Spatial {
    Spatial {
        mirror: flags.map(|f| if f { 1.0 } else { 0.0 }),
        ..Spatial::default()
    }
}

fn shape3() -> impl Strategy<Value = [usize; 3]> {
    [1usize..7, 1usize..7, 1usize..7]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mirror_twice_is_identity(level in shape3(), flags in any::<[bool; 3]>(), seed in any::<u64>()) {
        let d = draw_spatial(&mirror_spec(flags), &mut rng(seed), [1.0; 3]);
        prop_assert_eq!(d.mirror, flags);
        let src = ids(level);
        let once = sample(&src, level, centre_of(level), level, &d.matrix, Interpolation::Nearest);
        let twice = sample(&once, level, centre_of(level), level, &d.matrix, Interpolation::Nearest);
        let expected: Vec<f32> = src.iter().map(|&v| f32::from(v)).collect();
        prop_assert_eq!(twice, expected);
    }

    #[test]
    fn transpose_permutes_voxels(level in shape3(), seed in any::<u64>()) {
        let spec = Spatial { transpose: vec![Axis::Z, Axis::Y, Axis::X], ..Spatial::default() };
        let d = draw_spatial(&spec, &mut rng(seed), [1.0; 3]);
        let perm = d.permutation;
        let out_shape = perm.map(|b| level[b]);
        let src = ids(level);
        let out = sample(&src, level, centre_of(level), out_shape, &d.matrix, Interpolation::Nearest);
        for (i, v) in out.iter().enumerate() {
            let p = [i / (out_shape[1] * out_shape[2]), (i / out_shape[2]) % out_shape[1], i % out_shape[2]];
            let mut q = [0usize; 3];
            for a in 0..3 {
                q[perm[a]] = p[a];
            }
            prop_assert_eq!(*v, f32::from(src[(q[0] * level[1] + q[1]) * level[2] + q[2]]));
        }
        let mut sorted = out.clone();
        sorted.sort_by(f32::total_cmp);
        prop_assert_eq!(sorted, src.iter().map(|&v| f32::from(v)).collect::<Vec<_>>());
    }

    #[test]
    fn rotation_by_zero_is_the_integer_window(
        level in shape3(), out_shape in shape3(), half in any::<[bool; 3]>(), shift in [-3i64..9, -3i64..9, -3i64..9],
        seed in any::<u64>(),
    ) {
        let spec = Spatial { rotate: [Some((0.0, 0.0)); 3], ..Spatial::default() };
        let d = draw_spatial(&spec, &mut rng(seed), [1.0; 3]);
        prop_assert_eq!(d.matrix, SpatialDraw::identity().matrix);
        let centre = [0, 1, 2].map(|b| shift[b] as f64 + if half[b] { 0.5 } else { 0.0 });
        let src = ids(level);
        for interpolation in [Interpolation::Nearest, Interpolation::Linear] {
            let out = sample(&src, level, centre, out_shape, &d.matrix, interpolation);
            let start = [0, 1, 2].map(|b| (centre[b] - (out_shape[b] as f64 - 1.0) / 2.0 + 0.5).floor() as i64);
            let linear_half = interpolation == Interpolation::Linear
                && (0..3).any(|b| (centre[b] - (out_shape[b] as f64 - 1.0) / 2.0).fract() != 0.0);
            if linear_half {
                continue; // between voxels: linear blends, covered by the ramp test
            }
            for (i, v) in out.iter().enumerate() {
                let p = [i / (out_shape[1] * out_shape[2]), (i / out_shape[2]) % out_shape[1], i % out_shape[2]];
                let q = [0, 1, 2].map(|b| start[b] + p[b] as i64);
                let inside = (0..3).all(|b| q[b] >= 0 && q[b] < level[b] as i64);
                let expected = if inside {
                    f32::from(src[(q[0] as usize * level[1] + q[1] as usize) * level[2] + q[2] as usize])
                } else {
                    FILL
                };
                prop_assert_eq!(*v, expected);
            }
        }
    }

    #[test]
    fn quarter_turn_about_z_is_transpose_plus_mirror(nz in 1usize..5, n in 1usize..7, m in 1usize..7, seed in any::<u64>()) {
        let level = [nz, n.max(m), n.max(m) + 1];
        let src = ids(level);
        let rotate = Spatial { rotate: [Some((90.0, 90.0)), None, None], ..Spatial::default() };
        let r = draw_spatial(&rotate, &mut rng(seed), [1.0; 3]);
        // Mirror source x, transpose y and x: draw until the permutation swaps them.
        let flip = Spatial { mirror: [0.0, 0.0, 1.0], transpose: vec![Axis::Y, Axis::X], ..Spatial::default() };
        let t = (0..).map(|i| draw_spatial(&flip, &mut rng(seed.wrapping_add(i)), [1.0; 3]))
            .find(|d| d.permutation == [0, 2, 1]).unwrap();
        prop_assert_eq!(r.matrix, t.matrix);
        let out_shape = [nz, m, n];
        let a = sample(&src, level, centre_of(level), out_shape, &r.matrix, Interpolation::Nearest);
        let b = sample(&src, level, centre_of(level), out_shape, &t.matrix, Interpolation::Nearest);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn crop_centre_maps_to_itself(
        angles in [-180.0f64..180.0, -180.0f64..180.0, -180.0f64..180.0], mirror in any::<[bool; 3]>(),
        seed in any::<u64>(), half_shape in [0usize..20, 0usize..20, 0usize..20],
        centre in [-500.0f64..500.0, -500.0f64..500.0, -500.0f64..500.0],
    ) {
        let spec = Spatial {
            mirror: mirror.map(|f| if f { 1.0 } else { 0.0 }),
            transpose: vec![Axis::Y, Axis::X],
            rotate: angles.map(|a| Some((a, a))),
            elastic: None,
        };
        let d = draw_spatial(&spec, &mut rng(seed), [1.0; 3]);
        let shape = half_shape.map(|h| 2 * h + 1);
        let (scale, translation) = ([16.0, 4.0, 4.0], [3.0, -7.0, 11.0]);
        let grid = SampleGrid::new(centre, shape, [8.0, 6.0, 4.0], &d.matrix, translation, scale);
        let u = grid.index_of(half_shape);
        for b in 0..3 {
            prop_assert!((u[b] - (centre[b] - translation[b]) / scale[b]).abs() < 1e-9);
        }
    }

    #[test]
    fn rotation_about_z_keeps_the_z_window(angle in -180.0f64..180.0, nz in 1usize..40, nyx in 1usize..64, cz in 0.0f64..5000.0) {
        let spec = Spatial { rotate: [Some((angle, angle)), None, None], ..Spatial::default() };
        let d = draw_spatial(&spec, &mut rng(1), [1.0; 3]);
        let make = |m: &[[f64; 3]; 3]| {
            SampleGrid::new([cz, 1000.0, 1000.0], [nz, nyx, nyx], [16.0, 4.0, 4.0], m, [0.0; 3], [16.0, 4.0, 4.0])
        };
        for interpolation in [Interpolation::Nearest, Interpolation::Linear] {
            let (start, shape) = make(&d.matrix).source_window(interpolation, [0.0; 3]);
            let (start0, shape0) = make(&SpatialDraw::identity().matrix).source_window(interpolation, [0.0; 3]);
            prop_assert_eq!((start[0], shape[0]), (start0[0], shape0[0]));
        }
    }

    #[test]
    fn strided_copy_agrees_with_gather(
        level in shape3(), out_shape in shape3(), mirror in any::<[bool; 3]>(), quarter in 0i32..4,
        shift in [-2i64..7, -2i64..7, -2i64..7], seed in any::<u64>(),
    ) {
        let angle = f64::from(quarter) * 90.0;
        let spec = Spatial {
            mirror: mirror.map(|f| if f { 1.0 } else { 0.0 }),
            transpose: vec![Axis::Z, Axis::Y, Axis::X],
            rotate: [Some((angle, angle)), None, Some((angle, angle))],
            elastic: None,
        };
        let d = draw_spatial(&spec, &mut rng(seed), [1.0; 3]);
        prop_assert!(d.is_axis_aligned());
        // Centres that put output voxels on source voxels along every axis.
        let centre = [0, 1, 2].map(|b| shift[b] as f64 + if out_shape.iter().any(|n| n % 2 == 0) { 0.5 } else { 0.0 });
        let grid = SampleGrid::new(centre, out_shape, [1.0; 3], &d.matrix, [0.0; 3], [1.0; 3]);
        let src = ids(level);
        if let Some(map) = grid.as_strided() {
            let (start, shape, window) = read_window(&src, level, map.src_start, map.src_shape);
            let mut copied = vec![0.0; voxels(out_shape)];
            copy_strided(&map, &GatherSource { src: &window, start, shape, level_shape: level_of(level) }, FILL, &mut copied).unwrap();
            for interpolation in [Interpolation::Nearest, Interpolation::Linear] {
                let gathered = sample(&src, level, centre, out_shape, &d.matrix, interpolation);
                prop_assert_eq!(&copied, &gathered);
            }
        }
    }

    /// The window from `source_window`, clipped to the level, gives the same result as the whole
    /// level, for any rotation, anisotropy and elastic deformation.
    #[test]
    fn source_window_suffices(
        angles in [-180.0f64..180.0, -30.0f64..30.0, -30.0f64..30.0], mirror in any::<[bool; 3]>(),
        out_shape in [1usize..9, 1usize..9, 1usize..9], centre in [0.0f64..200.0, 0.0f64..100.0, 0.0f64..100.0],
        elastic in any::<bool>(), seed in any::<u64>(),
    ) {
        let spec = Spatial {
            mirror: mirror.map(|f| if f { 1.0 } else { 0.0 }),
            transpose: vec![Axis::Y, Axis::X],
            rotate: angles.map(|a| Some((a, a))),
            elastic: elastic.then_some(Elastic { spacing_nm: [24.0; 3], sigma_nm: 6.0, probability: 1.0 }),
        };
        let voxel = [8.0, 6.0, 6.0];
        let extent = [0, 1, 2].map(|a| out_shape[a] as f64 * voxel[a]);
        let d = draw_spatial(&spec, &mut rng(seed), extent);
        let mut field = ElasticField::new();
        if let Some(e) = &d.elastic {
            field.evaluate(e, out_shape, voxel);
        }
        let field_ref = d.elastic.as_ref().map(|_| &field);
        let bound = d.elastic.as_ref().map_or([0.0; 3], ElasticDraw::max_abs_nm);
        let (scale, level) = ([16.0, 4.0, 4.0], [12usize, 25, 25]);
        let src: Vec<u8> = (0..voxels(level)).map(|i| (i * 37 % 251) as u8).collect();
        let grid = SampleGrid::new(centre, out_shape, voxel, &d.matrix, [0.0; 3], scale);
        for interpolation in [Interpolation::Nearest, Interpolation::Linear] {
            let mut full = vec![0.0; voxels(out_shape)];
            gather(&GatherSource { src: &src, start: [0; 3], shape: level, level_shape: level_of(level) }, &GatherParams { grid: &grid, elastic: field_ref, interpolation, fill: FILL }, &mut full).unwrap();
            let (start, shape) = grid.source_window(interpolation, bound);
            let (start, shape, window) = read_window(&src, level, start, shape);
            let mut windowed = vec![0.0; voxels(out_shape)];
            gather(&GatherSource { src: &window, start, shape, level_shape: level_of(level) }, &GatherParams { grid: &grid, elastic: field_ref, interpolation, fill: FILL }, &mut windowed).unwrap();
            prop_assert_eq!(&full, &windowed);
        }
    }

    #[test]
    fn linear_gather_of_a_ramp_is_exact(angles in [-180.0f64..180.0, -180.0f64..180.0, -180.0f64..180.0], seed in any::<u64>()) {
        let level = [12usize, 12, 12];
        let ramp = |q: [f64; 3]| 3.0 * q[0] + 2.0 * q[1] + q[2];
        let src: Vec<f32> = (0..voxels(level))
            .map(|i| ramp([(i / 144) as f64, ((i / 12) % 12) as f64, (i % 12) as f64]) as f32)
            .collect();
        let spec = Spatial { rotate: angles.map(|a| Some((a, a))), ..Spatial::default() };
        let d = draw_spatial(&spec, &mut rng(seed), [1.0; 3]);
        let out_shape = [9, 9, 9];
        let grid = SampleGrid::new([5.5, 5.5, 5.5], out_shape, [1.0; 3], &d.matrix, [0.0; 3], [1.0; 3]);
        let mut out = vec![0.0; voxels(out_shape)];
        gather(&GatherSource { src: &src, start: [0; 3], shape: level, level_shape: level_of(level) }, &GatherParams { grid: &grid, elastic: None, interpolation: Interpolation::Linear, fill: FILL }, &mut out).unwrap();
        for (i, v) in out.iter().enumerate() {
            let u = grid.index_of([i / 81, (i / 9) % 9, i % 9]);
            if u.iter().all(|c| (0.0..=11.0).contains(c)) {
                prop_assert!((f64::from(*v) - ramp(u)).abs() < 1e-4, "{} vs {}", v, ramp(u));
            } else if u.iter().any(|c| !(-0.5..11.5).contains(c)) {
                prop_assert_eq!(*v, FILL);
            }
        }
    }

    #[test]
    fn packed_labels_match_per_class_nearest(
        angle in -180.0f64..180.0, unknown in any::<u8>(), seed in any::<u64>(), centre in [0.0f64..10.0, 0.0f64..10.0, 0.0f64..10.0],
    ) {
        let level = [7usize, 9, 11];
        let mut r = rng(seed);
        let bytes: Vec<u8> = (0..voxels(level)).map(|_| r.next_u64() as u8).collect();
        let spec = Spatial { rotate: [Some((angle, angle)), None, Some((angle / 3.0, angle / 3.0))], ..Spatial::default() };
        let d = draw_spatial(&spec, &mut rng(seed), [1.0; 3]);
        let out_shape = [4, 5, 6];
        let grid = SampleGrid::new(centre, out_shape, [1.0; 3], &d.matrix, [0.0; 3], [1.0; 3]);
        let n = voxels(out_shape);
        let classes = 5;
        let mut packed = vec![0.0; classes * n];
        gather_labels_packed(&GatherSource { src: &bytes, start: [0; 3], shape: level, level_shape: level_of(level) }, &LabelParams { grid: &grid, elastic: None, classes, unknown_mask: unknown, fill: f32::NAN }, &mut packed).unwrap();
        for c in 0..classes {
            let channel = &packed[c * n..(c + 1) * n];
            if unknown >> c & 1 == 1 {
                prop_assert!(channel.iter().all(|v| v.is_nan()));
                continue;
            }
            let bits: Vec<u8> = bytes.iter().map(|b| b >> c & 1).collect();
            let mut expected = vec![0.0; n];
            gather(&GatherSource { src: &bits, start: [0; 3], shape: level, level_shape: level_of(level) }, &GatherParams { grid: &grid, elastic: None, interpolation: Interpolation::Nearest, fill: f32::NAN }, &mut expected).unwrap();
            prop_assert_eq!(channel.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }
    }
}

#[test]
fn fill_outside_the_level() {
    let level = [4usize, 4, 4];
    let src = ids(level);
    let out = sample(
        &src,
        level,
        [100.0, 1.0, 1.0],
        [3, 3, 3],
        &SpatialDraw::identity().matrix,
        Interpolation::Linear,
    );
    assert!(out.iter().all(|v| *v == FILL));
}

#[test]
fn spatial_draws_are_deterministic() {
    let spec = Spatial {
        mirror: [0.5; 3],
        transpose: vec![Axis::Z, Axis::X],
        rotate: [Some((-180.0, 180.0)), Some((-5.0, 5.0)), None],
        elastic: Some(Elastic {
            spacing_nm: [32.0; 3],
            sigma_nm: 4.0,
            probability: 0.5,
        }),
    };
    let draws = |seed| draw_spatial(&spec, &mut rng(seed), [256.0; 3]);
    for seed in 0..20 {
        assert_eq!(draws(seed), draws(seed));
    }
    assert_ne!(draws(1).angles_deg, draws(2).angles_deg);
    // Only the listed axes move.
    assert!((0..50).all(|s| draws(s).permutation[1] == 1));
}

/// Throughput of one sample of 128³ raw (linear, u8) + 4 packed classes (nearest) under a 30°
/// rotation about z, single thread. Run: `cargo test --release -p cellmap-runtime --test it --
/// --ignored --nocapture gather_throughput`. Measured on the shared 2-core build VM (AMD EPYC,
/// AVX2 path): 40–49 samples/s (linear ≈ 11–14 ms, packed ≈ 9–10 ms per sample); a scalar
/// per-voxel version of the same kernels measured 23 samples/s.
#[test]
#[ignore = "benchmark; run in --release"]
fn gather_throughput() {
    let spec = Spatial {
        rotate: [Some((30.0, 30.0)), None, None],
        ..Spatial::default()
    };
    let d = draw_spatial(&spec, &mut rng(0), [1024.0; 3]);
    let shape = [128usize, 128, 128];
    let grid = SampleGrid::new([2048.0; 3], shape, [8.0; 3], &d.matrix, [0.0; 3], [8.0; 3]);
    let level = [512u64; 3];
    let (raw_start, raw_shape) = grid.source_window(Interpolation::Linear, [0.0; 3]);
    let (lab_start, lab_shape) = grid.source_window(Interpolation::Nearest, [0.0; 3]);
    let mut r = rng(1);
    let raw: Vec<u8> = (0..voxels(raw_shape)).map(|_| r.next_u64() as u8).collect();
    let labels: Vec<u8> = (0..voxels(lab_shape)).map(|_| r.next_u64() as u8 & 0x0F).collect();
    let n = voxels(shape);
    let (mut raw_out, mut lab_out) = (vec![0.0f32; n], vec![0.0f32; 4 * n]);
    // Best of 5 rounds of 5 samples (the build machine is shared).
    let time = |f: &mut dyn FnMut()| {
        (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                (0..5).for_each(|_| f());
                t.elapsed().as_secs_f64() / 5.0
            })
            .fold(f64::INFINITY, f64::min)
    };
    let raw_s = time(&mut || {
        gather(
            &GatherSource {
                src: &raw,
                start: raw_start,
                shape: raw_shape,
                level_shape: level,
            },
            &GatherParams {
                grid: &grid,
                elastic: None,
                interpolation: Interpolation::Linear,
                fill: 0.0,
            },
            &mut raw_out,
        )
        .unwrap()
    });
    let lab_s = time(&mut || {
        gather_labels_packed(
            &GatherSource {
                src: &labels,
                start: lab_start,
                shape: lab_shape,
                level_shape: level,
            },
            &LabelParams {
                grid: &grid,
                elastic: None,
                classes: 4,
                unknown_mask: 0,
                fill: f32::NAN,
            },
            &mut lab_out,
        )
        .unwrap()
    });
    println!(
        "gather: {:.1} samples/s (128³ raw linear {:.1} ms + 4 classes packed {:.1} ms, 30° about z, 1 thread)",
        1.0 / (raw_s + lab_s),
        raw_s * 1e3,
        lab_s * 1e3
    );
}

#[test]
fn read_transformed_with_the_spatial_draw_equals_read() {
    use std::sync::Arc;

    use cellmap_runtime::{PlanOptions, plan, sample::Reader, sample::SampleRequest, synth::SynthVariant};

    let f = crate::loader::synth(SynthVariant::V2);
    let s = crate::loader::spec_with(&f.dir, |d| {
        d["augment"]["spatial"] = serde_json::json!({
            "mirror": {"z": 0.5, "y": 0.5, "x": 0.5},
            "transpose": ["y", "x"],
            "rotate": {"z": [-180, 180]},
            "elastic": {"spacing": [64, 64, 64], "sigma": 4, "probability": 0.5},
        });
    });
    let s = Arc::new(s);
    let planned = Arc::new(plan(&s, PlanOptions::default()).unwrap());
    let reader = Reader::new(Arc::clone(&s), Arc::clone(&planned), None);
    let grid = &planned.plan.datasets[0].grid;
    let empty: Vec<Vec<f32>> = planned
        .plan
        .batch
        .arrays
        .iter()
        .map(|l| vec![0.0; l.sample_len()])
        .collect();
    let mut elastic = 0;
    for index in 0..6u64 {
        let request = SampleRequest {
            dataset: 0,
            centre_nm: grid.centre([index.min(grid.shape[0] - 1), 0, 0]),
            key: SampleKey {
                seed: 5,
                epoch: 1,
                rank: 0,
                index,
            },
            spatial: true,
            values: true,
        };
        let draw = reader.spatial_draw(&request);
        assert_ne!(draw, SpatialDraw::identity());
        elastic += usize::from(draw.elastic.is_some());
        let (mut a, mut b) = (empty.clone(), empty.clone());
        reader.read(&mut reader.scratch(), &request, &mut a).unwrap();
        reader
            .read_transformed(&mut reader.scratch(), &request, &draw, &mut b)
            .unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!(crate::loader::same(x, y), "sample {index}");
        }
        // Without spatial augmentation the draw is the identity.
        let plain = SampleRequest {
            spatial: false,
            ..request
        };
        assert_eq!(reader.spatial_draw(&plain), SpatialDraw::identity());
    }
    assert!(elastic > 0);
}
