//! [`StridedDest`]: the destination view every copy kernel writes through.

/// Why a [`StridedDest`] could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DestError {
    /// Some destination index of the window falls outside the destination slice.
    #[error(
        "window {shape_vox:?} with offset {dest_offset} and strides {dest_strides:?} addresses indices {min_index}..={max_index}, outside a destination of {dest_len} elements"
    )]
    OutOfRange {
        /// Window shape (voxels).
        shape_vox: [usize; 3],
        /// Destination offset.
        dest_offset: usize,
        /// Destination strides.
        dest_strides: [isize; 3],
        /// Smallest addressed index.
        min_index: i128,
        /// Largest addressed index.
        max_index: i128,
        /// Destination length.
        dest_len: usize,
    },
}

/// A `shape` window of voxels mapped into a slice: voxel `(i, j, k)` lives at
/// `data[base + i·strides[0] + j·strides[1] + k·strides[2]]`. Strides may be negative (a
/// mirrored crop) or permuted (a transposed crop). Made by [`StridedDest::new`], which checks
/// that every voxel's index lies in `data`.
#[derive(Debug)]
pub struct StridedDest<'a, T> {
    pub(crate) data: &'a mut [T],
    pub(crate) base: isize,
    pub(crate) strides: [isize; 3],
    pub(crate) shape: [usize; 3],
}

impl<'a, T> StridedDest<'a, T> {
    /// The window `shape` (voxels, `z y x`) whose voxel `(0, 0, 0)` is `data[offset]` and whose
    /// axes advance by `strides` elements.
    ///
    /// # Errors
    /// [`DestError::OutOfRange`] when some voxel's index falls outside `data` (an empty window
    /// addresses nothing and is always accepted).
    pub fn new(data: &'a mut [T], offset: usize, strides: [isize; 3], shape: [usize; 3]) -> Result<Self, DestError> {
        if !shape.contains(&0) {
            let (mut lo, mut hi) = (offset as i128, offset as i128);
            for a in 0..3 {
                let span = (shape[a] as i128 - 1) * strides[a] as i128;
                if span < 0 {
                    lo += span;
                } else {
                    hi += span;
                }
            }
            if lo < 0 || hi >= data.len() as i128 {
                return Err(DestError::OutOfRange {
                    shape_vox: shape,
                    dest_offset: offset,
                    dest_strides: strides,
                    min_index: lo,
                    max_index: hi,
                    dest_len: data.len(),
                });
            }
        }
        Ok(StridedDest {
            data,
            base: offset as isize,
            strides,
            shape,
        })
    }

    /// The window `shape` in C order from `data[0]`.
    ///
    /// # Errors
    /// [`DestError::OutOfRange`] when `data` holds fewer than the window's voxels.
    pub fn c_order(data: &'a mut [T], shape: [usize; 3]) -> Result<Self, DestError> {
        let strides = [(shape[1] * shape[2]) as isize, shape[2] as isize, 1];
        Self::new(data, 0, strides, shape)
    }

    /// The window shape (voxels, `z y x`).
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// The element strides per axis.
    pub fn strides(&self) -> [isize; 3] {
        self.strides
    }

    /// The index of voxel `(0, 0, 0)`.
    pub fn offset(&self) -> usize {
        self.base.unsigned_abs()
    }
}

impl<T: Copy> StridedDest<'_, T> {
    /// Write `value` to every voxel of the window.
    pub(crate) fn fill(&mut self, value: T) {
        fill(self.data, self.base, self.strides, self.shape, value);
    }
}

/// [`StridedDest::fill`] on the parts taken apart, so the loop keeps them in registers.
#[inline]
fn fill<T: Copy>(data: &mut [T], base: isize, strides: [isize; 3], shape: [usize; 3], value: T) {
    for i in 0..shape[0] {
        for j in 0..shape[1] {
            let d0 = base + i as isize * strides[0] + j as isize * strides[1];
            for k in 0..shape[2] {
                if let Some(d) = data.get_mut((d0 + k as isize * strides[2]) as usize) {
                    *d = value;
                }
            }
        }
    }
}
