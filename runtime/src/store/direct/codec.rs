//! The compressors a chunk file may be encoded with, each decoded straight into the chunk's memory
//! with a per-thread decompression context: no intermediate buffer, and once warm no allocation.

use std::cell::RefCell;
use std::ops::Range;

/// How a chunk's bytes are encoded after the little-endian element bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    /// Stored as is.
    Raw,
    /// One blosc frame (any of its compressors and shuffles: the frame's header names them).
    Blosc,
    /// One zstd frame (zarr v3 `zstd`, numcodecs `zstd`).
    Zstd,
    /// One gzip member (zarr v3 `gzip`, numcodecs `gzip`).
    Gzip,
    /// A zlib stream (numcodecs `zlib`).
    Zlib,
}

impl Codec {
    /// Decode `src` into `dst`, which must be exactly the decoded size, and return the bytes
    /// decoded. Only the bytes `part` of `dst` are needed (`None`: all of them): a blosc frame
    /// of zstd blocks has only the blocks that overlap them decoded, the rest of `dst` left as
    /// it was; other frames decode whole.
    ///
    /// # Errors
    /// A message for a corrupt or truncated frame, or one that decodes to another size than
    /// `dst`'s.
    pub(crate) fn decode(self, src: &[u8], dst: &mut [u8], part: Option<Range<usize>>) -> Result<usize, String> {
        match self {
            Codec::Raw => {
                if src.len() != dst.len() {
                    return Err(format!("{} stored bytes for a chunk of {} bytes", src.len(), dst.len()));
                }
                dst.copy_from_slice(src);
            }
            Codec::Blosc => return blosc(src, dst, part),
            Codec::Zstd => zstd(src, dst)?,
            Codec::Gzip => gzip(src, dst)?,
            Codec::Zlib => {
                inflate(src, dst, true)?;
            }
        }
        Ok(dst.len())
    }
}

/// Decompress the blosc frame `src` into `dst`, whose length must be the frame's decoded size:
/// zstd blocks here ([`super::blosc`]; with `part`, only the blocks that overlap it), other
/// frames whole by c-blosc. Returns the bytes decoded.
fn blosc(src: &[u8], dst: &mut [u8], part: Option<Range<usize>>) -> Result<usize, String> {
    blosc_loaded(src, dst, (part, None))
}

/// [`blosc`] of a frame of which only the bytes `loaded` (beside its header and block offsets)
/// were read ([`super::blosc::blocks_range`]): the blocks that hold `part` must lie there.
pub(super) fn blosc_loaded(
    src: &[u8],
    dst: &mut [u8],
    (part, loaded): (Option<Range<usize>>, Option<Range<usize>>),
) -> Result<usize, String> {
    let bytes = dst.len();
    // A blosc header is 16 bytes; the sizes it gives are checked against the file and the chunk.
    if src.len() < 16 {
        return Err(format!(
            "a blosc frame of {} bytes is shorter than its header",
            src.len()
        ));
    }
    let (mut nbytes, mut cbytes, mut blocksize) = (0usize, 0usize, 0usize);
    // SAFETY: `src` holds at least the 16 header bytes the call reads.
    unsafe { blosc_src::blosc_cbuffer_sizes(src.as_ptr().cast(), &mut nbytes, &mut cbytes, &mut blocksize) };
    if cbytes > src.len() || nbytes != bytes {
        return Err(format!(
            "blosc frame of {cbytes} bytes decoding to {nbytes} in {} stored bytes, for a chunk of {bytes} bytes",
            src.len()
        ));
    }
    let partly_read = loaded.is_some();
    if let Some(decoded) = super::blosc::decode_zstd_frame(&src[..cbytes], dst, (part, loaded), &mut zstd) {
        return decoded;
    }
    if partly_read {
        return Err("a blosc frame read in part is not one whose blocks decode one by one".to_owned());
    }
    // SAFETY: `src` holds the `cbytes` bytes of the frame (checked above); `dst` is valid for
    // `bytes` bytes, which is the frame's decoded size, the most the call writes.
    let n = unsafe { blosc_src::blosc_decompress_ctx(src.as_ptr().cast(), dst.as_mut_ptr().cast(), bytes, 1) };
    if usize::try_from(n).ok() != Some(bytes) {
        return Err(format!("blosc decompression failed ({n})"));
    }
    Ok(bytes)
}

thread_local! {
    static ZSTD: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    static INFLATE: RefCell<Option<flate2::Decompress>> = const { RefCell::new(None) };
}

/// Decompress the zstd frame `src` into `dst` (its decoded size).
fn zstd(src: &[u8], dst: &mut [u8]) -> Result<(), String> {
    ZSTD.with_borrow_mut(|slot| {
        let ctx = match slot {
            Some(ctx) => ctx,
            None => slot.insert(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?),
        };
        let n = ctx
            .decompress_to_buffer(src, dst)
            .map_err(|e| format!("zstd: {e} (for a chunk of {} bytes)", dst.len()))?;
        if n != dst.len() {
            return Err(format!(
                "zstd frame decodes to {n} bytes, for a chunk of {} bytes",
                dst.len()
            ));
        }
        Ok(())
    })
}

/// Inflate the deflate stream `src` (with a zlib header and checksum when `zlib`) into `dst`,
/// which it must fill exactly; the bytes of `src` it used.
fn inflate(src: &[u8], dst: &mut [u8], zlib: bool) -> Result<usize, String> {
    INFLATE.with_borrow_mut(|slot| {
        let ctx = slot.get_or_insert_with(|| flate2::Decompress::new(zlib));
        ctx.reset(zlib);
        let status = ctx
            .decompress(src, dst, flate2::FlushDecompress::Finish)
            .map_err(|e| format!("deflate: {e}"))?;
        let (read, written) = (ctx.total_in() as usize, ctx.total_out() as usize);
        if status != flate2::Status::StreamEnd || written != dst.len() {
            // Either the stream ends short of the chunk, or it goes on past it.
            return Err(format!(
                "the compressed stream of {} bytes does not decode to the chunk's {} bytes ({written} decoded{})",
                src.len(),
                dst.len(),
                if status == flate2::Status::StreamEnd {
                    ""
                } else {
                    ", more to come"
                }
            ));
        }
        Ok(read)
    })
}

/// Decompress the gzip member `src` into `dst`: its header (RFC 1952: optional extra field,
/// name, comment and header checksum) skipped, its deflate stream inflated, its trailer's CRC-32
/// and size checked.
fn gzip(src: &[u8], dst: &mut [u8]) -> Result<(), String> {
    let short = || format!("a gzip member of {} bytes is truncated", src.len());
    if src.len() < 18 || src[0] != 0x1f || src[1] != 0x8b || src[2] != 8 {
        return Err(format!("not a gzip member ({} bytes, no gzip header)", src.len()));
    }
    let flags = src[3];
    let mut at = 10usize;
    if flags & 4 != 0 {
        let extra = usize::from(u16::from_le_bytes([src[at], src[at + 1]]));
        at += 2 + extra;
    }
    for bit in [8u8, 16] {
        if flags & bit != 0 {
            let end = src
                .get(at..)
                .ok_or_else(short)?
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(short)?;
            at += end + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    let body = src.get(at..).ok_or_else(short)?;
    let used = inflate(body, dst, false)?;
    let trailer = body.get(used..used + 8).ok_or_else(short)?;
    let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    if size != dst.len() as u32 || crc != crc32fast::hash(dst) {
        return Err("the gzip member's checksum or size does not match its contents".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn sample() -> Vec<u8> {
        (0..5000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// Every codec decodes what its reference encoder wrote, exactly; a truncated or corrupted
    /// frame and a frame of the wrong size are errors, never a short chunk.
    #[test]
    fn frames_decode_exactly_and_damage_is_an_error() {
        let data = sample();
        let zstd_frame = zstd::bulk::compress(&data, 3).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(5));
        gz.write_all(&data).unwrap();
        let gzip_member = gz.finish().unwrap();
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
        zl.write_all(&data).unwrap();
        let zlib_stream = zl.finish().unwrap();
        for (codec, frame) in [
            (Codec::Raw, data.clone()),
            (Codec::Zstd, zstd_frame),
            (Codec::Gzip, gzip_member),
            (Codec::Zlib, zlib_stream),
        ] {
            // Twice: the second decode reuses the thread's context.
            for _ in 0..2 {
                let mut out = vec![0u8; data.len()];
                codec.decode(&frame, &mut out, None).unwrap();
                assert_eq!(out, data, "{codec:?}");
            }
            let mut out = vec![0u8; data.len()];
            assert!(
                codec.decode(&frame[..frame.len() - 9], &mut out, None).is_err(),
                "{codec:?} truncated"
            );
            let mut longer = vec![0u8; data.len() + 1];
            assert!(
                codec.decode(&frame, &mut longer, None).is_err(),
                "{codec:?} into a larger chunk"
            );
            let mut shorter = vec![0u8; data.len() - 1];
            assert!(
                codec.decode(&frame, &mut shorter, None).is_err(),
                "{codec:?} into a smaller chunk"
            );
        }
    }

    /// A gzip member with a name and a comment in its header decodes; one whose stored bytes
    /// were changed fails its checksum.
    #[test]
    fn gzip_headers_and_checksums() {
        let data = sample();
        let mut gz = flate2::GzBuilder::new()
            .filename("chunk")
            .comment("written by a test")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), flate2::Compression::new(1));
        gz.write_all(&data).unwrap();
        let mut member = gz.finish().unwrap();
        let mut out = vec![0u8; data.len()];
        Codec::Gzip.decode(&member, &mut out, None).unwrap();
        assert_eq!(out, data);
        let n = member.len();
        member[n - 8] ^= 1;
        let err = Codec::Gzip.decode(&member, &mut out, None).unwrap_err();
        assert!(err.contains("checksum"), "{err}");
        assert!(
            Codec::Gzip
                .decode(b"not gzip at all, not at all", &mut out, None)
                .is_err()
        );
    }
}
