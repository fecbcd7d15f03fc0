//! x86_64 AVX-512F: 16 f32 lanes in a zmm register, 32 registers.

use core::arch::asm;
use core::arch::x86_64::{
    __m512, _mm256_castps_pd, _mm256_loadu_ps, _mm512_add_ps, _mm512_castpd_ps, _mm512_castps_pd,
    _mm512_castps256_ps512, _mm512_fmadd_ps, _mm512_insertf64x4, _mm512_loadu_ps,
    _mm512_loadu_si512, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_max_ps,
    _mm512_permutex2var_ps, _mm512_permutexvar_ps, _mm512_set_epi32, _mm512_set1_ps,
    _mm512_setzero_ps, _mm512_shuffle_f32x4, _mm512_shuffle_ps, _mm512_storeu_ps,
    _mm512_unpackhi_ps, _mm512_unpacklo_ps,
};

use super::{F32Simd, bcast_fma_plain, spread_scalar, spread_via_block};

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
    const MASKED_LOADS: bool = true;
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
        // SAFETY: AVX-512F is present; the caller guarantees x + o is readable.
        unsafe { _mm512_set1_ps(*p) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m512 {
        // SAFETY: AVX-512F is present; the caller guarantees 16 readable floats (unaligned).
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_range(self, p: *const f32, lo: usize, hi: usize) -> __m512 {
        debug_assert!(lo <= hi && hi <= 16);
        let mask = ((1u32 << hi) - (1u32 << lo)) as u16;
        // SAFETY: AVX-512F is present; a masked load touches only the lanes lo..hi of its
        // mask (the others do not fault), which the caller guarantees readable.
        unsafe { _mm512_maskz_loadu_ps(mask, p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m512) {
        // SAFETY: AVX-512F is present; the caller guarantees 16 writable floats (unaligned).
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load_halves(self, lo: *const f32, hi: *const f32) -> __m512 {
        // SAFETY: AVX-512F is present; the caller guarantees 8 readable floats at lo and at
        // hi (unaligned). The insert is through the f64 view (`vinsertf64x4` is AVX-512F;
        // `vinsertf32x8` would need AVX-512DQ): the same bits.
        unsafe {
            let low = _mm512_castps256_ps512(_mm256_loadu_ps(lo));
            let high = _mm256_castps_pd(_mm256_loadu_ps(hi));
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(low), high))
        }
    }
    #[inline(always)]
    unsafe fn even_lanes(self, p: *const f32) -> __m512 {
        // SAFETY: AVX-512F is present; the caller guarantees 32 readable floats.
        unsafe {
            let (a, b) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
            // Index i < 16 picks a[i], 16 + i picks b[i]: the even floats of a then b.
            let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
            _mm512_permutex2var_ps(a, even, b)
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
        // SAFETY: AVX-512F is present; reads rows i < 16 of 16 floats at src and writes
        // rows j < n_out of 16 floats at dst (the caller's guarantee).
        unsafe {
            let v = transpose_halves(src, src_stride);
            for j in 0..n_out {
                let col = epilogue(column(&v, j), bias.map(|b| b[j]), relu);
                _mm512_storeu_ps(dst.add(j * dst_stride), col);
            }
        }
    }
    #[inline(always)]
    unsafe fn gather_transpose(self, rows: &[*const f32], out: &mut [__m512]) {
        assert!(
            rows.len() >= 16 && out.len() <= 16,
            "gather_transpose shape"
        );
        // SAFETY: AVX-512F is present; each rows[i] (i < 16) is readable for 16 floats (the
        // caller's guarantee).
        unsafe {
            let mut r = [_mm512_setzero_ps(); 16];
            for (r, &p) in r.iter_mut().zip(rows) {
                *r = _mm512_loadu_ps(p);
            }
            let v = halves(&r);
            for (j, o) in out.iter_mut().enumerate() {
                *o = column(&v, j);
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
        assert!(n <= 16, "transpose_to_rows shape");
        // SAFETY: AVX-512F is present; reads rows i < 16 of 16 floats at src and writes 16
        // floats at dst + rows[j]*dst_stride, j < n (the caller's guarantee).
        unsafe {
            let v = transpose_halves(src, src_stride);
            // A constant trip count, so `column` picks its registers at compile time.
            for j in 0..16 {
                if let Some(&r) = rows.get(j) {
                    _mm512_storeu_ps(dst.add(r * dst_stride), column(&v, j));
                }
            }
        }
    }
    #[inline(always)]
    unsafe fn transpose_store_spread(
        self,
        src: *const f32,
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
        step: usize,
        m: usize,
        bias: Option<&[f32]>,
        n_out: usize,
        relu: bool,
    ) {
        assert!(
            step >= 1 && m <= 16 && n_out <= 16,
            "spread of at most 16 rows and columns, step >= 1"
        );
        if m == 0 || n_out == 0 {
            return;
        }
        if step > 4 {
            // Wide steps leave a float or two per vector: scalar stores do as well.
            // SAFETY: the caller's guarantee, passed on.
            return unsafe {
                spread_via_block(
                    self, src, src_stride, dst, dst_stride, step, m, bias, n_out, relu,
                )
            };
        }
        let masks = spread_masks(step, m);
        // SAFETY: AVX-512F is present; reads rows i < 16 of 16 floats at src (the caller's
        // guarantee); column j's spread writes dst + j*dst_stride + i*step for i < m only,
        // writable by the caller's guarantee (see `spread_segments`).
        unsafe {
            let v = transpose_halves(src, src_stride);
            for j in 0..n_out {
                let col = epilogue(column(&v, j), bias.map(|b| b[j]), relu);
                spread_segments(dst.add(j * dst_stride), col, step, &masks);
            }
        }
    }
    #[inline(always)]
    unsafe fn store_spread(self, p: *mut f32, v: __m512, step: usize, m: usize) {
        assert!(
            step >= 1 && m <= 16,
            "spread of at most 16 lanes, step >= 1"
        );
        if m == 0 {
            return;
        }
        if step > 4 {
            // Wide steps leave a float or two per segment: scalar stores do as well.
            // SAFETY: the caller's guarantee, passed on.
            return unsafe { spread_scalar(self, p, v, step, m) };
        }
        // SAFETY: AVX-512F is present; writes p + i*step for i < m only, writable by the
        // caller's guarantee (see `spread_segments`).
        unsafe { spread_segments(p, v, step, &spread_masks(step, m)) }
    }
    #[inline(always)]
    unsafe fn bcast_fma<const NB: usize>(
        self,
        acc: &mut [__m512; NB],
        w: &[__m512; NB],
        x: *const f32,
        o: usize,
    ) {
        match NB {
            // SAFETY (both arms): AVX-512F is present; the caller guarantees x + o is readable.
            1 => unsafe { fma1(&mut acc[0], w[0], x, o) },
            2 => unsafe { fma2(acc, w, x, o) },
            // SAFETY: the caller guarantees x + o is readable.
            _ => unsafe { bcast_fma_plain(self, acc, w, x, o) },
        }
    }
    #[inline(always)]
    unsafe fn bcast_fma_at<const NB: usize, const I: usize>(
        self,
        acc: &mut [__m512; NB],
        w: &[__m512; NB],
        x: *const f32,
    ) {
        match NB {
            // SAFETY: AVX-512F is present; the caller guarantees x + I is readable.
            1 => unsafe { fma1_at::<NB, I>(acc, w, x) },
            // SAFETY: AVX-512F is present; the caller guarantees x + I is readable.
            2 => unsafe { fma2_at::<NB, I>(acc, w, x) },
            // SAFETY: the caller's guarantee.
            _ => unsafe { self.bcast_fma(acc, w, x, I) },
        }
    }
}

/// `a += bcast(x[o]) * w`, the broadcast embedded in the FMA's memory operand.
///
/// # Safety
/// The CPU has AVX-512F; `x + o` is valid for reading one f32.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn fma1(a: &mut __m512, w: __m512, x: *const f32, o: usize) {
    // SAFETY: reads the one f32 at x + o (the caller's guarantee); registers only otherwise.
    unsafe {
        asm!(
            "vfmadd231ps {a}, {w}, dword ptr [{x} + {o}*4]{{1to16}}",
            a = inout(zmm_reg) *a,
            w = in(zmm_reg) w,
            x = in(reg) x,
            o = in(reg) o,
            options(nostack, preserves_flags, readonly),
        )
    }
}

x86_fma2!("avx512f", zmm_reg, __m512, "AVX-512F");

/// [`fma1`] reading `x[I]` at the constant displacement `4*I` from `x` (`acc` has at least
/// one entry).
///
/// # Safety
/// The CPU has AVX-512F; `x + I` is valid for reading one f32.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn fma1_at<const NB: usize, const I: usize>(
    acc: &mut [__m512; NB],
    w: &[__m512; NB],
    x: *const f32,
) {
    // SAFETY: reads the one f32 at x + I (the caller's guarantee); registers only otherwise.
    unsafe {
        asm!(
            "vfmadd231ps {a}, {w}, dword ptr [{x} + {d}]{{1to16}}",
            a = inout(zmm_reg) acc[0],
            w = in(zmm_reg) w[0],
            x = in(reg) x,
            d = const 4 * I,
            options(nostack, preserves_flags, readonly),
        )
    }
}

/// `SPREAD_INDEX[step - 1][at] = min(at / step, 15)`: the lane a spread of `step` moves to
/// float `at` of its span ([`F32Simd::transpose_store_spread`], steps 1-4).
static SPREAD_INDEX: [[i32; 64]; 4] = {
    let mut t = [[0i32; 64]; 4];
    let mut s = 0;
    while s < 4 {
        let mut at = 0;
        while at < 64 {
            let i = at / (s + 1);
            t[s][at] = if i < 15 { i as i32 } else { 15 };
            at += 1;
        }
        s += 1;
    }
    t
};

/// `SPREAD_MASK[step - 1][k]`: the lanes `p` of a spread's 16-float segment `k` that a
/// lane lands on, `(16k + p) % step == 0` (steps 1-4, before the cut at its `m` lanes).
static SPREAD_MASK: [[u16; 4]; 4] = {
    let mut t = [[0u16; 4]; 4];
    let mut s = 0;
    while s < 4 {
        let mut at = 0;
        while at < 64 {
            if at % (s + 1) == 0 {
                t[s][at / 16] |= 1 << (at % 16);
            }
            at += 1;
        }
        s += 1;
    }
    t
};

/// The segment masks of a spread of `m` lanes (1-16) by `step` (1-4): the floats
/// `dst[0..(m-1)*step + 1]` in 16-float segments, segment `k` holding lane
/// `i = (16k + p)/step` at its float `p` when `(16k + p) % step == 0` and `i < m`. Segments
/// past the span get an empty mask.
#[inline(always)]
fn spread_masks(step: usize, m: usize) -> [u16; 4] {
    debug_assert!((1..=4).contains(&step) && (1..=16).contains(&m));
    let span = (m - 1) * step + 1;
    let mut masks = SPREAD_MASK[step - 1];
    for (k, mask) in masks.iter_mut().enumerate() {
        let left = span.saturating_sub(16 * k);
        if left < 16 {
            *mask &= ((1u32 << left) - 1) as u16;
        }
    }
    masks
}

/// Stores lane `i` of `v` to `to + i*step` where `masks` (from [`spread_masks`]) has it:
/// segment `k`'s lanes moved into place by one permute, then one masked store.
///
/// # Safety
/// AVX-512F must be present; `masks` from `spread_masks(step, m)`, and `to + i*step`
/// writable for `i < m`.
#[inline(always)]
unsafe fn spread_segments(to: *mut f32, v: __m512, step: usize, masks: &[u16; 4]) {
    let table = &SPREAD_INDEX[step - 1];
    // SAFETY: segment k's masked store writes only the lanes p of masks[k], at to + 16k + p
    // = to + i*step with i < m: writable by the caller's guarantee. Masked-off lanes are
    // neither written nor faulted on. The loop stops at the first empty mask (a step of at
    // most 4 puts a lane in every 16 floats, so the segments with lanes come first), and a
    // segment with lanes starts at 16k <= (m-1)*step, inside the written range: the
    // pointer stays in bounds. The index loads read table[16k..16k + 16] with k < 4: inside
    // its 64.
    unsafe {
        if step == 1 {
            _mm512_mask_storeu_ps(to, masks[0], v);
            return;
        }
        for (k, &mask) in masks.iter().enumerate() {
            if mask == 0 {
                break;
            }
            let idx = _mm512_loadu_si512(table[16 * k..].as_ptr().cast());
            _mm512_mask_storeu_ps(to.add(16 * k), mask, _mm512_permutexvar_ps(idx, v));
        }
    }
}

/// The first three stages of a 16x16 transpose of the rows at `src` (row `i` at
/// `src + i*stride`): `v[c]` (c < 4) holds columns c, c + 8 of rows 0-3 and 4-7 in its
/// 128-bit lanes, `v[c + 4]` columns c + 4, c + 12, and `v[8..16]` the same for rows 8-15;
/// [`column`] finishes one column.
///
/// # Safety
/// AVX-512F must be present; 16 rows of 16 floats at `src` readable.
#[inline(always)]
unsafe fn transpose_halves(src: *const f32, stride: usize) -> [__m512; 16] {
    // SAFETY: the caller's guarantee.
    unsafe {
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, r) in r.iter_mut().enumerate() {
            *r = _mm512_loadu_ps(src.add(i * stride));
        }
        halves(&r)
    }
}

/// [`transpose_halves`] of rows already in registers.
///
/// # Safety
/// AVX-512F must be present.
#[inline(always)]
unsafe fn halves(r: &[__m512; 16]) -> [__m512; 16] {
    // SAFETY: AVX-512F is present (the caller's guarantee); register-only intrinsics.
    unsafe {
        // Rows a..p, columns 0..15. Pairs: t[2k] = a0 b0 a1 b1 | a4 b4 a5 b5 | ...
        let mut t = [_mm512_setzero_ps(); 16];
        for (k, out) in t.iter_mut().enumerate() {
            let (x, y) = (r[k & !1], r[k | 1]);
            *out = if k % 2 == 0 {
                _mm512_unpacklo_ps(x, y)
            } else {
                _mm512_unpackhi_ps(x, y)
            };
        }
        // Quads per 128-bit lane: u[4q + c] = column c (+4, +8, +12 in lanes 1-3) of
        // rows 4q..4q+3.
        let mut u = [_mm512_setzero_ps(); 16];
        for (k, out) in u.iter_mut().enumerate() {
            let (q, c) = (k / 4, k % 4);
            let (x, y) = (t[4 * q + (c / 2)], t[4 * q + 2 + (c / 2)]);
            *out = if c % 2 == 0 {
                _mm512_shuffle_ps::<0x44>(x, y)
            } else {
                _mm512_shuffle_ps::<0xEE>(x, y)
            };
        }
        let mut v = [_mm512_setzero_ps(); 16];
        for (k, out) in v.iter_mut().enumerate() {
            let (half, c) = (k / 8, k % 8);
            let (x, y) = (u[8 * half + c % 4], u[8 * half + 4 + c % 4]);
            *out = if c < 4 {
                _mm512_shuffle_f32x4::<0x88>(x, y)
            } else {
                _mm512_shuffle_f32x4::<0xDD>(x, y)
            };
        }
        v
    }
}

/// Column `j < 16` of the block [`transpose_halves`] started: columns 0-7 from the 0x88
/// pairs, 8-15 from the 0xDD pairs.
///
/// # Safety
/// AVX-512F must be present.
#[inline(always)]
unsafe fn column(v: &[__m512; 16], j: usize) -> __m512 {
    let (a, b) = (v[j % 8], v[8 + j % 8]);
    // SAFETY: AVX-512F is present (the caller's guarantee).
    unsafe {
        if j < 8 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xDD>(a, b)
        }
    }
}

/// `max(col + bias, 0)` (each part when asked for).
///
/// # Safety
/// AVX-512F must be present.
#[inline(always)]
unsafe fn epilogue(col: __m512, bias: Option<f32>, relu: bool) -> __m512 {
    // SAFETY: AVX-512F is present (the caller's guarantee).
    unsafe {
        let col = bias.map_or(col, |b| _mm512_add_ps(col, _mm512_set1_ps(b)));
        if relu {
            _mm512_max_ps(col, _mm512_setzero_ps())
        } else {
            col
        }
    }
}
