//! Sampling a source window on a [`SampleGrid`]: the rotation / elastic hot path.
//!
//! Rules (see the crate's geometry conventions): a point with continuous level index `u` is
//! inside iff `−0.5 ≤ u < n − 0.5` on every axis, else it gets the fill value. Nearest reads
//! voxel `floor(u + 0.5)`; linear is trilinear from `i0 = floor(u)` with neighbour indices clamped
//! to `[0, n − 1]`.
//!
//! Precision: the loops compute `v = u − anchor` in `f32`, the anchor an integer voxel just below
//! everything the grid samples (so `v` is small and positive, whatever the window or level).
//! Each row's start is evaluated in `f64` and rounded once; along the row `v = base + t·s` in
//! `f32`. The error against the exact affine map is below `2.4e-7 ×` the grid's extent in
//! source voxels (5e-5 voxels for a 128³ crop rotated at equal voxel sizes), far below what
//! the interpolation can show; [`SampleGrid::source_window`] pads windows for it.
//!
//! Speed: per output row, the source coordinates advance by `step[2]` per voxel; the range of
//! the row whose every sample (and its interpolation neighbours) lies inside the window is
//! computed up front, and that range runs through a branch-free inner loop (no floor calls, no
//! bounds logic). Only the row ends near the window or level edge take the checked path.
//! The fast loops work in blocks (coordinates, then loads, then blends) and are compiled twice,
//! for the baseline target and for AVX2, picked at run time (bit-identical results: every path
//! computes the same `f32` operations, Rust never contracts them to FMA). With AVX2, `u8` windows
//! (EM raw, packed labels) take intrinsic kernels: coordinates and indices 8 voxels per
//! instruction, then scalar loads (a 16-bit load per corner pair for trilinear: `x` and `x + 1`
//! are adjacent bytes), then the blends. Large outputs are staged per row and written with
//! non-temporal stores.

use cellmap_schema::Interpolation;

use super::Element;
use super::stream::{store_fence, streams};
use crate::augment::elastic::ElasticField;
use crate::augment::grid::SampleGrid;
use crate::cpu::Features;
use crate::dtype::{BatchElem, f32_slice_mut};

#[cfg(target_arch = "x86_64")]
mod avx2;
mod labels;
mod rows;
mod strided;

#[cfg(target_arch = "x86_64")]
use avx2::{RowGeometry, linear_u8_avx2};
pub use labels::{LabelParams, gather_labels_packed};
use rows::{Row, continue_row};
pub use strided::copy_strided;

/// A source window of a gather: `src` holds the voxels `[start, start + shape)` (C order) of a
/// level of `level_shape` voxels, already clipped to the level.
#[derive(Clone, Copy, Debug)]
pub struct GatherSource<'a, T> {
    /// The window's voxels, C order.
    pub src: &'a [T],
    /// First level voxel of the window, `z y x`.
    pub start: [i64; 3],
    /// Window shape (voxels).
    pub shape: [usize; 3],
    /// Shape of the level (voxels).
    pub level_shape: [u64; 3],
}

/// How a [`gather`] samples: the output grid, an optional elastic displacement, the
/// interpolation and the value of points outside the level.
#[derive(Clone, Copy, Debug)]
pub struct GatherParams<'a> {
    /// The output grid in level index space.
    pub grid: &'a SampleGrid,
    /// Per-voxel displacement (evaluated for `grid.shape`).
    pub elastic: Option<&'a ElasticField>,
    /// Nearest or trilinear.
    pub interpolation: Interpolation,
    /// Value of points outside the level.
    pub fill: f32,
}

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
    /// An output row is longer than a gather into a type other than `f32` converts on the stack
    /// (gather such rows into `f32` and convert after).
    #[error("output rows of {voxels} voxels are longer than the {max} a converting gather takes")]
    RowTooLong {
        /// Voxels per output row.
        voxels: usize,
        /// The longest row converted on the stack.
        max: usize,
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
struct SourceWindow<'a, T> {
    src: &'a [T],
    start: [i64; 3],
    shape: [usize; 3],
    level: [i64; 3],
    /// Element strides of the window, `[z, y, x]`.
    stride: [usize; 3],
    /// Level voxel of coordinate `v = 0`: the gather's coordinates are `v = u − anchor`
    /// ([`Plan::anchor`]; the window start until the plan sets it).
    anchor: [i64; 3],
}

impl<'a, T: Copy> SourceWindow<'a, T> {
    fn new(source: &GatherSource<'a, T>) -> Result<Self, GatherError> {
        let GatherSource {
            src,
            start,
            shape,
            level_shape,
        } = *source;
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
        Ok(SourceWindow {
            src,
            start,
            shape,
            level,
            stride: [shape[1] * shape[2], shape[2], 1],
            anchor: start,
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

    /// Whether coordinate `v` lies inside the level: `−0.5 ≤ anchor + v < n − 0.5`, exactly
    /// (the sum of an `f32` and an integer below 2²⁹ is exact in `f64`).
    fn inside_level(&self, v: [f32; 3]) -> bool {
        (0..3).all(|b| {
            let u = f64::from(v[b]) + self.anchor[b] as f64;
            u >= -0.5 && u < self.level[b] as f64 - 0.5
        })
    }

    /// Window element of the nearest voxel of coordinate `v` (`floor(v + 0.5)`, the sum in `f32`
    /// as the fast loops compute it), `None` outside the level.
    fn nearest_checked(&self, v: [f32; 3]) -> Result<Option<usize>, GatherError> {
        if !self.inside_level(v) {
            return Ok(None);
        }
        let q = [0, 1, 2].map(|b| (v[b] + 0.5).floor() as i64 + self.anchor[b]);
        self.element(q).map(Some)
    }

    /// `Σ (start − anchor)·stride`, wrapped to 32 bits: the fast loops' element index is
    /// `Σ ⌊v⌋·stride − offset` (exact modulo 2³², and below 2³¹ in the window).
    fn offset32(&self) -> u32 {
        (0..3).fold(0u32, |acc, b| {
            acc.wrapping_add(((self.start[b] - self.anchor[b]) as u64 as u32).wrapping_mul(self.stride[b] as u32))
        })
    }
}

impl<T: Copy + Into<f32> + Default> SourceWindow<'_, T> {
    /// Trilinear value at coordinate `v`, `None` outside the level.
    fn linear_checked(&self, v: [f32; 3]) -> Result<Option<f32>, GatherError> {
        if !self.inside_level(v) {
            return Ok(None);
        }
        let mut i = [[0i64; 2]; 3];
        let mut w = [0.0f32; 3];
        for b in 0..3 {
            let f = v[b].floor();
            // Exact: the fraction of an `f32` is an `f32`.
            w[b] = v[b] - f;
            let i0 = f as i64 + self.anchor[b];
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
    /// True for the identity (no elastic field).
    const NONE: bool = false;
    /// `u` displaced by the field at output voxel `v`.
    fn add(&self, v: usize, u: [f32; 3]) -> [f32; 3];
}

struct NoDisplacement;

impl Displace for NoDisplacement {
    const NONE: bool = true;
    #[inline(always)]
    fn add(&self, _v: usize, u: [f32; 3]) -> [f32; 3] {
        u
    }
}

struct Displacement<'a> {
    planes: [&'a [f32]; 3],
    inv_scale: [f32; 3],
}

impl<'a> Displacement<'a> {
    /// The field's planes, scaled to source index units.
    fn new(field: &'a ElasticField, plan: &Plan) -> Self {
        Displacement {
            planes: [field.component(0), field.component(1), field.component(2)],
            inv_scale: plan.inv_scale,
        }
    }
}

impl Displace for Displacement<'_> {
    #[inline(always)]
    fn add(&self, v: usize, u: [f32; 3]) -> [f32; 3] {
        [
            u[0] + self.planes[0][v] * self.inv_scale[0],
            u[1] + self.planes[1][v] * self.inv_scale[1],
            u[2] + self.planes[2][v] * self.inv_scale[2],
        ]
    }
}

/// Output voxels `[lo, hi)` of one row whose samples are all safely inside the window: the fast
/// loop may index without checks. `lo_ok`/`hi_ok` bound the undisplaced coordinate
/// (`lo_ok ≤ v < hi_ok`, [`fast_bounds`]); `v(px) = base + px·s` is monotone in `px` (so is its
/// rounding), so checking the ends of the range proves every voxel between them.
#[inline(always)]
fn fast_range(base: [f32; 3], s: [f32; 3], n: usize, lo_ok: [f32; 3], hi_ok: [f32; 3]) -> (usize, usize) {
    if n == 0 {
        return (0, 0);
    }
    let ok = |px: usize| {
        (0..3).all(|b| {
            let u = base[b] + px as f32 * s[b];
            u >= lo_ok[b] && u < hi_ok[b]
        })
    };
    // The analytic bounds in `f64` are estimates; `ok` (the loops' arithmetic) settles them.
    let (base, s) = (base.map(f64::from), s.map(f64::from));
    let (lo_ok, hi_ok) = (lo_ok.map(f64::from), hi_ok.map(f64::from));
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

/// Shared per-gather setup: validated shapes, the displacement bound and the anchor of the
/// coordinates.
struct Plan {
    margin: [f64; 3],
    inv_scale: [f32; 3],
    shape: [usize; 3],
    /// Coordinate change per voxel along an output row (`grid.step[2]` in `f32`).
    step: [f32; 3],
    /// The level voxel the `f32` coordinates count from: one below the lowest voxel any sample
    /// can reach, so every sample has `v > 0` (truncation is floor) and `v` stays below the
    /// grid's extent (precision does not depend on where the window or level lie), and so the
    /// same for every window the grid is gathered from (a window's result does not depend on
    /// its size, only on holding the voxels sampled).
    anchor: [i64; 3],
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
        // The rounding of `u + d·inv_scale` in `f32` stays far below this slack.
        for b in 0..3 {
            margin[b] = field.max_abs_nm()[b] * inv_scale[b] * (1.0 + 1e-5) + 1e-3;
        }
    }
    let (lo, _) = grid.index_range();
    let anchor = [0, 1, 2].map(|b| (lo[b] - margin[b]).floor() as i64 - 1);
    Ok(Plan {
        margin,
        inv_scale: inv_scale.map(|v| v as f32),
        shape: grid.shape,
        step: grid.step[2].map(|v| v as f32),
        anchor,
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

/// Samples `source` (a window of a level, already clipped to it) at every point of
/// `params.grid`, displaced by `params.elastic` if given, into `out` (row-major, `grid.shape`).
/// Points outside the level get `params.fill`.
///
/// # Errors
/// [`GatherError`] when the buffers are inconsistent, or a point inside the level needs a voxel
/// outside the window (the window was too small: use [`SampleGrid::source_window`]).
pub fn gather<T: Copy + Into<f32> + Default + 'static, O: BatchElem + Element>(
    source: &GatherSource<'_, T>,
    params: &GatherParams<'_>,
    out: &mut [O],
) -> Result<(), GatherError> {
    gather_map(source, params, |x| x, out)
}

/// [`gather`] with `map` applied to every sampled value (fill included) before it is stored as
/// `O`: a leading pointwise value transform fused into the gather.
///
/// # Errors
/// As [`gather`].
pub(crate) fn gather_map<T: Copy + Into<f32> + Default + 'static, O: BatchElem + Element>(
    source: &GatherSource<'_, T>,
    params: &GatherParams<'_>,
    map: impl Fn(f32) -> f32 + Copy,
    out: &mut [O],
) -> Result<(), GatherError> {
    let mut window = SourceWindow::new(source)?;
    let plan = plan(params.grid, params.elastic)?;
    window.anchor = plan.anchor;
    check_out(out.len(), plan.shape, 1)?;
    if f32_slice_mut(out).is_none() && plan.shape[2] > MAX_CONVERTED_ROW {
        return Err(GatherError::RowTooLong {
            voxels: plan.shape[2],
            max: MAX_CONVERTED_ROW,
        });
    }
    match params.elastic {
        None => gather_rows(&window, params, &plan, &NoDisplacement, map, out),
        Some(field) => {
            let disp = Displacement::new(field, &plan);
            gather_rows(&window, params, &plan, &disp, map, out)
        }
    }
}

/// Bounds on the coordinate `v` of the fast range: with `o = start − anchor` (the window's
/// first voxel), linear needs `o ≤ v < o + n − 1` (both neighbours in the window), nearest
/// `o − 0.5 ≤ v < o + n − 0.5` with `v + 0.5` (rounded to `f32`) below `o + n`; both also need
/// `v` (linear) or `v + 0.5` (nearest) non-negative, so that truncation is floor. All shrunk
/// by the displacement margin and rounded inwards to `f32`.
fn fast_bounds<T>(w: &SourceWindow<'_, T>, margin: [f64; 3], interpolation: Interpolation) -> ([f32; 3], [f32; 3]) {
    let mut lo = [0.0; 3];
    let mut hi = [f32::NEG_INFINITY; 3];
    // The fast loops compute element indices in 32 bits (`i32` coordinates, `u32` products: the
    // conversions and multiplications vectorise); larger windows take the checked path.
    let small = w
        .shape
        .iter()
        .try_fold(1usize, |n, &s| n.checked_mul(s))
        .is_some_and(|n| n <= i32::MAX as usize);
    if !small {
        return (lo, hi);
    }
    for b in 0..3 {
        let (o, n) = ((w.start[b] - w.anchor[b]) as f64, w.shape[b] as f64);
        let (l, h) = match interpolation {
            Interpolation::Linear => (o.max(0.0), o + n - 1.0),
            // `v + 0.5` rounds up to `o + n` only within half an `f32` ulp of it.
            Interpolation::Nearest => (
                (o - 0.5).max(-0.5),
                o + n - 0.5 - (o + n).abs() * 2.0 * f64::from(f32::EPSILON),
            ),
        };
        lo[b] = f32_at_least(l + margin[b]);
        hi[b] = f32_at_most(h - margin[b]);
    }
    (lo, hi)
}

/// Window element of the voxel whose coordinates truncate to `q`: `Σ q·stride − offset` in
/// wrapping 32-bit arithmetic (exact: the window holds fewer than 2³¹ elements, [`fast_bounds`]
/// leaves no fast range otherwise).
#[inline(always)]
pub(super) fn element32(q: [u32; 3], sz: usize, sy: usize, offset: u32) -> usize {
    q[0].wrapping_mul(sz as u32)
        .wrapping_add(q[1].wrapping_mul(sy as u32))
        .wrapping_add(q[2])
        .wrapping_sub(offset) as usize
}

/// The smallest `f32` not below `v`.
fn f32_at_least(v: f64) -> f32 {
    let f = v as f32;
    if f64::from(f) < v { f.next_up() } else { f }
}

/// The largest `f32` not above `v`.
fn f32_at_most(v: f64) -> f32 {
    let f = v as f32;
    if f64::from(f) > v { f.next_down() } else { f }
}

/// Coordinates `v = base + t·s` in `f32`: every path (the AVX2 kernels, the blocked
/// loops, the checked per-voxel path) computes a voxel's coordinates with exactly these two
/// operations, so they agree to the bit. Written out: `array::map` does not always inline in
/// the hot loops.
#[inline(always)]
fn along(base: [f32; 3], s: [f32; 3], t: f32) -> [f32; 3] {
    [base[0] + t * s[0], base[1] + t * s[1], base[2] + t * s[2]]
}

/// Coordinates `v` (level index minus `anchor`) of voxel 0 of output row `(pz, py)`: the affine
/// map evaluated in `f64`, then rounded once to `f32`.
#[inline(always)]
fn row_origin(grid: &SampleGrid, anchor: [f64; 3], pz: usize, py: usize) -> [f32; 3] {
    [0, 1, 2].map(|b| (grid.origin[b] + pz as f64 * grid.step[0][b] + py as f64 * grid.step[1][b] - anchor[b]) as f32)
}

/// Longest output row staged for non-temporal stores.
const ROW_BUF: usize = 1024;

/// Longest output row a gather into a type other than `f32` takes (rows are computed in `f32` on
/// the stack, then converted); callers stage longer rows in `f32` themselves.
pub(crate) const MAX_CONVERTED_ROW: usize = ROW_BUF;

/// Voxels per block of the fast linear loop: coordinates and weights of a block are computed
/// first (independent, vectorisable), then its corner loads, then the blends (vectorisable).
const BLOCK: usize = 64;

/// The fast linear loop over output voxels `px0..px0 + out.len()` of one row, all inside the
/// fast range (`0 ≤ u < n − 1` window-local on every axis, so truncation is floor and both
/// neighbours are in the window).
#[inline(always)]
fn linear_fast<T: Copy + Into<f32> + Default, D: Displace>(
    w: &SourceWindow<'_, T>,
    base: [f32; 3],
    s2: [f32; 3],
    disp: &D,
    row: usize,
    px0: usize,
    out: &mut [f32],
) {
    let [sz, sy, _] = w.stride;
    let offset = w.offset32();
    let mut idx = [0u32; BLOCK];
    let mut wgt = [[0.0f32; BLOCK]; 3];
    // Corners in the source type: the loads are plain moves, the conversions run vectorised
    // in the blend loop.
    let mut c = [[T::default(); BLOCK]; 8];
    for (block, out) in out.chunks_mut(BLOCK).enumerate() {
        let first = px0 + block * BLOCK;
        let n = out.len();
        for k in 0..n {
            let t = (first + k) as f32;
            let u = disp.add(row + first + k, along(base, s2, t));
            // Inside the fast range `0 ≤ u < n − 1`: truncation is floor.
            let i = [u[0] as i32, u[1] as i32, u[2] as i32];
            for b in 0..3 {
                wgt[b][k] = u[b] - i[b] as f32;
            }
            idx[k] = element32([i[0] as u32, i[1] as u32, i[2] as u32], sz, sy, offset) as u32;
        }
        for k in 0..n {
            let i = idx[k] as usize;
            let cell = &w.src[i..i + sz + sy + 2];
            c[0][k] = cell[0];
            c[1][k] = cell[1];
            c[2][k] = cell[sy];
            c[3][k] = cell[sy + 1];
            c[4][k] = cell[sz];
            c[5][k] = cell[sz + 1];
            c[6][k] = cell[sz + sy];
            c[7][k] = cell[sz + sy + 1];
        }
        for (k, o) in out.iter_mut().enumerate() {
            *o = trilinear(
                [
                    c[0][k].into(),
                    c[1][k].into(),
                    c[2][k].into(),
                    c[3][k].into(),
                    c[4][k].into(),
                    c[5][k].into(),
                    c[6][k].into(),
                    c[7][k].into(),
                ],
                [wgt[0][k], wgt[1][k], wgt[2][k]],
            );
        }
    }
}

/// Dispatches to a copy of the kernel compiled with AVX2 when the CPU has it: the same IEEE
/// operations (Rust never contracts to FMA), so the same bits, only wider vectors.
fn gather_rows<T: Copy + Into<f32> + Default + 'static, D: Displace, O: BatchElem + Element>(
    w: &SourceWindow<'_, T>,
    params: &GatherParams<'_>,
    plan: &Plan,
    disp: &D,
    map: impl Fn(f32) -> f32 + Copy,
    out: &mut [O],
) -> Result<(), GatherError> {
    #[cfg(target_arch = "x86_64")]
    if Features::get().avx2 {
        // SAFETY: the CPU supports AVX2 (`Features::get`).
        return unsafe { gather_rows_avx2(w, params, plan, disp, map, out) };
    }
    gather_rows_impl(w, params, plan, disp, map, out, false)
}

/// The kernel compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gather_rows_avx2<T: Copy + Into<f32> + Default + 'static, D: Displace, O: BatchElem + Element>(
    w: &SourceWindow<'_, T>,
    params: &GatherParams<'_>,
    plan: &Plan,
    disp: &D,
    map: impl Fn(f32) -> f32 + Copy,
    out: &mut [O],
) -> Result<(), GatherError> {
    gather_rows_impl(w, params, plan, disp, map, out, true)
}

/// The row loop; `avx2` is true only in the copy compiled with AVX2 (it unlocks the intrinsic
/// trilinear kernel for `u8` windows).
#[inline(always)]
fn gather_rows_impl<T: Copy + Into<f32> + Default + 'static, D: Displace, O: BatchElem + Element>(
    w: &SourceWindow<'_, T>,
    params: &GatherParams<'_>,
    plan: &Plan,
    disp: &D,
    map: impl Fn(f32) -> f32 + Copy,
    out: &mut [O],
    avx2: bool,
) -> Result<(), GatherError> {
    let &GatherParams {
        grid,
        interpolation,
        fill,
        ..
    } = params;
    let bytes = as_bytes(w.src);
    let [nz, ny, nx] = plan.shape;
    let (lo_ok, hi_ok) = fast_bounds(w, plan.margin, interpolation);
    let s2 = plan.step;
    let [sz, sy, _] = w.stride;
    let anchor = w.anchor.map(|v| v as f64);
    let offset = w.offset32();
    // Outputs larger than the caches: rows staged on the stack, then non-temporal stores. Other
    // element types than `f32`: rows staged on the stack, then converted.
    let stream = streams(size_of_val(out)) && nx <= ROW_BUF;
    let direct = !stream && f32_slice_mut(out).is_some();
    let mut buf = [0f32; ROW_BUF];
    for pz in 0..nz {
        for py in 0..ny {
            let row = (pz * ny + py) * nx;
            let at = Row {
                direct,
                stream,
                row,
                nx,
            };
            let out_row = match f32_slice_mut(&mut out[row..row + nx]) {
                Some(direct_row) if direct => direct_row,
                _ => &mut buf[..nx],
            };
            // Coordinates of px = 0; level coordinates are `v + anchor`.
            let base = row_origin(grid, anchor, pz, py);
            let (lo, hi) = fast_range(base, s2, nx, lo_ok, hi_ok);
            let slow = |px: usize| {
                let u = disp.add(row + px, along(base, s2, px as f32));
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
                        let t = px as f32;
                        let u = disp.add(row + px, along(base, s2, t));
                        // Inside the fast range `u + 0.5 ≥ 0`, so truncation is floor.
                        let q = [(u[0] + 0.5) as u32, (u[1] + 0.5) as u32, (u[2] + 0.5) as u32];
                        *o = w.src[element32(q, sz, sy, offset)].into();
                    }
                }
                Interpolation::Linear => {
                    #[cfg(target_arch = "x86_64")]
                    if let (true, true, Some(src)) = (avx2, D::NONE, bytes) {
                        // SAFETY: `avx2` is true only in `gather_rows_avx2`, which runs after the
                        // CPU was found to support AVX2.
                        let geometry = RowGeometry {
                            base,
                            step: s2,
                            stride: w.stride,
                            offset,
                        };
                        let done = unsafe { linear_u8_avx2(src, &geometry, lo, fast) };
                        let fast = &mut fast[done..];
                        linear_fast(w, base, s2, disp, row, lo + done, fast);
                        continue_row(at, &mut buf, out, map);
                        continue;
                    }
                    linear_fast(w, base, s2, disp, row, lo, fast);
                }
            }
            continue_row(at, &mut buf, out, map);
        }
    }
    if stream {
        store_fence();
    }
    Ok(())
}

/// `src` as bytes when `T` is `u8`.
#[inline(always)]
fn as_bytes<T: 'static>(src: &[T]) -> Option<&[u8]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<u8>() {
        // SAFETY: `T` is `u8`, so the slice is a `[u8]` of the same length.
        Some(unsafe { std::slice::from_raw_parts(src.as_ptr().cast::<u8>(), src.len()) })
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
