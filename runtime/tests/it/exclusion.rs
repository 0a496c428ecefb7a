//! Issue #16: the reason a dataset is excluded names the axis that fails, the array, and the
//! extents needed and available.

use cellmap_runtime::{PlanOptions, plan, synth::SynthVariant};

use crate::loader::{spec_with, synth};

/// The exclusion reason of the training crop (64³ voxels at 8 nm = 512 nm) for a target array of `shape`.
fn train_reason(shape: [usize; 3]) -> String {
    let f = synth(SynthVariant::V2);
    let s = spec_with(&f.dir, |d| {
        d["data"]["datasets"].as_array_mut().unwrap().truncate(1);
        d["arrays"]["targets"]["labels"]["shape"] = serde_json::json!(shape);
    });
    let err = plan(&s, PlanOptions::default()).err().unwrap().to_string();
    assert!(err.contains("no train dataset can produce a sample"), "{err}");
    err
}

fn assert_names_only(err: &str, axis: &str, voxels: usize) {
    let needed = voxels as f64 * 8.0;
    let want = format!(
        "along {axis} the {voxels}-voxel crop of `labels` at 8 nm ({needed:.1} nm needed) does not fit in the data (512.0 nm available in `"
    );
    assert!(err.contains(&want), "expected `{want}` in:\n{err}");
    assert!(
        err.contains("level `s0`)") && err.contains("enable `sampling.pad`"),
        "{err}"
    );
    for other in ["z", "y", "x"].into_iter().filter(|a| *a != axis) {
        assert!(!err.contains(&format!("along {other} ")), "{other} fits:\n{err}");
    }
}

#[test]
fn issue16_exclusion_names_z_when_z_does_not_fit() {
    assert_names_only(&train_reason([80, 12, 12]), "z", 80);
}

#[test]
fn issue16_exclusion_names_y_when_y_does_not_fit() {
    // The shape of the issue: one voxel in z, too many in y. It used to blame z.
    assert_names_only(&train_reason([1, 80, 12]), "y", 80);
}

#[test]
fn issue16_exclusion_names_x_when_x_does_not_fit() {
    assert_names_only(&train_reason([1, 12, 72]), "x", 72);
}

#[test]
fn issue16_exclusion_names_every_failing_axis() {
    let err = train_reason([12, 80, 96]);
    assert!(!err.contains("along z "), "{err}");
    assert!(
        err.contains("along y the 80-voxel crop of `labels` at 8 nm (640.0 nm needed)"),
        "{err}"
    );
    assert!(
        err.contains("along x the 96-voxel crop of `labels` at 8 nm (768.0 nm needed)"),
        "{err}"
    );
}

#[test]
fn issue16_exclusion_names_the_input_array_when_raw_is_too_small() {
    // Raw is 96³ voxels at 8 nm (768 nm); the labels' 12³ crop fits.
    let f = synth(SynthVariant::V2);
    let s = spec_with(&f.dir, |d| {
        d["data"]["datasets"].as_array_mut().unwrap().truncate(1);
        d["arrays"]["inputs"]["raw"]["shape"] = serde_json::json!([1, 12, 112]);
    });
    let err = plan(&s, PlanOptions::default()).err().unwrap().to_string();
    assert!(
        err.contains(
            "along x the 112-voxel crop of `raw` at 8 nm (896.0 nm needed) does not fit in the data (768.0 nm available in `"
        ) && err.contains("fibsem-uint8` level `s0`)"),
        "{err}"
    );
    assert!(!err.contains("along z ") && !err.contains("along y "), "{err}");
}
