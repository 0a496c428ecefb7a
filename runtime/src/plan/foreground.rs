//! Foreground centres of one class in one dataset, for foreground-biased sampling.
//!
//! A centre of the dataset's grid is foreground when the class' label at the voxel nearest to it
//! (at the level the plan reads) is above the class' binarize threshold (0 when it has none).
//! The label is read one z-plane of centres at a time, so memory stays at one plane of the level
//! plus one bit per centre, even for crops with 10⁹ centres.

use cellmap_schema::{Spec, ValueTransform};

use crate::kernels::{DestError, StridedDest};
use crate::plan::{ClassPlan, DatasetPlan};
use crate::read::{ReadError, WindowRequest, read_window};
use crate::sampler::{ForegroundIndex, SamplerError};
use crate::sources::{ClassSource, DatasetSources};

/// Why the foreground centres of a class could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ForegroundError {
    /// Reading a plane of the class' labels failed (names the array and chunk).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The plane buffer does not describe the window (an internal inconsistency).
    #[error(transparent)]
    Destination(#[from] DestError),
    /// The mask does not fit the centre grid.
    #[error(transparent)]
    Index(#[from] SamplerError),
}

/// The foreground index of `class` in a planned dataset, or `None` when the dataset does not
/// annotate the class (foreground-biased draws then fall back to uniform centres there).
pub(crate) fn foreground_index(
    spec: &Spec,
    plan: &DatasetPlan,
    sources: &DatasetSources,
    class: usize,
) -> Result<Option<ForegroundIndex>, ForegroundError> {
    let (Some(ClassPlan::Annotated(lp)), Some(ClassSource::Annotated(group))) = (
        plan.targets.first().and_then(|t| t.get(class)),
        sources.classes.get(class),
    ) else {
        return Ok(None);
    };
    let level = &group.levels[lp.level];
    let threshold = match spec.augment().targets_of(&spec.classes()[class]).first() {
        Some(ValueTransform::Binarize { threshold }) => *threshold,
        _ => 0.0,
    };
    let grid = &plan.grid;
    // Nearest level voxel of each grid index, per axis (the grid is separable).
    let voxel = |a: usize, k: u64| -> i64 {
        let c = grid.origin_nm[a] + k as f64 * grid.step_nm[a];
        ((c - level.translation_nm[a]) / level.scale_nm[a] + 0.5).floor() as i64
    };
    let along = |a: usize| -> Vec<i64> { (0..grid.shape[a]).map(|k| voxel(a, k)).collect() };
    let (ys, xs) = (along(1), along(2));
    let inside = |v: i64, a: usize| v >= 0 && v < level.shape_vox[a] as i64;
    let y_lo = ys.iter().copied().filter(|&v| inside(v, 1)).min();
    let y_hi = ys.iter().copied().filter(|&v| inside(v, 1)).max();
    let x_lo = xs.iter().copied().filter(|&v| inside(v, 2)).min();
    let x_hi = xs.iter().copied().filter(|&v| inside(v, 2)).max();
    let mut mask = Vec::with_capacity(grid.len() as usize);
    let (Some(y0), Some(y1), Some(x0), Some(x1)) = (y_lo, y_hi, x_lo, x_hi) else {
        return ForegroundIndex::from_mask(grid.shape, std::iter::repeat_n(false, grid.len() as usize))
            .map(Some)
            .map_err(ForegroundError::from);
    };
    let (h, w) = ((y1 - y0 + 1) as usize, (x1 - x0 + 1) as usize);
    let mut plane = vec![0f32; h * w];
    for kz in 0..grid.shape[0] {
        let vz = voxel(0, kz);
        if !inside(vz, 0) {
            mask.extend(std::iter::repeat_n(false, ys.len() * xs.len()));
            continue;
        }
        let dest = StridedDest::c_order(&mut plane, [1, h, w])?;
        read_window(
            level,
            None,
            &WindowRequest {
                start_vox: [vz, y0, x0],
                fill: 0.0,
            },
            dest,
        )?;
        for &vy in &ys {
            for &vx in &xs {
                let fg = inside(vy, 1)
                    && inside(vx, 2)
                    && f64::from(plane[(vy - y0) as usize * w + (vx - x0) as usize]) > threshold;
                mask.push(fg);
            }
        }
    }
    Ok(Some(ForegroundIndex::from_mask(grid.shape, mask)?))
}
