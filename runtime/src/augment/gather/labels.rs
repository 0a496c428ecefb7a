//! Packed binary labels: up to 8 classes as the bits of one byte per voxel, gathered with nearest
//! neighbour into one `f32` channel per class in a single pass.

use super::{
    Displace, Displacement, GatherError, NoDisplacement, Plan, Window, along, check_out, element32, fast_bounds,
    fast_range, plan, row_origin,
};
#[cfg(target_arch = "x86_64")]
use super::{Row8, RowGeometry, all_at_most};
use crate::augment::elastic::ElasticField;
use crate::augment::grid::SampleGrid;
use crate::window::{STREAM_MIN_BYTES, store_fence, store_stream};
use cellmap_schema::Interpolation;

/// Row chunk of the packed gather (bytes are staged on the stack, then unpacked per class).
const CHUNK: usize = 256;

/// Nearest-neighbour gather of up to 8 binary classes packed as the bits of one `u8` per voxel
/// (bit `c` = class `c`) into `classes` output channels in one pass: `out` is `[c][z][y][x]`.
/// Class `c` is all NaN when bit `c` of `unknown_mask` is set; voxels outside the level get
/// `fill` in every other channel. Window rules as in [`gather`](super::gather).
///
/// # Errors
/// As [`gather`](super::gather), plus [`GatherError::TooManyClasses`] for `classes > 8`.
#[allow(clippy::too_many_arguments)]
pub fn gather_labels_packed(
    src: &[u8],
    src_start: [i64; 3],
    src_shape: [usize; 3],
    level_shape: [u64; 3],
    grid: &SampleGrid,
    elastic: Option<&ElasticField>,
    classes: usize,
    unknown_mask: u8,
    fill: f32,
    out: &mut [f32],
) -> Result<(), GatherError> {
    if classes > 8 {
        return Err(GatherError::TooManyClasses { classes });
    }
    let mut window = Window::new(src, src_start, src_shape, level_shape)?;
    let plan = plan(grid, elastic)?;
    window.anchor = plan.anchor;
    check_out(out.len(), plan.shape, classes)?;
    match elastic {
        None => labels_rows(&window, grid, &plan, &NoDisplacement, classes, unknown_mask, fill, out),
        Some(field) => {
            let disp = Displacement {
                planes: [field.component(0), field.component(1), field.component(2)],
                inv_scale: plan.inv_scale,
            };
            labels_rows(&window, grid, &plan, &disp, classes, unknown_mask, fill, out)
        }
    }
}

/// Dispatches to a copy of the kernel compiled with AVX2 when the CPU has it: the same IEEE
/// operations (Rust never contracts to FMA), so the same bits, only wider vectors.
#[allow(clippy::too_many_arguments)]
fn labels_rows<D: Displace>(
    w: &Window<'_, u8>,
    grid: &SampleGrid,
    plan: &Plan,
    disp: &D,
    classes: usize,
    unknown_mask: u8,
    fill: f32,
    out: &mut [f32],
) -> Result<(), GatherError> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { labels_rows_avx2(w, grid, plan, disp, classes, unknown_mask, fill, out) };
    }
    labels_rows_impl(w, grid, plan, disp, classes, unknown_mask, fill, out, false)
}

/// The kernel compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
fn labels_rows_avx2<D: Displace>(
    w: &Window<'_, u8>,
    grid: &SampleGrid,
    plan: &Plan,
    disp: &D,
    classes: usize,
    unknown_mask: u8,
    fill: f32,
    out: &mut [f32],
) -> Result<(), GatherError> {
    labels_rows_impl(w, grid, plan, disp, classes, unknown_mask, fill, out, true)
}

/// The row loop; `avx2` is true only in the copy compiled with AVX2 (it unlocks the gather
/// intrinsics of [`bytes_avx2`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn labels_rows_impl<D: Displace>(
    w: &Window<'_, u8>,
    grid: &SampleGrid,
    plan: &Plan,
    disp: &D,
    classes: usize,
    unknown_mask: u8,
    fill: f32,
    out: &mut [f32],
    avx2: bool,
) -> Result<(), GatherError> {
    let [nz, ny, nx] = plan.shape;
    let voxels = nz * ny * nx;
    for c in 0..classes {
        if unknown_mask >> c & 1 == 1 {
            out[c * voxels..(c + 1) * voxels].fill(f32::NAN);
        }
    }
    let known = !unknown_mask & (((1u16 << classes) - 1) as u8);
    if known == 0 {
        return Ok(());
    }
    let (lo_ok, hi_ok) = fast_bounds(w, plan.margin, Interpolation::Nearest);
    let s2 = plan.step;
    let [sz, sy, _] = w.stride;
    let anchor = w.anchor.map(|v| v as f64);
    let offset = w.offset32();
    let mut bytes = [0u8; CHUNK];
    let mut inside = [0u8; CHUNK];
    let mut idx = [0u32; CHUNK];
    // Outputs larger than the caches go to memory with non-temporal stores (as window reads do).
    let stream = voxels * size_of::<f32>() >= STREAM_MIN_BYTES;
    let mut unpacked = [0f32; CHUNK];
    for pz in 0..nz {
        for py in 0..ny {
            let row = (pz * ny + py) * nx;
            let base = row_origin(grid, anchor, pz, py);
            let (lo, hi) = fast_range(base, s2, nx, lo_ok, hi_ok);
            for chunk_start in (0..nx).step_by(CHUNK) {
                let chunk_end = (chunk_start + CHUNK).min(nx);
                let (fast_lo, fast_hi) = (
                    lo.clamp(chunk_start, chunk_end),
                    hi.clamp(chunk_start, chunk_end).max(lo.clamp(chunk_start, chunk_end)),
                );
                for px in (chunk_start..fast_lo).chain(fast_hi..chunk_end) {
                    let k = px - chunk_start;
                    let u = disp.add(row + px, along(base, s2, px as f32));
                    (bytes[k], inside[k]) = match w.nearest_checked(u)? {
                        Some(i) => (w.src[i], 1),
                        None => (0, 0),
                    };
                }
                // Fast part: indices first (independent), then the loads.
                let (mut k0, k1) = (fast_lo - chunk_start, fast_hi - chunk_start);
                inside[k0..k1].fill(1);
                #[cfg(target_arch = "x86_64")]
                if avx2 && D::NONE {
                    // SAFETY: `avx2` is true only in `labels_rows_avx2`, which runs after the CPU
                    // was found to support AVX2.
                    let geometry = RowGeometry {
                        base,
                        step: s2,
                        stride: w.stride,
                        offset,
                    };
                    k0 += unsafe { bytes_avx2(w.src, &geometry, fast_lo, &mut bytes[k0..k1], &mut idx[k0..k1]) };
                }
                for (k, i) in idx[k0..k1].iter_mut().enumerate() {
                    let px = chunk_start + k0 + k;
                    let u = disp.add(row + px, along(base, s2, px as f32));
                    // Inside the fast range `u + 0.5 ≥ 0`, so truncation is floor.
                    // Below 2³¹ elements ([`fast_bounds`]): 32-bit arithmetic, vectorised.
                    let q = [(u[0] + 0.5) as u32, (u[1] + 0.5) as u32, (u[2] + 0.5) as u32];
                    *i = element32(q, sz, sy, offset) as u32;
                }
                for (b, &i) in bytes[k0..k1].iter_mut().zip(&idx[k0..k1]) {
                    *b = w.src[i as usize];
                }
                let len = chunk_end - chunk_start;
                for c in (0..classes).filter(|c| known >> c & 1 == 1) {
                    let dest = &mut out[c * voxels + row + chunk_start..c * voxels + row + chunk_end];
                    let mask = 1u8 << c;
                    let target = if stream { &mut unpacked[..len] } else { &mut *dest };
                    for ((o, &b), &ins) in target.iter_mut().zip(&bytes[..len]).zip(&inside[..len]) {
                        let bit = if b & mask != 0 { 1.0 } else { 0.0 };
                        *o = if ins != 0 { bit } else { fill };
                    }
                    if stream {
                        store_stream(&unpacked[..len], dest);
                    }
                }
            }
        }
    }
    if stream {
        store_fence();
    }
    Ok(())
}

/// The nearest-neighbour byte loads of the fast range with AVX2: the same coordinates as the
/// scalar loop (`f32` `base + t·s`, `+ 0.5`, truncation) 8 voxels at a time, all indices of the
/// chunk first (into `idx`, the caller's scratch), then scalar byte loads (faster than `vpgatherdd` on the AMD Zen cores we
/// measured). Returns how many of `bytes` it wrote (a multiple of 8, stopping early where a
/// load would read past the end of `src`).
///
/// The voxels `px0..px0 + bytes.len()` must lie in the fast range for the values to be right;
/// memory safety does not depend on it (every index is bounds-checked against `src`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss)]
fn bytes_avx2(src: &[u8], geometry: &RowGeometry, px0: usize, bytes: &mut [u8], idx: &mut [u32]) -> usize {
    use std::arch::x86_64::*;
    let row = Row8::new(geometry);
    let half = _mm256_set1_ps(0.5);
    let Some(last) = src.len().checked_sub(1).and_then(|v| i32::try_from(v).ok()) else {
        return 0;
    };
    let last = _mm256_set1_epi32(last);
    let mut done = 0;
    let ptr = src.as_ptr();
    let n = bytes.len().min(idx.len());
    while done + 8 <= n {
        let u = row.coords(px0 + done);
        let q = u.map(|u| _mm256_cvttps_epi32(_mm256_add_ps(u, half)));
        let v = row.index(q);
        // Every lane `0 ≤ idx ≤ last` as one unsigned comparison (a negative index is huge).
        if !all_at_most(v, last) {
            break;
        }
        // SAFETY: 8 `u32` at `done` fit `idx` (`done + 8 <= n <= idx.len()`).
        unsafe { _mm256_storeu_si256(idx.as_mut_ptr().add(done).cast(), v) };
        done += 8;
    }
    for (b, &i) in bytes[..done].iter_mut().zip(&idx[..done]) {
        // SAFETY: `i ≤ last < len`.
        *b = unsafe { *ptr.add(i as usize) };
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

    #[test]
    fn packed_labels_unpack_bits_unknown_and_fill() {
        // Level 4³ whose byte is the x index (bits 0 and 1 vary).
        let src: Vec<u8> = (0..64).map(|i| (i % 4) as u8).collect();
        let g = SampleGrid::new([1.5, 1.5, 2.5], [1, 1, 4], [1.0; 3], &I, [0.0; 3], [1.0; 3]);
        let mut out = vec![0.0; 12];
        gather_labels_packed(&src, [0; 3], [4; 3], [4; 3], &g, None, 3, 0b100, 7.0, &mut out).unwrap();
        // Grid x indices 1, 2, 3, 4 (outside).
        assert_eq!(&out[0..4], &[1.0, 0.0, 1.0, 7.0]);
        assert_eq!(&out[4..8], &[0.0, 1.0, 1.0, 7.0]);
        assert!(out[8..12].iter().all(|v| v.is_nan()));
    }
}
