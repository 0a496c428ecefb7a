//! The one CPU-feature dispatch point: what the CPU supports, detected once per process.
//!
//! Kernels compiled with `#[target_feature(enable = "...")]` are called only where
//! [`Features::get`] says the CPU has the feature; callers check once per call (a window, a row,
//! a block), never per element.

use std::sync::OnceLock;

/// The instruction-set extensions the kernels use beyond the x86-64 baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Features {
    /// AVX2 (256-bit integer vectors): the copy, gather and noise loops compiled for it.
    pub(crate) avx2: bool,
    /// AVX-512F: 64-byte non-temporal stores of whole cache lines.
    pub(crate) avx512f: bool,
}

impl Features {
    /// The features of this CPU (detected on the first call, then read from a static).
    #[inline]
    pub(crate) fn get() -> Features {
        static DETECTED: OnceLock<Features> = OnceLock::new();
        *DETECTED.get_or_init(Features::detect)
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
