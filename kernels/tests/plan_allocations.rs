//! A prepared forward pass allocates nothing once warm: scratch comes from per-thread pools.
//! Counted with a global allocator wrapper; this file holds one test so no other test
//! allocates concurrently. On one thread the guarantee is exact. With several threads a
//! worker may still grow its pool the first time it happens to take a larger task, so the
//! count is not deterministic there and is not asserted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use convnet_kernels::testing::{DataKind, fill};
use convnet_kernels::{Algorithm, Conv2d, Padding, WinogradTile};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn warm_prepared_forward_allocates_nothing() {
    // The second conv has more output channels than pixels: the direct kernel's column
    // form on 8- and 16-lane ISAs; the third is 1x1: its pointwise form.
    //
    // One pool for the whole test: a dropped pool's worker allocates once as it exits
    // (crossbeam-epoch hands its thread's garbage bag to the global queue), at a moment of
    // the scheduler's choosing, which may fall inside the next shape's counted calls.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    // Likewise the global pool: `conv.plan` runs outside `pool`, so its thread count is the
    // global pool's, which starts its workers on first use, and they allocate as they start,
    // also at moments of the scheduler's choosing. A broadcast returns once every one of
    // them has run. (The kernels' own team starts its helpers synchronously.)
    rayon::broadcast(|_| ());
    for (n, c, hw, k, r) in [(2, 32, 20, 48, 3), (1, 64, 4, 96, 3), (1, 16, 16, 24, 1)] {
        let conv = Conv2d::builder(n, c, hw, hw, k, [r, r])
            .padding(Padding::Same)
            .build()
            .unwrap();
        let x = fill(1, conv.input_len(), DataKind::Real);
        let w = fill(2, conv.weight_len(), DataKind::Real);
        let b = fill(3, conv.bias_len(), DataKind::Real);
        let mut y = vec![0.0; conv.output_len()];
        for algo in [Algorithm::Direct, Algorithm::Winograd(WinogradTile::F4)] {
            if r != 3 && algo != Algorithm::Direct {
                continue;
            }
            let plan = conv.plan(algo, &w).unwrap();
            pool.install(|| {
                for _ in 0..3 {
                    plan.forward(&x, Some(&b), &mut y).unwrap();
                }
                let before = ALLOCATIONS.load(Ordering::Relaxed);
                for _ in 0..5 {
                    plan.forward(&x, Some(&b), &mut y).unwrap();
                }
                let allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;
                assert_eq!(
                    allocs, 0,
                    "{algo:?} on {n}x{c}x{hw}x{hw} -> {k}: {allocs} allocations in 5 warm \
                     forward calls"
                );
            });
        }
    }
}
