//! Where sample centres may lie, per axis, and why none does: the reason of an exclusion names
//! the axis that fails, the array whose crop does not fit, and both extents.

use cellmap_schema::ArraySpec;

use super::{EPS, LevelPlan};

const AXES: [&str; 3] = ["z", "y", "x"];

/// The centres at which one array's crop lies inside one level (without padding): every
/// sample point `c + (j − (N − 1)/2)·r` must have its nearest voxel in the level.
pub(super) struct Fit<'a> {
    array: &'a ArraySpec,
    level: &'a LevelPlan,
    /// Lowest valid centre, nm (inclusive).
    pub(super) lo_nm: [f64; 3],
    /// Highest valid centre, nm (exclusive).
    pub(super) hi_nm: [f64; 3],
}

impl<'a> Fit<'a> {
    /// The valid centres of `array` read from `level`.
    pub(super) fn new(level: &'a LevelPlan, array: &'a ArraySpec) -> Self {
        let mut lo_nm = [0.0; 3];
        let mut hi_nm = [0.0; 3];
        for a in 0..3 {
            let half = (array.shape_vox[a] as f64 - 1.0) / 2.0 * array.voxel_size_nm[a];
            let (s, t) = (level.scale_nm[a], level.translation_nm[a]);
            lo_nm[a] = t - s / 2.0 + half;
            hi_nm[a] = t + (level.shape_vox[a] as f64 - 0.5) * s - half;
        }
        Fit {
            array,
            level,
            lo_nm,
            hi_nm,
        }
    }

    /// Extent of the crop along `a`, nm.
    fn needed_nm(&self, a: usize) -> f64 {
        self.array.shape_vox[a] as f64 * self.array.voxel_size_nm[a]
    }

    /// Extent of the level along `a`, nm.
    fn available_nm(&self, a: usize) -> f64 {
        self.level.shape_vox[a] as f64 * self.level.scale_nm[a]
    }
}

/// The centres `t + k·r` inside `[lo, hi)` along one axis: `(first centre, count)`, or `None`
/// when there is none.
pub(super) fn axis_centres(t: f64, r: f64, lo: f64, hi: f64) -> Option<(f64, u64)> {
    let k_lo = ((lo - t) / r - EPS).ceil();
    let k_hi = ((hi - t) / r - EPS).ceil() - 1.0;
    if !(k_lo.is_finite() && k_hi.is_finite()) || k_hi < k_lo {
        return None;
    }
    Some((t + k_lo * r, (k_hi - k_lo) as u64 + 1))
}

/// Why no centre of the reference grid lies in `[lo, hi)`: one clause per failing axis.
/// `fits` are the constraints that made the interval (empty with padding).
pub(super) fn no_fit_reason(
    reference: &LevelPlan,
    ref_array: &ArraySpec,
    fits: &[Fit<'_>],
    lo: [f64; 3],
    hi: [f64; 3],
) -> String {
    let clauses: Vec<String> = (0..3)
        .filter(|&a| axis_centres(reference.translation_nm[a], ref_array.voxel_size_nm[a], lo[a], hi[a]).is_none())
        .map(|a| axis_reason(a, reference, ref_array, fits, lo[a], hi[a]))
        .collect();
    if clauses.is_empty() {
        // Unreachable while the grid and this check agree; kept as a plain reason, not a panic.
        return "no sample centre is valid".to_owned();
    }
    format!("{}; enable `sampling.pad` to pad it", clauses.join("; "))
}

fn axis_reason(a: usize, reference: &LevelPlan, ref_array: &ArraySpec, fits: &[Fit<'_>], lo: f64, hi: f64) -> String {
    let axis = AXES[a];
    let r = ref_array.voxel_size_nm[a];
    // The array whose centres have the least room: alone it may already not fit.
    let tightest = fits
        .iter()
        .min_by(|x, y| (x.hi_nm[a] - x.lo_nm[a]).total_cmp(&(y.hi_nm[a] - y.lo_nm[a])));
    if let Some(f) = tightest
        && axis_centres(reference.translation_nm[a], r, f.lo_nm[a], f.hi_nm[a]).is_none()
    {
        return format!(
            "along {axis} the {}-voxel crop of `{}` at {} nm ({:.1} nm needed) does not fit in the data ({:.1} nm available in `{}` level `{}`)",
            f.array.shape_vox[a],
            f.array.name,
            f.array.voxel_size_nm[a],
            f.needed_nm(a),
            f.available_nm(a),
            f.level.group,
            f.level.path,
        );
    }
    if fits.is_empty() {
        return format!(
            "along {axis} no centre of the {r} nm grid of `{}` lies between {lo:.1} and {hi:.1} nm",
            ref_array.name
        );
    }
    // Each crop fits alone, but the places where they fit do not overlap.
    let ranges: Vec<String> = fits
        .iter()
        .map(|f| {
            format!(
                "`{}` in `{}` between {:.1} and {:.1} nm",
                f.array.name, f.level.group, f.lo_nm[a], f.hi_nm[a]
            )
        })
        .collect();
    format!(
        "along {axis} no centre of the {r} nm grid is valid for every array at once (the data do not overlap enough): valid centres of {}",
        ranges.join(", of ")
    )
}
