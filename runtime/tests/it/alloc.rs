//! A warm-cache `read_window` allocates nothing (counted per thread by a wrapping allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use cellmap_runtime::{
    kernels::StridedDest, read::WindowRequest, read::read_window, store::ChunkCache, store::Multiscale,
};

use crate::common::{Fmt, write_pyramid};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a const-initialised thread local
// (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

pub(crate) fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn warm_cache_reads_do_not_allocate() {
    for fmt in [
        Fmt::V2 {
            compressor: crate::common::blosc("lz4", 1),
            sep: "/",
        },
        Fmt::V3Sharded { inner: vec![8, 8, 8] },
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_pyramid::<u16>(dir.path(), &fmt, [40, 40, 40], [16, 16, 16], None);
        let ms = Multiscale::open(dir.path().to_str().unwrap()).unwrap();
        let cache = ChunkCache::new(1 << 22);
        let mut f = vec![0f32; 20 * 20 * 20];
        let windows = [[-3i64, 5, 7], [10, 20, 30], [25, 0, 2]];
        for w in windows {
            read_window(
                &ms.levels[0],
                Some(&cache),
                &WindowRequest {
                    start_vox: w,
                    fill: 0.0,
                },
                StridedDest::new(&mut f, 0, [400, 20, 1], [20, 20, 20]).unwrap(),
            )
            .unwrap();
        }
        let before = allocations();
        for w in windows {
            read_window(
                &ms.levels[0],
                Some(&cache),
                &WindowRequest {
                    start_vox: w,
                    fill: 0.0,
                },
                StridedDest::new(&mut f, 7999, [-400, -20, -1], [20, 20, 20]).unwrap(),
            )
            .unwrap();
        }
        assert_eq!(allocations() - before, 0, "{fmt:?}");
        // A cold read does allocate (the counter works).
        let cold = ChunkCache::new(1 << 22);
        read_window(
            &ms.levels[0],
            Some(&cold),
            &WindowRequest {
                start_vox: [0; 3],
                fill: 0.0,
            },
            StridedDest::new(&mut f, 0, [400, 20, 1], [20, 20, 20]).unwrap(),
        )
        .unwrap();
        assert!(allocations() - before > 0);
    }
}
