//! Recycled chunk memory: the `uint8` chunks that the direct reader ([`super::local`]) decodes
//! are handed back here when their last reader lets go of them (a window read that fetched them,
//! a cache that evicts them), and the next decode fills one of them instead of allocating.
//! `uint8` is what the training cache holds most of (raw EM, packed class bits); chunks of other
//! types are allocated as before.
//!
//! The `Arc` a chunk is shared through is recycled too ([`wrap`]), so that a read that misses
//! every cache allocates nothing once warm. The pool keeps at most [`POOL_BYTES`] of buffers and
//! [`POOL_ARCS`] empty `Arc`s; past that they are freed.

use std::sync::{Arc, Mutex, PoisonError};

use super::chunk_data::ChunkData;
use super::multiscale::SourceDtype;

/// Bytes of free buffers the pool keeps at most.
pub(crate) const POOL_BYTES: usize = 32 << 20;

/// Empty `Arc`s the pool keeps at most.
pub(crate) const POOL_ARCS: usize = 4096;

struct Pool {
    free: Vec<Vec<u8>>,
    bytes: usize,
    /// `Arc`s no one else holds, each with an empty chunk.
    arcs: Vec<Arc<ChunkData>>,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: Vec::new(),
    bytes: 0,
    arcs: Vec::new(),
});

/// A `uint8` buffer of `len` elements from the pool (or a new one), its contents unspecified.
fn take_u8(len: usize) -> Vec<u8> {
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(i) = pool.free.iter().rposition(|b| b.capacity() >= len) {
        let mut buf = pool.free.swap_remove(i);
        pool.bytes -= buf.capacity();
        drop(pool);
        buf.resize(len, 0);
        return buf;
    }
    drop(pool);
    vec![0; len]
}

/// A chunk of `elements` zeros of `dtype`.
pub(crate) fn zeroed(dtype: SourceDtype, elements: usize) -> ChunkData {
    if dtype == SourceDtype::U8 {
        let mut v = take_u8(elements);
        v.fill(0);
        return ChunkData::U8(v);
    }
    zero_of(dtype, elements)
}

/// A chunk of `elements` elements of `dtype` whose bytes `fill` writes, whole (it is given every
/// byte of the chunk: a recycled buffer's old values, or zeros); its error is passed on.
pub(crate) fn filled(
    dtype: SourceDtype,
    elements: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<(), String>,
) -> Result<ChunkData, String> {
    if dtype == SourceDtype::U8 {
        let mut v = take_u8(elements);
        fill(&mut v)?;
        return Ok(ChunkData::U8(v));
    }
    let mut data = zero_of(dtype, elements);
    let bytes = data.byte_len();
    // SAFETY: the chunk's elements are plain integers or floats without padding, initialized
    // (zeros), `bytes` long in all; every byte pattern is a valid element.
    fill(unsafe { std::slice::from_raw_parts_mut(bytes_of(&mut data), bytes) })?;
    Ok(data)
}

/// `data` shared through an `Arc`, a recycled one when the pool has one.
pub(crate) fn wrap(data: ChunkData) -> Arc<ChunkData> {
    let arc = POOL.lock().unwrap_or_else(PoisonError::into_inner).arcs.pop();
    match arc {
        Some(mut arc) => match Arc::get_mut(&mut arc) {
            Some(slot) => {
                *slot = data;
                arc
            }
            None => Arc::new(data),
        },
        None => Arc::new(data),
    }
}

/// Hand a chunk back once its last reader lets go of it (no effect while another holds it): its
/// `uint8` memory and its `Arc` are kept for the next decodes.
pub(crate) fn recycle(mut data: Arc<ChunkData>) {
    let Some(slot) = Arc::get_mut(&mut data) else {
        return;
    };
    let buffer = match std::mem::replace(slot, ChunkData::U8(Vec::new())) {
        ChunkData::U8(v) | ChunkData::UniformU8(v) => Some(v),
        _ => None,
    };
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(v) = buffer
        && pool.bytes + v.capacity() <= POOL_BYTES
    {
        pool.bytes += v.capacity();
        pool.free.push(v);
    }
    if pool.arcs.len() < POOL_ARCS {
        pool.arcs.push(data);
    }
}

/// `elements` zeros of `dtype`, newly allocated.
fn zero_of(dtype: SourceDtype, n: usize) -> ChunkData {
    match dtype {
        SourceDtype::U8 => ChunkData::U8(vec![0; n]),
        SourceDtype::U16 => ChunkData::U16(vec![0; n]),
        SourceDtype::U32 => ChunkData::U32(vec![0; n]),
        SourceDtype::U64 => ChunkData::U64(vec![0; n]),
        SourceDtype::I8 => ChunkData::I8(vec![0; n]),
        SourceDtype::I16 => ChunkData::I16(vec![0; n]),
        SourceDtype::I32 => ChunkData::I32(vec![0; n]),
        SourceDtype::I64 => ChunkData::I64(vec![0; n]),
        SourceDtype::F32 => ChunkData::F32(vec![0.0; n]),
        SourceDtype::F64 => ChunkData::F64(vec![0.0; n]),
    }
}

/// The first byte of `data`'s elements (valid for [`ChunkData::byte_len`] bytes).
fn bytes_of(data: &mut ChunkData) -> *mut u8 {
    match data {
        ChunkData::U8(v) | ChunkData::UniformU8(v) => v.as_mut_ptr(),
        ChunkData::U16(v) => v.as_mut_ptr().cast(),
        ChunkData::U32(v) => v.as_mut_ptr().cast(),
        ChunkData::U64(v) => v.as_mut_ptr().cast(),
        ChunkData::I8(v) => v.as_mut_ptr().cast(),
        ChunkData::I16(v) => v.as_mut_ptr().cast(),
        ChunkData::I32(v) => v.as_mut_ptr().cast(),
        ChunkData::I64(v) => v.as_mut_ptr().cast(),
        ChunkData::F32(v) => v.as_mut_ptr().cast(),
        ChunkData::F64(v) => v.as_mut_ptr().cast(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recycled buffer is filled again, whole; buffers still shared are not taken back.
    #[test]
    fn recycled_buffers_are_refilled_whole() {
        let a = Arc::new(
            filled(SourceDtype::U8, 64, |b| {
                b.fill(7);
                Ok(())
            })
            .unwrap(),
        );
        let shared = Arc::clone(&a);
        recycle(a);
        assert_eq!(*shared, ChunkData::U8(vec![7; 64]), "a shared chunk is left alone");
        recycle(shared);
        assert_eq!(zeroed(SourceDtype::U8, 48), ChunkData::U8(vec![0; 48]));
        let wide = filled(SourceDtype::U16, 3, |b| {
            b.copy_from_slice(&[1, 0, 2, 0, 3, 1]);
            Ok(())
        })
        .unwrap();
        assert_eq!(wide, ChunkData::U16(vec![1, 2, 259]));
        assert!(filled(SourceDtype::U8, 4, |_| Err("no".into())).is_err());
        // A recycled `Arc` carries the next chunk.
        let again = wrap(ChunkData::U16(vec![5, 6]));
        assert_eq!(*again, ChunkData::U16(vec![5, 6]));
    }
}
