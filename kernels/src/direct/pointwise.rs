//! The pointwise form of the direct kernel's data passes: 1x1 unpadded layers (ResNet's
//! bottleneck layers, Inception's and DenseNet's reductions; strided ones on their subsampled
//! input planes, see `pointwise_run` in `mod.rs`) as a GEMM on the NCHW planes as they lie.
//!
//! For such a layer each image's output plane is a matrix product, `out[m][p] = sum_k
//! A[m][k] * B[k][p]`, with the pixels `p` contiguous in both the source planes `B` and the
//! output planes. The pixel form vectorises over channels and so must transpose every tile
//! back to NCHW; here the vector operand is `NR` pixels of the source, the tile's rows are
//! `UR` output channels whose weights are broadcast where they lie (not packed; only
//! transposed for backward-data, see below), and each tile row is `NR` consecutive output
//! pixels:
//!
//! ```text
//!   rows (tile height)   UR output channels      broadcast: A[m][k] = w[m*w_row + k*w_red]
//!   vector operand       NR pixels of a plane    B[k][p0 .. p0 + NR], one reduction chunk
//!                                                copied to a contiguous column
//!   epilogue             the tile's last reduction chunk stores its rows in place:
//!                        out[m0 + i][p0 .. p0 + NR] (+ bias, ReLU)
//! ```
//!
//! The column copy costs a load and a store per vector that every row tile of the task then
//! reuses; read in place, a plane's rows are a plane apart, and at 1024 pixels (4 KiB) they
//! all fall in the same L1 sets. Earlier reduction chunks sum into a buffer, and a plane's
//! last partial column goes through it too (then copied out with the epilogue). Storing
//! the tile in place spreads the output's stores (which miss: a 56x56 layer's output is
//! larger than L2) among the next tiles' FMAs, where a separate epilogue issued them in one
//! burst per column: 1.01-1.10x forward on the 1x1 layers of ResNet-50 and DenseNet-121 at
//! 56x56 and 28x28, 1.0-1.15x backward-data (AVX-512, 1 thread, best of 4-10 alternating
//! runs each).
//!
//! The dense form (`dense_run` in `mod.rs`) runs the backward passes of layers whose window
//! covers the whole input on the same GEMM, with one "image" whose planes are the weights
//! (backward-data) or the batch's inputs (backward-weight), and the batch as `m` or `k`.
//!
//! Forward: `A = W` (`m` output channels, `k` input channels: `w_row = k`, `w_red = 1`).
//! Backward-data: `A = W^T` (`m` input channels, `k` output channels), `B` the output
//! gradient. The weights are first transposed to `[group][m][k]` ([`transpose_weights`],
//! or once in a plan), so both passes read `A` with `w_row = k`, `w_red = 1`.

use super::tile::{Block, Out, Red, Rows};
use super::{DirectIsa, SimdJob, red_chunks};
use crate::Pass;
use crate::parallel::{SharedMut, for_each_chunk_mut, for_each_task, threads, with_scratch};
use crate::params::ConvGeom;
use crate::simd::prefetch_l2;

/// Pixels from which an image plane goes the pointwise way, and the most its last partial
/// vector column may waste (as a fraction `1 / waste` of the plane): `(pixels, waste)` for
/// everything the other two entries do not cover (the forward pass on 16-lane ISAs and on
/// the narrow portable and scalar vectors, strided backward-data on 16-lane ISAs, every
/// backward-data on ISAs below 8 lanes), for unstrided backward-data on 16-lane ISAs, and
/// for both passes on 8-lane ones (AVX2).
///
/// Forward, pointwise / pixel form (medians of 5-7 alternating pairs, ResNet-50's 1x1
/// layers, Sapphire Rapids): at 56x56 1.03-1.21x on AVX-512 (AVX2 0.99x); at 28x28
/// 1.05-1.3x (AVX2 1.17-1.22x); at 14x14 0.87-0.96x on AVX-512 (the pixel form's tiles
/// span the whole small plane, and a 14x14 plane wastes 28 of 224 lanes in AVX-512's
/// 32-pixel columns). Strided: 56x56 -> 28x28 0.99x, 28x28 -> 14x14 1.13x. With AVX2's
/// 16-pixel columns the 14x14 plane wastes 12 of 208 lanes, and there the pointwise form
/// leads: 1.05-1.14x on ResNet-50's and DenseNet-121's 14x14 layers (an AVX2-only Zen 3
/// EPYC, medians of 4 alternating pairs), where the pixel form's broadcasts walk 128
/// channel rows a plane apart per reduction chunk.
///
/// Backward-data: at 56x56 1.4-1.48x (AVX2 1.24x), and since the tiles store in place also
/// at 14x14: 1.06-1.31x on the 1x1 layers of ResNet-50's and DenseNet-121's 14x14 stages
/// (best of 5 alternating pairs; the pixel form repacks all the weights on every call to
/// use them on 196 pixels). At 32-pixel columns the bound of 1/7 admits every plane of at
/// least 196 pixels. Not strided layers: 28x28 -> 14x14 ran 0.82-0.92x. On AVX2 the same
/// 14x14 layers ran 0.84-1.12x on Sapphire Rapids and 0.95-1.18x on Zen 3 with 8 row tiles
/// a task; with 24 (see [`MAX_TILES`]) 1.15-1.29x on 1 thread and 1.18-1.30x on 2 (Zen 3,
/// ResNet-50's and DenseNet-121's 14x14 layers, medians of 3 alternating runs), though
/// im2col still leads there (Auto takes it). Strided on AVX2, 28x28 -> 14x14 (ResNet-50's
/// layer3 downsample) ran 1.4-1.9x the pixel form on Zen 3 (4 alternating pairs): the pixel
/// form there runs one phase of 196 pixels with the tap and three without.
const MIN_PIXELS: [(usize, usize); 3] = [(256, 16), (196, 7), (196, 16)];
/// The largest wide-tile height of any ISA (bounds a task's row offsets on the stack).
const MAX_UR: usize = 16;
/// Row tiles (the pass's output channels) of a task at most, on every ISA: each packed
/// column chunk serves them all, so more tiles pack each chunk (and read the source column,
/// 256 rows a plane apart) for more FMAs. 24 against the earlier 8 ran 1.05-1.10x on
/// ResNet-50's and DenseNet's 1x1 layers at 56x56, 28x28 and 14x14 forward and 1.0-1.10x
/// backward-data (AVX2-only Zen 3, 1 thread, medians of 3 alternating runs; 16 and 32
/// within 3% of 24). On AVX-512 (Zen 5, 32-pixel columns) against the 8 the 16-lane ISAs
/// had kept (for a partial-sum buffer of `tiles * UR * NR` floats, 12 KiB at 8, 36 KiB at
/// 24; with a reduction of at most one chunk the tiles store in place and the buffer is
/// unused): prepared forward 1.00-1.09x and backward-data 1.00-1.08x on ResNet-50's 1x1
/// layers at 56x56, 28x28 and 14x14 (medians of 6 alternating runs, A/A 0.99-1.01; 12 and
/// 16 in between), 2 threads 0.96-1.13x against an A/A of 0.89-1.03.
const MAX_TILES: usize = 24;
/// Tasks a thread, at least, when a pass runs on several threads: [`row_slices`] cuts
/// thinner slices until there are this many (a 14x14 plane is one panel, so 256 output
/// channels made 2-3 tasks of 24 tiles for 2 threads).
const MIN_TASKS_PER_THREAD: usize = 4;
/// Row tiles of a slice, at least, when [`row_slices`] splits for threads.
const MIN_TILES: usize = 4;
/// Pixels per task (rounded to whole vector columns).
const PANEL_PIXELS: usize = 256;
/// Floats of one packed column chunk (`NR` pixels x the chunk): 16 KiB, or up to 1.5x that
/// where a reduction is shared out in chunks (see [`chunk`]).
const CHUNK_FLOATS: usize = 4 * 1024;

/// Reduction steps per packed column chunk for vectors of `nr` pixels, about: a reduction is
/// shared out in balanced chunks of this size (see `red_chunks` in `mod.rs`).
fn chunk(nr: usize) -> usize {
    (CHUNK_FLOATS / nr).max(1)
}

/// The most steps any chunk of a `k`-step reduction gets (the first is the longest).
fn longest_chunk(k: usize, nr: usize) -> usize {
    red_chunks(k, chunk(nr))
        .next()
        .map_or(0, |(k0, k1)| k1 - k0)
}

/// True when a data pass (forward, or backward-data) over geometry `g` takes the pointwise
/// form on ISA `S`: 1x1, unpadded, and planes that fill whole vector columns of pixels (up
/// to a small remainder; see [`MIN_PIXELS`]). A strided layer runs on its subsampled input
/// planes (see `pointwise_run` in `mod.rs`).
pub(super) fn applies<S: DirectIsa>(g: &ConvGeom, pass: Pass) -> bool {
    let p = g.oh * g.ow;
    let nr = S::TILES[1].1 * S::LANES;
    let inside = g.oh.saturating_sub(1) * g.sh < g.h && g.ow.saturating_sub(1) * g.sw < g.w;
    let one = g.kh == 1 && g.kw == 1 && g.pad_t == 0 && g.pad_l == 0 && inside;
    // A strided layer's backward-data scatters its planes back: it keeps the forward's
    // bound on every ISA. Unstrided backward-data has a lower bound on 16-lane ISAs, and
    // 8-lane ISAs take 196 pixels for every data pass.
    let unstrided_bd = pass == Pass::BackwardData && p == g.h * g.w && S::LANES >= 16;
    let narrow = S::LANES == 8;
    let (min, waste) = MIN_PIXELS[if narrow { 2 } else { usize::from(unstrided_bd) }];
    one && p >= min && (p.div_ceil(nr) * nr - p) * waste <= p
}

/// `wt[grp][i][j] = w[grp][j][i]` for `i < m`, `j < k`: each group's `k x m` weights
/// (backward-data's `w[oc][ic]`) transposed to `m x k`, in `LANES x LANES` blocks.
///
/// Read in place, backward-data's `A = W^T` has its rows adjacent and its reduction steps
/// `m` floats apart, so each step of a tile touched a new cache line and the broadcasts
/// missed L1. Transposed, they read as the forward pass reads its weights. On an AVX2-only
/// Zen 3 EPYC (1 thread, 6 alternating runs, the transpose counted) ResNet-50's 1x1
/// backward-data ran 1.24-1.5x (median) and 1.0-1.13x (best run) at 56x56 and 28x28, and
/// its layer2 and layer3 downsamples 1.19-1.38x and 1.24x.
pub(super) fn transpose_weights<S: DirectIsa>(
    s: S,
    w: &[f32],
    groups: usize,
    m: usize,
    k: usize,
    wt: &mut [f32],
) {
    // Output rows per task: a group, or of a single large group (256 KiB and up) a share
    // (whole vectors) for two tasks a thread.
    let rows = if groups == 1 && m * k >= 64 * 1024 {
        m.div_ceil(2 * threads()).next_multiple_of(S::LANES).min(m)
    } else {
        m
    };
    transpose_in_shares(s, w, groups, m, k, rows, wt);
}

/// [`transpose_weights`] in tasks of `rows` output rows: with one group, the last task may
/// have fewer; with several, `rows` must divide `m` (a task never spans two groups).
fn transpose_in_shares<S: DirectIsa>(
    s: S,
    w: &[f32],
    groups: usize,
    m: usize,
    k: usize,
    rows: usize,
    wt: &mut [f32],
) {
    assert_eq!(w.len(), groups * m * k, "weights length");
    assert_eq!(wt.len(), w.len(), "transposed weights length");
    assert!(rows > 0 || m * k == 0, "rows per task");
    assert!(
        groups == 1 || m.is_multiple_of(rows.max(1)),
        "a task within one group"
    );
    if m * k == 0 {
        return;
    }
    let shares = m.div_ceil(rows);
    for_each_chunk_mut(wt, rows * k, |t, out| {
        let (grp, r0) = (t / shares, t % shares * rows);
        s.dispatch(&mut Transpose {
            w: &w[grp * m * k..][..m * k],
            m,
            k,
            r0,
            out,
        })
    });
}

/// One task of [`transpose_weights`]: rows `r0 ..` of a group's transpose, `out[i][j] =
/// w[j][r0 + i]`, `w` being `k x m`.
struct Transpose<'a> {
    w: &'a [f32],
    m: usize,
    k: usize,
    r0: usize,
    out: &'a mut [f32],
}

impl SimdJob for Transpose<'_> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        let (l, m, k, r0) = (S::LANES, self.m, self.k, self.r0);
        let n = self.out.len() / k;
        assert!(
            self.w.len() == m * k && self.out.len() == n * k && r0 + n <= m,
            "transpose shape"
        );
        let (nv, kv) = (n / l * l, k / l * l);
        let (src, dst) = (self.w.as_ptr(), self.out.as_mut_ptr());
        for j0 in (0..kv).step_by(l) {
            for i0 in (0..nv).step_by(l) {
                // SAFETY: reads rows j0 .. j0 + l <= k of w, floats r0 + i0 .. r0 + i0 + l
                // <= r0 + n <= m of each, and writes rows i0 .. i0 + l <= n of out, floats
                // j0 .. j0 + l <= k of each: inside both (asserted above).
                unsafe {
                    s.transpose_store(
                        src.add(j0 * m + r0 + i0),
                        m,
                        dst.add(i0 * k + j0),
                        k,
                        None,
                        l,
                        false,
                    )
                };
            }
        }
        // The rest float by float: in the whole blocks' columns the rows past them, in the
        // columns past them every row.
        for j in 0..k {
            let from = if j < kv { nv } else { 0 };
            for i in from..n {
                self.out[i * k + j] = self.w[j * m + r0 + i];
            }
        }
    }
}

/// One data pass in pointwise form; see the module docs.
pub(super) struct Pointwise<'a> {
    /// The source planes `[n][groups * k][p]`.
    pub src: &'a [f32],
    /// The weights of all groups, `m * k` per group.
    pub w: &'a [f32],
    /// Floats between the weights of consecutive output channels.
    pub w_row: usize,
    /// Floats between the weights of consecutive reduction steps.
    pub w_red: usize,
    /// Images.
    pub n: usize,
    /// Groups.
    pub groups: usize,
    /// Output channels per group.
    pub m: usize,
    /// Reduction (source channels per group).
    pub k: usize,
    /// Pixels per plane.
    pub p: usize,
    /// One bias per output channel (all groups).
    pub bias: Option<&'a [f32]>,
    /// Fuse a ReLU.
    pub relu: bool,
}

/// Runs the pass `pw` into `out` (`[n][groups * m][p]`), on ISA `s`.
///
/// # Safety
/// No other thread may access `out` during the call; the ranges written are checked.
pub(super) unsafe fn run<S: DirectIsa>(s: S, pw: &Pointwise<'_>, out: SharedMut) {
    let (ur, nb) = S::TILES[1];
    let nr = nb * S::LANES;
    let (n, groups, m, k, p) = (pw.n, pw.groups, pw.m, pw.k, pw.p);
    assert_eq!(pw.src.len(), n * groups * k * p, "source length");
    assert_eq!(pw.w.len(), groups * m * k, "weights length");
    assert!(
        m * k == 0 || (m - 1) * pw.w_row + (k - 1) * pw.w_red < m * k,
        "weight strides"
    );
    assert_eq!(out.len(), n * groups * m * p, "output length");
    assert!(pw.bias.is_none_or(|b| b.len() == groups * m), "bias length");
    if n * groups * m * p == 0 {
        return;
    }
    let blocks = m.div_ceil(ur);
    let panel = PANEL_PIXELS.div_ceil(nr) * nr;
    let panels = p.div_ceil(panel);
    let slices = row_slices(blocks, MAX_TILES, n * groups * panels, threads());
    let tiles = blocks.div_ceil(slices);
    for_each_task(n * groups * panels * slices, |t| {
        // Pixel panels innermost: tasks running at once on other threads share the row
        // slice's weights and read different source panels. With row slices innermost (the
        // two threads on one panel) the 28x28 1x1 layers of ResNet-50 and DenseNet scaled
        // 1.52x from 1 to 2 threads; this order and `row_slices` made them 1.34-1.41x
        // faster on 2 threads (1.06-1.14x at 56x56, 1.0-1.1x at 14x14; Zen 3, medians of 3
        // alternating runs).
        let (pan, slice, ig) = (t % panels, t / panels % slices, t / (slices * panels));
        let p0 = pan * panel;
        let width = panel.min(p - p0);
        // Scratch outside the dispatched body (a closure in there would lose the ISA's
        // features): the tiles' buffer and one packed column chunk.
        let buf_len = tiles * ur * nr;
        with_scratch(buf_len + longest_chunk(k, nr) * nr, |scratch| {
            let (buf, col) = scratch.split_at_mut(buf_len);
            s.dispatch(&mut Task {
                pw,
                out,
                ig,
                p0,
                width,
                blocks: slice * blocks / slices..(slice + 1) * blocks / slices,
                buf,
                col,
            });
        });
    });
}

/// How many row slices `blocks` row tiles split into (the caller splits them as evenly as
/// whole tiles allow): as few as `tiles` a slice allows, but on several threads enough for
/// [`MIN_TASKS_PER_THREAD`] tasks a thread in all (`others` tasks per slice), down to
/// [`MIN_TILES`] tiles a slice.
fn row_slices(blocks: usize, tiles: usize, others: usize, threads: usize) -> usize {
    let few = blocks.div_ceil(tiles);
    if threads <= 1 {
        return few.max(1);
    }
    let want = (MIN_TASKS_PER_THREAD * threads).div_ceil(others.max(1));
    few.max(want.min(blocks.div_ceil(MIN_TILES))).max(1)
}

/// One task: row tiles `blocks` of image x group `ig`, pixels `p0 .. p0 + width`.
struct Task<'a, 'b> {
    pw: &'a Pointwise<'a>,
    out: SharedMut,
    ig: usize,
    p0: usize,
    width: usize,
    blocks: std::ops::Range<usize>,
    buf: &'b mut [f32],
    col: &'b mut [f32],
}

impl SimdJob for Task<'_, '_> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        let pw = self.pw;
        let (ur, nb) = S::TILES[1];
        let (nr, l) = (nb * S::LANES, S::LANES);
        let (m, k, p) = (pw.m, pw.k, pw.p);
        let grp = self.ig % pw.groups;
        let src = &pw.src[self.ig * k * p..][..k * p];
        let cols = self.width.div_ceil(nr);
        let w = &pw.w[grp * m * k..][..m * k];
        // The weight offsets of each row tile's channels (entries past row m are never used).
        let mut offs = [0usize; MAX_TILES * MAX_UR];
        assert!(
            self.blocks.len() <= MAX_TILES && ur <= MAX_UR,
            "tile bounds"
        );
        for (t, mb) in self.blocks.clone().enumerate() {
            for i in 0..ur {
                offs[t * MAX_UR + i] = (mb * ur + i) * pw.w_row;
            }
        }
        // LOOP: columns of the task's pixels; per column, reduction chunks (one column's
        // chunk stays in L1 while every row tile of the task consumes it), the last one
        // stored in place (or, for a partial column, the epilogue from the buffer).
        for col in 0..cols {
            let c0 = self.p0 + col * nr;
            let width = nr.min(self.p0 + self.width - c0);
            // A full column's tiles store their last reduction chunk in place, with the
            // epilogue (earlier chunks sum in the buffer); a partial column goes through the
            // buffer.
            let in_place = width == nr && k > 0;
            if k == 0 {
                self.buf.fill(0.0);
            }
            for (k0, k1) in red_chunks(k, chunk(nr)) {
                let last = k1 == k;
                // The column's chunk, packed [kk][NR] (zero past the plane's last pixel).
                let packed = &mut self.col[..(k1 - k0) * nr];
                for (kk, dst) in (k0..k1).zip(packed.chunks_exact_mut(nr)) {
                    let from = &src[kk * p + c0..][..width];
                    if width == nr {
                        for v in 0..nb {
                            // SAFETY: (v + 1) * l <= nr floats in both from and dst.
                            unsafe {
                                s.store(
                                    dst.as_mut_ptr().add(v * l),
                                    s.load(from.as_ptr().add(v * l)),
                                )
                            };
                        }
                    } else {
                        dst[..width].copy_from_slice(from);
                        dst[width..].fill(0.0);
                    }
                }
                let packed = &*packed;
                for (t, mb) in self.blocks.clone().enumerate() {
                    let real = ur.min(m - mb * ur);
                    let block = Block {
                        src: &w[k0 * pw.w_red..],
                        red: Red::Strided {
                            stride: pw.w_red,
                            len: k1 - k0,
                        },
                        vecs: packed,
                        vstride: nr,
                        rows: &offs[t * MAX_UR..][..real],
                        accumulate: k0 > 0,
                    };
                    let buf = &mut self.buf[t * ur * nr..][..ur * nr];
                    // The tile's lines of the next column, wanted by its epilogue a column
                    // from now: asked for tile by tile, among the FMAs. Asked for in one
                    // burst per column (every row of the task), they took about 8% of the
                    // pass in a profile, half the task's time outside the tiles (waiting for
                    // fill buffers). Tile by tile, ResNet-50's 56x56 1x1 layers ran
                    // 1.03-1.23x forward and 1.03-1.07x backward-data (Sapphire Rapids, 1
                    // thread, best of 5-7 alternating runs; 2 threads within 0.98-1.02x).
                    if last && col + 1 < cols {
                        let next = (self.ig * m + mb * ur) * p + c0 + nr;
                        // Only hints: an address past a row's (or the output's) end is harmless.
                        let out = self.out.at(0);
                        for r in 0..real {
                            for line in (0..nr).step_by(16) {
                                prefetch_l2(out.wrapping_add(next + r * p + line));
                            }
                        }
                    }
                    if in_place && last {
                        let m0 = mb * ur;
                        let bias = pw.bias.map(|b| &b[grp * m + m0..][..real]);
                        let first = self.out.rows((self.ig * m + m0) * p + c0, p, real, nr);
                        // SAFETY: the rows lie in `out` (checked by rows()), and this task
                        // alone accesses rows m0 .. m0 + real of image x group ig at pixels
                        // c0 .. c0 + nr (tasks split images, groups, row tiles and pixel
                        // panels); the caller keeps `out` borrowed and unaccessed meanwhile.
                        let rows = unsafe { Rows::new((first, p, real, nr), buf, bias, pw.relu) };
                        s.run_to(&block, Out::Rows(rows), true);
                    } else {
                        s.run(&block, buf, true);
                    }
                }
            }
            if in_place {
                continue;
            }
            for (t, mb) in self.blocks.clone().enumerate() {
                let m0 = mb * ur;
                let real = ur.min(m - m0);
                for i in 0..real {
                    // SAFETY: this task alone writes row m0 + i of image x group ig at pixels
                    // c0 .. c0 + width (tasks split images, groups, row tiles and pixel
                    // panels); the caller keeps `out` borrowed and unaccessed meanwhile.
                    let to = unsafe { self.out.slice_mut((self.ig * m + m0 + i) * p + c0, width) };
                    let from = &self.buf[(t * ur + i) * nr..][..width];
                    let b = pw.bias.map_or(0.0, |b| b[grp * m + m0 + i]);
                    let (bv, zero) = (s.splat(b), s.zero());
                    let vecs = width / l;
                    for v in 0..vecs {
                        // SAFETY: (v + 1) * l <= width floats in both from and to.
                        unsafe {
                            let mut x = s.add(s.load(from.as_ptr().add(v * l)), bv);
                            if pw.relu {
                                x = s.max(x, zero);
                            }
                            s.store(to.as_mut_ptr().add(v * l), x);
                        }
                    }
                    for (t, f) in to[vecs * l..].iter_mut().zip(&from[vecs * l..]) {
                        let x = f + b;
                        *t = if pw.relu { x.max(0.0) } else { x };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "x86_64")]
    use crate::simd::{Avx2Fma, Avx512F};
    use crate::simd::{Portable, Scalar};

    /// `transpose_in_shares` against its formula: whole and partial blocks on both sides,
    /// groups, and shares of a group that end inside a block or past one.
    fn check_transpose<S: DirectIsa>(s: S) {
        let l = S::LANES;
        for (groups, m, k, rows) in [
            (1, 3 * l, 2 * l, 3 * l),
            (1, 3 * l + 3, 2 * l + 1, l),
            (1, 5 * l + 2, 3 * l + 5, 2 * l),
            (1, 7, 5, 7),
            (3, 2 * l + 1, l + 3, 2 * l + 1),
        ] {
            let w: Vec<f32> = (0..groups * m * k).map(|i| i as f32).collect();
            let mut wt = vec![f32::NAN; w.len()];
            transpose_in_shares(s, &w, groups, m, k, rows, &mut wt);
            for grp in 0..groups {
                for i in 0..m {
                    for j in 0..k {
                        let (got, want) = (wt[(grp * m + i) * k + j], w[(grp * k + j) * m + i]);
                        assert_eq!(
                            got, want,
                            "{groups} x {m} x {k} by {rows}: [{grp}][{i}][{j}]"
                        );
                    }
                }
            }
        }
    }

    /// `row_slices` keeps each slice within the tile budget, and on several threads gives
    /// them enough tasks unless that would cut slices below `MIN_TILES` tiles.
    #[test]
    fn row_slices_fit_the_budget_and_feed_the_threads() {
        for blocks in [1, 3, 4, 11, 22, 43, 86, 171] {
            for tiles in [8, 24] {
                for others in [1, 2, 4, 13, 52] {
                    for threads in [1, 2, 8] {
                        let slices = row_slices(blocks, tiles, others, threads);
                        let case =
                            format!("{blocks} blocks, {tiles} tiles, {others} x, {threads} t");
                        assert!(slices >= 1 && slices <= blocks, "{case}: {slices} slices");
                        assert!(blocks.div_ceil(slices) <= tiles, "{case}: {slices} slices");
                        if threads == 1 {
                            assert_eq!(slices, blocks.div_ceil(tiles), "{case}");
                        } else if slices * others < MIN_TASKS_PER_THREAD * threads {
                            assert!(blocks / slices < 2 * MIN_TILES, "{case}: {slices} slices");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn transpose_matches_its_formula_on_every_isa() {
        check_transpose(Scalar);
        check_transpose(Portable);
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(s) = Avx2Fma::detect() {
                check_transpose(s);
            }
            if let Some(s) = Avx512F::detect() {
                check_transpose(s);
            }
        }
    }
}
