//! Task parallelism and per-thread scratch shared by the kernels.
//!
//! Kernels split work into tasks whose boundaries depend only on the geometry, never on the
//! thread count, and each output element is produced by exactly one task in a fixed order:
//! that is what makes results bitwise identical for any number of threads. (Three
//! exceptions, whose results do not depend on the split: Winograd with large transformed
//! filters splits its tiles or channel blocks by the threads, and a tile's sums do not
//! depend on either, see `winograd/mod.rs`; the column form slices its channel tiles so the
//! threads share them evenly, each channel's sums the same in any slice, see
//! `direct/columns.rs`; and the pointwise form's weight transpose, a copy, shares a large
//! group's rows among the threads, see `direct/pointwise.rs`.)

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(feature = "rayon")]
mod team;

/// Runs `f(i)` once for each `i` in `0..tasks`, in parallel when the `rayon` feature is on
/// and the current rayon pool has more than one thread: on the spinning team of
/// `parallel/team.rs` when it is free, else on the rayon pool. A call made inside one of
/// the team's tasks runs serially, as every worker is already busy.
pub fn for_each_task<F: Fn(usize) + Send + Sync>(tasks: usize, f: F) {
    #[cfg(feature = "rayon")]
    {
        let workers = threads();
        if tasks < 2 || workers < 2 || team::region_workers().is_some() {
            (0..tasks).for_each(f);
        } else if !team::run(tasks, workers, &f) {
            use rayon::prelude::*;
            (0..tasks).into_par_iter().for_each(f);
        }
    }
    #[cfg(not(feature = "rayon"))]
    (0..tasks).for_each(f);
}

/// Threads `for_each_task` spreads work over: the rayon pool's size (inside a team task,
/// the team region's), 1 without rayon.
pub(crate) fn threads() -> usize {
    #[cfg(feature = "rayon")]
    {
        team::region_workers().unwrap_or_else(rayon::current_num_threads)
    }
    #[cfg(not(feature = "rayon"))]
    1
}

/// The base of a slice whose elements [`for_each_mut`]'s tasks take one each.
struct Items<T>(*mut T);

// SAFETY: only `for_each_mut` makes one, and each of its tasks reaches a distinct element
// through it; `T: Send` lets that element be used on another thread.
unsafe impl<T: Send> Sync for Items<T> {}

impl<T> Items<T> {
    /// Element `i`.
    ///
    /// # Safety
    /// `self.0` points to a live slice of more than `i` elements, and no other reference to
    /// element `i` exists while this one lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self, i: usize) -> &mut T {
        // SAFETY: the caller's contract.
        unsafe { &mut *self.0.add(i) }
    }
}

/// Runs `f(i, item)` for every item, in parallel like [`for_each_task`].
pub fn for_each_mut<T: Send, F: Fn(usize, &mut T) + Send + Sync>(items: &mut [T], f: F) {
    let n = items.len();
    let base = Items(items.as_mut_ptr());
    // SAFETY: `for_each_task` runs each `i < n` exactly once, so each element is borrowed by
    // one task only, while `items` stays mutably borrowed for the whole call.
    for_each_task(n, |i| f(i, unsafe { base.get(i) }));
}

static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);

/// The largest scratch, in floats, any thread of this process has asked for so far.
pub fn scratch_high_water() -> usize {
    HIGH_WATER.load(Ordering::Relaxed)
}

thread_local! {
    /// Buffers this thread has finished with, kept for its next `with_scratch` calls.
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    /// The same for index buffers.
    static INDEX_POOL: RefCell<Vec<Vec<usize>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept per thread; more nesting than this just allocates.
const POOL_KEEP: usize = 4;

/// Bytes to which scratch slices are aligned: one cache line, so a kernel's full-vector
/// loads and stores of a buffer it fills from the start (packed operands, tile buffers)
/// never straddle two lines. The allocator only promises 16 bytes, and a 64-byte AVX-512
/// load at 16 bytes past a line touches two.
const SCRATCH_ALIGN: usize = 64;

/// The index of the first [`SCRATCH_ALIGN`]-aligned element of `buf`, if it is within the
/// slack of `SCRATCH_ALIGN` bytes the callers allocate; else 0 (`align_offset` may decline,
/// and then the slice just starts unaligned).
fn aligned_start<T>(buf: &[T]) -> usize {
    let slack = SCRATCH_ALIGN / std::mem::size_of::<T>().max(1);
    match buf.as_ptr().align_offset(SCRATCH_ALIGN) {
        off if off <= slack => off,
        _ => 0,
    }
}

/// A copy of a slice of floats that starts on a cache line (see [`SCRATCH_ALIGN`]): the
/// weights a plan prepares once and its kernels then load whole vectors of on every call.
pub(crate) struct AlignedVec {
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

impl AlignedVec {
    pub(crate) fn from_slice(data: &[f32]) -> Self {
        let mut buf = vec![0.0; data.len() + SCRATCH_ALIGN / std::mem::size_of::<f32>()];
        let start = aligned_start(&buf);
        buf[start..start + data.len()].copy_from_slice(data);
        AlignedVec {
            buf,
            start,
            len: data.len(),
        }
    }
}

impl std::ops::Deref for AlignedVec {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl std::fmt::Debug for AlignedVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedVec({} floats)", self.len)
    }
}

/// Takes a buffer from `pool` with room for `len` elements from its first
/// [`SCRATCH_ALIGN`]-aligned one (the smallest that fits, else the largest, grown), runs `f`
/// on those `len` elements and gives it back.
fn with_pooled<T: Copy + Default, R>(
    pool: &'static std::thread::LocalKey<RefCell<Vec<Vec<T>>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    // Elements of slack that any start address needs to reach an aligned one.
    let slack = SCRATCH_ALIGN / std::mem::size_of::<T>().max(1);
    let want = len + slack;
    let mut buf = pool
        .with(|pool| {
            let mut pool = pool.borrow_mut();
            let fit = (0..pool.len())
                .filter(|&i| pool[i].len() >= want)
                .min_by_key(|&i| pool[i].len());
            let pick = fit.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].len()));
            pick.map(|i| pool.swap_remove(i))
        })
        .unwrap_or_default();
    if buf.len() < want {
        buf.resize(want, T::default());
    }
    let start = aligned_start(&buf);
    let r = f(&mut buf[start..start + len]);
    pool.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOL_KEEP {
            pool.push(buf);
        }
    });
    r
}

/// Calls `f` with a scratch buffer of exactly `len` floats (contents unspecified). Buffers
/// come from a per-thread pool and go back to it, so steady-state calls allocate (and
/// page-fault) nothing, and nested calls on one thread get distinct buffers.
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    HIGH_WATER.fetch_max(len, Ordering::Relaxed);
    with_pooled(&POOL, len, f)
}

/// [`with_scratch`] for index lists (offsets of taps, pixels, rows).
pub fn with_index_scratch<R>(len: usize, f: impl FnOnce(&mut [usize]) -> R) -> R {
    with_pooled(&INDEX_POOL, len, f)
}

/// Runs `f(i, chunk)` on the consecutive `chunk`-long pieces of `data` (the last may be
/// shorter), in parallel like [`for_each_task`].
pub fn for_each_chunk_mut<F: Fn(usize, &mut [f32]) + Send + Sync>(
    data: &mut [f32],
    chunk: usize,
    f: F,
) {
    if chunk == 0 {
        return;
    }
    let len = data.len();
    let out = SharedMut::new(data);
    for_each_task(len.div_ceil(chunk), |i| {
        let start = i * chunk;
        // SAFETY: task `i` alone takes elements `start..start + chunk` (clipped to the
        // buffer), and the chunks are disjoint.
        f(i, unsafe { out.slice_mut(start, chunk.min(len - start)) })
    });
}

/// A raw output pointer that tasks writing *disjoint* elements may share across threads.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: SharedMut is only a pointer + length; every user writes through it to elements no
// other task touches (stated at each use), while the `&mut` it came from is borrowed for the
// whole parallel region.
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    pub(crate) fn new(out: &mut [f32]) -> Self {
        SharedMut {
            ptr: out.as_mut_ptr(),
            len: out.len(),
        }
    }
    /// Elements in the shared buffer.
    pub(crate) fn len(self) -> usize {
        self.len
    }
    /// Elements `offset..offset + len` as a slice (checked to lie in the buffer).
    ///
    /// # Safety
    /// No other reference to these elements may exist while the slice lives.
    pub(crate) unsafe fn slice_mut<'a>(self, offset: usize, len: usize) -> &'a mut [f32] {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "range {offset}+{len} past the shared buffer ({})",
            self.len
        );
        // SAFETY: the range lies in the allocation (asserted); the caller guarantees it is
        // not aliased.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }
    /// The pointer to element `offset`, start of `rows` rows of `len` elements `stride`
    /// apart, all checked to lie in the buffer.
    pub(crate) fn rows(self, offset: usize, stride: usize, rows: usize, len: usize) -> *mut f32 {
        let end = rows
            .saturating_sub(1)
            .checked_mul(stride)
            .and_then(|o| o.checked_add(offset))
            .and_then(|o| o.checked_add(len));
        assert!(
            rows == 0 || end.is_some_and(|end| end <= self.len),
            "{rows} rows of {len} from {offset} past the shared buffer ({})",
            self.len
        );
        self.at(offset)
    }
    /// The pointer to element `offset`, which must be `<= len`.
    #[inline]
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        assert!(
            offset <= self.len,
            "offset {offset} past the shared buffer ({})",
            self.len
        );
        // SAFETY: offset <= len keeps the pointer inside (or one past) the allocation.
        unsafe { self.ptr.add(offset) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "rayon")]
    fn nested_regions_run_serially_and_see_the_outer_threads() {
        use std::sync::atomic::AtomicU32;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        // Other tests may hold the team, and then regions go to rayon: retry until one ran
        // on it.
        let mut on_team = false;
        for _ in 0..1000 {
            let runs: Vec<AtomicU32> = (0..64 * 8).map(|_| AtomicU32::new(0)).collect();
            let mut seen: Vec<(usize, bool)> = vec![(0, false); 64];
            pool.install(|| {
                for_each_mut(&mut seen, |i, seen| {
                    let team = team::region_workers().is_some();
                    *seen = (threads(), team);
                    let outer = std::thread::current().id();
                    for_each_task(8, |j| {
                        let here = std::thread::current().id();
                        assert!(!team || here == outer, "nested task {i}.{j} moved");
                        runs[i * 8 + j].fetch_add(1, Ordering::Relaxed);
                    });
                })
            });
            assert!(seen.iter().all(|&(t, _)| t == 2), "{seen:?}");
            assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1));
            on_team = seen.iter().all(|&(_, team)| team);
            if on_team {
                break;
            }
        }
        assert!(on_team, "no region ran on the team");
        let mut chunks = vec![0.0f32; 1001];
        pool.install(|| for_each_chunk_mut(&mut chunks, 10, |i, c| c.fill(i as f32 + 1.0)));
        for (k, v) in chunks.iter().enumerate() {
            assert_eq!(*v, (k / 10) as f32 + 1.0, "element {k}");
        }
    }

    #[test]
    fn scratch_is_cache_line_aligned_and_exact() {
        // Lengths that make the allocator hand out differently placed buffers (and reuse
        // pooled ones of nearly the right size), nested so each level takes another buffer
        // from the pool.
        for len in [0, 1, 3, 17, 1000, 40_000, 300_000] {
            with_scratch(len, |a| {
                assert_eq!(a.len(), len);
                assert_eq!(a.as_ptr() as usize % SCRATCH_ALIGN, 0, "outer, len {len}");
                with_scratch(len + 5, |b| {
                    assert_eq!(b.len(), len + 5);
                    assert_eq!(b.as_ptr() as usize % SCRATCH_ALIGN, 0, "inner, len {len}");
                });
            });
        }
        for len in [0, 1, 5, 1000, 300_000] {
            let data: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let a = AlignedVec::from_slice(&data);
            assert_eq!(&a[..], &data[..]);
            assert_eq!(
                a.as_ptr() as usize % SCRATCH_ALIGN,
                0,
                "AlignedVec, len {len}"
            );
        }
        with_index_scratch(9, |i| {
            assert_eq!(i.len(), 9);
            assert_eq!(i.as_ptr() as usize % SCRATCH_ALIGN, 0);
        });
    }
}
