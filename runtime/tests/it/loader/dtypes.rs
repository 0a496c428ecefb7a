//! Batch dtypes: `float16`, `bfloat16` and `uint8` batches hold the `float32` batch of the same
//! spec and seed, converted element by element (round to nearest, ties to even; NaN kept, or 255
//! in `uint8`), on every read path: strided copies with a fused transform, rotated and resampled
//! gathers, packed labels, and value transforms staged in f32.

use cellmap_runtime::dtype::{ArrayView, BatchElem};
use cellmap_runtime::half::{bf16, f16};
use cellmap_runtime::{PlanError, plan};
use cellmap_schema::OutputDtype;

use super::*;

/// The fixture spec with every array's dtype set, after `edit`.
fn spec_as(zarr: &Path, dtype: OutputDtype, edit: &dyn Fn(&mut Value)) -> Spec {
    spec_with(zarr, |d| {
        edit(d);
        d["arrays"]["inputs"]["raw"]["dtype"] = json!(dtype.name());
        d["arrays"]["targets"]["labels"]["dtype"] = json!(dtype.name());
    })
}

/// `n` training batches of a spec, each array as its typed view copied out.
fn batches(spec: Spec, n: usize) -> Vec<Vec<Vec<u8>>> {
    let mut loader = Loader::open(spec, options(Split::Train)).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let b = loader.next_batch().unwrap().unwrap();
        out.push((0..b.arrays()).map(|i| b.view(i).as_bytes().to_vec()).collect());
    }
    out
}

/// The f32 batch array `bytes` converted to `T`, as bytes.
fn converted<T: BatchElem>(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for v in bytes.chunks_exact(4) {
        let x = f32::from_ne_bytes(v.try_into().unwrap());
        let t = T::from_f32(x);
        // SAFETY: plain element types.
        let raw = unsafe { std::slice::from_raw_parts((&t as *const T).cast::<u8>(), size_of::<T>()) };
        out.extend_from_slice(raw);
    }
    out
}

/// An edit of the fixture spec's document.
type Edit = Box<dyn Fn(&mut Value)>;

/// The regimes every dtype is checked in: (name, spec edit).
fn regimes() -> Vec<(&'static str, Edit)> {
    vec![
        (
            "strided copy, normalize and binarize fused",
            Box::new(|d: &mut Value| {
                d["augment"]["inputs"] = json!([{"normalize": {"shift": 10, "scale": 255}}]);
            }),
        ),
        (
            "rotated gather, packed labels, noise staged",
            Box::new(|d: &mut Value| {
                d["augment"]["spatial"] = json!({"rotate": {"z": [-40, 40], "x": [-20, 20]}});
                d["augment"]["inputs"] = json!([
                    {"normalize": {"shift": 0, "scale": 255}},
                    {"gaussian_noise": {"mean": 0, "std": 0.1}},
                ]);
            }),
        ),
        (
            "resampled (12 nm from 8 nm) with padding",
            Box::new(|d: &mut Value| {
                d["arrays"]["inputs"]["raw"]["scale"] = json!([12, 12, 12]);
                d["arrays"]["targets"]["labels"]["scale"] = json!([12, 12, 12]);
                d["sampling"]["pad"] = json!(true);
            }),
        ),
    ]
}

#[test]
fn half_precision_batches_are_the_float32_batches_rounded() {
    let f = synth(SynthVariant::V3);
    for (name, edit) in regimes() {
        let reference = batches(spec_as(&f.dir, OutputDtype::Float32, &*edit), 2);
        for dtype in [OutputDtype::Float16, OutputDtype::Bfloat16] {
            let got = batches(spec_as(&f.dir, dtype, &*edit), 2);
            for (k, (g, r)) in got.iter().zip(&reference).enumerate() {
                for (i, (g, r)) in g.iter().zip(r).enumerate() {
                    let want = match dtype {
                        OutputDtype::Float16 => converted::<f16>(r),
                        _ => converted::<bf16>(r),
                    };
                    assert_eq!(g.len() * 2, r.len(), "{name}: {dtype} array {i} is half the bytes");
                    assert!(g == &want, "{name}: {dtype} batch {k} array {i}");
                }
            }
        }
    }
}

#[test]
fn uint8_batches_hold_stored_values_and_255_for_unknown() {
    let f = synth(SynthVariant::V2);
    let regimes: [(&str, Edit); 2] = [
        ("strided", Box::new(|_: &mut Value| {})),
        (
            "rotated",
            Box::new(|d: &mut Value| {
                d["augment"]["spatial"] = json!({"rotate": {"z": [-40, 40]}});
                d["sampling"]["pad"] = json!(true);
            }),
        ),
    ];
    for (name, edit) in regimes {
        // crop2 (validation) does not annotate `pm`: its channel is unknown there; train on both.
        let both = |d: &mut Value| {
            edit(d);
            d["data"]["datasets"][1]["split"] = json!("train");
        };
        let reference = batches(spec_as(&f.dir, OutputDtype::Float32, &both), 3);
        let got = batches(spec_as(&f.dir, OutputDtype::Uint8, &both), 3);
        let mut unknown = 0;
        for (g, r) in got.iter().zip(&reference) {
            assert_eq!(g[0], converted::<u8>(&r[0]), "{name}: raw");
            assert_eq!(g[1], converted::<u8>(&r[1]), "{name}: labels");
            assert!(g[1].iter().all(|&v| v <= 1 || v == OutputDtype::UNKNOWN_U8), "{name}");
            unknown += g[1].iter().filter(|&&v| v == OutputDtype::UNKNOWN_U8).count();
        }
        assert!(unknown > 0, "{name}: the unannotated class reads as 255");
    }
}

#[test]
fn plan_bytes_count_each_array_at_its_dtype() {
    let f = synth(SynthVariant::V3);
    for (dtype, size) in [
        (OutputDtype::Float32, 4),
        (OutputDtype::Float16, 2),
        (OutputDtype::Bfloat16, 2),
        (OutputDtype::Uint8, 1),
    ] {
        let s = spec_as(&f.dir, dtype, &|_| {});
        let loader = Loader::open(s, options(Split::Train)).unwrap();
        let p = loader.plan();
        // batch 3: raw [1, 16³], labels [4, 12³].
        assert_eq!(p.batch_bytes, 3 * (4096 + 4 * 1728) * size, "{dtype}");
        assert_eq!(loader.ring_bytes(), p.batch_bytes * 2, "{dtype}");
        assert!(p.batch.arrays.iter().all(|a| a.dtype == dtype));
        let mut loader = loader;
        let b = loader.next_batch().unwrap().unwrap();
        assert_eq!(b.view(0).dtype(), dtype);
        assert_eq!(b.view(1).len(), 3 * 4 * 1728);
    }
}

#[test]
fn a_uint8_input_over_wider_data_is_a_plan_error() {
    let f = synth(SynthVariant::V2);
    let root = f.dir.display().to_string();
    let s = spec_as(&f.dir, OutputDtype::Uint8, &|d| {
        // `nuc` labels are stored as uint64.
        d["data"]["datasets"][0]["raw"] = json!(format!("{root}/recon-1/labels/groundtruth/crop1/nuc"));
    });
    let err = match plan(&s, PlanOptions::default()) {
        Err(e) => e,
        Ok(_) => panic!("a uint8 input over uint64 data was planned"),
    };
    assert!(
        matches!(&err, PlanError::Uint8Source { array, .. } if array == "raw"),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("uint64") && text.contains("dtype: float32"), "{text}");
}

#[test]
fn typed_views_refuse_other_types() {
    let f = synth(SynthVariant::V3);
    let mut loader = Loader::open(spec_as(&f.dir, OutputDtype::Float16, &|_| {}), options(Split::Train)).unwrap();
    let b = loader.next_batch().unwrap().unwrap();
    assert!(b.typed::<f32>(0).is_none());
    assert_eq!(b.typed::<f16>(0).map(<[f16]>::len), Some(3 * 4096));
    assert!(matches!(b.view(0), ArrayView::F16(_)));
}
