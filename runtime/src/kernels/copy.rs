//! Row copies from a decoded chunk into a destination: a box of a chunk into a [`StridedDest`]
//! (row by row, or through square blocks or cubic tiles when the destination is transposed), and
//! [`Runs`] of consecutive rows into a contiguous buffer (compiled for AVX2 when the CPU has it).
//! Every copy applies a per-element `f(&mut dest, src)` and returns false instead of panicking
//! when an index is out of range. No kernel knows where its chunk came from.

use super::dest::StridedDest;
use crate::cpu::Features;

/// The box of a chunk a [`Span::Region`] copies: its extent is the destination's shape.
#[derive(Clone, Copy, Debug)]
pub struct ChunkBox {
    /// Chunk dims `z y x` (C order, channel 0 block first).
    pub dims: [usize; 3],
    /// First voxel of the box inside the chunk.
    pub lo: [usize; 3],
}

/// A box of a chunk and where it goes in the destination of a [`Span::Region`] copy
/// (destinations whose x stride is not ±1): the box's voxel `(i, j, k)` goes to destination
/// voxel `base + i·strides[0] + j·strides[1] + k·strides[2]`.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    /// The source box.
    pub from: ChunkBox,
    /// Destination index of the box's first voxel.
    pub base: isize,
    /// Destination strides.
    pub strides: [isize; 3],
    /// The box's extent (voxels).
    pub shape: [usize; 3],
}

/// What one call of a chunk copy covers; the destination slice is passed beside it. Small and
/// `Copy` (a region by reference): copies are called once per chunk and pass, a few hundred
/// elements each, so what a call moves shows in the read's speed.
#[derive(Clone, Copy, Debug)]
pub enum Span<'r> {
    /// A box of the chunk into a strided destination.
    Region(&'r Region),
    /// Contiguous runs on consecutive chunk rows (by reference too: the callee reads the fields
    /// one by one, as they were written).
    Rows(&'r Runs),
}

/// `rows` runs of `len` elements: run `r` reads from `src_offset + r·src_stride` and writes
/// `dest[r·dest_stride ..][.. len]`, back to front when `reversed` (a mirrored x axis).
#[derive(Clone, Copy, Debug)]
pub struct Runs {
    /// Index of the first run's first element in the chunk.
    pub src_offset: usize,
    /// Elements between the starts of consecutive source rows.
    pub src_stride: usize,
    /// Elements per run.
    pub len: usize,
    /// Runs.
    pub rows: usize,
    /// Elements between the starts of consecutive destination runs.
    pub dest_stride: usize,
    /// Write each run back to front.
    pub reversed: bool,
}

/// Edge of the cubic tiles of [`copy_tiled`]: 16³ f32 destinations span 256 cache lines (16 KiB).
const TILE: usize = 16;

/// The hot loop: rows along x, contiguous when the x stride is ±1; a transposed destination
/// (x not contiguous) is copied block by block or tile by tile instead.
#[inline]
pub(crate) fn copy_generic<S: Copy, T: Copy>(
    src: &[S],
    from: ChunkBox,
    dest: &mut StridedDest<'_, T>,
    f: impl Fn(&mut T, S) + Copy,
) -> bool {
    let [_, cy, cx] = from.dims;
    let [ez, ey, ex] = dest.shape;
    let [dz, dy, dx] = dest.strides;
    if dx.unsigned_abs() != 1 && ex > 1 {
        return match [dz, dy].iter().position(|d| d.unsigned_abs() == 1) {
            Some(c) => copy_transposed(src, from, dest, c, f),
            None => copy_tiled(src, from, dest, f),
        };
    }
    let data = &mut *dest.data;
    for i in 0..ez {
        for j in 0..ey {
            let s0 = ((from.lo[0] + i) * cy + from.lo[1] + j) * cx + from.lo[2];
            let Some(row) = src.get(s0..s0 + ex) else {
                return false;
            };
            let d0 = dest.base + i as isize * dz + j as isize * dy;
            match dx {
                1 => {
                    let Some(d) = data.get_mut(d0 as usize..d0 as usize + ex) else {
                        return false;
                    };
                    for (d, s) in d.iter_mut().zip(row) {
                        f(d, *s);
                    }
                }
                -1 => {
                    let lo = d0 - (ex as isize - 1);
                    let Some(d) = data.get_mut(lo as usize..=d0 as usize) else {
                        return false;
                    };
                    for (d, s) in d.iter_mut().rev().zip(row) {
                        f(d, *s);
                    }
                }
                _ => {
                    let mut di = d0;
                    for s in row {
                        let Some(d) = data.get_mut(di as usize) else {
                            return false;
                        };
                        f(d, *s);
                        di += dx;
                    }
                }
            }
        }
    }
    true
}

/// Edge of the square blocks of [`copy_transposed`].
const BLOCK: usize = 16;

/// [`copy_generic`] for a destination whose contiguous axis is source axis `c` (0 or 1) rather
/// than x (a transpose): blocks of `BLOCK × BLOCK` voxels of the plane (`c`, x) are loaded
/// from `BLOCK` source rows (contiguous reads), then written as `BLOCK` destination runs
/// (contiguous writes, whole cache lines), `f` applied on the way out.
fn copy_transposed<S: Copy, T: Copy>(
    src: &[S],
    from: ChunkBox,
    dest: &mut StridedDest<'_, T>,
    c: usize,
    f: impl Fn(&mut T, S) + Copy,
) -> bool {
    let [_, cy, cx] = from.dims;
    let o = 1 - c; // the other of z and y
    let src_stride = [cy * cx, cx];
    let (e_o, e_c, ex) = (dest.shape[o], dest.shape[c], dest.shape[2]);
    let (d_o, d_c, dx) = (dest.strides[o], dest.strides[c], dest.strides[2]);
    let data = &mut *dest.data;
    let Some(&first) = src.first() else {
        return false;
    };
    let mut tile = [[first; BLOCK]; BLOCK];
    for i in 0..e_o {
        for c0 in (0..e_c).step_by(BLOCK) {
            let nc = BLOCK.min(e_c - c0);
            for x0 in (0..ex).step_by(BLOCK) {
                let nx = BLOCK.min(ex - x0);
                // Load: tile[k][m] = source (o = i, c = c0 + m, x = x0 + k).
                for m in 0..nc {
                    let mut lo = [0usize; 2];
                    lo[o] = from.lo[o] + i;
                    lo[c] = from.lo[c] + c0 + m;
                    let s0 = lo[0] * src_stride[0] + lo[1] * src_stride[1] + from.lo[2] + x0;
                    let Some(row) = src.get(s0..s0 + nx) else {
                        return false;
                    };
                    for (k, v) in row.iter().enumerate() {
                        tile[k][m] = *v;
                    }
                }
                // Store: for each x, the run over c is contiguous in the destination.
                for (k, column) in tile.iter().enumerate().take(nx) {
                    let d0 = dest.base + i as isize * d_o + c0 as isize * d_c + (x0 + k) as isize * dx;
                    let lo = if d_c > 0 { d0 } else { d0 - (nc as isize - 1) };
                    let Some(run) = usize::try_from(lo).ok().and_then(|lo| data.get_mut(lo..lo + nc)) else {
                        return false;
                    };
                    if d_c > 0 {
                        for (d, v) in run.iter_mut().zip(&column[..nc]) {
                            f(d, *v);
                        }
                    } else {
                        for (d, v) in run.iter_mut().rev().zip(&column[..nc]) {
                            f(d, *v);
                        }
                    }
                }
            }
        }
    }
    true
}

/// [`copy_generic`] for a destination whose x stride is not ±1 (a transposed read): row by row,
/// each source row would write one element per destination cache line (and often per page);
/// 16³ tiles keep the written lines in L1 until they are full.
fn copy_tiled<S: Copy, T: Copy>(
    src: &[S],
    from: ChunkBox,
    dest: &mut StridedDest<'_, T>,
    f: impl Fn(&mut T, S) + Copy,
) -> bool {
    let [_, cy, cx] = from.dims;
    let [ez, ey, ex] = dest.shape;
    let [dz, dy, dx] = dest.strides;
    let data = &mut *dest.data;
    for i0 in (0..ez).step_by(TILE) {
        for j0 in (0..ey).step_by(TILE) {
            for k0 in (0..ex).step_by(TILE) {
                for i in i0..(i0 + TILE).min(ez) {
                    for j in j0..(j0 + TILE).min(ey) {
                        let s0 = ((from.lo[0] + i) * cy + from.lo[1] + j) * cx + from.lo[2];
                        let k1 = (k0 + TILE).min(ex);
                        let Some(row) = src.get(s0 + k0..s0 + k1) else {
                            return false;
                        };
                        let mut di = dest.base + i as isize * dz + j as isize * dy + k0 as isize * dx;
                        for s in row {
                            let Some(d) = usize::try_from(di).ok().and_then(|di| data.get_mut(di)) else {
                                return false;
                            };
                            f(d, *s);
                            di += dx;
                        }
                    }
                }
            }
        }
    }
    true
}

/// One [`Span`] of a chunk: a region through [`copy_generic`], or a row run through one loop
/// the compiler vectorises (the copy compiled with AVX2 where the CPU has it).
#[inline]
pub(crate) fn copy_span<S: Copy, T: Copy>(
    src: &[S],
    span: Span<'_>,
    dest: &mut [T],
    f: impl Fn(&mut T, S) + Copy,
) -> bool {
    match span {
        Span::Region(r) => {
            let mut dest = StridedDest {
                data: dest,
                base: r.base,
                strides: r.strides,
                shape: r.shape,
            };
            copy_generic(src, r.from, &mut dest, f)
        }
        Span::Rows(&runs) => {
            if runs.rows == 0 {
                return true;
            }
            if !runs.fit(src.len(), dest.len()) {
                return false;
            }
            #[cfg(target_arch = "x86_64")]
            if Features::get().avx2 {
                // SAFETY: the CPU supports AVX2 (`Features::get`).
                unsafe { runs_avx2(src, dest, runs, f) };
                return true;
            }
            runs.copy(src, dest, f);
            true
        }
    }
}

/// [`copy_span`] for a chunk whose elements all equal `src[0]`: rows are filled with the value
/// `f` makes of it, without reading the chunk (a region goes through [`copy_generic`]). `f` must
/// write the whole element, as every copy closure does.
#[inline]
pub(crate) fn fill_span<S: Copy, T: Copy>(
    src: &[S],
    span: Span<'_>,
    dest: &mut [T],
    f: impl Fn(&mut T, S) + Copy,
) -> bool {
    let Span::Rows(&runs) = span else {
        return copy_span(src, span, dest, f);
    };
    if runs.rows == 0 || runs.len == 0 {
        return true;
    }
    if !runs.fit(src.len(), dest.len()) {
        return false;
    }
    let mut value = dest[0];
    f(&mut value, src[0]);
    for r in 0..runs.rows {
        let d = r * runs.dest_stride;
        dest[d..d + runs.len].fill(value);
    }
    true
}

/// The runs of a [`Span::Rows`] (bounds checked by the caller).
impl Runs {
    /// Whether every run (at least one) lies in a source of `src_len` and a destination of
    /// `dest_len` elements.
    fn fit(self, src_len: usize, dest_len: usize) -> bool {
        let last = self.rows.saturating_sub(1);
        let src_end = last
            .checked_mul(self.src_stride)
            .and_then(|v| v.checked_add(self.src_offset))
            .and_then(|v| v.checked_add(self.len));
        let dest_end = last.checked_mul(self.dest_stride).and_then(|v| v.checked_add(self.len));
        src_end.is_some_and(|e| e <= src_len) && dest_end.is_some_and(|e| e <= dest_len)
    }

    #[inline(always)]
    fn copy<S: Copy, T: Copy>(self, src: &[S], dest: &mut [T], f: impl Fn(&mut T, S) + Copy) {
        for r in 0..self.rows {
            let s = self.src_offset + r * self.src_stride;
            let d = r * self.dest_stride;
            run(&src[s..s + self.len], &mut dest[d..d + self.len], self.reversed, f);
        }
    }
}

/// [`Runs::copy`] compiled with AVX2 (twice the vector width of the x86-64 baseline; the element
/// operations are the same, so are the results).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn runs_avx2<S: Copy, T: Copy>(src: &[S], dest: &mut [T], runs: Runs, f: impl Fn(&mut T, S) + Copy) {
    runs.copy(src, dest, f);
}

/// The row-run loop: `f` for every element, front to back or back to front.
#[inline(always)]
fn run<S: Copy, T: Copy>(row: &[S], dest: &mut [T], reversed: bool, f: impl Fn(&mut T, S) + Copy) {
    if reversed {
        for (d, s) in dest.iter_mut().rev().zip(row) {
            f(d, *s);
        }
    } else {
        for (d, s) in dest.iter_mut().zip(row) {
            f(d, *s);
        }
    }
}

#[cfg(test)]
mod tests;
