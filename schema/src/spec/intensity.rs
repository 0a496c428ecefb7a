//! Intensity per dataset: a dataset's own `normalize` in its input transforms.

use std::borrow::Cow;

use super::{Augment, DatasetSpec, Split, ValueTransform};

impl ValueTransform {
    /// True for `normalize` in either form ([`ValueTransform::Normalize`],
    /// [`ValueTransform::NormalizeDtype`]).
    pub fn is_normalize(&self) -> bool {
        matches!(
            self,
            ValueTransform::Normalize { .. } | ValueTransform::NormalizeDtype { .. }
        )
    }
}

impl Augment {
    /// The value transforms on every input of a sample of `dataset`: those of its split
    /// ([`Augment::inputs_for`]) with the dataset's own `normalize` (if any) in place of each
    /// `normalize` entry, or first when the list has none. A [`ValueTransform::NormalizeDtype`] in the
    /// result is resolved by the runtime against the dtype of the raw level read.
    ///
    /// ```
    /// use cellmap_schema::{Split, ValueTransform};
    /// let spec = cellmap_schema::parse(
    ///     "version: 1\nname: demo\narrays: {inputs: {raw: {shape: [8, 8, 8], scale: [8, 8, 8]}}}\n\
    ///      data: {datasets: [{split: train, raw: a.zarr}, {split: train, raw: b.zarr, normalize: dtype}]}\n\
    ///      augment: {inputs: [{normalize: {scale: 255}}, {gaussian_noise: {std: 0.1}}]}\n",
    ///     std::path::Path::new("spec.yaml"),
    /// )
    /// .unwrap()
    /// .spec;
    /// let [a, b] = [0, 1].map(|i| spec.augment().inputs_of(&spec.datasets()[i]).into_owned());
    /// assert_eq!(a[0], ValueTransform::Normalize { shift: 0.0, scale: 255.0 });
    /// assert_eq!(b[0], ValueTransform::NormalizeDtype { shift: None });
    /// assert_eq!(b.len(), 2);
    /// ```
    pub fn inputs_of(&self, dataset: &DatasetSpec) -> Cow<'_, [ValueTransform]> {
        self.inputs_with(dataset.split, dataset.normalize.as_ref())
    }

    /// The value transforms on every input of a sample of `split` with `normalize` (a dataset's own, if
    /// any) in place of each `normalize` entry, or first when the list has none: what
    /// [`Augment::inputs_of`] gives for a dataset of that split and normalization.
    pub fn inputs_with(&self, split: Split, normalize: Option<&ValueTransform>) -> Cow<'_, [ValueTransform]> {
        let list = self.inputs_for(split);
        let Some(own) = normalize else {
            return Cow::Borrowed(list);
        };
        if list.iter().any(ValueTransform::is_normalize) {
            let replaced = list
                .iter()
                .map(|t| if t.is_normalize() { own.clone() } else { t.clone() })
                .collect();
            Cow::Owned(replaced)
        } else {
            Cow::Owned(std::iter::once(own.clone()).chain(list.iter().cloned()).collect())
        }
    }
}
