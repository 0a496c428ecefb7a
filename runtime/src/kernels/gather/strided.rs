//! Strided copies for axis-aligned transforms (mirror and transpose cost only the copy).

use super::{GatherError, GatherSource, SourceWindow, check_out};
use crate::augment::grid::StridedMap;

/// Copies source voxels straight into `out` along a [`StridedMap`] (axis-aligned transforms:
/// no interpolation). `source` is a window of the level, clipped to it; output voxels whose
/// source voxel lies outside the level get `fill`.
///
/// # Errors
/// As [`gather`](super::gather): inconsistent buffers, or a needed in-level voxel outside `src`.
pub fn copy_strided<T: Copy + Into<f32>>(
    map: &StridedMap,
    source: &GatherSource<'_, T>,
    fill: f32,
    out: &mut [f32],
) -> Result<(), GatherError> {
    let w = SourceWindow::new(source)?;
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
