//! x86_64 AVX2 + FMA: 8 f32 lanes in a ymm register, 16 registers.

use core::arch::x86_64::{
    __m256, _mm256_add_ps, _mm256_and_si256, _mm256_broadcast_ss, _mm256_castpd_ps,
    _mm256_castps_pd, _mm256_castps_si256, _mm256_castsi256_ps, _mm256_cmpgt_epi32,
    _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_maskload_ps, _mm256_max_ps, _mm256_permute2f128_ps,
    _mm256_permute4x64_pd, _mm256_set1_epi32, _mm256_set1_ps, _mm256_setr_epi32, _mm256_setzero_ps,
    _mm256_shuffle_ps, _mm256_storeu_ps, _mm256_unpackhi_ps, _mm256_unpacklo_ps,
};

use super::{F32Simd, bcast_fma_plain};

/// Proof that the CPU has AVX2 and FMA (construct with [`Avx2Fma::new`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2Fma(());

impl Avx2Fma {
    /// `Some` only when AVX2 and FMA are available and allowed by `CONVNET_MAX_ISA`.
    pub(crate) fn new() -> Option<Self> {
        (crate::Isa::Avx2Fma.is_available()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma"))
        .then_some(Avx2Fma(()))
    }
}

// SAFETY: __m256 is 32 bytes holding eight f32. Every method uses AVX/FMA instructions,
// which exist because a value of Avx2Fma exists (its only constructor checks them).
unsafe impl F32Simd for Avx2Fma {
    const HOISTED_MASK_LOADS: bool = true;
    const LANES: usize = 8;
    type V = __m256;
    #[inline(always)]
    fn zero(self) -> __m256 {
        // SAFETY: AVX is present (self is the proof).
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    fn splat(self, v: f32) -> __m256 {
        // SAFETY: AVX is present (self is the proof).
        unsafe { _mm256_set1_ps(v) }
    }
    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is present (self is the proof).
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn max(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is present (self is the proof).
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: FMA is present (self is the proof).
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn broadcast(self, p: *const f32) -> __m256 {
        // SAFETY: AVX is present; the caller guarantees x + o is readable.
        unsafe { _mm256_broadcast_ss(&*p) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m256 {
        // SAFETY: AVX is present; the caller guarantees 8 readable floats (unaligned load).
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    fn range_mask(self, lo: usize, hi: usize) -> __m256 {
        assert!(lo <= hi && hi <= 8, "range_mask lanes");
        // SAFETY: AVX2 is present (self proves it); register-only intrinsics.
        unsafe {
            let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            // lo <= lane < hi, as lane > lo - 1 and hi > lane (lo, hi <= 8 fit i32).
            let ge_lo = _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(lo as i32 - 1));
            let lt_hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(hi as i32), lane);
            _mm256_castsi256_ps(_mm256_and_si256(ge_lo, lt_hi))
        }
    }
    #[inline(always)]
    unsafe fn load_masked(self, p: *const f32, mask: __m256) -> __m256 {
        // SAFETY: AVX is present; vmaskmovps reads only the lanes whose mask bit is set,
        // which the caller guarantees readable (masked-off lanes never fault).
        unsafe { _mm256_maskload_ps(p, _mm256_castps_si256(mask)) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m256) {
        // SAFETY: AVX is present; the caller guarantees 8 writable floats (unaligned store).
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn even_lanes(self, p: *const f32) -> __m256 {
        // SAFETY: AVX2 is present; the caller guarantees 16 readable floats.
        unsafe {
            let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
            // [a0 a2 b0 b2 | a4 a6 b4 b6], then 64-bit pairs reordered 0, 2, 1, 3.
            let t = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(t)))
        }
    }
    #[inline(always)]
    unsafe fn transpose_store(
        self,
        src: *const f32,
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
        bias: Option<&[f32]>,
        n_out: usize,
        relu: bool,
    ) {
        // SAFETY: AVX is present; reads rows i < 8 of 8 floats at src and writes rows
        // j < n_out of 8 floats at dst (the caller's guarantee).
        unsafe {
            let mut r = [_mm256_setzero_ps(); 8];
            for (i, r) in r.iter_mut().enumerate() {
                *r = _mm256_loadu_ps(src.add(i * src_stride));
            }
            let u = quads(&r);
            let zero = _mm256_setzero_ps();
            for j in 0..n_out {
                let mut col = column(&u, j);
                if let Some(bias) = bias {
                    col = _mm256_add_ps(col, _mm256_set1_ps(bias[j]));
                }
                if relu {
                    col = _mm256_max_ps(col, zero);
                }
                _mm256_storeu_ps(dst.add(j * dst_stride), col);
            }
        }
    }
    #[inline(always)]
    unsafe fn transpose_to_rows(
        self,
        src: *const f32,
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
        rows: &[usize],
    ) {
        let n = rows.len();
        assert!(n <= 8, "transpose_to_rows shape");
        // SAFETY: AVX is present; reads rows i < 8 of 8 floats at src and writes 8 floats at
        // dst + rows[j]*dst_stride, j < n (the caller's guarantee).
        unsafe {
            let mut r = [_mm256_setzero_ps(); 8];
            for (i, r) in r.iter_mut().enumerate() {
                *r = _mm256_loadu_ps(src.add(i * src_stride));
            }
            let u = quads(&r);
            // A constant trip count, so `column` picks its registers at compile time.
            for j in 0..8 {
                if let Some(&row) = rows.get(j) {
                    _mm256_storeu_ps(dst.add(row * dst_stride), column(&u, j));
                }
            }
        }
    }
    #[inline(always)]
    unsafe fn gather_transpose(self, rows: &[*const f32], out: &mut [__m256]) {
        assert!(rows.len() >= 8 && out.len() <= 8, "gather_transpose shape");
        // SAFETY: AVX is present; each rows[i] (i < 8) is readable for 8 floats (the
        // caller's guarantee).
        unsafe {
            let mut r = [_mm256_setzero_ps(); 8];
            for (r, &p) in r.iter_mut().zip(rows) {
                *r = _mm256_loadu_ps(p);
            }
            let u = quads(&r);
            for (j, o) in out.iter_mut().enumerate() {
                *o = column(&u, j);
            }
        }
    }
    #[inline(always)]
    unsafe fn bcast_fma<const NB: usize>(
        self,
        acc: &mut [__m256; NB],
        w: &[__m256; NB],
        x: *const f32,
        o: usize,
    ) {
        match NB {
            // SAFETY (both arms): AVX2 and FMA are present; the caller guarantees x + o is
            // readable.
            1 => unsafe { fma1(&mut acc[0], w[0], x, o) },
            2 => unsafe { fma2(acc, w, x, o) },
            // SAFETY: the caller guarantees x + o is readable.
            _ => unsafe { bcast_fma_plain(self, acc, w, x, o) },
        }
    }
    #[inline(always)]
    unsafe fn bcast_fma_at<const NB: usize, const I: usize>(
        self,
        acc: &mut [__m256; NB],
        w: &[__m256; NB],
        x: *const f32,
    ) {
        match NB {
            // SAFETY (both arms): AVX2 and FMA are present; the caller guarantees x + I is
            // readable.
            1 => unsafe { fma1_at::<NB, I>(acc, w, x) },
            2 => unsafe { fma2_at::<NB, I>(acc, w, x) },
            // SAFETY: the caller's guarantee.
            _ => unsafe { self.bcast_fma(acc, w, x, I) },
        }
    }
}

x86_fma2!("avx2,fma", ymm_reg, __m256, "AVX2 and FMA");

/// `a += bcast(x[o]) * w` as one `asm!` block, so that the narrow tile's 12 accumulators,
/// its weight vector and one broadcast register fit the 16 registers: written with
/// intrinsics, the compiler hoisted broadcasts into more registers and kept one accumulator
/// on the stack, loaded and stored on every reduction step.
///
/// # Safety
/// The CPU has AVX2 and FMA; `x + o` is valid for reading one f32.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn fma1(a: &mut __m256, w: __m256, x: *const f32, o: usize) {
    // SAFETY: reads the one f32 at x + o (the caller's guarantee); `b` is an `out` (not
    // `lateout`) operand, so it is never one of the inputs it overwrites.
    unsafe {
        core::arch::asm!(
            "vbroadcastss {b}, dword ptr [{x} + {o}*4]",
            "vfmadd231ps {a}, {b}, {w}",
            b = out(ymm_reg) _,
            a = inout(ymm_reg) *a,
            w = in(ymm_reg) w,
            x = in(reg) x,
            o = in(reg) o,
            options(nostack, preserves_flags, readonly),
        )
    }
}

/// [`fma1`] reading `x[I]` at the constant displacement `4*I` from `x` (`acc` has at least
/// one entry).
///
/// # Safety
/// The CPU has AVX2 and FMA; `x + I` is valid for reading one f32.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn fma1_at<const NB: usize, const I: usize>(
    acc: &mut [__m256; NB],
    w: &[__m256; NB],
    x: *const f32,
) {
    // SAFETY: as in fma1, at x + I.
    unsafe {
        core::arch::asm!(
            "vbroadcastss {b}, dword ptr [{x} + {d}]",
            "vfmadd231ps {a}, {b}, {w}",
            b = out(ymm_reg) _,
            a = inout(ymm_reg) acc[0],
            w = in(ymm_reg) w[0],
            x = in(reg) x,
            d = const 4 * I,
            options(nostack, preserves_flags, readonly),
        )
    }
}

/// The first two stages of an 8x8 transpose of rows `r`: `u[c]` (c < 4) holds column `c`
/// of rows 0-3 in its low half and column `c + 4` in its high half, `u[4 + c]` the same
/// for rows 4-7; [`column`] finishes one column.
///
/// # Safety
/// AVX must be present.
#[inline(always)]
unsafe fn quads(r: &[__m256; 8]) -> [__m256; 8] {
    // SAFETY: AVX is present (the caller's guarantee); register-only intrinsics.
    unsafe {
        // Pairs: t[2k] = a0 b0 a1 b1 | a4 b4 a5 b5, t[2k + 1] the odd columns.
        let mut t = [_mm256_setzero_ps(); 8];
        for (k, out) in t.iter_mut().enumerate() {
            let (x, y) = (r[k & !1], r[k | 1]);
            *out = if k % 2 == 0 {
                _mm256_unpacklo_ps(x, y)
            } else {
                _mm256_unpackhi_ps(x, y)
            };
        }
        // Quads: u[4q + c] = column c | column c + 4 of rows 4q..4q+3.
        let mut u = [_mm256_setzero_ps(); 8];
        for (k, out) in u.iter_mut().enumerate() {
            let (q, c) = (k / 4, k % 4);
            let (x, y) = (t[4 * q + (c / 2)], t[4 * q + 2 + (c / 2)]);
            *out = if c % 2 == 0 {
                _mm256_shuffle_ps::<0x44>(x, y)
            } else {
                _mm256_shuffle_ps::<0xEE>(x, y)
            };
        }
        u
    }
}

/// Column `j < 8` of the transpose [`quads`] started.
///
/// # Safety
/// AVX must be present.
#[inline(always)]
unsafe fn column(u: &[__m256; 8], j: usize) -> __m256 {
    // SAFETY: AVX is present (the caller's guarantee); register-only intrinsics.
    unsafe {
        if j < 4 {
            _mm256_permute2f128_ps::<0x20>(u[j], u[4 + j])
        } else {
            _mm256_permute2f128_ps::<0x31>(u[j - 4], u[j])
        }
    }
}
