//! Narrowing decoded integers: a wide chunk (label ids stored as `uint64`, say) written into the
//! narrowest unsigned type that holds every value, and telling a `uint8` chunk whose elements are
//! all equal. One pass over the source, a block at a time: the block's bounds in its own type
//! (a vectorised min/max reduction), then, while the block is still in L1, its values written
//! narrowed. Compiled for AVX2 where the CPU has it ([`crate::cpu::Features`]).
//!
//! These run once per decoded chunk (every cache miss), so they are on the cold-read path: a
//! bounds fold in `i128` and an early-exit equality scan (not vectorised) took 10–16 % of a
//! cache-off run before.

/// Elements per block: 16 KiB of `uint64`, which stay in L1 between the bounds and the writes.
const BLOCK: usize = 2048;

/// A signed or unsigned integer type whose values can be narrowed (exactly, through `i128`).
pub(crate) trait Wide: Copy + Ord + Into<i128> {}

impl Wide for u16 {}
impl Wide for u32 {}
impl Wide for u64 {}
impl Wide for i16 {}
impl Wide for i32 {}
impl Wide for i64 {}

/// The unsigned type a chunk is narrowed into.
pub(crate) trait Narrow: Copy {
    /// Its largest value.
    const MAX: i128;
    /// `v` (in `0..=MAX`) as this type.
    fn from_wide(v: i128) -> Self;
}

impl Narrow for u8 {
    const MAX: i128 = u8::MAX as i128;
    #[inline(always)]
    fn from_wide(v: i128) -> Self {
        v as u8
    }
}

impl Narrow for u16 {
    const MAX: i128 = u16::MAX as i128;
    #[inline(always)]
    fn from_wide(v: i128) -> Self {
        v as u16
    }
}

/// Write `src`'s values into `dst` (equal lengths) as `N` when every one of them lies in
/// `0..=N::MAX`: `Some(true)` when they are all equal too, `Some(false)` when not. `None` when a
/// value does not fit; `dst` is then partly written.
pub(crate) fn narrow_into<S: Wide, N: Narrow>(src: &[S], dst: &mut [N]) -> Option<bool> {
    assert_eq!(src.len(), dst.len(), "narrow_into: lengths differ");
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

/// The smallest and largest element of `v` (not empty), in its own type: no early exit and no
/// widening, so the loop is a vector reduction.
#[inline(always)]
fn bounds<S: Wide>(v: &[S]) -> (S, S) {
    let (mut lo, mut hi) = (v[0], v[0]);
    for &x in v {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    (lo, hi)
}

#[inline(always)]
fn narrow_blocks<S: Wide, N: Narrow>(src: &[S], dst: &mut [N]) -> Option<bool> {
    let mut all: Option<(S, S)> = None;
    for (s, d) in src.chunks(BLOCK).zip(dst.chunks_mut(BLOCK)) {
        let (lo, hi) = bounds(s);
        if lo.into() < 0 || hi.into() > N::MAX {
            return None;
        }
        for (d, &x) in d.iter_mut().zip(s) {
            *d = N::from_wide(x.into());
        }
        all = Some(match all {
            None => (lo, hi),
            Some((l, h)) => (l.min(lo), h.max(hi)),
        });
    }
    Some(all.is_some_and(|(lo, hi)| lo == hi))
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
    fn reference<S: Wide, N: Narrow>(src: &[S]) -> Option<(Vec<N>, bool)> {
        let wide: Vec<i128> = src.iter().map(|&x| x.into()).collect();
        if wide.iter().any(|&x| !(0..=N::MAX).contains(&x)) {
            return None;
        }
        let uniform = !wide.is_empty() && wide.iter().all(|&x| x == wide[0]);
        Some((wide.into_iter().map(N::from_wide).collect(), uniform))
    }

    fn check<S: Wide + std::fmt::Debug, N: Narrow + Default + PartialEq + std::fmt::Debug>(src: &[S], what: &str) {
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
        assert!(!is_uniform(&[]));
        assert!(is_uniform(&[9]));
        check::<u32, u8>(&[], "empty");
    }
}
