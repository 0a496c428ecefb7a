//! `sampling.locality`: the epoch's draws reordered so that draws of one crop are read close in
//! time, interleaved across batch positions so that a batch still mixes crops.
//!
//! The scheme, for locality `n` and interleave width `w` (the batch size), over the epoch's draws
//! `0..L` (each already fixing a dataset and a centre, exactly as with locality 1):
//!
//! 1. *Visits.* Each dataset's draws, in draw order, are cut into visits of `n` (the last visit of
//!    a dataset may be shorter). Visits are laid out one after the other in the order of their
//!    first draw: the visit sequence `S` (a permutation of `0..L`).
//! 2. *Interleaving.* `S` is cut into windows of `n · w` draws; within a window, element `r` goes
//!    to batch offset `r mod n` and position `r div n`, so the sample index is
//!    `window · n·w + (r mod n) · w + r div n`. A full visit thus fills one batch position over
//!    `n` consecutive batches, and each batch of the window holds `w` different visits. A last
//!    window shorter than `n · w` keeps the order of `S`.
//!
//! Sample `i` of the epoch is draw `order[i]`: the epoch's multiset of draws (datasets, centres,
//! foreground flags) is that of locality 1, only permuted; what changes is which batch a draw
//! lands in. With locality 1 (or `L ≤ 1`) no order is kept and sample `i` is draw `i`.

/// The reordering of one sampler (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Locality {
    /// Draws per visit (`n ≥ 1`).
    pub(super) visits: u64,
    /// Interleave width (`w ≥ 1`, the batch size).
    pub(super) width: u64,
}

impl Locality {
    /// Whether the draw order is unchanged.
    pub(super) fn is_identity(self) -> bool {
        self.visits <= 1
    }

    /// The sample index of element `q` of the visit sequence of an epoch of `len` draws.
    fn slot(self, q: u64, len: u64) -> u64 {
        let window = self.visits.saturating_mul(self.width);
        let base = q - q % window;
        if base.saturating_add(window) > len {
            return q;
        }
        let r = q % window;
        base + (r % self.visits) * self.width + r / self.visits
    }

    /// Fills `order` (`order[i]` = the draw read as sample `i`) from the dataset of each draw,
    /// `datasets[j] < n_datasets`; `per` is scratch (per dataset: draws seen, draws in all, offset
    /// of the open visit). Allocates only when the buffers grow.
    pub(super) fn order(self, datasets: &[u32], n_datasets: usize, per: &mut Vec<[u64; 3]>, order: &mut Vec<u32>) {
        per.clear();
        per.resize(n_datasets, [0; 3]);
        for &d in datasets {
            per[d as usize][1] += 1;
        }
        let len = datasets.len() as u64;
        order.clear();
        order.resize(datasets.len(), 0);
        let mut cursor = 0u64;
        for (j, &d) in datasets.iter().enumerate() {
            let [seen, total, open] = &mut per[d as usize];
            let within = *seen % self.visits;
            if within == 0 {
                *open = cursor;
                cursor += self.visits.min(*total - *seen);
            }
            order[self.slot(*open + within, len) as usize] = j as u32;
            *seen += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Locality;

    fn order(visits: u64, width: u64, datasets: &[u32]) -> Vec<u32> {
        let mut out = Vec::new();
        Locality { visits, width }.order(datasets, 4, &mut Vec::new(), &mut out);
        out
    }

    #[test]
    fn a_full_window_puts_each_visit_down_one_position() {
        // Draws 0..8 of datasets a b a b c c a c; visits of 2: a[0,2] b[1,3] c[4,5] a[6] c[7].
        // S = 0 2 1 3 4 5 6 7; windows of 2·2 = 4: [0 2 1 3] [4 5 6 7].
        // Window 0: r=0→(k0,p0) r=1→(k1,p0) r=2→(k0,p1) r=3→(k1,p1) → samples 0 2 1 3.
        let got = order(2, 2, &[0, 1, 0, 1, 2, 2, 0, 2]);
        assert_eq!(got, vec![0, 1, 2, 3, 4, 6, 5, 7]);
        // Batches of 2 read draws [0 1] [2 3] [4 6] [5 7]: batches 0 and 1 both read a at position 0
        // and b at position 1.
    }

    #[test]
    fn order_is_a_permutation_and_identity_at_one() {
        let datasets: Vec<u32> = (0..1000u32).map(|j| (j * 7 + j / 3) % 4).collect();
        for (visits, width) in [(1, 8), (3, 5), (8, 8), (16, 1), (2000, 3)] {
            let mut got = order(visits, width, &datasets);
            if visits == 1 {
                assert_eq!(got, (0..1000).collect::<Vec<_>>());
            }
            got.sort_unstable();
            assert_eq!(got, (0..1000).collect::<Vec<_>>(), "n={visits} w={width}");
        }
    }
}
