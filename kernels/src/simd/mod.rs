//! The only place that names `core::arch`: one small trait, [`F32Simd`], implemented once
//! per ISA. Kernel bodies are written once, generic over it, and instantiated inside
//! `#[target_feature]` wrappers (matrixmultiply's `kernel_x86_avx::<MA>` pattern).
//!
//! The trait is deliberately tiny — the direct kernel needs only broadcasts, full-width
//! loads and stores, and fused multiply-adds — so that each ISA's part is a handful of
//! one-line intrinsic calls whose correctness can be read off.

/// Defines, for one x86 level, the two-vector steps of [`F32Simd::bcast_fma`] and
/// [`F32Simd::bcast_fma_at`] as `asm!` blocks: `fma2(acc, w, x, o)` reads `x[o]` (addressed
/// `x + o*4`), `fma2_at::<NB, I>(acc, w, x)` reads `x[I]` (the constant displacement `4*I`);
/// both do `acc[v] += bcast(x[..]) * w[v]` for `v < 2` through one scratch register (`acc`
/// has at least 2 entries: their callers match `NB == 2`).
#[cfg(target_arch = "x86_64")]
macro_rules! x86_fma2 {
    ($feature:literal, $reg:ident, $v:ty, $cpu:literal) => {
        /// `acc[v] += bcast(x[o]) * w[v]` for `v < 2` (see `x86_fma2!` in `simd/mod.rs`).
        ///
        /// # Safety
        #[doc = concat!("The CPU has ", $cpu, "; `x + o` is valid for reading one f32.")]
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn fma2<const NB: usize>(acc: &mut [$v; NB], w: &[$v; NB], x: *const f32, o: usize) {
            // SAFETY: reads the one f32 at x + o (the caller's guarantee); `b` is an `out`
            // (not `lateout`) operand, so it is never one of the inputs it overwrites.
            unsafe {
                core::arch::asm!(
                    "vbroadcastss {b}, dword ptr [{x} + {o}*4]",
                    "vfmadd231ps {a0}, {b}, {w0}",
                    "vfmadd231ps {a1}, {b}, {w1}",
                    b = out($reg) _,
                    a0 = inout($reg) acc[0],
                    a1 = inout($reg) acc[1],
                    w0 = in($reg) w[0],
                    w1 = in($reg) w[1],
                    x = in(reg) x,
                    o = in(reg) o,
                    options(nostack, preserves_flags, readonly),
                )
            }
        }

        /// [`fma2`] reading `x[I]` at the constant displacement `4*I` from `x`.
        ///
        /// # Safety
        #[doc = concat!("The CPU has ", $cpu, "; `x + I` is valid for reading one f32.")]
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn fma2_at<const NB: usize, const I: usize>(
            acc: &mut [$v; NB],
            w: &[$v; NB],
            x: *const f32,
        ) {
            // SAFETY: reads the one f32 at x + I (the caller's guarantee); `b` is an `out`
            // (not `lateout`) operand, so it is never one of the inputs it overwrites.
            unsafe {
                core::arch::asm!(
                    "vbroadcastss {b}, dword ptr [{x} + {d}]",
                    "vfmadd231ps {a0}, {b}, {w0}",
                    "vfmadd231ps {a1}, {b}, {w1}",
                    b = out($reg) _,
                    a0 = inout($reg) acc[0],
                    a1 = inout($reg) acc[1],
                    w0 = in($reg) w[0],
                    w1 = in($reg) w[1],
                    x = in(reg) x,
                    d = const 4 * I,
                    options(nostack, preserves_flags, readonly),
                )
            }
        }
    };
}

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
    /// Whether [`load_range`](F32Simd::load_range) is one masked load (AVX-512), not a lane
    /// by lane copy or a mask built per load.
    const MASKED_LOADS: bool = false;
    /// Whether [`load_masked`](F32Simd::load_masked) is one masked load (AVX2's
    /// `vmaskmovps`), so a loop that reuses a [`range_mask`](F32Simd::range_mask) pays one
    /// instruction per load.
    const HOISTED_MASK_LOADS: bool = false;
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
    /// Lanes `lo..hi` read from `p + i`, the others zero: a row's edge read in place, with
    /// nothing outside the row touched. `p` itself may lie outside any allocation (the
    /// lanes before `lo` would fall before a row's start); form it with wrapping arithmetic.
    ///
    /// # Safety
    /// `lo <= hi <= LANES`, and `p + i` must be valid for reading one f32 for `lo <= i < hi`.
    #[inline(always)]
    unsafe fn load_range(self, p: *const f32, lo: usize, hi: usize) -> Self::V {
        assert!(
            lo <= hi && hi <= Self::LANES && Self::LANES <= 16,
            "load_range lanes"
        );
        let mut v = [0.0f32; 16];
        for (i, x) in v.iter_mut().enumerate().take(hi).skip(lo) {
            // SAFETY: lo <= i < hi: readable (the caller's guarantee).
            *x = unsafe { *p.wrapping_add(i) };
        }
        // SAFETY: v holds 16 >= LANES floats.
        unsafe { self.load(v.as_ptr()) }
    }
    /// The mask of lanes `lo..hi` for [`load_masked`](F32Simd::load_masked): those lanes'
    /// bits all ones, the others zero.
    #[inline(always)]
    fn range_mask(self, lo: usize, hi: usize) -> Self::V {
        assert!(
            lo <= hi && hi <= Self::LANES && Self::LANES <= 16,
            "range_mask lanes"
        );
        let mut v = [0.0f32; 16];
        for x in v.iter_mut().take(hi).skip(lo) {
            *x = f32::from_bits(u32::MAX);
        }
        // SAFETY: v holds 16 >= LANES floats.
        unsafe { self.load(v.as_ptr()) }
    }
    /// The lanes of `mask` (from [`range_mask`](F32Simd::range_mask)) read from `p + i`,
    /// the others zero: [`load_range`](F32Simd::load_range) with its mask built once.
    ///
    /// # Safety
    /// `mask` must come from `range_mask(lo, hi)`, and `p + i` must be valid for reading one
    /// f32 for `lo <= i < hi`.
    #[inline(always)]
    unsafe fn load_masked(self, p: *const f32, mask: Self::V) -> Self::V {
        let mut m = [0.0f32; 16];
        // SAFETY: m holds 16 >= LANES floats.
        unsafe { self.store(m.as_mut_ptr(), mask) };
        let mut v = [0.0f32; 16];
        for (i, (x, m)) in v.iter_mut().zip(&m).enumerate().take(Self::LANES) {
            if m.to_bits() != 0 {
                // SAFETY: lane i is in the mask, so p + i is readable (the caller's
                // guarantee).
                *x = unsafe { *p.wrapping_add(i) };
            }
        }
        // SAFETY: v holds 16 >= LANES floats.
        unsafe { self.load(v.as_ptr()) }
    }
    /// `LANES` floats to `p` (unaligned).
    ///
    /// # Safety
    /// `p` must be valid for writing `LANES` f32.
    unsafe fn store(self, p: *mut f32, v: Self::V);
    /// Stores the transpose of the `LANES x LANES` block at `src` (row `i` at
    /// `src + i*src_stride`), plus a bias per output row, through a ReLU when `relu`:
    ///
    /// ```text
    ///   dst[j*dst_stride + i] = f(src[i*src_stride + j] + bias[j])   for i < LANES, j < n_out
    /// ```
    ///
    /// (`bias[j]` is 0 without a bias.) The direct kernel's epilogue: its buffer holds a
    /// tile's outputs pixel-major, NCHW wants them channel-major.
    ///
    /// # Safety
    /// `n_out <= LANES`; the `LANES` rows of `LANES` floats at `src` must be readable and the
    /// `n_out` rows of `LANES` floats at `dst` writable.
    #[allow(clippy::too_many_arguments)]
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
        for j in 0..n_out {
            let b = bias.map_or(0.0, |b| b[j]);
            for i in 0..Self::LANES {
                // SAFETY: i, j < LANES and j < n_out: in the caller's ranges.
                unsafe {
                    let v = *src.add(i * src_stride + j) + b;
                    *dst.add(j * dst_stride + i) = if relu { v.max(0.0) } else { v };
                }
            }
        }
    }
    /// The transpose of `LANES` rows that lie anywhere: lane `i` of `out[j]` is float `j`
    /// of row `i`,
    ///
    /// ```text
    ///   out[j][i] = *rows[i].add(j)   for i < LANES, j < out.len()
    /// ```
    ///
    /// (The Winograd input transform: lane `i` is a tile, `rows[i]` a row of its patch.)
    /// `out.len()` may exceed `LANES` only on the levels of fewer than 8 lanes.
    ///
    /// # Safety
    /// `rows.len() >= LANES`, `out.len() <= max(LANES, 8)`, and each `rows[i]` must be valid
    /// for reading `max(LANES, out.len())` f32 (the vector levels load whole rows).
    #[inline(always)]
    unsafe fn gather_transpose(self, rows: &[*const f32], out: &mut [Self::V]) {
        assert!(
            rows.len() >= Self::LANES && out.len() <= Self::LANES.max(8) && Self::LANES <= 16,
            "gather_transpose shape"
        );
        for (j, o) in out.iter_mut().enumerate() {
            let mut v = [0.0f32; 16];
            for (x, row) in v.iter_mut().zip(rows).take(Self::LANES) {
                // SAFETY: j < out.len() <= max(LANES, out.len()) floats at row are
                // readable (the caller's guarantee).
                *x = unsafe { *row.add(j) };
            }
            // SAFETY: v holds 16 >= LANES floats.
            *o = unsafe { self.load(v.as_ptr()) };
        }
    }
    /// The first `rows.len()` columns of the transpose of the `LANES x LANES` block at `src`
    /// (row `i` at `src + i*src_stride`), column `j` stored at row `rows[j]` of `dst`:
    ///
    /// ```text
    ///   dst[rows[j]*dst_stride + i] = src[i*src_stride + j]   for i < LANES, j < rows.len()
    /// ```
    ///
    /// (The packer's windows of consecutive reduction entries: `LANES` channels' entries,
    /// each entry's vector to its packed row.)
    ///
    /// # Safety
    /// `rows.len() <= LANES`; the `LANES` rows of `LANES` floats at `src` must be readable
    /// and `LANES` floats at `dst + rows[j]*dst_stride` writable for `j < rows.len()`.
    #[inline(always)]
    unsafe fn transpose_to_rows(
        self,
        src: *const f32,
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
        rows: &[usize],
    ) {
        let (l, n) = (Self::LANES, rows.len());
        assert!(n <= l && l <= 16, "transpose_to_rows shape");
        let mut ptrs = [std::ptr::null::<f32>(); 16];
        for (i, p) in ptrs.iter_mut().enumerate().take(l) {
            *p = src.wrapping_add(i * src_stride);
        }
        let mut cols = [self.zero(); 16];
        // SAFETY: rows i < LANES of LANES floats at src are readable (the caller's guarantee);
        // n <= LANES outputs.
        unsafe { self.gather_transpose(&ptrs[..l], &mut cols[..n]) };
        for (&c, &r) in cols.iter().zip(rows) {
            // SAFETY: LANES floats at dst + r*dst_stride are writable (the caller's guarantee).
            unsafe { self.store(dst.add(r * dst_stride), c) };
        }
    }
    /// [`transpose_store`](F32Simd::transpose_store) of the first `m` rows only, row `i`
    /// going to `dst + i*step` (the pixels of a stride phase, or a run cut short):
    ///
    /// ```text
    ///   dst[j*dst_stride + i*step] = f(src[i*src_stride + j] + bias[j])   for i < m, j < n_out
    /// ```
    ///
    /// Nothing else at `dst` is written: other threads may own the floats between.
    ///
    /// # Safety
    /// `n_out, m <= LANES`, `step >= 1`; the `LANES` rows of `LANES` floats at `src` must be
    /// readable (all of them, even past `m`) and `dst + j*dst_stride + i*step` writable for
    /// `i < m`, `j < n_out`.
    #[allow(clippy::too_many_arguments)]
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
        // SAFETY: the caller's guarantee, passed on.
        unsafe {
            spread_via_block(
                self, src, src_stride, dst, dst_stride, step, m, bias, n_out, relu,
            )
        }
    }
    /// Lanes `i < m` of `v` to every `step`-th float from `p`, nothing between written
    /// (other threads may own those floats):
    ///
    /// ```text
    ///   p[i*step] = v[i]   for i < m
    /// ```
    ///
    /// (A vector of a stride phase's pixels stored into its row.)
    ///
    /// # Safety
    /// `m <= LANES`, `step >= 1`, and `p + i*step` writable for `i < m`.
    #[inline(always)]
    unsafe fn store_spread(self, p: *mut f32, v: Self::V, step: usize, m: usize) {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { spread_scalar(self, p, v, step, m) }
    }
    /// Lanes `i < LANES / 2` from `lo[i]`, the others from `hi[i - LANES / 2]`: the ends of
    /// two rows in one vector (the few-channel tile's paired last vector, see
    /// `direct/rows.rs`).
    ///
    /// # Safety
    /// `lo` must be valid for reading `LANES / 2` f32, `hi` for `LANES - LANES / 2`.
    #[inline(always)]
    unsafe fn load_halves(self, lo: *const f32, hi: *const f32) -> Self::V {
        let h = Self::LANES / 2;
        let mut v = [0.0f32; 16];
        assert!(Self::LANES <= v.len(), "at most 16 lanes");
        for (i, x) in v.iter_mut().enumerate().take(Self::LANES) {
            // SAFETY: i < LANES / 2 at lo, i - LANES / 2 < LANES - LANES / 2 at hi (the
            // caller's guarantee).
            *x = unsafe { if i < h { *lo.add(i) } else { *hi.add(i - h) } };
        }
        // SAFETY: v holds 16 >= LANES floats.
        unsafe { self.load(v.as_ptr()) }
    }
    /// The even-indexed floats of the `2 * LANES` at `p`: `p[0], p[2], ..., p[2*LANES - 2]`
    /// (a stride-2 row split into its column phases).
    ///
    /// # Safety
    /// `p` must be valid for reading `2 * LANES` f32.
    #[inline(always)]
    unsafe fn even_lanes(self, p: *const f32) -> Self::V {
        let mut v = [0.0f32; 16];
        for (i, x) in v.iter_mut().enumerate().take(Self::LANES) {
            // SAFETY: 2*i < 2*LANES floats at p (the caller's guarantee).
            *x = unsafe { *p.add(2 * i) };
        }
        assert!(Self::LANES <= v.len(), "at most 16 lanes");
        // SAFETY: v holds 16 >= LANES floats.
        unsafe { self.load(v.as_ptr()) }
    }
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
        // SAFETY: the caller's guarantee.
        unsafe { bcast_fma_plain(self, acc, w, x, o) }
    }
    /// [`F32Simd::bcast_fma`] reading `x[I]`, a row index fixed at compile time: the x86
    /// levels address it as `x + 4*I`, a constant displacement, so a tile whose rows are
    /// consecutive floats needs one base register instead of one offset register per row
    /// (12 on AVX-512: more than x86-64 has free).
    ///
    /// # Safety
    /// `x + I` must be valid for reading one f32.
    #[inline(always)]
    unsafe fn bcast_fma_at<const NB: usize, const I: usize>(
        self,
        acc: &mut [Self::V; NB],
        w: &[Self::V; NB],
        x: *const f32,
    ) {
        // SAFETY: the caller's guarantee.
        unsafe { self.bcast_fma(acc, w, x, I) }
    }
}

/// Floats per 64-byte cache line: the step of the prefetches issued around
/// [`prefetch_l2`].
pub(crate) const LINE_FLOATS: usize = 16;

/// Asks for the cache line holding `p` to be brought into L2 (a hint: it reads nothing,
/// never faults, and does nothing off x86-64). The direct kernel's epilogues issue it for
/// their destination lines ahead of the stores, which would otherwise each wait for a line
/// from L3 or memory, and its column form for the weight rows it copies next.
#[inline(always)]
pub(crate) fn prefetch_l2(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint with no architectural effect: any address is allowed.
    unsafe {
        use core::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T1>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`F32Simd::bcast_fma`] from the trait's other methods: the default, and the x86 levels'
/// path for tile widths their `asm!` does not cover.
///
/// # Safety
/// `x + o` must be valid for reading one f32.
#[inline(always)]
pub(crate) unsafe fn bcast_fma_plain<S: F32Simd, const NB: usize>(
    s: S,
    acc: &mut [S::V; NB],
    w: &[S::V; NB],
    x: *const f32,
    o: usize,
) {
    // SAFETY: the caller guarantees x + o is readable.
    let b = unsafe { s.broadcast(x.add(o)) };
    for (a, w) in acc.iter_mut().zip(w) {
        *a = s.mul_add(b, *w, *a);
    }
}

/// [`F32Simd::store_spread`] through a copy on the stack and scalar stores.
///
/// # Safety
/// As for `store_spread`.
#[inline(always)]
unsafe fn spread_scalar<S: F32Simd>(s: S, p: *mut f32, v: S::V, step: usize, m: usize) {
    assert!(
        S::LANES <= 16 && m <= S::LANES,
        "at most 16 lanes, m <= LANES"
    );
    let mut tmp = [0.0f32; 16];
    // SAFETY: tmp holds 16 >= LANES floats; p + i*step is writable for i < m (the caller's
    // guarantee).
    unsafe {
        s.store(tmp.as_mut_ptr(), v);
        for (i, t) in tmp.iter().enumerate().take(m) {
            *p.add(i * step) = *t;
        }
    }
}

/// [`F32Simd::transpose_store_spread`] through a block on the stack and scalar stores.
///
/// # Safety
/// As for `transpose_store_spread`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn spread_via_block<S: F32Simd>(
    s: S,
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
    let lanes = S::LANES;
    assert!(
        lanes <= 16 && m <= lanes && n_out <= lanes,
        "at most 16 lanes, m and n_out <= LANES"
    );
    if m == 0 || n_out == 0 {
        return;
    }
    // Not zeroed: only the rows the transpose writes are read back (a 1 KiB memset per
    // call was 2% of the samples of a stride-2 backward-data pass).
    let mut block = [std::mem::MaybeUninit::<f32>::uninit(); 16 * 16];
    let b = block.as_mut_ptr().cast::<f32>();
    // SAFETY: the block holds LANES rows of LANES floats (LANES <= 16); the transpose
    // writes its rows j < n_out in full, and only their first m <= LANES floats are read;
    // src is readable (the caller's guarantee); the scalar stores go to
    // dst + j*dst_stride + i*step for i < m, j < n_out, writable by the caller's guarantee.
    unsafe {
        s.transpose_store(src, src_stride, b, lanes, bias, n_out, relu);
        for j in 0..n_out {
            let to = dst.add(j * dst_stride);
            for i in 0..m {
                *to.add(i * step) = *b.add(j * lanes + i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs generic `check` on every ISA this host has (the x86 levels only where present).
    macro_rules! on_every_isa {
        ($check:ident) => {{
            $check(Scalar);
            $check(Portable);
            #[cfg(target_arch = "x86_64")]
            {
                if let Some(s) = Avx2Fma::new() {
                    $check(s);
                }
                if let Some(s) = Avx512F::new() {
                    $check(s);
                }
            }
        }};
    }

    /// `transpose_store` against its formula, with row strides wider than a vector so a
    /// store past `LANES` floats or past `n_out` rows shows up as an overwritten NaN.
    fn check_transpose<S: F32Simd>(s: S) {
        let l = S::LANES;
        let (src_stride, dst_stride) = (l + 3, l + 5);
        let src: Vec<f32> = (0..l * src_stride).map(|i| i as f32 - 40.0).collect();
        let bias: Vec<f32> = (0..l).map(|j| j as f32 * 0.5 - 2.0).collect();
        for n_out in [1, l.saturating_sub(1).max(1), l] {
            for with_bias in [false, true] {
                for relu in [false, true] {
                    let mut dst = vec![f32::NAN; l * dst_stride];
                    let b = with_bias.then_some(&bias[..]);
                    // SAFETY: l rows of src_stride >= l floats at src, l rows of
                    // dst_stride >= l floats at dst, n_out <= l.
                    unsafe {
                        s.transpose_store(
                            src.as_ptr(),
                            src_stride,
                            dst.as_mut_ptr(),
                            dst_stride,
                            b,
                            n_out,
                            relu,
                        )
                    };
                    for j in 0..l {
                        for i in 0..dst_stride {
                            let got = dst[j * dst_stride + i];
                            if j < n_out && i < l {
                                let v = src[i * src_stride + j] + b.map_or(0.0, |b| b[j]);
                                let want = if relu { v.max(0.0) } else { v };
                                assert_eq!(got, want, "{l} lanes, n_out {n_out}: [{j}][{i}]");
                            } else {
                                assert!(got.is_nan(), "{l} lanes, n_out {n_out}: wrote [{j}][{i}]");
                            }
                        }
                    }
                }
            }
        }
    }

    /// `transpose_store_spread` against its formula for every run length and the steps of
    /// both the vector path (1-4) and the scalar one, into a destination of NaNs, so a
    /// store to a float between the run's pixels, past its `m` rows or past `n_out` rows
    /// shows up.
    fn check_spread<S: F32Simd>(s: S) {
        let l = S::LANES;
        let (src_stride, dst_stride) = (l + 3, 16 * 7 + 5);
        let src: Vec<f32> = (0..l * src_stride).map(|i| i as f32 - 40.0).collect();
        let bias: Vec<f32> = (0..l).map(|j| j as f32 * 0.5 - 2.0).collect();
        for step in 1..=7 {
            for m in 0..=l {
                for n_out in [1, l.saturating_sub(1).max(1), l] {
                    for (with_bias, relu) in [(false, false), (true, true), (true, false)] {
                        let mut dst = vec![f32::NAN; l * dst_stride];
                        let b = with_bias.then_some(&bias[..]);
                        // SAFETY: l rows of src_stride >= l floats at src; the writes reach
                        // j*dst_stride + i*step <= (l-1)*dst_stride + 15*7 < dst.len().
                        unsafe {
                            s.transpose_store_spread(
                                src.as_ptr(),
                                src_stride,
                                dst.as_mut_ptr(),
                                dst_stride,
                                step,
                                m,
                                b,
                                n_out,
                                relu,
                            )
                        };
                        for (at, got) in dst.iter().enumerate() {
                            let (j, o) = (at / dst_stride, at % dst_stride);
                            let case = format!("{l} lanes, step {step}, m {m}, n_out {n_out}");
                            if j < n_out && o % step == 0 && o / step < m {
                                let v = src[o / step * src_stride + j] + b.map_or(0.0, |b| b[j]);
                                let want = if relu { v.max(0.0) } else { v };
                                assert_eq!(*got, want, "{case}: [{j}][{o}]");
                            } else {
                                assert!(got.is_nan(), "{case}: wrote [{j}][{o}]");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn transpose_store_spread_matches_its_formula_on_every_isa() {
        on_every_isa!(check_spread);
    }

    /// `store_spread` against its formula for every lane count and the steps of both the
    /// vector path (1-4) and the scalar one, into a destination of NaNs with floats before
    /// and after the span, so a store between the lanes' floats or past `m` shows up.
    fn check_store_spread<S: F32Simd>(s: S) {
        let l = S::LANES;
        let src: Vec<f32> = (0..l).map(|i| i as f32 * 1.25 - 9.0).collect();
        // SAFETY: src holds l floats.
        let v = unsafe { s.load(src.as_ptr()) };
        for step in 1..=7 {
            for m in 0..=l {
                let (before, span) = (5, 16 * 7 + 9);
                let mut dst = vec![f32::NAN; before + span];
                // SAFETY: the writes reach before + (m-1)*step <= 5 + 15*7 < dst.len().
                unsafe { s.store_spread(dst.as_mut_ptr().add(before), v, step, m) };
                for (at, got) in dst.iter().enumerate() {
                    let case = format!("{l} lanes, step {step}, m {m}: float {at}");
                    let o = at.checked_sub(before);
                    match o.filter(|o| o % step == 0 && o / step < m) {
                        Some(o) => assert_eq!(*got, src[o / step], "{case}"),
                        None => assert!(got.is_nan(), "{case} written"),
                    }
                }
            }
        }
    }

    #[test]
    fn store_spread_matches_its_formula_on_every_isa() {
        on_every_isa!(check_store_spread);
    }

    /// `load_range` and `load_masked` against their formula, on every lane range, from a
    /// source holding just
    /// the lanes `lo..hi` (so a read of any other lane would be out of bounds).
    fn check_load_range<S: F32Simd>(s: S) {
        let l = S::LANES;
        for lo in 0..=l {
            for hi in lo..=l {
                let src: Vec<f32> = (lo..hi).map(|i| i as f32 * 2.5 - 3.0).collect();
                let p = src.as_ptr().wrapping_sub(lo);
                let mut got = vec![f32::NAN; l];
                let mut masked = vec![f32::NAN; l];
                // SAFETY: p + i = &src[i - lo] for lo <= i < hi; got and masked hold l floats.
                unsafe {
                    s.store(got.as_mut_ptr(), s.load_range(p, lo, hi));
                    s.store(masked.as_mut_ptr(), s.load_masked(p, s.range_mask(lo, hi)));
                }
                for (i, (g, m)) in got.iter().zip(&masked).enumerate() {
                    let want = if (lo..hi).contains(&i) {
                        src[i - lo]
                    } else {
                        0.0
                    };
                    assert_eq!(*g, want, "{l} lanes, {lo}..{hi}: lane {i}");
                    assert_eq!(*m, want, "{l} lanes, {lo}..{hi}: masked lane {i}");
                }
            }
        }
    }

    #[test]
    fn load_range_matches_its_formula_on_every_isa() {
        on_every_isa!(check_load_range);
    }

    /// `even_lanes` against its formula.
    fn check_even_lanes<S: F32Simd>(s: S) {
        let l = S::LANES;
        let src: Vec<f32> = (0..2 * l).map(|i| i as f32 * 1.5 - 7.0).collect();
        let mut got = vec![f32::NAN; l];
        // SAFETY: src holds 2*l floats, got l.
        unsafe { s.store(got.as_mut_ptr(), s.even_lanes(src.as_ptr())) };
        for (i, g) in got.iter().enumerate() {
            assert_eq!(*g, src[2 * i], "{l} lanes: lane {i}");
        }
    }

    #[test]
    fn even_lanes_matches_its_formula_on_every_isa() {
        on_every_isa!(check_even_lanes);
    }

    /// `load_halves` against its formula, from two places in one buffer, either first.
    fn check_load_halves<S: F32Simd>(s: S) {
        let (l, h) = (S::LANES, S::LANES / 2);
        let src: Vec<f32> = (0..4 * l).map(|i| i as f32 * 0.75 - 9.0).collect();
        for (a, b) in [(1, 3 * l - h), (2 * l, 0)] {
            let mut got = vec![f32::NAN; l];
            // SAFETY: a + h and b + l - h are at most 4 * l = src.len(); got holds l floats.
            unsafe {
                let v = s.load_halves(src[a..].as_ptr(), src[b..].as_ptr());
                s.store(got.as_mut_ptr(), v);
            }
            for (i, g) in got.iter().enumerate() {
                let want = if i < h { src[a + i] } else { src[b + i - h] };
                assert_eq!(*g, want, "{l} lanes: lane {i}");
            }
        }
    }

    #[test]
    fn load_halves_matches_its_formula_on_every_isa() {
        on_every_isa!(check_load_halves);
    }

    /// `gather_transpose` against its formula, with rows scattered through a buffer in
    /// decreasing order (and, from two lanes, the first row repeated in the last lane), for
    /// every output width.
    fn check_gather_transpose<S: F32Simd>(s: S) {
        let l = S::LANES;
        let buf: Vec<f32> = (0..40 * l).map(|i| i as f32 * 0.25 - 7.0).collect();
        let starts: Vec<usize> = (0..l).map(|i| (l - 1 - i) * 7 + 3).collect();
        let mut starts2 = starts.clone();
        starts2[l - 1] = starts2[0];
        for starts in [&starts, &starts2] {
            let rows: Vec<*const f32> = starts.iter().map(|&o| buf[o..].as_ptr()).collect();
            for n in 0..=l.max(8) {
                let mut out = vec![s.splat(f32::NAN); n];
                // SAFETY: every start < 7 * l, so start + max(l, 8) < 15 * l + 8 <= 40 * l
                // = buf.len(); n <= max(l, 8).
                unsafe { s.gather_transpose(&rows, &mut out) };
                for (j, v) in out.iter().enumerate() {
                    let mut got = [0.0f32; 16];
                    // SAFETY: got holds 16 >= l floats.
                    unsafe { s.store(got.as_mut_ptr(), *v) };
                    for (i, g) in got.iter().enumerate().take(l) {
                        assert_eq!(*g, buf[starts[i] + j], "{l} lanes, {n} out: [{j}][{i}]");
                    }
                }
            }
        }
    }

    #[test]
    fn gather_transpose_matches_its_formula_on_every_isa() {
        on_every_isa!(check_gather_transpose);
    }

    /// `transpose_to_rows` against its formula, for every count of columns: a source block
    /// with a row stride wider than a row, its columns stored to rows in a scrambled order,
    /// every float of the destination checked (rows not listed, and floats past `LANES`,
    /// must be left alone).
    fn check_transpose_to_rows<S: F32Simd>(s: S) {
        let l = S::LANES;
        let stride = l + 3;
        let src: Vec<f32> = (0..l * stride).map(|i| i as f32 * 0.5 - 3.0).collect();
        let dst_stride = l + 5;
        let n_rows = l + 2;
        // Column j to row (7j + 1) mod (l + 2): l distinct rows of l + 2 (7 shares no factor
        // with 3, 6, 10 or 18; asserted).
        let all_rows: Vec<usize> = (0..l).map(|j| (j * 7 + 1) % n_rows).collect();
        let mut sorted = all_rows.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), l, "the test's rows are distinct");
        for n in 0..=l {
            let rows = &all_rows[..n];
            let mut dst = vec![f32::NAN; n_rows * dst_stride];
            // SAFETY: rows i < l of l floats at src + i*stride lie in src (l * stride floats);
            // n <= l, and each rows[j] < n_rows, so l floats at dst + rows[j]*dst_stride lie
            // in dst.
            unsafe {
                s.transpose_to_rows(src.as_ptr(), stride, dst.as_mut_ptr(), dst_stride, rows)
            };
            for r in 0..n_rows {
                for i in 0..dst_stride {
                    let got = dst[r * dst_stride + i];
                    match rows.iter().position(|&x| x == r) {
                        Some(j) if i < l => {
                            assert_eq!(
                                got,
                                src[i * stride + j],
                                "{l} lanes, {n} columns: row {r} [{i}]"
                            )
                        }
                        _ => assert!(
                            got.is_nan(),
                            "{l} lanes, {n} columns: row {r} [{i}] written"
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn transpose_to_rows_matches_its_formula_on_every_isa() {
        on_every_isa!(check_transpose_to_rows);
    }

    #[test]
    fn transpose_store_matches_its_formula_on_every_isa() {
        on_every_isa!(check_transpose);
    }
}
