//! The direct-convolution microkernel, written once for every ISA.
//!
//! A [`Block`] is a set of output rows (pixels for forward and backward-data, weight taps
//! for backward-weight; channels in the column and pointwise forms, which broadcast the
//! weights) that share one reduction. It accumulates into rows of `NR` channels (a
//! row-major buffer, or rows in place in the output: see [`Out`]), so partial sums over
//! reduction chunks stay in vector form:
//!
//! ```text
//!   out[i][ch] = (partial[i][ch] if accumulate else 0) + sum_r src[red[r] + rows[i]] * vecs[r*vstride + ch]
//! ```
//!
//! where `partial` is the buffer itself, or the buffer an in-place block starts from.
//!
//! The register tile is `UR` rows x `NB` vectors of `LANES` channels (`NR = NB*LANES`):
//!
//! ```text
//!            vecs[r]: | v0 (LANES ch) | v1 | ... | v{NB-1} |      <- NB vector loads
//!   row 0  bcast(src) | acc[0][0]     |    ...   acc[0][NB-1]|
//!   row 1  bcast(src) | acc[1][0]     |    ...               |      UR*NB FMAs per r
//!   ...               |                                      |
//!   row UR-1          | acc[UR-1][0]  |    ...               |
//! ```
//!
//! Per reduction step: NB loads + UR broadcasts for UR*NB FMAs, e.g. 2 + 6 for 12 on AVX2
//! (12 ymm accumulators + 2 weight registers + 1 broadcast = 15 of 16 registers), so FMA
//! throughput, not loads, is the limit. Each broadcast and its NB FMAs are issued together
//! ([`F32Simd::bcast_fma`], one `asm!` block on x86), so the compiler cannot hoist a tile's
//! broadcasts into registers it does not have. Padding never reaches this loop: sources are
//! zero-padded copies, so every `src` index is in range. A final partial tile repeats its
//! last row's source offset (a valid address) and stores only its real rows. The caller
//! moves `buf` to the real output (NCHW, or the weight-gradient layout) with the epilogue;
//! or, where each row's `NR` floats lie together in the output (the pointwise form's output
//! channels), the tile stores there itself through an [`Out::Rows`], bias and ReLU applied
//! on the way.

use super::super::simd::F32Simd;
use std::marker::PhantomData;

/// The reduction offsets `red[r]` into the broadcast operand.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Red<'a> {
    /// Listed offsets (taps of a convolution, pixels of backward-weight).
    List(&'a [usize]),
    /// `red[r] = r * stride` for `r < len` (a GEMM's inner dimension).
    Strided { stride: usize, len: usize },
}

impl<'a> Red<'a> {
    pub fn len(&self) -> usize {
        match *self {
            Red::List(l) => l.len(),
            Red::Strided { len, .. } => len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn max(&self) -> usize {
        match *self {
            Red::List(l) => l.iter().copied().max().unwrap_or(0),
            Red::Strided { stride, len } => len.saturating_sub(1) * stride,
        }
    }
    /// Entries `r0..r1`.
    pub fn slice(&self, r0: usize, r1: usize) -> Red<'a> {
        match *self {
            Red::List(l) => Red::List(&l[r0..r1]),
            // Offsets are relative to the block's src, so a strided slice keeps its stride
            // and the caller shifts src by r0 * stride.
            Red::Strided { stride, .. } => Red::Strided {
                stride,
                len: r1 - r0,
            },
        }
    }
    /// How far `src` moves for the slice starting at `r0` (0 for listed offsets).
    pub fn src_shift(&self, r0: usize) -> usize {
        match *self {
            Red::List(_) => 0,
            Red::Strided { stride, .. } => r0 * stride,
        }
    }
}

/// One unit of microkernel work; see the module docs for the formula.
#[derive(Clone, Copy)]
pub(crate) struct Block<'a> {
    /// Broadcast operand.
    pub src: &'a [f32],
    /// Reduction offsets into `src`.
    pub red: Red<'a>,
    /// Vector operand, `red.len()` groups of `NR` floats.
    pub vecs: &'a [f32],
    /// Floats between the vectors of consecutive reduction steps (`>= NR`; `NR` when packed
    /// densely).
    pub vstride: usize,
    /// Source offset of each output row.
    pub rows: &'a [usize],
    /// Start from the partial sums (the buffer, or [`Rows`]'s `partial`) instead of zero.
    pub accumulate: bool,
}

/// Where a block's rows go.
pub(crate) enum Out<'a> {
    /// A buffer of `rows.len()` rows of `NR` floats.
    Buf(&'a mut [f32]),
    /// Rows in place; see [`Rows`].
    Rows(Rows<'a>),
}

/// Rows of a block stored in place: row `i`'s `NR` floats at `ptr + i * stride`, with
/// `bias[i]` added and a ReLU applied as they are stored (the last reduction chunk's
/// epilogue). An accumulating block starts from `partial`: the earlier chunks' sums, rows
/// of `NR` floats.
pub(crate) struct Rows<'a> {
    ptr: *mut f32,
    stride: usize,
    rows: usize,
    nr: usize,
    partial: &'a [f32],
    bias: Option<&'a [f32]>,
    relu: bool,
    _out: PhantomData<&'a mut [f32]>,
}

impl<'a> Rows<'a> {
    /// Rows `0..rows` of `nr` floats at `ptr + i * stride`; see the type's docs.
    ///
    /// # Safety
    /// For the lifetime `'a`, `ptr .. ptr + (rows - 1) * stride + nr` must lie in one
    /// allocation, and each row's `nr` floats must be valid for writes and accessed by
    /// nothing else.
    pub unsafe fn new(
        (ptr, stride, rows, nr): (*mut f32, usize, usize, usize),
        partial: &'a [f32],
        bias: Option<&'a [f32]>,
        relu: bool,
    ) -> Self {
        assert!(partial.len() >= rows * nr, "partial sums");
        assert!(bias.is_none_or(|b| b.len() >= rows), "bias per row");
        Rows {
            ptr,
            stride,
            rows,
            nr,
            partial,
            bias,
            relu,
            _out: PhantomData,
        }
    }
}

impl<'a> Out<'a> {
    /// Rows `0..at` and `at..` of `nr` floats each (`at` at most the rows there are).
    fn split_at(self, at: usize, nr: usize) -> (Out<'a>, Out<'a>) {
        match self {
            Out::Buf(buf) => {
                let (head, tail) = buf.split_at_mut(at * nr);
                (Out::Buf(head), Out::Buf(tail))
            }
            Out::Rows(r) => {
                assert!(at <= r.rows && nr == r.nr, "rows split");
                let (p_head, p_tail) = r.partial.split_at(at * nr);
                let (b_head, b_tail) = match r.bias {
                    Some(b) => {
                        let (h, t) = b.split_at(at);
                        (Some(h), Some(t))
                    }
                    None => (None, None),
                };
                let part = |ptr, rows, partial, bias| Rows {
                    ptr,
                    stride: r.stride,
                    rows,
                    nr,
                    partial,
                    bias,
                    relu: r.relu,
                    _out: PhantomData,
                };
                // Rows 0..at keep their place; rows at.. start `at` rows on (one past the
                // allocation's end at most, when none are left): disjoint rows of the one
                // allocation, each still this block's alone (`Rows::new`'s contract).
                (
                    Out::Rows(part(r.ptr, at, p_head, b_head)),
                    Out::Rows(part(
                        r.ptr.wrapping_add(at * r.stride),
                        r.rows - at,
                        p_tail,
                        b_tail,
                    )),
                )
            }
        }
    }
}

/// [`run_block`], with a block's last `rows.len() % UR` rows, when at most `TAIL`, in a
/// `TAIL x NB` tile of their own: the full tile would compute `UR` rows for them (the
/// pointwise form's 64 output channels are 5 tiles of 12 and 4 rows; a 12-row tile for
/// those 4 made 72 rows' FMAs for 64).
#[inline(always)]
pub(crate) fn run_block_tail<S: F32Simd, const UR: usize, const NB: usize, const TAIL: usize>(
    s: S,
    b: &Block<'_>,
    out: Out<'_>,
) {
    let rem = b.rows.len() % UR;
    if rem == 0 || rem > TAIL {
        return run_block::<S, UR, NB>(s, b, out);
    }
    let main = b.rows.len() - rem;
    let (head, tail) = out.split_at(main, NB * S::LANES);
    let (rows_head, rows_tail) = b.rows.split_at(main);
    if main > 0 {
        run_block::<S, UR, NB>(
            s,
            &Block {
                rows: rows_head,
                ..*b
            },
            head,
        );
    }
    run_block::<S, TAIL, NB>(
        s,
        &Block {
            rows: rows_tail,
            ..*b
        },
        tail,
    );
}

/// Runs `b` with a `UR x NB` register tile into `out` (`rows.len()` rows of `NB*LANES`).
/// Every index is checked here, once per block, so a bad block panics instead of touching
/// memory outside its slices.
#[inline(always)]
pub(crate) fn run_block<S: F32Simd, const UR: usize, const NB: usize>(
    s: S,
    b: &Block<'_>,
    out: Out<'_>,
) {
    let nr = NB * S::LANES;
    let red_max = b.red.max();
    let src_max = b.rows.iter().copied().max().unwrap_or(0);
    assert!(
        b.red.is_empty() || b.rows.is_empty() || red_max + src_max < b.src.len(),
        "block source out of range"
    );
    assert!(b.vstride >= nr, "block vector stride below NR");
    assert!(
        b.red.is_empty() || (b.red.len() - 1) * b.vstride + nr <= b.vecs.len(),
        "block vectors too short"
    );
    // Row i of the output at dst + i * ld: nr floats, valid for writes; row i of the
    // partial sums at from + i * nr: nr floats, valid for reads.
    let (dst, ld, from, bias, relu) = match out {
        Out::Buf(buf) => {
            assert!(buf.len() >= b.rows.len() * nr, "block buffer too short");
            // Both pointers from one: the loads must stay valid across the stores.
            let dst = buf.as_mut_ptr();
            (dst, nr, dst.cast_const(), None, false)
        }
        Out::Rows(r) => {
            assert!(r.rows == b.rows.len() && r.nr == nr, "block rows out");
            (r.ptr, r.stride, r.partial.as_ptr(), r.bias, r.relu)
        }
    };
    debug_assert_eq!(std::mem::size_of::<S::V>(), 4 * S::LANES);

    let src = b.src.as_ptr();
    for (t, chunk) in b.rows.chunks(UR).enumerate() {
        let mut offs = [0usize; UR];
        for (i, o) in offs.iter_mut().enumerate() {
            *o = chunk[i.min(chunk.len() - 1)];
        }
        // (No closures here: one would be compiled without the caller's target features.)
        let tile = dst.wrapping_add(t * UR * ld);
        let tile_from = from.wrapping_add(t * UR * nr);
        let mut acc = [[s.zero(); NB]; UR];
        if b.accumulate {
            for (i, acc_i) in acc.iter_mut().enumerate().take(chunk.len()) {
                for (v, a) in acc_i.iter_mut().enumerate() {
                    // SAFETY: row t*UR + i < rows.len() of the partial sums, and (v + 1)*LANES
                    // <= nr floats of it (checked above, or by Rows::new).
                    *a = unsafe { s.load(tile_from.add(i * nr + v * S::LANES)) };
                }
            }
        }
        // A full tile of rows a constant 1, 2 or 4 apart (pixels along an output row at
        // that stride, the rows of a packed operand) is addressed from one base register.
        let step = match chunk {
            [a, b, ..] if chunk.len() == UR => b.wrapping_sub(*a),
            _ => 0,
        };
        let even = matches!(step, 1 | 2 | 4) && chunk.windows(2).all(|p| p[1] == p[0] + step);
        let first = src.wrapping_add(offs[0]);
        // One call per (reduction kind, step): the step is a const parameter.
        macro_rules! stepped {
            ($step:literal, $red:expr) => {
                reduce_stepped::<S, UR, NB, $step>(s, &mut acc, first, b.vecs, b.vstride, $red)
            };
        }
        macro_rules! general {
            ($red:expr) => {
                reduce::<S, UR, NB>(s, &mut acc, src, &offs, b.vecs, b.vstride, $red)
            };
        }
        match (b.red, if even { step } else { 0 }) {
            (Red::List(list), 1) => stepped!(1, list.iter().copied()),
            (Red::List(list), 2) => stepped!(2, list.iter().copied()),
            (Red::List(list), 4) => stepped!(4, list.iter().copied()),
            (Red::Strided { stride, len }, 1) => stepped!(1, (0..len).map(|r| r * stride)),
            (Red::List(list), _) => general!(list.iter().copied()),
            (Red::Strided { stride, len }, _) => general!((0..len).map(|r| r * stride)),
        }
        // The epilogue in loops of constant trip count over the tile: any indexing of `acc`
        // the compiler cannot resolve would keep the whole tile in memory, also in the
        // reduction above. Rows past the chunk repeat its last bias and are not stored.
        if let Some(bias) = bias {
            let mut b = [0.0f32; UR];
            for (i, b) in b.iter_mut().enumerate() {
                *b = bias[t * UR + i.min(chunk.len() - 1)];
            }
            for (acc_i, &b) in acc.iter_mut().zip(&b) {
                let bv = s.splat(b);
                for a in acc_i.iter_mut() {
                    *a = s.add(*a, bv);
                }
            }
        }
        if relu {
            for acc_i in acc.iter_mut() {
                for a in acc_i.iter_mut() {
                    *a = s.max(*a, s.zero());
                }
            }
        }
        for (i, acc_i) in acc.iter().enumerate().take(chunk.len()) {
            for (v, &a) in acc_i.iter().enumerate() {
                // SAFETY: row t*UR + i < rows.len() of the output, and (v + 1)*LANES <= nr
                // floats of it (checked above, or by Rows::new's caller).
                unsafe { s.store(tile.add(i * ld + v * S::LANES), a) };
            }
        }
    }
}

/// `acc[i][v] += sum_r bcast(src[red_r + offs[i]]) * vecs[r*vstride + v*LANES ..]`.
/// The caller has checked `red_r + offs[i] < src.len()` for every `r`, `i` (via the maxima)
/// and `(count - 1) * vstride + NR <= vecs.len()`.
#[inline(always)]
fn reduce<S: F32Simd, const UR: usize, const NB: usize>(
    s: S,
    acc: &mut [[S::V; NB]; UR],
    src: *const f32,
    offs: &[usize; UR],
    vecs: &[f32],
    vstride: usize,
    red: impl Iterator<Item = usize>,
) {
    let mut w = vecs.as_ptr();
    // LOOP: the reduction; all operands in registers.
    for r in red {
        // SAFETY: r + offs[i] <= red_max + src_max < src.len() (checked by the caller).
        let x = unsafe { src.add(r) };
        let mut wv = [s.zero(); NB];
        for (v, wv) in wv.iter_mut().enumerate() {
            // SAFETY: w is vecs + r*vstride for the r-th entry, and r*vstride + NR <= vecs.len().
            *wv = unsafe { s.load(w.add(v * S::LANES)) };
        }
        for (acc_i, &o) in acc.iter_mut().zip(offs) {
            // SAFETY: see x above.
            unsafe { s.bcast_fma(acc_i, &wv, x, o) };
        }
        // Past the last entry this may point beyond vecs; it is never read there.
        w = w.wrapping_add(vstride);
    }
}

/// [`reduce`] for a tile whose row `i` reads `src[red_r + i*STEP]` (`src` already moved to
/// the first row; `STEP` 1, 2 or 4): each broadcast is `src + red_r` plus the constant
/// `4*i*STEP` bytes, so the rows need no offset registers. The caller has checked
/// `red_r + (UR - 1)*STEP` in range of the block's source for every `r`.
#[inline(always)]
fn reduce_stepped<S: F32Simd, const UR: usize, const NB: usize, const STEP: usize>(
    s: S,
    acc: &mut [[S::V; NB]; UR],
    src: *const f32,
    vecs: &[f32],
    vstride: usize,
    red: impl Iterator<Item = usize>,
) {
    let mut w = vecs.as_ptr();
    // LOOP: the reduction; all operands in registers.
    for r in red {
        // Only read through below, at offsets the caller checked.
        let x = src.wrapping_add(r);
        let mut wv = [s.zero(); NB];
        for (v, wv) in wv.iter_mut().enumerate() {
            // SAFETY: w is vecs + r*vstride for the r-th entry, and r*vstride + NR <= vecs.len().
            *wv = unsafe { s.load(w.add(v * S::LANES)) };
        }
        // Row I < UR at displacement D = I*STEP, unrolled by hand: both must be constants.
        macro_rules! rows {
            ($($i:literal $d:literal),*) => {{$(
                if let Some(acc_i) = acc.get_mut($i) {
                    // SAFETY: x + D is the block's src + red_r + rows[I], in range (see above).
                    unsafe { s.bcast_fma_at::<NB, $d>(acc_i, &wv, x) };
                }
            )*}};
        }
        match STEP {
            1 => {
                rows!(0 0, 1 1, 2 2, 3 3, 4 4, 5 5, 6 6, 7 7, 8 8, 9 9, 10 10, 11 11, 12 12, 13 13, 14 14, 15 15, 16 16, 17 17, 18 18, 19 19, 20 20, 21 21, 22 22, 23 23)
            }
            2 => {
                rows!(0 0, 1 2, 2 4, 3 6, 4 8, 5 10, 6 12, 7 14, 8 16, 9 18, 10 20, 11 22, 12 24, 13 26, 14 28, 15 30, 16 32, 17 34, 18 36, 19 38, 20 40, 21 42, 22 44, 23 46)
            }
            4 => {
                rows!(0 0, 1 4, 2 8, 3 12, 4 16, 5 20, 6 24, 7 28, 8 32, 9 36, 10 40, 11 44, 12 48, 13 52, 14 56, 15 60, 16 64, 17 68, 18 72, 19 76, 20 80, 21 84, 22 88, 23 92)
            }
            _ => unreachable!("steps 1, 2 and 4"),
        }
        const { assert!(UR <= 24, "rows! covers 24 rows") };
        const {
            assert!(
                STEP == 1 || STEP == 2 || STEP == 4,
                "rows! covers steps 1, 2, 4"
            )
        };
        // Past the last entry this may point beyond vecs; it is never read there.
        w = w.wrapping_add(vstride);
    }
}
