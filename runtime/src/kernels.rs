//! Kernels: the hot loops, on plain slices and [`StridedDest`] views, with no knowledge of zarr,
//! chunks' origin or the plan.
//!
//! - [`copy`]: a box of a decoded chunk into a strided destination, row runs into a buffer;
//! - [`narrow`]: wide integer chunks narrowed to `uint8`/`uint16`, uniform `uint8` chunks told
//!   (the chunk store's one use of a kernel, on every decode);
//! - [`threshold`]: binarize thresholds resolved once per read for every source type;
//! - [`stream`]: non-temporal stores for outputs larger than the caches;
//! - [`gather`]: sampling a source window on a rotated / deformed grid, and the strided copy of
//!   axis-aligned transforms;
//! - [`crate::cpu`] (a module of its own, below both the kernels and `rng`'s noise loop): the one
//!   CPU-feature dispatch point ([`crate::cpu::Features`]): every kernel compiled with
//!   `#[target_feature]` is chosen there, once per call or row, never per element.

pub(crate) mod copy;
pub(crate) mod dest;
pub(crate) mod gather;
pub(crate) mod narrow;
pub(crate) mod stream;
pub(crate) mod threshold;

pub use dest::{DestError, StridedDest};
pub use gather::{GatherError, GatherParams, GatherSource, LabelParams, copy_strided, gather, gather_labels_packed};

/// An element type of the row buffers and streaming stores: plain bytes without padding (`f32`,
/// `f16`, `bf16`, `u8`), so a byte copy is an element copy.
pub trait Element: Copy + Send + Sync + 'static + sealed::Plain {
    /// The zero of the type (row buffers start with it).
    const ZERO: Self;
    /// `dst |= src`, bit by bit (packed class masks).
    fn or_into(src: &[Self], dst: &mut [Self]);
}

mod sealed {
    /// Only the plain types of [`super::Element`].
    pub trait Plain {}
    impl Plain for f32 {}
    impl Plain for half::f16 {}
    impl Plain for half::bf16 {}
    impl Plain for u8 {}
}

/// The 16-bit floats: `or_into` ORs their bits (as for `f32`).
macro_rules! element16 {
    ($t:ty) => {
        impl Element for $t {
            const ZERO: Self = <$t>::ZERO;
            fn or_into(src: &[Self], dst: &mut [Self]) {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = <$t>::from_bits(d.to_bits() | s.to_bits());
                }
            }
        }
    };
}
element16!(half::f16);
element16!(half::bf16);

impl Element for f32 {
    const ZERO: Self = 0.0;
    fn or_into(src: &[Self], dst: &mut [Self]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_bits(d.to_bits() | s.to_bits());
        }
    }
}

impl Element for u8 {
    const ZERO: Self = 0;
    fn or_into(src: &[Self], dst: &mut [Self]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d |= *s;
        }
    }
}
