//! Operand preparation for the direct kernel: zero-padded copies of the broadcast operand
//! (so the microkernel never tests a bound) and channel-blocked packing of the vector
//! operand (so each reduction step loads `NB` contiguous vectors).

use super::{DirectIsa, SimdJob};
use crate::parallel::for_each_chunk_mut;
use crate::simd::F32Simd;

/// A stack of NCHW planes of `row` floats per row and `plane` floats per plane, borrowed
/// from the caller's tensor or from a scratch buffer.
pub(crate) struct Planes<'a> {
    pub data: &'a [f32],
    /// Floats per row.
    pub row: usize,
    /// Floats per plane.
    pub plane: usize,
}

/// Floats [`pad_planes`] needs in its buffer (0 when it can borrow `src`).
pub(crate) fn padded_len(
    planes: usize,
    h: usize,
    w: usize,
    rows: usize,
    cols: usize,
    top: usize,
    left: usize,
) -> usize {
    if top == 0 && left == 0 && rows <= h && cols == w {
        0
    } else {
        planes * rows * cols
    }
}

/// `src` (`planes` planes of `h x w`) embedded in zero planes of `rows x cols` with source
/// pixel `(0, 0)` at `(top, left)`, written into `buf` (of [`padded_len`] floats); `src`
/// itself when no padding or cropping is needed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pad_planes<'a>(
    src: &'a [f32],
    planes: usize,
    h: usize,
    w: usize,
    rows: usize,
    cols: usize,
    top: usize,
    left: usize,
    buf: &'a mut [f32],
) -> Planes<'a> {
    debug_assert_eq!(src.len(), planes * h * w);
    if padded_len(planes, h, w, rows, cols, top, left) == 0 {
        return Planes {
            data: src,
            row: w,
            plane: h * w,
        };
    }
    let plane = rows * cols;
    let data = &mut buf[..planes * plane];
    // Source columns land at left..left+len; the left padding may cover the whole row.
    let left = left.min(cols);
    let len = w.min(cols - left);
    for_each_chunk_mut(data, plane, |p, dst| {
        let s = &src[p * h * w..][..h * w];
        for (r, row) in dst.chunks_mut(cols).enumerate() {
            match r.checked_sub(top).filter(|&iy| iy < h) {
                Some(iy) => {
                    row[..left].fill(0.0);
                    row[left..left + len].copy_from_slice(&s[iy * w..][..len]);
                    row[left + len..].fill(0.0);
                }
                None => row.fill(0.0),
            }
        }
    });
    Planes {
        data,
        row: cols,
        plane,
    }
}

/// Reduction entries [`pack_blocks`] moves per lane at a time.
const PACK_RUN: usize = 16;

/// Floats [`pack_blocks`] writes.
pub(crate) fn blocks_len(groups: usize, n: usize, nr: usize, red: usize) -> usize {
    groups * n.div_ceil(nr) * red * nr
}

/// Packs an operand into channel blocks of `nr` in `out` (of [`blocks_len`] floats):
///
/// ```text
/// out[grp][blk][r][lane] = src[grp*group_stride + (blk*nr + lane)*ch_stride + red_src[r]]
///                          for lane < n - blk*nr, else 0
/// ```
///
/// with `n` channels per group and `red_src.len()` reduction entries per channel; each
/// block is packed on ISA `s` (its transposes in registers).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_blocks<S: DirectIsa>(
    s: S,
    src: &[f32],
    groups: usize,
    n: usize,
    nr: usize,
    group_stride: usize,
    ch_stride: usize,
    red_src: &[usize],
    out: &mut [f32],
) {
    let blocks = n.div_ceil(nr);
    let per_block = red_src.len() * nr;
    if per_block == 0 {
        return;
    }
    struct Job<'a> {
        src: &'a [f32],
        base: usize,
        lanes: usize,
        nr: usize,
        ch_stride: usize,
        red_src: &'a [usize],
        out: &'a mut [f32],
    }
    impl SimdJob for Job<'_> {
        #[inline(always)]
        fn run<S: DirectIsa>(&mut self, s: S) {
            pack_block(s, self);
        }
    }
    for_each_chunk_mut(
        &mut out[..groups * blocks * per_block],
        per_block,
        |gb, blk_out| {
            let (grp, blk) = (gb / blocks, gb % blocks);
            s.dispatch(&mut Job {
                src,
                base: grp * group_stride + blk * nr * ch_stride,
                lanes: nr.min(n - blk * nr),
                nr,
                ch_stride,
                red_src,
                out: blk_out,
            });
        },
    );

    /// One block: `out[r][lane] = src[base + lane*ch_stride + red_src[r]]` for `lane <
    /// lanes`, else 0.
    #[inline(always)]
    fn pack_block<S: F32Simd>(s: S, j: &mut Job<'_>) {
        let (src, base, lanes, nr, ch_stride) = (j.src, j.base, j.lanes, j.nr, j.ch_stride);
        let l = S::LANES;
        if l >= 8 && nr.is_multiple_of(l) {
            // Segments of up to LANES consecutive entries (forward weights: whole runs of
            // 16; backward-data's stride-1 3x3 phase: each output channel's 9 taps), each
            // moved LANES lanes at a time by one register transpose.
            let red = j.red_src;
            let mut r0 = 0;
            while r0 < red.len() {
                let mut len = 1;
                while len < l && r0 + len < red.len() && red[r0 + len] == red[r0] + len {
                    len += 1;
                }
                let offs = &red[r0..r0 + len];
                let dst = &mut j.out[r0 * nr..(r0 + len) * nr];
                for l0 in (0..nr).step_by(l) {
                    segment(
                        s,
                        src,
                        base + l0 * ch_stride,
                        lanes.saturating_sub(l0),
                        ch_stride,
                        offs,
                        &mut dst[l0..],
                        nr,
                    );
                }
                r0 += len;
            }
            return;
        }
        // Reduction entries in runs, lane by lane within a run: the reads of a lane walk
        // its channel's (usually contiguous) entries and the writes stay in a run x nr
        // patch, instead of a cache line per float read.
        let run = PACK_RUN;
        for (dst, offs) in j.out.chunks_mut(run * nr).zip(j.red_src.chunks(run)) {
            let square = offs.len() == run
                && offs[run - 1] == offs[0] + run - 1
                && lanes.is_multiple_of(run);
            if square {
                for l0 in (0..lanes).step_by(run) {
                    let mut sq = [[0.0f32; PACK_RUN]; PACK_RUN];
                    for (l, row) in sq.iter_mut().enumerate() {
                        row.copy_from_slice(&src[base + (l0 + l) * ch_stride + offs[0]..][..run]);
                    }
                    for (r, d) in dst.chunks_exact_mut(nr).enumerate() {
                        let d: &mut [f32; PACK_RUN] =
                            (&mut d[l0..l0 + run]).try_into().expect("PACK_RUN");
                        for (l, v) in d.iter_mut().enumerate() {
                            *v = sq[l][r];
                        }
                    }
                }
                dst.chunks_exact_mut(nr).for_each(|d| d[lanes..].fill(0.0));
                continue;
            }
            for lane in 0..nr {
                if lane < lanes {
                    let s = &src[base + lane * ch_stride..];
                    for (r, &off) in offs.iter().enumerate() {
                        dst[r * nr + lane] = s[off];
                    }
                } else {
                    for r in 0..offs.len() {
                        dst[r * nr + lane] = 0.0;
                    }
                }
            }
        }
    }

    /// One segment of one group of `LANES` lanes: `dst[r*nr + i] = src[at + i*ch_stride +
    /// offs[r]]` for `i < min(valid, LANES)`, else 0, for `r < offs.len() <= LANES`, with
    /// `offs` consecutive. Straight from the source by a register transpose when all `LANES`
    /// rows of `LANES` floats are there (a plain copy when the lanes are adjacent); else
    /// through a square on the stack.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn segment<S: F32Simd>(
        s: S,
        src: &[f32],
        at: usize,
        valid: usize,
        ch_stride: usize,
        offs: &[usize],
        dst: &mut [f32],
        nr: usize,
    ) {
        let l = S::LANES;
        let n = offs.len();
        assert!(n >= 1 && n <= l && l <= 16, "pack segment");
        assert!(dst.len() >= (n - 1) * nr + l, "pack segment destination");
        if valid == 0 {
            for r in 0..n {
                dst[r * nr..r * nr + l].fill(0.0);
            }
            return;
        }
        let start = at + offs[0];
        if ch_stride == 1 && valid >= l && start + (n - 1) + l <= src.len() {
            // Lanes already contiguous (a 1x1 layer's backward-data weights): a copy per
            // entry, no transpose.
            for r in 0..n {
                // SAFETY: reads l floats at src[start + r..] (start + r + l <= src.len(),
                // checked); writes l floats at dst[r*nr..] (checked above).
                unsafe {
                    s.store(
                        dst[r * nr..].as_mut_ptr(),
                        s.load(src[start + r..].as_ptr()),
                    )
                };
            }
            return;
        }
        if valid >= l && start + (l - 1) * ch_stride + l <= src.len() {
            // SAFETY: reads rows i < l of l floats at src[start + i*ch_stride..], in src
            // (checked); writes rows r < n of l floats at dst[r*nr..] (checked).
            unsafe {
                s.transpose_store(
                    src[start..].as_ptr(),
                    ch_stride,
                    dst.as_mut_ptr(),
                    nr,
                    None,
                    n,
                    false,
                )
            };
            return;
        }
        let mut sq = [0.0f32; 16 * 16];
        for (i, row) in sq.chunks_exact_mut(l).enumerate().take(l) {
            if i < valid {
                row[..n].copy_from_slice(&src[start + i * ch_stride..][..n]);
            } else {
                row.fill(0.0);
            }
        }
        // SAFETY: reads l rows of l floats from sq (l <= 16); writes rows r < n of l
        // floats at dst[r*nr..] (checked).
        unsafe { s.transpose_store(sq.as_ptr(), l, dst.as_mut_ptr(), nr, None, n, false) };
    }
}
