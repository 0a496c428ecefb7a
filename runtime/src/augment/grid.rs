//! The affine map from an output crop's voxels to continuous source indices.
//!
//! Output voxel `p` of a crop of shape `N` and voxel size `r` centred at world `c` samples the
//! world point `x(p) = c + M · ((p − (N − 1)/2) ⊙ r) (+ elastic)`, whose continuous index in a
//! source level of scale `s` and translation `t` is `u = (x − t) / s`. Without elastic
//! displacement `u` is affine in `p`: `u(p) = origin + Σ_a p_a · step[a]`.

use cellmap_schema::Interpolation;

/// Slack (in source voxels) added to window bounds so that rounding in the gather never needs a
/// voxel outside the window: the gather computes window-local coordinates in `f32` (four
/// roundings of values below the window's extent `E`: at most `2.4e-7 · E` voxels), so the
/// slack is `WINDOW_SLACK + WINDOW_SLACK_PER_VOXEL · E`, four times that bound and more.
const WINDOW_SLACK: f64 = 1e-3;

/// See [`WINDOW_SLACK`].
const WINDOW_SLACK_PER_VOXEL: f64 = 1e-6;

/// Continuous source indices of an output grid: `u(p) = origin + Σ_a p_a · step[a]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleGrid {
    /// Continuous source index `u` of output voxel `(0, 0, 0)`.
    pub origin: [f64; 3],
    /// `step[a] = du / dp_a`: the source-index change per output voxel along output axis `a`.
    pub step: [[f64; 3]; 3],
    /// Output shape in voxels, `[z, y, x]`.
    pub shape: [usize; 3],
    /// Source voxel size in nm (converts elastic displacements to index units).
    pub scale_nm: [f64; 3],
}

/// A copy plan for axis-aligned transforms: source voxel `q` of the box
/// `[src_start, src_start + src_shape)` goes to output element
/// `dest_offset + Σ_b (q_b − src_start_b) · dest_strides[b]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StridedMap {
    /// First source voxel (level index) of the box.
    pub src_start: [i64; 3],
    /// Shape of the source box, equal to the output shape permuted.
    pub src_shape: [usize; 3],
    /// Output element of source voxel `src_start`.
    pub dest_offset: usize,
    /// Output element stride per source axis (negative along mirrored axes).
    pub dest_strides: [isize; 3],
}

impl SampleGrid {
    /// The grid of an output crop (`centre_nm`, `shape_vox`, `voxel_size_nm`) transformed by
    /// `matrix` (output offset nm → source offset nm), sampling a level of `translation_nm` and
    /// `scale_nm`.
    pub fn new(
        centre_nm: [f64; 3],
        shape_vox: [usize; 3],
        voxel_size_nm: [f64; 3],
        matrix: &[[f64; 3]; 3],
        translation_nm: [f64; 3],
        scale_nm: [f64; 3],
    ) -> SampleGrid {
        let mut step = [[0.0; 3]; 3];
        for (a, row) in step.iter_mut().enumerate() {
            for (b, v) in row.iter_mut().enumerate() {
                *v = matrix[b][a] * voxel_size_nm[a] / scale_nm[b];
            }
        }
        let mut origin = [0.0; 3];
        for (b, o) in origin.iter_mut().enumerate() {
            *o = (centre_nm[b] - translation_nm[b]) / scale_nm[b]
                - (0..3)
                    .map(|a| step[a][b] * (shape_vox[a] as f64 - 1.0) / 2.0)
                    .sum::<f64>();
        }
        SampleGrid {
            origin,
            step,
            shape: shape_vox,
            scale_nm,
        }
    }

    /// Output voxels of the grid.
    pub fn voxels(&self) -> usize {
        self.shape.iter().product()
    }

    /// Continuous source index of output voxel `p` (without elastic displacement).
    pub fn index_of(&self, p: [usize; 3]) -> [f64; 3] {
        let mut u = self.origin;
        for (a, &pa) in p.iter().enumerate() {
            for (b, ub) in u.iter_mut().enumerate() {
                *ub += pa as f64 * self.step[a][b];
            }
        }
        u
    }

    /// Extremes of `u` over the output grid, per source axis.
    pub(crate) fn index_range(&self) -> ([f64; 3], [f64; 3]) {
        let mut lo = self.origin;
        let mut hi = self.origin;
        for a in 0..3 {
            let span = self.shape[a].saturating_sub(1) as f64;
            for b in 0..3 {
                let d = self.step[a][b] * span;
                if d < 0.0 {
                    lo[b] += d;
                } else {
                    hi[b] += d;
                }
            }
        }
        (lo, hi)
    }

    /// The integer voxel box `(start, shape)` holding every source voxel that any sample point
    /// can touch with `interpolation`, when elastic displacements stay within `elastic_max_nm`
    /// per world axis (`[0; 3]` without elastic). The caller clips it to the level and reads it.
    ///
    /// Every bound gets a slack of a thousandth of a voxel (and a millionth of the window's
    /// extent) against the rounding of the gather's `f32` coordinates. So with the identity
    /// transform, no elastic and equal voxel sizes, the nearest window is exactly the crop's
    /// integer window, and the linear one adds the (zero-weight) neighbours on both sides.
    pub fn source_window(&self, interpolation: Interpolation, elastic_max_nm: [f64; 3]) -> ([i64; 3], [usize; 3]) {
        let (lo, hi) = self.index_range();
        let mut start = [0i64; 3];
        let mut shape = [0usize; 3];
        for b in 0..3 {
            let e = elastic_max_nm[b] / self.scale_nm[b];
            let slack = WINDOW_SLACK + WINDOW_SLACK_PER_VOXEL * (hi[b] - lo[b] + 2.0 * e + 2.0);
            let (first, last) = match interpolation {
                Interpolation::Nearest => ((lo[b] - e + 0.5 - slack).floor(), (hi[b] + e + 0.5 + slack).floor()),
                Interpolation::Linear => ((lo[b] - e - slack).floor(), (hi[b] + e + slack).floor() + 1.0),
            };
            start[b] = first as i64;
            shape[b] = (last - first) as usize + 1;
        }
        (start, shape)
    }

    /// The strided copy plan, when every `step[a]` is a signed unit vector along distinct source
    /// axes and `origin` is integral (both within 1e-6): then nearest and linear sampling both
    /// reduce to copying source voxels, so mirror and transpose cost nothing beyond the copy.
    /// Ignores elastic displacement (use it only without).
    pub fn as_strided(&self) -> Option<StridedMap> {
        const TOL: f64 = 1e-6;
        let mut axis_of = [0usize; 3];
        let mut sign = [0isize; 3];
        let mut used = [false; 3];
        for a in 0..3 {
            let mut found = None;
            for b in 0..3 {
                let v = self.step[a][b];
                if (v.abs() - 1.0).abs() < TOL {
                    if found.is_some() {
                        return None;
                    }
                    found = Some((b, if v > 0.0 { 1 } else { -1 }));
                } else if v.abs() >= TOL {
                    return None;
                }
            }
            let (b, s) = found?;
            if used[b] {
                return None;
            }
            used[b] = true;
            axis_of[a] = b;
            sign[a] = s;
        }
        let mut origin = [0i64; 3];
        for (o, &u) in origin.iter_mut().zip(&self.origin) {
            let r = u.round();
            if (u - r).abs() >= TOL {
                return None;
            }
            *o = r as i64;
        }
        let out_strides = [self.shape[1] * self.shape[2], self.shape[2], 1];
        let mut src_start = origin;
        let mut src_shape = [0usize; 3];
        let mut dest_strides = [0isize; 3];
        let mut dest_offset = 0usize;
        for a in 0..3 {
            let b = axis_of[a];
            src_shape[b] = self.shape[a];
            dest_strides[b] = sign[a] * out_strides[a] as isize;
            if sign[a] < 0 {
                // Output index n−1 along `a` reads the lowest source index along `b`.
                let span = self.shape[a].saturating_sub(1);
                src_start[b] -= span as i64;
                dest_offset += span * out_strides[a];
            }
        }
        Some(StridedMap {
            src_start,
            src_shape,
            dest_offset,
            dest_strides,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

    #[test]
    fn identity_reduces_to_integer_window() {
        // Centre 100 nm, scale 4, translation 2: (100−2)/4 − (N−1)/2 + 0.5 = 24.5 − 4.5 + 0.5 → 20 (N = 10).
        let g = SampleGrid::new([100.0; 3], [10, 10, 10], [4.0; 3], &I, [2.0; 3], [4.0; 3]);
        assert_eq!(g.origin, [20.0; 3]);
        assert_eq!(g.source_window(Interpolation::Nearest, [0.0; 3]), ([20; 3], [10; 3]));
        assert_eq!(g.source_window(Interpolation::Linear, [0.0; 3]), ([19; 3], [12; 3]));
        let m = g.as_strided().unwrap();
        assert_eq!(
            m,
            StridedMap {
                src_start: [20; 3],
                src_shape: [10; 3],
                dest_offset: 0,
                dest_strides: [100, 10, 1]
            }
        );
        // Half-voxel centre: floor(24.625 − 4.5 + 0.5) = 20; not integral → no strided map.
        let g = SampleGrid::new([100.5; 3], [10, 10, 10], [4.0; 3], &I, [2.0; 3], [4.0; 3]);
        assert_eq!(g.source_window(Interpolation::Nearest, [0.0; 3]).0, [20; 3]);
        assert!(g.as_strided().is_none());
    }

    #[test]
    fn mirrored_transposed_strided_map() {
        // Output y runs along −x of the source, output x along +y.
        let m = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]];
        let g = SampleGrid::new([0.5, 1.5, 0.0], [2, 3, 4], [1.0; 3], &m, [0.0; 3], [1.0; 3]);
        let s = g.as_strided().unwrap();
        assert_eq!(s.src_shape, [2, 4, 3]);
        assert_eq!(s.dest_strides, [12, 1, -4]);
        for pz in 0..2 {
            for py in 0..3 {
                for px in 0..4 {
                    let u = g.index_of([pz, py, px]);
                    let q = [0, 1, 2].map(|b| u[b] as i64 - s.src_start[b]);
                    let dest =
                        s.dest_offset as isize + (0..3).map(|b| q[b] as isize * s.dest_strides[b]).sum::<isize>();
                    assert_eq!(dest as usize, pz * 12 + py * 4 + px);
                }
            }
        }
    }

    #[test]
    fn anisotropic_rotation_about_z_keeps_z_window() {
        let m = crate::augment::spatial::rotation(0, 30.0);
        let g = SampleGrid::new(
            [800.0, 400.0, 400.0],
            [8, 32, 32],
            [16.0, 4.0, 4.0],
            &m,
            [0.0; 3],
            [16.0, 4.0, 4.0],
        );
        let (start, shape) = g.source_window(Interpolation::Nearest, [0.0; 3]);
        // z samples 47 ..= 54 (origin 46.5 rounds up); the rounding slack adds plane 46.
        assert_eq!((start[0], shape[0]), (46, 9));
        assert!(shape[1] > 32 && shape[2] > 32);
    }
}
