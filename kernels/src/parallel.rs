//! Task parallelism and per-thread scratch shared by the kernels.
//!
//! Kernels split work into tasks whose boundaries depend only on the geometry, never on the
//! thread count, and each output element is produced by exactly one task in a fixed order:
//! that is what makes results bitwise identical for any number of threads.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `f(0..tasks)`, in parallel on the current rayon pool when the `rayon` feature is on.
pub fn for_each_task<F: Fn(usize) + Send + Sync>(tasks: usize, f: F) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..tasks).into_par_iter().for_each(f);
    }
    #[cfg(not(feature = "rayon"))]
    (0..tasks).for_each(f);
}

/// Runs `f(i, item)` for every item, in parallel like [`for_each_task`].
pub fn for_each_mut<T: Send, F: Fn(usize, &mut T) + Send + Sync>(items: &mut [T], f: F) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        items.par_iter_mut().enumerate().for_each(|(i, t)| f(i, t));
    }
    #[cfg(not(feature = "rayon"))]
    items.iter_mut().enumerate().for_each(|(i, t)| f(i, t));
}

static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);

/// The largest scratch, in floats, any thread of this process has asked for so far.
pub fn scratch_high_water() -> usize {
    HIGH_WATER.load(Ordering::Relaxed)
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with this thread's scratch buffer of exactly `len` floats (contents unspecified).
/// The buffer grows to the largest `len` asked on this thread and is reused, so steady-state
/// calls allocate nothing. Re-entrant calls on one thread get a fresh buffer.
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    HIGH_WATER.fetch_max(len, Ordering::Relaxed);
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
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
    /// The pointer to element `offset`, which must be `<= len`.
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
