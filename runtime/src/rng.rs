//! A counter-based random generator keyed by `(seed, epoch, rank, sample index)`.
//!
//! Every random choice of the runtime (sample centre, transform parameters, noise) comes from
//! an [`Rng`] built from a [`SampleKey`] and a stream number. The generator's state is derived by
//! hashing the key, and output `n` of a stream is `mix(base + n·γ)` (SplitMix64), so sample `i`
//! of epoch `e` on rank `r` is the same whatever thread computes it, and resuming at any sample
//! needs no sequential replay.
//!
//! ```
//! use cellmap_runtime::{rng::Rng, rng::SampleKey};
//! let key = SampleKey { seed: 42, epoch: 0, rank: 0, index: 7 };
//! let (mut a, mut b) = (Rng::new(key, 1), Rng::new(key, 1));
//! assert_eq!(a.next_u64(), b.next_u64());
//! ```

/// Stream of a sample's centre choice (dataset, foreground coin, grid index).
pub const STREAM_CENTRE: u64 = 1;
/// Stream of an epoch's sequential precomputation (class-balanced crop sequence; index 0).
pub const STREAM_EPOCH: u64 = 2;
/// Stream of a sample's spatial transform draw.
pub const STREAM_SPATIAL: u64 = 3;
/// Stream of a sample's slice axis (`sampling.slice_axis: any`).
pub const STREAM_SLICE: u64 = 4;
/// Stream of a sample's value transforms (each array uses `STREAM_VALUE + array position`).
pub const STREAM_VALUE: u64 = 16;

/// SplitMix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Identifies one sample of one epoch on one rank; with a stream number it keys an [`Rng`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampleKey {
    /// The spec's seed.
    pub seed: u64,
    /// Epoch number, from 0.
    pub epoch: u64,
    /// Distributed rank, from 0.
    pub rank: u64,
    /// Sample index within the epoch (on this rank).
    pub index: u64,
}

/// SplitMix64's finaliser: a bijective 64-bit mixer.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A counter-based generator (SplitMix64 over a hashed key). Cheap to create: build one per
/// sample and stream instead of sharing one across threads.
#[derive(Debug, Clone)]
pub struct Rng {
    /// Hash of key and stream; output `n` is `mix64(base + (n + 1)·γ)`.
    base: u64,
    /// Number of outputs drawn so far.
    counter: u64,
    /// Second value of the last Box–Muller pair (f64 path).
    spare: Option<f64>,
    /// Second value of the last Box–Muller pair (f32 path).
    spare_f32: Option<f32>,
}

impl Rng {
    /// A generator for `stream` of sample `key`. Different keys or streams give independent streams.
    pub fn new(key: SampleKey, stream: u64) -> Rng {
        // Chained absorption: each word is mixed into the running hash, so permuted fields differ.
        let mut h = mix64(key.seed ^ 0x6A09_E667_F3BC_C908);
        for word in [key.epoch, key.rank, key.index, stream] {
            h = mix64(h.wrapping_add(GAMMA) ^ mix64(word.wrapping_add(0x3C6E_F372_FE94_F82B)));
        }
        Rng {
            base: h,
            counter: 0,
            spare: None,
            spare_f32: None,
        }
    }

    /// A new independent generator seeded from this one's next output (consumes one `u64`).
    pub fn fork(&mut self) -> Rng {
        let seed = self.next_u64();
        Rng {
            base: mix64(seed ^ 0xA54F_F53A_5F1D_36F1),
            counter: 0,
            spare: None,
            spare_f32: None,
        }
    }

    /// The next 64 uniformly distributed bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.counter = self.counter.wrapping_add(1);
        mix64(self.base.wrapping_add(self.counter.wrapping_mul(GAMMA)))
    }

    /// A uniform `f64` in `[0, 1)` (53 random bits).
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform `f32` in `[0, 1)` (24 random bits).
    #[inline]
    pub fn uniform_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// A uniform `f64` in `[lo, hi)` (`lo` when `hi <= lo`). Always consumes one `u64`.
    #[inline]
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        let u = self.uniform();
        if hi > lo { lo + (hi - lo) * u } else { lo }
    }

    /// A uniform integer in `[0, n)`, without bias (Lemire's multiply-and-reject). Returns 0 for
    /// `n == 0`.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// `true` with probability `p` (always consumes one `u64`).
    #[inline]
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// A standard normal `f64` (Box–Muller; the second value of each pair is cached).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // 1 − u is in (0, 1], so the logarithm is finite.
        let r = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        let theta = std::f64::consts::TAU * self.uniform();
        let (s, c) = theta.sin_cos();
        self.spare = Some(r * s);
        r * c
    }

    /// A standard normal `f32` for per-voxel noise (Box–Muller in `f32`, one `u64` per pair).
    #[inline]
    pub fn normal_f32(&mut self) -> f32 {
        if let Some(z) = self.spare_f32.take() {
            return z;
        }
        let (a, b) = self.normal_pair_f32();
        self.spare_f32 = Some(b);
        a
    }

    /// Two independent standard normal `f32`s from one `u64` (24 + 24 bits; `u1` in `(0, 1]`).
    #[inline]
    fn normal_pair_f32(&mut self) -> (f32, f32) {
        let (u1, u2) = split_bits(self.next_u64());
        let [a, b] = box_muller(u1, u2);
        (a, b)
    }

    /// Fills `out` with `mean + std·N(0, 1)` draws, two per `u64` (the per-voxel noise path):
    /// Box–Muller on 24 + 24 random bits with a polynomial logarithm and sine/cosine (errors
    /// below 1e-6 relative, far under the noise itself), in blocks whose loops vectorise — about
    /// ten times the speed of calling `ln` and `sin_cos` per pair.
    pub fn fill_normal_f32(&mut self, out: &mut [f32], mean: f32, std: f32) {
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::Features::get().avx2 {
            // SAFETY: the CPU supports AVX2 (`Features::get`).
            return unsafe { self.fill_normal_avx2(out, mean, std) };
        }
        self.fill_normal_impl(out, mean, std);
    }

    /// [`Rng::fill_normal_f32`] compiled with AVX2 (same operations, so the same values).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn fill_normal_avx2(&mut self, out: &mut [f32], mean: f32, std: f32) {
        self.fill_normal_impl(out, mean, std);
    }

    #[inline(always)]
    fn fill_normal_impl(&mut self, out: &mut [f32], mean: f32, std: f32) {
        const PAIRS: usize = 64;
        // The 24-bit halves of each u64 and the two normals of each pair in separate 32-bit
        // arrays, so the Box–Muller loop runs at the full f32 vector width (u64 or pair lanes
        // would halve it); interleaved on the way out.
        let (mut u1_bits, mut u2_bits) = ([0u32; PAIRS], [0u32; PAIRS]);
        let (mut first, mut second) = ([0f32; PAIRS], [0f32; PAIRS]);
        for block in out.chunks_mut(2 * PAIRS) {
            let n = block.len().div_ceil(2);
            for (k, (a, b)) in u1_bits[..n].iter_mut().zip(&mut u2_bits[..n]).enumerate() {
                let c = self.counter.wrapping_add(k as u64 + 1);
                let bits = mix64(self.base.wrapping_add(c.wrapping_mul(GAMMA)));
                (*a, *b) = split_bits(bits);
            }
            self.counter = self.counter.wrapping_add(n as u64);
            for (((a, b), &x1), &x2) in first[..n]
                .iter_mut()
                .zip(&mut second[..n])
                .zip(&u1_bits[..n])
                .zip(&u2_bits[..n])
            {
                [*a, *b] = box_muller(x1, x2);
            }
            for (k, o) in block.chunks_mut(2).enumerate() {
                o[0] = mean + std * first[k];
                if let Some(o1) = o.get_mut(1) {
                    *o1 = mean + std * second[k];
                }
            }
        }
    }
}

/// The two 24-bit uniforms of a Box–Muller pair: bits 40..64 and 16..40.
#[inline(always)]
fn split_bits(bits: u64) -> (u32, u32) {
    ((bits >> 40) as u32, ((bits >> 16) & 0xFF_FFFF) as u32)
}

/// Two standard normals from 24 + 24 random bits: `r = √(−2 ln u1)`, `(r cos θ, r sin θ)` with
/// `u1 ∈ (0, 1]` and `θ = 2π u2`. The bits go through `i32` to `f32`, a conversion every x86-64
/// vector unit has.
#[inline(always)]
fn box_muller(u1_bits: u32, u2_bits: u32) -> [f32; 2] {
    let scale = 1.0 / (1u32 << 24) as f32;
    let u1 = ((u1_bits as i32) as f32 + 1.0) * scale;
    let u2 = ((u2_bits as i32) as f32) * scale;
    let r = (-2.0 * ln_f32(u1)).sqrt();
    let (s, c) = sin_cos_turns(u2);
    [r * c, r * s]
}

/// Natural logarithm of a positive, finite, normal `f32`: `x = m·2^e` with `m ∈ [√½, √2)`, then
/// `ln m = t·q(t)`, `t = m − 1`, with `q` a degree-8 least-squares fit on Chebyshev nodes
/// (absolute error below 5e-8, relative below 2e-7). No division and no branch, so loops of it
/// vectorise.
#[inline(always)]
fn ln_f32(x: f32) -> f32 {
    const Q: [f32; 9] = [
        0.999_999_9,
        -0.499_999_9,
        0.333_350_78,
        -0.250_022_5,
        0.199_366_33,
        -0.165_511_58,
        0.151_026_71,
        -0.144_775_78,
        0.084_903_836,
    ];
    let bits = x.to_bits();
    // Exponent relative to [√½, √2): bias the mantissa by (1 − √½) so the split lands there.
    let e = ((bits.wrapping_add(0x004A_FB0D) >> 23) as i32) - 127;
    let m = f32::from_bits(bits.wrapping_sub((e as u32) << 23));
    let t = m - 1.0;
    let mut q = Q[8];
    for c in Q[..8].iter().rev() {
        q = q * t + c;
    }
    e as f32 * std::f32::consts::LN_2 + t * q
}

/// `(sin 2πt, cos 2πt)` for `t ∈ [0, 1]`: reduced to the nearest quarter turn `q`, so the
/// remaining angle lies in `[−π/4, π/4]`, where Taylor polynomials to degree 9 (sine) and 10
/// (cosine) are accurate to 1e-7; then rotated by `q` quarter turns. Branch-free.
#[inline(always)]
fn sin_cos_turns(t: f32) -> (f32, f32) {
    // The nearest quarter turn, rounded by the 1.5·2²³ trick (no `floor` call; ties may go
    // either way, both leave the angle within ±π/4).
    const ROUND: f32 = 12_582_912.0;
    let rounded = t * 4.0 + ROUND;
    let q = rounded - ROUND;
    // The quarter turns mod 4 are the low bits of the rounded value's mantissa.
    let quarter = rounded.to_bits() & 3;
    let a = (t - q * 0.25) * std::f32::consts::TAU;
    let a2 = a * a;
    let sin = a * (1.0 + a2 * (-1.0 / 6.0 + a2 * (1.0 / 120.0 + a2 * (-1.0 / 5040.0 + a2 * (1.0 / 362_880.0)))));
    let cos =
        1.0 + a2 * (-0.5 + a2 * (1.0 / 24.0 + a2 * (-1.0 / 720.0 + a2 * (1.0 / 40_320.0 + a2 * (-1.0 / 3_628_800.0)))));
    // sin(a + qπ/2), cos(a + qπ/2) for q = 0, 1, 2, 3: (s, c), (c, −s), (−s, −c), (−c, s).
    let q = quarter;
    let (s, c) = if q & 1 == 1 { (cos, sin) } else { (sin, cos) };
    let s = if q & 2 == 2 { -s } else { s };
    let c = if (q + 1) & 2 == 2 { -c } else { c };
    (s, c)
}

#[cfg(test)]
mod tests {
    /// The polynomial logarithm and sine/cosine of the noise path agree with the standard
    /// library to 1e-6 relative (absolute near zero) over their whole input range.
    #[test]
    fn polynomial_ln_and_sin_cos_match_std() {
        let scale = 1.0 / (1u32 << 24) as f32;
        let mut worst = (0.0f64, 0.0f64);
        for i in (0..1u32 << 24).step_by(997).chain([0, 1, 2, (1 << 24) - 1]) {
            let u1 = (i as f32 + 1.0) * scale;
            let want = f64::from(u1).ln();
            let err = (f64::from(ln_f32(u1)) - want).abs() / want.abs().max(1e-3);
            worst.0 = worst.0.max(err);
            let t = i as f32 * scale;
            let (s, c) = sin_cos_turns(t);
            let (ws, wc) = (std::f64::consts::TAU * f64::from(t)).sin_cos();
            worst.1 = worst.1.max((f64::from(s) - ws).abs()).max((f64::from(c) - wc).abs());
        }
        assert!(worst.0 < 1e-6, "ln relative error {}", worst.0);
        assert!(worst.1 < 1e-6, "sin/cos error {}", worst.1);
    }

    /// Filled noise has the asked mean and standard deviation, Gaussian tails (about 4.55 % of
    /// draws beyond 2σ), the same values when the calls are split at an even length, and it advances
    /// the stream by one `u64` per pair.
    #[test]
    fn filled_noise_is_gaussian_and_chunking_independent() {
        let mut rng = Rng::new(key(9), 4);
        let mut a = vec![0f32; 200_001];
        rng.fill_normal_f32(&mut a, 1.5, 0.25);
        let after = rng.next_u64();
        let n = a.len() as f64;
        let mean = a.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
        let var = a.iter().map(|v| (f64::from(*v) - mean).powi(2)).sum::<f64>() / n;
        assert!((mean - 1.5).abs() < 0.002, "{mean}");
        assert!((var.sqrt() - 0.25).abs() < 0.002, "{}", var.sqrt());
        let tails = a.iter().filter(|v| (f64::from(**v) - 1.5).abs() > 0.5).count() as f64 / n;
        assert!((tails - 0.0455).abs() < 0.002, "{tails}");
        let mut rng = Rng::new(key(9), 4);
        let mut b = vec![0f32; a.len()];
        let (first, rest) = b.split_at_mut(130);
        rng.fill_normal_f32(first, 1.5, 0.25);
        rng.fill_normal_f32(rest, 1.5, 0.25);
        assert_eq!(a, b);
        let mut c = Rng::new(key(9), 4);
        for _ in 0..a.len().div_ceil(2) {
            c.next_u64();
        }
        assert_eq!(after, c.next_u64());
    }

    use super::*;

    fn key(index: u64) -> SampleKey {
        SampleKey {
            seed: 7,
            epoch: 3,
            rank: 1,
            index,
        }
    }

    #[test]
    fn equal_keys_give_identical_streams() {
        let (mut a, mut b) = (Rng::new(key(5), 2), Rng::new(key(5), 2));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_eq!(a.normal().to_bits(), b.normal().to_bits());
    }

    #[test]
    fn different_keys_and_streams_differ() {
        let first = |k: SampleKey, s: u64| Rng::new(k, s).next_u64();
        let base = first(key(5), 2);
        assert_ne!(base, first(key(6), 2));
        assert_ne!(base, first(key(5), 3));
        assert_ne!(base, first(SampleKey { rank: 2, ..key(5) }, 2));
        assert_ne!(base, first(SampleKey { epoch: 4, ..key(5) }, 2));
        assert_ne!(base, first(SampleKey { seed: 8, ..key(5) }, 2));
        // Swapping fields must not collide.
        let swapped = SampleKey {
            seed: 7,
            epoch: 1,
            rank: 3,
            index: 5,
        };
        assert_ne!(base, first(swapped, 2));
    }

    fn mean_var(xs: impl Iterator<Item = f64>) -> (f64, f64) {
        let v: Vec<f64> = xs.collect();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        (mean, var)
    }

    /// 10⁵ draws: the standard error of the mean is σ/316, so the tolerances below are > 5 SE.
    #[test]
    fn distribution_sanity() {
        let mut rng = Rng::new(key(0), 0);
        let (m, v) = mean_var((0..100_000).map(|_| rng.uniform()));
        assert!((m - 0.5).abs() < 0.005 && (v - 1.0 / 12.0).abs() < 0.002, "{m} {v}");
        let (m, v) = mean_var((0..100_000).map(|_| rng.normal()));
        assert!(m.abs() < 0.02 && (v - 1.0).abs() < 0.03, "{m} {v}");
        let (m, v) = mean_var((0..100_000).map(|_| f64::from(rng.normal_f32())));
        assert!(m.abs() < 0.02 && (v - 1.0).abs() < 0.03, "{m} {v}");
        let mut buf = vec![0.0f32; 100_001];
        rng.fill_normal_f32(&mut buf, 2.0, 0.5);
        let (m, v) = mean_var(buf.iter().map(|x| f64::from(*x)));
        assert!((m - 2.0).abs() < 0.01 && (v - 0.25).abs() < 0.01, "{m} {v}");
        let (m, _) = mean_var((0..100_000).map(|_| rng.below(10) as f64));
        assert!((m - 4.5).abs() < 0.03, "{m}");
        assert!((0..10_000).all(|_| rng.below(3) < 3));
        let hits = (0..100_000).filter(|_| rng.bernoulli(0.3)).count();
        assert!((hits as f64 / 1e5 - 0.3).abs() < 0.01, "{hits}");
        assert!((0..1000).all(|_| (2.0..5.0).contains(&rng.range(2.0, 5.0))));
        assert_eq!(rng.range(3.0, 3.0), 3.0);
        assert_eq!(rng.below(0), 0);
    }
}
