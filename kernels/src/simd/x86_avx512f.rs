//! x86_64 AVX-512F: 16 f32 lanes in a zmm register, 32 registers.

use core::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_max_ps, _mm512_set1_ps,
    _mm512_setzero_ps, _mm512_storeu_ps,
};

use super::F32Simd;

/// Proof that the CPU has AVX-512F (construct with [`Avx512F::new`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512F(());

impl Avx512F {
    /// `Some` only when AVX-512F is available and allowed by `CONVNET_MAX_ISA`.
    pub(crate) fn new() -> Option<Self> {
        (crate::Isa::Avx512F.is_available() && is_x86_feature_detected!("avx512f"))
            .then_some(Avx512F(()))
    }
}

// SAFETY: __m512 is 64 bytes holding sixteen f32. Every method uses AVX-512F instructions,
// which exist because a value of Avx512F exists (its only constructor checks them).
unsafe impl F32Simd for Avx512F {
    const LANES: usize = 16;
    type V = __m512;
    #[inline(always)]
    fn zero(self) -> __m512 {
        // SAFETY: AVX-512F is present (self is the proof).
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    fn splat(self, v: f32) -> __m512 {
        // SAFETY: AVX-512F is present (self is the proof).
        unsafe { _mm512_set1_ps(v) }
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (self is the proof).
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (self is the proof).
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (self is the proof).
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn broadcast(self, p: *const f32) -> __m512 {
        // SAFETY: AVX-512F is present; the caller guarantees p is readable.
        unsafe { _mm512_set1_ps(*p) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m512 {
        // SAFETY: AVX-512F is present; the caller guarantees 16 readable floats (unaligned).
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m512) {
        // SAFETY: AVX-512F is present; the caller guarantees 16 writable floats (unaligned).
        unsafe { _mm512_storeu_ps(p, v) }
    }
}
