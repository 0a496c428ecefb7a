//! Elastic deformation: a random control-point lattice and its smooth displacement field.
//!
//! The lattice lives in the output frame, in nm, relative to the crop centre, and covers the
//! largest crop extent of the sample with one extra control point beyond each side (what a cubic
//! B-spline needs). Each control point carries a displacement drawn from `N(0, sigma_nm)` per
//! axis, expressed in world axes `[z, y, x]` (nm). The field at an output offset `o` is the
//! uniform cubic B-spline interpolation of the control displacements at `o`; it is C² smooth, and
//! since B-spline weights are non-negative and sum to one, its magnitude per axis never exceeds
//! the largest control displacement ([`ElasticDraw::max_abs_nm`]), which bounds the source window.
//!
//! Note that B-spline smoothing shrinks the field's standard deviation to about `0.6·sigma_nm`
//! (the weights' root sum of squares), unlike `sigma_nm` of the control points themselves.

use cellmap_schema::Elastic;

use crate::rng::Rng;

/// One drawn elastic deformation, shared by every array of a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ElasticDraw {
    /// Control-point spacing in nm, `[z, y, x]`.
    pub spacing_nm: [f64; 3],
    /// Output-frame offset (nm, relative to the crop centre) of control point `(0, 0, 0)`.
    pub origin_nm: [f64; 3],
    /// Control points per axis.
    pub lattice_shape: [usize; 3],
    /// World-frame displacement (nm) of each control point, row-major over the lattice.
    pub displacement_nm: Vec<[f32; 3]>,
}

impl ElasticDraw {
    /// Draws a deformation with probability `elastic.probability`, or `None`.
    ///
    /// Consumes exactly two `u64`s of `rng` (the coin and the seed of a forked generator for the
    /// lattice), so the streams drawn after it do not depend on the lattice size.
    pub fn draw(elastic: &Elastic, rng: &mut Rng, extent_nm: [f64; 3]) -> Option<ElasticDraw> {
        Self::draw_into(elastic, rng, extent_nm, &mut Vec::new())
    }

    /// [`ElasticDraw::draw`] with the lattice written into `lattice`'s memory (moved into the
    /// draw; left in `lattice` when no deformation is drawn).
    pub fn draw_into(
        elastic: &Elastic,
        rng: &mut Rng,
        extent_nm: [f64; 3],
        lattice: &mut Vec<[f32; 3]>,
    ) -> Option<ElasticDraw> {
        let apply = rng.bernoulli(elastic.probability);
        let mut lattice_rng = rng.fork();
        if !apply {
            return None;
        }
        let mut lattice_shape = [0usize; 3];
        let mut origin_nm = [0.0; 3];
        for a in 0..3 {
            let spacing = elastic.spacing_nm[a];
            let extent = extent_nm[a].max(0.0);
            // Nodes at origin + k·spacing for k in 0..n cover [−e/2 − s, e/2 + 2s].
            lattice_shape[a] = (extent / spacing).ceil() as usize + 4;
            origin_nm[a] = -extent / 2.0 - spacing;
        }
        let nodes = lattice_shape.iter().product::<usize>();
        let sigma = elastic.sigma_nm;
        lattice.clear();
        lattice.extend((0..nodes).map(|_| {
            let mut d = [0.0f32; 3];
            for v in &mut d {
                *v = (sigma * lattice_rng.normal()) as f32;
            }
            d
        }));
        Some(ElasticDraw {
            spacing_nm: elastic.spacing_nm,
            origin_nm,
            lattice_shape,
            displacement_nm: std::mem::take(lattice),
        })
    }

    /// The largest absolute control displacement per world axis (nm): a bound of the field.
    pub fn max_abs_nm(&self) -> [f64; 3] {
        let mut max = [0.0f64; 3];
        for d in &self.displacement_nm {
            for a in 0..3 {
                max[a] = max[a].max(f64::from(d[a].abs()));
            }
        }
        max
    }
}

/// Cubic B-spline weights and (clamped) lattice indices of every output coordinate of one axis.
fn axis_table(draw: &ElasticDraw, axis: usize, n_vox: usize, voxel_nm: f64, table: &mut Vec<([usize; 4], [f64; 4])>) {
    let last = draw.lattice_shape[axis].saturating_sub(1) as i64;
    let centre = (n_vox as f64 - 1.0) / 2.0;
    table.clear();
    table.extend((0..n_vox).map(|p| {
        let offset_nm = (p as f64 - centre) * voxel_nm;
        let t = (offset_nm - draw.origin_nm[axis]) / draw.spacing_nm[axis];
        let i = t.floor();
        let f = t - i;
        let f2 = f * f;
        let f3 = f2 * f;
        let w = [
            (1.0 - f).powi(3) / 6.0,
            (3.0 * f3 - 6.0 * f2 + 4.0) / 6.0,
            (-3.0 * f3 + 3.0 * f2 + 3.0 * f + 1.0) / 6.0,
            f3 / 6.0,
        ];
        let i = i as i64;
        let idx = [0, 1, 2, 3].map(|k| (i - 1 + k).clamp(0, last) as usize);
        (idx, w)
    }));
}

/// The displacement field of one [`ElasticDraw`] evaluated on one array's output grid.
///
/// Buffers are kept between evaluations: after the first sample of a given shape, evaluating
/// allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct ElasticField {
    shape: [usize; 3],
    /// World-frame displacement in nm per output voxel, one plane per axis `[z, y, x]`.
    displacement_nm: [Vec<f32>; 3],
    max_abs_nm: [f64; 3],
    contracted_x: Vec<f64>,
    contracted_xy: Vec<f64>,
    /// B-spline weights and lattice indices per output coordinate, per axis.
    tables: [Vec<([usize; 4], [f64; 4])>; 3],
}

impl ElasticField {
    /// An empty field; buffers grow on first evaluation.
    pub fn new() -> ElasticField {
        ElasticField::default()
    }

    /// A field with buffers for `voxels` output voxels.
    pub fn with_capacity(voxels: usize) -> ElasticField {
        let plane = || Vec::with_capacity(voxels);
        ElasticField {
            displacement_nm: [plane(), plane(), plane()],
            ..ElasticField::default()
        }
    }

    /// Evaluates `draw` at the voxel offsets of an output grid of `shape_vox` voxels of
    /// `voxel_size_nm` centred on the crop centre (separable B-spline contraction: x, then y,
    /// then z; about 12 multiply-adds per voxel and axis).
    ///
    /// # Panics
    /// If `draw.displacement_nm` does not hold one entry per lattice point (only possible for a
    /// hand-built [`ElasticDraw`]).
    pub fn evaluate(&mut self, draw: &ElasticDraw, shape_vox: [usize; 3], voxel_size_nm: [f64; 3]) {
        let [nz, ny, nx] = shape_vox;
        let [lz, ly, lx] = draw.lattice_shape;
        let mut tables = std::mem::take(&mut self.tables);
        for (a, table) in tables.iter_mut().enumerate() {
            axis_table(draw, a, shape_vox[a], voxel_size_nm[a], table);
        }
        let [tz, ty, tx] = &tables;
        self.shape = shape_vox;
        // contracted_x[(iz·ly + iy)·nx + px][axis]
        self.contracted_x.clear();
        self.contracted_x.resize(lz * ly * nx * 3, 0.0);
        for row in 0..lz * ly {
            let lattice_row = &draw.displacement_nm[row * lx..(row + 1) * lx];
            let out = &mut self.contracted_x[row * nx * 3..(row + 1) * nx * 3];
            for (px, (idx, w)) in tx.iter().enumerate() {
                for a in 0..3 {
                    out[px * 3 + a] = (0..4).map(|k| w[k] * f64::from(lattice_row[idx[k]][a])).sum();
                }
            }
        }
        // contracted_xy[(iz·ny + py)·nx + px][axis]
        self.contracted_xy.clear();
        self.contracted_xy.resize(lz * ny * nx * 3, 0.0);
        let line = nx * 3;
        for iz in 0..lz {
            for (py, (idx, w)) in ty.iter().enumerate() {
                let out_start = (iz * ny + py) * line;
                for (k, &iy) in idx.iter().enumerate() {
                    let src_start = (iz * ly + iy) * line;
                    let (src, out) = (
                        &self.contracted_x[src_start..src_start + line],
                        &mut self.contracted_xy[out_start..out_start + line],
                    );
                    for (o, s) in out.iter_mut().zip(src) {
                        *o += w[k] * s;
                    }
                }
            }
        }
        let plane = ny * nx;
        for d in &mut self.displacement_nm {
            d.clear();
            d.resize(nz * plane, 0.0);
        }
        let mut max = [0.0f64; 3];
        for (pz, (idx, w)) in tz.iter().enumerate() {
            for v in 0..plane {
                let mut acc = [0.0f64; 3];
                for k in 0..4 {
                    let s = &self.contracted_xy[(idx[k] * plane + v) * 3..(idx[k] * plane + v) * 3 + 3];
                    for a in 0..3 {
                        acc[a] += w[k] * s[a];
                    }
                }
                for a in 0..3 {
                    self.displacement_nm[a][pz * plane + v] = acc[a] as f32;
                    max[a] = max[a].max(acc[a].abs());
                }
            }
        }
        self.max_abs_nm = max;
        self.tables = tables;
    }

    /// Output shape of the last evaluation.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Displacement (nm) along world axis `axis` (`0 = z`) of every output voxel, row-major.
    ///
    /// # Panics
    /// If `axis > 2`.
    pub fn component(&self, axis: usize) -> &[f32] {
        &self.displacement_nm[axis]
    }

    /// Largest absolute displacement per world axis of the last evaluation (nm).
    pub fn max_abs_nm(&self) -> [f64; 3] {
        self.max_abs_nm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SampleKey;

    fn draw(sigma_nm: f64) -> ElasticDraw {
        let spec = Elastic {
            spacing_nm: [40.0, 40.0, 40.0],
            sigma_nm,
            probability: 1.0,
        };
        let mut rng = Rng::new(
            SampleKey {
                seed: 1,
                epoch: 0,
                rank: 0,
                index: 0,
            },
            0,
        );
        ElasticDraw::draw(&spec, &mut rng, [160.0, 160.0, 160.0]).unwrap()
    }

    #[test]
    fn constant_lattice_gives_constant_field() {
        let mut d = draw(5.0);
        for v in &mut d.displacement_nm {
            *v = [1.5, -2.0, 0.25];
        }
        let mut field = ElasticField::new();
        field.evaluate(&d, [4, 5, 6], [40.0, 32.0, 26.0]);
        assert!(field.component(0).iter().all(|v| (v - 1.5).abs() < 1e-6));
        assert!(field.component(1).iter().all(|v| (v + 2.0).abs() < 1e-6));
        assert!(field.component(2).iter().all(|v| (v - 0.25).abs() < 1e-6));
        assert_eq!(field.component(0).len(), 120);
    }

    #[test]
    fn field_is_bounded_and_smooth() {
        let d = draw(10.0);
        assert_eq!(d.lattice_shape, [8, 8, 8]);
        let mut field = ElasticField::new();
        field.evaluate(&d, [16, 16, 16], [10.0, 10.0, 10.0]);
        let bound = d.max_abs_nm();
        for (a, bound) in bound.iter().enumerate() {
            assert!(field.max_abs_nm()[a] <= bound + 1e-9);
            assert!(field.max_abs_nm()[a] > 0.0);
            // Neighbouring voxels (10 nm apart, a quarter of the spacing) differ far less than sigma.
            let c = field.component(a);
            assert!(c.windows(2).step_by(16).all(|w| (w[0] - w[1]).abs() < 10.0));
        }
    }

    #[test]
    fn draw_consumes_fixed_rng_calls() {
        let mut a = Rng::new(
            SampleKey {
                seed: 1,
                epoch: 0,
                rank: 0,
                index: 0,
            },
            0,
        );
        let mut b = a.clone();
        let on = Elastic {
            spacing_nm: [8.0; 3],
            sigma_nm: 1.0,
            probability: 1.0,
        };
        let off = Elastic {
            probability: 0.0,
            ..on.clone()
        };
        assert!(ElasticDraw::draw(&on, &mut a, [100.0; 3]).is_some());
        assert!(ElasticDraw::draw(&off, &mut b, [10.0; 3]).is_none());
        assert_eq!(a.next_u64(), b.next_u64());
    }
}
