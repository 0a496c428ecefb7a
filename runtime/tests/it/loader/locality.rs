//! `sampling.locality` on real zarr stores: the same samples per epoch as locality 1 in the
//! documented order, resumable, independent of the worker count, per rank.

use super::*;
use crate::sampler::locality_order;

/// Two training crops, batch 3, 24 draws per epoch (8 batches): windows of `3 · locality`.
fn locality_spec(zarr: &Path, weighting: &str, locality: Option<u32>) -> Spec {
    spec_with(zarr, |d| {
        d["sampling"]["weighting"] = json!(weighting);
        d["sampling"]["iterations_per_epoch"] = json!(24);
        if let Some(n) = locality {
            d["sampling"]["locality"] = json!(n);
        }
        let mut second = d["data"]["datasets"][1].clone();
        second["split"] = json!("train");
        d["data"]["datasets"].as_array_mut().unwrap().push(second);
    })
}

/// One read sample: dataset, centre bits, and the bits of its input and target arrays.
type Sample = (i32, [u64; 3], Vec<u32>, Vec<u32>);

/// `batches` training batches of `loader`, sample by sample.
fn read(loader: &mut Loader, batches: usize) -> Vec<Sample> {
    let mut out = Vec::new();
    for _ in 0..batches {
        let batch = loader.next_batch().unwrap().unwrap();
        let metas: Vec<_> = batch.meta().collect();
        let per = |i: usize| batch.array(i).len() / metas.len();
        for (p, m) in metas.iter().enumerate() {
            let bits = |i: usize| {
                batch.array(i)[p * per(i)..(p + 1) * per(i)]
                    .iter()
                    .map(|v| v.to_bits())
                    .collect()
            };
            out.push((m.dataset, m.centre_nm.map(f64::to_bits), bits(0), bits(1)));
        }
    }
    out
}

fn open(s: &Spec, edit: impl FnOnce(&mut LoaderOptions)) -> Loader {
    let mut o = options(Split::Train);
    edit(&mut o);
    Loader::open(s.clone(), o).unwrap()
}

#[test]
fn locality_one_is_the_default_bit_for_bit() {
    let f = synth(SynthVariant::V2);
    let default = locality_spec(&f.dir, "uniform", None);
    let one = locality_spec(&f.dir, "uniform", Some(1));
    // Debug text, since a NaN pad value is not equal to itself.
    assert_eq!(format!("{default:?}"), format!("{one:?}"));
    assert_eq!(default.sampling().locality, 1);
    assert_eq!(read(&mut open(&default, |_| {}), 10), read(&mut open(&one, |_| {}), 10));
}

#[test]
fn locality_reads_each_epochs_samples_of_locality_one_in_the_documented_order() {
    let f = synth(SynthVariant::V3);
    for weighting in ["uniform", "class_balanced"] {
        let plain = read(&mut open(&locality_spec(&f.dir, weighting, None), |_| {}), 16);
        for n in [2usize, 4, 8] {
            let s = locality_spec(&f.dir, weighting, Some(n as u32));
            let got = read(&mut open(&s, |_| {}), 16);
            assert_ne!(got, plain, "{weighting} locality {n} reorders");
            for (epoch, (got, plain)) in got.chunks(24).zip(plain.chunks(24)).enumerate() {
                let datasets: Vec<usize> = plain.iter().map(|s| s.0 as usize).collect();
                let order = locality_order(&datasets, n, 3);
                for (i, &j) in order.iter().enumerate() {
                    assert_eq!(got[i], plain[j], "{weighting} locality {n} epoch {epoch} sample {i}");
                }
            }
        }
    }
}

#[test]
fn locality_batches_resume_and_do_not_depend_on_workers_or_ranks() {
    let f = synth(SynthVariant::V2);
    let s = locality_spec(&f.dir, "uniform", Some(4));
    let running = read(&mut open(&s, |_| {}), 16);
    assert_eq!(read(&mut open(&s, |o| o.workers = Some(1)), 16), running);
    assert_eq!(read(&mut open(&s, |o| o.workers = Some(3)), 16), running);
    // Fetching ahead (on by default: 2 batches) draws through the same `LoaderJob::draw`; off or
    // further ahead, the batches are the same.
    assert_eq!(read(&mut open(&s, |o| o.fetch_ahead = Some(0)), 16), running);
    assert_eq!(read(&mut open(&s, |o| o.fetch_ahead = Some(6)), 16), running);
    let resumed = read(
        &mut open(&s, |o| {
            o.epoch = 1;
            o.step = 3;
        }),
        5,
    );
    assert_eq!(resumed, running[(8 + 3) * 3..]);
    // Rank 1 of 2 reads its own stream: locality 1's samples of that rank, permuted.
    let rank = |s: &Spec| {
        let mut all = read(
            &mut open(s, |o| {
                o.dist = cellmap_runtime::DistInfo {
                    rank: 1,
                    world_size: 2,
                    local_rank: 1,
                }
            }),
            8,
        );
        let first = all.clone();
        all.sort();
        (first, all)
    };
    let (plain_first, plain_sorted) = rank(&locality_spec(&f.dir, "uniform", None));
    let (got_first, got_sorted) = rank(&s);
    assert_eq!(got_sorted, plain_sorted);
    assert_ne!(got_first, plain_first);
    let mut rank0 = running[..24].to_vec();
    rank0.sort();
    assert_ne!(rank0, got_sorted, "ranks draw different streams");
}
