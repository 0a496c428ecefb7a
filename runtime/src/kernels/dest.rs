//! [`StridedDest`]: the destination view every copy kernel writes through.

use std::ops::Range;

use super::Element;
use super::stream::{FILL_PIECE, fill_stream};

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

impl<T: Element> StridedDest<'_, T> {
    /// Write `value` to every voxel of the window outside the box `inside` (window voxels per
    /// axis, `z y x`; an empty range on any axis leaves no box, and every voxel is written). A
    /// window read fills only what lies outside the level this way, then writes the box.
    /// Contiguous runs go out with non-temporal stores when `stream` (the caller fences).
    pub(crate) fn fill_outside(&mut self, inside: [Range<usize>; 3], value: T, stream: bool) {
        let piece = [value; FILL_PIECE];
        let value = Fill {
            value,
            piece: stream.then_some(&piece),
        };
        let no_box = inside.iter().any(Range::is_empty);
        let [s0, s1, s2] = self.strides;
        for i in 0..self.shape[0] {
            let row_in_z = !no_box && inside[0].contains(&i);
            for j in 0..self.shape[1] {
                let d0 = self.base + i as isize * s0 + j as isize * s1;
                if row_in_z && inside[1].contains(&j) {
                    fill_row(self.data, d0, s2, 0..inside[2].start, value);
                    fill_row(self.data, d0, s2, inside[2].end..self.shape[2], value);
                } else {
                    fill_row(self.data, d0, s2, 0..self.shape[2], value);
                }
            }
        }
    }
}

/// What [`StridedDest::fill_outside`] writes: the value, and a buffer of it to stream from.
#[derive(Clone, Copy)]
struct Fill<'p, T> {
    value: T,
    piece: Option<&'p [T; FILL_PIECE]>,
}

/// Write the value to the voxels `ks` of the row whose voxel 0 is `data[d0]` and whose voxels
/// are `stride` apart: one slice fill (vectorised, or streamed) when they are contiguous (stride
/// ±1), else voxel by voxel. Indices outside `data` (which [`StridedDest::new`] rules out) are
/// skipped.
#[inline]
fn fill_row<T: Element>(data: &mut [T], d0: isize, stride: isize, ks: Range<usize>, fill: Fill<'_, T>) {
    let value = fill.value;
    if ks.is_empty() {
        return;
    }
    if stride.unsigned_abs() == 1 {
        let first = d0 + ks.start as isize * stride;
        let last = d0 + (ks.end - 1) as isize * stride;
        let (a, b) = (first.min(last), first.max(last));
        if let (Ok(a), Ok(b)) = (usize::try_from(a), usize::try_from(b))
            && let Some(run) = data.get_mut(a..=b)
        {
            match fill.piece {
                Some(piece) => fill_stream(piece, run),
                None => run.fill(value),
            }
            return;
        }
    }
    for k in ks {
        if let Some(d) = usize::try_from(d0 + k as isize * stride)
            .ok()
            .and_then(|d| data.get_mut(d))
        {
            *d = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every voxel outside the box gets the value and no voxel inside it does, for plain,
    /// mirrored and transposed destinations, boxes touching any face, and no box at all.
    #[test]
    fn fill_outside_writes_exactly_the_voxels_outside_the_box() {
        let shape = [3usize, 4, 5];
        let n = 68;
        // (offset, strides): C order (from the start, and further in), x mirrored, z mirrored,
        // transposed (x slowest).
        let layouts: [(usize, [isize; 3]); 5] = [
            (0, [20, 5, 1]),
            (8, [20, 5, 1]),
            (4, [20, 5, -1]),
            (40, [-20, 5, 1]),
            (0, [1, 3, 12]),
        ];
        let boxes = [
            [1..2, 1..3, 1..4],
            [0..3, 0..4, 2..5],
            [0..1, 3..4, 0..5],
            [0..3, 0..4, 0..5],
            [1..2, 2..2, 0..5],
            [0..3, 1..3, 0..5],
            [2..3, 0..4, 1..5],
            [1..3, 0..2, 0..4],
        ];
        for (offset, strides) in layouts {
            for (inside, stream) in boxes.iter().flat_map(|b| [(b, false), (b, true)]) {
                let mut data = vec![0u8; n];
                let mut dest = StridedDest::new(&mut data, offset, strides, shape).unwrap();
                dest.fill_outside(inside.clone(), 7, stream);
                let mut expected = vec![0u8; n];
                let empty = inside.iter().any(Range::is_empty);
                for (i, j, k) in (0..3).flat_map(|i| (0..4).flat_map(move |j| (0..5).map(move |k| (i, j, k)))) {
                    let within = !empty && inside[0].contains(&i) && inside[1].contains(&j) && inside[2].contains(&k);
                    let d =
                        offset as isize + i as isize * strides[0] + j as isize * strides[1] + k as isize * strides[2];
                    if !within {
                        expected[d as usize] = 7;
                    }
                }
                assert_eq!(
                    data, expected,
                    "offset {offset}, strides {strides:?}, box {inside:?}, stream {stream}"
                );
            }
        }
    }
}
