//! The destination element types of a window read and the copies from each stored type.

use crate::dtype::BatchElem;
use crate::kernels::Element;
use crate::kernels::copy::{Span, copy_span, fill_span};
use crate::kernels::threshold::Thresholds;
use crate::store::{ChunkData, SourceDtype};

/// A destination element type of [`read_window`](super::read_window): `f32`, `f16` and `bf16`
/// (from any source type, through `as f32`, rounded to nearest) or `u8` (from `uint8` sources
/// only).
pub trait WindowElem: Element + sealed::Sealed {
    /// The type's name in errors.
    const NAME: &'static str;
    /// Whether a source of `dtype` can be read into this type.
    fn accepts(dtype: SourceDtype) -> bool;
}

pub(super) mod sealed {
    use crate::kernels::copy::Span;
    use crate::store::ChunkData;

    pub trait Sealed: Sized {
        /// Copy `span` of `src`; false when the source type is not accepted or an index is out
        /// of range (prevented by validation; never panics).
        fn copy_span(src: &ChunkData, span: Span<'_>, dest: &mut [Self]) -> bool;
    }
}

impl sealed::Sealed for f32 {
    fn copy_span(src: &ChunkData, span: Span<'_>, dest: &mut [f32]) -> bool {
        map_span(src, span, dest, |x| x)
    }
}

impl WindowElem for f32 {
    const NAME: &'static str = "f32";
    fn accepts(_: SourceDtype) -> bool {
        true
    }
}

/// The 16-bit floats: converted through `f32` like [`map_span`] with the identity.
macro_rules! float16 {
    ($t:ty, $name:literal) => {
        impl sealed::Sealed for $t {
            fn copy_span(src: &ChunkData, span: Span<'_>, dest: &mut [$t]) -> bool {
                map_span(src, span, dest, |x| x)
            }
        }

        impl WindowElem for $t {
            const NAME: &'static str = $name;
            fn accepts(_: SourceDtype) -> bool {
                true
            }
        }
    };
}
float16!(half::f16, "f16");
float16!(half::bf16, "bf16");

impl sealed::Sealed for u8 {
    fn copy_span(src: &ChunkData, span: Span<'_>, dest: &mut [u8]) -> bool {
        match src {
            ChunkData::U8(v) => copy_span(v, span, dest, |d, x| *d = x),
            ChunkData::UniformU8(v) => fill_span(v, span, dest, |d, x| *d = x),
            _ => false,
        }
    }
}

impl WindowElem for u8 {
    const NAME: &'static str = "u8";
    fn accepts(dtype: SourceDtype) -> bool {
        dtype == SourceDtype::U8
    }
}

/// Copy a span into a batch element type, applying `map` to every value converted to `f32`
/// and storing the result converted to `O` ([`BatchElem::from_f32`]; the identity for `f32`).
#[inline]
pub(super) fn map_span<O: BatchElem>(
    src: &ChunkData,
    span: Span<'_>,
    dest: &mut [O],
    map: impl Fn(f32) -> f32 + Copy,
) -> bool {
    let put = move |d: &mut O, x: f32| *d = O::from_f32(map(x));
    match src {
        ChunkData::U8(v) => copy_span(v, span, dest, move |d, x| put(d, f32::from(x))),
        ChunkData::UniformU8(v) => fill_span(v, span, dest, move |d, x| put(d, f32::from(x))),
        ChunkData::U16(v) => copy_span(v, span, dest, move |d, x| put(d, f32::from(x))),
        ChunkData::U32(v) => copy_span(v, span, dest, move |d, x| put(d, x as f32)),
        ChunkData::U64(v) => copy_span(v, span, dest, move |d, x| put(d, x as f32)),
        ChunkData::I8(v) => copy_span(v, span, dest, move |d, x| put(d, f32::from(x))),
        ChunkData::I16(v) => copy_span(v, span, dest, move |d, x| put(d, f32::from(x))),
        ChunkData::I32(v) => copy_span(v, span, dest, move |d, x| put(d, x as f32)),
        ChunkData::I64(v) => copy_span(v, span, dest, move |d, x| put(d, x as f32)),
        ChunkData::F32(v) => copy_span(v, span, dest, put),
        ChunkData::F64(v) => copy_span(v, span, dest, move |d, x| put(d, x as f32)),
    }
}

/// Copy a span, handing `int` whether each integer value is above the threshold of `t` and
/// `float` each float value (as `f32`).
#[inline]
pub(super) fn threshold_span<T: Copy>(
    t: &Thresholds,
    src: &ChunkData,
    span: Span<'_>,
    dest: &mut [T],
    int: impl Fn(&mut T, bool) + Copy,
    float: impl Fn(&mut T, f32) + Copy,
) -> bool {
    match src {
        ChunkData::U8(v) => copy_span(v, span, dest, |d, x| int(d, t.u8.test(x))),
        ChunkData::UniformU8(v) => fill_span(v, span, dest, |d, x| int(d, t.u8.test(x))),
        ChunkData::U16(v) => copy_span(v, span, dest, |d, x| int(d, t.u16.test(x))),
        ChunkData::U32(v) => copy_span(v, span, dest, |d, x| int(d, t.u32.test(x))),
        ChunkData::U64(v) => copy_span(v, span, dest, |d, x| int(d, t.u64.test(x))),
        ChunkData::I8(v) => copy_span(v, span, dest, |d, x| int(d, t.i8.test(x))),
        ChunkData::I16(v) => copy_span(v, span, dest, |d, x| int(d, t.i16.test(x))),
        ChunkData::I32(v) => copy_span(v, span, dest, |d, x| int(d, t.i32.test(x))),
        ChunkData::I64(v) => copy_span(v, span, dest, |d, x| int(d, t.i64.test(x))),
        ChunkData::F32(v) => copy_span(v, span, dest, float),
        ChunkData::F64(v) => copy_span(v, span, dest, |d, x| float(d, x as f32)),
    }
}
