//! `NativePredictor`: the prediction writer of a spec's `predict` section, for a PyTorch
//! inference loop.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use cellmap_runtime::{DistInfo, predict::PredictPlan, predict::TileLoader, predict::Writer};
use cellmap_schema::Spec;

use crate::dlpack::owned_capsule;
use crate::errors::cellmap_error;
use crate::loader::dist;

/// Tiles in, OME-NGFF zarr out; tiles written before a restart are skipped.
#[pyclass(module = "cellmap_compile._native")]
pub(crate) struct NativePredictor {
    plan: Arc<PredictPlan>,
    writer: Writer,
    /// Reads any tile's inputs (opened over every tile; `read_tile` takes ids).
    tiles: Mutex<TileLoader>,
    dist: DistInfo,
    /// A 2D spec: inputs are `[B, 1, Y, X]`, as its training batches.
    two_d: bool,
}

#[pymethods]
impl NativePredictor {
    /// Plan the prediction and open (or resume) its output arrays.
    #[new]
    #[pyo3(signature = (text, source, rank = None, world_size = None, batch_size = 1))]
    fn new(
        py: Python<'_>,
        text: &str,
        source: &str,
        rank: Option<usize>,
        world_size: Option<usize>,
        batch_size: usize,
    ) -> PyResult<Self> {
        let spec: Spec = crate::spec::parse(py, text, source)?.spec;
        let dist = dist(rank, world_size)?;
        let (plan, writer, tiles) = py
            .detach(|| -> Result<_, String> {
                let plan = Arc::new(PredictPlan::new(&spec).map_err(|e| e.to_string())?);
                let writer = Writer::create(Arc::clone(&plan)).map_err(|e| e.to_string())?;
                let tiles =
                    TileLoader::open(&spec, Arc::clone(&plan), Vec::new(), batch_size).map_err(|e| e.to_string())?;
                Ok((plan, writer, tiles))
            })
            .map_err(cellmap_error)?;
        Ok(NativePredictor {
            plan,
            writer,
            tiles: Mutex::new(tiles),
            dist,
            two_d: spec.is_2d(),
        })
    }

    /// What a person should know about the plan (e.g. a region partly outside the data).
    fn warnings(&self) -> Vec<String> {
        self.plan.warnings.clone()
    }

    /// The prediction plan as JSON (`predict-plan --json`).
    fn plan_json(&self) -> PyResult<String> {
        serde_json::to_string(&*self.plan).map_err(cellmap_error)
    }

    /// Tile ids this rank still has to write.
    fn pending(&self) -> Vec<usize> {
        self.writer.pending(self.dist)
    }

    /// Tiles written so far, by this run and earlier ones (every rank's).
    fn tiles_completed(&self) -> usize {
        let everyone = DistInfo {
            rank: 0,
            world_size: 1,
            local_rank: 0,
        };
        self.plan.tile_count() - self.writer.pending(everyone).len()
    }

    /// Where a tile lies.
    fn tile<'py>(&self, py: Python<'py>, tile: usize) -> PyResult<Bound<'py, PyDict>> {
        let t = self.plan.tile(tile).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let dict = PyDict::new(py);
        dict.set_item("id", t.id)?;
        dict.set_item("unit", t.unit)?;
        dict.set_item("index", t.index)?;
        dict.set_item("start_vox", t.start_vox)?;
        dict.set_item("shape_vox", t.shape_vox)?;
        dict.set_item("centre_nm", t.centre_nm)?;
        Ok(dict)
    }

    /// The inputs of `tiles`: one DLPack capsule per input, float32 `[B, 1, Z, Y, X]` (`[B, 1, Y, X]`
    /// for a 2D spec, as its training batches).
    fn read_tiles(&self, py: Python<'_>, tiles: Vec<usize>) -> PyResult<Vec<Py<PyAny>>> {
        for &t in &tiles {
            if t >= self.plan.tile_count() {
                return Err(PyValueError::new_err(format!(
                    "tile {t} does not exist (the plan has {} tiles)",
                    self.plan.tile_count()
                )));
            }
        }
        let inputs = &self.plan.inputs;
        let lens: Vec<usize> = inputs.iter().map(|i| i.window_vox.iter().product()).collect();
        let buffers = py
            .detach(|| -> Result<Vec<Vec<f32>>, String> {
                let mut buffers: Vec<Vec<f32>> = lens.iter().map(|n| vec![0f32; n * tiles.len()]).collect();
                let mut loader = self
                    .tiles
                    .lock()
                    .map_err(|_| "the tile reader panicked earlier".to_owned())?;
                for (b, &tile) in tiles.iter().enumerate() {
                    let mut dest: Vec<&mut [f32]> = buffers
                        .iter_mut()
                        .zip(&lens)
                        .map(|(buf, &n)| &mut buf[b * n..(b + 1) * n])
                        .collect();
                    loader.read_tile(tile, &mut dest).map_err(|e| e.to_string())?;
                }
                Ok(buffers)
            })
            .map_err(cellmap_error)?;
        inputs
            .iter()
            .zip(buffers)
            .map(|(input, values)| {
                let [z, y, x] = input.window_vox;
                if self.two_d && z == 1 {
                    owned_capsule(py, values, &[tiles.len(), 1, y, x])
                } else {
                    owned_capsule(py, values, &[tiles.len(), 1, z, y, x])
                }
            })
            .collect()
    }

    /// Write the model's outputs for `tiles`: float32 `[B, model_channels, Z, Y, X]` bytes
    /// (native byte order, C order).
    fn write_tiles(&self, py: Python<'_>, tiles: Vec<usize>, outputs: &[u8]) -> PyResult<()> {
        if !outputs.len().is_multiple_of(4) {
            return Err(PyValueError::new_err(format!(
                "outputs are float32 values: {} bytes is not a multiple of 4",
                outputs.len()
            )));
        }
        let values: Vec<f32> = outputs
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        py.detach(|| self.writer.write_batch(&tiles, &values))
            .map_err(cellmap_error)
    }
}
