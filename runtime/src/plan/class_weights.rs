//! cellmap-data's class weights, from the plan's class voxel counts.

use serde::{Deserialize, Serialize};

use cellmap_schema::Split;

use super::{ClassPlan, DatasetPlan};

/// The class weights of one split: cellmap-data's `class_weights`, for a loss that weighs each
/// class's foreground against its background.
///
/// For each class `c`, `foreground_c` and `background_c = total_c − foreground_c` are summed over
/// the split's planned datasets that annotate `c` (their [`DatasetPlan::class_counts`], at the
/// first target array's voxel size), and `weight_c = background_c / max(foreground_c, 1)`. A class
/// that no dataset of the split annotates gets weight 1 and is listed in
/// [`SplitClassWeights::unannotated`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitClassWeights {
    /// The split.
    pub split: Split,
    /// One entry per class of the spec, in the spec's class order.
    pub classes: Vec<ClassWeight>,
    /// Classes annotated by no dataset of the split (their weight is 1), in class order.
    pub unannotated: Vec<String>,
}

/// The weight of one class in one split (see [`SplitClassWeights`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassWeight {
    /// The class.
    pub class: String,
    /// Foreground voxels, summed over the split's datasets that annotate the class.
    pub foreground: u64,
    /// Background voxels (total − foreground), summed likewise.
    pub background: u64,
    /// `background / max(foreground, 1)`; 1 when no dataset of the split annotates the class.
    pub weight: f64,
}

/// The class weights of every split that has planned datasets with counts (train, then
/// validate); empty when no dataset was counted.
pub(super) fn class_weights(datasets: &[DatasetPlan], classes: &[String]) -> Vec<SplitClassWeights> {
    let mut out = Vec::new();
    for split in [Split::Train, Split::Validate] {
        let counted: Vec<&DatasetPlan> = datasets
            .iter()
            .filter(|d| d.split == split && d.class_counts.is_some())
            .collect();
        if counted.is_empty() {
            continue;
        }
        let mut weights = Vec::with_capacity(classes.len());
        let mut unannotated = Vec::new();
        for (c, class) in classes.iter().enumerate() {
            let (mut foreground, mut background, mut annotated) = (0u64, 0u64, false);
            for d in &counted {
                let is_annotated = matches!(d.targets.first().and_then(|t| t.get(c)), Some(ClassPlan::Annotated(_)));
                let count = d.class_counts.as_ref().and_then(|counts| counts.get(c));
                if let (true, Some(count)) = (is_annotated, count) {
                    annotated = true;
                    foreground = foreground.saturating_add(count.foreground);
                    background = background.saturating_add(count.total.saturating_sub(count.foreground));
                }
            }
            let weight = if annotated {
                background as f64 / foreground.max(1) as f64
            } else {
                unannotated.push(class.clone());
                1.0
            };
            weights.push(ClassWeight {
                class: class.clone(),
                foreground,
                background,
                weight,
            });
        }
        out.push(SplitClassWeights {
            split,
            classes: weights,
            unannotated,
        });
    }
    out
}
