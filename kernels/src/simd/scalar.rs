//! Plain f32, one lane: the baseline every CPU has.

use super::F32Simd;

/// One f32 lane, no SIMD.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scalar;

// SAFETY: V = f32 is one f32; no special instructions.
unsafe impl F32Simd for Scalar {
    const LANES: usize = 1;
    type V = f32;
    #[inline(always)]
    fn zero(self) -> f32 {
        0.0
    }
    #[inline(always)]
    fn splat(self, v: f32) -> f32 {
        v
    }
    #[inline(always)]
    fn add(self, a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    fn max(self, a: f32, b: f32) -> f32 {
        a.max(b)
    }
    #[inline(always)]
    fn mul_add(self, a: f32, b: f32, c: f32) -> f32 {
        // Not f32::mul_add: without hardware FMA that is a slow libm call.
        a * b + c
    }
    #[inline(always)]
    unsafe fn broadcast(self, p: *const f32) -> f32 {
        // SAFETY: the caller guarantees p is readable.
        unsafe { *p }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> f32 {
        // SAFETY: the caller guarantees p is readable.
        unsafe { *p }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: f32) {
        // SAFETY: the caller guarantees p is writable.
        unsafe { *p = v }
    }
}
