//! [`WindowRead`]: one validated window read, chunk by chunk through the cache into a
//! [`StridedDest`].
//!
//! Destinations with contiguous rows (x stride ±1) are filled row block by row block: for each
//! row of chunks along x, several destination rows are assembled in a stack buffer (one copy call
//! per chunk and block), then written out whole — with non-temporal stores for windows of
//! [`crate::kernels::stream::STREAM_MIN_BYTES`] and more, on CPUs where those are on.
//! Transposed destinations go chunk by chunk, region by region.
//!
//! Before copying, the chunks of the window that the cache misses are fetched and decoded at
//! once on the cache's fetch pool ([`Source`]; when it has one and two or more are missing), so a
//! read from a remote store waits for about one request, not one per chunk.

use std::sync::Arc;

use super::{ReadError, WindowElem, WindowReport};
use crate::kernels::StridedDest;
use crate::kernels::copy::{ChunkBox, Region, Runs, Span};
use crate::kernels::stream::{store_fence, store_stream, streams as streams_bytes};
use crate::store::chunk::{chunk_planes, chunk_size_error, fetch_many, fetch_planes};
use crate::store::{ChunkCache, ChunkData, ChunkKey, Level, pool};

/// How finished destination rows are written. Rows are assembled in a stack buffer, several at
/// once (one copy call per chunk covers many rows), then written out whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RowStore {
    /// Rows of large windows are written with non-temporal stores: whole cache lines go to
    /// memory without being read first, and the window (far larger than the caches, about to
    /// be handed to the consumer) does not evict the chunk cache's hot lines. Small windows
    /// are copied.
    Stream,
    /// Copied (scratch about to be read again).
    Normal,
    /// OR-ed into the destination (packed class bits).
    Or,
}

/// Elements of the stack buffer where rows are assembled ([`RowStore`]); rows longer than this
/// (and the rows of small windows) are written in place, run by run (an [`RowStore::Or`] copy ORs
/// them in through a small buffer).
const STAGE: usize = 8192;
/// Elements of the stack buffer a streamed ([`RowStore::Stream`]) pass assembles (at least one
/// row): short passes let one pass's non-temporal stores overlap the next pass's conversion
/// (measured faster than 8192-element passes; copies into scratch windows keep the long passes,
/// shorter ones cost them 5 %).
const STREAM_STAGE: usize = 512;
/// Windows at least this large (bytes) are assembled in the stack buffer of [`STAGE`] elements
/// (below it, zeroing the buffer costs more than it saves).
const STAGE_MIN_BYTES: usize = 32 << 10;
/// Chunks along x held at once while rows are copied.
const GROUP: usize = 8;
/// Elements per piece of an [`RowStore::Or`] copy written in place.
const PIECE: usize = 256;

/// Whether a window of `shape` elements of `T` read with `store` is written with non-temporal
/// stores: [`RowStore::Stream`] windows of [`crate::kernels::stream::STREAM_MIN_BYTES`] and more,
/// on CPUs where non-temporal stores are on ([`crate::kernels::stream::streams`]).
fn streams<T>(store: RowStore, shape: [usize; 3]) -> bool {
    store == RowStore::Stream && streams_bytes(shape.iter().product::<usize>() * size_of::<T>())
}

/// The stack buffer rows are assembled in, on whole cache lines.
#[repr(C, align(64))]
struct Stage<T, const N: usize>([T; N]);

/// The chunk grid around a window's in-bounds box.
struct Chunks {
    /// Chunk shape (voxels).
    c: [i64; 3],
    /// Chunk shape as element counts.
    dims: [usize; 3],
    /// First and last chunk index touched, per axis.
    first: [i64; 3],
    last: [i64; 3],
}

/// Where a window read takes its chunks: the chunks fetched up front, concurrently (the ones
/// the cache missed when the read started), else the cache.
struct Source<'c> {
    cache: Option<&'c ChunkCache>,
    /// First chunk index of the window and chunks per axis (the box `fetched` covers).
    first: [i64; 3],
    n: [usize; 3],
    /// The chunks fetched up front, C order over the box (empty when none were).
    fetched: Vec<Option<Arc<ChunkData>>>,
    /// The window's in-bounds planes, level voxels `[lo, hi)` along z: a chunk decoded for this
    /// read alone needs only those planes decoded.
    planes: [i64; 2],
}

/// The memory of [`Source::new`]'s up-front fetch, kept per thread between reads so that a read
/// that fetches allocates nothing once warm.
#[derive(Default)]
struct FetchScratch {
    missing: Vec<[u64; 3]>,
    positions: Vec<usize>,
    got: Vec<Option<Arc<ChunkData>>>,
    /// A [`Source::fetched`] handed back, empty.
    fetched: Vec<Option<Arc<ChunkData>>>,
}

thread_local! {
    static FETCH_SCRATCH: std::cell::RefCell<FetchScratch> = std::cell::RefCell::new(FetchScratch::default());
}

impl<'c> Source<'c> {
    /// The chunks of `chunks` that `cache` misses, fetched at once on its pool when there are
    /// two or more (a warm read allocates nothing: the box is only looked at, and the lists
    /// are the thread's [`FetchScratch`]).
    fn new(level: &Level, cache: Option<&'c ChunkCache>, chunks: &Chunks, planes: [i64; 2]) -> Result<Self, ReadError> {
        let n = [0, 1, 2].map(|a| (chunks.last[a] - chunks.first[a] + 1).max(0) as usize);
        let mut source = Source {
            cache,
            first: chunks.first,
            n,
            fetched: Vec::new(),
            planes,
        };
        // Local files decoded directly are read where they are needed: a local read and decode
        // is shorter than a hand-off to the pool and back.
        let Some(cache) = cache.filter(|c| c.fetch_concurrency() > 1 && !c.decodes_local_in_place(level)) else {
            return Ok(source);
        };
        // Taken out of the thread's scratch for the fetch (a read nested in it would find it
        // empty, and allocate), handed back after.
        let mut scratch = FETCH_SCRATCH.with_borrow_mut(std::mem::take);
        scratch.missing.clear();
        scratch.positions.clear();
        for (i, cidx) in source.indices().enumerate() {
            let chunk = cidx.map(|v| v as u64);
            if !cache.contains(&ChunkKey {
                level_id: level.id,
                chunk,
            }) {
                scratch.missing.push(chunk);
                scratch.positions.push(i);
            }
        }
        let result = if scratch.missing.len() < 2 {
            Ok(())
        } else {
            scratch.got.clear();
            scratch.got.resize(scratch.missing.len(), None);
            let fetched = fetch_many(level, cache, &scratch.missing, planes, &mut scratch.got);
            if fetched.is_ok() {
                source.fetched = std::mem::take(&mut scratch.fetched);
                source.fetched.resize(n.iter().product(), None);
                for (&p, data) in scratch.positions.iter().zip(scratch.got.drain(..)) {
                    source.fetched[p] = data;
                }
            }
            scratch.got.drain(..).flatten().for_each(pool::recycle);
            fetched
        };
        FETCH_SCRATCH.with_borrow_mut(|slot| *slot = scratch);
        result?;
        Ok(source)
    }

    /// Chunk indices of the box, C order.
    fn indices(&self) -> impl Iterator<Item = [i64; 3]> + use<> {
        let (first, n) = (self.first, self.n);
        (0..n[0]).flat_map(move |z| {
            (0..n[1]).flat_map(move |y| {
                (0..n[2]).map(move |x| [first[0] + z as i64, first[1] + y as i64, first[2] + x as i64])
            })
        })
    }

    /// Chunk `cidx` of `level`.
    #[inline(always)]
    fn chunk(&self, level: &Level, cidx: [i64; 3]) -> Result<Arc<ChunkData>, ReadError> {
        if !self.fetched.is_empty() {
            let [z, y, x] = [0, 1, 2].map(|a| (cidx[a] - self.first[a]) as usize);
            if let Some(Some(data)) = self.fetched.get((z * self.n[1] + y) * self.n[2] + x) {
                return Ok(Arc::clone(data));
            }
        }
        let chunk = cidx.map(|v| v as u64);
        let planes = chunk_planes(level, chunk[0], self.planes);
        Ok(fetch_planes(level, self.cache, chunk, planes)?)
    }
}

impl Drop for Source<'_> {
    /// The chunks fetched for this read go back to the chunk pool once no one else holds them.
    fn drop(&mut self) {
        self.fetched.drain(..).flatten().for_each(pool::recycle);
        if self.fetched.capacity() > 0 {
            let fetched = std::mem::take(&mut self.fetched);
            FETCH_SCRATCH.with_borrow_mut(|slot| {
                if slot.fetched.capacity() < fetched.capacity() {
                    slot.fetched = fetched;
                }
            });
        }
    }
}

/// Up to [`GROUP`] chunks along x of one chunk row, and the part of the window they cover.
struct Group {
    chunks: [Option<Arc<ChunkData>>; GROUP],
    /// Chunk indices of the first chunk.
    cidx: [i64; 3],
    /// Chunk shape (voxels and elements).
    c: [i64; 3],
    dims: [usize; 3],
    /// The covered part of the window, level voxels `[lo, hi)` per axis.
    lo: [i64; 3],
    hi: [i64; 3],
    /// `hi[2] − lo[2]`: the destination row length.
    width: usize,
    /// Several rows assembled in the stack buffer at once (else written in place).
    staged: bool,
    /// Rows per pass.
    rows_per_pass: usize,
    store: RowStore,
}

impl Drop for Group {
    /// The group's chunks go back to the chunk pool once no one else holds them (a cache, the
    /// read's up-front fetch).
    fn drop(&mut self) {
        self.chunks.iter_mut().filter_map(Option::take).for_each(pool::recycle);
    }
}

/// A window read: the in-bounds box and the destination's geometry. The destination's
/// elements are passed beside it (`&self` stays read-only while they are written, so its fields
/// stay in registers through the row loops).
pub(super) struct WindowRead<'l> {
    level: &'l Level,
    start: [i64; 3],
    shape: [usize; 3],
    base: isize,
    strides: [isize; 3],
    /// In-bounds part of the window, level voxels `[lo, hi)`.
    lo: [i64; 3],
    hi: [i64; 3],
    voxels_in_bounds: u64,
}

impl<'l> WindowRead<'l> {
    /// The read of the window of `dest`'s shape from level voxel `start` on.
    pub(super) fn new<T>(level: &'l Level, start: [i64; 3], dest: &StridedDest<'_, T>) -> Self {
        let shape = dest.shape;
        let mut lo = [0i64; 3];
        let mut hi = [0i64; 3];
        let mut voxels_in_bounds = u64::from(!shape.contains(&0));
        for a in 0..3 {
            let end = start[a].saturating_add(shape[a] as i64);
            let n = i64::try_from(level.shape_vox[a]).unwrap_or(i64::MAX);
            lo[a] = start[a].clamp(0, n);
            hi[a] = end.clamp(0, n);
            voxels_in_bounds *= (hi[a] - lo[a]).max(0) as u64;
        }
        Self {
            level,
            start,
            shape,
            base: dest.base,
            strides: dest.strides,
            lo,
            hi,
            voxels_in_bounds,
        }
    }

    /// The chunks the in-bounds box touches.
    fn chunks(&self) -> Chunks {
        let c = self.level.chunk_shape_vox.map(|v| v as i64);
        Chunks {
            c,
            dims: self
                .level
                .chunk_shape_vox
                .map(|v| usize::try_from(v).unwrap_or(usize::MAX)),
            first: [0, 1, 2].map(|a| self.lo[a] / c[a]),
            last: [0, 1, 2].map(|a| (self.hi[a] - 1) / c[a]),
        }
    }

    /// Chunk `cidx`'s part of the in-bounds box, level voxels `[lo, hi)` per axis.
    fn part(&self, cidx: [i64; 3], c: [i64; 3]) -> ([i64; 3], [i64; 3]) {
        let mut lo = [0i64; 3];
        let mut hi = [0i64; 3];
        for a in 0..3 {
            lo[a] = self.lo[a].max(cidx[a] * c[a]);
            hi[a] = self.hi[a].min((cidx[a] + 1) * c[a]);
        }
        (lo, hi)
    }

    /// Destination index of level voxel `v`.
    fn dest_index(&self, v: [i64; 3]) -> isize {
        let mut d = self.base;
        for a in 0..3 {
            d += (v[a] - self.start[a]) as isize * self.strides[a];
        }
        d
    }

    /// Read the window into the destination with `copy`; voxels outside the level get `fill`
    /// (or are left as they are with `None`).
    pub(super) fn read<T: WindowElem>(
        &self,
        cache: Option<&ChunkCache>,
        fill: Option<T>,
        mut dest: StridedDest<'_, T>,
        store: RowStore,
        copy: impl Fn(&ChunkData, Span<'_>, &mut [T]) -> bool,
    ) -> Result<WindowReport, ReadError> {
        let shape = self.shape;
        if shape.contains(&0) {
            return Ok(WindowReport::default());
        }
        let inside = (0..3).all(|a| self.lo[a] == self.start[a] && self.hi[a] - self.lo[a] == shape[a] as i64);
        if let (false, Some(fill)) = (inside, fill) {
            // Only what lies outside the level: the in-bounds box is written below.
            let outside = [0, 1, 2]
                .map(|a| (self.lo[a] - self.start[a]).max(0) as usize..(self.hi[a] - self.start[a]).max(0) as usize);
            let stream = streams::<T>(store, shape);
            dest.fill_outside(outside, fill, stream);
            if stream {
                store_fence();
            }
        }
        let voxels_in_bounds = self.voxels_in_bounds;
        if voxels_in_bounds == 0 {
            return Ok(WindowReport { voxels_in_bounds });
        }
        let source = Source::new(self.level, cache, &self.chunks(), [self.lo[0], self.hi[0]])?;
        if self.strides[2].unsigned_abs() == 1 {
            let bytes = shape.iter().product::<usize>() * size_of::<T>();
            let store = match store {
                RowStore::Stream if !streams::<T>(store, shape) => RowStore::Normal,
                other => other,
            };
            if bytes >= STAGE_MIN_BYTES {
                self.read_rows::<T, STAGE>(&source, dest.data, store, copy)?;
            } else {
                self.read_rows::<T, 0>(&source, dest.data, store, copy)?;
            }
        } else {
            self.read_regions(&source, dest.data, copy)?;
        }
        Ok(WindowReport { voxels_in_bounds })
    }

    /// Destinations with contiguous rows (x stride ±1): for each group of chunks along x, every
    /// destination row is completed run by run before the next, so cache lines are written
    /// whole and in order.
    fn read_rows<T: WindowElem, const N: usize>(
        &self,
        source: &Source<'_>,
        dest: &mut [T],
        store: RowStore,
        copy: impl Fn(&ChunkData, Span<'_>, &mut [T]) -> bool,
    ) -> Result<(), ReadError> {
        let chunks = self.chunks();
        let (first, last) = (chunks.first, chunks.last);
        // Zeroing the stack buffer costs as much as copying a small window: small windows go
        // without one (`N = 0`), run by run in place.
        let mut stage = Stage([T::ZERO; N]);
        let mut streamed = false;
        for cz in first[0]..=last[0] {
            for cy in first[1]..=last[1] {
                let mut cx0 = first[2];
                while cx0 <= last[2] {
                    let cx1 = (cx0 + GROUP as i64 - 1).min(last[2]);
                    let group = self.group::<N>(source, &chunks, [cz, cy, cx0], cx1, store)?;
                    streamed |= group.staged && store == RowStore::Stream;
                    self.copy_group(&group, &mut stage.0, dest, &copy)?;
                    cx0 = cx1 + 1;
                }
            }
        }
        if streamed {
            store_fence();
        }
        Ok(())
    }

    /// Fetch chunks `cidx ..= (cidx[0], cidx[1], cx1)` and plan how their rows are copied.
    #[inline(always)]
    fn group<const N: usize>(
        &self,
        source: &Source<'_>,
        chunks: &Chunks,
        cidx: [i64; 3],
        cx1: i64,
        store: RowStore,
    ) -> Result<Group, ReadError> {
        let c = chunks.c;
        let mut fetched: [Option<Arc<ChunkData>>; GROUP] = Default::default();
        for (k, slot) in fetched.iter_mut().enumerate().take((cx1 - cidx[2] + 1) as usize) {
            *slot = Some(source.chunk(self.level, [cidx[0], cidx[1], cidx[2] + k as i64])?);
        }
        let (lo, mut hi) = self.part(cidx, c);
        hi[2] = self.hi[2].min((cx1 + 1) * c[2]);
        let width = (hi[2] - lo[2]) as usize;
        // Staged: several rows of the group at once, one copy call per chunk.
        let staged = width <= N;
        let stage_len = if store == RowStore::Stream {
            N.min(STREAM_STAGE)
        } else {
            N
        };
        Ok(Group {
            chunks: fetched,
            cidx,
            c,
            dims: chunks.dims,
            lo,
            hi,
            width,
            staged,
            rows_per_pass: if staged { (stage_len / width).max(1) } else { 1 },
            store,
        })
    }

    /// Every destination row of a group, pass by pass.
    #[inline(always)]
    fn copy_group<T: WindowElem>(
        &self,
        g: &Group,
        stage: &mut [T],
        dest: &mut [T],
        copy: &impl Fn(&ChunkData, Span<'_>, &mut [T]) -> bool,
    ) -> Result<(), ReadError> {
        for z in g.lo[0]..g.hi[0] {
            let mut y = g.lo[1];
            while y < g.hi[1] {
                let rows = g.rows_per_pass.min((g.hi[1] - y) as usize);
                self.copy_pass(g, [z, y], rows, stage, dest, copy)?;
                if g.staged {
                    self.write_staged(g, [z, y], rows, stage, dest);
                }
                y += rows as i64;
            }
        }
        Ok(())
    }

    /// Start of the destination row of the group's voxels along x at `(z, y)`.
    #[inline(always)]
    fn row_start(&self, g: &Group, z: i64, y: i64) -> usize {
        let d_first = self.dest_index([z, y, g.lo[2]]);
        (if self.strides[2] < 0 {
            d_first - (g.width as isize - 1)
        } else {
            d_first
        }) as usize
    }

    /// Rows `y .. y + rows` at `z` of every chunk of the group: into the stack buffer when
    /// staged, else in place.
    #[inline(always)]
    fn copy_pass<T: WindowElem>(
        &self,
        g: &Group,
        [z, y]: [i64; 2],
        rows: usize,
        stage: &mut [T],
        dest: &mut [T],
        copy: &impl Fn(&ChunkData, Span<'_>, &mut [T]) -> bool,
    ) -> Result<(), ReadError> {
        let (c, dims) = (g.c, g.dims);
        let [cz, cy, cx0] = g.cidx;
        let reversed = self.strides[2] < 0;
        for (k, chunk) in g.chunks.iter().enumerate() {
            let Some(chunk) = chunk else { break };
            let cx = cx0 + k as i64;
            let a = g.lo[2].max(cx * c[2]);
            let b = g.hi[2].min((cx + 1) * c[2]);
            let src_offset =
                (((z - cz * c[0]) as usize * dims[1] + (y - cy * c[1]) as usize) * dims[2]) + (a - cx * c[2]) as usize;
            let p = if reversed {
                (g.hi[2] - b) as usize
            } else {
                (a - g.lo[2]) as usize
            };
            let len = (b - a) as usize;
            let runs = Runs {
                src_offset,
                src_stride: dims[2],
                len,
                rows,
                dest_stride: g.width,
                reversed,
            };
            let ok = if g.staged {
                copy(chunk, Span::Rows(&runs), &mut stage[p..])
            } else {
                let start = self.row_start(g, z, y) + p;
                let run = &mut dest[start..start + len];
                if g.store == RowStore::Or {
                    or_in_pieces(chunk, runs, run, copy)
                } else {
                    copy(chunk, Span::Rows(&runs), run)
                }
            };
            if !ok {
                let chunk_index = [cz, cy, cx].map(|v| v as u64);
                return Err(chunk_size_error(self.level, chunk_index, chunk.len()).into());
            }
        }
        Ok(())
    }

    /// Write `rows` assembled rows from the stack buffer to the destination (the store chosen
    /// once per pass, the row starts advanced by the y stride).
    #[inline(always)]
    fn write_staged<T: WindowElem>(&self, g: &Group, [z, y]: [i64; 2], rows: usize, stage: &[T], dest: &mut [T]) {
        let first = self.row_start(g, z, y) as isize;
        let width = g.width;
        let rows = (0..rows).map(|r| {
            let start = (first + r as isize * self.strides[1]) as usize;
            (r * width, start)
        });
        match g.store {
            RowStore::Stream => {
                for (s, d) in rows {
                    store_stream(&stage[s..s + width], &mut dest[d..d + width]);
                }
            }
            RowStore::Normal => {
                for (s, d) in rows {
                    dest[d..d + width].copy_from_slice(&stage[s..s + width]);
                }
            }
            RowStore::Or => {
                for (s, d) in rows {
                    T::or_into(&stage[s..s + width], &mut dest[d..d + width]);
                }
            }
        }
    }

    /// Destinations whose x stride is not ±1 (a transposed crop): chunk by chunk, region by
    /// region (see [`crate::kernels::copy`]).
    fn read_regions<T: WindowElem>(
        &self,
        source: &Source<'_>,
        dest: &mut [T],
        copy: impl Fn(&ChunkData, Span<'_>, &mut [T]) -> bool,
    ) -> Result<(), ReadError> {
        let Chunks { c, dims, first, last } = self.chunks();
        for cz in first[0]..=last[0] {
            for cy in first[1]..=last[1] {
                for cx in first[2]..=last[2] {
                    let cidx = [cz, cy, cx];
                    let chunk = source.chunk(self.level, cidx)?;
                    let (lo, hi) = self.part(cidx, c);
                    let from = ChunkBox {
                        dims,
                        lo: [0, 1, 2].map(|a| (lo[a] - cidx[a] * c[a]) as usize),
                    };
                    let region = Region {
                        from,
                        base: self.dest_index(lo),
                        strides: self.strides,
                        shape: [0, 1, 2].map(|a| (hi[a] - lo[a]) as usize),
                    };
                    if !copy(&chunk, Span::Region(&region), dest) {
                        return Err(chunk_size_error(self.level, cidx.map(|v| v as u64), chunk.len()).into());
                    }
                    pool::recycle(chunk);
                }
            }
        }
        Ok(())
    }
}

/// One in-place run of an [`RowStore::Or`] copy (`runs.rows == 1`): piece by piece through a
/// small buffer, then OR-ed into `run`.
#[inline(always)]
fn or_in_pieces<T: WindowElem>(
    chunk: &ChunkData,
    runs: Runs,
    run: &mut [T],
    copy: &impl Fn(&ChunkData, Span<'_>, &mut [T]) -> bool,
) -> bool {
    let len = runs.len;
    let mut piece_buf = [T::ZERO; PIECE];
    let mut ok = true;
    for o in (0..len).step_by(PIECE) {
        let m = PIECE.min(len - o);
        let piece = Runs {
            src_offset: runs.src_offset + o,
            len: m,
            rows: 1,
            dest_stride: m,
            ..runs
        };
        let d = if runs.reversed { len - o - m } else { o };
        ok &= copy(chunk, Span::Rows(&piece), &mut piece_buf[..m]);
        T::or_into(&piece_buf[..m], &mut run[d..d + m]);
    }
    ok
}
