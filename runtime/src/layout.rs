//! The shape of a batch: its arrays, their channels and voxels, and its exact bytes. Shared by
//! the plan (which computes it from the spec) and the pipeline (which allocates it).

use cellmap_schema::OutputDtype;
use serde::{Deserialize, Serialize};

/// Shape of one array of a batch: `[B, channels, Z, Y, X]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayLayout {
    /// Batch field name.
    pub name: String,
    /// Channels (1 for inputs, the class count for targets).
    pub channels: usize,
    /// Spatial shape `[z, y, x]` in voxels.
    pub shape_vox: [usize; 3],
    /// Element type (the spec's `dtype`).
    #[serde(default = "float32")]
    pub dtype: OutputDtype,
}

fn float32() -> OutputDtype {
    OutputDtype::Float32
}

impl ArrayLayout {
    /// Elements of one sample of this array (`channels · z · y · x`).
    pub fn sample_len(&self) -> usize {
        self.channels * self.shape_vox.iter().product::<usize>()
    }

    /// Bytes of one sample of this array.
    pub fn sample_bytes(&self) -> u64 {
        (self.sample_len() as u64).saturating_mul(self.dtype.size_bytes() as u64)
    }
}

/// Layout of every batch in the ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchLayout {
    /// Samples per batch.
    pub batch_size: usize,
    /// Arrays of a batch: inputs first, then targets, in spec order.
    pub arrays: Vec<ArrayLayout>,
}

impl BatchLayout {
    /// Exact bytes of the tensor data of one batch (each array at its dtype's size, counted once).
    pub fn batch_bytes(&self) -> u64 {
        self.arrays
            .iter()
            .map(|a| (self.batch_size as u64).saturating_mul(a.sample_bytes()))
            .fold(0, u64::saturating_add)
    }
}
