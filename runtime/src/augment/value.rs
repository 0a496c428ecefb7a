//! Value transforms, applied in spec order to one crop after the spatial transforms.
//!
//! Differences from cellmap-data's classes (`transforms/augment/`):
//! - `normalize` is explicit `(x − shift) / scale` (cellmap-data deleted its `Normalize` and relied
//!   on dtype scaling, which silently differs between its code eras); `scale: dtype` asks for the
//!   stored dtype's range explicitly and is resolved per dataset before this runs
//!   (`sample::intensity`);
//! - `nan_to_num` keeps ±∞ when no replacement is given (torch replaces them with the dtype's
//!   extremes);
//! - `random_contrast` uses the mean over all non-NaN voxels of the crop (cellmap-data takes
//!   `mean(dim=0)`, a per-column mean over z, and lets NaN poison it); the result is clamped to
//!   `[0, 1]` and NaN becomes 0, as there;
//! - `random_gamma` clamps to `[0, 1]` before the power (cellmap-data clamps after) and maps NaN
//!   to 0, as there; it does not rescale integer inputs (we always work in `f32`);
//! - `gaussian_blur` is separable and per-axis (sigma 0 skips an axis) with a kernel of radius
//!   `radius_vox`, replicate edges, accumulated in `f64` (a constant stays exactly constant);
//! - `gaussian_noise` draws `N(mean, std)` per voxel from the sample's counter-based generator.

use cellmap_schema::ValueTransform;

use crate::rng::Rng;

/// Why value transforms could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// The data slice does not match its shape.
    #[error("crop of shape `{shape:?}` needs {expected} values, the slice holds {len}")]
    ShapeMismatch {
        /// Declared shape.
        shape: [usize; 3],
        /// Values the shape needs.
        expected: usize,
        /// Length of the slice.
        len: usize,
    },
}

/// Reusable buffers for [`apply_value_transforms`]; after the first call of a given crop size,
/// further calls allocate nothing.
#[derive(Debug, Clone, Default)]
pub struct ValueScratch {
    line: Vec<f64>,
    kernel: Vec<f64>,
}

impl ValueScratch {
    /// Scratch for crops of up to `voxels` voxels.
    pub fn with_capacity(voxels: usize) -> ValueScratch {
        // A line is at most the crop's longest axis plus the kernel's two radii.
        ValueScratch {
            line: Vec::with_capacity(voxels.min(1 << 16)),
            kernel: Vec::with_capacity(64),
        }
    }
}

/// Applies `transforms` in order to `data` (row-major, `shape`), drawing random parameters from
/// `rng` (one draw per random transform, then per-voxel noise).
///
/// # Errors
/// [`ValueError::ShapeMismatch`] when `data` does not hold `shape` voxels.
pub fn apply_value_transforms(
    transforms: &[ValueTransform],
    data: &mut [f32],
    shape: [usize; 3],
    rng: &mut Rng,
    scratch: &mut ValueScratch,
) -> Result<(), ValueError> {
    let expected = shape.iter().product::<usize>();
    if data.len() != expected {
        return Err(ValueError::ShapeMismatch {
            shape,
            expected,
            len: data.len(),
        });
    }
    for t in transforms {
        match *t {
            ValueTransform::Normalize { shift, scale } => {
                let (shift, scale) = (shift as f32, scale as f32);
                data.iter_mut().for_each(|x| *x = (*x - shift) / scale);
            }
            ValueTransform::NormalizeDtype { shift } => {
                // Readers resolve `scale: dtype` against the stored dtype first
                // (`sample::intensity`); what reaches here is `f32` data, which keeps its values.
                let shift = shift.unwrap_or(0.0) as f32;
                data.iter_mut().for_each(|x| *x -= shift);
            }
            ValueTransform::Binarize { threshold } => {
                data.iter_mut().for_each(|x| {
                    if !x.is_nan() {
                        *x = if f64::from(*x) > threshold { 1.0 } else { 0.0 };
                    }
                });
            }
            ValueTransform::NanToNum { nan, posinf, neginf } => {
                let map = nan_to_num_map(nan, posinf, neginf);
                data.iter_mut().for_each(|x| *x = map(*x));
            }
            ValueTransform::GaussianNoise { mean, std } => add_noise(data, mean as f32, std as f32, rng),
            ValueTransform::RandomContrast { range: (lo, hi) } => {
                let r = rng.range(lo, hi);
                let (sum, count) = data
                    .iter()
                    .filter(|x| !x.is_nan())
                    .fold((0.0f64, 0u64), |(s, n), &x| (s + f64::from(x), n + 1));
                let mean = if count > 0 { sum / count as f64 } else { 0.0 };
                let (r32, offset) = (r as f32, ((1.0 - r) * mean) as f32);
                data.iter_mut().for_each(|x| {
                    let v = r32 * *x + offset;
                    *x = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
                });
            }
            ValueTransform::RandomGamma { range: (lo, hi) } => {
                let g = rng.range(lo, hi) as f32;
                data.iter_mut().for_each(|x| {
                    *x = if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0).powf(g) };
                });
            }
            ValueTransform::GaussianBlur { sigma_vox, radius_vox } => {
                for axis in 0..3 {
                    if sigma_vox[axis] > 0.0 && radius_vox > 0 && shape[axis] > 1 {
                        blur_axis(data, shape, axis, sigma_vox[axis], radius_vox, scratch);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Adds `N(mean, std)` per voxel; noise is generated in blocks on the stack (no allocation).
fn add_noise(data: &mut [f32], mean: f32, std: f32, rng: &mut Rng) {
    let mut noise = [0.0f32; 512];
    for chunk in data.chunks_mut(noise.len()) {
        let n = &mut noise[..chunk.len()];
        rng.fill_normal_f32(n, mean, std);
        chunk.iter_mut().zip(n.iter()).for_each(|(x, e)| *x += *e);
    }
}

/// Blurs along one axis with a normalised Gaussian of `sigma` and `radius`, replicate edges.
fn blur_axis(data: &mut [f32], shape: [usize; 3], axis: usize, sigma: f64, radius: usize, scratch: &mut ValueScratch) {
    let kernel = &mut scratch.kernel;
    kernel.clear();
    kernel.extend((0..=2 * radius).map(|k| {
        let d = k as f64 - radius as f64;
        (-d * d / (2.0 * sigma * sigma)).exp()
    }));
    let total: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|w| *w /= total);

    let strides = [shape[1] * shape[2], shape[2], 1];
    let (n, stride) = (shape[axis], strides[axis]);
    let line = &mut scratch.line;
    // Row-major: lines along `axis` start at `o·(n·stride) + i` for `i < stride`.
    let outer = data.len() / (n * stride);
    let starts = (0..outer).flat_map(|o| (0..stride).map(move |i| o * n * stride + i));
    for first in starts {
        line.clear();
        let at = |j: usize| f64::from(data[first + j * stride]);
        line.extend((0..radius).map(|_| at(0)));
        line.extend((0..n).map(at));
        line.extend((0..radius).map(|_| at(n - 1)));
        for j in 0..n {
            let acc: f64 = line[j..j + kernel.len()]
                .iter()
                .zip(kernel.iter())
                .map(|(v, w)| v * w)
                .sum();
            data[first + j * stride] = acc as f32;
        }
    }
}

/// `nan_to_num` as a per-voxel map: NaN → `nan`, ±∞ → `posinf`/`neginf` (kept when `None`).
/// Shared by the transform pass and the copies that apply a leading `nan_to_num` themselves.
/// A pointwise value transform (`normalize`, `binarize`, `nan_to_num`) as a map of one value,
/// with the same arithmetic as [`apply_value_transforms`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Pointwise {
    /// `(x − shift) / scale`.
    Normalize { shift: f32, scale: f32 },
    /// 1 above the threshold, 0 elsewhere, NaN kept.
    Binarize { threshold: f64 },
    /// NaN and infinities replaced.
    NanToNum {
        nan: f32,
        posinf: Option<f32>,
        neginf: Option<f32>,
    },
}

impl Pointwise {
    /// The map of `t`, when `t` is pointwise.
    pub(crate) fn of(t: &ValueTransform) -> Option<Pointwise> {
        match *t {
            ValueTransform::Normalize { shift, scale } => Some(Pointwise::Normalize {
                shift: shift as f32,
                scale: scale as f32,
            }),
            ValueTransform::Binarize { threshold } => Some(Pointwise::Binarize { threshold }),
            ValueTransform::NanToNum { nan, posinf, neginf } => Some(Pointwise::NanToNum {
                nan: nan as f32,
                posinf: posinf.map(|v| v as f32),
                neginf: neginf.map(|v| v as f32),
            }),
            _ => None,
        }
    }

    /// The transformed value.
    #[inline(always)]
    pub(crate) fn apply(self, x: f32) -> f32 {
        match self {
            Pointwise::Normalize { shift, scale } => (x - shift) / scale,
            Pointwise::Binarize { threshold } => {
                if x.is_nan() {
                    x
                } else if f64::from(x) > threshold {
                    1.0
                } else {
                    0.0
                }
            }
            Pointwise::NanToNum { nan, posinf, neginf } => {
                if x.is_nan() {
                    nan
                } else if x == f32::INFINITY {
                    posinf.unwrap_or(x)
                } else if x == f32::NEG_INFINITY {
                    neginf.unwrap_or(x)
                } else {
                    x
                }
            }
        }
    }
}

pub(crate) fn nan_to_num_map(nan: f64, posinf: Option<f64>, neginf: Option<f64>) -> impl Fn(f32) -> f32 + Copy {
    let nan = nan as f32;
    let (pos, neg) = (posinf.map(|v| v as f32), neginf.map(|v| v as f32));
    move |x: f32| {
        if x.is_nan() {
            nan
        } else if x == f32::INFINITY {
            pos.unwrap_or(x)
        } else if x == f32::NEG_INFINITY {
            neg.unwrap_or(x)
        } else {
            x
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SampleKey;

    fn rng() -> Rng {
        Rng::new(
            SampleKey {
                seed: 1,
                epoch: 0,
                rank: 0,
                index: 0,
            },
            4,
        )
    }

    fn apply(t: ValueTransform, data: &mut [f32], shape: [usize; 3]) {
        apply_value_transforms(&[t], data, shape, &mut rng(), &mut ValueScratch::default()).unwrap();
    }

    #[test]
    fn pointwise_transforms_exact() {
        let mut d = [0.0, 127.5, 255.0, f32::NAN];
        apply(
            ValueTransform::Normalize {
                shift: 127.5,
                scale: 127.5,
            },
            &mut d,
            [1, 1, 4],
        );
        assert_eq!(&d[..3], &[-1.0, 0.0, 1.0]);
        assert!(d[3].is_nan());
        apply(ValueTransform::Binarize { threshold: 0.0 }, &mut d, [1, 1, 4]);
        assert_eq!(&d[..3], &[0.0, 0.0, 1.0]);
        assert!(d[3].is_nan());
        let mut d = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 2.0];
        apply(
            ValueTransform::NanToNum {
                nan: 0.5,
                posinf: None,
                neginf: Some(-3.0),
            },
            &mut d,
            [1, 1, 4],
        );
        assert_eq!(d, [0.5, f32::INFINITY, -3.0, 2.0]);
    }

    #[test]
    fn contrast_and_gamma_exact() {
        // r is fixed by an empty range; mean of non-NaN = 0.5.
        let mut d = [0.25, 0.75, f32::NAN, 0.5];
        apply(ValueTransform::RandomContrast { range: (2.0, 2.0) }, &mut d, [1, 2, 2]);
        assert_eq!(d, [0.0, 1.0, 0.0, 0.5]);
        let mut d = [-1.0, 0.25, 4.0, f32::NAN];
        apply(ValueTransform::RandomGamma { range: (2.0, 2.0) }, &mut d, [1, 2, 2]);
        assert_eq!(d, [0.0, 0.0625, 1.0, 0.0]);
    }

    #[test]
    fn blur_constant_unchanged_and_impulse_kernel() {
        let mut d = vec![0.3f32; 5 * 6 * 7];
        apply(
            ValueTransform::GaussianBlur {
                sigma_vox: [1.0, 2.0, 0.5],
                radius_vox: 3,
            },
            &mut d,
            [5, 6, 7],
        );
        assert!(d.iter().all(|v| *v == 0.3));
        // Impulse along x only: the row becomes the normalised kernel.
        let mut d = vec![0.0f32; 7];
        d[3] = 1.0;
        apply(
            ValueTransform::GaussianBlur {
                sigma_vox: [0.0, 0.0, 1.0],
                radius_vox: 1,
            },
            &mut d,
            [1, 1, 7],
        );
        let e = (-0.5f64).exp();
        let (side, mid) = ((e / (1.0 + 2.0 * e)) as f32, (1.0 / (1.0 + 2.0 * e)) as f32);
        assert_eq!(d, vec![0.0, 0.0, side, mid, side, 0.0, 0.0]);
        // Replicate edges: a step at the border keeps its edge value.
        let mut d = vec![1.0f32, 0.0, 0.0];
        apply(
            ValueTransform::GaussianBlur {
                sigma_vox: [0.0, 0.0, 1.0],
                radius_vox: 1,
            },
            &mut d,
            [1, 1, 3],
        );
        assert_eq!(d[0], ((1.0 + e) / (1.0 + 2.0 * e)) as f32);
    }

    #[test]
    fn noise_is_deterministic_and_scaled() {
        let mut a = vec![1.0f32; 10_001];
        let mut b = a.clone();
        let t = ValueTransform::GaussianNoise { mean: 0.5, std: 0.1 };
        apply(t.clone(), &mut a, [1, 1, 10_001]);
        apply(t, &mut b, [1, 1, 10_001]);
        assert_eq!(a, b);
        let mean = a.iter().map(|v| f64::from(*v)).sum::<f64>() / a.len() as f64;
        assert!((mean - 1.5).abs() < 0.005, "{mean}");
        let mut short = [0.0f32; 2];
        let err = apply_value_transforms(&[], &mut short, [1, 1, 3], &mut rng(), &mut ValueScratch::default());
        assert_eq!(
            err,
            Err(ValueError::ShapeMismatch {
                shape: [1, 1, 3],
                expected: 3,
                len: 2
            })
        );
    }
}
