//! Recycled chunk memory: the chunks that the direct decoder ([`super::direct`]) fills are
//! handed back here when their last reader lets go of them (a window read that fetched them,
//! a cache that evicts them), and the next decode of the same element type fills one of them
//! instead of allocating. A chunk narrowed for the cache ([`tagged`]) and a class bit taken out
//! of a packed chunk ([`filled`]) use the same memory.
//!
//! The `Arc` a chunk is shared through is recycled too ([`wrap`]), so that a read that misses
//! every cache allocates nothing once warm. The pool keeps at most [`POOL_BYTES`] of buffers and
//! [`POOL_ARCS`] empty `Arc`s; past that they are freed.

use std::sync::{Arc, Mutex, PoisonError};

use super::chunk_data::ChunkData;
use super::dtype::SourceDtype;

/// Bytes of free buffers the pool keeps at most.
pub(crate) const POOL_BYTES: usize = 32 << 20;

/// Empty `Arc`s the pool keeps at most.
pub(crate) const POOL_ARCS: usize = 4096;

struct Pool {
    /// Chunks no one holds, their elements stale.
    free: Vec<ChunkData>,
    /// Bytes of their capacities.
    bytes: usize,
    /// `Arc`s no one else holds, each with an empty chunk.
    arcs: Vec<Arc<ChunkData>>,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: Vec::new(),
    bytes: 0,
    arcs: Vec::new(),
});

/// `$body` with `$v` bound to the vector of `$data`, whatever its element type.
macro_rules! each_vec {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            ChunkData::U8($v) | ChunkData::UniformU8($v) => $body,
            ChunkData::U16($v) => $body,
            ChunkData::U32($v) => $body,
            ChunkData::U64($v) => $body,
            ChunkData::I8($v) => $body,
            ChunkData::I16($v) => $body,
            ChunkData::I32($v) => $body,
            ChunkData::I64($v) => $body,
            ChunkData::F32($v) => $body,
            ChunkData::F64($v) => $body,
        }
    };
}

/// Bytes `data`'s vector holds room for.
fn capacity_bytes(data: &ChunkData) -> usize {
    each_vec!(data, v => v.capacity()) * data.dtype().size_bytes()
}

/// A chunk of `elements` elements of `dtype` from the pool (or a new one), its contents
/// unspecified. A free chunk is taken when its room is between one and two chunks of this size,
/// so that a cache charged by length does not hold much larger buffers.
fn take(dtype: SourceDtype, elements: usize) -> ChunkData {
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    let fits = |d: &ChunkData| {
        let room = each_vec!(d, v => v.capacity());
        d.dtype() == dtype && room >= elements && room <= elements.saturating_mul(2)
    };
    if let Some(i) = pool.free.iter().rposition(fits) {
        let mut data = pool.free.swap_remove(i);
        pool.bytes -= capacity_bytes(&data);
        drop(pool);
        if let ChunkData::UniformU8(v) = data {
            data = ChunkData::U8(v);
        }
        each_vec!(&mut data, v => v.resize(elements, Default::default()));
        return data;
    }
    drop(pool);
    ChunkData::zeros(dtype, elements)
}

/// A chunk of `elements` elements of `dtype` whose bytes `fill` writes, whole (it is given every
/// byte of the chunk: a recycled chunk's old values, or zeros); its error is passed on.
pub(crate) fn filled(
    dtype: SourceDtype,
    elements: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<(), String>,
) -> Result<ChunkData, String> {
    let mut data = take(dtype, elements);
    let bytes = data.byte_len();
    // SAFETY: the chunk's elements are plain integers or floats without padding, initialized,
    // `bytes` long in all; every byte pattern is a valid element.
    match fill(unsafe { std::slice::from_raw_parts_mut(bytes_of(&mut data), bytes) }) {
        Ok(()) => Ok(data),
        Err(e) => {
            give_back(data);
            Err(e)
        }
    }
}

/// A chunk of `elements` elements of `dtype` whose bytes `write` writes, whole (as [`filled`],
/// for writers that cannot fail).
pub(crate) fn written(dtype: SourceDtype, elements: usize, write: impl FnOnce(&mut [u8])) -> ChunkData {
    let mut data = take(dtype, elements);
    let bytes = data.byte_len();
    // SAFETY: as in `filled`.
    write(unsafe { std::slice::from_raw_parts_mut(bytes_of(&mut data), bytes) });
    data
}

/// The chunk as the cache keeps it ([`ChunkData::tagged`]), narrowed into pooled memory: the
/// wider chunk goes back to the pool.
pub(crate) fn tagged(data: ChunkData) -> ChunkData {
    data.tagged_with(take, give_back)
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

/// Keep `data`'s memory for the next decodes, within [`POOL_BYTES`].
fn give_back(data: ChunkData) {
    let room = capacity_bytes(&data);
    if room == 0 {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if pool.bytes + room <= POOL_BYTES {
        pool.bytes += room;
        reserve_once(&mut pool.free);
        pool.free.push(data);
    }
}

/// Hand a chunk back once its last reader lets go of it (no effect while another holds it): its
/// memory and its `Arc` are kept for the next decodes.
pub(crate) fn recycle(mut data: Arc<ChunkData>) {
    let Some(slot) = Arc::get_mut(&mut data) else {
        return;
    };
    give_back(std::mem::replace(slot, ChunkData::U8(Vec::new())));
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if pool.arcs.len() < POOL_ARCS {
        reserve_once(&mut pool.arcs);
        pool.arcs.push(data);
    }
}

/// Room for 256 entries in a free list on its first use: a list grown one push at a time would
/// reallocate at each new high of chunks in flight.
fn reserve_once<T>(list: &mut Vec<T>) {
    if list.capacity() == 0 {
        list.reserve(256);
    }
}

/// The first byte of `data`'s elements (valid for [`ChunkData::byte_len`] bytes).
fn bytes_of(data: &mut ChunkData) -> *mut u8 {
    each_vec!(data, v => v.as_mut_ptr().cast())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recycled buffer is filled again, whole, whatever its element type; buffers still shared
    /// are not taken back. (The pool is shared by the tests running alongside, so these assert
    /// contents, not which buffer came back.)
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
        for _ in 0..2 {
            let wide = filled(SourceDtype::U16, 3, |b| {
                b.copy_from_slice(&[1, 0, 2, 0, 3, 1]);
                Ok(())
            })
            .unwrap();
            assert_eq!(wide, ChunkData::U16(vec![1, 2, 259]));
            recycle(Arc::new(wide));
        }
        assert!(filled(SourceDtype::U8, 4, |_| Err("no".into())).is_err());
        // A recycled `Arc` carries the next chunk.
        let again = wrap(ChunkData::U16(vec![5, 6]));
        assert_eq!(*again, ChunkData::U16(vec![5, 6]));
    }

    /// Narrowing into pooled memory gives what [`ChunkData::tagged`] gives, with recycled
    /// chunks of every width in the pool.
    #[test]
    fn pooled_narrowing_equals_tagging() {
        let cases = [
            ChunkData::U64((0..512u64).map(|i| i % 200).collect()),
            ChunkData::U64((0..512u64).map(|i| i * 300).collect()),
            ChunkData::U64((0..512u64).map(|i| i << 20).collect()),
            ChunkData::I32((0..512i32).map(|i| i - 3).collect()),
            ChunkData::U16(vec![9; 512]),
            ChunkData::U8(vec![4; 512]),
            ChunkData::U8((0..512u32).map(|i| i as u8).collect()),
            ChunkData::F32(vec![0.5; 512]),
        ];
        for round in 0..3 {
            for case in &cases {
                let got = tagged(case.clone());
                assert_eq!(got, case.clone().tagged(), "round {round}: {:?}", case.dtype());
                recycle(Arc::new(got));
            }
        }
    }
}
