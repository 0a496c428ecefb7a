//! 2D samples sliced along z, y or x (`sampling.slice_axis`): which world axis a sample slices,
//! the array as the reader sees it in the slice's frame, and the array's footprint in world axes
//! (where its centres are valid).
//!
//! A 2D array is `[1, h, w]` voxels of `[vz, vy, vx]` nm in world axes. A sample slicing world
//! axis `s` is read in a *frame* whose axis 0 is the slice normal (world `s`) and whose axes 1 and
//! 2 (rows, columns) are the two other world axes in `z, y, x` order ([`frame_axes`]). The crop
//! keeps its shape `[1, h, w]` in that frame; its voxel sizes are the world ones permuted
//! ([`frame_array`]), so a y-slice of 8 × 4 × 4 nm data has rows 8 nm apart. The sample's spatial
//! transform is drawn in the frame and carried into world axes by
//! [`SpatialDraw::slice`](crate::augment::SpatialDraw::slice), so the strided copy and the gather
//! serve every slice axis unchanged.
//!
//! ```
//! use cellmap_runtime::slicing::frame_axes;
//! use cellmap_schema::Axis;
//! // A y-slice: the normal is world y, rows run along world z, columns along world x.
//! assert_eq!(frame_axes(Axis::Y), [1, 0, 2]);
//! assert_eq!(frame_axes(Axis::X), [2, 0, 1]);
//! ```

use cellmap_schema::{AXES, ArraySpec, Axis, SliceAxis, Spec, Split};

use crate::rng::{Rng, STREAM_SLICE, SampleKey};

/// The world axis a sample of `split` with `key` slices: the spec's fixed axis, or for
/// [`SliceAxis::Any`] one of z, y and x drawn uniformly from `key` (stream [`STREAM_SLICE`]) in the
/// training split and z elsewhere. Always z for a 3D spec.
pub fn slice_axis_of(spec: &Spec, split: Split, key: SampleKey) -> Axis {
    match spec.sampling().slice_axis {
        SliceAxis::Any if split.is_train() => AXES[Rng::new(key, STREAM_SLICE).below(3) as usize],
        slice => slice.axis().unwrap_or(Axis::Z),
    }
}

/// `frame[a]`: the world axis frame axis `a` of a slice along `axis` runs along (normal first,
/// then the two others in `z, y, x` order).
pub fn frame_axes(axis: Axis) -> [usize; 3] {
    match axis {
        Axis::Z => [0, 1, 2],
        Axis::Y => [1, 0, 2],
        Axis::X => [2, 0, 1],
    }
}

/// `array` in the frame of a slice along `axis`: the same shape, the world voxel sizes of the
/// frame's axes.
pub fn frame_array(array: &ArraySpec, axis: Axis) -> ArraySpec {
    ArraySpec {
        voxel_size_nm: frame_axes(axis).map(|w| array.voxel_size_nm[w]),
        ..array.clone()
    }
}

/// `array`'s crop in world axes when slicing along `axis`: its shape `[1, h, w]` moved so that the
/// one voxel lies along `axis` (`[h, 1, w]` for y, `[h, w, 1]` for x), the voxel size unchanged.
pub fn world_array(array: &ArraySpec, axis: Axis) -> ArraySpec {
    let mut shape_vox = [0usize; 3];
    for (a, &w) in frame_axes(axis).iter().enumerate() {
        shape_vox[w] = array.shape_vox[a];
    }
    ArraySpec {
        shape_vox,
        ..array.clone()
    }
}

/// The world-axis box the crops of `array` cover around their centre in a dataset of `split`:
/// the array itself for z-slices and 3D specs, its shape moved to world axes for a fixed y or x,
/// and for [`SliceAxis::Any`] in training the largest of the three per world axis, so that every
/// centre valid for it is valid for every slice axis.
pub fn footprint(spec: &Spec, array: &ArraySpec, split: Split) -> ArraySpec {
    let axes: &[Axis] = match spec.sampling().slice_axis {
        SliceAxis::Any if split.is_train() => &AXES,
        slice => &[slice.axis().unwrap_or(Axis::Z)],
    };
    let mut shape_vox = [0usize; 3];
    for &axis in axes {
        for (a, &w) in frame_axes(axis).iter().enumerate() {
            shape_vox[w] = shape_vox[w].max(array.shape_vox[a]);
        }
    }
    ArraySpec {
        shape_vox,
        ..array.clone()
    }
}

/// A spec's arrays in the frame of each world axis, made once per reader (inputs, then targets).
#[derive(Debug, Clone)]
pub(crate) struct Frames {
    n_inputs: usize,
    /// Per world axis `[z, y, x]`: the frame arrays (empty for an axis no sample slices).
    arrays: [Vec<ArraySpec>; 3],
}

impl Frames {
    /// The frames of every axis a sample of `spec` may slice.
    pub(crate) fn new(spec: &Spec) -> Frames {
        let sliced = |axis: Axis| match spec.sampling().slice_axis {
            SliceAxis::Any => true,
            slice => slice.axis().unwrap_or(Axis::Z) == axis,
        };
        let arrays = AXES.map(|axis| {
            // Z always: tools read any spec along z (validation of `any`).
            if axis == Axis::Z || sliced(axis) {
                spec.inputs()
                    .iter()
                    .chain(spec.targets())
                    .map(|a| frame_array(a, axis))
                    .collect()
            } else {
                Vec::new()
            }
        });
        Frames {
            n_inputs: spec.inputs().len(),
            arrays,
        }
    }

    /// Input array `i` in the frame of `axis`.
    pub(crate) fn input(&self, axis: Axis, i: usize) -> &ArraySpec {
        &self.of(axis)[i]
    }

    /// Target array `t` in the frame of `axis`.
    pub(crate) fn target(&self, axis: Axis, t: usize) -> &ArraySpec {
        &self.of(axis)[self.n_inputs + t]
    }

    fn of(&self, axis: Axis) -> &[ArraySpec] {
        let arrays = &self.arrays[axis.index()];
        // An axis the spec does not slice is never asked for; z is always there.
        if arrays.is_empty() { &self.arrays[0] } else { arrays }
    }

    /// The largest extent (nm) of any array in any frame, per frame axis: what an elastic lattice
    /// covers.
    pub(crate) fn largest_extent_nm(&self) -> [f64; 3] {
        let mut e = [0.0f64; 3];
        for a in self.arrays.iter().flatten() {
            for (ax, v) in e.iter_mut().enumerate() {
                *v = v.max(a.shape_vox[ax] as f64 * a.voxel_size_nm[ax]);
            }
        }
        e
    }
}
