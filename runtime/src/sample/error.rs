//! The errors of sample reads: [`CropError`] for one crop, [`SampleReadError`] for a sample with
//! the dataset, array, class and centre it failed at.

use crate::augment::value::ValueError;
use crate::kernels::GatherError;
use crate::read::ReadError;

/// Where a sample read failed.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleAt {
    /// The dataset's raw location.
    pub dataset: String,
    /// The array.
    pub array: String,
    /// The class, when a class channel failed.
    pub class: Option<String>,
    /// The centre (nm, `z y x`).
    pub centre_nm: [f64; 3],
}

impl std::fmt::Display for SampleAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dataset `{}`, array `{}`", self.dataset, self.array)?;
        if let Some(class) = &self.class {
            write!(f, ", class `{class}`")?;
        }
        write!(f, ", centre {:?} nm", self.centre_nm)
    }
}

/// Why one crop (one channel of one array from one level) could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CropError {
    /// Reading the voxel window failed (a chunk error names the array path and the chunk key).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Sampling the window failed (inconsistent buffers).
    #[error(transparent)]
    Gather(#[from] GatherError),
    /// The output does not hold the crop.
    #[error("a crop of {shape_vox:?} voxels needs {expected} values, got {got}")]
    OutputLength {
        /// The crop's shape.
        shape_vox: [usize; 3],
        /// Values needed.
        expected: usize,
        /// Length of the output.
        got: usize,
    },
}

/// A failed sample read, with the context a person needs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleReadError {
    /// A crop could not be read (for chunk failures, the cause names the array path and chunk key).
    #[error("{at}: {source}")]
    Crop {
        /// Where.
        at: Box<SampleAt>,
        /// The cause.
        #[source]
        source: CropError,
    },
    /// A value transform failed.
    #[error("{at}: {source}")]
    Value {
        /// Where.
        at: Box<SampleAt>,
        /// The cause.
        #[source]
        source: ValueError,
    },
}

impl SampleReadError {
    /// Where the read failed.
    pub fn at(&self) -> &SampleAt {
        match self {
            SampleReadError::Crop { at, .. } | SampleReadError::Value { at, .. } => at,
        }
    }
}
