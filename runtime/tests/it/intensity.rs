//! Intensity per dataset (issue #16): a `uint16` and a `uint8` raw volume in one split, normalized from
//! each one's dtype range (`scale: dtype`) or by the dataset's own values (inline or datasplit CSV
//! columns), checked voxel for voxel against the stored values.

use std::path::Path;

use cellmap_runtime::sample::intensity::InputTransforms;
use cellmap_runtime::{Loader, PlanOptions, plan};
use cellmap_schema::{Spec, Split, ValueTransform};

use super::common::{Dt, Fmt, write_pyramid};
use super::loader::{RAW_T0, options, same, start};

/// Crop edge in voxels.
const N: usize = 8;
/// s0 shape of both volumes.
const SHAPE: [u64; 3] = [32, 32, 32];

/// The two volumes under `dir`: `wide.zarr` (uint16) and `narrow.zarr` (uint8), s0 data of each.
fn volumes(dir: &Path) -> (Vec<u16>, Vec<u8>) {
    let fmt = Fmt::V2 {
        compressor: serde_json::Value::Null,
        sep: "/",
    };
    let (wide, _) = write_pyramid::<u16>(&dir.join("wide.zarr"), &fmt, SHAPE, [16; 3], None);
    let (narrow, _) = write_pyramid::<u8>(&dir.join("narrow.zarr"), &fmt, SHAPE, [16; 3], None);
    assert!(wide.iter().any(|v| *v > 255), "the uint16 volume uses its range");
    (wide, narrow)
}

/// The text of a raw-only spec with `data` (YAML) and `augment.inputs` `inputs`.
fn spec_text(data: &str, inputs: &str) -> String {
    format!(
        "version: 1\nname: intensity\narrays:\n  inputs:\n    raw: {{ shape: [{N}, {N}, {N}], scale: [8, 8, 8] }}\ndata:\n{data}\nsampling: {{ seed: 5, iterations_per_epoch: 16 }}\naugment:\n  inputs: {inputs}\nloader: {{ batch_size: 4, workers: 2, prefetch: 2, cache_bytes: 16777216 }}\n"
    )
}

/// A raw-only spec over `dir` with `data` (YAML) and `augment.inputs` `inputs`.
fn spec(dir: &Path, data: &str, inputs: &str) -> Spec {
    let text = spec_text(data, inputs);
    match cellmap_schema::parse(&text, &dir.join("spec.yaml")) {
        Ok(checked) => checked.spec,
        Err(e) => panic!("{}", cellmap_schema::render_human(&e.0)),
    }
}

/// The crop of `data` (s0, shape [`SHAPE`]) at a world centre, as f32.
fn crop<T: Dt>(data: &[T], centre_nm: [f64; 3]) -> Vec<f32> {
    let s = start(centre_nm, RAW_T0, N);
    let mut out = Vec::with_capacity(N * N * N);
    for z in 0..N {
        for y in 0..N {
            for x in 0..N {
                let [sz, sy, sx] = [z, y, x].map(|v| v as i64);
                let i = ((s[0] + sz) * 32 + s[1] + sy) * 32 + s[2] + sx;
                out.push(data[i as usize].to_f32());
            }
        }
    }
    out
}

/// `(x − shift) / scale` in f32, as the loader computes it.
fn normalized(v: &[f32], shift: f32, scale: f32) -> Vec<f32> {
    v.iter().map(|x| (x - shift) / scale).collect()
}

/// Reads `batches` batches of `split` and checks every sample against `want(dataset, centre)`;
/// returns how many samples each dataset gave.
fn check(spec: &Spec, split: Split, batches: usize, want: impl Fn(usize, [f64; 3]) -> Vec<f32>) -> Vec<usize> {
    let mut loader = Loader::open(spec.clone(), options(split)).unwrap();
    let mut seen = vec![0; spec.datasets_of(split).count()];
    let voxels = N * N * N;
    for _ in 0..batches {
        let Some(batch) = loader.next_batch() else { break };
        let batch = batch.unwrap();
        for (b, m) in batch.meta().enumerate() {
            if m.idx < 0 {
                continue;
            }
            let d = usize::try_from(m.dataset).unwrap();
            let got = &batch.array(0)[b * voxels..(b + 1) * voxels];
            let expected = want(d, m.centre_nm);
            assert!(
                same(got, &expected),
                "dataset {d} at {:?}: {:?} vs {:?}",
                m.centre_nm,
                &got[..4],
                &expected[..4]
            );
            seen[d] += 1;
        }
    }
    seen
}

#[test]
fn issue_16_scale_dtype_divides_uint16_by_65535_and_uint8_by_255_in_one_split() {
    let tmp = tempfile::tempdir().unwrap();
    let (wide, narrow) = volumes(tmp.path());
    let data = "  datasets:\n    - { split: train, raw: wide.zarr }\n    - { split: train, raw: narrow.zarr }";
    let s = spec(tmp.path(), data, "[{ normalize: dtype }]");
    let seen = check(&s, Split::Train, 4, |d, c| match d {
        0 => normalized(&crop(&wide, c), 0.0, 65535.0),
        _ => normalized(&crop(&narrow, c), 0.0, 255.0),
    });
    assert!(seen.iter().all(|n| *n > 0), "both datasets sampled: {seen:?}");
    // The plan's datasets resolve to numbers once, per input.
    let planned = plan(&s, PlanOptions::default()).unwrap();
    let resolved = InputTransforms::of_plan(&s, &planned);
    assert_eq!(
        resolved.get(0, 0),
        [ValueTransform::Normalize {
            shift: 0.0,
            scale: 65535.0
        }]
    );
    assert_eq!(
        resolved.get(1, 0),
        [ValueTransform::Normalize {
            shift: 0.0,
            scale: 255.0
        }]
    );
}

#[test]
fn issue_16_scale_dtype_maps_int16_from_its_minimum() {
    let tmp = tempfile::tempdir().unwrap();
    let fmt = Fmt::V2 {
        compressor: serde_json::Value::Null,
        sep: "/",
    };
    let (signed, _) = write_pyramid::<i16>(&tmp.path().join("signed.zarr"), &fmt, SHAPE, [16; 3], None);
    assert!(signed.iter().any(|v| *v < 0));
    let data = "  datasets:\n    - { split: train, raw: signed.zarr }\n    - { split: validate, raw: signed.zarr, normalize: { shift: 0, scale: dtype } }";
    let s = spec(tmp.path(), data, "[{ normalize: { scale: dtype } }]");
    // (x − (−32768)) / 65535 onto [0, 1]; an explicit shift replaces the minimum.
    let seen = check(&s, Split::Train, 2, |_, c| {
        normalized(&crop(&signed, c), -32768.0, 65535.0)
    });
    assert!(seen[0] > 0);
    check(&s, Split::Validate, 1, |_, c| {
        normalized(&crop(&signed, c), 0.0, 65535.0)
    });
}

#[test]
fn issue_16_inline_dataset_normalize_overrides_the_specs_in_training_and_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let (wide, narrow) = volumes(tmp.path());
    let data = "  datasets:\n    - { split: train, raw: wide.zarr, normalize: { shift: 1000, scale: 30000 } }\n    - { split: train, raw: narrow.zarr }\n    - { split: validate, raw: wide.zarr, normalize: { scale: dtype } }";
    let s = spec(
        tmp.path(),
        data,
        "[{ normalize: { scale: 255 } }, { nan_to_num: { nan: 0 } }]",
    );
    let seen = check(&s, Split::Train, 4, |d, c| match d {
        0 => normalized(&crop(&wide, c), 1000.0, 30000.0),
        _ => normalized(&crop(&narrow, c), 0.0, 255.0),
    });
    assert!(seen.iter().all(|n| *n > 0), "both datasets sampled: {seen:?}");
    let seen = check(&s, Split::Validate, 2, |_, c| normalized(&crop(&wide, c), 0.0, 65535.0));
    assert!(seen[0] > 0);
}

#[test]
fn issue_16_datasplit_shift_and_scale_columns_override_and_empty_ones_keep_the_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let (wide, narrow) = volumes(tmp.path());
    let root = tmp.path().display();
    let csv =
        format!("train,{root},wide.zarr,,,,dtype\ntrain,{root},narrow.zarr,,,5,250\nvalidate,{root},wide.zarr,,,,\n");
    std::fs::write(tmp.path().join("split.csv"), csv).unwrap();
    let s = spec(tmp.path(), "  csv: split.csv", "[{ normalize: { scale: 255 } }]");
    let seen = check(&s, Split::Train, 4, |d, c| match d {
        0 => normalized(&crop(&wide, c), 0.0, 65535.0),
        _ => normalized(&crop(&narrow, c), 5.0, 250.0),
    });
    assert!(seen.iter().all(|n| *n > 0), "both datasets sampled: {seen:?}");
    // The validation row has no values: the spec's `scale: 255`, also on uint16 data.
    check(&s, Split::Validate, 1, |_, c| normalized(&crop(&wide, c), 0.0, 255.0));
}

#[test]
fn issue_16_predict_inputs_resolve_normalize_per_raw_volume_like_the_loader() {
    use cellmap_runtime::predict::{PredictPlan, TileLoader};
    let tmp = tempfile::tempdir().unwrap();
    let (wide, narrow) = volumes(tmp.path());
    let data = "  datasets:\n    - { split: train, raw: wide.zarr }\n    - { split: train, raw: narrow.zarr, normalize: { shift: 5, scale: 250 } }";
    let text = format!(
        "{}predict:\n  output: out.zarr/{{dataset}}/{{class}}\n  model_classes: [x]\n  scale: [8, 8, 8]\n  tile: [{N}, {N}, {N}]\n",
        spec_text(data, "[{ normalize: dtype }, { gaussian_noise: { std: 1 } }]")
    );
    let s = match cellmap_schema::parse(&text, &tmp.path().join("spec.yaml")) {
        Ok(checked) => checked.spec,
        Err(e) => panic!("{}", cellmap_schema::render_human(&e.0)),
    };
    let plan = std::sync::Arc::new(PredictPlan::new(&s).unwrap());
    assert_eq!(plan.units.len(), 2);
    let tiles: Vec<usize> = (0..plan.tile_count()).collect();
    let mut loader = TileLoader::open(&s, plan.clone(), tiles.clone(), 1).unwrap();
    let mut out = vec![0f32; N * N * N];
    for tile in tiles {
        loader.read_tile(tile, &mut [&mut out]).unwrap();
        let t = plan.tile(tile).unwrap();
        // Noise is random, so prediction leaves it out; normalize is per volume.
        let want = match t.unit {
            0 => normalized(&crop(&wide, t.centre_nm), 0.0, 65535.0),
            _ => normalized(&crop(&narrow, t.centre_nm), 5.0, 250.0),
        };
        assert!(same(&out, &want), "tile {tile} of unit {}", t.unit);
    }
}

#[test]
fn target_scale_dtype_divides_each_class_by_its_label_dtype_range() {
    use super::loader::{CLASSES, CROP1_T, direct, spec_with, synth};
    let f = synth(cellmap_runtime::synth::SynthVariant::V2);
    let s = spec_with(&f.dir, |d| {
        d["augment"]["targets"] = serde_json::json!([{"normalize": "dtype"}]);
    });
    let mut loader = Loader::open(s, options(Split::Train)).unwrap();
    let crop = f.dir.join("recon-1/labels/groundtruth/crop1");
    for _ in 0..2 {
        let batch = loader.next_batch().unwrap().unwrap();
        for (b, m) in batch.meta().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let group = crop.join(class);
                let stored = direct(&group, start(m.centre_nm, CROP1_T, 12), [12; 3]);
                let level = cellmap_runtime::store::Multiscale::open(&group.display().to_string())
                    .unwrap()
                    .levels[0]
                    .dtype;
                let range = cellmap_runtime::sample::intensity::dtype_range(level).unwrap().1 as f32;
                let want: Vec<f32> = stored.iter().map(|v| (v - 0.0) / range).collect();
                let got = &batch.array(1)[(b * 4 + c) * 1728..(b * 4 + c + 1) * 1728];
                assert!(same(got, &want), "{class} ({level})");
                if level == cellmap_runtime::store::SourceDtype::U8 {
                    assert!(
                        got.iter().all(|v| *v == 0.0 || *v == 1.0 / 255.0),
                        "{class}: 0/1 masks ÷ 255"
                    );
                }
            }
        }
    }
}
