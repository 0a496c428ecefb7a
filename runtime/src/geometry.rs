//! World-coordinate geometry shared by every reader: voxel centres, crop starts, boxes.
//!
//! World coordinates are nanometres on the axes `z y x`. Voxel `i` of a level with scale `s` and
//! translation `t` is **centred** at `t + i·s` (the OME-NGFF transform maps an index to the voxel
//! centre; CellMap pyramids are written this way, level `k` being shifted by half a voxel of level
//! `k − 1`). A level of `n` voxels therefore covers `[t − s/2, t + (n − ½)·s]`.
//!
//! A crop of `N` voxels centred at `c` starts at voxel `floor((c − t)/s − (N − 1)/2 + 0.5)`
//! ([`crop_start_vox`]): the ideal (fractional) first index rounded half up.
//!
//! cellmap-data 2026.3 treats the translation as the **corner** of voxel 0 instead
//! (`start = floor((c − t)/s − N/2)`), which shifts its crops by up to one voxel and misaligns the
//! levels of a pyramid against each other; this crate does not reproduce that.
//!
//! ```
//! use cellmap_runtime::geometry::crop_start_vox;
//! // c = 100 nm, t = 4 nm, s = 8 nm, N = 4: (96/8) − 1.5 + 0.5 = 11.0 → 11.
//! assert_eq!(crop_start_vox(100.0, 4.0, 8.0, 4), 11);
//! ```

/// First voxel index of a crop of `n` voxels centred at `centre_nm` on an axis with the given
/// translation and scale (voxel-centre convention, see the module docs).
#[must_use]
pub fn crop_start_vox(centre_nm: f64, translation_nm: f64, scale_nm: f64, n: usize) -> i64 {
    let half = (n as f64 - 1.0) / 2.0;
    ((centre_nm - translation_nm) / scale_nm - half + 0.5).floor() as i64
}

/// World position (nm) of the centre of voxel `index` on one axis.
#[must_use]
pub fn voxel_centre_nm(index: i64, translation_nm: f64, scale_nm: f64) -> f64 {
    translation_nm + index as f64 * scale_nm
}

/// An axis-aligned box in world coordinates (nm, axes `z y x`), half-open in spirit:
/// `lo_nm` inclusive, `hi_nm` exclusive.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Box3 {
    /// Lower corner (nm), `z y x`.
    pub lo_nm: [f64; 3],
    /// Upper corner (nm), `z y x`.
    pub hi_nm: [f64; 3],
}

impl Box3 {
    /// A box from its corners.
    #[must_use]
    pub fn new(lo_nm: [f64; 3], hi_nm: [f64; 3]) -> Self {
        Self { lo_nm, hi_nm }
    }

    /// True when some axis has `lo >= hi` (no volume).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        (0..3).any(|a| self.lo_nm[a] >= self.hi_nm[a])
    }

    /// The intersection, or `None` when the boxes do not overlap with positive volume
    /// (touching boxes count as disjoint).
    #[must_use]
    pub fn intersection(&self, other: &Box3) -> Option<Box3> {
        let mut out = *self;
        for a in 0..3 {
            out.lo_nm[a] = self.lo_nm[a].max(other.lo_nm[a]);
            out.hi_nm[a] = self.hi_nm[a].min(other.hi_nm[a]);
        }
        (!out.is_empty()).then_some(out)
    }

    /// True when `point_nm` lies inside (`lo <= p < hi` on every axis).
    #[must_use]
    pub fn contains(&self, point_nm: [f64; 3]) -> bool {
        (0..3).all(|a| self.lo_nm[a] <= point_nm[a] && point_nm[a] < self.hi_nm[a])
    }

    /// True when `other` lies entirely inside `self` (`lo <= other.lo`, `other.hi <= hi`).
    #[must_use]
    pub fn contains_box(&self, other: &Box3) -> bool {
        (0..3).all(|a| self.lo_nm[a] <= other.lo_nm[a] && other.hi_nm[a] <= self.hi_nm[a])
    }

    /// Extent per axis (nm), `hi − lo`.
    #[must_use]
    pub fn size_nm(&self) -> [f64; 3] {
        [
            self.hi_nm[0] - self.lo_nm[0],
            self.hi_nm[1] - self.lo_nm[1],
            self.hi_nm[2] - self.lo_nm[2],
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_start_worked_examples() {
        // c=100, t=4, s=8, N=4: 96/8=12; 12-1.5+0.5 = 11 -> 11 (voxels 11..14, centres 92..116).
        assert_eq!(crop_start_vox(100.0, 4.0, 8.0, 4), 11);
        // c=100, t=0, s=8, N=4: 12.5-1.5+0.5 = 11.5 -> 11 (centres 88,96,104,112; mean 100).
        assert_eq!(crop_start_vox(100.0, 0.0, 8.0, 4), 11);
        // c=100, t=4, s=8, N=5 (odd): 12-2+0.5 = 10.5 -> 10 (centres 84..116, mean 100).
        assert_eq!(crop_start_vox(100.0, 4.0, 8.0, 5), 10);
        // c=0, t=40, s=8, N=1: -5+0+0.5 = -4.5 -> -5 (the voxel centred at 0 nm).
        assert_eq!(crop_start_vox(0.0, 40.0, 8.0, 1), -5);
        // c=7.9, t=0, s=8, N=1: 0.9875+0.5 -> 1 (nearest centre is 8 nm).
        assert_eq!(crop_start_vox(7.9, 0.0, 8.0, 1), 1);
        assert_eq!(voxel_centre_nm(11, 4.0, 8.0), 92.0);
    }

    #[test]
    fn boxes() {
        let a = Box3::new([0.0; 3], [10.0; 3]);
        let b = Box3::new([5.0, 0.0, 0.0], [20.0, 10.0, 10.0]);
        assert_eq!(a.intersection(&b), Some(Box3::new([5.0, 0.0, 0.0], [10.0, 10.0, 10.0])));
        let c = Box3::new([10.0, 0.0, 0.0], [20.0, 10.0, 10.0]);
        assert_eq!(a.intersection(&c), None);
        assert!(a.contains([0.0, 9.99, 5.0]));
        assert!(!a.contains([10.0, 5.0, 5.0]));
        assert!(a.contains_box(&Box3::new([1.0; 3], [10.0; 3])));
        assert_eq!(b.size_nm(), [15.0, 10.0, 10.0]);
    }
}
