//! Narrowing decoded integers: a wide chunk (label ids stored as `uint64`, say) written into the
//! narrowest unsigned type that holds every value, and telling a `uint8` chunk whose elements are
//! all equal. One pass over the source, a block at a time, of vector operations only: every value
//! written truncated, and the bits of all of them OR-ed together (a value that does not fit, or a
//! negative one, sets a bit above the narrow type's) and with their difference from the first.
//! Compiled for AVX2 where the CPU has it ([`crate::cpu::Features`]).
//!
//! These run once per decoded chunk (every cache miss), so they are on the cold-read path: a
//! bounds fold in `i128` and an early-exit equality scan (neither vectorised) took 10–16 % of a
//! cache-off run before.

use std::ops::{BitOr, BitXor, Shr};

/// Elements per block: 16 KiB of `uint64`; a block that does not fit ends the pass.
const BLOCK: usize = 2048;

/// A signed or unsigned integer type whose values can be narrowed: its bits as the unsigned
/// type of its width (a negative value has its high bits set, so it fits no narrower unsigned
/// type), and its low 16 bits.
pub(crate) trait Wide: Copy {
    /// Width in bits.
    const WIDTH: u32;
    /// The unsigned type of the same width.
    type Bits: Copy
        + Default
        + PartialEq
        + BitOr<Output = Self::Bits>
        + BitXor<Output = Self::Bits>
        + Shr<u32, Output = Self::Bits>;
    /// The value's bits.
    fn bits(self) -> Self::Bits;
    /// The value's low 16 bits.
    fn low(self) -> u16;
}

macro_rules! wide {
    ($($t:ty => $u:ty),*) => {$(
        impl Wide for $t {
            const WIDTH: u32 = <$t>::BITS;
            type Bits = $u;
            #[inline(always)]
            fn bits(self) -> $u {
                self as $u
            }
            #[inline(always)]
            fn low(self) -> u16 {
                self as u16
            }
        }
    )*};
}
wide!(u16 => u16, u32 => u32, u64 => u64, i16 => u16, i32 => u32, i64 => u64);

/// The unsigned type a chunk is narrowed into.
pub(crate) trait Narrow: Copy {
    /// Its width in bits: a value fits when no bit above these is set.
    const BITS: u32;
    /// The type's value of the low 16 bits `v` (truncated to the type).
    fn from_low(v: u16) -> Self;
}

impl Narrow for u8 {
    const BITS: u32 = 8;
    #[inline(always)]
    fn from_low(v: u16) -> Self {
        v as u8
    }
}

impl Narrow for u16 {
    const BITS: u32 = 16;
    #[inline(always)]
    fn from_low(v: u16) -> Self {
        v
    }
}

/// Write `src`'s values into `dst` (equal lengths) as `N` when every one of them lies in
/// `0..=N::MAX`: `Some(true)` when they are all equal too, `Some(false)` when not. `None` when a
/// value does not fit, `dst` then partly written, and for an `N` no narrower than `S`.
pub(crate) fn narrow_into<S: Wide, N: Narrow>(src: &[S], dst: &mut [N]) -> Option<bool> {
    assert_eq!(src.len(), dst.len(), "narrow_into: lengths differ");
    if N::BITS >= S::WIDTH {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::Features::get().avx2 {
        // SAFETY: the CPU supports AVX2 (`Features::get`).
        return unsafe { narrow_into_avx2(src, dst) };
    }
    narrow_blocks(src, dst)
}

/// True when `v` is not empty and every element equals the first.
pub(crate) fn is_uniform(v: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::Features::get().avx2 {
        // SAFETY: the CPU supports AVX2 (`Features::get`).
        return unsafe { uniform_avx2(v) };
    }
    uniform_blocks(v)
}

/// One pass per block, every step a vector operation: each value written truncated, its bits
/// OR-ed together (a value that does not fit sets a bit above `N::BITS`) and OR-ed with their
/// difference from the first value (zero when all are equal); the fit is checked between blocks.
#[inline(always)]
fn narrow_blocks<S: Wide, N: Narrow>(src: &[S], dst: &mut [N]) -> Option<bool> {
    let Some(first) = src.first().map(|x| x.bits()) else {
        return Some(false);
    };
    let zero = S::Bits::default();
    let mut differ = zero;
    for (s, d) in src.chunks(BLOCK).zip(dst.chunks_mut(BLOCK)) {
        let (mut any, mut diff) = (zero, zero);
        for (d, &x) in d.iter_mut().zip(s) {
            let b = x.bits();
            any = any | b;
            diff = diff | (b ^ first);
            *d = N::from_low(x.low());
        }
        if any >> N::BITS != zero {
            return None;
        }
        differ = differ | diff;
    }
    Some(differ == zero)
}

#[inline(always)]
fn uniform_blocks(v: &[u8]) -> bool {
    let Some(&first) = v.first() else {
        return false;
    };
    // The OR of every byte's difference from the first, a block at a time (a vector reduction
    // within the block; the exit is taken between blocks).
    v.chunks(BLOCK)
        .all(|b| b.iter().fold(0u8, |acc, &x| acc | (x ^ first)) == 0)
}

/// [`narrow_blocks`] compiled with AVX2 (same results).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn narrow_into_avx2<S: Wide, N: Narrow>(src: &[S], dst: &mut [N]) -> Option<bool> {
    narrow_blocks(src, dst)
}

/// [`uniform_blocks`] compiled with AVX2 (same results).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn uniform_avx2(v: &[u8]) -> bool {
    uniform_blocks(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What narrowing must give, computed the slow and obvious way.
    fn reference<S: Wide + Into<i128>, N: Narrow>(src: &[S]) -> Option<(Vec<N>, bool)> {
        let wide: Vec<i128> = src.iter().map(|&x| x.into()).collect();
        let max = (1i128 << N::BITS) - 1;
        if wide.iter().any(|&x| !(0..=max).contains(&x)) {
            return None;
        }
        let uniform = !wide.is_empty() && wide.iter().all(|&x| x == wide[0]);
        Some((wide.into_iter().map(|x| N::from_low(x as u16)).collect(), uniform))
    }

    fn check<S: Wide + Into<i128> + std::fmt::Debug, N: Narrow + Default + PartialEq + std::fmt::Debug>(
        src: &[S],
        what: &str,
    ) {
        let mut got = vec![N::default(); src.len()];
        let fit = narrow_into(src, &mut got);
        let mut baseline = vec![N::default(); src.len()];
        assert_eq!(
            fit,
            narrow_blocks(src, &mut baseline),
            "{what}: dispatched and baseline differ"
        );
        match reference::<S, N>(src) {
            Some((values, uniform)) => {
                assert_eq!(fit, Some(uniform), "{what}");
                assert_eq!(got, values, "{what}");
            }
            None => assert_eq!(fit, None, "{what}"),
        }
    }

    /// A value out of range is found wherever it sits (first element, a block's last, the
    /// last), for every source type, and values that fit are written exactly.
    #[test]
    fn narrowing_matches_the_reference_at_every_position() {
        let n = 3 * BLOCK + 77;
        for at in [0, BLOCK - 1, BLOCK, 2 * BLOCK + 5, n - 1] {
            let base: Vec<u64> = (0..n as u64).map(|i| (i * 37) % 251).collect();
            for (bad, what) in [(256u64, "256"), (65_536, "65536"), (u64::MAX, "max")] {
                let mut v = base.clone();
                v[at] = bad;
                check::<u64, u8>(&v, &format!("u64→u8, {what} at {at}"));
                check::<u64, u16>(&v, &format!("u64→u16, {what} at {at}"));
            }
            let mut signed: Vec<i64> = base.iter().map(|&x| x as i64).collect();
            signed[at] = -1;
            check::<i64, u8>(&signed, &format!("i64 -1 at {at}"));
            let mut i16s: Vec<i16> = base.iter().map(|&x| x as i16).collect();
            i16s[at] = i16::MIN;
            check::<i16, u8>(&i16s, &format!("i16 min at {at}"));
            let mut u32s: Vec<u32> = base.iter().map(|&x| x as u32).collect();
            u32s[at] = 255;
            check::<u32, u8>(&u32s, &format!("u32 255 at {at}"));
            let mut u16s: Vec<u16> = base.iter().map(|&x| x as u16).collect();
            u16s[at] = 300;
            check::<u16, u8>(&u16s, &format!("u16 300 at {at}"));
        }
    }

    /// All-equal sources are reported uniform; one element apart (anywhere) is not.
    #[test]
    fn uniformity_is_exact() {
        let n = 2 * BLOCK + 3;
        for value in [0u64, 1, 255] {
            let v = vec![value; n];
            check::<u64, u8>(&v, "uniform u64");
            let mut u8s = vec![value as u8; n];
            assert!(is_uniform(&u8s));
            for at in [0, 1, BLOCK - 1, BLOCK, n - 1] {
                let mut w = v.clone();
                w[at] = (value + 1) % 256;
                check::<u64, u8>(&w, &format!("one apart at {at}"));
                u8s[at] ^= 0x80;
                assert!(!is_uniform(&u8s), "u8 one apart at {at}");
                assert!(!uniform_blocks(&u8s), "baseline, u8 one apart at {at}");
                u8s[at] ^= 0x80;
            }
        }
        assert_eq!(narrow_into(&[3u16, 4], &mut [0u16; 2]), None, "not narrower");
        assert!(!is_uniform(&[]));
        assert!(is_uniform(&[9]));
        check::<u32, u8>(&[], "empty");
    }
}
