//! Independent blocking jobs run side by side on scoped threads: opening metadata, where each
//! job waits on a file or a request far longer than it computes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads that open local data at once.
pub const OPEN_THREADS: usize = 16;

/// Threads that open remote data at once: each waits a round trip per metadata document.
pub const REMOTE_OPEN_THREADS: usize = 64;

/// `f` over `items` on up to `threads` scoped threads; results in the order of `items`.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = items.len().min(threads);
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    results.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_order_of_the_items() {
        let items: Vec<u64> = (0..100).collect();
        for threads in [1, 3, 16, 200] {
            let out = map(&items, threads, |&i| {
                std::thread::sleep(std::time::Duration::from_micros((i * 7919) % 300));
                i * i
            });
            assert_eq!(
                out,
                items.iter().map(|i| i * i).collect::<Vec<_>>(),
                "{threads} threads"
            );
        }
        assert!(map(&[] as &[u8], 4, |_| 0).is_empty());
    }
}
