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
        f16::from_bits(f16_bits(v))
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
        bf16::from_bits(bf16_bits(v))
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
            // Adding and subtracting 2^23 rounds a value in [0, 255] to the nearest integer, ties
            // to even (the default rounding mode), without a call to `rintf` (x86-64's baseline
            // has no rounding instruction).
            const MAGIC: f32 = 8_388_608.0;
            ((v.clamp(0.0, 255.0) + MAGIC) - MAGIC) as u8
        }
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from(self)
    }
    views!(U8, u8);
}

/// The IEEE binary16 bits nearest `f` (ties to even; NaN becomes a quiet NaN of the same sign),
/// branch-free so that the copy loops that call it stay vectorizable (`half`'s conversion checks
/// for the F16C instruction on every call). After F. Giesen's `float_to_half_fast3_rtne`.
#[inline(always)]
fn f16_bits(f: f32) -> u16 {
    const F32_INF: u32 = 0xff << 23;
    const F16_OVERFLOW: u32 = (127 + 16) << 23;
    const F16_MIN_NORMAL: u32 = 113 << 23;
    const DENORM_MAGIC: u32 = ((127 - 15) + (23 - 10) + 1) << 23;
    // Rebias the exponent (−112 · 2^23, wrapping) and add the rounding bias 0xfff.
    const REBIAS: u32 = 0xc800_0fff;
    let x = f.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let u = x & 0x7fff_ffff;
    let inf_or_nan: u16 = if u > F32_INF { 0x7e00 } else { 0x7c00 };
    // Subnormal results: the float addition rounds, ties to even.
    let subnormal = (f32::from_bits(u) + f32::from_bits(DENORM_MAGIC))
        .to_bits()
        .wrapping_sub(DENORM_MAGIC) as u16;
    let odd = (u >> 13) & 1;
    let normal = (u.wrapping_add(REBIAS).wrapping_add(odd) >> 13) as u16;
    let bits = if u >= F16_OVERFLOW {
        inf_or_nan
    } else if u < F16_MIN_NORMAL {
        subnormal
    } else {
        normal
    };
    bits | sign
}

/// The bfloat16 bits nearest `f` (ties to even; NaN stays a quiet NaN).
#[inline(always)]
fn bf16_bits(f: f32) -> u16 {
    let x = f.to_bits();
    let rounded = (x.wrapping_add(0x7fff + ((x >> 16) & 1)) >> 16) as u16;
    if x & 0x7fff_ffff > 0x7f80_0000 {
        ((x >> 16) as u16) | 0x0040
    } else {
        rounded
    }
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

/// `dst[i] = T::from_f32(map(src[i]))`: values computed in `f32` (a gathered row, an array with
/// value transforms) stored as `T`, a pointwise `map` applied on the way.
#[inline(always)]
pub(crate) fn convert_from_f32<T: BatchElem>(src: &[f32], dst: &mut [T], map: impl Fn(f32) -> f32 + Copy) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = T::from_f32(map(s));
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

    /// The branch-free conversions equal `half`'s (and rounding ties to even) over a sweep of
    /// every exponent and many mantissas, the halfway points, subnormals and the specials.
    #[test]
    fn fast_conversions_equal_the_reference() {
        let check = |x: f32| {
            let (a, b) = (f16::from_f32(x), <f16 as BatchElem>::from_f32(x));
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "f16 {x:e} ({:#x})",
                x.to_bits()
            );
            let (a, b) = (bf16::from_f32(x), <bf16 as BatchElem>::from_f32(x));
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "bf16 {x:e} ({:#x})",
                x.to_bits()
            );
            let want = if x.is_nan() {
                255
            } else {
                x.clamp(0.0, 255.0).round_ties_even() as u8
            };
            assert_eq!(u8::from_f32(x), want, "u8 {x:e}");
        };
        for bits in (0..=u32::MAX).step_by(997) {
            check(f32::from_bits(bits));
        }
        for k in 0..=(1u32 << 16) {
            // Halfway and nearby points of f16 (13 dropped bits) and bf16 (16 dropped bits).
            for low in [0x0fff, 0x1000, 0x1001, 0x7fff, 0x8000, 0x8001] {
                check(f32::from_bits((k << 16) | low));
            }
        }
        for x in [
            0.0,
            -0.0,
            0.5,
            1.5,
            2.5,
            254.5,
            255.5,
            65504.0,
            65520.0,
            1e-8,
            f32::MIN_POSITIVE,
            f32::INFINITY,
        ] {
            check(x);
            check(-x);
        }
    }

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
