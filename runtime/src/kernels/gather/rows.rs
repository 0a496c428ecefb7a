//! Finishing a gathered output row: a map applied, then stored in place, converted to the batch
//! element type, or written with non-temporal stores.

use super::ROW_BUF;
use crate::dtype::{BatchElem, convert_from_f32, f32_slice_mut};
use crate::kernels::Element;
use crate::kernels::stream::store_stream;

/// Where a finished output row is: computed in place in `out` (`direct`), or staged in the row
/// buffer and written with non-temporal stores (`stream`) or plain ones.
#[derive(Clone, Copy)]
pub(super) struct Row {
    pub(super) direct: bool,
    pub(super) stream: bool,
    pub(super) row: usize,
    pub(super) nx: usize,
}

/// Finishes output row `at.row`: `map` applied to every value, then (unless it was computed in
/// place) the row staged in `buf` is written to `out` as `O`.
#[inline(always)]
pub(super) fn continue_row<O: BatchElem + Element>(
    at: Row,
    buf: &mut [f32],
    out: &mut [O],
    map: impl Fn(f32) -> f32 + Copy,
) {
    let Row {
        direct,
        stream,
        row,
        nx,
    } = at;
    let dest = &mut out[row..row + nx];
    if direct {
        if let Some(dest) = f32_slice_mut(dest) {
            dest.iter_mut().for_each(|v| *v = map(*v));
        }
        return;
    }
    let src = &mut buf[..nx];
    match (f32_slice_mut(dest), stream) {
        (Some(dest), true) => {
            src.iter_mut().for_each(|v| *v = map(*v));
            store_stream(src, dest);
        }
        (Some(dest), false) => dest.iter_mut().zip(src.iter()).for_each(|(d, &v)| *d = map(v)),
        (None, true) => {
            let mut typed = [O::ZERO; ROW_BUF];
            convert_from_f32(src, &mut typed[..nx], map);
            store_stream(&typed[..nx], &mut out[row..row + nx]);
        }
        (None, false) => convert_from_f32(src, dest, map),
    }
}
