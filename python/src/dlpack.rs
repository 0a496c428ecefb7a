//! DLPack capsules (`torch.from_dlpack`) that view memory owned by Rust.
//!
//! A capsule owns its tensor's owner (an `Arc` of a ring batch): the memory stays valid, and a
//! ring slot stays reserved, until the consumer's deleter runs, i.e. until the last tensor
//! viewing it is freed. An unconsumed capsule frees its tensor when it is collected.

use std::ffi::c_void;

use cellmap_runtime::cellmap_schema::OutputDtype;
use pyo3::prelude::*;

/// The capsule name DLPack consumers look for.
const DLTENSOR: &std::ffi::CStr = c"dltensor";

/// DLPack `DLDevice`.
#[repr(C)]
struct DlDevice {
    device_type: i32,
    device_id: i32,
}

/// DLPack `DLDataType`.
#[repr(C)]
struct DlDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

/// DLPack `DLTensor`.
#[repr(C)]
struct DlTensor {
    data: *mut c_void,
    device: DlDevice,
    ndim: i32,
    dtype: DlDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

/// DLPack `DLManagedTensor` (unversioned, as `torch.from_dlpack` accepts in a capsule).
#[repr(C)]
struct DlManagedTensor {
    dl_tensor: DlTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DlManagedTensor)>,
}

/// What a capsule keeps alive: the owner of the memory and the shape arrays.
struct Held<O> {
    _owner: O,
    shape: Vec<i64>,
    strides: Vec<i64>,
}

/// The DLPack deleter: frees the tensor and drops its owner.
unsafe extern "C" fn delete_managed<O>(managed: *mut DlManagedTensor) {
    if managed.is_null() {
        return;
    }
    // SAFETY: `managed` and its context were made by `Box::into_raw` in `f32_capsule` with this
    // `O`, and DLPack calls the deleter exactly once.
    unsafe {
        let managed = Box::from_raw(managed);
        drop(Box::from_raw(managed.manager_ctx.cast::<Held<O>>()));
    }
}

/// Capsule destructor: a capsule still named `dltensor` was never consumed, so it frees its
/// tensor through the tensor's own deleter; a consumed one (renamed `used_dltensor`) belongs to
/// its consumer.
unsafe extern "C" fn capsule_destructor(capsule: *mut pyo3::ffi::PyObject) {
    // SAFETY: called by Python with a live capsule; the name is NUL-terminated.
    unsafe {
        let name = DLTENSOR.as_ptr();
        if pyo3::ffi::PyCapsule_IsValid(capsule, name) == 1 {
            let managed = pyo3::ffi::PyCapsule_GetPointer(capsule, name).cast::<DlManagedTensor>();
            if let Some(deleter) = managed.as_ref().and_then(|m| m.deleter) {
                deleter(managed);
            }
        }
    }
}

/// A DLPack capsule viewing float32 values at `data` as a C-contiguous CPU tensor of `shape`,
/// keeping `owner` alive as long as the tensor.
///
/// # Safety
/// As [`typed_capsule`], for `f32`.
pub(crate) unsafe fn f32_capsule<O: Send + 'static>(
    py: Python<'_>,
    owner: O,
    data: *const f32,
    shape: &[usize],
) -> PyResult<Py<PyAny>> {
    // SAFETY: the caller's contract.
    unsafe { typed_capsule(py, owner, data.cast(), OutputDtype::Float32, shape) }
}

/// The DLPack data type of a batch dtype (`kDLFloat` 2, `kDLBfloat` 4, `kDLUInt` 1).
fn dl_dtype(dtype: OutputDtype) -> DlDataType {
    let (code, bits) = match dtype {
        OutputDtype::Float32 => (2, 32),
        OutputDtype::Float16 => (2, 16),
        OutputDtype::Bfloat16 => (4, 16),
        OutputDtype::Uint8 => (1, 8),
    };
    DlDataType { code, bits, lanes: 1 }
}

/// A DLPack capsule viewing elements of `dtype` at `data` as a C-contiguous CPU tensor of
/// `shape`, keeping `owner` alive as long as the tensor.
///
/// # Safety
/// `data` must point to `shape.iter().product()` initialised, aligned elements of `dtype` that
/// stay valid and are not written while `owner` is alive.
pub(crate) unsafe fn typed_capsule<O: Send + 'static>(
    py: Python<'_>,
    owner: O,
    data: *const u8,
    dtype: OutputDtype,
    shape: &[usize],
) -> PyResult<Py<PyAny>> {
    let shape: Vec<i64> = shape.iter().map(|&n| n as i64).collect();
    let mut strides = vec![1i64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    let mut held = Box::new(Held {
        _owner: owner,
        shape,
        strides,
    });
    let dl_tensor = DlTensor {
        data: data.cast_mut().cast::<c_void>(),
        device: DlDevice {
            device_type: 1, // kDLCPU
            device_id: 0,
        },
        ndim: held.shape.len() as i32,
        dtype: dl_dtype(dtype),
        shape: held.shape.as_mut_ptr(),
        strides: held.strides.as_mut_ptr(),
        byte_offset: 0,
    };
    let managed = Box::into_raw(Box::new(DlManagedTensor {
        dl_tensor,
        manager_ctx: Box::into_raw(held).cast::<c_void>(),
        deleter: Some(delete_managed::<O>),
    }));
    // SAFETY: a valid pointer, a NUL-terminated static name and a destructor that handles both
    // the consumed and the unconsumed capsule.
    let raw = unsafe { pyo3::ffi::PyCapsule_New(managed.cast(), DLTENSOR.as_ptr(), Some(capsule_destructor)) };
    if raw.is_null() {
        // SAFETY: the capsule was not made, so nothing else owns `managed`.
        unsafe { delete_managed::<O>(managed) };
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `raw` is a new, owned reference.
    Ok(unsafe { Bound::from_owned_ptr(py, raw) }.unbind())
}

/// A capsule owning `values` (a sample, a tile's inputs) as a tensor of `shape`.
pub(crate) fn owned_capsule(py: Python<'_>, values: Vec<f32>, shape: &[usize]) -> PyResult<Py<PyAny>> {
    let expected: usize = shape.iter().product();
    if values.len() != expected {
        return Err(crate::errors::cellmap_error(format!(
            "{} values for a tensor of shape {shape:?} ({expected} values)",
            values.len()
        )));
    }
    let data = values.as_ptr();
    // SAFETY: `values` holds exactly the tensor's elements, moves into the capsule (a Vec's heap
    // buffer does not move with it) and is never written again.
    unsafe { f32_capsule(py, values, data, shape) }
}
