//! Sampler distributions, determinism and validation.

use cellmap_runtime::{
    sampler::DatasetGrid, sampler::ForegroundIndex, sampler::SampleChoice, sampler::SamplerError, sampler::TrainSampler,
};
use cellmap_schema::{ForegroundBias, PadPolicy, Sampling, Weighting};

fn sampling(weighting: Weighting, iterations: u64, foreground: Option<f64>) -> Sampling {
    Sampling {
        seed: 42,
        iterations_per_epoch: iterations,
        weighting,
        foreground: foreground.map(|fraction| ForegroundBias {
            class: "mito".into(),
            fraction,
        }),
        pad: PadPolicy {
            train: true,
            validate: true,
        },
        pad_value_inputs: 0.0,
        pad_value_targets: f32::NAN,
        validation_tiling: true,
        slice_axis: cellmap_schema::SliceAxis::Z,
        locality: 1,
    }
}

fn grid(grid_shape: [u64; 3], annotated: &[bool]) -> DatasetGrid {
    DatasetGrid {
        grid_shape,
        annotated: annotated.to_vec(),
        foreground_voxels: vec![0; annotated.len()],
        total_voxels: vec![0; annotated.len()],
        foreground: None,
    }
}

fn draws(sampler: &TrainSampler, epoch: u64) -> Vec<SampleChoice> {
    let e = sampler.epoch(epoch);
    (0..sampler.iterations_per_epoch()).map(|i| e.get(i).unwrap()).collect()
}

/// Pearson's chi-square statistic of observed counts against expected probabilities.
fn chi_square(observed: &[u64], probs: &[f64]) -> f64 {
    let n: u64 = observed.iter().sum();
    observed
        .iter()
        .zip(probs)
        .map(|(&o, &p)| (o as f64 - n as f64 * p).powi(2) / (n as f64 * p))
        .sum()
}

#[test]
fn uniform_weights_datasets_by_grid_size() {
    let grids = vec![
        grid([10, 10, 10], &[true]),
        grid([10, 20, 15], &[true]),
        grid([0, 5, 5], &[true]),
        grid([60, 10, 10], &[true]),
    ];
    let sampler = TrainSampler::new(grids, &sampling(Weighting::Uniform, 10_000, None), 0, 1).unwrap();
    let mut counts = [0u64; 4];
    for c in draws(&sampler, 0) {
        counts[c.dataset] += 1;
        let shape = sampler.grids()[c.dataset].grid_shape;
        assert!((0..3).all(|a| c.grid_index[a] < shape[a]));
    }
    assert_eq!(counts[2], 0);
    // 3 degrees of freedom: 16.3 is the 0.1 % critical value.
    let chi = chi_square(
        &[counts[0], counts[1], counts[3]],
        &[1000.0 / 10_000.0, 3000.0 / 10_000.0, 6000.0 / 10_000.0],
    );
    assert!(chi < 16.3, "{counts:?} chi² {chi}");
}

fn class_counts(sampler: &TrainSampler, epoch: u64, classes: usize) -> Vec<u64> {
    let mut counts = vec![0u64; classes];
    for c in draws(sampler, epoch) {
        for (k, a) in sampler.grids()[c.dataset].annotated.iter().enumerate() {
            counts[k] += u64::from(*a);
        }
    }
    counts
}

#[test]
fn class_balanced_equalises_annotated_classes() {
    // Symmetric overlaps (pairs and singles); class 4 is annotated nowhere.
    let mut grids = Vec::new();
    for c in 0..4 {
        let mut pair = [false; 5];
        (pair[c], pair[(c + 1) % 4]) = (true, true);
        grids.push(grid([4, 4, 4], &pair));
        let mut single = [false; 5];
        single[c] = true;
        grids.push(grid([2, 3, 4], &single));
    }
    let sampler = TrainSampler::new(grids, &sampling(Weighting::ClassBalanced, 10_000, None), 0, 1).unwrap();
    let counts = class_counts(&sampler, 3, 5);
    assert_eq!(counts[4], 0);
    let total: u64 = counts.iter().sum();
    // Tolerance: each annotated class's share of the counted annotations within 1 % of 1/4.
    for &c in &counts[..4] {
        assert!((c as f64 / total as f64 - 0.25).abs() < 0.01, "{counts:?}");
    }
}

#[test]
fn class_balanced_ties_the_least_seen_classes() {
    // Class 2 only comes with other classes, so it is over-counted (as in cellmap-data); the
    // classes the rule can steer stay tied to within one draw.
    let grids = vec![
        grid([4, 4, 4], &[true, true, false, false]),
        grid([4, 4, 4], &[false, true, false, false]),
        grid([4, 4, 4], &[false, false, true, true]),
        grid([4, 4, 4], &[true, false, true, false]),
        grid([4, 4, 4], &[false, false, false, true]),
    ];
    let sampler = TrainSampler::new(grids, &sampling(Weighting::ClassBalanced, 10_000, None), 0, 1).unwrap();
    let counts = class_counts(&sampler, 0, 4);
    let steered = [counts[0], counts[1], counts[3]];
    assert!(
        steered.iter().max().unwrap() - steered.iter().min().unwrap() <= 1,
        "{counts:?}"
    );
    assert!(counts[2] >= counts[0]);
}

#[test]
fn refilled_epoch_draws_equal_fresh_ones() {
    let grids = vec![
        grid([4, 4, 4], &[true, true, false]),
        grid([2, 3, 4], &[false, true, true]),
        grid([3, 3, 3], &[true, false, false]),
    ];
    for weighting in [Weighting::ClassBalanced, Weighting::Uniform] {
        let sampler = TrainSampler::new(grids.clone(), &sampling(weighting, 50, Some(0.0)), 0, 1).unwrap();
        let mut reused = sampler.epoch(7);
        for epoch in [3, 0, 3, 12] {
            sampler.epoch_into(epoch, &mut reused);
            assert_eq!(reused.epoch(), epoch);
            let refilled: Vec<SampleChoice> = (0..50).map(|i| reused.get(i).unwrap()).collect();
            assert_eq!(refilled, draws(&sampler, epoch), "{weighting:?} epoch {epoch}");
        }
        assert_ne!(draws(&sampler, 0), draws(&sampler, 3), "epochs differ");
    }
}

#[test]
fn class_balanced_needs_an_annotated_class() {
    let grids = vec![grid([4, 4, 4], &[false, false]), grid([0, 4, 4], &[true, false])];
    let err = TrainSampler::new(grids, &sampling(Weighting::ClassBalanced, 10, None), 0, 1).unwrap_err();
    assert_eq!(err, SamplerError::NoAnnotatedClass);
}

#[test]
fn voxel_weighted_follows_class_weights() {
    // Class 0: fg 100 of 1000 → w = 9; class 1: fg 300 of 400 → w = 1/3.
    let mut a = grid([5, 5, 5], &[true, true]);
    (a.foreground_voxels, a.total_voxels) = (vec![100, 0], vec![1000, 100]);
    let mut b = grid([5, 5, 5], &[false, true]);
    (b.foreground_voxels, b.total_voxels) = (vec![0, 300], vec![0, 300]);
    let c = grid([5, 5, 5], &[false, false]);
    let sampler = TrainSampler::new(vec![a, b, c], &sampling(Weighting::VoxelWeighted, 10_000, None), 0, 1).unwrap();
    // Raw weights 900, 100, 0 → 0.9, 0.1, 0 → floored at 0.1/3 and renormalised.
    let floor = 0.1 / 3.0;
    let total = 0.9 + 0.1 + floor;
    let mut counts = [0u64; 3];
    for c in draws(&sampler, 0) {
        counts[c.dataset] += 1;
    }
    let chi = chi_square(&counts, &[0.9 / total, 0.1 / total, floor / total]);
    assert!(chi < 13.8, "{counts:?} chi² {chi}");
}

#[test]
fn foreground_bias_draws_each_foreground_centre_equally() {
    let shape = [4u64, 5, 6];
    let fg: Vec<bool> = (0..120).map(|i| i % 6 == 1).collect();
    let mut g = grid(shape, &[true]);
    g.foreground = Some(ForegroundIndex::from_mask(shape, fg.iter().copied()).unwrap());
    let sampler = TrainSampler::new(vec![g], &sampling(Weighting::Uniform, 10_000, Some(1.0)), 0, 1).unwrap();
    let mut counts = vec![0u64; 120];
    for c in draws(&sampler, 0) {
        assert!(c.on_foreground);
        let linear = (c.grid_index[0] * 5 + c.grid_index[1]) * 6 + c.grid_index[2];
        assert!(fg[linear as usize], "{c:?}");
        counts[linear as usize] += 1;
    }
    let fg_counts: Vec<u64> = (0..120).filter(|i| fg[*i]).map(|i| counts[i]).collect();
    // 19 degrees of freedom: 43.8 is the 0.1 % critical value.
    let chi = chi_square(&fg_counts, &[1.0 / 20.0; 20]);
    assert!(chi < 43.8, "chi² {chi}");

    let half = TrainSampler::new(
        sampler.grids().to_vec(),
        &sampling(Weighting::Uniform, 10_000, Some(0.5)),
        0,
        1,
    )
    .unwrap();
    let on = draws(&half, 0).iter().filter(|c| c.on_foreground).count();
    assert!((on as f64 / 1e4 - 0.5).abs() < 0.02, "{on}");
}

#[test]
fn draws_are_deterministic_order_and_thread_independent() {
    let mut grids = vec![grid([7, 9, 11], &[true, false]), grid([3, 3, 3], &[true, true])];
    grids[0].foreground = Some(ForegroundIndex::from_mask([7, 9, 11], (0..693).map(|i| i % 5 == 0)).unwrap());
    for weighting in [Weighting::Uniform, Weighting::ClassBalanced] {
        let spec = sampling(weighting, 500, Some(0.3));
        let sampler = TrainSampler::new(grids.clone(), &spec, 1, 3).unwrap();
        let sequential = draws(&sampler, 2);
        assert_eq!(
            sequential,
            draws(&TrainSampler::new(grids.clone(), &spec, 1, 3).unwrap(), 2)
        );
        // Reverse order and two threads give the same draws; resuming at 250 needs only `epoch`.
        let epoch = sampler.epoch(2);
        let reversed: Vec<_> = (0..500).rev().map(|i| epoch.get(i).unwrap()).collect();
        assert!(reversed.iter().rev().eq(sequential.iter()));
        let halves = std::thread::scope(|s| {
            let lo = s.spawn(|| (0..250).map(|i| epoch.get(i).unwrap()).collect::<Vec<_>>());
            let hi = s.spawn(|| (250..500).map(|i| epoch.get(i).unwrap()).collect::<Vec<_>>());
            [lo.join().unwrap(), hi.join().unwrap()].concat()
        });
        assert_eq!(halves, sequential);
        // Other epochs and other ranks draw other streams.
        assert_ne!(draws(&sampler, 3), sequential);
        let rank0 = TrainSampler::new(grids.clone(), &spec, 0, 3).unwrap();
        assert_ne!(draws(&rank0, 2), sequential);
    }
}

#[test]
fn invalid_samplers_are_rejected() {
    let spec = sampling(Weighting::Uniform, 10, None);
    assert_eq!(
        TrainSampler::new(vec![grid([2, 2, 2], &[true])], &spec, 2, 2).unwrap_err(),
        SamplerError::RankOutOfRange { rank: 2, world_size: 2 }
    );
    assert_eq!(
        TrainSampler::new(vec![grid([0, 2, 2], &[true])], &spec, 0, 1).unwrap_err(),
        SamplerError::NoCentres { datasets: 1 }
    );
    let err = TrainSampler::new(
        vec![grid([2, 2, 2], &[true]), grid([2, 2, 2], &[true, false])],
        &spec,
        0,
        1,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "dataset 1 lists 2 classes in `annotated`, dataset 0 lists 1"
    );
    let mut g = grid([2, 2, 2], &[true]);
    g.foreground = Some(ForegroundIndex::from_bytes([2, 2, 1], &[1, 0, 0, 1]).unwrap());
    assert!(matches!(
        TrainSampler::new(vec![g], &spec, 0, 1),
        Err(SamplerError::ForegroundShape { .. })
    ));
    let vw = sampling(Weighting::VoxelWeighted, 10, None);
    let mut g = grid([2, 2, 2], &[true]);
    g.total_voxels.clear();
    assert!(matches!(
        TrainSampler::new(vec![g], &vw, 0, 1),
        Err(SamplerError::ClassCount {
            field: "total_voxels",
            ..
        })
    ));
}

/// `sampling.locality`'s documented order, written out naively: each dataset's draws cut into
/// visits of `n` in draw order, visits in the order of their first draw, then windows of `n · w`
/// read column by column (`n` batches down one position) except a last short window.
/// `order[i]` is the draw read as sample `i`.
pub(crate) fn locality_order(datasets: &[usize], n: usize, w: usize) -> Vec<usize> {
    let mut open: std::collections::BTreeMap<usize, usize> = Default::default();
    let mut visits: Vec<Vec<usize>> = Vec::new();
    for (j, &d) in datasets.iter().enumerate() {
        match open.get(&d) {
            Some(&v) if visits[v].len() < n => visits[v].push(j),
            _ => {
                open.insert(d, visits.len());
                visits.push(vec![j]);
            }
        }
    }
    let flat: Vec<usize> = visits.concat();
    let mut order = vec![usize::MAX; flat.len()];
    for (q, &j) in flat.iter().enumerate() {
        let (base, r) = (q - q % (n * w), q % (n * w));
        let i = if base + n * w <= flat.len() {
            base + (r % n) * w + r / n
        } else {
            q
        };
        order[i] = j;
    }
    order
}

#[test]
fn locality_reads_the_epochs_draws_in_the_documented_order() {
    let mut grids = vec![
        grid([7, 9, 11], &[true, false]),
        grid([3, 3, 3], &[true, true]),
        grid([5, 1, 4], &[false, true]),
        grid([2, 6, 2], &[true, false]),
    ];
    grids[0].foreground = Some(ForegroundIndex::from_mask([7, 9, 11], (0..693).map(|i| i % 5 == 0)).unwrap());
    for g in &mut grids {
        g.foreground_voxels = vec![3, 5];
        g.total_voxels = vec![40, 60];
    }
    for weighting in [Weighting::Uniform, Weighting::ClassBalanced, Weighting::VoxelWeighted] {
        for (rank, world) in [(0, 1), (1, 3)] {
            let plain = sampling(weighting, 500, Some(0.3));
            let base = TrainSampler::new(grids.clone(), &plain, rank, world)
                .unwrap()
                .interleaved(8);
            for (n, w) in [(1, 8), (2, 3), (4, 8), (8, 8), (8, 1), (100, 4)] {
                let spec = Sampling {
                    locality: n as u32,
                    ..plain.clone()
                };
                let sampler = TrainSampler::new(grids.clone(), &spec, rank, world)
                    .unwrap()
                    .interleaved(w as u64);
                for epoch in [0, 5] {
                    let want = draws(&base, epoch);
                    let got = draws(&sampler, epoch);
                    let order = locality_order(&want.iter().map(|c| c.dataset).collect::<Vec<_>>(), n, w);
                    let e = sampler.epoch(epoch);
                    for (i, &j) in order.iter().enumerate() {
                        assert_eq!(got[i], want[j], "{weighting:?} n={n} w={w} sample {i}");
                        assert_eq!(e.source(i as u64), Some(j as u64));
                    }
                    if n == 1 {
                        assert_eq!(got, want, "locality 1 is the draw order");
                    } else {
                        assert_ne!(got, want, "{weighting:?} n={n} w={w}: reordered");
                    }
                    // Same multiset of draws: sorted, equal.
                    let key = |c: &SampleChoice| (c.dataset, c.grid_index, c.on_foreground);
                    let (mut a, mut b): (Vec<_>, Vec<_>) =
                        (got.iter().map(key).collect(), want.iter().map(key).collect());
                    a.sort_unstable();
                    b.sort_unstable();
                    assert_eq!(a, b);
                }
            }
        }
    }
}

#[test]
fn locality_keeps_a_crop_at_one_position_for_n_batches() {
    // One dataset per visit and draws per dataset a multiple of n: every window column is a visit.
    let grids: Vec<DatasetGrid> = (0..6).map(|_| grid([4, 4, 4], &[true])).collect();
    let spec = Sampling {
        locality: 4,
        ..sampling(Weighting::Uniform, 4 * 8 * 30, None)
    };
    let sampler = TrainSampler::new(grids, &spec, 0, 1).unwrap().interleaved(8);
    let got = draws(&sampler, 1);
    let mut same_column = 0;
    for window in got.chunks(32) {
        for p in 0..8 {
            let column: Vec<usize> = (0..4).map(|k| window[k * 8 + p].dataset).collect();
            same_column += usize::from(column.iter().all(|&d| d == column[0]));
        }
    }
    // 240 columns; only those holding the end of one visit and the start of the next (at most
    // one per dataset's short last visit, and windows after it shifted) may mix datasets.
    assert!(same_column >= 200, "{same_column} of 240 columns read one crop");
    let plain = TrainSampler::new(sampler.grids().to_vec(), &Sampling { locality: 1, ..spec }, 0, 1).unwrap();
    let plain = draws(&plain, 1);
    let plain_same = plain
        .chunks(32)
        .map(|w| {
            (0..8)
                .filter(|&p| (0..4).all(|k| w[k * 8 + p].dataset == w[p].dataset))
                .count()
        })
        .sum::<usize>();
    assert!(plain_same < 10, "{plain_same} columns of locality 1 read one crop");
}

#[test]
fn locality_epochs_refilled_in_place_equal_fresh_ones() {
    let grids = vec![grid([7, 9, 11], &[true, false]), grid([3, 3, 3], &[true, true])];
    for weighting in [Weighting::Uniform, Weighting::ClassBalanced] {
        let spec = Sampling {
            locality: 4,
            ..sampling(weighting, 96, None)
        };
        let sampler = TrainSampler::new(grids.clone(), &spec, 0, 1).unwrap().interleaved(3);
        let mut reused = sampler.epoch(7);
        for epoch in [0u64, 3, 7] {
            sampler.epoch_into(epoch, &mut reused);
            let fresh = sampler.epoch(epoch);
            for i in 0..96 {
                assert_eq!(reused.get(i), fresh.get(i));
            }
        }
        // Once the draws have held an epoch, refilling them (the order too) allocates nothing.
        let before = crate::alloc::allocations();
        sampler.epoch_into(9, &mut reused);
        assert_eq!(crate::alloc::allocations() - before, 0, "{weighting:?}");
        assert_eq!(reused.get(5), sampler.epoch(9).get(5));
    }
    let long = Sampling {
        locality: 2,
        ..sampling(Weighting::Uniform, 1 << 33, None)
    };
    let err = TrainSampler::new(grids, &long, 0, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`sampling.locality: 2` reorders at most 4294967295 draws per epoch, `iterations_per_epoch` is 8589934592; \
         lower it or set `locality: 1`"
    );
}
