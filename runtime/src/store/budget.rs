//! Byte budgets that threads fill at once (the decoded cache and the compressed tier): bytes are
//! claimed in one atomic step before the entry they pay for goes in, so the held bytes never
//! pass the budget, not even for a moment while two threads insert.

use std::sync::atomic::{AtomicU64, Ordering};

/// Times an insert makes room and claims it before it gives up (another insert took the room
/// each time): the entry is then not kept.
const CLAIM_TRIES: usize = 4;

/// Count `incoming` bytes against `budget` in `held` before the entry they pay for goes in:
/// claimed at once when they fit, else after `make_room` (evicting; false when it cannot make
/// enough) and again, up to [`CLAIM_TRIES`] times, as other inserts may take the room made. False,
/// and `held` unchanged, when the bytes were not claimed.
pub(crate) fn claim(held: &AtomicU64, budget: u64, incoming: u64, mut make_room: impl FnMut() -> bool) -> bool {
    for _ in 0..CLAIM_TRIES {
        if claim_bytes(held, budget, incoming) {
            return true;
        }
        if !make_room() {
            return false;
        }
    }
    false
}

/// Add `incoming` to the `held` bytes when the sum stays within `budget`, in one atomic step;
/// false, and `held` unchanged, when it would not.
fn claim_bytes(held: &AtomicU64, budget: u64, incoming: u64) -> bool {
    held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
        b.checked_add(incoming).filter(|&sum| sum <= budget)
    })
    .is_ok()
}

/// The most bytes `held` reported while `threads` threads each ran `insert` with their index,
/// read over and over by one more thread until they finished (the caches' concurrency tests).
#[cfg(test)]
pub(crate) fn most_held_while(threads: u64, held: impl Fn() -> u64 + Sync, insert: impl Fn(u64) + Sync) -> u64 {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut most = 0;
            while !done.load(Ordering::Relaxed) {
                most = most.max(held());
            }
            most
        });
        let insert = &insert;
        let workers: Vec<_> = (0..threads).map(|t| s.spawn(move || insert(t))).collect();
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        watcher.join().unwrap()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_takes_the_room_left_and_no_more() {
        let held = AtomicU64::new(0);
        assert!(claim_bytes(&held, 300, 200));
        assert!(!claim_bytes(&held, 300, 101));
        assert_eq!(held.load(Ordering::Relaxed), 200);
        assert!(claim_bytes(&held, 300, 100));
        assert!(claim_bytes(&held, 300, 0));
        assert!(!claim_bytes(&held, 300, 1));
        assert!(!claim_bytes(&held, u64::MAX, u64::MAX), "an overflowing sum is refused");
        assert_eq!(held.load(Ordering::Relaxed), 300);
    }
}
