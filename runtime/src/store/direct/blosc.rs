//! Blosc frames whose blocks are zstd streams, decoded here with the thread's zstd context.
//!
//! c-blosc decodes each block (each split of a block) with `ZSTD_decompress`, which creates a
//! decompression context per call, and creating one runs `cpuid`. On a virtual machine `cpuid`
//! exits to the hypervisor: 6.6 µs each on the 2-core machine of `docs/bench.md`, two per block.
//! A 64³ `uint8` chunk of blosc-zstd at the default block size is 2 blocks (26 µs of `cpuid`), a
//! `uint64` label chunk 16 (211 µs): 15 % of a cache-off 2D run. So the frames most OME-NGFF
//! label and EM volumes are written as (blosc with zstd, byte shuffle or none) are walked here
//! and their streams decoded with [`super::codec`]'s per-thread context; any other frame (lz4,
//! blosclz, zlib or snappy blocks, bit shuffle, a frame stored as is) goes to c-blosc.
//!
//! The frame (c-blosc 1 format 2): a 16-byte header (format version, compressor version, flags,
//! type size, then little-endian `i32` decoded bytes, block size and frame bytes), the `i32`
//! offsets of the blocks, then per block its splits: an `i32` stored length and the stream (as
//! is when that length equals the split's decoded size). A block is split into `typesize`
//! streams unless the frame says not to (flag 0x10) or the block is the last, shorter one, or
//! it is too small; every split of a shuffled block is unshuffled together
//! ([`unshuffle`]).

use std::cell::RefCell;
use std::ops::Range;

/// Flag bits of the header's third byte.
const DOSHUFFLE: u8 = 0x01;
const MEMCPYED: u8 = 0x02;
const DOBITSHUFFLE: u8 = 0x04;
const DONT_SPLIT: u8 = 0x10;
/// The compressor field (the flags' top 3 bits) for zstd, and the version of its format.
const ZSTD_FORMAT: u8 = 4;
const ZSTD_VERSION_FORMAT: u8 = 1;
/// A block is split into `typesize` streams only when each is at least this long, and for at
/// most this many bytes per element (c-blosc's `MIN_BUFFERSIZE` and `MAX_SPLITS`).
const MIN_BUFFERSIZE: usize = 128;
const MAX_SPLITS: usize = 16;
/// The header's length.
const HEADER: usize = 16;

thread_local! {
    /// A shuffled block's decoded streams, before they are unshuffled into the chunk.
    static SHUFFLED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Decode the blosc frame `src` into `dst` when its blocks are zstd streams with byte shuffle
/// or none: `Some` with the bytes decoded, or `None` for a frame this module leaves to c-blosc
/// (see the module docs). With `part`, only the blocks that overlap those bytes of `dst` are
/// decoded; the rest of `dst` is left as it was. The header's sizes are already checked
/// against `src` and `dst`.
///
/// `loaded`: when only some of the frame's bytes were read ([`blocks_range`]), the ones that
/// were (beside the header and offsets); a stream outside them is an error.
pub(super) fn decode_zstd_frame(
    src: &[u8],
    dst: &mut [u8],
    (part, loaded): (Option<Range<usize>>, Option<Range<usize>>),
    zstd: &mut impl FnMut(&[u8], &mut [u8]) -> Result<(), String>,
) -> Option<Result<usize, String>> {
    let (flags, typesize, blocksize) = taken(src.get(..HEADER)?)?;
    let part = part.unwrap_or(0..dst.len());
    let loaded = loaded.unwrap_or(0..src.len());
    Some(decode_blocks(
        src,
        dst,
        (flags, typesize, blocksize),
        (part, loaded),
        zstd,
    ))
}

/// The flags, element size and block size of a frame with `header` that this module decodes.
fn taken(header: &[u8]) -> Option<(u8, usize, usize)> {
    let (version, compversion, flags, typesize) = (header[0], header[1], header[2], usize::from(header[3]));
    let blocksize = usize::try_from(i32::from_le_bytes(header[8..12].try_into().ok()?)).ok()?;
    let taken = (1..=2).contains(&version)
        && compversion == ZSTD_VERSION_FORMAT
        && flags >> 5 == ZSTD_FORMAT
        && flags & (MEMCPYED | DOBITSHUFFLE | 0x08) == 0
        && typesize > 0
        && blocksize > 0;
    taken.then_some((flags, typesize, blocksize))
}

/// The length of the header and block offsets of a frame with `header` (its first 16 bytes),
/// decoding to `nbytes`, and the frame's length, when this module decodes it and the offsets
/// lie within the frame: the bytes to read before [`blocks_range`].
pub(super) fn offsets_end(header: &[u8], nbytes: usize) -> Option<(usize, usize)> {
    let (_, _, blocksize) = taken(header.get(..HEADER)?)?;
    let end = HEADER.checked_add(nbytes.div_ceil(blocksize).checked_mul(4)?)?;
    let cbytes = read_i32(header, 12)?;
    (end <= cbytes).then_some((end, cbytes))
}

/// The bytes of the frame that hold the blocks a decode of bytes `part` of its `nbytes`
/// needs, from `head` (its header and block offsets, [`offsets_end`] bytes) and its length
/// `cbytes`: `None` when the blocks are not stored in order (read the whole frame).
pub(super) fn blocks_range(head: &[u8], nbytes: usize, cbytes: usize, part: &Range<usize>) -> Option<Range<usize>> {
    let (_, _, blocksize) = taken(head.get(..HEADER)?)?;
    let nblocks = nbytes.div_ceil(blocksize);
    if part.is_empty() || part.end > nbytes || head.len() != HEADER + 4 * nblocks {
        return None;
    }
    let (first, last) = (part.start / blocksize, (part.end - 1) / blocksize);
    let start = read_i32(head, HEADER + 4 * first)?;
    let end = if last + 1 < nblocks {
        read_i32(head, HEADER + 4 * (last + 1))?
    } else {
        cbytes
    };
    // The blocks read, and the one after the last (its offset ends the range), in order.
    let ordered = (first..(last + 1).min(nblocks - 1)).all(|b| {
        let (this, next) = (read_i32(head, HEADER + 4 * b), read_i32(head, HEADER + 4 * (b + 1)));
        matches!((this, next), (Some(this), Some(next)) if this < next)
    });
    (ordered && head.len() <= start && start < end && end <= cbytes).then_some(start..end)
}

/// The blocks of a frame that [`decode_zstd_frame`] takes and that overlap bytes `part` of
/// `dst`, decoded into `dst`; the bytes decoded.
fn decode_blocks(
    src: &[u8],
    dst: &mut [u8],
    (flags, typesize, blocksize): (u8, usize, usize),
    (part, loaded): (Range<usize>, Range<usize>),
    zstd: &mut impl FnMut(&[u8], &mut [u8]) -> Result<(), String>,
) -> Result<usize, String> {
    let shuffled = flags & DOSHUFFLE != 0 && typesize > 1;
    let nblocks = dst.len().div_ceil(blocksize);
    let starts = src
        .get(HEADER..HEADER + 4 * nblocks)
        .ok_or_else(|| format!("a blosc frame of {} bytes is shorter than its block offsets", src.len()))?;
    SHUFFLED.with_borrow_mut(|scratch| {
        if shuffled && scratch.len() < blocksize {
            scratch.resize(blocksize, 0);
        }
        let mut decoded = 0;
        for (b, out) in dst.chunks_mut(blocksize).enumerate() {
            if b * blocksize >= part.end || b * blocksize + out.len() <= part.start {
                continue;
            }
            decoded += out.len();
            let start = read_i32(starts, 4 * b)
                .filter(|&s| s >= HEADER + 4 * nblocks)
                .ok_or_else(|| format!("block {b} of a blosc frame starts outside it"))?;
            let leftover = out.len() < blocksize;
            let splits = if flags & DONT_SPLIT == 0
                && typesize <= MAX_SPLITS
                && blocksize / typesize >= MIN_BUFFERSIZE
                && !leftover
            {
                typesize
            } else {
                1
            };
            let target: &mut [u8] = if shuffled { &mut scratch[..out.len()] } else { out };
            if !target.len().is_multiple_of(splits) {
                return Err(format!(
                    "block {b} of a blosc frame does not split into {splits} streams"
                ));
            }
            let split_len = target.len() / splits;
            let mut at = start;
            for part in target.chunks_mut(split_len) {
                if at < loaded.start || at + 4 > loaded.end {
                    return Err(format!("block {b} of a blosc frame lies outside the bytes read"));
                }
                let len = read_i32(src, at).ok_or_else(|| format!("block {b} of a blosc frame is truncated"))?;
                at += 4;
                if at + len > loaded.end {
                    return Err(format!("block {b} of a blosc frame lies outside the bytes read"));
                }
                let stream = src
                    .get(at..at + len)
                    .ok_or_else(|| format!("block {b} of a blosc frame is truncated"))?;
                at += len;
                if len == part.len() {
                    part.copy_from_slice(stream);
                } else {
                    zstd(stream, part).map_err(|e| format!("block {b} of a blosc frame: {e}"))?;
                }
            }
            if shuffled {
                unshuffle(typesize, &scratch[..out.len()], out);
            }
        }
        Ok(decoded)
    })
}

/// The little-endian `i32` at `at` of `bytes`, when it is there and not negative.
fn read_i32(bytes: &[u8], at: usize) -> Option<usize> {
    let raw = bytes.get(at..at.checked_add(4)?)?;
    usize::try_from(i32::from_le_bytes(raw.try_into().ok()?)).ok()
}

/// Undo blosc's byte shuffle of one block: `src` holds byte `k` of every element, then byte
/// `k + 1` of every element, …; `dst` gets the elements back. The bytes after the last whole
/// element are stored as they are.
pub(super) fn unshuffle(typesize: usize, src: &[u8], dst: &mut [u8]) {
    debug_assert_eq!(src.len(), dst.len());
    let n = src.len() / typesize;
    let whole = n * typesize;
    match typesize {
        2 => unshuffle_n::<2>(src, dst, n),
        4 => unshuffle_n::<4>(src, dst, n),
        8 => unshuffle_n::<8>(src, dst, n),
        _ => {
            for (j, element) in dst[..whole].chunks_exact_mut(typesize).enumerate() {
                for (k, byte) in element.iter_mut().enumerate() {
                    *byte = src[k * n + j];
                }
            }
        }
    }
    dst[whole..].copy_from_slice(&src[whole..]);
}

/// [`unshuffle`] for elements of `T` bytes: 16 elements at a time, one 16-byte row of each
/// byte plane transposed in registers.
fn unshuffle_n<const T: usize>(src: &[u8], dst: &mut [u8], n: usize) {
    let planes: [&[u8]; T] = std::array::from_fn(|k| &src[k * n..(k + 1) * n]);
    let tiles = n / 16;
    let out = &mut dst[..tiles * 16 * T];
    #[cfg(target_arch = "x86_64")]
    if T == 8 {
        for (t, out) in out.chunks_exact_mut(128).enumerate() {
            // SAFETY: SSE2 is part of x86-64; each row is 16 bytes of a plane of `n` bytes
            // (`t < n / 16`), and `out` is 128 bytes; both read and written unaligned. The rows
            // are read where they are: a copy of them to the stack cost as much as the transpose.
            unsafe {
                transpose8_sse2(
                    std::array::from_fn(|k| planes[k].as_ptr().add(t * 16)),
                    out.as_mut_ptr(),
                )
            };
        }
    }
    if T != 8 || cfg!(not(target_arch = "x86_64")) {
        for (t, out) in out.chunks_exact_mut(16 * T).enumerate() {
            for j in 0..16 {
                for k in 0..T {
                    out[j * T + k] = planes[k][t * 16 + j];
                }
            }
        }
    }
    for j in tiles * 16..n {
        for k in 0..T {
            dst[j * T + k] = planes[k][j];
        }
    }
}

/// The 8 × 16 byte transpose: element `j` of the 16 (its byte `k` at `rows[k] + j`) to
/// `out + 8j`; bytes, then pairs, then quadruples interleaved.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose8_sse2(rows: [*const u8; 8], out: *mut u8) {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_storeu_si128, _mm_unpackhi_epi8, _mm_unpackhi_epi16, _mm_unpackhi_epi32,
        _mm_unpacklo_epi8, _mm_unpacklo_epi16, _mm_unpacklo_epi32,
    };
    // SAFETY: the caller's: 16 bytes at each of `rows`, 128 bytes at `out`.
    unsafe {
        let r: [__m128i; 8] = std::array::from_fn(|k| _mm_loadu_si128(rows[k].cast()));
        // Byte pairs (planes 2k, 2k + 1) of elements 0–7 and 8–15.
        let p: [__m128i; 8] = std::array::from_fn(|i| {
            let (a, b) = (r[2 * (i / 2)], r[2 * (i / 2) + 1]);
            if i % 2 == 0 {
                _mm_unpacklo_epi8(a, b)
            } else {
                _mm_unpackhi_epi8(a, b)
            }
        });
        // p[0] p[2] p[4] p[6]: elements 0–7 of planes 01, 23, 45, 67; p[1] … p[7]: 8–15.
        for half in 0..2 {
            let (a, b, c, d) = (p[half], p[2 + half], p[4 + half], p[6 + half]);
            // Quadruples (planes 0–3, 4–7) of elements 0–3 and 4–7 of this half.
            let q0 = _mm_unpacklo_epi16(a, b);
            let q1 = _mm_unpackhi_epi16(a, b);
            let q2 = _mm_unpacklo_epi16(c, d);
            let q3 = _mm_unpackhi_epi16(c, d);
            let o = out.add(64 * half);
            _mm_storeu_si128(o.cast(), _mm_unpacklo_epi32(q0, q2));
            _mm_storeu_si128(o.add(16).cast(), _mm_unpackhi_epi32(q0, q2));
            _mm_storeu_si128(o.add(32).cast(), _mm_unpacklo_epi32(q1, q3));
            _mm_storeu_si128(o.add(48).cast(), _mm_unpackhi_epi32(q1, q3));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blosc frame of `data` written by c-blosc.
    fn compress(data: &[u8], typesize: usize, shuffle: i32, compressor: &str, blocksize: usize) -> Vec<u8> {
        let mut out = vec![0u8; data.len() + 16 + 64];
        let name = std::ffi::CString::new(compressor).unwrap();
        // SAFETY: the buffers are valid for the lengths given; `out` has room for blosc's
        // overhead (16 bytes of header).
        let n = unsafe {
            blosc_src::blosc_compress_ctx(
                5,
                shuffle,
                typesize,
                data.len(),
                data.as_ptr().cast(),
                out.as_mut_ptr().cast(),
                out.len(),
                name.as_ptr(),
                blocksize,
                1,
            )
        };
        assert!(n > 0, "blosc_compress_ctx: {n}");
        out.truncate(n as usize);
        out
    }

    fn reference(frame: &[u8], len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        // SAFETY: `out` holds the frame's decoded size.
        let n = unsafe { blosc_src::blosc_decompress_ctx(frame.as_ptr().cast(), out.as_mut_ptr().cast(), len, 1) };
        assert_eq!(n as usize, len);
        out
    }

    fn zstd(src: &[u8], dst: &mut [u8]) -> Result<(), String> {
        let n = zstd::bulk::decompress_to_buffer(src, dst).map_err(|e| e.to_string())?;
        if n == dst.len() {
            Ok(())
        } else {
            Err(format!("{n} bytes"))
        }
    }

    /// Label-like data: runs of values, some noise, in `typesize`-byte elements.
    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        (0..len)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if (i / 300) % 3 == 0 {
                    (s >> 56) as u8
                } else {
                    (i / 1000) as u8
                }
            })
            .collect()
    }

    /// Every frame c-blosc writes with zstd decodes here to c-blosc's own output, bit for bit:
    /// element sizes 1 to 16 and odd ones, shuffle and none, whole blocks and a short last block,
    /// blocks split into a stream per byte (as c-blosc before 1.14 wrote every frame, and as it
    /// writes them when told to always split) and not, stored streams (noise) and compressed
    /// ones.
    #[test]
    fn zstd_frames_decode_as_c_blosc_decodes_them() {
        let (mut taken, mut split) = (0, 0);
        for always_split in [false, true] {
            // A process-wide setting: other tests writing blosc meanwhile write valid frames
            // either way.
            // SAFETY: sets one integer in c-blosc.
            unsafe { blosc_src::blosc_set_splitmode(if always_split { 1 } else { 4 }) };
            frames(&mut taken, &mut split);
        }
        // SAFETY: as above; back to c-blosc's default.
        unsafe { blosc_src::blosc_set_splitmode(4) };
        assert!(
            taken > 200 && split > 40,
            "{taken} frames decoded here, {split} of them split"
        );
    }

    fn frames(taken: &mut usize, split: &mut usize) {
        for typesize in [1usize, 2, 3, 4, 8, 12, 16] {
            for len in [64 * 64 * 64 * typesize.min(8), 100_003, 4096, 40] {
                for shuffle in [0, 1] {
                    for blocksize in [0usize, 8192, 65536] {
                        let d = data(len, (typesize * 31 + len) as u64);
                        let frame = compress(&d, typesize, shuffle, "zstd", blocksize);
                        let mut out = vec![0xAAu8; len];
                        match decode_zstd_frame(&frame, &mut out, (None, None), &mut zstd) {
                            Some(result) => {
                                result.unwrap();
                                *taken += 1;
                                *split += usize::from(frame[2] & DONT_SPLIT == 0 && typesize > 1);
                                assert_eq!(
                                    out,
                                    reference(&frame, len),
                                    "typesize {typesize} len {len} shuffle {shuffle} blocksize {blocksize}"
                                );
                                assert_eq!(out, d);
                            }
                            // Frames c-blosc stored as is (too small to compress).
                            None => assert_ne!(frame[2] & MEMCPYED, 0, "typesize {typesize} len {len}"),
                        }
                    }
                }
            }
        }
    }

    /// Frames of other compressors, and bit-shuffled ones, are left to c-blosc.
    #[test]
    fn other_frames_are_left_to_c_blosc() {
        let d = data(100_000, 7);
        let mut out = vec![0u8; d.len()];
        for compressor in ["lz4", "blosclz", "zlib"] {
            let frame = compress(&d, 4, 1, compressor, 0);
            assert!(
                decode_zstd_frame(&frame, &mut out, (None, None), &mut zstd).is_none(),
                "{compressor}"
            );
        }
        let bitshuffled = compress(&d, 4, 2, "zstd", 0);
        assert!(decode_zstd_frame(&bitshuffled, &mut out, (None, None), &mut zstd).is_none());
    }

    /// A damaged frame is an error naming the block, never a panic or a short chunk: every
    /// truncation, and each byte of the offsets and lengths changed.
    #[test]
    fn damaged_frames_are_errors() {
        let d = data(64 * 64 * 64 * 8, 3);
        let frame = compress(&d, 8, 1, "zstd", 32768);
        let mut out = vec![0u8; d.len()];
        for cut in [HEADER, HEADER + 3, HEADER + 64, frame.len() / 2, frame.len() - 1] {
            let r = decode_zstd_frame(&frame[..cut], &mut out, (None, None), &mut zstd).unwrap();
            assert!(r.is_err(), "cut at {cut}");
        }
        for at in HEADER..HEADER + 64 + 8 {
            let mut bad = frame.clone();
            bad[at] ^= 0x80;
            // A changed offset or length either fails or (a stored stream's byte) decodes to
            // other data; it never panics.
            let _ = decode_zstd_frame(&bad, &mut out, (None, None), &mut zstd);
        }
        let mut bad = frame.clone();
        bad[HEADER + 3] = 0x80; // The first block's offset negative.
        assert!(
            decode_zstd_frame(&bad, &mut out, (None, None), &mut zstd)
                .unwrap()
                .unwrap_err()
                .contains("block 0")
        );
    }

    /// With a part, exactly the blocks that overlap it are decoded (the part's bytes equal the
    /// data, the other blocks' bytes are left as they were) and the count says how many bytes.
    #[test]
    fn only_the_blocks_of_a_part_are_decoded() {
        for (typesize, shuffle) in [(8usize, 1), (1, 1), (2, 0)] {
            let d = data(64 * 64 * 64 * typesize, typesize as u64);
            let frame = compress(&d, typesize, shuffle, "zstd", 32768);
            let block = 32768;
            for part in [
                0..1,
                5000..5001,
                32767..32769,
                40000..100_000,
                0..d.len(),
                d.len() - 1..d.len(),
            ] {
                let mut out = vec![0xAAu8; d.len()];
                let decoded = decode_zstd_frame(&frame, &mut out, (Some(part.clone()), None), &mut zstd)
                    .unwrap()
                    .unwrap();
                let (first, last) = (part.start / block, (part.end - 1) / block);
                assert_eq!(decoded, (last - first + 1) * block, "{part:?}");
                assert_eq!(
                    out[first * block..(last + 1) * block],
                    d[first * block..(last + 1) * block]
                );
                assert!(out[..first * block].iter().all(|&b| b == 0xAA), "{part:?}");
                assert!(out[(last + 1) * block..].iter().all(|&b| b == 0xAA), "{part:?}");
            }
        }
    }

    /// A frame read in part (its header and offsets, then [`blocks_range`]) decodes a part as
    /// the whole frame does, whatever the bytes not read hold; a part whose blocks lie outside
    /// the bytes read is an error.
    #[test]
    fn a_frame_read_in_part_decodes_its_part() {
        let d = data(64 * 64 * 64 * 8, 11);
        let frame = compress(&d, 8, 1, "zstd", 32768);
        let (end, _) = offsets_end(&frame[..HEADER], d.len()).unwrap();
        assert_eq!(end, HEADER + 4 * 64);
        for part in [0..8, 70_000..70_008, 32760..32776, 2_000_000..d.len()] {
            let range = blocks_range(&frame[..end], d.len(), frame.len(), &part).unwrap();
            let mut read = vec![0xEEu8; frame.len()];
            read[..end].copy_from_slice(&frame[..end]);
            read[range.clone()].copy_from_slice(&frame[range.clone()]);
            let mut out = vec![0u8; d.len()];
            decode_zstd_frame(&read, &mut out, (Some(part.clone()), Some(range.clone())), &mut zstd)
                .unwrap()
                .unwrap();
            assert_eq!(out[part.clone()], d[part.clone()], "{part:?}");
            let elsewhere = 1_000_000..1_000_008;
            let err = decode_zstd_frame(&read, &mut out, (Some(elsewhere), Some(range)), &mut zstd)
                .unwrap()
                .unwrap_err();
            assert!(err.contains("outside the bytes read"), "{err}");
        }
        // One block: the whole frame after the offsets.
        let small = data(4096, 5);
        let one = compress(&small, 1, 1, "zstd", 0);
        let (end, _) = offsets_end(&one[..HEADER], small.len()).unwrap();
        assert_eq!(end, HEADER + 4);
        assert_eq!(
            blocks_range(&one[..end], small.len(), one.len(), &(100..101)),
            Some(end..one.len())
        );
        // Blocks stored out of order: read whole.
        let mut swapped = frame.clone();
        let (a, b) = (HEADER + 4, HEADER + 8);
        let second: [u8; 4] = swapped[a..a + 4].try_into().unwrap();
        let third: [u8; 4] = swapped[b..b + 4].try_into().unwrap();
        swapped[a..a + 4].copy_from_slice(&third);
        swapped[b..b + 4].copy_from_slice(&second);
        assert!(blocks_range(&swapped[..end], d.len(), frame.len(), &(32768..32769)).is_none());
        assert!(offsets_end(&compress(&d, 8, 1, "lz4", 0)[..HEADER], d.len()).is_none());
    }

    /// The unshuffle of every element size equals the plain definition.
    #[test]
    fn unshuffle_is_the_transpose_of_the_byte_planes() {
        for typesize in 2..=17usize {
            for len in [
                0usize,
                1,
                typesize * 16 - 1,
                typesize * 16,
                typesize * 16 * 3 + 5,
                10_007,
            ] {
                let src = data(len, typesize as u64);
                let mut dst = vec![0u8; len];
                unshuffle(typesize, &src, &mut dst);
                let n = len / typesize;
                for j in 0..n {
                    for k in 0..typesize {
                        assert_eq!(dst[j * typesize + k], src[k * n + j], "typesize {typesize} len {len}");
                    }
                }
                assert_eq!(dst[n * typesize..], src[n * typesize..]);
            }
        }
    }
}
