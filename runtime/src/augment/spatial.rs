//! Drawing a sample's spatial transform: mirror, transpose, rotation and elastic deformation.
//!
//! The draw is one matrix `M = R · F · P` in physical space (nm, world axes `[z, y, x]`) that
//! maps an offset of an output voxel from the crop centre to the offset of the world point it
//! samples from the crop centre (plus the elastic displacement, if any):
//!
//! 1. `P` (transpose) is applied first: output axis `a` runs along source axis
//!    `permutation[a]` (`P[permutation[a]][a] = 1`);
//! 2. `F` (mirror) then flips source axis `a` when `mirror[a]`;
//! 3. `R` (rotation) comes last: `R = R_x(γ) · R_y(β) · R_z(α)`, so the rotation about z
//!    (angle `angles_deg[0]`) acts first, then about y, then about x. Each is a right-handed
//!    rotation in the `(x, y, z)` frame: e.g. `R_z(90°)` maps the x direction to y.
//!
//! Because rotation happens in nm, anisotropic voxels rotate correctly, and a rotation about z
//! never mixes z with y or x.
//!
//! Random stream layout: a draw always consumes exactly [`SPATIAL_RNG_DRAWS`] `u64`s (three
//! mirror coins, one permutation index, three angles, two for the elastic coin and lattice seed),
//! whichever transforms are enabled, so enabling one transform never shifts the values that
//! other transforms, or draws made after this one, get from the same generator.

use cellmap_schema::Spatial;

use crate::augment::elastic::ElasticDraw;
use crate::rng::Rng;

/// Number of `u64`s [`draw_spatial`] consumes from its generator, whatever the spec.
pub const SPATIAL_RNG_DRAWS: u64 = 9;

/// One sample's spatial transform, applied identically to every input and target.
#[derive(Debug, Clone, PartialEq)]
pub struct SpatialDraw {
    /// `M = R · F · P`: output offset (nm, output axes) → source offset (nm, world axes).
    pub matrix: [[f64; 3]; 3],
    /// Source axes flipped, `[z, y, x]`.
    pub mirror: [bool; 3],
    /// Output axis `a` runs along source axis `permutation[a]`.
    pub permutation: [usize; 3],
    /// Rotation angles in degrees about `[z, y, x]` (applied z first, then y, then x).
    pub angles_deg: [f64; 3],
    /// Elastic deformation, when drawn.
    pub elastic: Option<ElasticDraw>,
}

impl SpatialDraw {
    /// The identity transform.
    pub fn identity() -> SpatialDraw {
        SpatialDraw {
            matrix: IDENTITY,
            mirror: [false; 3],
            permutation: [0, 1, 2],
            angles_deg: [0.0; 3],
            elastic: None,
        }
    }

    /// A transform given explicitly rather than drawn, composed exactly as a drawn one (`M = R · F
    /// · P`: transpose, then mirror, then rotation about z, y and x; see the module docs), with no
    /// elastic deformation. `None` when `permutation` is not a permutation of `[0, 1, 2]`.
    ///
    /// ```
    /// use cellmap_runtime::augment::SpatialDraw;
    /// // A quarter turn about z: output x runs along world y.
    /// let d = SpatialDraw::explicit([90.0, 0.0, 0.0], [false; 3], [0, 1, 2]).unwrap();
    /// assert_eq!(d.matrix, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]);
    /// assert!(d.is_axis_aligned());
    /// ```
    pub fn explicit(angles_deg: [f64; 3], mirror: [bool; 3], permutation: [usize; 3]) -> Option<SpatialDraw> {
        let mut seen = [false; 3];
        for &p in &permutation {
            *seen.get_mut(p)? = true;
        }
        if !seen.iter().all(|s| *s) || angles_deg.iter().any(|a| !a.is_finite()) {
            return None;
        }
        Some(SpatialDraw {
            matrix: compose(permutation, mirror, angles_deg),
            mirror,
            permutation,
            angles_deg,
            elastic: None,
        })
    }

    /// Back to the identity, moving the memory of an elastic lattice into `spare` (for the next
    /// draw to reuse).
    pub fn reset(&mut self, spare: &mut Vec<[f32; 3]>) {
        if let Some(previous) = self.elastic.take() {
            *spare = previous.displacement_nm;
        }
        *self = SpatialDraw::identity();
    }

    /// Carries the transform from a slice frame into world axes: `frame[a]` is the world axis that
    /// frame axis `a` runs along (`[0, 1, 2]`: the world frame, nothing changes). The matrix
    /// becomes `S · M` (`S[frame[a]][a] = 1`), the permutation and mirror flags name world axes,
    /// and the elastic displacements (drawn per frame axis) move to their world axes; the angles
    /// stay those drawn, about the frame's axes. How a 2D spec reads y- and x-slices: the spec's
    /// transforms act in the plane of the slice (frame z is its normal), whatever world axis that is.
    pub fn slice(&mut self, frame: [usize; 3]) {
        if frame == [0, 1, 2] {
            return;
        }
        let mut s = [[0.0; 3]; 3];
        for (a, &w) in frame.iter().enumerate() {
            s[w][a] = 1.0;
        }
        self.matrix = mat_mul(&s, &self.matrix);
        self.permutation = self.permutation.map(|p| frame[p]);
        let mirror = self.mirror;
        for (a, &w) in frame.iter().enumerate() {
            self.mirror[w] = mirror[a];
        }
        if let Some(e) = &mut self.elastic {
            for d in &mut e.displacement_nm {
                let old = *d;
                for (a, &w) in frame.iter().enumerate() {
                    d[w] = old[a];
                }
            }
        }
    }

    /// True when the transform only permutes and flips axes (no rotation residue, no elastic), so
    /// arrays can be copied with strides instead of interpolated.
    pub fn is_axis_aligned(&self) -> bool {
        self.elastic.is_none() && self.matrix.iter().flatten().all(|v| *v == 0.0 || v.abs() == 1.0)
    }
}

impl Default for SpatialDraw {
    fn default() -> Self {
        SpatialDraw::identity()
    }
}

const IDENTITY: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// `a · b`.
pub(crate) fn mat_mul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

/// Right-handed rotation about world axis `axis` (0 = z, 1 = y, 2 = x), in `[z, y, x]` components.
pub(crate) fn rotation(axis: usize, angle_deg: f64) -> [[f64; 3]; 3] {
    let (s, c) = angle_deg.to_radians().sin_cos();
    match axis {
        // About z: x → y.  y' = s·x + c·y, x' = c·x − s·y.
        0 => [[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]],
        // About y: z → x.  z' = c·z − s·x, x' = s·z + c·x.
        1 => [[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]],
        // About x: y → z.  z' = c·z + s·y, y' = c·y − s·z.
        _ => [[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]],
    }
}

/// `M = R · F · P` of a permutation, mirror flags and angles (see the module docs).
fn compose(permutation: [usize; 3], mirror: [bool; 3], angles_deg: [f64; 3]) -> [[f64; 3]; 3] {
    let mut p = [[0.0; 3]; 3];
    for (a, &s) in permutation.iter().enumerate() {
        p[s][a] = 1.0;
    }
    let mut f = IDENTITY;
    for (a, &m) in mirror.iter().enumerate() {
        if m {
            f[a][a] = -1.0;
        }
    }
    let r = mat_mul(
        &rotation(2, angles_deg[2]),
        &mat_mul(&rotation(1, angles_deg[1]), &rotation(0, angles_deg[0])),
    );
    let mut matrix = mat_mul(&r, &mat_mul(&f, &p));
    // Snap floating residue (cos 90° = 6e-17) so quarter turns stay exact axis permutations.
    for v in matrix.iter_mut().flatten() {
        if v.abs() < 1e-12 {
            *v = 0.0;
        } else if (v.abs() - 1.0).abs() < 1e-12 {
            *v = v.signum();
        }
    }
    matrix
}

/// The `index`-th permutation (lexicographic) of `0..k`, for `k ≤ 3`.
fn nth_permutation(k: usize, index: usize) -> [usize; 3] {
    const PERMS3: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    match k {
        2 => [[0, 1, 2], [1, 0, 2]][index % 2],
        3 => PERMS3[index % 6],
        _ => [0, 1, 2],
    }
}

/// Draws one sample's spatial transform from `spatial` (see the module docs for the order of
/// composition and the fixed random-stream layout). `extent_nm` is the largest crop extent of the
/// sample's arrays (output frame), which the elastic lattice must cover.
pub fn draw_spatial(spatial: &Spatial, rng: &mut Rng, extent_nm: [f64; 3]) -> SpatialDraw {
    let mut draw = SpatialDraw::identity();
    draw_spatial_into(spatial, rng, extent_nm, &mut draw, &mut Vec::new());
    draw
}

/// [`draw_spatial`] into `out`, reusing the memory of its elastic lattice (or of `spare`, which
/// keeps it while a sample draws no deformation): after warm-up the per-sample draw allocates
/// nothing.
pub fn draw_spatial_into(
    spatial: &Spatial,
    rng: &mut Rng,
    extent_nm: [f64; 3],
    out: &mut SpatialDraw,
    spare: &mut Vec<[f32; 3]>,
) {
    out.reset(spare);
    let mut mirror = [false; 3];
    for (m, p) in mirror.iter_mut().zip(spatial.mirror) {
        *m = rng.bernoulli(p);
    }

    // One u64 → an index in 0..6; 6 is a multiple of 1!, 2! and 3!, so `index % k!` is uniform
    // (bias below 2⁻⁶¹ from the 64-bit multiply).
    let perm_index = ((u128::from(rng.next_u64()) * 6) >> 64) as usize;
    // The listed axes in storage order, without repeats (no allocation: this runs per sample).
    let mut is_listed = [false; 3];
    for a in &spatial.transpose {
        is_listed[a.index()] = true;
    }
    let mut axes = [0usize; 3];
    let mut n = 0;
    for (axis, listed) in is_listed.iter().enumerate() {
        if *listed {
            axes[n] = axis;
            n += 1;
        }
    }
    let listed = &axes[..n];
    let mut permutation = [0, 1, 2];
    if listed.len() >= 2 {
        let sigma = nth_permutation(listed.len(), perm_index);
        for (i, &axis) in listed.iter().enumerate() {
            permutation[axis] = listed[sigma[i]];
        }
    }

    let mut angles_deg = [0.0; 3];
    for (angle, range) in angles_deg.iter_mut().zip(spatial.rotate) {
        let u = rng.uniform();
        if let Some((lo, hi)) = range {
            *angle = lo + (hi - lo) * u;
        }
    }

    let elastic = match &spatial.elastic {
        Some(e) => ElasticDraw::draw_into(e, rng, extent_nm, spare),
        None => {
            rng.next_u64();
            rng.next_u64();
            None
        }
    };

    *out = SpatialDraw {
        matrix: compose(permutation, mirror, angles_deg),
        mirror,
        permutation,
        angles_deg,
        elastic,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SampleKey;
    use cellmap_schema::{Axis, Elastic};

    fn rng(i: u64) -> Rng {
        Rng::new(
            SampleKey {
                seed: 3,
                epoch: 0,
                rank: 0,
                index: i,
            },
            9,
        )
    }

    #[test]
    fn identity_spec_gives_identity_draw_and_fixed_consumption() {
        let mut r = rng(0);
        let d = draw_spatial(&Spatial::default(), &mut r, [64.0; 3]);
        assert_eq!(d, SpatialDraw::identity());
        let mut reference = rng(0);
        for _ in 0..SPATIAL_RNG_DRAWS {
            reference.next_u64();
        }
        assert_eq!(r.next_u64(), reference.next_u64());

        let full = Spatial {
            mirror: [0.5; 3],
            transpose: vec![Axis::Y, Axis::X],
            rotate: [Some((-180.0, 180.0)), None, Some((0.0, 10.0))],
            elastic: Some(Elastic {
                spacing_nm: [16.0; 3],
                sigma_nm: 2.0,
                probability: 1.0,
            }),
        };
        let mut r = rng(0);
        let d = draw_spatial(&full, &mut r, [64.0; 3]);
        assert!(d.elastic.is_some());
        let mut reference = rng(0);
        for _ in 0..SPATIAL_RNG_DRAWS {
            reference.next_u64();
        }
        assert_eq!(r.next_u64(), reference.next_u64());
    }

    #[test]
    fn transpose_only_permutes_listed_axes() {
        let spec = Spatial {
            transpose: vec![Axis::X, Axis::Y],
            ..Spatial::default()
        };
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..200 {
            let d = draw_spatial(&spec, &mut rng(i), [1.0; 3]);
            assert_eq!(d.permutation[0], 0);
            seen.insert(d.permutation);
            // The matrix is the permutation matrix.
            for a in 0..3 {
                assert_eq!(d.matrix[d.permutation[a]][a], 1.0);
            }
        }
        assert_eq!(seen.len(), 2);
        let all = Spatial {
            transpose: vec![Axis::Z, Axis::Y, Axis::X],
            ..Spatial::default()
        };
        let seen: std::collections::BTreeSet<_> = (0..300)
            .map(|i| draw_spatial(&all, &mut rng(i), [1.0; 3]).permutation)
            .collect();
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn an_explicit_transform_composes_as_a_drawn_one() {
        let spec = Spatial {
            mirror: [1.0, 0.0, 1.0],
            rotate: [Some((30.0, 30.0)), Some((-20.0, -20.0)), Some((10.0, 10.0))],
            ..Spatial::default()
        };
        let drawn = draw_spatial(&spec, &mut rng(4), [1.0; 3]);
        let explicit = SpatialDraw::explicit([30.0, -20.0, 10.0], [true, false, true], [0, 1, 2]).unwrap();
        assert_eq!(explicit, drawn);
        // Transpose y and x, as a drawn transpose of [y, x] that swaps them.
        let swap = Spatial {
            transpose: vec![Axis::Y, Axis::X],
            ..spec
        };
        let drawn = (0..50)
            .map(|i| draw_spatial(&swap, &mut rng(i), [1.0; 3]))
            .find(|d| d.permutation == [0, 2, 1])
            .unwrap();
        let explicit = SpatialDraw::explicit([30.0, -20.0, 10.0], [true, false, true], [0, 2, 1]).unwrap();
        assert_eq!(explicit, drawn);
        assert!(SpatialDraw::explicit([0.0; 3], [false; 3], [0, 0, 1]).is_none());
        assert!(SpatialDraw::explicit([0.0; 3], [false; 3], [0, 1, 3]).is_none());
        assert!(SpatialDraw::explicit([f64::NAN, 0.0, 0.0], [false; 3], [0, 1, 2]).is_none());
    }

    #[test]
    fn slicing_maps_frame_axes_to_world_axes() {
        // A y-slice: frame (normal, rows, columns) = world (y, z, x).
        let mut d = SpatialDraw::explicit([0.0; 3], [false, true, false], [0, 2, 1]).unwrap();
        d.slice([1, 0, 2]);
        // Output rows run along frame x = world x; output columns along frame y (flipped) = world z.
        assert_eq!(d.permutation, [1, 2, 0]);
        assert_eq!(d.mirror, [true, false, false]);
        assert_eq!(d.matrix, [[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        let mut same = SpatialDraw::identity();
        same.slice([0, 1, 2]);
        assert_eq!(same, SpatialDraw::identity());
    }

    #[test]
    fn rotation_is_orthonormal_and_z_first() {
        let spec = Spatial {
            rotate: [Some((30.0, 30.0)), Some((20.0, 20.0)), Some((10.0, 10.0))],
            ..Spatial::default()
        };
        let d = draw_spatial(&spec, &mut rng(1), [1.0; 3]);
        assert_eq!(d.angles_deg, [30.0, 20.0, 10.0]);
        let mt = [0, 1, 2].map(|i| [0, 1, 2].map(|j| d.matrix[j][i]));
        let id = mat_mul(&mt, &d.matrix);
        for (i, row) in id.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        // R_z(90°) maps x (index 2) to y (index 1).
        let rz = rotation(0, 90.0);
        assert!((rz[1][2] - 1.0).abs() < 1e-15 && rz[2][2].abs() < 1e-15);
    }
}
