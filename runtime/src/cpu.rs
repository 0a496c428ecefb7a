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
}

/// The detected features as bits ([`DETECTED_BIT`] set once detection ran): one relaxed load
/// and a bit test per query, as cheap as std's own feature cache.
static DETECTED: AtomicU8 = AtomicU8::new(0);
const DETECTED_BIT: u8 = 1 << 7;
const AVX2_BIT: u8 = 1 << 0;
const AVX512F_BIT: u8 = 1 << 1;

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
        }
    }

    #[cold]
    fn detect_bits() -> u8 {
        let f = Features::detect();
        DETECTED_BIT | if f.avx2 { AVX2_BIT } else { 0 } | if f.avx512f { AVX512F_BIT } else { 0 }
    }

    #[cfg(target_arch = "x86_64")]
    fn detect() -> Features {
        Features {
            avx2: std::arch::is_x86_feature_detected!("avx2"),
            avx512f: std::arch::is_x86_feature_detected!("avx512f"),
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn detect() -> Features {
        Features::default()
    }
}
