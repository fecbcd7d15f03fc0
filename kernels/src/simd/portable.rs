//! `wide::f32x4`: SSE2 on x86_64, NEON on aarch64, scalar elsewhere, as chosen when `wide`
//! is compiled (it cannot be the fast x86 path under runtime dispatch; see STYLE.md).

use wide::f32x4;

use super::F32Simd;

/// Four f32 lanes through `wide`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable;

// SAFETY: f32x4 is 16 bytes holding four f32; wide uses only baseline instructions.
unsafe impl F32Simd for Portable {
    const LANES: usize = 4;
    type V = f32x4;
    #[inline(always)]
    fn zero(self) -> f32x4 {
        f32x4::ZERO
    }
    #[inline(always)]
    fn splat(self, v: f32) -> f32x4 {
        f32x4::splat(v)
    }
    #[inline(always)]
    fn add(self, a: f32x4, b: f32x4) -> f32x4 {
        a + b
    }
    #[inline(always)]
    fn max(self, a: f32x4, b: f32x4) -> f32x4 {
        a.max(b)
    }
    #[inline(always)]
    fn mul_add(self, a: f32x4, b: f32x4, c: f32x4) -> f32x4 {
        a * b + c
    }
    #[inline(always)]
    unsafe fn broadcast(self, p: *const f32) -> f32x4 {
        // SAFETY: the caller guarantees p is readable.
        f32x4::splat(unsafe { *p })
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> f32x4 {
        // SAFETY: the caller guarantees 4 readable floats at p; read_unaligned has no
        // alignment requirement.
        f32x4::from(unsafe { p.cast::<[f32; 4]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: f32x4) {
        // SAFETY: the caller guarantees 4 writable floats at p.
        unsafe { p.cast::<[f32; 4]>().write_unaligned(v.to_array()) }
    }
}
