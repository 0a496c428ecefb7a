//! A decoded chunk: its elements in the stored type, or a narrower one that holds every value.

use super::dtype::SourceDtype;
use crate::kernels::narrow::{Wide, is_uniform, narrow_into};

/// A decoded chunk in its stored element type (or a narrower one, see [`ChunkData::narrowed`]),
/// C order (`[c,] z, y, x`).
#[derive(Clone, Debug, PartialEq)]
pub enum ChunkData {
    /// `uint8` elements.
    U8(Vec<u8>),
    /// `uint8` elements that are all equal (see [`ChunkData::tagged`]): a copy writes the value
    /// without reading the chunk (an empty class in a label crop, the padding around an EM
    /// volume).
    UniformU8(Vec<u8>),
    /// `uint16` elements.
    U16(Vec<u16>),
    /// `uint32` elements.
    U32(Vec<u32>),
    /// `uint64` elements.
    U64(Vec<u64>),
    /// `int8` elements.
    I8(Vec<i8>),
    /// `int16` elements.
    I16(Vec<i16>),
    /// `int32` elements.
    I32(Vec<i32>),
    /// `int64` elements.
    I64(Vec<i64>),
    /// `float32` elements.
    F32(Vec<f32>),
    /// `float64` elements.
    F64(Vec<f64>),
}

impl ChunkData {
    /// Number of elements.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) | Self::UniformU8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::U64(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }

    /// True when there are no elements.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    #[must_use]
    pub fn dtype(&self) -> SourceDtype {
        match self {
            Self::U8(_) | Self::UniformU8(_) => SourceDtype::U8,
            Self::U16(_) => SourceDtype::U16,
            Self::U32(_) => SourceDtype::U32,
            Self::U64(_) => SourceDtype::U64,
            Self::I8(_) => SourceDtype::I8,
            Self::I16(_) => SourceDtype::I16,
            Self::I32(_) => SourceDtype::I32,
            Self::I64(_) => SourceDtype::I64,
            Self::F32(_) => SourceDtype::F32,
            Self::F64(_) => SourceDtype::F64,
        }
    }

    /// The same values in the narrowest unsigned type that holds every one of them (`uint8`,
    /// then `uint16`), for integer chunks wider than that; other chunks are returned as they
    /// are. Exact: an integer converts to the same `f32` whatever type holds it. Label volumes
    /// are mostly stored as `uint64` with small ids, so this cuts what a read streams from
    /// memory (and what the cache holds) up to 8×.
    #[must_use]
    pub fn narrowed(self) -> Self {
        let tagged_before = matches!(self, Self::UniformU8(_));
        match self.narrowed_tagging() {
            Self::UniformU8(v) if !tagged_before => Self::U8(v),
            other => other,
        }
    }

    /// [`ChunkData::narrowed`], a narrowed chunk whose values are all equal already tagged
    /// [`ChunkData::UniformU8`] (the pass that narrows tells).
    fn narrowed_tagging(self) -> Self {
        fn narrow<S: Wide>(v: Vec<S>, to_16: bool, wrap: fn(Vec<S>) -> ChunkData) -> ChunkData {
            let mut o = vec![0u8; v.len()];
            match narrow_into(&v, &mut o) {
                Some(true) => return ChunkData::UniformU8(o),
                Some(false) => return ChunkData::U8(o),
                None => {}
            }
            if to_16 {
                let mut o = vec![0u16; v.len()];
                if narrow_into(&v, &mut o).is_some() {
                    return ChunkData::U16(o);
                }
            }
            wrap(v)
        }
        match self {
            Self::U16(v) => narrow(v, false, Self::U16),
            Self::U32(v) => narrow(v, true, Self::U32),
            Self::U64(v) => narrow(v, true, Self::U64),
            Self::I16(v) => narrow(v, false, Self::I16),
            Self::I32(v) => narrow(v, true, Self::I32),
            Self::I64(v) => narrow(v, true, Self::I64),
            other => other,
        }
    }

    /// The chunk as the cache keeps it: [`ChunkData::narrowed`], then a `uint8` chunk whose
    /// elements are all equal tagged [`ChunkData::UniformU8`] (one pass over the chunk, once
    /// per decode).
    #[must_use]
    pub fn tagged(self) -> Self {
        match self.narrowed_tagging() {
            Self::U8(v) if is_uniform(&v) => Self::UniformU8(v),
            other => other,
        }
    }

    /// Size of the decoded data in bytes.
    #[must_use]
    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype().size_bytes()
    }
}
