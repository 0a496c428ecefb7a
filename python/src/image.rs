//! `NativeImage`: one multiscale array read at a requested voxel size (cellmap-data's
//! `CellMapImage`).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use cellmap_runtime::{
    sample::read_level_crop, store::ChunkCache, store::Level, store::Multiscale, store::choose_level,
};
use cellmap_schema::{ArraySpec, Interpolation, OutputDtype};

use crate::dlpack::owned_capsule;
use crate::errors::cellmap_error;

/// Chunk cache of one image (decoded chunks reused between reads of nearby centres).
const IMAGE_CACHE_BYTES: u64 = 256 << 20;

/// One OME-NGFF multiscale array at a requested voxel size and crop shape.
#[pyclass(module = "cellmap_compile._native")]
pub(crate) struct NativeImage {
    level: Level,
    index: usize,
    array: ArraySpec,
    fill: f32,
    cache: ChunkCache,
}

#[pymethods]
impl NativeImage {
    /// Open the group at `path` and choose the coarsest level not coarser than `scale` on any
    /// axis (the finest when every level is coarser).
    #[new]
    #[pyo3(signature = (path, scale, shape, interpolation = "nearest", pad_value = f64::NAN))]
    fn new(
        py: Python<'_>,
        path: &str,
        scale: [f64; 3],
        shape: [usize; 3],
        interpolation: &str,
        pad_value: f64,
    ) -> PyResult<Self> {
        if scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(PyValueError::new_err(format!(
                "the voxel size must be three positive numbers (nm, z y x), got {scale:?}"
            )));
        }
        if shape.contains(&0) {
            return Err(PyValueError::new_err(format!(
                "the crop shape must be three positive voxel counts (z y x), got {shape:?}"
            )));
        }
        let interpolation = match interpolation {
            "nearest" => Interpolation::Nearest,
            "linear" | "trilinear" | "bilinear" => Interpolation::Linear,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown interpolation `{other}` (expected `nearest` or `linear`)"
                )));
            }
        };
        let ms = py.detach(|| Multiscale::open(path)).map_err(cellmap_error)?;
        let choice = choose_level(&ms.levels, scale);
        let level = ms.levels[choice.index].clone();
        Ok(NativeImage {
            level,
            index: choice.index,
            array: ArraySpec {
                name: path.to_owned(),
                shape_vox: shape,
                voxel_size_nm: scale,
                interpolation,
                dtype: OutputDtype::Float32,
            },
            fill: pad_value as f32,
            cache: ChunkCache::new(IMAGE_CACHE_BYTES),
        })
    }

    /// The crop centred at `centre_nm` (nm, z y x) as a DLPack capsule of a float32 `[Z, Y, X]`
    /// tensor; the pad value outside the data.
    fn read(&self, py: Python<'_>, centre_nm: [f64; 3]) -> PyResult<Py<PyAny>> {
        if centre_nm.iter().any(|c| !c.is_finite()) {
            return Err(PyValueError::new_err(format!(
                "the centre must be three finite numbers (nm, z y x), got {centre_nm:?}"
            )));
        }
        let mut out = vec![0f32; self.array.voxels()];
        py.detach(|| {
            read_level_crop(
                &self.level,
                Some(&self.cache),
                &self.array,
                centre_nm,
                self.fill,
                &mut out,
            )
        })
        .map_err(cellmap_error)?;
        owned_capsule(py, out, &self.array.shape_vox)
    }

    /// Index of the level read.
    fn level(&self) -> usize {
        self.index
    }

    /// Voxel size of the level read (nm, z y x).
    fn level_scale(&self) -> [f64; 3] {
        self.level.scale_nm
    }

    /// Translation of the level read: the centre of its voxel 0 (nm, z y x).
    fn level_translation(&self) -> [f64; 3] {
        self.level.translation_nm
    }

    /// Shape of the level read (voxels, z y x).
    fn level_shape(&self) -> [u64; 3] {
        self.level.shape_vox
    }

    /// `(lo, hi)`: the level's extent in nm, voxel edges.
    fn bounds_nm(&self) -> ([f64; 3], [f64; 3]) {
        let b = self.level.bounds_nm();
        (b.lo_nm, b.hi_nm)
    }

    /// The stored element type (`uint8`, `float32`, ...).
    fn dtype(&self) -> &'static str {
        self.level.dtype.name()
    }
}
