//! Packed binary labels: up to 8 classes as the bits of one byte per voxel, gathered with nearest
//! neighbour into one channel per class (of any batch element type) in a single pass.

use cellmap_schema::Interpolation;

#[cfg(target_arch = "x86_64")]
use super::avx2::{Row8, RowGeometry, all_at_most};
use super::{
    Displace, Displacement, GatherError, GatherSource, NoDisplacement, Plan, SourceWindow, along, check_out, element32,
    fast_bounds, fast_range, plan, row_origin,
};
use crate::augment::elastic::ElasticField;
use crate::augment::grid::SampleGrid;
use crate::cpu::Features;
use crate::dtype::BatchElem;
use crate::kernels::Element;
use crate::kernels::stream::{store_fence, store_stream, streams};

/// Row chunk of the packed gather (bytes are staged on the stack, then unpacked per class).
const CHUNK: usize = 256;

/// How a [`gather_labels_packed`] samples: the output grid, an optional elastic displacement,
/// how many classes the bytes pack, which of them are unknown, and the value of points outside
/// the level.
#[derive(Clone, Copy, Debug)]
pub struct LabelParams<'a> {
    /// The output grid in level index space.
    pub grid: &'a SampleGrid,
    /// Per-voxel displacement (evaluated for `grid.shape`).
    pub elastic: Option<&'a ElasticField>,
    /// Classes packed (at most 8): bit `c` of a byte is class `c`.
    pub classes: usize,
    /// Bit `c` set: class `c` is unknown (all NaN).
    pub unknown_mask: u8,
    /// Value of points outside the level in every known channel.
    pub fill: f32,
}

/// Nearest-neighbour gather of up to 8 binary classes packed as the bits of one `u8` per voxel
/// (bit `c` = class `c`) into `params.classes` output channels in one pass: `out` is
/// `[c][z][y][x]`. Class `c` is all NaN when bit `c` of `params.unknown_mask` is set; voxels
/// outside the level get `params.fill` in every other channel. Window rules as in
/// [`gather`](super::gather).
///
/// # Errors
/// As [`gather`](super::gather), plus [`GatherError::TooManyClasses`] for more than 8 classes.
pub fn gather_labels_packed<O: BatchElem + Element>(
    source: &GatherSource<'_, u8>,
    params: &LabelParams<'_>,
    out: &mut [O],
) -> Result<(), GatherError> {
    if params.classes > 8 {
        return Err(GatherError::TooManyClasses {
            classes: params.classes,
        });
    }
    let mut window = SourceWindow::new(source)?;
    let plan = plan(params.grid, params.elastic)?;
    window.anchor = plan.anchor;
    check_out(out.len(), plan.shape, params.classes)?;
    match params.elastic {
        None => labels_rows(&window, params, &plan, &NoDisplacement, out),
        Some(field) => labels_rows(&window, params, &plan, &Displacement::new(field, &plan), out),
    }
}

/// Dispatches to a copy of the kernel compiled with AVX2 when the CPU has it: the same IEEE
/// operations (Rust never contracts to FMA), so the same bits, only wider vectors.
fn labels_rows<D: Displace, O: BatchElem + Element>(
    w: &SourceWindow<'_, u8>,
    params: &LabelParams<'_>,
    plan: &Plan,
    disp: &D,
    out: &mut [O],
) -> Result<(), GatherError> {
    #[cfg(target_arch = "x86_64")]
    if Features::get().avx2 {
        // SAFETY: the CPU supports AVX2 (`Features::get`).
        return unsafe { labels_rows_avx2(w, params, plan, disp, out) };
    }
    labels_rows_impl::<D, O, false>(w, params, plan, disp, out)
}

/// The kernel compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn labels_rows_avx2<D: Displace, O: BatchElem + Element>(
    w: &SourceWindow<'_, u8>,
    params: &LabelParams<'_>,
    plan: &Plan,
    disp: &D,
    out: &mut [O],
) -> Result<(), GatherError> {
    labels_rows_impl::<D, O, true>(w, params, plan, disp, out)
}

/// Per-row constants of the packed gather and its stack buffers.
struct Rows<O> {
    /// The outputs: class present, absent, and outside the level (`fill`), as `O`.
    one: O,
    zero: O,
    fill: O,
    lo_ok: [f32; 3],
    hi_ok: [f32; 3],
    anchor: [f64; 3],
    offset: u32,
    /// Bits of the known classes.
    known: u8,
    /// Voxels per output channel.
    voxels: usize,
    /// Outputs larger than the caches go to memory with non-temporal stores (as window reads do).
    stream: bool,
    bytes: [u8; CHUNK],
    inside: [u8; CHUNK],
    idx: [u32; CHUNK],
    unpacked: [O; CHUNK],
}

/// The row loop; `AVX2` is true only in the copy compiled with AVX2 (it unlocks the gather
/// intrinsics of [`bytes_avx2`]).
#[inline(always)]
fn labels_rows_impl<D: Displace, O: BatchElem + Element, const AVX2: bool>(
    w: &SourceWindow<'_, u8>,
    params: &LabelParams<'_>,
    plan: &Plan,
    disp: &D,
    out: &mut [O],
) -> Result<(), GatherError> {
    let [nz, ny, nx] = plan.shape;
    let voxels = nz * ny * nx;
    let classes = params.classes;
    let unknown_mask = params.unknown_mask;
    for c in 0..classes {
        if unknown_mask >> c & 1 == 1 {
            out[c * voxels..(c + 1) * voxels].fill(O::from_f32(f32::NAN));
        }
    }
    let known = !unknown_mask & (((1u16 << classes) - 1) as u8);
    if known == 0 {
        return Ok(());
    }
    let (lo_ok, hi_ok) = fast_bounds(w, plan.margin, Interpolation::Nearest);
    let mut rows = Rows {
        one: O::from_f32(1.0),
        zero: O::from_f32(0.0),
        fill: O::from_f32(params.fill),
        lo_ok,
        hi_ok,
        anchor: w.anchor.map(|v| v as f64),
        offset: w.offset32(),
        known,
        voxels,
        stream: streams(voxels * size_of::<O>()),
        bytes: [0u8; CHUNK],
        inside: [0u8; CHUNK],
        idx: [0u32; CHUNK],
        unpacked: [O::ZERO; CHUNK],
    };
    for pz in 0..nz {
        for py in 0..ny {
            labels_row::<D, O, AVX2>(w, params, plan, disp, &mut rows, [pz, py], out)?;
        }
    }
    if rows.stream {
        store_fence();
    }
    Ok(())
}

/// One output row `(pz, py)` of [`labels_rows_impl`], chunk by chunk: the bytes of the row
/// ends (checked) and of the fast range (indices first, then the loads), unpacked per class.
#[inline(always)]
fn labels_row<D: Displace, O: BatchElem + Element, const AVX2: bool>(
    w: &SourceWindow<'_, u8>,
    params: &LabelParams<'_>,
    plan: &Plan,
    disp: &D,
    r: &mut Rows<O>,
    [pz, py]: [usize; 2],
    out: &mut [O],
) -> Result<(), GatherError> {
    let [_, ny, nx] = plan.shape;
    let s2 = plan.step;
    let [sz, sy, _] = w.stride;
    let row = (pz * ny + py) * nx;
    let base = row_origin(params.grid, r.anchor, pz, py);
    let (lo, hi) = fast_range(base, s2, nx, r.lo_ok, r.hi_ok);
    for chunk_start in (0..nx).step_by(CHUNK) {
        let chunk_end = (chunk_start + CHUNK).min(nx);
        let (fast_lo, fast_hi) = (
            lo.clamp(chunk_start, chunk_end),
            hi.clamp(chunk_start, chunk_end).max(lo.clamp(chunk_start, chunk_end)),
        );
        for px in (chunk_start..fast_lo).chain(fast_hi..chunk_end) {
            let k = px - chunk_start;
            let u = disp.add(row + px, along(base, s2, px as f32));
            (r.bytes[k], r.inside[k]) = match w.nearest_checked(u)? {
                Some(i) => (w.src[i], 1),
                None => (0, 0),
            };
        }
        // Fast part: indices first (independent), then the loads.
        let (mut k0, k1) = (fast_lo - chunk_start, fast_hi - chunk_start);
        r.inside[k0..k1].fill(1);
        #[cfg(target_arch = "x86_64")]
        if AVX2 && D::NONE {
            // SAFETY: `avx2` is true only in `labels_rows_avx2`, which runs after the CPU
            // was found to support AVX2.
            let geometry = RowGeometry {
                base,
                step: s2,
                stride: w.stride,
                offset: r.offset,
            };
            k0 += unsafe { bytes_avx2(w.src, &geometry, fast_lo, &mut r.bytes[k0..k1], &mut r.idx[k0..k1]) };
        }
        for (k, i) in r.idx[k0..k1].iter_mut().enumerate() {
            let px = chunk_start + k0 + k;
            let u = disp.add(row + px, along(base, s2, px as f32));
            // Inside the fast range `u + 0.5 ≥ 0`, so truncation is floor.
            // Below 2³¹ elements ([`fast_bounds`]): 32-bit arithmetic, vectorised.
            let q = [(u[0] + 0.5) as u32, (u[1] + 0.5) as u32, (u[2] + 0.5) as u32];
            *i = element32(q, sz, sy, r.offset) as u32;
        }
        for (b, &i) in r.bytes[k0..k1].iter_mut().zip(&r.idx[k0..k1]) {
            *b = w.src[i as usize];
        }
        unpack(r, params, row + chunk_start, chunk_end - chunk_start, out);
    }
    Ok(())
}

/// Writes the `len` staged bytes of output voxels `at..at + len` to every known class channel.
#[inline(always)]
fn unpack<O: BatchElem + Element>(r: &mut Rows<O>, params: &LabelParams<'_>, at: usize, len: usize, out: &mut [O]) {
    let voxels = r.voxels;
    let (one, zero, fill) = (r.one, r.zero, r.fill);
    for c in (0..params.classes).filter(|c| r.known >> c & 1 == 1) {
        let dest = &mut out[c * voxels + at..c * voxels + at + len];
        let mask = 1u8 << c;
        let target = if r.stream { &mut r.unpacked[..len] } else { &mut *dest };
        for ((o, &b), &ins) in target.iter_mut().zip(&r.bytes[..len]).zip(&r.inside[..len]) {
            let bit = if b & mask != 0 { one } else { zero };
            *o = if ins != 0 { bit } else { fill };
        }
        if r.stream {
            store_stream(&r.unpacked[..len], dest);
        }
    }
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
        gather_labels_packed(
            &GatherSource {
                src: &src,
                start: [0; 3],
                shape: [4; 3],
                level_shape: [4; 3],
            },
            &LabelParams {
                grid: &g,
                elastic: None,
                classes: 3,
                unknown_mask: 0b100,
                fill: 7.0,
            },
            &mut out,
        )
        .unwrap();
        // Grid x indices 1, 2, 3, 4 (outside).
        assert_eq!(&out[0..4], &[1.0, 0.0, 1.0, 7.0]);
        assert_eq!(&out[4..8], &[0.0, 1.0, 1.0, 7.0]);
        assert!(out[8..12].iter().all(|v| v.is_nan()));
    }
}
