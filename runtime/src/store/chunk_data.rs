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
        match self.narrowed_into(ChunkData::zeros, drop) {
            Some(Self::UniformU8(v)) => Self::U8(v),
            Some(narrow) => narrow,
            None => self,
        }
    }

    /// The chunk as the cache keeps it: [`ChunkData::narrowed`], then a `uint8` chunk whose
    /// elements are all equal tagged [`ChunkData::UniformU8`] (one pass over the chunk, once
    /// per decode).
    #[must_use]
    pub fn tagged(self) -> Self {
        self.tagged_with(ChunkData::zeros, drop)
    }

    /// [`ChunkData::tagged`], narrowing into chunks from `take` (see
    /// [`ChunkData::narrowed_into`]); the wider chunk goes to `give_back`.
    pub(crate) fn tagged_with(
        self,
        take: impl Fn(SourceDtype, usize) -> ChunkData,
        give_back: impl Fn(ChunkData),
    ) -> Self {
        match self.narrowed_into(take, &give_back) {
            Some(narrow) => {
                give_back(self);
                narrow
            }
            None => match self {
                Self::U8(v) if is_uniform(&v) => Self::UniformU8(v),
                other => other,
            },
        }
    }

    /// The chunk narrowed as [`ChunkData::narrowed`] does, into a chunk `take(dtype, len)` gives
    /// (its contents unspecified; chunks taken and not kept go to `give_back`), and tagged
    /// [`ChunkData::UniformU8`] when its values are all equal (the pass that narrows tells);
    /// `None` when the chunk is not a wider integer chunk whose values fit.
    pub(crate) fn narrowed_into(
        &self,
        take: impl Fn(SourceDtype, usize) -> ChunkData,
        give_back: impl Fn(ChunkData),
    ) -> Option<ChunkData> {
        let narrow = |v: &dyn Fn(&mut ChunkData) -> Option<bool>, len: usize, to_16: bool| {
            let mut o = take(SourceDtype::U8, len);
            match v(&mut o) {
                Some(true) => return Some(o.into_uniform()),
                Some(false) => return Some(o),
                None => give_back(o),
            }
            if to_16 {
                let mut o = take(SourceDtype::U16, len);
                if v(&mut o).is_some() {
                    return Some(o);
                }
                give_back(o);
            }
            None
        };
        match self {
            Self::U16(v) => narrow(&|o| narrow_chunk(v, o), v.len(), false),
            Self::U32(v) => narrow(&|o| narrow_chunk(v, o), v.len(), true),
            Self::U64(v) => narrow(&|o| narrow_chunk(v, o), v.len(), true),
            Self::I16(v) => narrow(&|o| narrow_chunk(v, o), v.len(), false),
            Self::I32(v) => narrow(&|o| narrow_chunk(v, o), v.len(), true),
            Self::I64(v) => narrow(&|o| narrow_chunk(v, o), v.len(), true),
            _ => None,
        }
    }

    /// A `uint8` chunk tagged [`ChunkData::UniformU8`] (others as they are).
    fn into_uniform(self) -> Self {
        match self {
            Self::U8(v) => Self::UniformU8(v),
            other => other,
        }
    }

    /// `n` zeros of `dtype`, newly allocated.
    pub(crate) fn zeros(dtype: SourceDtype, n: usize) -> ChunkData {
        match dtype {
            SourceDtype::U8 => Self::U8(vec![0; n]),
            SourceDtype::U16 => Self::U16(vec![0; n]),
            SourceDtype::U32 => Self::U32(vec![0; n]),
            SourceDtype::U64 => Self::U64(vec![0; n]),
            SourceDtype::I8 => Self::I8(vec![0; n]),
            SourceDtype::I16 => Self::I16(vec![0; n]),
            SourceDtype::I32 => Self::I32(vec![0; n]),
            SourceDtype::I64 => Self::I64(vec![0; n]),
            SourceDtype::F32 => Self::F32(vec![0.0; n]),
            SourceDtype::F64 => Self::F64(vec![0.0; n]),
        }
    }

    /// Size of the decoded data in bytes.
    #[must_use]
    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype().size_bytes()
    }
}

/// [`narrow_into`] of `src` into `dst` when `dst` is a `uint8` or `uint16` chunk of its length
/// (`None` otherwise, as for values that do not fit).
fn narrow_chunk<S: Wide>(src: &[S], dst: &mut ChunkData) -> Option<bool> {
    match dst {
        ChunkData::U8(o) if o.len() == src.len() => narrow_into(src, o),
        ChunkData::U16(o) if o.len() == src.len() => narrow_into(src, o),
        _ => None,
    }
}
