//! Batch element types: `float32`, `float16`, `bfloat16` and `uint8` ring arrays, the typed views
//! of them, and the conversions from the `f32` values the kernels compute.
//!
//! Conversions round to nearest (ties to even) and keep NaN where the type has one. `uint8` has
//! no NaN: an unknown target voxel is [`OutputDtype::UNKNOWN_U8`] (255), and a value is rounded
//! and clamped to `0..=255`; validation only lets through arrays whose values fit (a `uint8`
//! input holds stored `uint8` values, a `uint8` target binarized values), so neither changes data.

use cellmap_schema::OutputDtype;
use half::{bf16, f16};

/// An element type of a batch array.
pub trait BatchElem: Copy + Send + Sync + Default + PartialEq + std::fmt::Debug + 'static + sealed::Sealed {
    /// The spec dtype.
    const DTYPE: OutputDtype;
    /// The element nearest `v` (NaN: NaN, or 255 for `uint8`).
    fn from_f32(v: f32) -> Self;
    /// The element as `f32` (exact for every type; `uint8`'s 255 reads as 255).
    fn to_f32(self) -> f32;
    /// The typed slice of a mutable view, when the view holds this type.
    fn slice_mut<'a>(view: ArrayViewMut<'a>) -> Option<&'a mut [Self]>;
    /// The typed slice of a view, when the view holds this type.
    fn slice<'a>(view: ArrayView<'a>) -> Option<&'a [Self]>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
    impl Sealed for u8 {}
}

macro_rules! views {
    ($variant:ident, $t:ty) => {
        fn slice_mut<'a>(view: ArrayViewMut<'a>) -> Option<&'a mut [Self]> {
            match view {
                ArrayViewMut::$variant(s) => Some(s),
                _ => None,
            }
        }
        fn slice<'a>(view: ArrayView<'a>) -> Option<&'a [Self]> {
            match view {
                ArrayView::$variant(s) => Some(s),
                _ => None,
            }
        }
    };
}

impl BatchElem for f32 {
    const DTYPE: OutputDtype = OutputDtype::Float32;
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    views!(F32, f32);
}

impl BatchElem for f16 {
    const DTYPE: OutputDtype = OutputDtype::Float16;
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    views!(F16, f16);
}

impl BatchElem for bf16 {
    const DTYPE: OutputDtype = OutputDtype::Bfloat16;
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    views!(Bf16, bf16);
}

impl BatchElem for u8 {
    const DTYPE: OutputDtype = OutputDtype::Uint8;
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        if v.is_nan() {
            OutputDtype::UNKNOWN_U8
        } else {
            // `as` saturates: values beyond the range become 0 or 255.
            v.round_ties_even() as u8
        }
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from(self)
    }
    views!(U8, u8);
}

/// One batch array (or one sample's part of it), typed by its dtype.
#[derive(Debug, Clone, Copy)]
pub enum ArrayView<'a> {
    /// `float32`.
    F32(&'a [f32]),
    /// `float16`.
    F16(&'a [f16]),
    /// `bfloat16`.
    Bf16(&'a [bf16]),
    /// `uint8`.
    U8(&'a [u8]),
}

/// One sample's part of a batch array, writable, typed by its dtype.
#[derive(Debug)]
pub enum ArrayViewMut<'a> {
    /// `float32`.
    F32(&'a mut [f32]),
    /// `float16`.
    F16(&'a mut [f16]),
    /// `bfloat16`.
    Bf16(&'a mut [bf16]),
    /// `uint8`.
    U8(&'a mut [u8]),
}

impl<'a> ArrayView<'a> {
    /// The dtype.
    pub fn dtype(&self) -> OutputDtype {
        match self {
            ArrayView::F32(_) => OutputDtype::Float32,
            ArrayView::F16(_) => OutputDtype::Float16,
            ArrayView::Bf16(_) => OutputDtype::Bfloat16,
            ArrayView::U8(_) => OutputDtype::Uint8,
        }
    }

    /// Elements.
    pub fn len(&self) -> usize {
        match self {
            ArrayView::F32(s) => s.len(),
            ArrayView::F16(s) => s.len(),
            ArrayView::Bf16(s) => s.len(),
            ArrayView::U8(s) => s.len(),
        }
    }

    /// True when the view holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as `f32` (see [`BatchElem::to_f32`]).
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn get_f32(&self, i: usize) -> f32 {
        match self {
            ArrayView::F32(s) => s[i],
            ArrayView::F16(s) => s[i].to_f32(),
            ArrayView::Bf16(s) => s[i].to_f32(),
            ArrayView::U8(s) => f32::from(s[i]),
        }
    }

    /// Every element as `f32` (a copy; for tools and tests, not the training path).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        (0..self.len()).map(|i| self.get_f32(i)).collect()
    }

    /// The raw bytes (native endianness).
    pub fn as_bytes(self) -> &'a [u8] {
        // SAFETY: every element type is plain data without padding; the byte view covers the
        // same memory.
        unsafe {
            match self {
                ArrayView::F32(s) => std::slice::from_raw_parts(s.as_ptr().cast(), size_of_val(s)),
                ArrayView::F16(s) => std::slice::from_raw_parts(s.as_ptr().cast(), size_of_val(s)),
                ArrayView::Bf16(s) => std::slice::from_raw_parts(s.as_ptr().cast(), size_of_val(s)),
                ArrayView::U8(s) => s,
            }
        }
    }

    /// The typed slice, when the view holds `T`.
    pub fn typed<T: BatchElem>(self) -> Option<&'a [T]> {
        T::slice(self)
    }
}

impl<'a> ArrayViewMut<'a> {
    /// The typed slice, when the view holds `T`.
    pub fn typed<T: BatchElem>(self) -> Option<&'a mut [T]> {
        T::slice_mut(self)
    }

    /// The dtype.
    pub fn dtype(&self) -> OutputDtype {
        match self {
            ArrayViewMut::F32(_) => OutputDtype::Float32,
            ArrayViewMut::F16(_) => OutputDtype::Float16,
            ArrayViewMut::Bf16(_) => OutputDtype::Bfloat16,
            ArrayViewMut::U8(_) => OutputDtype::Uint8,
        }
    }

    /// Write `v` (converted) to every element.
    pub fn fill_f32(&mut self, v: f32) {
        match self {
            ArrayViewMut::F32(s) => s.fill(v),
            ArrayViewMut::F16(s) => s.fill(f16::from_f32(v)),
            ArrayViewMut::Bf16(s) => s.fill(bf16::from_f32(v)),
            ArrayViewMut::U8(s) => s.fill(u8::from_f32(v)),
        }
    }
}

/// `dst[i] = T::from_f32(src[i])`: the last pass of an array staged in `f32` (interpolated
/// reads and value transforms compute in `f32`).
pub(crate) fn convert_from_f32<T: BatchElem>(src: &[f32], dst: &mut [T]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = T::from_f32(s);
    }
}

/// `s` as `f32`, when `T` is `f32` (the paths that compute in place in `f32`).
#[inline(always)]
pub(crate) fn f32_slice_mut<T: BatchElem>(s: &mut [T]) -> Option<&mut [f32]> {
    if T::DTYPE == OutputDtype::Float32 {
        // SAFETY: `T` is `f32` (the only `BatchElem` whose DTYPE is float32; the trait is sealed).
        Some(unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<f32>(), s.len()) })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_to_nearest_and_keep_unknown() {
        assert_eq!(u8::from_f32(f32::NAN), 255);
        assert_eq!(u8::from_f32(0.5), 0);
        assert_eq!(u8::from_f32(1.5), 2);
        assert_eq!(u8::from_f32(254.6), 255);
        assert_eq!(u8::from_f32(-3.0), 0);
        assert!(f16::from_f32(f32::NAN).is_nan());
        assert!(bf16::from_f32(f32::NAN).is_nan());
        // 1 + 2^-11 is halfway between two f16 values: ties to even gives 1.
        assert_eq!(f16::from_f32(1.0 + 2f32.powi(-11)).to_f32(), 1.0);
        assert_eq!(bf16::from_f32(1.0 + 2f32.powi(-8)).to_f32(), 1.0);
        assert_eq!(bf16::from_f32(1.0 + 3.0 * 2f32.powi(-8)).to_f32(), 1.0 + 2f32.powi(-6));
    }
}
