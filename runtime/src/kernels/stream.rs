//! Non-temporal stores: finished rows of large outputs go to memory without first reading the
//! lines they overwrite, and without evicting the hot lines of the chunk cache.

use super::Element;
#[cfg(target_arch = "x86_64")]
use crate::cpu::Features;

/// Outputs at least this large (bytes) are written with [`store_stream`], on CPUs where
/// non-temporal stores are on ([`streams`]).
pub(crate) const STREAM_MIN_BYTES: usize = 1 << 20;

/// Whether an output of `bytes` is written with [`store_stream`]: at least [`STREAM_MIN_BYTES`],
/// on a CPU where non-temporal stores are on (`Features::stream_stores`: AVX-512F, or
/// `CELLMAP_STREAM_STORES=1`).
#[inline]
pub(crate) fn streams(bytes: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        bytes >= STREAM_MIN_BYTES && Features::get().stream_stores
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = bytes;
        false
    }
}

/// Copy `src` into `dst` (equal lengths) with non-temporal stores for the aligned middle: whole
/// 64-byte cache lines with AVX-512 where the CPU has it, 16-byte pieces otherwise. One worker
/// without augmentation on the 128³ compare spec, same run, alternating: 348 / 451 / 433
/// samples/s with 16-byte stores, 520 / 501 / 498 with whole lines (a line written in one
/// instruction leaves the write-combining buffer at once; 32-byte stores gained nothing).
#[inline]
pub(crate) fn store_stream<T: Element>(src: &[T], dst: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    {
        if Features::get().avx512f {
            // SAFETY: the CPU supports AVX-512F (`Features::get`).
            unsafe { store_stream_lines(src, dst) };
        } else {
            store_stream_pieces(src, dst);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let len = src.len().min(dst.len());
        dst[..len].copy_from_slice(&src[..len]);
    }
}

/// Elements of the buffer [`fill_stream`] streams from.
pub(crate) const FILL_PIECE: usize = 256;

/// Write `piece`'s value (every element of `piece` holds it) to all of `dst` with
/// [`store_stream`]: the parts of a large window that lie outside the level, which would
/// otherwise be read from memory before being overwritten.
#[inline]
pub(crate) fn fill_stream<T: Element>(piece: &[T; FILL_PIECE], dst: &mut [T]) {
    for run in dst.chunks_mut(FILL_PIECE) {
        store_stream(&piece[..run.len()], run);
    }
}

/// [`store_stream`] with 16-byte non-temporal stores (SSE2, every x86-64 CPU).
#[cfg(target_arch = "x86_64")]
fn store_stream_pieces<T: Element>(src: &[T], dst: &mut [T]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
    // SAFETY: the store writes 16 bytes to a 16-byte aligned `d`, both valid for 16 bytes
    // (`stream_aligned`'s contract); SSE2 is part of x86_64.
    unsafe {
        stream_aligned::<T, 16>(src, dst, |d, s| {
            _mm_stream_si128(d.cast::<__m128i>(), _mm_loadu_si128(s.cast::<__m128i>()));
        });
    }
}

/// [`store_stream`] with one 64-byte non-temporal store per whole destination cache line.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn store_stream_lines<T: Element>(src: &[T], dst: &mut [T]) {
    use std::arch::x86_64::{__m512i, _mm512_loadu_si512, _mm512_stream_si512};
    // SAFETY: the store writes 64 bytes to a 64-byte aligned `d`, both valid for 64 bytes
    // (`stream_aligned`'s contract); the CPU supports AVX-512F (this function's caller checked,
    // and the closure inherits the function's target features).
    unsafe {
        stream_aligned::<T, 64>(src, dst, |d, s| {
            _mm512_stream_si512(d.cast::<__m512i>(), _mm512_loadu_si512(s.cast::<__m512i>()));
        });
    }
}

/// The copy both non-temporal widths share: `dst`'s bytes before its first `LINE`-aligned byte
/// and after its last whole aligned `LINE` are copied plainly; every whole aligned `LINE` between
/// goes through `stream(d, s)` (`d` in `dst`, `s` at the same offset in `src`).
///
/// # Safety
/// `stream(d, s)` must copy `LINE` bytes from `s` to `d` and be sound whenever `d` is
/// `LINE`-aligned and both are valid for `LINE` bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn stream_aligned<T: Element, const LINE: usize>(src: &[T], dst: &mut [T], stream: impl Fn(*mut u8, *const u8)) {
    let len = src.len().min(dst.len());
    let bytes = len * size_of::<T>();
    let s = src.as_ptr().cast::<u8>();
    let d = dst.as_mut_ptr().cast::<u8>();
    // `T` is `f32` or `u8`, plain bytes, so a byte copy is an element copy; the head is a whole
    // number of elements since `d` is aligned to `T` and `LINE` is a multiple of its size.
    let head = d.align_offset(LINE).min(bytes);
    let body = (bytes - head) / LINE * LINE;
    // SAFETY: `s` and `d` are valid for `bytes` bytes (both slices hold `len` elements of `T`,
    // which has no padding) and do not overlap (`src` and `dst` are a shared and a mutable
    // borrow); every `stream` target `d + off` is `LINE`-aligned (`head` aligns it) and
    // `off + LINE <= head + body <= bytes`.
    unsafe {
        std::ptr::copy_nonoverlapping(s, d, head);
        let mut off = head;
        while off < head + body {
            stream(d.add(off), s.add(off));
            off += LINE;
        }
        std::ptr::copy_nonoverlapping(s.add(off), d.add(off), bytes - off);
    }
}

/// Orders the non-temporal stores of [`store_stream`] before every later store (the slot's
/// hand-off to the consumer).
#[inline]
pub(crate) fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` has no preconditions; SSE is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_sfence();
    }
}

#[cfg(test)]
mod tests {
    /// Both non-temporal copies (16-byte pieces, and whole lines where the CPU has AVX-512)
    /// copy every element, whatever the alignment and length, and touch nothing after it.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn streamed_copies_are_exact_at_every_alignment() {
        let src: Vec<f32> = (0..400).map(|i| i as f32 * 1.5 - 7.0).collect();
        let bytes: Vec<u8> = (0..400).map(|i| (i * 37 % 251) as u8).collect();
        for offset in 0..20 {
            for len in [0usize, 1, 3, 15, 16, 17, 63, 64, 65, 130, 257, 380] {
                let mut dst = vec![-1.0f32; 400];
                super::store_stream_pieces(&src[..len], &mut dst[offset..offset + len]);
                assert_eq!(&dst[offset..offset + len], &src[..len], "f32 {offset} {len}");
                assert!(dst[..offset].iter().chain(&dst[offset + len..]).all(|v| *v == -1.0));
                let mut dst8 = vec![255u8; 400];
                super::store_stream_pieces(&bytes[..len], &mut dst8[offset..offset + len]);
                assert_eq!(&dst8[offset..offset + len], &bytes[..len], "u8 {offset} {len}");
                if super::Features::get().avx512f {
                    let mut dst = vec![-1.0f32; 400];
                    // SAFETY: the CPU supports AVX-512F, checked just above.
                    unsafe { super::store_stream_lines(&src[..len], &mut dst[offset..offset + len]) };
                    assert_eq!(&dst[offset..offset + len], &src[..len], "lines f32 {offset} {len}");
                    assert!(dst[..offset].iter().chain(&dst[offset + len..]).all(|v| *v == -1.0));
                    let mut dst8 = vec![255u8; 400];
                    // SAFETY: as above.
                    unsafe { super::store_stream_lines(&bytes[..len], &mut dst8[offset..offset + len]) };
                    assert_eq!(&dst8[offset..offset + len], &bytes[..len], "lines u8 {offset} {len}");
                    assert!(dst8[..offset].iter().chain(&dst8[offset + len..]).all(|v| *v == 255));
                }
            }
        }
        super::store_fence();
    }
}
