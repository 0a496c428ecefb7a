//! The AVX2 intrinsic kernels of the gathers (`u8` windows): coordinates and indices 8 voxels
//! per instruction, then scalar loads, then the blends, with the same `f32` operations as the
//! portable loops (so the same bits).

use super::BLOCK;

/// One output row as the intrinsic kernels see it: coordinates `base + t·step` ([`along`](super::along)) and
/// the window's element `stride` and `offset` ([`element32`](super::element32)).
#[derive(Clone, Copy)]
pub(super) struct RowGeometry {
    /// Coordinates of voxel 0 ([`row_origin`](super::row_origin)).
    pub(super) base: [f32; 3],
    /// Coordinate change per voxel.
    pub(super) step: [f32; 3],
    /// Element strides of the window.
    pub(super) stride: [usize; 3],
    /// [`SourceWindow::offset32`](super::SourceWindow::offset32).
    pub(super) offset: u32,
}

/// What the AVX2 kernels need of one output row: its source coordinates `base + t·s` for 8
/// voxels at a time (the `f32` arithmetic of [`along`](super::along), so the same values) and the window's
/// element strides `sz`, `sy` (below 2³¹).
#[derive(Clone, Copy)]
pub(super) struct Row8 {
    base: [std::arch::x86_64::__m256; 3],
    step: [std::arch::x86_64::__m256; 3],
    lanes: std::arch::x86_64::__m256,
    /// `sz` in every lane.
    pub(super) sz: std::arch::x86_64::__m256i,
    /// `sy` in every lane.
    pub(super) sy: std::arch::x86_64::__m256i,
    /// The window's element offset ([`SourceWindow::offset32`](super::SourceWindow::offset32)) in every lane.
    offset: std::arch::x86_64::__m256i,
}

impl Row8 {
    /// The row's constants, broadcast to every lane.
    #[target_feature(enable = "avx2")]
    pub(super) fn new(row: &RowGeometry) -> Row8 {
        use std::arch::x86_64::{_mm256_set1_epi32, _mm256_set1_ps, _mm256_setr_ps};
        Row8 {
            base: row.base.map(|v| _mm256_set1_ps(v)),
            step: row.step.map(|v| _mm256_set1_ps(v)),
            lanes: _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0),
            sz: _mm256_set1_epi32(row.stride[0] as i32),
            sy: _mm256_set1_epi32(row.stride[1] as i32),
            offset: _mm256_set1_epi32(row.offset as i32),
        }
    }

    /// Coordinates of voxels `t0 .. t0 + 8` per axis (`t0 + lane` is exact below 2²⁴).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) fn coords(&self, t0: usize) -> [std::arch::x86_64::__m256; 3] {
        use std::arch::x86_64::{_mm256_add_ps, _mm256_mul_ps, _mm256_set1_ps};
        let t = _mm256_add_ps(_mm256_set1_ps(t0 as f32), self.lanes);
        [0, 1, 2].map(|a| _mm256_add_ps(self.base[a], _mm256_mul_ps(t, self.step[a])))
    }

    /// Element index `i[0]·sz + i[1]·sy + i[2] − offset` per lane (32-bit, wrapping: as
    /// [`element32`](super::element32)).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) fn index(&self, i: [std::arch::x86_64::__m256i; 3]) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::{_mm256_add_epi32, _mm256_mullo_epi32, _mm256_sub_epi32};
        let sum = _mm256_add_epi32(
            _mm256_add_epi32(_mm256_mullo_epi32(i[0], self.sz), _mm256_mullo_epi32(i[1], self.sy)),
            i[2],
        );
        _mm256_sub_epi32(sum, self.offset)
    }
}

/// True when every lane of `v`, read as unsigned, is at most the same lane of `limit`.
#[target_feature(enable = "avx2")]
pub(super) fn all_at_most(v: std::arch::x86_64::__m256i, limit: std::arch::x86_64::__m256i) -> bool {
    use std::arch::x86_64::{_mm256_cmpeq_epi32, _mm256_max_epu32, _mm256_movemask_epi8};
    _mm256_movemask_epi8(_mm256_cmpeq_epi32(_mm256_max_epu32(v, limit), limit)) == -1
}

/// The trilinear fast loop for a `u8` window with AVX2 intrinsics, in blocks of [`BLOCK`]
/// voxels: the same coordinate arithmetic as [`linear_fast`](super::linear_fast) (`f32` `base + t·s`, truncation,
/// weights `u − ⌊u⌋`) 8 voxels at a time, the corner pairs with scalar 16-bit loads (`x` and
/// `x + 1` are adjacent bytes; on the AMD Zen cores we measured, scalar loads beat
/// `vpgatherdd`: 9.2 → 6.2 ms per 128³ rotation), and the blend of [`trilinear`](super::trilinear) with separate
/// multiplies and adds — so the same bits. Returns how many voxels of `out` it wrote (a
/// multiple of 8, stopping early where a load would read past the end of `src`); the caller
/// finishes the rest.
///
/// Every voxel `px0..px0 + out.len()` must lie in the fast range of [`linear_fast`](super::linear_fast) (both
/// neighbours inside the window, window below 2³¹ elements) for the values to be right; memory
/// safety does not depend on it (every index is bounds-checked against `src`).
#[target_feature(enable = "avx2")]
pub(super) fn linear_u8_avx2(src: &[u8], geometry: &RowGeometry, px0: usize, out: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let [sz, sy, _] = geometry.stride;
    let len = src.len();
    let mut done = 0;
    let row = Row8::new(geometry);
    // The largest first-corner index whose 2-byte loads stay inside `src`.
    let Some(last) = len.checked_sub(sz + sy + 2).and_then(|v| i32::try_from(v).ok()) else {
        return 0;
    };
    let last = _mm256_set1_epi32(last);
    let byte = _mm256_set1_epi32(0xff);
    let lerp = |a: __m256, b: __m256, w: __m256| _mm256_add_ps(a, _mm256_mul_ps(w, _mm256_sub_ps(b, a)));
    // Per block: indices and weights (vectors), then the corner pairs with scalar 16-bit loads
    // (`x` and `x + 1` are adjacent bytes), then the blends (vectors).
    const GROUPS: usize = BLOCK / 8;
    let mut idx = [_mm256_setzero_si256(); GROUPS];
    let mut wgt = [[_mm256_setzero_ps(); 3]; GROUPS];
    let mut pairs = [[0u16; BLOCK]; 4];
    let offsets = [0, sy, sz, sz + sy];
    let bytes = src.as_ptr();
    while done + 8 <= out.len() {
        let want = ((out.len() - done) / 8).min(GROUPS);
        let mut groups = 0;
        while groups < want {
            let u = row.coords(px0 + done + groups * 8);
            let i = u.map(|u| _mm256_cvttps_epi32(u));
            for a in 0..3 {
                wgt[groups][a] = _mm256_sub_ps(u[a], _mm256_cvtepi32_ps(i[a]));
            }
            let v = row.index(i);
            // Every lane `0 ≤ idx ≤ last` as one unsigned comparison (a negative index is huge).
            if !all_at_most(v, last) {
                break;
            }
            idx[groups] = v;
            groups += 1;
        }
        if groups == 0 {
            break;
        }
        // SAFETY: `__m256i` and `[u32; 8]` have the same size, any bits are valid `u32`s.
        let flat: &[u32] = unsafe { std::slice::from_raw_parts(idx.as_ptr().cast::<u32>(), groups * 8) };
        for (k, &i) in flat.iter().enumerate() {
            for (c, off) in offsets.iter().enumerate() {
                // SAFETY: `i ≤ last`, so `i + off + 1 ≤ last + sz + sy + 1 < len`.
                pairs[c][k] = unsafe { bytes.add(i as usize + off).cast::<u16>().read_unaligned() };
            }
        }
        for g in 0..groups {
            let corner = |c: usize| {
                // SAFETY: 8 `u16` at `8 g` lie in `pairs[c]` (`g < GROUPS`).
                let p = _mm256_cvtepu16_epi32(unsafe { _mm_loadu_si128(pairs[c].as_ptr().add(g * 8).cast()) });
                let lo = _mm256_cvtepi32_ps(_mm256_and_si256(p, byte));
                let hi = _mm256_cvtepi32_ps(_mm256_srli_epi32::<8>(p));
                lerp(lo, hi, wgt[g][2])
            };
            let (x00, x01, x10, x11) = (corner(0), corner(1), corner(2), corner(3));
            let y0 = lerp(x00, x01, wgt[g][1]);
            let y1 = lerp(x10, x11, wgt[g][1]);
            let v = lerp(y0, y1, wgt[g][0]);
            // SAFETY: `done + 8 g + 8 <= out.len()`: the 8 floats stored lie in `out`.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(done + g * 8), v) };
        }
        done += groups * 8;
        if groups < want {
            break;
        }
    }
    done
}
