//! The element types a stored level may have.

use zarrs::array::data_type::{
    Float32DataType, Float64DataType, Int8DataType, Int16DataType, Int32DataType, Int64DataType, UInt8DataType,
    UInt16DataType, UInt32DataType, UInt64DataType,
};

/// Element type of a stored level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceDtype {
    /// `uint8`.
    U8,
    /// `uint16`.
    U16,
    /// `uint32`.
    U32,
    /// `uint64`.
    U64,
    /// `int8`.
    I8,
    /// `int16`.
    I16,
    /// `int32`.
    I32,
    /// `int64`.
    I64,
    /// `float32`.
    F32,
    /// `float64`.
    F64,
}

impl SourceDtype {
    /// Bytes per element.
    #[must_use]
    pub fn size_bytes(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 => 8,
        }
    }

    /// The zarr v3 name (`uint8`, `float32`, …).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::U8 => "uint8",
            Self::U16 => "uint16",
            Self::U32 => "uint32",
            Self::U64 => "uint64",
            Self::I8 => "int8",
            Self::I16 => "int16",
            Self::I32 => "int32",
            Self::I64 => "int64",
            Self::F32 => "float32",
            Self::F64 => "float64",
        }
    }

    pub(crate) fn of(data_type: &zarrs::array::DataType) -> Option<Self> {
        Some(if data_type.is::<UInt8DataType>() {
            Self::U8
        } else if data_type.is::<UInt16DataType>() {
            Self::U16
        } else if data_type.is::<UInt32DataType>() {
            Self::U32
        } else if data_type.is::<UInt64DataType>() {
            Self::U64
        } else if data_type.is::<Int8DataType>() {
            Self::I8
        } else if data_type.is::<Int16DataType>() {
            Self::I16
        } else if data_type.is::<Int32DataType>() {
            Self::I32
        } else if data_type.is::<Int64DataType>() {
            Self::I64
        } else if data_type.is::<Float32DataType>() {
            Self::F32
        } else if data_type.is::<Float64DataType>() {
            Self::F64
        } else {
            return None;
        })
    }
}

impl std::fmt::Display for SourceDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
