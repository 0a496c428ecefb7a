//! The one CPU-feature dispatch point: what the CPU supports, detected once per process.
//!
//! Kernels compiled with `#[target_feature(enable = "...")]` are called only where
//! [`Features::get`] says the CPU has the feature; callers check once per call (a window, a row,
//! a block), never per element.

use std::sync::atomic::{AtomicU8, Ordering};

/// The instruction-set extensions the kernels use beyond the x86-64 baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Features {
    /// AVX2 (256-bit integer vectors): the copy, gather and noise loops compiled for it.
    pub(crate) avx2: bool,
    /// AVX-512F: 64-byte non-temporal stores of whole cache lines.
    pub(crate) avx512f: bool,
    /// Large outputs are written with non-temporal stores ([`crate::kernels::stream`]): where
    /// the CPU has AVX-512F, which writes a whole cache line per store. Without it the stores
    /// are 16 bytes, and on an AMD EPYC (AVX2, no AVX-512) they ran 1.6–2.9× slower than plain
    /// stores (`docs/bench.md`, fifteenth session), so they are off. `CELLMAP_STREAM_STORES=1`
    /// (or `0`) turns them on (or off) whatever the CPU.
    pub(crate) stream_stores: bool,
}

/// The environment variable that forces non-temporal stores on (`1`) or off (`0`).
pub(crate) const STREAM_STORES_ENV: &str = "CELLMAP_STREAM_STORES";

/// The detected features as bits ([`DETECTED_BIT`] set once detection ran): one relaxed load
/// and a bit test per query, as cheap as std's own feature cache.
static DETECTED: AtomicU8 = AtomicU8::new(0);
const DETECTED_BIT: u8 = 1 << 7;
const AVX2_BIT: u8 = 1 << 0;
const AVX512F_BIT: u8 = 1 << 1;
const STREAM_BIT: u8 = 1 << 2;

impl Features {
    /// The features of this CPU (detected on the first call, then read from a static).
    #[inline]
    pub(crate) fn get() -> Features {
        let mut bits = DETECTED.load(Ordering::Relaxed);
        if bits == 0 {
            bits = Features::detect_bits();
            DETECTED.store(bits, Ordering::Relaxed);
        }
        Features {
            avx2: bits & AVX2_BIT != 0,
            avx512f: bits & AVX512F_BIT != 0,
            stream_stores: bits & STREAM_BIT != 0,
        }
    }

    #[cold]
    fn detect_bits() -> u8 {
        let f = Features::detect();
        let bit = |on: bool, bit: u8| if on { bit } else { 0 };
        DETECTED_BIT | bit(f.avx2, AVX2_BIT) | bit(f.avx512f, AVX512F_BIT) | bit(f.stream_stores, STREAM_BIT)
    }

    #[cfg(target_arch = "x86_64")]
    fn detect() -> Features {
        let avx512f = std::arch::is_x86_feature_detected!("avx512f");
        Features {
            avx2: std::arch::is_x86_feature_detected!("avx2"),
            avx512f,
            stream_stores: match std::env::var(STREAM_STORES_ENV).as_deref() {
                Ok("1") => true,
                Ok("0") => false,
                _ => avx512f,
            },
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn detect() -> Features {
        Features::default()
    }
}
