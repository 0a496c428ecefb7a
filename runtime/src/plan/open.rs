//! Opening a plan made earlier (the plan a generated crate embeds, or the plan cache's) against
//! the data as it is now: every level and class source the plan reads must still be there.

use cellmap_schema::{Spec, Split};

use super::{ClassPlan, DatasetPlan, LevelPlan, Plan, PlanError, Planned, batch_layout};
use crate::sources::{ClassSource, DatasetSources};
use crate::store::Multiscale;

/// How the data or the spec differ from a plan made earlier.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StaleReason {
    /// The batch layout or the ring depth changed.
    #[error("the spec's arrays, batch size or prefetch differ from the plan's")]
    Layout,
    /// A planned dataset is no longer declared.
    #[error("the spec has no {} dataset #{index}", split.name())]
    DatasetGone {
        /// Its split.
        split: Split,
        /// Its index within the split.
        index: usize,
    },
    /// The raw group moved.
    #[error("raw is `{found}`, the plan has `{planned}`")]
    RawMoved {
        /// The spec's raw location.
        found: String,
        /// The plan's.
        planned: String,
    },
    /// A group has fewer levels than the plan reads, or the spec's voxel sizes no longer
    /// choose a level as coarse as it.
    #[error(
        "the plan reads level {level} (`{path}`) of `{group}`, but the spec's voxel sizes now choose among its first {levels} levels only"
    )]
    LevelMissing {
        /// The group.
        group: String,
        /// Its levels opened now: up to the coarsest one the spec's voxel sizes choose.
        levels: usize,
        /// The level the plan reads.
        level: usize,
        /// That level's path in the plan.
        path: String,
    },
    /// A level's path, voxel size, translation or shape changed.
    #[error(
        "level {} of `{}` is `{}` with voxel size {:?} nm, translation {:?} nm and shape {:?}; the plan has `{}`, {:?} nm, {:?} nm, {:?}",
        planned.level, found.group, found.path, found.scale_nm, found.translation_nm, found.shape_vox,
        planned.path, planned.scale_nm, planned.translation_nm, planned.shape_vox
    )]
    LevelChanged {
        /// The level as it is now.
        found: Box<LevelPlan>,
        /// The level as planned.
        planned: Box<LevelPlan>,
    },
    /// The number of classes changed.
    #[error("the spec has {spec} classes, the plan {plan}")]
    ClassCount {
        /// Classes of the spec.
        spec: usize,
        /// Classes of the plan.
        plan: usize,
    },
    /// A class is annotated, inferred or unknown differently.
    #[error("class `{class}` is {now} in the data, {then} in the plan")]
    ClassSource {
        /// The class.
        class: String,
        /// What the data says now.
        now: String,
        /// What the plan says.
        then: String,
    },
}

impl Planned {
    /// Open the data of a plan made earlier for `spec` (the plan a generated crate embeds)
    /// without planning again: no class voxels are counted and no centre grid is computed. Every
    /// level the plan reads is checked against the data's metadata (path, voxel size,
    /// translation, shape), and every class must still be annotated, inferred or unknown as
    /// planned.
    ///
    /// # Errors
    /// [`PlanError::Dataset`] when a group cannot be opened, [`PlanError::Stale`] when the data
    /// or the spec no longer match the plan.
    pub fn open(spec: &Spec, plan: Plan) -> Result<Planned, PlanError> {
        let stale = |origin: &str, what: StaleReason| PlanError::Stale {
            origin: origin.to_owned(),
            what,
        };
        if plan.batch != batch_layout(spec) || plan.prefetch != spec.loader().prefetch {
            return Err(stale(&spec.source().display().to_string(), StaleReason::Layout));
        }
        let mut declared = Vec::with_capacity(plan.datasets.len());
        for planned in &plan.datasets {
            let Some(dataset) = spec
                .datasets()
                .iter()
                .find(|d| d.split == planned.split && d.index == planned.index)
            else {
                let what = StaleReason::DatasetGone {
                    split: planned.split,
                    index: planned.index,
                };
                return Err(stale(&planned.origin, what));
            };
            declared.push(dataset);
        }
        let mut sources = Vec::with_capacity(plan.datasets.len());
        for (planned, opened) in plan.datasets.iter().zip(DatasetSources::open_all(spec, declared)) {
            let opened = opened.map_err(Box::new)?;
            check_levels(&opened, planned, spec.classes()).map_err(|what| stale(&planned.origin, what))?;
            sources.push(opened);
        }
        Ok(Planned { plan, sources })
    }
}

/// `lp` compared with the level of `group` it names.
fn same_level(group: &Multiscale, lp: &LevelPlan) -> Result<(), StaleReason> {
    let Some(level) = group.levels.get(lp.level) else {
        return Err(StaleReason::LevelMissing {
            group: group.location.clone(),
            levels: group.levels.len(),
            level: lp.level,
            path: lp.path.clone(),
        });
    };
    let found = (&*level.path, level.scale_nm, level.translation_nm, level.shape_vox);
    let expected = (lp.path.as_str(), lp.scale_nm, lp.translation_nm, lp.shape_vox);
    if group.location != lp.group || found != expected {
        let now = LevelPlan {
            group: group.location.clone(),
            path: level.path.to_string(),
            scale_nm: level.scale_nm,
            translation_nm: level.translation_nm,
            shape_vox: level.shape_vox,
            ..lp.clone()
        };
        return Err(StaleReason::LevelChanged {
            found: Box::new(now),
            planned: Box::new(lp.clone()),
        });
    }
    Ok(())
}

/// The levels and class sources a dataset plan reads, compared with the opened data.
fn check_levels(opened: &DatasetSources, planned: &DatasetPlan, names: &[String]) -> Result<(), StaleReason> {
    if opened.raw.location != planned.raw {
        return Err(StaleReason::RawMoved {
            found: opened.raw.location.clone(),
            planned: planned.raw.clone(),
        });
    }
    for lp in &planned.inputs {
        same_level(&opened.raw, lp)?;
    }
    for classes in &planned.targets {
        if classes.len() != opened.classes.len() {
            return Err(StaleReason::ClassCount {
                spec: opened.classes.len(),
                plan: classes.len(),
            });
        }
        for ((cp, source), name) in classes.iter().zip(&opened.classes).zip(names) {
            match (cp, source) {
                (ClassPlan::Annotated(lp), ClassSource::Annotated(group)) => same_level(group, lp)?,
                (ClassPlan::Inferred(a), ClassSource::Inferred(b)) if a == b => {}
                (ClassPlan::Unknown, ClassSource::Unknown) => {}
                (cp, _) => {
                    return Err(StaleReason::ClassSource {
                        class: name.clone(),
                        now: describe_source(source, names),
                        then: describe_plan(cp, names),
                    });
                }
            }
        }
    }
    Ok(())
}

fn describe_related(related: &[usize], names: &[String]) -> String {
    let related: Vec<&str> = related
        .iter()
        .map(|&i| names.get(i).map_or("?", String::as_str))
        .collect();
    format!("inferred from {related:?}")
}

fn describe_source(source: &ClassSource, names: &[String]) -> String {
    match source {
        ClassSource::Annotated(_) => "annotated".to_owned(),
        ClassSource::Inferred(related) => describe_related(related, names),
        ClassSource::Unknown => "unknown".to_owned(),
    }
}

fn describe_plan(plan: &ClassPlan, names: &[String]) -> String {
    match plan {
        ClassPlan::Annotated(_) => "annotated".to_owned(),
        ClassPlan::Inferred(related) => describe_related(related, names),
        ClassPlan::Unknown => "unknown".to_owned(),
    }
}
