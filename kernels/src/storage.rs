//! Storage types: f32, and f16 / bf16 with f32 accumulation.
//!
//! The public passes are generic over [`Element`]. f32 slices go straight to the kernels.
//! f16 and bf16 slices are widened to f32 in blocks (per-thread scratch), computed in f32,
//! and narrowed once with round-to-nearest-even, so the only extra error is one rounding of
//! each input (which the contract's reference sees too) and one of each output.
//!
//! Conversions are vectorised: f16 through `half` (F16C, detected at run time), bf16 here
//! with AVX2 (widening is a 16-bit shift; narrowing adds `0x7fff + lsb` for round-to-nearest-
//! even and keeps NaNs quiet), with a scalar fallback that `half` checks against in tests.

use half::{bf16, f16, slice::HalfFloatSliceExt};

use crate::Isa;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// A storage type the passes accept: `f32`, `half::f16` or `half::bf16`.
pub trait Element: Copy + Send + Sync + 'static + sealed::Sealed {
    /// `f32`, `f16`, `bf16`.
    const NAME: &'static str;
    /// Machine epsilon of the type (`2^-23`, `2^-10`, `2^-7`).
    const EPSILON: f64;
    /// Smallest positive subnormal (the absolute rounding step near zero).
    const MIN_SUBNORMAL: f64;
    /// The slice itself when this is f32.
    fn as_f32(s: &[Self]) -> Option<&[f32]>;
    /// The slice itself when this is f32.
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]>;
    /// Widens `src` into `dst` (same length).
    fn widen(src: &[Self], dst: &mut [f32]);
    /// Narrows `src` into `dst` (same length), rounding to nearest even.
    fn narrow(src: &[f32], dst: &mut [Self]);
    /// One value widened.
    fn to_f32(self) -> f32;
    /// One value narrowed (round to nearest even).
    fn from_f32(v: f32) -> Self;
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    const EPSILON: f64 = f32::EPSILON as f64;
    const MIN_SUBNORMAL: f64 = 1.401298464324817e-45;
    fn as_f32(s: &[f32]) -> Option<&[f32]> {
        Some(s)
    }
    fn as_f32_mut(s: &mut [f32]) -> Option<&mut [f32]> {
        Some(s)
    }
    fn widen(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn narrow(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> f32 {
        v
    }
}

impl Element for f16 {
    const NAME: &'static str = "f16";
    const EPSILON: f64 = 9.765625e-4;
    const MIN_SUBNORMAL: f64 = 5.960464477539063e-8;
    fn as_f32(_: &[f16]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [f16]) -> Option<&mut [f32]> {
        None
    }
    fn widen(src: &[f16], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
    fn narrow(src: &[f32], dst: &mut [f16]) {
        dst.convert_from_f32_slice(src);
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(v: f32) -> f16 {
        f16::from_f32(v)
    }
}

impl Element for bf16 {
    const NAME: &'static str = "bf16";
    const EPSILON: f64 = 7.8125e-3;
    const MIN_SUBNORMAL: f64 = 9.183549615799121e-41;
    fn as_f32(_: &[bf16]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [bf16]) -> Option<&mut [f32]> {
        None
    }
    fn widen(src: &[bf16], dst: &mut [f32]) {
        bf16_widen(src, dst);
    }
    fn narrow(src: &[f32], dst: &mut [bf16]) {
        bf16_narrow(src, dst);
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(v: f32) -> bf16 {
        bf16::from_f32(v)
    }
}

/// bf16 -> f32: the bf16 bits are the high half of the f32.
pub fn bf16_widen(src: &[bf16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2Fma && is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above); the lengths are equal (asserted).
        return unsafe { x86::bf16_widen_avx2(src, dst) };
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f32::from_bits(u32::from(s.to_bits()) << 16);
    }
}

/// f32 -> bf16 with round-to-nearest-even; NaN stays NaN (quiet).
pub fn bf16_narrow(src: &[f32], dst: &mut [bf16]) {
    assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2Fma && is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above); the lengths are equal (asserted).
        return unsafe { x86::bf16_narrow_avx2(src, dst) };
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = bf16::from_bits(narrow_bits(s.to_bits()));
    }
}

/// The bf16 bits of an f32: round to nearest even, NaN forced quiet.
fn narrow_bits(bits: u32) -> u16 {
    if (bits & 0x7fff_ffff) > 0x7f80_0000 {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use half::bf16;

    /// # Safety
    /// AVX2 must be present; `src.len() == dst.len()`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn bf16_widen_avx2(src: &[bf16], dst: &mut [f32]) {
        let n = src.len() / 8 * 8;
        for i in (0..n).step_by(8) {
            // SAFETY: i + 8 <= n <= src.len() = dst.len(); unaligned loads and stores.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
                let w = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h));
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_castsi256_ps(w));
            }
        }
        for i in n..src.len() {
            dst[i] = f32::from_bits(u32::from(src[i].to_bits()) << 16);
        }
    }

    /// # Safety
    /// AVX2 must be present; `src.len() == dst.len()`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn bf16_narrow_avx2(src: &[f32], dst: &mut [bf16]) {
        let n = src.len() / 8 * 8;
        let bias = _mm256_set1_epi32(0x7fff);
        let one = _mm256_set1_epi32(1);
        let abs_mask = _mm256_set1_epi32(0x7fff_ffff);
        let inf = _mm256_set1_epi32(0x7f80_0000);
        let quiet = _mm256_set1_epi32(0x0040_0000);
        for i in (0..n).step_by(8) {
            // SAFETY: i + 8 <= n <= src.len() = dst.len(); unaligned loads and stores.
            unsafe {
                let bits = _mm256_castps_si256(_mm256_loadu_ps(src.as_ptr().add(i)));
                let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), one);
                let rounded = _mm256_add_epi32(bits, _mm256_add_epi32(bias, lsb));
                // NaN: keep the payload's top bits and set the quiet bit instead of rounding.
                let nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, abs_mask), inf);
                let kept = _mm256_or_si256(bits, quiet);
                let out = _mm256_srli_epi32::<16>(_mm256_blendv_epi8(rounded, kept, nan));
                // 8 x u32 (each < 2^16) -> 8 x u16: pack within lanes, then fix the lane order.
                let packed = _mm256_packus_epi32(out, out);
                let ordered = _mm256_permute4x64_epi64::<0b1000>(packed);
                _mm_storeu_si128(
                    dst.as_mut_ptr().add(i).cast(),
                    _mm256_castsi256_si128(ordered),
                );
            }
        }
        for i in n..src.len() {
            dst[i] = bf16::from_bits(super::narrow_bits(src[i].to_bits()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every bit pattern class: zeros, subnormals, normals near ties, max, inf, NaN.
    fn samples() -> Vec<f32> {
        let mut v: Vec<f32> = (0..20_000u32)
            .map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761)))
            .collect();
        v.extend([
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ]);
        v.extend((0..64u32).map(|i| f32::from_bits(0x3f80_8000 + i * 0x10000))); // exact ties
        v.extend((0..64u32).map(|i| f32::from_bits(0x3f80_7fff + i * 0x10000)));
        v.push(f32::from_bits(1)); // smallest subnormal
        v
    }

    #[test]
    fn bf16_conversions_match_half_bit_for_bit() {
        let src = samples();
        let mut narrow = vec![bf16::ZERO; src.len() + 3];
        bf16_narrow(&src, &mut narrow[..src.len()]);
        for (s, d) in src.iter().zip(&narrow) {
            let want = bf16::from_f32(*s);
            if s.is_nan() {
                assert!(d.is_nan(), "{s:?} -> {d:?}");
            } else {
                assert_eq!(d.to_bits(), want.to_bits(), "{:#x}", s.to_bits());
            }
        }
        let mut wide = vec![0.0f32; src.len()];
        bf16_widen(&narrow[..src.len()], &mut wide);
        for (w, n) in wide.iter().zip(&narrow) {
            assert_eq!(w.to_bits(), n.to_f32().to_bits());
        }
    }

    #[test]
    fn f16_conversions_round_to_nearest_even() {
        let src = samples();
        let mut narrow = vec![f16::ZERO; src.len()];
        f16::narrow(&src, &mut narrow);
        for (s, d) in src.iter().zip(&narrow) {
            let want = f16::from_f32(*s);
            assert!(
                d.to_bits() == want.to_bits() || (s.is_nan() && d.is_nan()),
                "{:#x}",
                s.to_bits()
            );
        }
    }
}
