//! The shape of a batch: its arrays, their channels and voxels, and its exact bytes. Shared by
//! the plan (which computes it from the spec) and the pipeline (which allocates it).

use cellmap_schema::OutputDtype;
use serde::{Deserialize, Serialize};

/// Shape of one array of a batch: `[B, channels, Z, Y, X]`, or `[B, channels, Y, X]` for the
/// arrays of a 2D spec ([`ArrayLayout::tensor_shape`]; the memory is the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayLayout {
    /// Batch field name.
    pub name: String,
    /// Channels (1 for inputs, the class count for targets).
    pub channels: usize,
    /// Spatial shape `[z, y, x]` in voxels (for a 2D spec: `[1, rows, columns]`, whatever axis it slices).
    pub shape_vox: [usize; 3],
    /// Element type (the spec's `dtype`).
    #[serde(default = "float32")]
    pub dtype: OutputDtype,
    /// Spatial axes of the batch tensor: 3, or 2 for a 2D spec (every array one voxel along z),
    /// whose tensors drop that axis. Plans written before it existed read as 3.
    #[serde(default = "three")]
    pub spatial_dims: usize,
}

fn float32() -> OutputDtype {
    OutputDtype::Float32
}

fn three() -> usize {
    3
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

    /// The tensor shape of a batch of `batch_size` samples: `[B, C, Z, Y, X]`, or `[B, C, Y, X]`
    /// when the layout has 2 spatial axes and z is 1 (otherwise the z axis stays, so the shape
    /// always covers the array's memory exactly).
    ///
    /// ```
    /// use cellmap_runtime::ArrayLayout;
    /// use cellmap_runtime::cellmap_schema::OutputDtype;
    /// let a = ArrayLayout { name: "raw".into(), channels: 1, shape_vox: [1, 64, 32], dtype: OutputDtype::Float32, spatial_dims: 2 };
    /// assert_eq!(a.tensor_shape(8), [8, 1, 64, 32]);
    /// let b = ArrayLayout { spatial_dims: 3, ..a };
    /// assert_eq!(b.tensor_shape(8), [8, 1, 1, 64, 32]);
    /// ```
    pub fn tensor_shape(&self, batch_size: usize) -> Vec<usize> {
        let skip = usize::from(self.spatial_dims == 2 && self.shape_vox[0] == 1);
        [batch_size, self.channels]
            .into_iter()
            .chain(self.shape_vox[skip..].iter().copied())
            .collect()
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
