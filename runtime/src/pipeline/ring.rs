//! The ring's memory: one [`BatchData`] per slot, allocated once when the pipeline starts, and
//! [`SampleOut`], a worker's window onto its position of a slot.

use std::any::Any;
use std::cell::UnsafeCell;
use std::sync::Arc;

use cellmap_schema::OutputDtype;

use super::{PipelineOptions, SampleMeta};
use crate::dtype::{ArrayView, ArrayViewMut, BatchElem};
use crate::layout::BatchLayout;
use crate::memory::HostBuffer;
use crate::memory::MemoryError;

/// Memory of one array of one slot.
pub(super) struct SlotArray {
    /// The first element (aligned for `dtype`).
    ptr: *mut u8,
    /// Elements.
    len: usize,
    /// Elements of one sample.
    sample_len: usize,
    dtype: OutputDtype,
    /// Owns the memory `ptr` points into.
    #[cfg_attr(not(feature = "torch"), expect(dead_code, reason = "read only by the torch interop"))]
    memory: SlotMemory,
}

/// Who owns a slot array's memory.
pub(crate) enum SlotMemory {
    /// Plain (huge-page backed) host memory.
    Host(#[expect(dead_code, reason = "owns the memory the slot's pointer points into")] HostBuffer),
    /// Memory of another library (a torch tensor), kept alive by its owner.
    External(
        #[cfg_attr(not(feature = "torch"), expect(dead_code, reason = "read only by the torch interop"))]
        Box<dyn Any + Send>,
    ),
}

/// Where ring memory comes from.
#[derive(Debug, Clone, Copy, Default)]
pub enum RingMemory {
    /// The pipeline's own host buffers (huge pages where the kernel offers them).
    #[default]
    Host,
    /// Another library's allocator (the torch interop's libtorch tensors).
    External(ExternalAllocator),
}

/// An allocator of ring arrays owned by another library, made by that library's interop (see
/// `TorchLoader`); the pipeline only holds what it returns.
#[derive(Debug, Clone, Copy)]
pub struct ExternalAllocator(
    pub(crate) fn(len: usize, dtype: OutputDtype, pin: bool) -> Result<ExternalBuffer, MemoryError>,
);

/// `len` zeroed elements of `dtype` of another library: where they are, and the value that owns them.
pub(crate) struct ExternalBuffer {
    /// The first element.
    pub(crate) ptr: *mut u8,
    /// Keeps the memory alive (a `tch::Tensor`).
    pub(crate) owner: Box<dyn Any + Send>,
}

/// The arrays and per-sample metadata of one complete batch: what [`super::BatchGuard`],
/// [`super::BatchLease`] and the loader's batches dereference to, the one place a batch's data
/// is read from.
pub struct BatchData {
    pub(super) arrays: Vec<SlotArray>,
    pub(super) meta: Box<[UnsafeCell<SampleMeta>]>,
    layout: Arc<BatchLayout>,
}

// SAFETY: slot memory is only written through the claim protocol (one writer per position,
// no reader until the slot is complete), so sharing the raw pointers across threads is sound.
unsafe impl Send for BatchData {}
// SAFETY: as above.
unsafe impl Sync for BatchData {}

impl BatchData {
    /// Allocate one slot of `layout`.
    pub(super) fn allocate(layout: &Arc<BatchLayout>, options: &PipelineOptions) -> Result<Self, MemoryError> {
        let arrays = layout
            .arrays
            .iter()
            .map(|a| {
                let len = layout
                    .batch_size
                    .checked_mul(a.sample_len())
                    .ok_or_else(|| MemoryError::Allocation {
                        bytes: u64::MAX,
                        reason: format!(
                            "{} samples of {} elements overflow the address space",
                            layout.batch_size,
                            a.sample_len()
                        ),
                    })?;
                SlotArray::allocate(len, a.sample_len(), a.dtype, options)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BatchData {
            arrays,
            meta: (0..layout.batch_size)
                .map(|_| UnsafeCell::new(SampleMeta::EMPTY))
                .collect(),
            layout: Arc::clone(layout),
        })
    }

    /// Bytes of tensor memory of this slot.
    pub(super) fn bytes(&self) -> u64 {
        self.arrays
            .iter()
            .map(|a| a.len as u64 * a.dtype.size_bytes() as u64)
            .sum()
    }

    /// The data of array `i` (`[B, C, Z, Y, X]`, row-major; inputs first, then targets), typed by
    /// its dtype.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn view(&self, i: usize) -> ArrayView<'_> {
        let a = &self.arrays[i];
        // SAFETY: a `&BatchData` is only handed out by a guard or lease of a complete slot
        // (Borrowed until it is dropped): no worker writes it meanwhile; `ptr` holds `len`
        // elements of `dtype`, aligned.
        unsafe { view(a.ptr, a.len, a.dtype) }
    }

    /// Array `i` as `T`, when that is its dtype ([`BatchData::view`] for any dtype).
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn typed<T: BatchElem>(&self, i: usize) -> Option<&[T]> {
        T::slice(self.view(i))
    }

    /// The data of a `float32` array `i` (`[B, C, Z, Y, X]`, row-major): inputs first, then
    /// targets.
    ///
    /// # Panics
    /// If `i` is out of range or the array is not `float32` (use [`BatchData::view`] or
    /// [`BatchData::typed`] for the other dtypes).
    pub fn array(&self, i: usize) -> &[f32] {
        match self.view(i) {
            ArrayView::F32(s) => s,
            other => panic!(
                "array {i} (`{}`) is `{}`, not float32: read it with `view` or `typed`",
                self.layout.arrays[i].name,
                other.dtype()
            ),
        }
    }

    /// Number of arrays.
    pub fn arrays(&self) -> usize {
        self.arrays.len()
    }

    /// The batch layout (names and shapes of the arrays).
    pub fn layout(&self) -> &BatchLayout {
        &self.layout
    }

    /// Per-position metadata, one entry per batch position (`idx` −1 marks an empty position).
    pub fn meta(&self) -> impl ExactSizeIterator<Item = SampleMeta> + '_ {
        // SAFETY: as in `array`.
        self.meta.iter().map(|m| unsafe { *m.get() })
    }

    /// Positions holding a sample (smaller than the batch size only at the end of validation).
    pub fn len(&self) -> usize {
        self.meta().filter(|m| m.idx >= 0).count()
    }

    /// True when no position holds a sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The memory of array `i`.
    #[cfg(feature = "torch")]
    pub(crate) fn memory(&self, i: usize) -> Option<&SlotMemory> {
        self.arrays.get(i).map(|a| &a.memory)
    }
}

impl SlotArray {
    fn allocate(
        len: usize,
        sample_len: usize,
        dtype: OutputDtype,
        options: &PipelineOptions,
    ) -> Result<SlotArray, MemoryError> {
        if let RingMemory::External(ExternalAllocator(alloc)) = options.memory {
            let buffer = alloc(len, dtype, options.pin)?;
            return Ok(SlotArray {
                ptr: buffer.ptr,
                len,
                sample_len,
                dtype,
                memory: SlotMemory::External(buffer.owner),
            });
        }
        // Host buffers hold `f32` words: enough of them for `len` elements of `dtype` (4-byte
        // alignment serves every dtype).
        let words = len
            .checked_mul(dtype.size_bytes())
            .map(|bytes| bytes.div_ceil(size_of::<f32>()))
            .ok_or_else(|| MemoryError::Allocation {
                bytes: u64::MAX,
                reason: format!("{len} elements of {dtype} overflow the address space"),
            })?;
        let memory = HostBuffer::try_zeroed(words)?;
        Ok(SlotArray {
            ptr: memory.as_ptr().cast(),
            len,
            sample_len,
            dtype,
            memory: SlotMemory::Host(memory),
        })
    }
}

/// The typed view of `len` elements of `dtype` at `ptr`.
///
/// # Safety
/// `ptr` must point to `len` initialised, aligned elements of `dtype` that nobody writes while
/// the view lives.
unsafe fn view<'a>(ptr: *const u8, len: usize, dtype: OutputDtype) -> ArrayView<'a> {
    // SAFETY: the caller's contract.
    unsafe {
        match dtype {
            OutputDtype::Float32 => ArrayView::F32(std::slice::from_raw_parts(ptr.cast(), len)),
            OutputDtype::Float16 => ArrayView::F16(std::slice::from_raw_parts(ptr.cast(), len)),
            OutputDtype::Bfloat16 => ArrayView::Bf16(std::slice::from_raw_parts(ptr.cast(), len)),
            OutputDtype::Uint8 => ArrayView::U8(std::slice::from_raw_parts(ptr, len)),
        }
    }
}

/// The typed mutable view of `len` elements of `dtype` at `ptr`.
///
/// # Safety
/// `ptr` must point to `len` initialised, aligned elements of `dtype` that only this view
/// accesses while it lives.
unsafe fn view_mut<'a>(ptr: *mut u8, len: usize, dtype: OutputDtype) -> ArrayViewMut<'a> {
    // SAFETY: the caller's contract.
    unsafe {
        match dtype {
            OutputDtype::Float32 => ArrayViewMut::F32(std::slice::from_raw_parts_mut(ptr.cast(), len)),
            OutputDtype::Float16 => ArrayViewMut::F16(std::slice::from_raw_parts_mut(ptr.cast(), len)),
            OutputDtype::Bfloat16 => ArrayViewMut::Bf16(std::slice::from_raw_parts_mut(ptr.cast(), len)),
            OutputDtype::Uint8 => ArrayViewMut::U8(std::slice::from_raw_parts_mut(ptr, len)),
        }
    }
}

/// The destination of one sample: its place in every array of a slot.
pub struct SampleOut<'a> {
    pub(super) slot: &'a BatchData,
    pub(super) position: usize,
}

impl SampleOut<'_> {
    /// Number of arrays.
    pub fn arrays(&self) -> usize {
        self.slot.arrays.len()
    }

    /// This sample's region of array `i`: `channels · z · y · x` elements of the array's dtype,
    /// channel-major.
    ///
    /// # Panics
    /// If `i` is not below [`SampleOut::arrays`].
    pub fn array(&mut self, i: usize) -> ArrayViewMut<'_> {
        let buf = &self.slot.arrays[i];
        let len = buf.sample_len;
        assert!((self.position + 1) * len <= buf.len, "sample position outside the slot");
        // SAFETY: the claim protocol gives this worker exclusive use of `position` in this slot
        // until it reports completion; regions of different positions are disjoint, and the
        // slot's memory outlives the pipeline's workers. The offset is in elements of `dtype`.
        unsafe {
            let first = buf.ptr.add(self.position * len * buf.dtype.size_bytes());
            view_mut(first, len, buf.dtype)
        }
    }

    /// Record this position's metadata.
    pub(super) fn set_meta(&mut self, meta: SampleMeta) {
        // SAFETY: exclusive use of `position` (see `array`).
        unsafe { *self.slot.meta[self.position].get() = meta };
    }
}
