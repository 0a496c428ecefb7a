//! Issue #16: `Plan::class_weights` is cellmap-data's `background / max(foreground, 1)` per class
//! and split, summed over the split's datasets, with voxels counted here directly with zarrs.

use std::path::Path;
use std::sync::Arc;

use cellmap_runtime::{Plan, PlanOptions, plan, synth::SynthVariant};
use cellmap_schema::Split;
use zarrs::array::Array;
use zarrs::filesystem::FilesystemStore;

use crate::loader::{CLASSES, direct, spec, spec_with, synth};

/// `(foreground, total)` voxels of `group/s0`, read directly.
fn count(group: &Path) -> (u64, u64) {
    let store = Arc::new(FilesystemStore::new(group).unwrap());
    let shape = Array::open(store, "/s0").unwrap().shape().to_vec();
    let shape = [shape[0] as usize, shape[1] as usize, shape[2] as usize];
    let values = direct(group, [0; 3], shape);
    (values.iter().filter(|v| **v > 0.0).count() as u64, values.len() as u64)
}

#[test]
fn issue16_class_weights_equal_direct_counts_summed_per_split() {
    let f = synth(SynthVariant::V2);
    // A second training dataset (crop2: mito, er, nuc) so that train sums two crops and `pm`
    // comes from crop1 alone; validation has crop2 only, where `pm` is not annotated.
    let s = spec_with(&f.dir, |d| {
        let mut second = d["data"]["datasets"][1].clone();
        second["split"] = serde_json::json!("train");
        d["data"]["datasets"].as_array_mut().unwrap().insert(1, second);
    });
    let p: Plan = plan(&s, PlanOptions { count_classes: true }).unwrap().plan;

    let crop = |c: &str, class: &str| count(&f.dir.join(format!("recon-1/labels/groundtruth/{c}/{class}")));
    assert_eq!(p.class_weights.len(), 2, "{:?}", p.class_weights);
    let (train, validate) = (&p.class_weights[0], &p.class_weights[1]);
    assert_eq!((train.split, validate.split), (Split::Train, Split::Validate));

    for (i, class) in CLASSES.iter().enumerate() {
        let (mut fg, mut total) = crop("crop1", class);
        if *class != "pm" {
            let (f2, t2) = crop("crop2", class);
            fg += f2;
            total += t2;
        }
        let w = &train.classes[i];
        assert_eq!(w.class, *class);
        assert_eq!((w.foreground, w.background), (fg, total - fg), "train {class}");
        assert!(fg > 0);
        assert_eq!(w.weight, (total - fg) as f64 / fg as f64, "train {class}");
    }
    assert!(train.unannotated.is_empty());

    for (i, class) in CLASSES.iter().enumerate() {
        let w = &validate.classes[i];
        if *class == "pm" {
            assert_eq!((w.foreground, w.background, w.weight), (0, 0, 1.0));
            continue;
        }
        let (fg, total) = crop("crop2", class);
        assert_eq!((w.foreground, w.background), (fg, total - fg), "validate {class}");
        assert_eq!(w.weight, (total - fg) as f64 / fg as f64, "validate {class}");
    }
    assert_eq!(validate.unannotated, vec!["pm".to_owned()]);

    // In the JSON of `plan --json`, and read back.
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["class_weights"][1]["unannotated"], serde_json::json!(["pm"]));
    assert_eq!(json["class_weights"][0]["classes"][0]["class"], "mito");
    let back: Plan = serde_json::from_value(json).unwrap();
    assert_eq!(back, p);
}

#[test]
fn issue16_without_counts_there_are_no_class_weights_and_older_plans_still_read() {
    let f = synth(SynthVariant::V2);
    let p = plan(&spec(&f.dir), PlanOptions::default()).unwrap().plan;
    assert!(p.class_weights.is_empty());
    // A plan written before `class_weights` existed (a cached plan, a `plan --json` file).
    let mut json = serde_json::to_value(&p).unwrap();
    json.as_object_mut().unwrap().remove("class_weights");
    let back: Plan = serde_json::from_value(json).unwrap();
    assert_eq!(back, p);
}

#[test]
fn issue16_a_class_with_no_foreground_weighs_its_background() {
    // cellmap-data's max(foreground, 1): an annotated, empty class weighs all its background.
    let f = synth(SynthVariant::V2);
    let s = spec_with(&f.dir, |d| d["data"]["datasets"].as_array_mut().unwrap().truncate(1));
    let er = f.dir.join("recon-1/labels/groundtruth/crop1/er/s0/.zattrs");
    let mut attrs: serde_json::Value = std::fs::read_to_string(&er)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::json!({}));
    attrs["class_counts"] = serde_json::json!({ "er": 0 });
    std::fs::write(&er, attrs.to_string()).unwrap();
    let p = plan(&s, PlanOptions { count_classes: true }).unwrap().plan;
    let w = &p.class_weights[0].classes[1];
    assert_eq!((w.class.as_str(), w.foreground, w.background), ("er", 0, 64 * 64 * 64));
    assert_eq!(w.weight, (64 * 64 * 64) as f64);
    assert!(p.class_weights[0].unannotated.is_empty());
}
