//! A pool of threads for work that blocks: fetching ahead waits on the store (a remote request,
//! or the benchmarking delay) far longer than it computes.
//!
//! Unlike a work-stealing pool, an idle thread here sleeps on one condition variable and costs
//! nothing: no stealing from its siblings, no spinning before it sleeps. That is what lets a
//! pool keep a few hundred requests in flight on two cores (a rayon pool of 256 threads spent
//! about a third of the CPU of a remote run stealing and advancing its epochs, and ran slower
//! than one of 128). Jobs run in the order they were queued.
//!
//! A pool for speculative work (fetching ahead) runs its threads at a lower priority (Linux nice
//! +10, `background`): when the loader's workers want every core, as they do reading
//! local files on a small machine, the work they wait for now comes first and the work for later
//! batches fills the time they leave. A worker never waits for a fetch ahead (it decodes a chunk
//! itself when the chunk is not in the cache yet), so the lower priority cannot hold it up.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

/// A queued job.
type Job = Arc<dyn SharedJob>;

/// Work queued on a [`BlockingPool`] by reference ([`BlockingPool::spawn`]): a job kept by its
/// owner and queued again and again, or several times at once (each a thread working on its
/// share), costs no allocation per queueing, as a boxed closure would.
pub(crate) trait SharedJob: Send + Sync {
    /// Run the job on a pool thread; `self` is the queued reference.
    fn run(self: Arc<Self>);
}

/// The queue the threads share.
#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Set when the pool is dropped: the threads finish the queued jobs, then exit.
    closed: bool,
}

/// How much a background thread's nice value is raised.
const BACKGROUND_NICE: i32 = 10;

/// A fixed set of threads running queued jobs (see the module docs).
pub(crate) struct BlockingPool {
    queue: Arc<Queue>,
    threads: usize,
}

impl BlockingPool {
    /// A pool of `threads` (≥ 1) threads named `name-i`, at a lower priority than the thread
    /// that makes it when `background` (Linux; elsewhere at the same); their handles go to
    /// `handles` (joined by the owner after the pool is dropped). `None` when no thread could be
    /// started.
    pub(crate) fn new(
        threads: usize,
        name: &str,
        background: bool,
        handles: &Mutex<Vec<JoinHandle<()>>>,
    ) -> Option<Self> {
        let queue = Arc::new(Queue::default());
        let mut started = 0;
        for i in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            let Ok(handle) = std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                if background {
                    lower_priority();
                }
                run(&queue);
            }) else {
                break;
            };
            handles.lock().unwrap_or_else(PoisonError::into_inner).push(handle);
            started += 1;
        }
        (started > 0).then_some(BlockingPool {
            queue,
            threads: started,
        })
    }

    /// Threads of the pool.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Queue `job` by reference; the first idle thread runs it. Allocates nothing once the queue
    /// has held as many jobs at once before.
    pub(crate) fn spawn(&self, job: Arc<dyn SharedJob>) {
        let mut state = self.queue.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.jobs.push_back(job);
        drop(state);
        self.queue.ready.notify_one();
    }
}

impl Drop for BlockingPool {
    fn drop(&mut self) {
        self.queue.state.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        self.queue.ready.notify_all();
    }
}

/// Raise the calling thread's nice value by [`BACKGROUND_NICE`] (a lower priority never needs a
/// privilege); a failure leaves the priority as it was.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpriority and setpriority only read their arguments. On Linux the nice value
        // is per thread, and `who = 0` names the calling thread.
        unsafe {
            let now = libc::getpriority(libc::PRIO_PROCESS, 0);
            libc::setpriority(libc::PRIO_PROCESS, 0, (now + BACKGROUND_NICE).min(19));
        }
    }
}

/// A thread of the pool: run jobs until the pool is dropped and the queue is empty. A job that
/// panics is contained (the panic is the job's to report, e.g. as an unfilled result).
fn run(queue: &Queue) {
    loop {
        let job = {
            let mut state = queue.state.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(job) = state.jobs.pop_front() {
                    break job;
                }
                if state.closed {
                    return;
                }
                state = queue.ready.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// A closure run once as a job.
    struct Once<F>(Mutex<Option<F>>);

    impl<F: FnOnce() + Send> SharedJob for Once<F> {
        fn run(self: Arc<Self>) {
            let f = self.0.lock().unwrap().take();
            if let Some(f) = f {
                f();
            }
        }
    }

    fn once(f: impl FnOnce() + Send + 'static) -> Arc<dyn SharedJob> {
        Arc::new(Once(Mutex::new(Some(f))))
    }

    #[test]
    fn jobs_run_at_once_up_to_the_thread_count_and_the_threads_exit_on_drop() {
        let handles = Mutex::new(Vec::new());
        let pool = BlockingPool::new(8, "test-blocking", false, &handles).expect("threads start");
        assert_eq!(pool.threads(), 8);
        assert_eq!(handles.lock().unwrap().len(), 8);
        // Eight jobs that each wait for all eight to have started: they finish only if all run
        // at once.
        let started = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        for i in 0..8 {
            let (started, tx) = (Arc::clone(&started), tx.clone());
            pool.spawn(once(move || {
                started.fetch_add(1, Ordering::SeqCst);
                let t = std::time::Instant::now();
                while started.load(Ordering::SeqCst) < 8 && t.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                tx.send((i, started.load(Ordering::SeqCst))).unwrap();
            }));
        }
        let mut got: Vec<(usize, usize)> = (0..8)
            .map(|_| rx.recv_timeout(Duration::from_secs(20)).unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..8).map(|i| (i, 8)).collect::<Vec<_>>());
        // A panicking job leaves its thread serving the queue.
        pool.spawn(once(|| panic!("a job's panic")));
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let done = Arc::clone(&done);
            pool.spawn(once(move || {
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        drop(pool);
        for handle in handles.into_inner().unwrap() {
            handle.join().unwrap();
        }
        // Queued jobs are finished before the threads exit.
        assert_eq!(done.load(Ordering::SeqCst), 100);
    }

    /// Background threads run at a nice value 10 above the thread that made the pool (at most
    /// 19); the others at the same.
    #[cfg(target_os = "linux")]
    #[test]
    fn background_threads_run_at_a_lower_priority() {
        // SAFETY: getpriority only reads its arguments.
        let mine = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        for (background, expected) in [(false, mine), (true, (mine + BACKGROUND_NICE).min(19))] {
            let handles = Mutex::new(Vec::new());
            let pool = BlockingPool::new(2, "test-priority", background, &handles).expect("threads start");
            let (tx, rx) = mpsc::channel();
            for _ in 0..2 {
                let tx = tx.clone();
                // SAFETY: as above.
                pool.spawn(once(move || {
                    tx.send(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }).unwrap()
                }));
            }
            for _ in 0..2 {
                assert_eq!(
                    rx.recv_timeout(Duration::from_secs(20)).unwrap(),
                    expected,
                    "background: {background}"
                );
            }
            drop(pool);
            for handle in handles.into_inner().unwrap() {
                handle.join().unwrap();
            }
        }
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) },
            mine,
            "the caller's priority is unchanged"
        );
    }
}
