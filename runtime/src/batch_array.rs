//! A typed view of one batch array whose shape is known at compile time.
//!
//! Generated loader crates instantiate [`BatchArray`] with their spec's shapes, so indexing
//! compiles to constant strides.

use crate::dtype::BatchElem;

/// A `[B, C, Z, Y, X]` array of a batch, with `C, Z, Y, X` as const generics and elements `T`
/// (`f32`, [`half::f16`], [`half::bf16`] or `u8`, as the spec's `dtype`).
#[derive(Debug, Clone, Copy)]
pub struct BatchArray<'a, const C: usize, const Z: usize, const Y: usize, const X: usize, T: BatchElem = f32> {
    data: &'a [T],
}

impl<'a, const C: usize, const Z: usize, const Y: usize, const X: usize, T: BatchElem> BatchArray<'a, C, Z, Y, X, T> {
    /// Elements of one channel of one sample.
    pub const CHANNEL_LEN: usize = Z * Y * X;
    /// Elements of one sample.
    pub const SAMPLE_LEN: usize = C * Z * Y * X;

    /// Wrap a batch array.
    ///
    /// # Panics
    /// If `data.len()` is not a whole number of samples of this shape (a generator bug).
    pub fn new(data: &'a [T]) -> Self {
        assert!(
            Self::SAMPLE_LEN > 0 && data.len().is_multiple_of(Self::SAMPLE_LEN),
            "a batch array of {} values is not a whole number of [{C}, {Z}, {Y}, {X}] samples",
            data.len()
        );
        BatchArray { data }
    }

    /// Samples in the batch.
    pub fn batch_size(&self) -> usize {
        self.data.len() / Self::SAMPLE_LEN
    }

    /// The whole array, row-major.
    pub fn as_slice(&self) -> &'a [T] {
        self.data
    }

    /// The tensor shape `[B, C, Z, Y, X]`.
    pub fn shape(&self) -> [usize; 5] {
        [self.batch_size(), C, Z, Y, X]
    }

    /// Sample `b`: `C · Z · Y · X` values.
    pub fn sample(&self, b: usize) -> &'a [T] {
        &self.data[b * Self::SAMPLE_LEN..(b + 1) * Self::SAMPLE_LEN]
    }

    /// Channel `c` of sample `b`: `Z · Y · X` values.
    pub fn channel(&self, b: usize, c: usize) -> &'a [T] {
        let start = b * Self::SAMPLE_LEN + c * Self::CHANNEL_LEN;
        &self.data[start..start + Self::CHANNEL_LEN]
    }

    /// One voxel.
    pub fn get(&self, b: usize, c: usize, z: usize, y: usize, x: usize) -> T {
        self.data[b * Self::SAMPLE_LEN + c * Self::CHANNEL_LEN + (z * Y + y) * X + x]
    }
}

/// A `[B, C, Y, X]` array of a 2D spec's batch (its z is 1), with `C, Y, X` as const generics and
/// elements `T` (as [`BatchArray`]): the same memory as a [`BatchArray`] of `Z = 1`, one axis fewer.
#[derive(Debug, Clone, Copy)]
pub struct BatchArray2d<'a, const C: usize, const Y: usize, const X: usize, T: BatchElem = f32> {
    data: &'a [T],
}

impl<'a, const C: usize, const Y: usize, const X: usize, T: BatchElem> BatchArray2d<'a, C, Y, X, T> {
    /// Elements of one channel of one sample.
    pub const CHANNEL_LEN: usize = Y * X;
    /// Elements of one sample.
    pub const SAMPLE_LEN: usize = C * Y * X;

    /// Wrap a batch array.
    ///
    /// # Panics
    /// If `data.len()` is not a whole number of samples of this shape (a generator bug).
    pub fn new(data: &'a [T]) -> Self {
        assert!(
            Self::SAMPLE_LEN > 0 && data.len().is_multiple_of(Self::SAMPLE_LEN),
            "a batch array of {} values is not a whole number of [{C}, {Y}, {X}] samples",
            data.len()
        );
        BatchArray2d { data }
    }

    /// Samples in the batch.
    pub fn batch_size(&self) -> usize {
        self.data.len() / Self::SAMPLE_LEN
    }

    /// The whole array, row-major.
    pub fn as_slice(&self) -> &'a [T] {
        self.data
    }

    /// The tensor shape `[B, C, Y, X]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.batch_size(), C, Y, X]
    }

    /// Sample `b`: `C · Y · X` values.
    pub fn sample(&self, b: usize) -> &'a [T] {
        &self.data[b * Self::SAMPLE_LEN..(b + 1) * Self::SAMPLE_LEN]
    }

    /// Channel `c` of sample `b`: `Y · X` values.
    pub fn channel(&self, b: usize, c: usize) -> &'a [T] {
        let start = b * Self::SAMPLE_LEN + c * Self::CHANNEL_LEN;
        &self.data[start..start + Self::CHANNEL_LEN]
    }

    /// One pixel: row `y`, column `x`.
    pub fn get(&self, b: usize, c: usize, y: usize, x: usize) -> T {
        self.data[b * Self::SAMPLE_LEN + c * Self::CHANNEL_LEN + y * X + x]
    }
}
