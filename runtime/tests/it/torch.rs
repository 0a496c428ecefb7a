//! The torch interop on the synthetic dataset: shapes, kinds, devices, zero copy on the CPU,
//! metadata tensors, and the error for an unavailable CUDA device.

use cellmap_runtime::{Loader, TensorError, TorchLoader, synth::SynthVariant};
use cellmap_schema::Split;
use tch::{Kind, Tensor};

use crate::alloc::allocations;
use crate::loader::{options, spec, spec_with, synth};

fn f32s(t: &Tensor) -> Vec<u32> {
    let v = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
    v.into_iter().map(f32::to_bits).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn cpu_tensors_are_the_ring_slot_and_match_the_host_batch() {
    let fx = synth(SynthVariant::V2);
    let spec = spec(&fx.dir);
    let mut loader = TorchLoader::open(spec.clone(), options(Split::Train)).unwrap();
    assert_eq!(loader.device(), tch::Device::Cpu);
    // The same spec through the plain loader: the torch memory changes nothing in the data.
    let mut plain = Loader::open(spec, options(Split::Train)).unwrap();
    for n in 0..4u64 {
        let batch = loader.next_batch().unwrap().unwrap();
        let reference = plain.next_batch().unwrap().unwrap();
        assert_eq!((batch.epoch(), batch.step()), (n / 2, n % 2));
        let host = batch.host().unwrap();
        let names: Vec<&str> = batch.arrays().map(|(n, _)| n).collect();
        assert_eq!(names, ["raw", "labels"]);
        for (i, (shape, channels)) in [([16i64; 3], 1i64), ([12; 3], 4)].into_iter().enumerate() {
            let t = batch.array(i).unwrap();
            assert_eq!(t.size(), [3, channels, shape[0], shape[1], shape[2]]);
            assert_eq!(t.kind(), Kind::Float);
            assert_eq!(t.device(), tch::Device::Cpu);
            assert!(t.is_contiguous());
            // Zero copy: the tensor is the slot memory.
            assert_eq!(t.data_ptr() as *const f32, host.array(i).as_ptr());
            assert_eq!(f32s(t), bits(host.array(i)));
            assert_eq!(bits(host.array(i)), bits(reference.array(i)));
        }
        assert!(batch.get("labels").unwrap().data_ptr() == batch.array(1).unwrap().data_ptr());
        assert!(batch.get("nope").is_none());
        let meta: Vec<_> = host.meta().collect();
        assert_eq!(meta, reference.meta().collect::<Vec<_>>());
        assert_eq!(batch.idx().kind(), Kind::Int64);
        assert_eq!(batch.dataset().kind(), Kind::Int64);
        assert_eq!(batch.centre_nm().kind(), Kind::Double);
        assert_eq!(batch.centre_nm().size(), [3, 3]);
        let idx = Vec::<i64>::try_from(batch.idx()).unwrap();
        assert_eq!(
            idx,
            [(n % 2) as i64 * 3, (n % 2) as i64 * 3 + 1, (n % 2) as i64 * 3 + 2]
        );
        assert_eq!(idx, meta.iter().map(|m| m.idx).collect::<Vec<_>>());
        let dataset = Vec::<i64>::try_from(batch.dataset()).unwrap();
        assert_eq!(dataset, [0, 0, 0]);
        let centre = Vec::<f64>::try_from(batch.centre_nm().flatten(0, -1)).unwrap();
        let expected: Vec<f64> = meta.iter().flat_map(|m| m.centre_nm).collect();
        assert_eq!(centre, expected);
        for t in [batch.idx(), batch.dataset(), batch.centre_nm()] {
            assert_eq!(t.device(), tch::Device::Cpu);
        }
    }
}

#[test]
fn validation_tail_positions_are_marked_in_the_tensors() {
    let fx = synth(SynthVariant::V2);
    let mut loader = TorchLoader::open(spec(&fx.dir), options(Split::Validate)).unwrap();
    let mut plain = Loader::open(spec(&fx.dir), options(Split::Validate)).unwrap();
    let mut batches = 0;
    while let Some(batch) = loader.next_batch() {
        let batch = batch.unwrap();
        let reference = plain.next_batch().unwrap().unwrap();
        let want: Vec<i64> = reference.meta().map(|m| m.idx).collect();
        assert_eq!(Vec::<i64>::try_from(batch.idx()).unwrap(), want);
        let want: Vec<i64> = reference.meta().map(|m| i64::from(m.dataset)).collect();
        assert_eq!(Vec::<i64>::try_from(batch.dataset()).unwrap(), want);
        for i in 0..2 {
            assert_eq!(f32s(batch.array(i).unwrap()), bits(reference.array(i)));
        }
        batches += 1;
    }
    assert!(plain.next_batch().is_none());
    assert_eq!(batches, loader.loader().batches_per_epoch());
}

#[test]
fn copies_outlive_the_batch_and_steady_state_batches_do_not_allocate() {
    let fx = synth(SynthVariant::V2);
    // Pinning is requested but the device is the CPU: no CUDA call may be made.
    let spec = spec_with(&fx.dir, |d| {
        d["loader"]["pin_memory"] = serde_json::json!(true);
        d["loader"]["prefetch"] = serde_json::json!(2);
    });
    let mut loader = TorchLoader::open(spec, options(Split::Train)).unwrap();
    let (kept, raw0) = {
        let batch = loader.next_batch().unwrap().unwrap();
        let raw0 = bits(batch.host().unwrap().array(0));
        (batch.copy().unwrap(), raw0)
    };
    // Batches 1 and 2: batch 2 reuses the slot of batch 0.
    for _ in 0..2 {
        loader.next_batch().unwrap().unwrap();
    }
    assert_eq!(kept.arrays[0].0, "raw");
    assert_eq!(f32s(&kept.arrays[0].1), raw0);
    assert_eq!(Vec::<i64>::try_from(&kept.idx).unwrap(), [0, 1, 2]);
    // Steady state: no Rust heap allocation on the consumer thread per batch.
    let before = allocations();
    let mut ptrs = 0usize;
    for _ in 0..6 {
        let batch = loader.next_batch().unwrap().unwrap();
        ptrs = ptrs.wrapping_add(batch.array(0).unwrap().data_ptr() as usize);
        ptrs = ptrs.wrapping_add(batch.centre_nm().data_ptr() as usize);
    }
    assert_eq!(allocations() - before, 0);
    assert_ne!(ptrs, 0);
}

#[test]
fn an_unavailable_cuda_device_is_an_error() {
    let fx = synth(SynthVariant::V2);
    // Without CUDA (this machine, a CPU-only libtorch) `cuda:0`; with CUDA a missing ordinal.
    let (available, count) = (tch::Cuda::is_available(), tch::Cuda::device_count());
    let index = if available { count as usize } else { 0 };
    let spec = spec_with(&fx.dir, |d| {
        d["loader"]["device"] = serde_json::json!(format!("cuda:{index}"));
        d["loader"]["pin_memory"] = serde_json::json!(true);
    });
    let err = match TorchLoader::open(spec, options(Split::Train)) {
        Ok(_) => panic!("a loader opened on the unavailable device `cuda:{index}`"),
        Err(e) => e,
    };
    let message = err.to_string();
    assert!(
        matches!(err, TensorError::CudaUnavailable { index: i, available: a, count: c } if (i, a, c) == (index, available, count)),
        "{message}"
    );
    let want = format!(
        "device `cuda:{index}` is not available: tch::Cuda::is_available() is {available}, tch::Cuda::device_count() is {count}"
    );
    assert!(message.starts_with(&want), "{message}");
}

#[test]
fn a_torch_loader_over_an_earlier_plan_yields_the_same_tensors() {
    let fx = synth(SynthVariant::V2);
    let spec = spec(&fx.dir);
    let earlier = cellmap_runtime::plan(&spec, cellmap_runtime::PlanOptions::default())
        .unwrap()
        .plan;
    let mut planning = TorchLoader::open(spec.clone(), options(Split::Train)).unwrap();
    let mut planned = TorchLoader::open_planned(spec.clone(), earlier.clone(), options(Split::Train)).unwrap();
    for _ in 0..3 {
        let (a, b) = (
            planning.next_batch().unwrap().unwrap(),
            planned.next_batch().unwrap().unwrap(),
        );
        for i in 0..2 {
            assert_eq!(f32s(a.array(i).unwrap()), f32s(b.array(i).unwrap()));
        }
    }
    let mut stale = earlier;
    stale.datasets[0].inputs[0].translation_nm[2] += 8.0;
    let err = TorchLoader::open_planned(spec, stale, options(Split::Train))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("the data changed since this plan was made"), "{err}");
}

#[test]
fn tensors_have_the_kind_of_each_arrays_dtype_and_hold_the_plain_batch() {
    let fx = synth(SynthVariant::V3);
    for (dtype, kind) in [
        ("float16", Kind::Half),
        ("bfloat16", Kind::BFloat16),
        ("uint8", Kind::Uint8),
    ] {
        let spec = spec_with(&fx.dir, |d| {
            d["arrays"]["inputs"]["raw"]["dtype"] = serde_json::json!(dtype);
            d["arrays"]["targets"]["labels"]["dtype"] = serde_json::json!(dtype);
        });
        let mut loader = TorchLoader::open(spec.clone(), options(Split::Train)).unwrap();
        let mut plain = Loader::open(spec, options(Split::Train)).unwrap();
        for _ in 0..2 {
            let batch = loader.next_batch().unwrap().unwrap();
            let reference = plain.next_batch().unwrap().unwrap();
            let host = batch.host().unwrap();
            for i in 0..2 {
                let t = batch.array(i).unwrap();
                assert_eq!(t.kind(), kind, "{dtype}");
                // Zero copy at the array's element size.
                let bytes = host.view(i).as_bytes();
                assert_eq!(t.data_ptr() as *const u8, bytes.as_ptr(), "{dtype}");
                assert_eq!(t.numel() * t.kind().elt_size_in_bytes(), bytes.len(), "{dtype}");
                assert_eq!(bytes, reference.view(i).as_bytes(), "{dtype} array {i}");
            }
        }
    }
}

/// Issue #16: a 2D spec's tensors are `[B, C, Y, X]`, views of the same slot memory.
#[test]
fn a_2d_spec_gives_4d_tensors() {
    let fx = synth(SynthVariant::V2);
    let spec = spec_with(&fx.dir, |d| {
        d["arrays"]["inputs"]["raw"]["shape"] = serde_json::json!([1, 16, 12]);
        d["arrays"]["targets"]["labels"]["shape"] = serde_json::json!([1, 12, 12]);
        d["sampling"]["slice_axis"] = serde_json::json!("x");
    });
    let mut loader = TorchLoader::open(spec.clone(), options(Split::Train)).unwrap();
    let mut plain = Loader::open(spec, options(Split::Train)).unwrap();
    let batch = loader.next_batch().unwrap().unwrap();
    let reference = plain.next_batch().unwrap().unwrap();
    for (i, (shape, channels)) in [([16i64, 12], 1i64), ([12, 12], 4)].into_iter().enumerate() {
        let t = batch.array(i).unwrap();
        assert_eq!(t.size(), [3, channels, shape[0], shape[1]]);
        assert_eq!(f32s(t), bits(reference.array(i)));
    }
}
