//! The training cache (issue #15): `cellmap-compile cache` copies what a plan reads into a local
//! folder, rechunked, binary classes packed as bits; a loader reading through it gives the same
//! batches bit for bit. Real zarr v2 and sharded v3 sources, real cached arrays read back with
//! zarrs.

use std::path::Path;
use std::sync::Arc;

use cellmap_runtime::plan::{PlanOptions, plan};
use cellmap_runtime::sources::ClassSource;
use cellmap_runtime::synth::SynthVariant;
use cellmap_runtime::training_cache::{CacheCodec, CacheOptions, MANIFEST, Manifest, fallback_chunks, write};
use cellmap_schema::{Spec, Split};
use serde_json::json;
use zarrs::array::Array;
use zarrs::filesystem::FilesystemStore;

use crate::common::sample_request;
use crate::fetch::batches;
use crate::loader::{spec_with, synth};

/// The fixture spec with rotation, mirror and transpose, reading through `cache` when given.
fn spec(zarr: &Path, cache: Option<&Path>) -> Spec {
    spec_with(zarr, |d| {
        d["augment"]["spatial"] = json!({"mirror": {"z": 0.5, "y": 0.5, "x": 0.5}, "transpose": ["z", "y", "x"],
            "rotate": {"z": [-180, 180]}});
        d["sampling"]["iterations_per_epoch"] = json!(24);
        if let Some(dir) = cache {
            d["loader"]["training_cache"] = json!(dir.display().to_string());
        }
    })
}

fn options(chunk: u64) -> CacheOptions {
    CacheOptions {
        chunk: [chunk; 3],
        codec: CacheCodec::Lz4,
        reach_nm: None,
        threads: 2,
        classes_per_pack: 8,
        force: false,
        prune: false,
    }
}

/// Training batches of `spec` with the decoded-chunk cache off (every read decodes) and on.
fn both(spec: &Spec) -> [Vec<Vec<u32>>; 2] {
    let (cold, _) = batches(spec.clone(), 6, |o| o.no_cache = true);
    let (warm, _) = batches(spec.clone(), 6, |_| {});
    [cold, warm]
}

#[test]
fn batches_read_through_the_training_cache_equal_those_read_from_the_data() {
    for (variant, chunk, codec) in [
        (SynthVariant::V2, 24, CacheCodec::Lz4),
        (SynthVariant::V3, 16, CacheCodec::None),
        (SynthVariant::V2, 32, CacheCodec::Zstd),
    ] {
        let f = synth(variant);
        let dir = f.dir.parent().unwrap().join("cache");
        let direct = spec(&f.dir, None);
        let report = write(
            &direct,
            &dir,
            &CacheOptions {
                codec,
                ..options(chunk)
            },
        )
        .unwrap();
        assert_eq!((report.copies_written, report.kept), (1, 0), "{report:?}");
        assert!(report.packs_written >= 1 && report.chunks_written > 0, "{report:?}");
        let cached = spec(&f.dir, Some(&dir));
        let planned = plan(&cached, PlanOptions::default()).unwrap();
        // Every level the plan reads is read through the cache, with the source's geometry.
        for (d, s) in planned.plan.datasets.iter().zip(&planned.sources) {
            assert!(s.raw.levels[d.inputs[0].level].is_cached());
            for (c, class) in d.targets[0].iter().enumerate() {
                if let (cellmap_runtime::ClassPlan::Annotated(lp), ClassSource::Annotated(ms)) = (class, &s.classes[c])
                {
                    assert!(ms.levels[lp.level].is_cached(), "class {c}");
                    assert_eq!(ms.levels[lp.level].chunk_shape_vox, [chunk; 3]);
                }
            }
        }
        assert_eq!(
            planned.plan.datasets,
            plan(&direct, PlanOptions::default()).unwrap().plan.datasets
        );
        assert!(
            !planned.plan.warnings.iter().any(|w| w.contains("training cache")),
            "{:?}",
            planned.plan.warnings
        );
        assert_eq!(both(&cached), both(&direct), "{variant:?} chunk {chunk}");
        // The margin covers every rotated window: nothing was read from the data.
        let mut loader = cellmap_runtime::Loader::with_plan(
            Arc::new(cached.clone()),
            Arc::new(planned),
            crate::loader::options(Split::Train),
        )
        .unwrap();
        for _ in 0..6 {
            loader.next_batch().unwrap().unwrap();
        }
        assert_eq!(fallback_chunks(&loader.planned().sources), 0);
    }
}

/// The decoded voxels of the whole array `path` of the store at `dir` (a cached array, or a zarr
/// v2 or v3 source level), with its unsigned dtype's name, as u64.
fn read_all(dir: &Path, path: &str) -> (String, Vec<u64>) {
    let store = Arc::new(FilesystemStore::new(dir).unwrap());
    let array = Array::open(store, &format!("/{}", path.trim_start_matches('/'))).unwrap();
    let subset = array.subset_all();
    let dtype = array.data_type().to_string();
    let dtype = dtype.split_whitespace().next().unwrap().to_owned();
    let data: Vec<u64> = match dtype.as_str() {
        "uint8" => array
            .retrieve_array_subset::<Vec<u8>>(&subset)
            .unwrap()
            .into_iter()
            .map(u64::from)
            .collect(),
        "uint16" => array
            .retrieve_array_subset::<Vec<u16>>(&subset)
            .unwrap()
            .into_iter()
            .map(u64::from)
            .collect(),
        "uint32" => array
            .retrieve_array_subset::<Vec<u32>>(&subset)
            .unwrap()
            .into_iter()
            .map(u64::from)
            .collect(),
        "uint64" => array.retrieve_array_subset::<Vec<u64>>(&subset).unwrap(),
        other => panic!("{other}"),
    };
    (dtype, data)
}

#[test]
fn each_packed_bit_is_its_label_non_zero_and_the_raw_copy_holds_the_source_voxels() {
    let f = synth(SynthVariant::V2);
    let dir = f.dir.parent().unwrap().join("cache");
    let report = write(&spec(&f.dir, None), &dir, &options(24)).unwrap();
    let manifest = Manifest::read(&dir).unwrap();
    assert_eq!(manifest.packs.len(), report.packs_written);
    let classes: usize = manifest.packs.iter().map(|p| p.members.len()).sum();
    assert_eq!(classes, report.classes_packed);
    for pack in &manifest.packs {
        let (dtype, bits) = read_all(&dir, &pack.path);
        assert_eq!(dtype, "uint8", "{} classes", pack.members.len());
        assert_eq!(pack.dtype, "uint8");
        for m in &pack.members {
            let (source_dir, level) = m.source.array.rsplit_once('/').unwrap();
            let (_, labels) = read_all(Path::new(source_dir), level);
            assert_eq!(labels.len(), bits.len());
            let wrong = labels
                .iter()
                .zip(&bits)
                .filter(|(l, b)| (**l != 0) != ((**b >> m.bit) & 1 == 1))
                .count();
            assert_eq!(wrong, 0, "{} bit {}", m.source.array, m.bit);
            assert!(labels.iter().any(|&l| l != 0), "the fixture's class has foreground");
        }
    }
    // The raw copy: same voxels as the source wherever it was written.
    let copy = &manifest.arrays[0];
    let (source_dir, level) = copy.source.array.rsplit_once('/').unwrap();
    let (_, source) = read_all(Path::new(source_dir), level);
    let (dtype, cached) = read_all(&dir, &copy.path);
    assert_eq!(dtype, "uint8");
    let [nz, ny, nx] = copy.source.shape_vox.map(|v| v as usize);
    let mut compared = 0;
    for [lo, hi] in &copy.written {
        for z in (lo[0] * 24) as usize..((hi[0] * 24) as usize).min(nz) {
            for y in (lo[1] * 24) as usize..((hi[1] * 24) as usize).min(ny) {
                for x in (lo[2] * 24) as usize..((hi[2] * 24) as usize).min(nx) {
                    let i = (z * ny + y) * nx + x;
                    assert_eq!(cached[i], source[i], "voxel {z} {y} {x}");
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 0);
}

#[test]
fn chunks_the_cache_does_not_hold_are_read_from_the_data_and_counted() {
    let f = synth(SynthVariant::V3);
    let dir = f.dir.parent().unwrap().join("cache");
    let direct = spec(&f.dir, None);
    write(&direct, &dir, &options(8)).unwrap();
    // Keep only the chunks of the first half of z (as a cache written with a smaller margin,
    // or for another spec, would).
    let mut manifest = Manifest::read(&dir).unwrap();
    manifest.arrays[0].written = vec![[[0, 0, 0], [6, 12, 12]]];
    manifest.write(&dir).unwrap();
    let cached = spec(&f.dir, Some(&dir));
    assert_eq!(both(&cached), both(&direct));
    let planned = Arc::new(plan(&cached, PlanOptions::default()).unwrap());
    let mut loader = cellmap_runtime::Loader::with_plan(
        Arc::new(cached),
        Arc::clone(&planned),
        crate::loader::options(Split::Train),
    )
    .unwrap();
    for _ in 0..4 {
        loader.next_batch().unwrap().unwrap();
    }
    assert!(fallback_chunks(&planned.sources) > 0);
}

#[test]
fn a_stale_or_missing_cache_is_read_around_with_a_warning_naming_the_fix() {
    let f = synth(SynthVariant::V2);
    let dir = f.dir.parent().unwrap().join("cache");
    let direct = spec(&f.dir, None);
    // No manifest yet.
    let cached = spec(&f.dir, Some(&dir));
    let planned = plan(&cached, PlanOptions::default()).unwrap();
    let warning = planned
        .plan
        .warnings
        .iter()
        .find(|w| w.contains("training cache"))
        .expect("a warning");
    assert!(
        warning.contains(MANIFEST) && warning.contains("cellmap-compile cache"),
        "{warning}"
    );
    assert!(!planned.sources[0].raw.levels.iter().any(|l| l.is_cached()));
    // A raw entry whose source changed (as recorded: another translation).
    write(&direct, &dir, &options(24)).unwrap();
    let mut manifest = Manifest::read(&dir).unwrap();
    manifest.arrays[0].source.translation_nm[0] += 8.0;
    manifest.write(&dir).unwrap();
    let planned = plan(&cached, PlanOptions::default()).unwrap();
    let warning = planned
        .plan
        .warnings
        .iter()
        .find(|w| w.contains("training cache"))
        .expect("a warning");
    assert!(
        warning.contains("changed since it was cached") && warning.contains("translation"),
        "{warning}"
    );
    assert!(!planned.sources[0].raw.levels.iter().any(|l| l.is_cached()));
    assert_eq!(both(&cached), both(&direct));
    // Writing again brings it up to date: the raw is copied again, the packs are kept.
    let report = write(&direct, &dir, &options(24)).unwrap();
    assert_eq!((report.copies_written, report.packs_written), (1, 0), "{report:?}");
    assert_eq!(report.kept, Manifest::read(&dir).unwrap().packs.len());
    // The replaced raw copy stays for loaders that opened the old manifest, until pruned.
    assert_eq!(report.unreferenced.len(), 1, "{report:?}");
    assert!(report.unreferenced[0].is_dir());
    let pruned = write(
        &direct,
        &dir,
        &CacheOptions {
            prune: true,
            ..options(24)
        },
    )
    .unwrap();
    assert_eq!((pruned.copies_written, pruned.packs_written), (0, 0), "{pruned:?}");
    assert!(!report.unreferenced[0].exists());
    let planned = plan(&cached, PlanOptions::default()).unwrap();
    assert!(!planned.plan.warnings.iter().any(|w| w.contains("training cache")));
    // `force` copies everything again (contents are not compared; after relabelling in place).
    let forced = write(
        &direct,
        &dir,
        &CacheOptions {
            force: true,
            ..options(24)
        },
    )
    .unwrap();
    assert_eq!(forced.kept, 0, "{forced:?}");
    assert_eq!(
        forced.copies_written + forced.packs_written,
        1 + report.kept,
        "{forced:?}"
    );
}

#[test]
fn labels_that_are_not_binary_for_the_spec_are_copied_whole_not_packed() {
    let f = synth(SynthVariant::V2);
    let dir = f.dir.parent().unwrap().join("cache");
    let edit = |cache: Option<&Path>| {
        spec_with(&f.dir, |d| {
            // Labels kept as they are stored (no binarize), and one class binarized at 1.5.
            d["augment"]["targets"] = json!([{"normalize": {"shift": 0, "scale": 1}}]);
            d["augment"]["per_class"] = json!({"er": [{"binarize": {"threshold": 1.5}}]});
            if let Some(dir) = cache {
                d["loader"]["training_cache"] = json!(dir.display().to_string());
            }
        })
    };
    let report = write(&edit(None), &dir, &options(24)).unwrap();
    assert_eq!(report.packs_written, 0, "{report:?}");
    let manifest = Manifest::read(&dir).unwrap();
    assert!(manifest.arrays.len() > 1, "raw and the labels");
    assert!(manifest.arrays.iter().any(|a| a.source.array.contains("/labels/")));
    assert_eq!(both(&edit(Some(&dir))), both(&edit(None)));
}

#[test]
fn twelve_classes_pack_into_one_wide_array_or_several_bytes_with_the_same_batches() {
    use cellmap_runtime::synth::{SynthMany, SynthOptions, SynthSize, write_synthetic};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("many");
    write_synthetic(
        &data,
        &SynthOptions {
            seed: 5,
            size: SynthSize::Small,
            variants: vec![SynthVariant::V3],
            many: Some(SynthMany {
                volumes: 1,
                crops: 2,
                classes: 12,
                crop_vox: 32,
            }),
            ..SynthOptions::default()
        },
    )
    .unwrap();
    let direct = cellmap_schema::load(&data.join("spec.yaml")).unwrap().spec;
    let (want, _) = batches(direct.clone(), 3, |o| o.no_cache = true);
    for (per_pack, packs_per_crop, dtype) in [(64, 1, "uint16"), (5, 3, "uint8"), (8, 2, "uint8")] {
        let dir = tmp.path().join(format!("cache-{per_pack}"));
        let report = write(
            &direct,
            &dir,
            &CacheOptions {
                classes_per_pack: per_pack,
                ..options(16)
            },
        )
        .unwrap();
        let crops = direct.datasets().len();
        assert_eq!(report.packs_written, crops * packs_per_crop, "{report:?}");
        assert_eq!(report.classes_packed, crops * 12);
        let manifest = Manifest::read(&dir).unwrap();
        assert!(manifest.packs.iter().all(|p| p.dtype == dtype), "{:?}", manifest.packs);
        let through = direct.clone().with_training_cache(Some(dir.display().to_string()));
        let (got, _) = batches(through, 3, |o| o.no_cache = true);
        assert_eq!(got, want, "{per_pack} classes per pack");
    }
}

#[test]
fn a_run_that_fails_keeps_what_it_finished_and_names_the_array_it_could_not_read() {
    let f = synth(SynthVariant::V2);
    let dir = f.dir.parent().unwrap().join("cache");
    let direct = spec(&f.dir, None);
    // A corrupt chunk in the validation crop's `mito`: one array at a time, the raw copy and the
    // training crop's packs come first and are finished before it fails.
    let chunk = first_file(&f.dir.join("recon-1/labels/groundtruth/crop2/mito/s0"));
    let good = std::fs::read(&chunk).unwrap();
    std::fs::write(&chunk, b"not a blosc frame").unwrap();
    let one_at_a_time = CacheOptions {
        threads: 1,
        ..options(24)
    };
    let err = write(&direct, &dir, &one_at_a_time).unwrap_err().to_string();
    assert!(err.contains("crop2/mito/s0") && err.contains("caching"), "{err}");
    let partial = Manifest::read(&dir).unwrap();
    assert_eq!(partial.arrays.len(), 1, "the raw copy: {partial:?}");
    assert!(!partial.packs.is_empty(), "the training crop's packs: {partial:?}");
    assert!(
        partial
            .packs
            .iter()
            .all(|p| p.members.iter().all(|m| !m.source.array.contains("crop2")))
    );
    // Repaired, the next run keeps all of that and writes the rest.
    std::fs::write(&chunk, good).unwrap();
    let report = write(&direct, &dir, &one_at_a_time).unwrap();
    assert_eq!(report.kept, 1 + partial.packs.len(), "{report:?}");
    assert_eq!((report.copies_written, report.unreferenced.len()), (0, 0), "{report:?}");
    assert!(report.packs_written >= 1, "{report:?}");
    let cached = spec(&f.dir, Some(&dir));
    assert_eq!(both(&cached), both(&direct));
}

/// The first regular file under `dir` (depth first, names sorted): a chunk of an array.
fn first_file(dir: &Path) -> std::path::PathBuf {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for e in entries {
        let name = e.file_name().unwrap().to_string_lossy().into_owned();
        if e.is_dir() {
            return first_file(&e);
        }
        if !name.starts_with('.') {
            return e;
        }
    }
    panic!("no chunk under {}", dir.display());
}

/// A strided read (mirrors and transposes) takes every class of a bit pack from one window read
/// of the pack, and so does a rotated one (the packed gather), with the voxels a class-by-class
/// read of the data gives: inside the crop, and outside it where the pad value is binarized per
/// class (NaN kept; 0.5 above a threshold of 0, not above 0.7).
#[test]
fn a_strided_read_takes_every_class_of_a_pack_from_one_read_with_the_data_s_voxels() {
    use cellmap_runtime::sample::Reader;

    let f = synth(SynthVariant::V2);
    let dir = f.dir.parent().unwrap().join("cache-bits");
    let edit = |cache: Option<&Path>, pad: Option<f64>, threshold: f64, rotate: bool| {
        spec_with(&f.dir, |d| {
            d["augment"]["spatial"] = json!({"mirror": {"z": 0.5, "y": 0.5, "x": 0.5}, "transpose": ["z", "y", "x"]});
            if rotate {
                d["augment"]["spatial"]["rotate"] = json!({"z": [-180, 180]});
            }
            d["augment"]["targets"] = json!([{"binarize": {"threshold": threshold}}]);
            if let Some(pad) = pad {
                d["sampling"]["pad_value"] = json!({"targets": pad});
            }
            if let Some(dir) = cache {
                d["loader"]["training_cache"] = json!(dir.display().to_string());
            }
        })
    };
    write(&edit(None, None, 0.0, true), &dir, &options(8)).unwrap();
    let mut checked = 0;
    let cases = [(None, 0.0), (Some(0.5), 0.0), (Some(0.5), 0.7)];
    for (pad, threshold, rotate) in cases.into_iter().flat_map(|(p, t)| [(p, t, false), (p, t, true)]) {
        let [direct, cached] = [None, Some(dir.as_path())].map(|cache| {
            let spec = Arc::new(edit(cache, pad, threshold, rotate));
            let planned = Arc::new(plan(&spec, PlanOptions::default()).unwrap());
            (Reader::new(spec, Arc::clone(&planned), None), planned)
        });
        let planned = &cached.1;
        let empty: Vec<Vec<f32>> = planned
            .plan
            .batch
            .arrays
            .iter()
            .map(|l| vec![0.0; l.sample_len()])
            .collect();
        // Centres at the crop's corners (windows reaching outside it) and inside.
        let ClassSource::Annotated(ms) = &planned.sources[0].classes[0] else {
            panic!("mito is annotated in crop1")
        };
        let bounds = ms.levels[0].bounds_nm();
        for index in 0..12u64 {
            let t = [0.0, 0.3, 0.5, 1.0][index as usize % 4];
            let centre_nm = std::array::from_fn(|a| bounds.lo_nm[a] + t * (bounds.hi_nm[a] - bounds.lo_nm[a]));
            let request = sample_request(0, centre_nm, 3, index);
            let (mut a, mut b) = (empty.clone(), empty.clone());
            // Without rotation a strided copy; with it the packed gather.
            let info = cached.0.read(&mut cached.0.scratch(), &request, &mut a).unwrap();
            let plain = direct.0.read(&mut direct.0.scratch(), &request, &mut b).unwrap();
            assert_eq!(
                info.from_packs as usize,
                crate::loader::CLASSES.len(),
                "rotate {rotate}: {info:?}"
            );
            assert_eq!(
                (plain.from_packs, info.strided, info.gathered),
                (0, plain.strided, plain.gathered)
            );
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    crate::loader::same(x, y),
                    "pad {pad:?} threshold {threshold} sample {index}"
                );
            }
            let labels = &a[1];
            if t == 0.0 && !rotate {
                // Outside the crop the class channels hold the binarized pad value.
                let expected = match pad {
                    None => f32::NAN,
                    Some(p) => f32::from(u8::from(p > threshold)),
                };
                let voxels = labels.len() / crate::loader::CLASSES.len();
                let padded = labels[..voxels]
                    .iter()
                    .filter(|v| crate::loader::same(&[**v], &[expected]))
                    .count();
                assert!(padded > 0, "pad {pad:?} threshold {threshold}");
            }
            checked += labels.iter().filter(|v| **v == 1.0).count();
        }
    }
    assert!(checked > 0, "some class voxels were set");
}

/// The default codec (`auto`) compresses what lz4 shrinks by a tenth and leaves the rest
/// uncompressed: the synthetic raw (noise over smooth shapes) is stored as is, the packed classes
/// with blosc-lz4; both are read directly and give the direct batches.
#[test]
fn the_auto_codec_stores_raw_that_does_not_compress_as_is_and_packs_with_lz4() {
    let f = synth(SynthVariant::V2);
    let dir = f.dir.parent().unwrap().join("cache-auto");
    let direct = spec(&f.dir, None);
    let mut o = options(32);
    o.codec = CacheCodec::Auto;
    write(&direct, &dir, &o).unwrap();
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
    let codecs = |path: &str| {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(path).join("zarr.json")).unwrap()).unwrap();
        meta["codecs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    for copy in &manifest.arrays {
        assert_eq!(codecs(&copy.path), ["bytes"], "{}", copy.path);
    }
    assert!(!manifest.packs.is_empty());
    for pack in &manifest.packs {
        assert_eq!(codecs(&pack.path), ["bytes", "blosc"], "{}", pack.path);
    }
    assert_eq!(both(&spec(&f.dir, Some(&dir))), both(&direct));
}

/// A truncated chunk file of the cache fails the batch with an error that names the cached array,
/// the chunk and the sizes (nothing read past the file).
#[test]
fn a_truncated_cache_chunk_is_an_error_naming_the_file_and_the_fix() {
    let f = synth(SynthVariant::V2);
    let dir = f.dir.parent().unwrap().join("cache-truncated");
    let direct = spec(&f.dir, None);
    let mut o = options(8);
    o.codec = CacheCodec::None;
    write(&direct, &dir, &o).unwrap();
    let manifest = Manifest::read(&dir).unwrap();
    // Every chunk file of the raw copy loses its second half.
    let mut files = vec![dir.join(&manifest.arrays[0].path).join("c")];
    let mut truncated = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            truncated += 1;
        }
    }
    assert!(truncated > 0);
    let cached = spec(&f.dir, Some(&dir));
    let mut o = crate::loader::options(Split::Train);
    o.no_cache = true;
    let mut loader = cellmap_runtime::Loader::open(cached, o).unwrap();
    let err = loader.next_batch().expect("a batch").err().expect("the batch fails");
    let text = crate::common::error_chain(&err);
    assert!(
        text.contains(&manifest.arrays[0].path)
            && text.contains("could not be decoded")
            && text.contains("fewer bytes"),
        "{text}"
    );
}
