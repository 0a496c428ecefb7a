//! The chunks a sample reads, found without reading it: for fetching them ahead.

use cellmap_schema::Axis;

use super::{Reader, SampleRequest};
use crate::augment::spatial::SpatialDraw;
use crate::plan::ClassPlan;
use crate::slicing::frame_axes;
use crate::sources::ClassSource;
use crate::store::Level;

use super::crop::{clip, transformed_window_vox};

impl Reader {
    /// Call `visit` with every chunk (level and chunk indices `z y x`) that [`Reader::read`] of
    /// `request` under `draw` reads: per input array its level, per annotated class of every
    /// target array its level, over the window [`transformed_window_vox`] gives (clipped to the
    /// level). Geometry only: nothing is read and nothing allocated (an elastic draw evaluates
    /// its field, which allocates). `draw` is in the frame of the sample's slice, as [`Reader::spatial_draw`] gives it.
    pub fn sample_chunks(&self, request: &SampleRequest, draw: &SpatialDraw, visit: &mut impl FnMut(&Level, [u64; 3])) {
        let axis = self.slice_axis(request);
        let sliced;
        let draw = if axis == Axis::Z {
            draw
        } else {
            let mut world = draw.clone();
            world.slice(frame_axes(axis));
            sliced = world;
            &sliced
        };
        let spec = self.spec();
        let planned = self.planned();
        let (plan, sources) = (
            &planned.plan.datasets[request.dataset],
            &planned.sources[request.dataset],
        );
        let inputs = (0..spec.inputs().len()).map(|i| self.frames.input(axis, i));
        for (array, lp) in inputs.zip(&plan.inputs) {
            let level = &sources.raw.levels[lp.level];
            window_chunks(
                level,
                transformed_window_vox(array, draw, request.centre_nm, level.translation_nm, level.scale_nm),
                visit,
            );
        }
        let targets = (0..spec.targets().len()).map(|t| self.frames.target(axis, t));
        for (array, classes) in targets.zip(&plan.targets) {
            for (class_plan, source) in classes.iter().zip(&sources.classes) {
                if let (ClassPlan::Annotated(lp), ClassSource::Annotated(group)) = (class_plan, source) {
                    let level = &group.levels[lp.level];
                    let window =
                        transformed_window_vox(array, draw, request.centre_nm, level.translation_nm, level.scale_nm);
                    window_chunks(level, window, visit);
                }
            }
        }
    }
}

/// The chunks of `level` that the window `(start, shape)` touches inside the level.
fn window_chunks(level: &Level, (start, shape): ([i64; 3], [usize; 3]), visit: &mut impl FnMut(&Level, [u64; 3])) {
    let (lo, size) = clip(start, shape, level.shape_vox);
    if size.contains(&0) {
        return;
    }
    let c = level.chunk_shape_vox.map(|v| v.max(1));
    let first = [0, 1, 2].map(|a| lo[a] as u64 / c[a]);
    let last = [0, 1, 2].map(|a| (lo[a] as u64 + size[a] as u64 - 1) / c[a]);
    for z in first[0]..=last[0] {
        for y in first[1]..=last[1] {
            for x in first[2]..=last[2] {
                visit(level, [z, y, x]);
            }
        }
    }
}
