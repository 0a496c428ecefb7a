//! Tiled inference: the plan of output tiles, the reader of their inputs (with context) and the
//! [`Writer`] of model outputs into OME-NGFF zarr.
//!
//! ```text
//! Spec.predict ──PredictPlan::new()──► units (one per raw volume or validation crop), each an
//!                                      output grid cut into tiles of `tile_vox`
//!   ──TileLoader──► inputs of a batch of tiles: [B, 1, Z, Y, X] per input, the tile grown by the
//!                   context on each side (pad value outside the raw data)
//!   ──model──► [B, C, Z, Y, X] f32 for the model classes
//!   ──Writer::write_batch()──► one chunk per tile and class (chunk shape = tile shape), then a
//!                              completion marker; completed tiles are skipped after a restart
//! ```
//!
//! # Geometry
//!
//! A unit's region `[lo, hi)` (nm) is covered by an output array of `n = ceil((hi − lo)/s)` voxels of
//! size `s` whose voxel 0 is centred at `lo + s/2` (the translation written to the metadata, in the
//! voxel-centre convention [`crate::store::Multiscale`] reads). Tile `k` along an axis covers output voxels
//! `[k·T, min((k+1)·T, n))`: tiles never overlap and cover the array exactly; the last tile is
//! clipped when written. The inputs of a tile are the crops centred on the *unclipped* tile, of
//! `T·s/r + 2·context` voxels of each input (voxel size `r`), so a network whose valid output
//! shrinks the input by the context on each side yields exactly the tile.
//!
//! ```no_run
//! use cellmap_runtime::{DistInfo, predict::PredictPlan, predict::TileLoader, predict::Writer};
//! let spec = cellmap_schema::load(std::path::Path::new("spec.yaml")).expect("valid spec").spec;
//! let plan = std::sync::Arc::new(PredictPlan::new(&spec)?);
//! let writer = Writer::create(plan.clone())?;
//! let tiles = writer.pending(DistInfo::from_env().expect("rank"));
//! let mut loader = TileLoader::open(&spec, plan.clone(), tiles, 4)?;
//! while let Some(batch) = loader.next_batch() {
//!     let batch = batch?;
//!     let outputs = vec![0f32; batch.tiles.len() * plan.model_channels * plan.tile_voxels()];
//!     writer.write_batch(&batch.tiles, &outputs)?;
//! }
//! # Ok::<(), cellmap_runtime::predict::PredictError>(())
//! ```

mod identity;
mod input;
mod output;
mod writer;

use std::path::Path;

use serde::Serialize;

use cellmap_schema::{Predict, PredictDtype, PredictRegion, Spec, Split};

use crate::geometry::Box3;
use crate::sources::{ClassSource, DatasetError, DatasetSources};
use crate::store::{Multiscale, OpenError};

pub use identity::{IdentityModel, PredictRun, run_identity, run_model};
pub use input::{TileBatch, TileLoader};
pub use writer::{WriteHook, Writer};

/// Relative tolerance when converting a region to whole voxels.
const REL_TOL: f64 = 1e-6;

/// Why a prediction could not be planned, read or written. Every variant names the path involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PredictError {
    /// The spec has no `predict` section.
    #[error("the spec has no `predict` section")]
    NoPredictSection,
    /// There is nothing to predict on.
    #[error("`predict` names no raw volume or validation crop to predict on")]
    NoUnits,
    /// A raw group could not be opened.
    #[error("raw `{raw}`: {source}")]
    Open {
        /// The raw location.
        raw: String,
        /// The cause.
        #[source]
        source: Box<OpenError>,
    },
    /// A validation dataset could not be opened.
    #[error(transparent)]
    Dataset(#[from] Box<DatasetError>),
    /// A validation crop annotates no class, so it has no box.
    #[error("validation dataset #{index} (`{raw}`) annotates no class: it has no labelled box to predict")]
    NoCropBox {
        /// Its index within the validation split.
        index: usize,
        /// Its raw location.
        raw: String,
    },
    /// The region has no volume.
    #[error("region {lo_nm:?}..{hi_nm:?} nm of `{raw}` is empty")]
    EmptyRegion {
        /// The raw location.
        raw: String,
        /// Lower corner.
        lo_nm: [f64; 3],
        /// Upper corner.
        hi_nm: [f64; 3],
    },
    /// The region does not meet the raw data: every input voxel would be padding.
    #[error(
        "region {region_nm} nm does not meet the raw data `{raw}` at {data_nm} nm: is the region in voxels rather \
         than nm, or shifted?{hint}"
    )]
    RegionOutsideData {
        /// The raw location.
        raw: String,
        /// The region (nm), as `[z0, y0, x0]..[z1, y1, x1]`.
        region_nm: String,
        /// The box the raw data covers (nm; its finest level), as `[z0, y0, x0]..[z1, y1, x1]`.
        data_nm: String,
        /// More on the likely mistake (empty, or a sentence starting with a space).
        hint: String,
    },
    /// Two outputs resolve to the same group.
    #[error("two outputs resolve to `{path}`; add `{{dataset}}` (and `{{class}}`) to `predict.output`")]
    OutputCollision {
        /// The shared group path.
        path: String,
    },
    /// The output is not a local path.
    #[error("output `{path}` is not a local path; predictions are written to the filesystem")]
    NotLocal {
        /// The output path.
        path: String,
    },
    /// An existing output has other metadata than this run would write.
    #[error(
        "`{path}` exists with different metadata (an earlier run with other settings?); remove it or change `predict.output`"
    )]
    Incompatible {
        /// The metadata file.
        path: String,
    },
    /// A filesystem operation failed.
    #[error("`{path}`: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// zarrs failed to open or write an output array.
    #[error("`{path}`: {message}")]
    Zarr {
        /// The array (and chunk) involved.
        path: String,
        /// The zarrs error.
        message: String,
    },
    /// Reading the inputs of a tile failed.
    #[error("tile {tile} of `{raw}`, input `{input}`: {message}")]
    Read {
        /// Tile id.
        tile: usize,
        /// Raw location.
        raw: String,
        /// Input array name.
        input: String,
        /// The cause (names the chunk for chunk failures).
        message: String,
    },
    /// A tile id is out of range.
    #[error("tile id {tile} is out of range (the plan has {tiles} tiles)")]
    UnknownTile {
        /// The id.
        tile: usize,
        /// Number of tiles.
        tiles: usize,
    },
    /// A batch of outputs has the wrong length.
    #[error("outputs of {tiles} tiles need {expected} values ([B, {channels}, Z, Y, X] f32), got {got}")]
    OutputLength {
        /// Tiles in the batch.
        tiles: usize,
        /// Model channels.
        channels: usize,
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// The identity model cannot produce this prediction.
    #[error("identity model: {message}")]
    Identity {
        /// Why.
        message: String,
    },
    /// The write hook stopped the run (used to simulate a killed writer).
    #[error("stopped by the write hook after {tiles} tiles")]
    Stopped {
        /// Tiles written before stopping.
        tiles: u64,
    },
}

/// One input array as the predictor reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictInput {
    /// Index into the spec's inputs.
    pub spec_index: usize,
    /// The array name.
    pub name: String,
    /// Voxel size (nm).
    pub voxel_size_nm: [f64; 3],
    /// The window read per tile: `tile · s / r + 2 · context` voxels.
    pub window_vox: [usize; 3],
}

/// One output volume: a raw volume (or validation crop) with its output grid and groups.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictUnit {
    /// Value of `{dataset}`.
    pub name: String,
    /// The raw multiscale group read.
    pub raw: String,
    /// The region (nm) as requested (for `raw`: the finest level's extent; for `validation`: the crop's
    /// labelled box). The output grid starts at its lower corner; when the region is not a whole
    /// number of output voxels, the last voxel reaches less than one voxel past its upper corner.
    pub region_nm: Box3,
    /// World centre (nm) of output voxel 0: the translation in the output metadata.
    pub translation_nm: [f64; 3],
    /// Output array shape (voxels).
    pub shape_vox: [u64; 3],
    /// Tiles per axis.
    pub tile_grid: [u64; 3],
    /// Id of this unit's first tile.
    pub first_tile: usize,
    /// Output group per written class (in the order of [`PredictPlan::classes`]).
    pub groups: Vec<String>,
}

impl PredictUnit {
    /// Number of tiles.
    pub fn tiles(&self) -> usize {
        self.tile_grid.iter().product::<u64>() as usize
    }
}

/// One output tile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tile {
    /// Global id (`0..PredictPlan::tile_count()`).
    pub id: usize,
    /// Index of its unit.
    pub unit: usize,
    /// Grid index (= the chunk index of the output arrays).
    pub index: [u64; 3],
    /// First output voxel.
    pub start_vox: [u64; 3],
    /// Voxels written (the tile shape, clipped at the array's end).
    pub shape_vox: [usize; 3],
    /// World centre (nm) of the unclipped tile: the centre of its input crops.
    pub centre_nm: [f64; 3],
}

/// The plan of a prediction: units, tiles, inputs, bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictPlan {
    /// Output tile (= chunk) shape, voxels.
    pub tile_vox: [usize; 3],
    /// Input voxels read beyond the tile on each side.
    pub context_vox: [usize; 3],
    /// Output voxel size (nm).
    pub voxel_size_nm: [f64; 3],
    /// Inputs read per tile.
    pub inputs: Vec<PredictInput>,
    /// Channels the model emits.
    pub model_channels: usize,
    /// Model channel of each written class.
    pub class_channels: Vec<usize>,
    /// Written class names.
    pub classes: Vec<String>,
    /// Element type written.
    pub dtype: PredictDtype,
    /// Zarr format (2 or 3).
    pub zarr_format: u8,
    /// Output volumes.
    pub units: Vec<PredictUnit>,
    /// Things a person should know (a region reaching past the raw data, read as padding).
    pub warnings: Vec<String>,
    /// Uncompressed bytes of every output array together.
    pub output_bytes: u64,
    /// Bytes of the inputs of one tile (f32).
    pub input_bytes_per_tile: u64,
}

impl PredictPlan {
    /// Plan the prediction of `spec` (opens the raw groups, and the label groups for
    /// `region: validation`).
    ///
    /// A region reaching past the raw data is planned, with a warning giving the fraction of it read as
    /// padding; a region that does not meet the raw data at all is an error.
    ///
    /// # Errors
    /// [`PredictError`] when the spec has no `predict` section, a group cannot be opened, a region
    /// is empty or outside the raw data, or two outputs collide.
    pub fn new(spec: &Spec) -> Result<PredictPlan, PredictError> {
        let p = spec.predict().ok_or(PredictError::NoPredictSection)?;
        let s = p.voxel_size_nm;
        let inputs: Vec<PredictInput> = p
            .inputs
            .iter()
            .filter_map(|&i| spec.inputs().get(i).map(|a| (i, a)))
            .map(|(i, a)| PredictInput {
                spec_index: i,
                name: a.name.clone(),
                voxel_size_nm: a.voxel_size_nm,
                window_vox: std::array::from_fn(|ax| {
                    let n = (p.tile_vox[ax] as f64 * s[ax] / a.voxel_size_nm[ax]).round() as usize;
                    n.max(1) + 2 * p.context_vox[ax]
                }),
            })
            .collect();
        let regions = regions(spec, p)?;
        if regions.is_empty() {
            return Err(PredictError::NoUnits);
        }
        let warnings = regions
            .iter()
            .filter_map(|r| r.padded_warning(spec.sampling().pad_value_inputs))
            .collect();
        let names = unit_names(&regions);
        let classes: Vec<String> = p.class_names().map(str::to_owned).collect();
        let mut units = Vec::with_capacity(regions.len());
        let mut first_tile = 0usize;
        let mut output_bytes = 0u64;
        let mut seen = std::collections::BTreeSet::new();
        for (Region { raw, region, .. }, name) in regions.into_iter().zip(names) {
            let mut shape_vox = [0u64; 3];
            let mut translation_nm = [0.0; 3];
            for a in 0..3 {
                let n = (region.hi_nm[a] - region.lo_nm[a]) / s[a];
                shape_vox[a] = (n - REL_TOL * n.max(1.0)).ceil().max(1.0) as u64;
                translation_nm[a] = region.lo_nm[a] + s[a] / 2.0;
            }
            let tile_grid: [u64; 3] = std::array::from_fn(|a| shape_vox[a].div_ceil(p.tile_vox[a] as u64));
            let groups: Vec<String> = classes
                .iter()
                .map(|c| p.output.replace("{dataset}", &name).replace("{class}", c))
                .collect();
            for g in &groups {
                if !seen.insert(g.clone()) {
                    return Err(PredictError::OutputCollision { path: g.clone() });
                }
            }
            output_bytes += shape_vox.iter().product::<u64>() * classes.len() as u64 * p.dtype.size_bytes() as u64;
            let unit = PredictUnit {
                name,
                raw,
                region_nm: region,
                translation_nm,
                shape_vox,
                tile_grid,
                first_tile,
                groups,
            };
            first_tile += unit.tiles();
            units.push(unit);
        }
        let input_bytes_per_tile = inputs
            .iter()
            .map(|i| i.window_vox.iter().product::<usize>() as u64 * 4)
            .sum();
        Ok(PredictPlan {
            tile_vox: p.tile_vox,
            context_vox: p.context_vox,
            voxel_size_nm: s,
            inputs,
            model_channels: p.model_classes.len(),
            class_channels: p.classes.clone(),
            classes,
            dtype: p.dtype,
            zarr_format: p.zarr_format,
            units,
            warnings,
            output_bytes,
            input_bytes_per_tile,
        })
    }

    /// Total number of tiles.
    pub fn tile_count(&self) -> usize {
        self.units.last().map_or(0, |u| u.first_tile + u.tiles())
    }

    /// Voxels of one (unclipped) tile.
    pub fn tile_voxels(&self) -> usize {
        self.tile_vox.iter().product()
    }

    /// The tile with global id `id`.
    ///
    /// # Errors
    /// [`PredictError::UnknownTile`] when `id >= tile_count()`.
    pub fn tile(&self, id: usize) -> Result<Tile, PredictError> {
        let unknown = || PredictError::UnknownTile {
            tile: id,
            tiles: self.tile_count(),
        };
        let unit_index = self.units.partition_point(|u| u.first_tile + u.tiles() <= id);
        let unit = self.units.get(unit_index).ok_or_else(unknown)?;
        let local = (id - unit.first_tile) as u64;
        let g = unit.tile_grid;
        let index = [local / (g[1] * g[2]), (local / g[2]) % g[1], local % g[2]];
        let mut start_vox = [0u64; 3];
        let mut shape_vox = [0usize; 3];
        let mut centre_nm = [0.0; 3];
        for a in 0..3 {
            let t = self.tile_vox[a] as u64;
            start_vox[a] = index[a] * t;
            shape_vox[a] = (unit.shape_vox[a] - start_vox[a]).min(t) as usize;
            let s = self.voxel_size_nm[a];
            // Centre of the unclipped tile: voxel centres start_vox … start_vox + T − 1.
            centre_nm[a] = unit.translation_nm[a] + (start_vox[a] as f64 + (t as f64 - 1.0) / 2.0) * s;
        }
        Ok(Tile {
            id,
            unit: unit_index,
            index,
            start_vox,
            shape_vox,
            centre_nm,
        })
    }

    /// Tile ids of one rank: `ids[rank::world_size]` (see [`crate::sampler::shard`]).
    pub fn shard(&self, rank: usize, world_size: usize) -> Vec<usize> {
        (0..self.tile_count()).skip(rank).step_by(world_size.max(1)).collect()
    }
}

/// The region of one unit and the raw data it is read from.
#[derive(Debug, Clone, PartialEq)]
struct Region {
    /// The raw location.
    raw: String,
    /// The region (nm).
    region: Box3,
    /// `{dataset}` base name.
    name: String,
    /// The box the raw data covers (nm; its finest level).
    data: Box3,
    /// Voxel size of the finest raw level (nm), to recognise a region written in voxels.
    data_voxel_nm: [f64; 3],
}

impl Region {
    fn new(raw: &str, region: Box3, name: String, ms: &Multiscale) -> Self {
        let (data, data_voxel_nm) = ms
            .levels
            .first()
            .map_or((Box3::new([0.0; 3], [0.0; 3]), [1.0; 3]), |l| {
                (l.bounds_nm(), l.scale_nm)
            });
        Region {
            raw: raw.to_owned(),
            region,
            name,
            data,
            data_voxel_nm,
        }
    }

    /// An error when the region has no volume or does not meet the data.
    fn check(&self) -> Result<(), PredictError> {
        if self.region.is_empty() {
            return Err(PredictError::EmptyRegion {
                raw: self.raw.clone(),
                lo_nm: self.region.lo_nm,
                hi_nm: self.region.hi_nm,
            });
        }
        if self.region.intersection(&self.data).is_some() {
            return Ok(());
        }
        let s = self.data_voxel_nm;
        let as_voxels = Box3::new(
            std::array::from_fn(|a| self.region.lo_nm[a] * s[a]),
            std::array::from_fn(|a| self.region.hi_nm[a] * s[a]),
        );
        let hint = if as_voxels.intersection(&self.data).is_some() {
            format!(
                " (as voxels of {} nm it would be {} nm, which meets the data)",
                fmt_point(s),
                fmt_box(&as_voxels)
            )
        } else {
            String::new()
        };
        Err(PredictError::RegionOutsideData {
            raw: self.raw.clone(),
            region_nm: fmt_box(&self.region),
            data_nm: fmt_box(&self.data),
            hint,
        })
    }

    /// A warning when part of the region lies outside the data, with the fraction read as padding.
    fn padded_warning(&self, pad_value: f32) -> Option<String> {
        let inside = self.region.intersection(&self.data)?;
        let volume = |b: &Box3| b.size_nm().iter().product::<f64>();
        let outside = 1.0 - volume(&inside) / volume(&self.region);
        (outside > 1e-9).then(|| {
            format!(
                "region {} nm of `{}` reaches past the raw data at {} nm: {:.1}% of it is outside the data and \
                 reads as padding (input value {pad_value})",
                fmt_box(&self.region),
                self.raw,
                fmt_box(&self.data),
                outside * 100.0
            )
        })
    }
}

/// `[z, y, x]` with the shortest exact decimals (`[8, 8, 8]`, `[0.5, 4, 4]`).
fn fmt_point(p: [f64; 3]) -> String {
    format!("[{}, {}, {}]", p[0], p[1], p[2])
}

/// `[z0, y0, x0]..[z1, y1, x1]`.
fn fmt_box(b: &Box3) -> String {
    format!("{}..{}", fmt_point(b.lo_nm), fmt_point(b.hi_nm))
}

/// The region, raw data and `{dataset}` base name of every unit, each region checked against its data.
fn regions(spec: &Spec, p: &Predict) -> Result<Vec<Region>, PredictError> {
    let open = |raw: &str| {
        Multiscale::open(raw).map_err(|e| PredictError::Open {
            raw: raw.to_owned(),
            source: Box::new(e),
        })
    };
    let mut out = Vec::new();
    match &p.region {
        PredictRegion::Raw => {
            for raw in &p.raw {
                let ms = open(raw)?;
                let b = ms
                    .levels
                    .first()
                    .map(|l| l.bounds_nm())
                    .unwrap_or(Box3::new([0.0; 3], [0.0; 3]));
                out.push(Region::new(raw, b, container_name(raw), &ms));
            }
        }
        PredictRegion::Bounds { lo_nm, hi_nm } => {
            for raw in &p.raw {
                // Open it now so that a wrong path fails at plan time.
                let ms = open(raw)?;
                out.push(Region::new(raw, Box3::new(*lo_nm, *hi_nm), container_name(raw), &ms));
            }
        }
        PredictRegion::Validation => {
            for d in spec.datasets_of(Split::Validate) {
                let sources = DatasetSources::open(spec, d).map_err(Box::new)?;
                let mut bbox: Option<Box3> = None;
                for c in &sources.classes {
                    if let ClassSource::Annotated(ms) = c
                        && let Some(l) = ms.levels.first()
                    {
                        let b = l.bounds_nm();
                        bbox = Some(match bbox {
                            None => b,
                            Some(prev) => prev.intersection(&b).unwrap_or(Box3::new(b.lo_nm, b.lo_nm)),
                        });
                    }
                }
                let bbox = bbox.ok_or_else(|| PredictError::NoCropBox {
                    index: d.index,
                    raw: d.raw.clone(),
                })?;
                let crop = d.targets.as_ref().map(|t| crop_folder(&t.template)).unwrap_or_default();
                let name = if crop.is_empty() {
                    container_name(&d.raw)
                } else {
                    format!("{}_{crop}", container_name(&d.raw))
                };
                out.push(Region::new(&d.raw, bbox, name, &sources.raw));
            }
        }
    }
    for r in &out {
        r.check()?;
    }
    Ok(out)
}

/// `{dataset}` of each unit: its base name (the raw container's name, `jrc_hela-2` of
/// `…/jrc_hela-2.zarr/…`, plus `_crop7` for validation crops); `_N` (the unit index) is appended when
/// names repeat.
fn unit_names(regions: &[Region]) -> Vec<String> {
    let base: Vec<String> = regions.iter().map(|r| r.name.clone()).collect();
    let repeated = |n: &String| base.iter().filter(|b| *b == n).count() > 1;
    base.iter()
        .enumerate()
        .map(|(i, n)| if repeated(n) { format!("{n}_{i}") } else { n.clone() })
        .collect()
}

/// The name of the zarr (or n5) container holding `raw`, else its last path component.
fn container_name(raw: &str) -> String {
    let parts: Vec<&str> = raw.split(['/', '\\']).filter(|p| !p.is_empty()).collect();
    for p in &parts {
        for ext in [".zarr", ".n5"] {
            if let Some(stem) = p.strip_suffix(ext) {
                return stem.to_owned();
            }
        }
    }
    parts.last().map_or_else(|| "dataset".to_owned(), |p| (*p).to_owned())
}

/// The folder holding the class groups of a target template (`crop7` of `…/crop7/{class}`).
fn crop_folder(template: &str) -> String {
    let before = template.split("{class}").next().unwrap_or_default();
    before
        .split(['/', '\\'])
        .rfind(|p| !p.is_empty())
        .unwrap_or_default()
        .to_owned()
}

/// True when `path` is a local filesystem path (not a URL).
fn is_local(path: &str) -> bool {
    !path.contains("://") && Path::new(path).is_absolute()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names() {
        assert_eq!(
            container_name("/d/jrc_hela-2.zarr/recon-1/em/fibsem-uint8"),
            "jrc_hela-2"
        );
        assert_eq!(container_name("/d/x.n5/raw"), "x");
        assert_eq!(container_name("/d/volume/raw/"), "raw");
        let r = |s: &str| Region {
            raw: s.to_owned(),
            region: Box3::new([0.0; 3], [1.0; 3]),
            name: container_name(s),
            data: Box3::new([0.0; 3], [1.0; 3]),
            data_voxel_nm: [1.0; 3],
        };
        assert_eq!(crop_folder("/d/x.zarr/labels/crop7/{class}"), "crop7");
        assert_eq!(
            unit_names(&[r("/a.zarr/raw"), r("/b.zarr/raw"), r("/a.zarr/raw2")]),
            ["a_0", "b", "a_2"]
        );
        assert!(is_local("/tmp/x") && !is_local("http://h/x") && !is_local("rel/x"));
    }

    #[test]
    fn regions_outside_or_partly_outside_the_data() {
        // Data: 100³ voxels of 8 nm from the origin.
        let region = |lo: [f64; 3], hi: [f64; 3]| Region {
            raw: "/d/a.zarr/raw".to_owned(),
            region: Box3::new(lo, hi),
            name: "a".to_owned(),
            data: Box3::new([0.0; 3], [800.0; 3]),
            data_voxel_nm: [8.0; 3],
        };
        let inside = region([0.0; 3], [800.0; 3]);
        assert!(inside.check().is_ok() && inside.padded_warning(0.0).is_none());

        let half = region([400.0, 0.0, 0.0], [1200.0, 800.0, 800.0]);
        assert!(half.check().is_ok());
        assert_eq!(
            half.padded_warning(0.0).unwrap(),
            "region [400, 0, 0]..[1200, 800, 800] nm of `/d/a.zarr/raw` reaches past the raw data at \
             [0, 0, 0]..[800, 800, 800] nm: 50.0% of it is outside the data and reads as padding (input value 0)"
        );

        // Written in voxels: 10..20 voxels is 80..160 nm, inside; as nm it misses the data only when
        // the data does not start at the origin.
        let mut voxels = region([1000.0; 3], [1020.0; 3]);
        voxels.data = Box3::new([4000.0; 3], [12000.0; 3]);
        assert_eq!(
            voxels.check().unwrap_err().to_string(),
            "region [1000, 1000, 1000]..[1020, 1020, 1020] nm does not meet the raw data `/d/a.zarr/raw` at \
             [4000, 4000, 4000]..[12000, 12000, 12000] nm: is the region in voxels rather than nm, or shifted? \
             (as voxels of [8, 8, 8] nm it would be [8000, 8000, 8000]..[8160, 8160, 8160] nm, which meets the data)"
        );
        let far = region([1e7, 0.0, 0.0], [1e7 + 800.0, 800.0, 800.0]);
        assert!(far.padded_warning(0.0).is_none());
        assert_eq!(
            far.check().unwrap_err().to_string(),
            "region [10000000, 0, 0]..[10000800, 800, 800] nm does not meet the raw data `/d/a.zarr/raw` at \
             [0, 0, 0]..[800, 800, 800] nm: is the region in voxels rather than nm, or shifted?"
        );
        assert!(matches!(
            region([0.0; 3], [0.0, 8.0, 8.0]).check(),
            Err(PredictError::EmptyRegion { .. })
        ));
    }
}
