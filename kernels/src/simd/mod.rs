//! The only place that names `core::arch`: one small trait, [`F32Simd`], implemented once
//! per ISA. Kernel bodies are written once, generic over it, and instantiated inside
//! `#[target_feature]` wrappers (matrixmultiply's `kernel_x86_avx::<MA>` pattern).
//!
//! The trait is deliberately tiny — the direct kernel needs only broadcasts, full-width
//! loads and stores, and fused multiply-adds — so that each ISA's part is a handful of
//! one-line intrinsic calls whose correctness can be read off.

mod portable;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86_avx2fma;
#[cfg(target_arch = "x86_64")]
mod x86_avx512f;

pub(crate) use portable::Portable;
pub(crate) use scalar::Scalar;
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_avx2fma::Avx2Fma;
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_avx512f::Avx512F;

/// A vector of `LANES` f32 on one ISA. A value of an implementing type is a proof that the
/// CPU has the instructions (see each type's `new`).
///
/// # Safety
/// For implementors: `V` must be exactly `LANES` contiguous f32 (size `4 * LANES`, no
/// padding), and every method must only use instructions whose presence the value proves.
pub(crate) unsafe trait F32Simd: Copy + Send + Sync + 'static {
    /// f32 lanes per vector.
    const LANES: usize;
    /// The vector type.
    type V: Copy;
    /// All lanes zero.
    fn zero(self) -> Self::V;
    /// `v` in every lane.
    fn splat(self, v: f32) -> Self::V;
    /// `a + b` per lane.
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    /// `max(a, b)` per lane.
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c` per lane (fused where the ISA has FMA).
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `*p` in every lane.
    ///
    /// # Safety
    /// `p` must be valid for reading one f32.
    unsafe fn broadcast(self, p: *const f32) -> Self::V;
    /// `LANES` floats from `p` (unaligned).
    ///
    /// # Safety
    /// `p` must be valid for reading `LANES` f32.
    unsafe fn load(self, p: *const f32) -> Self::V;
    /// `LANES` floats to `p` (unaligned).
    ///
    /// # Safety
    /// `p` must be valid for writing `LANES` f32.
    unsafe fn store(self, p: *mut f32, v: Self::V);
    /// `acc[v] = x[o] * w[v] + acc[v]` for every `v`: one broadcast feeding `NB` fused
    /// multiply-adds, the step of the direct kernel's register tile.
    ///
    /// The x86 levels override it with one `asm!` block per call, so the compiler keeps the
    /// broadcast in a single scratch register: left to itself, LLVM hoists a whole tile's
    /// broadcasts above its FMAs, which needs a register per broadcast and spills
    /// accumulators (12 broadcasts + 24 accumulators + 2 weights > 32 zmm registers).
    ///
    /// # Safety
    /// `x + o` must be valid for reading one f32.
    #[inline(always)]
    unsafe fn bcast_fma<const NB: usize>(
        self,
        acc: &mut [Self::V; NB],
        w: &[Self::V; NB],
        x: *const f32,
        o: usize,
    ) {
        // SAFETY: the caller guarantees x + o is readable.
        let b = unsafe { self.broadcast(x.add(o)) };
        for (a, w) in acc.iter_mut().zip(w) {
            *a = self.mul_add(b, *w, *a);
        }
    }
}
