//! Augmentation: spatial transform draws, the sample grid, elastic fields and value transforms.
//! Pure compute over slices; no I/O. The gather hot loops that apply a grid live in
//! [`crate::kernels`].
//!
//! A sample's spatial transform is drawn once ([`draw_spatial`]) and applied to every array of
//! the sample: each array builds its [`SampleGrid`] from the shared matrix, asks it for the
//! [`SampleGrid::source_window`] to read, then either copies with strides
//! ([`SampleGrid::as_strided`] + [`copy_strided`](crate::kernels::copy_strided), for mirror/transpose only) or interpolates
//! ([`gather`](crate::kernels::gather), [`gather_labels_packed`](crate::kernels::gather_labels_packed)).
//!
//! ```
//! use cellmap_runtime::{kernels::GatherParams, kernels::GatherSource, augment::SampleGrid, augment::SpatialDraw, kernels::gather};
//! use cellmap_schema::Interpolation;
//! let draw = SpatialDraw::identity();
//! let grid = SampleGrid::new([1.5; 3], [2, 2, 2], [1.0; 3], &draw.matrix, [0.0; 3], [1.0; 3]);
//! let (start, shape) = grid.source_window(Interpolation::Nearest, [0.0; 3]);
//! assert_eq!((start, shape), ([1, 1, 1], [2, 2, 2]));
//! let src: Vec<u8> = (0..8).collect();
//! let mut out = [0.0f32; 8];
//! let source = GatherSource { src: &src, start, shape, level_shape: [4, 4, 4] };
//! let params = GatherParams { grid: &grid, elastic: None, interpolation: Interpolation::Nearest, fill: 0.0 };
//! gather(&source, &params, &mut out).unwrap();
//! assert_eq!(out, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
//! ```

pub(crate) mod elastic;
pub(crate) mod grid;
pub(crate) mod spatial;
pub(crate) mod value;

pub use elastic::{ElasticDraw, ElasticField};
pub use grid::{SampleGrid, StridedMap};
pub use spatial::{SPATIAL_RNG_DRAWS, SpatialDraw, draw_spatial, draw_spatial_into};
pub use value::{ValueError, ValueScratch, apply_value_transforms};
