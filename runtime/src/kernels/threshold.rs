//! Binarize thresholds resolved once per read: for every source type, the comparison that is
//! bit-identical to converting the value to `f32` and comparing it with the `f64` threshold,
//! without converting anything per element.

/// A binarize threshold resolved once per read for every source type: integers compare as
/// `x >= k` (see [`int_threshold`]), floats against the largest `f32` not above the threshold.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Thresholds {
    pub(crate) u8: IntThreshold<u8>,
    pub(crate) u16: IntThreshold<u16>,
    pub(crate) u32: IntThreshold<u32>,
    pub(crate) u64: IntThreshold<u64>,
    pub(crate) i8: IntThreshold<i8>,
    pub(crate) i16: IntThreshold<i16>,
    pub(crate) i32: IntThreshold<i32>,
    pub(crate) i64: IntThreshold<i64>,
    /// For every f32 `x`: `f64(x) > threshold` iff `x > f32`.
    pub(crate) f32: f32,
}

impl Thresholds {
    /// The thresholds of `threshold`, computed once per thread and threshold (the bisections
    /// cost about a microsecond, as much as copying a small window).
    pub(crate) fn new(threshold: f64) -> Self {
        thread_local! {
            static LAST: std::cell::Cell<Option<(u64, Thresholds)>> = const { std::cell::Cell::new(None) };
        }
        LAST.with(|last| match last.get() {
            Some((bits, t)) if bits == threshold.to_bits() => t,
            _ => {
                let t = Self::compute(threshold);
                last.set(Some((threshold.to_bits(), t)));
                t
            }
        })
    }

    fn compute(threshold: f64) -> Self {
        let above = |x: f32| f64::from(x) > threshold;
        let mut t32 = threshold as f32;
        if f64::from(t32) > threshold {
            t32 = t32.next_down();
        }
        Self {
            u8: int_threshold(|x: u8| above(f32::from(x))),
            u16: int_threshold(|x: u16| above(f32::from(x))),
            u32: int_threshold(|x: u32| above(x as f32)),
            u64: int_threshold(|x: u64| above(x as f32)),
            i8: int_threshold(|x: i8| above(f32::from(x))),
            i16: int_threshold(|x: i16| above(f32::from(x))),
            i32: int_threshold(|x: i32| above(x as f32)),
            i64: int_threshold(|x: i64| above(x as f32)),
            f32: t32,
        }
    }
}

/// An integer type's value range, for the threshold search of [`int_threshold`].
pub(crate) trait IntRange: Copy + PartialOrd {
    const MIN: i128;
    const MAX: i128;
    fn from_i128(v: i128) -> Self;
}

macro_rules! int_range {
    ($($t:ty),*) => {$(
        impl IntRange for $t {
            const MIN: i128 = <$t>::MIN as i128;
            const MAX: i128 = <$t>::MAX as i128;
            fn from_i128(v: i128) -> Self {
                v as $t
            }
        }
    )*};
}
int_range!(u8, u16, u32, u64, i8, i16, i32, i64);

/// `above(x)` as one integer comparison `x >= k` (never true when `never`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct IntThreshold<T> {
    k: T,
    never: bool,
}

impl<T: IntRange> IntThreshold<T> {
    /// Branch-free (`&`, not `&&`), so the copy loops vectorise.
    #[inline]
    pub(crate) fn test(self, x: T) -> bool {
        (x >= self.k) & !self.never
    }
}

/// `above` is monotone in `x` (a rounding conversion followed by a comparison), so it holds
/// exactly from the first `k` where it does; found by bisection.
fn int_threshold<T: IntRange>(above: impl Fn(T) -> bool) -> IntThreshold<T> {
    let (mut lo, mut hi) = (T::MIN, T::MAX + 1);
    // Invariant: above is false below `lo`, true from `hi` on.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if above(T::from_i128(mid)) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    IntThreshold {
        k: T::from_i128(lo.min(T::MAX)),
        never: lo > T::MAX,
    }
}
