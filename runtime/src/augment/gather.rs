//! Sampling a source window on a [`SampleGrid`]: the rotation / elastic hot path.
//!
//! Rules (see the crate's geometry conventions): a point with continuous level index `u` is
//! inside iff `−0.5 ≤ u < n − 0.5` on every axis, else it gets the fill value. Nearest reads
//! voxel `floor(u + 0.5)`; linear is trilinear from `i0 = floor(u)` with neighbour indices clamped
//! to `[0, n − 1]`.
//!
//! Speed: per output row, the source coordinates advance by `step[2]` per voxel; the range of
//! the row whose every sample (and its interpolation neighbours) lies inside the window is
//! computed up front, and that range runs through a branch-free inner loop (no floor calls, no
//! bounds logic). Only the row ends near the window or level edge take the checked path.

use cellmap_schema::Interpolation;

use crate::augment::elastic::ElasticField;
use crate::augment::grid::{SampleGrid, StridedMap};

/// Why a gather could not run. Every variant is a caller bug (inconsistent buffers), not a data
/// problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatherError {
    /// The source slice does not hold the window's voxels.
    #[error("source window of shape `{shape:?}` needs {expected} values, the slice holds {len}")]
    SourceLength {
        /// Window shape.
        shape: [usize; 3],
        /// Voxels the shape needs.
        expected: usize,
        /// Length of the slice.
        len: usize,
    },
    /// The output slice does not match the grid.
    #[error("output of shape `{shape:?}` ({channels} channels) needs {expected} values, the slice holds {len}")]
    OutputLength {
        /// Grid shape.
        shape: [usize; 3],
        /// Output channels.
        channels: usize,
        /// Values needed.
        expected: usize,
        /// Length of the slice.
        len: usize,
    },
    /// The elastic field was evaluated for another output shape.
    #[error("elastic field has shape `{field:?}`, the grid `{grid:?}`")]
    ElasticShape {
        /// Shape of the field.
        field: [usize; 3],
        /// Shape of the grid.
        grid: [usize; 3],
    },
    /// The window is not within the level (it must be clipped before reading).
    #[error("source window at `{start:?}` of shape `{shape:?}` is not within the level of shape `{level_shape:?}`")]
    WindowOutsideLevel {
        /// Window start.
        start: [i64; 3],
        /// Window shape.
        shape: [usize; 3],
        /// Level shape.
        level_shape: [u64; 3],
    },
    /// A sample needs a level voxel that the window does not hold (the window was too small).
    #[error("a sample needs level voxel `{voxel:?}`, outside the window at `{start:?}` of shape `{shape:?}`")]
    OutsideWindow {
        /// The voxel needed.
        voxel: [i64; 3],
        /// Window start.
        start: [i64; 3],
        /// Window shape.
        shape: [usize; 3],
    },
    /// More than 8 classes in a packed label gather.
    #[error("packed labels hold at most 8 classes, got {classes}")]
    TooManyClasses {
        /// Classes requested.
        classes: usize,
    },
}

/// The validated source window and the per-axis constants of the gather loops.
struct Window<'a, T> {
    src: &'a [T],
    start: [i64; 3],
    shape: [usize; 3],
    level: [i64; 3],
    /// Element strides of the window, `[z, y, x]`.
    stride: [usize; 3],
}

impl<'a, T: Copy> Window<'a, T> {
    fn new(src: &'a [T], start: [i64; 3], shape: [usize; 3], level_shape: [u64; 3]) -> Result<Self, GatherError> {
        let expected = shape.iter().product::<usize>();
        if src.len() != expected {
            return Err(GatherError::SourceLength {
                shape,
                expected,
                len: src.len(),
            });
        }
        let level = level_shape.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        for b in 0..3 {
            if start[b] < 0 || start[b].saturating_add(shape[b] as i64) > level[b] {
                return Err(GatherError::WindowOutsideLevel {
                    start,
                    shape,
                    level_shape,
                });
            }
        }
        Ok(Window {
            src,
            start,
            shape,
            level,
            stride: [shape[1] * shape[2], shape[2], 1],
        })
    }

    /// Window element of level voxel `q`, or the error naming it.
    #[inline]
    fn element(&self, q: [i64; 3]) -> Result<usize, GatherError> {
        let mut idx = 0usize;
        for b in 0..3 {
            let local = q[b] - self.start[b];
            if local < 0 || local >= self.shape[b] as i64 {
                return Err(GatherError::OutsideWindow {
                    voxel: q,
                    start: self.start,
                    shape: self.shape,
                });
            }
            idx += local as usize * self.stride[b];
        }
        Ok(idx)
    }

    fn inside_level(&self, u: [f64; 3]) -> bool {
        (0..3).all(|b| u[b] >= -0.5 && u[b] < self.level[b] as f64 - 0.5)
    }

    /// Window element of the nearest voxel of level index `u`, `None` outside the level.
    fn nearest_checked(&self, u: [f64; 3]) -> Result<Option<usize>, GatherError> {
        if !self.inside_level(u) {
            return Ok(None);
        }
        self.element(u.map(|v| (v + 0.5).floor() as i64)).map(Some)
    }
}

impl<T: Copy + Into<f32>> Window<'_, T> {
    /// Trilinear value at level index `u`, `None` outside the level.
    fn linear_checked(&self, u: [f64; 3]) -> Result<Option<f32>, GatherError> {
        if !self.inside_level(u) {
            return Ok(None);
        }
        let mut i = [[0i64; 2]; 3];
        let mut w = [0.0f32; 3];
        for b in 0..3 {
            let f = u[b].floor();
            w[b] = (u[b] - f) as f32;
            let i0 = f as i64;
            i[b] = [i0.clamp(0, self.level[b] - 1), (i0 + 1).clamp(0, self.level[b] - 1)];
        }
        let mut c = [0.0f32; 8];
        for (k, v) in c.iter_mut().enumerate() {
            let q = [i[0][k >> 2], i[1][(k >> 1) & 1], i[2][k & 1]];
            *v = self.src[self.element(q)?].into();
        }
        Ok(Some(trilinear(c, w)))
    }
}

/// Trilinear blend of corners `c[zyx as bits]` with weights `w = [wz, wy, wx]` of the upper corner.
#[inline(always)]
fn trilinear(c: [f32; 8], w: [f32; 3]) -> f32 {
    let x00 = c[0] + w[2] * (c[1] - c[0]);
    let x01 = c[2] + w[2] * (c[3] - c[2]);
    let x10 = c[4] + w[2] * (c[5] - c[4]);
    let x11 = c[6] + w[2] * (c[7] - c[6]);
    let y0 = x00 + w[1] * (x01 - x00);
    let y1 = x10 + w[1] * (x11 - x10);
    y0 + w[0] * (y1 - y0)
}

/// Per-voxel displacement in source index units (monomorphised away without elastic).
trait Displace {
    fn at(&self, v: usize) -> [f64; 3];
}

struct NoDisplacement;

impl Displace for NoDisplacement {
    #[inline(always)]
    fn at(&self, _v: usize) -> [f64; 3] {
        [0.0; 3]
    }
}

struct Displacement<'a> {
    planes: [&'a [f32]; 3],
    inv_scale: [f64; 3],
}

impl Displace for Displacement<'_> {
    #[inline(always)]
    fn at(&self, v: usize) -> [f64; 3] {
        [0, 1, 2].map(|b| f64::from(self.planes[b][v]) * self.inv_scale[b])
    }
}

/// Output voxels `[lo, hi)` of one row whose samples are all safely inside the window: the fast
/// loop may index without checks. `lo_ok`/`hi_ok` bound the window-local, undisplaced index
/// (`lo_ok ≤ u < hi_ok`); `u(px) = base + px·s` is monotone in `px`, so checking the ends of the
/// range proves every voxel between them.
fn fast_range(base: [f64; 3], s: [f64; 3], n: usize, lo_ok: [f64; 3], hi_ok: [f64; 3]) -> (usize, usize) {
    if n == 0 {
        return (0, 0);
    }
    let ok = |px: usize| {
        (0..3).all(|b| {
            let u = base[b] + px as f64 * s[b];
            u >= lo_ok[b] && u < hi_ok[b]
        })
    };
    let (mut lo, mut hi) = (0.0f64, (n - 1) as f64);
    for b in 0..3 {
        if s[b] == 0.0 {
            if !(base[b] >= lo_ok[b] && base[b] < hi_ok[b]) {
                return (0, 0);
            }
            continue;
        }
        let (t0, t1) = ((lo_ok[b] - base[b]) / s[b], (hi_ok[b] - base[b]) / s[b]);
        let (t0, t1) = if s[b] > 0.0 { (t0, t1) } else { (t1, t0) };
        lo = lo.max(t0.ceil());
        hi = hi.min(t1.floor());
    }
    if lo.partial_cmp(&hi).is_none_or(|o| o == std::cmp::Ordering::Greater) {
        return (0, 0);
    }
    let (mut lo, mut hi) = (lo as usize, hi as usize);
    while lo <= hi && !ok(lo) {
        lo += 1;
    }
    while hi > lo && !ok(hi) {
        hi -= 1;
    }
    if lo > hi || !ok(lo) {
        return (0, 0);
    }
    (lo, hi + 1)
}

/// Shared per-gather setup: validated shapes, the displacement bound and window-local origin.
struct Plan {
    margin: [f64; 3],
    inv_scale: [f64; 3],
    shape: [usize; 3],
}

fn plan(grid: &SampleGrid, elastic: Option<&ElasticField>) -> Result<Plan, GatherError> {
    let inv_scale = grid.scale_nm.map(|s| 1.0 / s);
    let mut margin = [0.0; 3];
    if let Some(field) = elastic {
        if field.shape() != grid.shape {
            return Err(GatherError::ElasticShape {
                field: field.shape(),
                grid: grid.shape,
            });
        }
        // f32 rounding of the stored field stays far below this slack.
        for b in 0..3 {
            margin[b] = field.max_abs_nm()[b] * inv_scale[b] * (1.0 + 1e-6) + 1e-6;
        }
    }
    Ok(Plan {
        margin,
        inv_scale,
        shape: grid.shape,
    })
}

fn check_out(len: usize, shape: [usize; 3], channels: usize) -> Result<(), GatherError> {
    let expected = shape.iter().product::<usize>() * channels;
    if len != expected {
        return Err(GatherError::OutputLength {
            shape,
            channels,
            expected,
            len,
        });
    }
    Ok(())
}

/// Samples `src` (the window `[src_start, src_start + src_shape)` of a level of `level_shape`
/// voxels, already clipped to the level) at every point of `grid`, displaced by `elastic` if
/// given, into `out` (row-major, `grid.shape`). Points outside the level get `fill`.
///
/// # Errors
/// [`GatherError`] when the buffers are inconsistent, or a point inside the level needs a voxel
/// outside `src` (the window was too small: use [`SampleGrid::source_window`]).
#[allow(clippy::too_many_arguments)]
pub fn gather<T: Copy + Into<f32>>(
    src: &[T],
    src_start: [i64; 3],
    src_shape: [usize; 3],
    level_shape: [u64; 3],
    grid: &SampleGrid,
    elastic: Option<&ElasticField>,
    interpolation: Interpolation,
    fill: f32,
    out: &mut [f32],
) -> Result<(), GatherError> {
    let window = Window::new(src, src_start, src_shape, level_shape)?;
    let plan = plan(grid, elastic)?;
    check_out(out.len(), plan.shape, 1)?;
    match elastic {
        None => gather_rows(&window, grid, &plan, &NoDisplacement, interpolation, fill, out),
        Some(field) => {
            let disp = Displacement {
                planes: [field.component(0), field.component(1), field.component(2)],
                inv_scale: plan.inv_scale,
            };
            gather_rows(&window, grid, &plan, &disp, interpolation, fill, out)
        }
    }
}

/// Window-local bounds of the fast range: linear needs `0 ≤ u < n − 1` (both neighbours in the
/// window), nearest `−0.5 ≤ u < n − 0.5`, both shrunk by the displacement margin.
fn fast_bounds(shape: [usize; 3], margin: [f64; 3], interpolation: Interpolation) -> ([f64; 3], [f64; 3]) {
    let mut lo = [0.0; 3];
    let mut hi = [0.0; 3];
    for b in 0..3 {
        let n = shape[b] as f64;
        let (l, h) = match interpolation {
            Interpolation::Linear => (0.0, n - 1.0),
            Interpolation::Nearest => (-0.5, n - 0.5),
        };
        lo[b] = l + margin[b];
        hi[b] = h - margin[b];
    }
    (lo, hi)
}

fn gather_rows<T: Copy + Into<f32>, D: Displace>(
    w: &Window<'_, T>,
    grid: &SampleGrid,
    plan: &Plan,
    disp: &D,
    interpolation: Interpolation,
    fill: f32,
    out: &mut [f32],
) -> Result<(), GatherError> {
    let [nz, ny, nx] = plan.shape;
    let (lo_ok, hi_ok) = fast_bounds(w.shape, plan.margin, interpolation);
    let s2 = grid.step[2];
    let [sz, sy, _] = w.stride;
    let start = w.start.map(|v| v as f64);
    for pz in 0..nz {
        for py in 0..ny {
            let row = (pz * ny + py) * nx;
            let out_row = &mut out[row..row + nx];
            // Window-local coordinates of px = 0; level coordinates are `local + start`.
            let base = [0, 1, 2]
                .map(|b| grid.origin[b] + pz as f64 * grid.step[0][b] + py as f64 * grid.step[1][b] - start[b]);
            let (lo, hi) = fast_range(base, s2, nx, lo_ok, hi_ok);
            let slow = |px: usize| {
                let d = disp.at(row + px);
                let u = [0, 1, 2].map(|b| base[b] + px as f64 * s2[b] + d[b] + start[b]);
                match interpolation {
                    Interpolation::Nearest => Ok(w.nearest_checked(u)?.map_or(fill, |i| w.src[i].into())),
                    Interpolation::Linear => Ok(w.linear_checked(u)?.unwrap_or(fill)),
                }
            };
            for px in (0..lo).chain(hi.max(lo)..nx) {
                out_row[px] = slow(px)?;
            }
            let fast = &mut out_row[lo..hi];
            match interpolation {
                Interpolation::Nearest => {
                    for (k, o) in fast.iter_mut().enumerate() {
                        let px = lo + k;
                        let t = px as f64;
                        let d = disp.at(row + px);
                        // Inside the fast range `u + 0.5 ≥ 0`, so truncation is floor.
                        let iz = (base[0] + t * s2[0] + d[0] + 0.5) as usize;
                        let iy = (base[1] + t * s2[1] + d[1] + 0.5) as usize;
                        let ix = (base[2] + t * s2[2] + d[2] + 0.5) as usize;
                        *o = w.src[iz * sz + iy * sy + ix].into();
                    }
                }
                Interpolation::Linear => {
                    for (k, o) in fast.iter_mut().enumerate() {
                        let px = lo + k;
                        let t = px as f64;
                        let d = disp.at(row + px);
                        let uz = base[0] + t * s2[0] + d[0];
                        let uy = base[1] + t * s2[1] + d[1];
                        let ux = base[2] + t * s2[2] + d[2];
                        // Inside the fast range `u ≥ 0`, so truncation is floor.
                        let (iz, iy, ix) = (uz as usize, uy as usize, ux as usize);
                        let wgt = [
                            (uz - iz as f64) as f32,
                            (uy - iy as f64) as f32,
                            (ux - ix as f64) as f32,
                        ];
                        let i = iz * sz + iy * sy + ix;
                        let c = [
                            w.src[i].into(),
                            w.src[i + 1].into(),
                            w.src[i + sy].into(),
                            w.src[i + sy + 1].into(),
                            w.src[i + sz].into(),
                            w.src[i + sz + 1].into(),
                            w.src[i + sz + sy].into(),
                            w.src[i + sz + sy + 1].into(),
                        ];
                        *o = trilinear(c, wgt);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Nearest-neighbour gather of up to 8 binary classes packed as the bits of one `u8` per voxel
/// (bit `c` = class `c`) into `classes` output channels in one pass: `out` is `[c][z][y][x]`.
/// Class `c` is all NaN when bit `c` of `unknown_mask` is set; voxels outside the level get
/// `fill` in every other channel. Window rules as in [`gather`].
///
/// # Errors
/// As [`gather`], plus [`GatherError::TooManyClasses`] for `classes > 8`.
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
    let window = Window::new(src, src_start, src_shape, level_shape)?;
    let plan = plan(grid, elastic)?;
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

/// Row chunk of the packed gather (bytes are staged on the stack, then unpacked per class).
const CHUNK: usize = 256;

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
    let [nz, ny, nx] = plan.shape;
    let voxels = nz * ny * nx;
    for c in 0..classes {
        if unknown_mask >> c & 1 == 1 {
            out[c * voxels..(c + 1) * voxels].fill(f32::NAN);
        }
    }
    let known: Vec<usize> = (0..classes).filter(|c| unknown_mask >> c & 1 == 0).collect();
    if known.is_empty() {
        return Ok(());
    }
    let (lo_ok, hi_ok) = fast_bounds(w.shape, plan.margin, Interpolation::Nearest);
    let s2 = grid.step[2];
    let [sz, sy, _] = w.stride;
    let start = w.start.map(|v| v as f64);
    let mut bytes = [0u8; CHUNK];
    let mut inside = [0u8; CHUNK];
    for pz in 0..nz {
        for py in 0..ny {
            let row = (pz * ny + py) * nx;
            let base = [0, 1, 2]
                .map(|b| grid.origin[b] + pz as f64 * grid.step[0][b] + py as f64 * grid.step[1][b] - start[b]);
            let (lo, hi) = fast_range(base, s2, nx, lo_ok, hi_ok);
            for chunk_start in (0..nx).step_by(CHUNK) {
                let chunk_end = (chunk_start + CHUNK).min(nx);
                for px in chunk_start..chunk_end {
                    let k = px - chunk_start;
                    let d = disp.at(row + px);
                    let t = px as f64;
                    if px >= lo && px < hi {
                        let iz = (base[0] + t * s2[0] + d[0] + 0.5) as usize;
                        let iy = (base[1] + t * s2[1] + d[1] + 0.5) as usize;
                        let ix = (base[2] + t * s2[2] + d[2] + 0.5) as usize;
                        bytes[k] = w.src[iz * sz + iy * sy + ix];
                        inside[k] = 1;
                    } else {
                        let u = [0, 1, 2].map(|b| base[b] + t * s2[b] + d[b] + start[b]);
                        match w.nearest_checked(u)? {
                            Some(i) => (bytes[k], inside[k]) = (w.src[i], 1),
                            None => (bytes[k], inside[k]) = (0, 0),
                        }
                    }
                }
                let len = chunk_end - chunk_start;
                for &c in &known {
                    let dest = &mut out[c * voxels + row + chunk_start..c * voxels + row + chunk_end];
                    for ((o, &b), &ins) in dest.iter_mut().zip(&bytes[..len]).zip(&inside[..len]) {
                        let bit = f32::from((b >> c) & 1);
                        *o = if ins != 0 { bit } else { fill };
                    }
                }
            }
        }
    }
    Ok(())
}

/// Copies source voxels straight into `out` along a [`StridedMap`] (axis-aligned transforms:
/// no interpolation). `src` is the window `[src_start, src_start + src_shape)` of the level,
/// clipped to it; output voxels whose source voxel lies outside the level get `fill`.
///
/// # Errors
/// As [`gather`]: inconsistent buffers, or a needed in-level voxel outside `src`.
pub fn copy_strided<T: Copy + Into<f32>>(
    map: &StridedMap,
    src: &[T],
    src_start: [i64; 3],
    src_shape: [usize; 3],
    level_shape: [u64; 3],
    fill: f32,
    out: &mut [f32],
) -> Result<(), GatherError> {
    let w = Window::new(src, src_start, src_shape, level_shape)?;
    check_out(out.len(), map.src_shape, 1)?;
    // The part of the map's box inside the level.
    let mut lo = [0i64; 3];
    let mut hi = [0i64; 3];
    for b in 0..3 {
        lo[b] = map.src_start[b].max(0);
        hi[b] = (map.src_start[b] + map.src_shape[b] as i64).min(w.level[b]);
        if lo[b] >= hi[b] {
            out.fill(fill);
            return Ok(());
        }
    }
    if (0..3).any(|b| lo[b] > map.src_start[b] || hi[b] < map.src_start[b] + map.src_shape[b] as i64) {
        out.fill(fill);
    }
    // Both corners inside the window imply the whole box is.
    w.element(lo)?;
    w.element([hi[0] - 1, hi[1] - 1, hi[2] - 1])?;
    let [dz, dy, dx] = map.dest_strides;
    for qz in lo[0]..hi[0] {
        for qy in lo[1]..hi[1] {
            let src_row = w.element([qz, qy, lo[2]])?;
            let row_len = (hi[2] - lo[2]) as usize;
            let first = map.dest_offset as isize
                + (qz - map.src_start[0]) as isize * dz
                + (qy - map.src_start[1]) as isize * dy
                + (lo[2] - map.src_start[2]) as isize * dx;
            for (k, &v) in w.src[src_row..src_row + row_len].iter().enumerate() {
                out[(first + k as isize * dx) as usize] = v.into();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
            &src,
            [0; 3],
            [6; 3],
            level,
            &g,
            None,
            Interpolation::Linear,
            -1.0,
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

    #[test]
    fn too_small_window_is_an_error() {
        let src = vec![0u8; 8];
        let g = SampleGrid::new([2.0; 3], [3, 3, 3], [1.0; 3], &I, [0.0; 3], [1.0; 3]);
        let mut out = vec![0.0; 27];
        let err = gather(
            &src,
            [0; 3],
            [2; 3],
            [10; 3],
            &g,
            None,
            Interpolation::Nearest,
            0.0,
            &mut out,
        );
        assert!(matches!(err, Err(GatherError::OutsideWindow { .. })));
        let err = gather(
            &src,
            [9, 0, 0],
            [2; 3],
            [10; 3],
            &g,
            None,
            Interpolation::Nearest,
            0.0,
            &mut out,
        );
        assert!(matches!(err, Err(GatherError::WindowOutsideLevel { .. })));
        let err = gather(
            &src,
            [0; 3],
            [2; 3],
            [10; 3],
            &g,
            None,
            Interpolation::Nearest,
            0.0,
            &mut out[..3],
        );
        assert!(matches!(err, Err(GatherError::OutputLength { .. })));
    }

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
