//! Ring memory allocated by libtorch: the tensors a CPU batch is, and the pinned host buffers a
//! CUDA batch is copied from. The pipeline holds them as [`ExternalBuffer`]s without knowing
//! torch.

use crate::loader::Loader;
use crate::memory::MemoryError;
use crate::pipeline::{BatchData, ExternalAllocator, ExternalBuffer, SlotMemory};

/// Ring arrays as 1-D libtorch tensors of their dtype.
pub(crate) const TORCH_ALLOCATOR: ExternalAllocator = ExternalAllocator(zeroed);

/// `len` zeros in a tensor; page-locked when `pin` (for DMA copies to a CUDA device). Callers
/// pin only when CUDA is available (the torch interop checks the device first); should pinning
/// still fail, the memory stays pageable: copies are then slower, never wrong.
fn zeroed(len: usize, dtype: cellmap_schema::OutputDtype, pin: bool) -> Result<ExternalBuffer, MemoryError> {
    let bytes = len as u64 * dtype.size_bytes() as u64;
    let size = i64::try_from(len).map_err(|_| MemoryError::Allocation {
        bytes,
        reason: "too many elements for a tensor".to_owned(),
    })?;
    let failed = |e: tch::TchError| MemoryError::Allocation {
        bytes,
        reason: format!("torch: {e}"),
    };
    let mut t = tch::Tensor::f_zeros([size], (super::kind(dtype), tch::Device::Cpu)).map_err(failed)?;
    if pin && let Ok(pinned) = t.f_pin_memory(tch::Device::Cuda(0)) {
        t = pinned;
    }
    Ok(ExternalBuffer {
        ptr: t.data_ptr().cast(),
        owner: Box::new(t),
    })
}

/// The tensor behind a slot array, when libtorch allocated it.
fn tensor(memory: &SlotMemory) -> Option<&tch::Tensor> {
    match memory {
        SlotMemory::External(owner) => owner.downcast_ref::<tch::Tensor>(),
        SlotMemory::Host(_) => None,
    }
}

impl BatchData {
    /// The torch tensor backing array `i` (host memory; pinned when the pipeline pins), when the
    /// ring was allocated by libtorch.
    pub fn host_tensor(&self, i: usize) -> Option<&tch::Tensor> {
        tensor(self.memory(i)?)
    }
}

impl Loader {
    /// The torch tensor holding array `i` of ring slot `slot`.
    pub(crate) fn slot_tensor(&self, slot: usize, i: usize) -> Option<&tch::Tensor> {
        tensor(self.slot_memory(slot, i)?)
    }
}
