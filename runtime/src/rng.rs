//! A counter-based random generator keyed by `(seed, epoch, rank, sample index)`.
//!
//! Every random choice of the runtime (sample centre, transform parameters, noise) comes from
//! an [`Rng`] built from a [`SampleKey`] and a stream number. The generator's state is derived by
//! hashing the key, and output `n` of a stream is `mix(base + n·γ)` (SplitMix64), so sample `i`
//! of epoch `e` on rank `r` is the same whatever thread computes it, and resuming at any sample
//! needs no sequential replay.
//!
//! ```
//! use cellmap_runtime::{Rng, SampleKey};
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
        let bits = self.next_u64();
        let scale = 1.0 / (1u32 << 24) as f32;
        let u1 = ((bits >> 40) as f32 + 1.0) * scale;
        let u2 = ((bits >> 16) & 0xFF_FFFF) as f32 * scale;
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f32::consts::TAU * u2).sin_cos();
        (r * c, r * s)
    }

    /// Fills `out` with `mean + std·N(0, 1)` draws, two per `u64` (the per-voxel noise path).
    pub fn fill_normal_f32(&mut self, out: &mut [f32], mean: f32, std: f32) {
        let mut pairs = out.chunks_exact_mut(2);
        for pair in &mut pairs {
            let (a, b) = self.normal_pair_f32();
            pair[0] = mean + std * a;
            pair[1] = mean + std * b;
        }
        if let [last] = pairs.into_remainder() {
            *last = mean + std * self.normal_pair_f32().0;
        }
    }
}

#[cfg(test)]
mod tests {
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
        assert!(
            (m - 0.5).abs() < 0.005 && (v - 1.0 / 12.0).abs() < 0.002,
            "{m} {v}"
        );
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
