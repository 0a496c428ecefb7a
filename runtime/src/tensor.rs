//! Batches as tch tensors (feature `torch`): every tensor of a batch lives on the spec's device.
//!
//! ```text
//! ring slot k (torch host memory, pinned for CUDA)
//!   ├─ cpu:  views [B, C, Z, Y, X] of the slot memory itself (zero copy)
//!   └─ cuda: copy_ into slot k's preallocated device tensors, then the host slot is released
//! idx int64 [B] · dataset int64 [B] · centre_nm float64 [B, 3], on the same device
//! ```
//!
//! [`TorchLoader::open`] builds a [`Loader`] whose ring memory is allocated by libtorch
//! (`LoaderOptions::ring_memory` is set here) and prepares, once, per ring slot, the tensors a
//! [`TorchBatch`] lends out. Nothing is allocated per batch on the CPU path.
//!
//! On the CPU the tensors of a batch ARE the ring slot: they are valid only until the
//! [`TorchBatch`] is dropped, after which the workers overwrite them with a later batch. Keep
//! data past that point with [`TorchBatch::copy`] (or `Tensor::copy`).
//!
//! On CUDA the slot's host memory is page-locked (when the spec's `pin_memory` is set) and
//! copied into device tensors preallocated for that slot. tch 0.26 exposes no in-place
//! non-blocking copy (`Tensor::copy_` is `copy_(src, non_blocking=false)`; `_copy_from` has a
//! kernel only for MPS; `to_device_(non_blocking=true)` allocates a fresh tensor), and no CUDA
//! events with which to know when an asynchronous copy from the slot is done. The copy is
//! therefore synchronous with respect to the host, which lets the host slot go back to the
//! workers as soon as [`TorchLoader::next_batch`] returns, while the device tensors stay lent.

mod memory;

use memory::TORCH_ALLOCATOR;

use cellmap_schema::{Device, OutputDtype, Spec};
use tch::{Kind, Tensor};

use crate::loader::{Batch, Loader, LoaderError, LoaderOptions};
use crate::pipeline::{PipelineError, SampleMeta};
use crate::plan::Planned;

/// Errors of the torch interop.
#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    /// The spec asks for a CUDA device that this process cannot use.
    #[error(
        "device `cuda:{index}` is not available: tch::Cuda::is_available() is {available}, \
         tch::Cuda::device_count() is {count} (a CPU-only libtorch, no GPU, or a build without \
         `CELLMAP_TORCH_CUDA=1`; see docs/torch.md)"
    )]
    CudaUnavailable {
        /// The requested device ordinal.
        index: usize,
        /// `tch::Cuda::is_available()`.
        available: bool,
        /// `tch::Cuda::device_count()`.
        count: i64,
    },
    /// The loader could not start.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// A batch could not be produced.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Ring slot `slot` has no torch memory for array `array` (the loader was not opened by
    /// [`TorchLoader`]).
    #[error("ring slot {slot}, array `{array}`: no torch memory")]
    NoTorchMemory {
        /// Ring slot.
        slot: usize,
        /// Array name.
        array: String,
    },
    /// A libtorch call failed.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The tensors lent out for one ring slot.
struct SlotTensors {
    /// `[B, C, Z, Y, X]` per array, on the device (CPU: views of the slot memory).
    arrays: Vec<Tensor>,
    /// CUDA only: `[B, C, Z, Y, X]` views of the slot's host memory, the copy sources.
    host: Vec<Tensor>,
    /// `idx`, `dataset`, `centre_nm` in host memory (written from the batch metadata).
    meta_host: [Tensor; 3],
    /// The same on the device (CPU: shallow clones of `meta_host`).
    meta: [Tensor; 3],
    /// Samples per batch (the first dimension of every tensor).
    batch_size: usize,
}

/// A loader yielding batches of tch tensors on the spec's device.
pub struct TorchLoader {
    loader: Loader,
    device: tch::Device,
    names: Vec<String>,
    slots: Vec<SlotTensors>,
}

impl TorchLoader {
    /// Plan the spec and start a loader whose batches are tensors on `spec.loader().device`.
    pub fn open(spec: Spec, options: LoaderOptions) -> Result<Self, TensorError> {
        torch_device(&spec)?;
        let planned = crate::plan::plan(&spec, crate::plan::PlanOptions::default())
            .map_err(|e| LoaderError::Plan(Box::new(e)))?;
        Self::with_plan(std::sync::Arc::new(spec), std::sync::Arc::new(planned), options)
    }

    /// Start over a plan made earlier for `spec` (see [`Loader::open_planned`]).
    pub fn open_planned(spec: Spec, plan: crate::plan::Plan, options: LoaderOptions) -> Result<Self, TensorError> {
        torch_device(&spec)?;
        let planned = Planned::open(&spec, plan).map_err(|e| LoaderError::Plan(Box::new(e)))?;
        Self::with_plan(std::sync::Arc::new(spec), std::sync::Arc::new(planned), options)
    }

    /// Start over an existing plan (see [`Loader::with_plan`]).
    pub fn with_plan(
        spec: std::sync::Arc<Spec>,
        planned: std::sync::Arc<Planned>,
        mut options: LoaderOptions,
    ) -> Result<Self, TensorError> {
        // Check the device before anything is allocated or pinned.
        let device = torch_device(&spec)?;
        options.ring_memory = crate::pipeline::RingMemory::External(TORCH_ALLOCATOR);
        let loader = Loader::with_plan(std::sync::Arc::clone(&spec), planned, options)?;
        let layout = &loader.plan().batch;
        let b = layout.batch_size as i64;
        let names: Vec<String> = layout.arrays.iter().map(|a| a.name.clone()).collect();
        let dtypes: Vec<OutputDtype> = spec.inputs().iter().chain(spec.targets()).map(|a| a.dtype).collect();
        let mut slots = Vec::with_capacity(loader.slot_count());
        for slot in 0..loader.slot_count() {
            let mut views = Vec::with_capacity(layout.arrays.len());
            for (i, a) in layout.arrays.iter().enumerate() {
                let t = loader.slot_tensor(slot, i).ok_or_else(|| TensorError::NoTorchMemory {
                    slot,
                    array: a.name.clone(),
                })?;
                let shape: Vec<i64> = a.tensor_shape(layout.batch_size).iter().map(|&n| n as i64).collect();
                views.push(t.f_view_(shape.as_slice())?);
            }
            let meta_host = [
                Tensor::f_zeros([b], (Kind::Int64, tch::Device::Cpu))?,
                Tensor::f_zeros([b], (Kind::Int64, tch::Device::Cpu))?,
                Tensor::f_zeros([b, 3], (Kind::Double, tch::Device::Cpu))?,
            ];
            let tensors = if device == tch::Device::Cpu {
                SlotTensors {
                    meta: [0, 1, 2].map(|k| meta_host[k].shallow_clone()),
                    meta_host,
                    arrays: views,
                    host: Vec::new(),
                    batch_size: layout.batch_size,
                }
            } else {
                let arrays = views
                    .iter()
                    .zip(&dtypes)
                    .map(|(v, d)| Tensor::f_zeros(v.size(), (kind(*d), device)))
                    .collect::<Result<Vec<_>, _>>()?;
                SlotTensors {
                    meta: [
                        Tensor::f_zeros([b], (Kind::Int64, device))?,
                        Tensor::f_zeros([b], (Kind::Int64, device))?,
                        Tensor::f_zeros([b, 3], (Kind::Double, device))?,
                    ],
                    meta_host,
                    arrays,
                    host: views,
                    batch_size: layout.batch_size,
                }
            };
            slots.push(tensors);
        }
        Ok(TorchLoader {
            loader,
            device,
            names,
            slots,
        })
    }

    /// The next batch (endless for training, one pass for validation), all tensors on
    /// [`TorchLoader::device`].
    pub fn next_batch(&mut self) -> Option<Result<TorchBatch<'_>, TensorError>> {
        let TorchLoader {
            loader,
            device,
            names,
            slots,
        } = self;
        let batch = match loader.next_batch()? {
            Ok(b) => b,
            Err(e) => return Some(Err(e.into())),
        };
        let tensors = slots.get_mut(batch.slot())?;
        let epoch = batch.epoch();
        let step = batch.step();
        write_meta(&mut tensors.meta_host, tensors.batch_size, batch.meta());
        let host = if *device == tch::Device::Cpu {
            Some(batch)
        } else {
            // Synchronous copies (see the module documentation); the host slot is released
            // when `batch` goes out of scope below.
            let copied = tensors
                .arrays
                .iter_mut()
                .zip(&tensors.host)
                .chain(tensors.meta.iter_mut().zip(&tensors.meta_host))
                .try_for_each(|(dst, src)| dst.f_copy_(src));
            if let Err(e) = copied {
                return Some(Err(e.into()));
            }
            None
        };
        Some(Ok(TorchBatch {
            host,
            tensors,
            names,
            epoch,
            step,
        }))
    }

    /// The device of every tensor this loader yields.
    pub fn device(&self) -> tch::Device {
        self.device
    }

    /// The underlying loader (plan, cache statistics, ring bytes).
    pub fn loader(&self) -> &Loader {
        &self.loader
    }
}

/// A batch of tensors, lent until dropped.
///
/// On the CPU the array tensors are views of the ring slot (zero copy) and are overwritten by
/// later batches once this is dropped; on CUDA they are the slot's device tensors, overwritten
/// when the ring comes back to the slot. Use [`TorchBatch::copy`] to keep a batch.
pub struct TorchBatch<'a> {
    /// The host batch (CPU only: it keeps the slot borrowed while the views are lent).
    host: Option<Batch<'a>>,
    tensors: &'a SlotTensors,
    names: &'a [String],
    epoch: u64,
    step: u64,
}

impl TorchBatch<'_> {
    /// Array `i` (inputs, then targets), `[B, C, Z, Y, X]`.
    pub fn array(&self, i: usize) -> Option<&Tensor> {
        self.tensors.arrays.get(i)
    }

    /// The array named `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.names.iter().position(|n| n == name).and_then(|i| self.array(i))
    }

    /// `(name, tensor)` of every array, inputs first, then targets, in spec order.
    pub fn arrays(&self) -> impl ExactSizeIterator<Item = (&str, &Tensor)> + '_ {
        self.names.iter().map(String::as_str).zip(&self.tensors.arrays)
    }

    /// Sample index per position (`-1` for an empty position), int64 `[B]`.
    pub fn idx(&self) -> &Tensor {
        &self.tensors.meta[0]
    }

    /// Dataset index within the split per position (`-1` for an empty position), int64 `[B]`.
    pub fn dataset(&self) -> &Tensor {
        &self.tensors.meta[1]
    }

    /// World centre per position in nm, `[z, y, x]`, float64 `[B, 3]`.
    pub fn centre_nm(&self) -> &Tensor {
        &self.tensors.meta[2]
    }

    /// The epoch of this batch (0 for validation).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The step within the epoch (the batch number for validation).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The host batch behind the tensors (CPU device only; on CUDA the host slot is already
    /// back with the workers).
    pub fn host(&self) -> Option<&Batch<'_>> {
        self.host.as_ref()
    }

    /// Deep copies of every tensor, valid after this batch is dropped.
    pub fn copy(&self) -> Result<OwnedTorchBatch, TensorError> {
        let copy = |t: &Tensor| t.f_detach_copy();
        Ok(OwnedTorchBatch {
            arrays: self
                .arrays()
                .map(|(n, t)| Ok((n.to_owned(), copy(t)?)))
                .collect::<Result<_, tch::TchError>>()?,
            idx: copy(self.idx())?,
            dataset: copy(self.dataset())?,
            centre_nm: copy(self.centre_nm())?,
        })
    }
}

/// A batch that owns its tensors (see [`TorchBatch::copy`]).
#[derive(Debug)]
pub struct OwnedTorchBatch {
    /// `(name, [B, C, Z, Y, X])`, inputs first, then targets.
    pub arrays: Vec<(String, Tensor)>,
    /// int64 `[B]`.
    pub idx: Tensor,
    /// int64 `[B]`.
    pub dataset: Tensor,
    /// float64 `[B, 3]`.
    pub centre_nm: Tensor,
}

/// The tch device of a spec, checked for availability.
pub fn torch_device(spec: &Spec) -> Result<tch::Device, TensorError> {
    match spec.loader().device {
        Device::Cpu => Ok(tch::Device::Cpu),
        Device::Cuda(index) => {
            let available = tch::Cuda::is_available();
            let count = tch::Cuda::device_count();
            if available && (index as i64) < count {
                Ok(tch::Device::Cuda(index))
            } else {
                Err(TensorError::CudaUnavailable {
                    index,
                    available,
                    count,
                })
            }
        }
    }
}

/// The tch kind of an output dtype.
pub(crate) fn kind(dtype: OutputDtype) -> Kind {
    match dtype {
        OutputDtype::Float32 => Kind::Float,
        OutputDtype::Float16 => Kind::Half,
        OutputDtype::Bfloat16 => Kind::BFloat16,
        OutputDtype::Uint8 => Kind::Uint8,
    }
}

/// Write the batch metadata into the slot's host meta tensors.
fn write_meta(meta: &mut [Tensor; 3], batch_size: usize, positions: impl ExactSizeIterator<Item = SampleMeta>) {
    let [idx, dataset, centre] = meta;
    let n = batch_size;
    // SAFETY: the three tensors were allocated by `with_plan` as contiguous CPU tensors of
    // int64 [B], int64 [B] and float64 [B, 3] with B = n = batch_size; they are only written here, through
    // `&mut`, while no batch of this slot is lent out.
    let (idx, dataset, centre) = unsafe {
        (
            std::slice::from_raw_parts_mut(idx.data_ptr().cast::<i64>(), n),
            std::slice::from_raw_parts_mut(dataset.data_ptr().cast::<i64>(), n),
            std::slice::from_raw_parts_mut(centre.data_ptr().cast::<f64>(), n * 3),
        )
    };
    for (k, m) in positions.take(n).enumerate() {
        idx[k] = m.idx;
        dataset[k] = i64::from(m.dataset);
        centre[k * 3..k * 3 + 3].copy_from_slice(&m.centre_nm);
    }
}
