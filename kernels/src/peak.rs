//! The machine's f32 FMA peak, measured in-process: independent FMA chains, enough of them
//! to cover the latency of every FMA port, on one or all threads. Benchmarks report their
//! GFLOP/s as a percentage of this figure measured in the same run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::Isa;
use crate::simd::{F32Simd, Portable, Scalar};

/// Independent accumulators: 4-cycle FMA latency x 2 ports = 8 in flight; 12 leaves slack.
const CHAINS: usize = 12;
/// FMAs per chain per timed run: about 5 ms at 2.5 GHz, so spawning the threads costs
/// well under 1% of a run.
const ITERS: u64 = 1 << 21;

#[inline(always)]
fn fma_chains<S: F32Simd>(s: S, iters: u64) -> f32 {
    let mut acc = [s.zero(); CHAINS];
    // Opaque operands, so the compiler can neither fold nor shorten the chains.
    let (one, tiny) = (black_box(1.0f32), black_box(1e-20f32));
    // SAFETY: both pointers are to local f32 values.
    let (a, b) = unsafe { (s.broadcast(&one), s.broadcast(&tiny)) };
    for _ in 0..iters {
        for c in acc.iter_mut() {
            *c = s.mul_add(a, *c, b);
        }
    }
    // Every chain feeds the result, so none is dead code.
    let mut sum = 0.0;
    let mut out = [0.0f32; 16];
    for c in acc {
        // SAFETY: out holds 16 >= LANES floats.
        unsafe { s.store(out.as_mut_ptr(), c) };
        sum += out[0];
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn chains_avx2fma(s: crate::simd::Avx2Fma, iters: u64) -> f32 {
    fma_chains(s, iters)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn chains_avx512f(s: crate::simd::Avx512F, iters: u64) -> f32 {
    fma_chains(s, iters)
}

/// Runs the FMA loop of `isa` for `iters` per chain; returns the FLOPs done, or `None` when
/// this process cannot run `isa`.
fn run(isa: Isa, iters: u64) -> Option<u64> {
    let lanes = match isa {
        Isa::Scalar => {
            black_box(fma_chains(Scalar, iters));
            1
        }
        Isa::Portable => {
            black_box(fma_chains(Portable, iters));
            4
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => {
            let s = crate::simd::Avx2Fma::new()?;
            // SAFETY: s proves AVX2 and FMA.
            black_box(unsafe { chains_avx2fma(s, iters) });
            8
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512F => {
            let s = crate::simd::Avx512F::new()?;
            // SAFETY: s proves AVX-512F.
            black_box(unsafe { chains_avx512f(s, iters) });
            16
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => return None,
    };
    Some(2 * lanes * CHAINS as u64 * iters)
}

/// Peak f32 GFLOP/s of `isa` on `threads` threads (each running its own FMA chains), the best
/// of repeated runs over about `budget`. `None` when this process cannot run `isa`.
pub fn measure(isa: Isa, threads: usize, budget: Duration) -> Option<f64> {
    run(isa, 1)?;
    let threads = threads.max(1);
    let mut best = 0.0f64;
    let start = Instant::now();
    while start.elapsed() < budget || best == 0.0 {
        let t0 = Instant::now();
        let flops: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| scope.spawn(|| run(isa, ITERS).unwrap_or(0)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        best = best.max(flops as f64 / t0.elapsed().as_secs_f64() / 1e9);
    }
    Some(best)
}
