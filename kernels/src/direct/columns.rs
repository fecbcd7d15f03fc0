//! The column form of the direct kernel's data passes, for layers with more output
//! channels per group than pixels (ResNet-50's 7x7 layers at small batches; on 16-lane
//! ISAs only where its vectors of pixels run nearly full, and 1x1 backward-data: see
//! `forward_in_columns` and `backward_in_columns` in `mod.rs`).
//!
//! The pixel form (`mod.rs`) vectorises over channels: the weights are the vector operand,
//! repacked `[block][r][NR]` on every call, and the tile's rows are pixels. When a group has
//! more output channels than the batch has pixels, that repacking moves more data than the
//! convolution then reuses: ResNet-50's last 3x3 layer at batch 1 repacks 9.4 MB of weights
//! for 49 pixels. The column form swaps the operands of the same [`Block`] microkernel:
//!
//! ```text
//!   rows (tile height)   output channels            broadcast: the weights, read in place
//!   vector operand       NR pixels of one column    packed [grp][col][r][NR] from the
//!                                                   pixel form's broadcast operand
//!   buf[col][ch][NR] = sum_r w[grp*w_grp + ch*w_row + w_red[r]] * src[red[r] + pix[col*NR + lane]]
//! ```
//!
//! so the weights are read once where they lie and the smaller operand is the one packed.
//! Each pass describes itself as a [`Columns`]: the pixel form's reduction and pixel
//! offsets into its padded source, and where a channel's weights and outputs are.

use super::tile::{Block, Red};
use super::{DirectIsa, SimdJob};
use crate::parallel::{
    SharedMut, for_each_chunk_mut, for_each_task, threads, with_index_scratch, with_scratch,
};
use crate::simd::{LINE_FLOATS as LINE, prefetch_l2};

/// Row tiles (output channels) per task: the task's weights for one reduction chunk
/// ([`DirectIsa::RED_CHUNK`] steps; `4 * 12` channels x 128 floats = 24 KiB) stay in L1
/// beside one column's chunk of pixels (16 KiB); in L2 on AVX-512, whose chunks are 1024
/// steps.
const SLICE_TILES: usize = 4;
/// Rows per task at least where the weights are gathered ([`GatherRows`], a 1x1 layer's
/// backward-data): each step copies a run of this many adjacent floats from a row of
/// `w[oc][ic]` a layer's width past the last, a new line and often a new page, so wider runs
/// pay for each. 48 rows (8 AVX2 tiles; a stage of 24 KiB) ran ResNet-50's 7x7 1x1 layers'
/// backward-data 1.04-1.18x the 24 rows of 4 AVX2 tiles on an AVX2-only Zen 3 EPYC (1
/// thread, medians and best of 7 alternating runs; 2 threads 1.05-1.10x, medians), where
/// 3x3 layers, read in place, measured 0.92-0.99x with wider slices.
const GATHER_SLICE_ROWS: usize = 48;
/// Floats in 4 KiB: addresses a multiple of this apart share an L1 set (64 sets of
/// 64-byte lines).
const L1_ALIAS_FLOATS: usize = 4096 / size_of::<f32>();
/// Ways of an L1 set on the CPUs we target (Zen 3, Skylake-X; Sapphire Rapids has 12).
const L1_WAYS: usize = 8;
/// Pixel columns per task at most: the task's partial sums (`16 * 48 * 32` floats = 96 KiB
/// on AVX-512) stay in L2.
const COLS_PER_TASK: usize = 16;
/// Steps ahead of its copy that [`GatherRows`] prefetches a row: each step's rows lie on a
/// line (and past 1024 channels a page) of their own, which no hardware prefetcher
/// foresees. On an AVX2-only Zen 3 EPYC (1 thread, alternating runs, against no prefetch)
/// ResNet-50's 7x7 1x1 backward-data ran 1.11-1.52x at 8 steps (medians of 5; best runs
/// 0.95-1.27x), and 1.10-1.46x at 4 and 16 (medians of 6, where 8 had 1.19-1.51x).
const GATHER_AHEAD: usize = 8;

/// Output pixels (the whole batch, or one stride phase of it) up to which the column form
/// can pay: four columns of the AVX-512 tile.
const MAX_PIXELS: usize = 128;

/// True when the column form serves a pass with `rows` output channels per group and `npx`
/// output pixels better than the pixel form, whose per-call packing of the weights costs
/// one pass over them per `npx` pixels of use: few pixels, and more channels than pixels
/// (so the packed pixels are the smaller operand).
///
/// Measured on ResNet-50's layers (AVX-512, 1 thread, medians of 3-5 alternating runs,
/// column / pixel form): at 7x7 and batch 1 or 2 (49 or 98 pixels) forward 1.1-1.9x and
/// backward-data 1.1-2.1x, the 3x3 stride-2 layer's backward-data (49-pixel phases)
/// 1.3-2.0x; at 196 pixels 0.8-0.9x with 256 channels and a tie with 512. On AVX2
/// backward-data gains 1.1-1.7x at 49-pixel phases; forward 1.08-1.31x at 7x7 on an
/// AVX2-only Zen 3 EPYC (Sapphire Rapids capped at AVX2 had measured 0.8-1.06x; see
/// `forward_in_columns` in `mod.rs`). The AVX-512 numbers predate the pixel form's packing
/// block by block inside its tasks: on 16 lanes both passes now keep the column form only
/// for fewer pixels that fill its vectors, and backward-data for 1x1 layers
/// (`forward_in_columns`, `backward_in_columns`).
pub(super) fn preferred(rows: usize, npx: usize) -> bool {
    npx <= MAX_PIXELS && rows >= npx
}

/// One data pass in column form; see the module docs for the formula.
pub(super) struct Columns<'a> {
    /// The pixel form's padded broadcast operand (all images, all groups).
    pub src: &'a [f32],
    /// Floats between consecutive groups' first channels in `src`.
    pub src_grp: usize,
    /// Offset of each reduction step into `src` (from the group's first channel).
    pub red: &'a [usize],
    /// Offset of each output pixel into `src` (the whole batch).
    pub pix: &'a [usize],
    /// The weights, as the caller got them.
    pub w: &'a [f32],
    /// Floats between consecutive groups' weights.
    pub w_grp: usize,
    /// Floats between the weights of consecutive output channels of a group.
    pub w_row: usize,
    /// Offset of each reduction step into a channel's weights (as `red`, step for step).
    pub w_red: Red<'a>,
    /// Output channels per group.
    pub rows: usize,
    /// Groups.
    pub groups: usize,
    /// Destination offset of each output pixel in channel 0 (as `pix`, pixel for pixel).
    pub dst_offs: &'a [usize],
    /// Floats between consecutive output channels in the destination.
    pub ch_stride: usize,
    /// One bias per output channel (all groups).
    pub bias: Option<&'a [f32]>,
    /// Fuse a ReLU.
    pub relu: bool,
}

/// Runs the pass `c` into `out`, on ISA `s`.
///
/// # Safety
/// No other thread may access `out` during the call, and `c.dst_offs` must not repeat an
/// offset (tasks write disjoint channel x pixel sets only then); the ranges written are
/// checked.
pub(super) unsafe fn run<S: DirectIsa>(s: S, c: &Columns<'_>, out: SharedMut) {
    let npx = c.pix.len();
    let red_len = c.red.len();
    assert_eq!(c.dst_offs.len(), npx, "one destination offset per pixel");
    assert_eq!(
        c.w_red.len(),
        red_len,
        "one weight offset per reduction step"
    );
    if npx == 0 || c.rows == 0 || c.groups == 0 {
        return;
    }
    // Always the wide tile: the narrow one's 24 row offsets (one weight row each) do not
    // fit the general-purpose registers and reload from the stack on every FMA (1.3-1.5x
    // slower on ResNet-50's 14x14 and 7x7 layers, AVX-512).
    let (wide, (ur, nb)) = (true, S::TILES[1]);
    let nr = nb * S::LANES;
    let cols = npx.div_ceil(nr);
    let col_len = red_len * nr;
    with_scratch(c.groups * cols * col_len, |packed| {
        if col_len > 0 {
            for_each_chunk_mut(packed, col_len, |gj, out| {
                let (grp, j) = (gj / cols, gj % cols);
                let px = &c.pix[j * nr..npx.min((j + 1) * nr)];
                // The scratch is taken here, outside the dispatched body: a closure in there
                // would be compiled without the ISA's features (and call its intrinsics).
                with_index_scratch(3 * px.len(), |runs| {
                    s.dispatch(&mut PackColumn {
                        src: &c.src[grp * c.src_grp..],
                        red: c.red,
                        pix: px,
                        nr,
                        runs,
                        out,
                    })
                });
            });
        }
        let packed = &*packed;
        // A 1x1 layer's backward-data weights (`w[oc][ic]`: a row per input channel, a
        // step per output channel, rows adjacent) are copied chunk by chunk into
        // `[step][row]`, which the tiles then read in order: read where they lie, every
        // step of a tile touched a new cache line and, past 1024 channels, a new page,
        // with no prefetch to hide it. A 3x3 layer's steps run through a channel's 9
        // taps on the same lines, and its rows lie 9 floats apart: read in place.
        let gather = matches!(c.w_red, Red::List(_)) && c.w_row == 1;
        let slice = if gather {
            SLICE_TILES.max(GATHER_SLICE_ROWS.div_ceil(ur)) * ur
        } else {
            SLICE_TILES * ur
        };
        let col_chunk = COLS_PER_TASK.min(cols);
        let chunks = cols.div_ceil(col_chunk);
        // Slices of whole tiles, as many as `slice` rows each need, rounded up so that the
        // threads share the tasks evenly (see `even_slices`).
        let row_tiles = c.rows.div_ceil(ur);
        let slices = even_slices(row_tiles, slice / ur, c.groups * chunks, threads());
        // The batch's last column, if one vector covers its pixels, runs the narrow tile
        // (one vector, more rows): half the multiply-adds of the wide one, most of them on
        // padding (ResNet-50's 7x7 planes: 49 pixels in columns of 16 on AVX2, the last
        // holding one). Not where more of the narrow tile's rows of weights than an L1 set
        // has ways would read lines of one set at once: a 1x1 layer's forward with 1024 or
        // 2048 input channels (rows 4 or 8 KiB apart, all 12 AVX2 rows in one set) ran
        // 0.91-0.93x.
        let narrow_tail = narrow_tail::<S>(npx, c.w_row);
        // Slices innermost: neighbouring tasks share their columns of pixels.
        for_each_task(c.groups * chunks * slices, |t| {
            let (grp, ch, sl) = (t / (chunks * slices), t / slices % chunks, t % slices);
            let (r0, r1) = slice_rows(sl, slices, row_tiles, slice / ur, ur, c.rows);
            let nrows = r1 - r0;
            let j0 = ch * col_chunk;
            let ncols = col_chunk.min(cols - j0);
            let thin_tail = narrow_tail && j0 + ncols == cols;
            with_index_scratch(nrows, |wrows| {
                for (i, o) in wrows.iter_mut().enumerate() {
                    *o = if gather { i } else { (r0 + i) * c.w_row };
                }
                let staged = if gather { S::RED_CHUNK * nrows } else { 0 };
                with_scratch(ncols * nrows * nr + staged, |buf| {
                    let (buf, stage) = buf.split_at_mut(ncols * nrows * nr);
                    let w = &c.w[grp * c.w_grp..];
                    if red_len == 0 {
                        buf.fill(0.0);
                    }
                    // Adjacent rows read in place through a list (a 3x3 layer's
                    // backward-data: each step's rows lie within a few lines, each output
                    // channel's steps a layer's worth of weights past the last's, which no
                    // hardware prefetcher foresees): the lines of the next chunk are asked
                    // for while this one runs. On an AVX2-only Zen 3 EPYC (alternating
                    // runs, medians) ResNet-50's layer4 3x3 backward-data ran 1.04-1.05x at
                    // stride 1 and 1.08-1.27x at stride 2 (49-pixel phases) on 1 thread, but
                    // 0.92-0.98x on 2 (cause not found; Zen 4, 2 threads, 6 alternating
                    // runs: 0.86-0.90x on the 3x3 layers' backward-data at batch 1, forward
                    // and the 1x1 layers within 0.97-1.01x): single-threaded only.
                    let ahead = match c.w_red {
                        Red::List(list)
                            if !gather && threads() == 1 && nrows * c.w_row <= MAX_AHEAD_SPAN =>
                        {
                            Some(list)
                        }
                        _ => None,
                    };
                    if let Some(list) = ahead {
                        prefetch_steps(w, list, 0..red_len.min(S::RED_CHUNK), r0, nrows, c.w_row);
                    }
                    for k0 in (0..red_len).step_by(S::RED_CHUNK) {
                        let k1 = red_len.min(k0 + S::RED_CHUNK);
                        // The next chunk's steps, a share before each column's tiles: asked
                        // for all at once, the prefetches stalled on the miss buffers.
                        let next = (k1, red_len.min(k1 + S::RED_CHUNK));
                        let share = (next.1 - next.0).div_ceil(ncols);
                        let (src, red) = match c.w_red {
                            Red::List(list) if gather => {
                                s.dispatch(&mut GatherRows {
                                    w,
                                    list: &list[k0..],
                                    r0,
                                    nrows,
                                    stage: &mut stage[..(k1 - k0) * nrows],
                                });
                                let red = Red::Strided {
                                    stride: nrows,
                                    len: k1 - k0,
                                };
                                (&stage[..], red)
                            }
                            _ => (&w[c.w_red.src_shift(k0)..], c.w_red.slice(k0, k1)),
                        };
                        for (j, buf_j) in buf.chunks_exact_mut(nrows * nr).enumerate() {
                            if let Some(list) = ahead {
                                let p0 = next.1.min(next.0 + j * share);
                                let p1 = next.1.min(p0 + share);
                                prefetch_steps(w, list, p0..p1, r0, nrows, c.w_row);
                            }
                            let col = &packed[(grp * cols + j0 + j) * col_len..][..col_len];
                            let block = Block {
                                src,
                                red,
                                vecs: &col[k0 * nr..k1 * nr],
                                vstride: nr,
                                rows: wrows,
                                accumulate: k0 > 0,
                            };
                            let narrow = thin_tail && j + 1 == ncols;
                            s.run(&block, buf_j, wide && !narrow);
                        }
                    }
                    let ch0 = grp * c.rows + r0;
                    // The thin tail's buffer holds rows of one vector.
                    let (wide_cols, tail) = if thin_tail {
                        (ncols - 1, Some(&buf[(ncols - 1) * nrows * nr..]))
                    } else {
                        (ncols, None)
                    };
                    let px0 = j0 * nr;
                    let px1 = npx.min((j0 + wide_cols) * nr);
                    let parts = [(&buf[..], nr, px0..px1)]
                        .into_iter()
                        .chain(tail.map(|t| (t, S::LANES, px1..npx)));
                    for (buf, nr, pxs) in parts {
                        let mut job = WriteColumns {
                            buf,
                            nr,
                            nrows,
                            dst_offs: &c.dst_offs[pxs],
                            dst: out,
                            base: ch0 * c.ch_stride,
                            ch_stride: c.ch_stride,
                            bias: c.bias.map(|b| &b[ch0..ch0 + nrows]),
                            relu: c.relu,
                        };
                        // SAFETY: this task writes channels ch0..ch0+nrows at pixels
                        // px0..(its last column's end): no other task has both (tasks
                        // partition groups x columns x slices, and the caller's pixels have
                        // distinct destinations); run's caller keeps everyone else out of
                        // `out`.
                        unsafe { job.write(s) };
                    }
                });
            });
        });
    });
}

/// Slices of a task's `tiles` row tiles, each at most `per` tiles, for `tasks` (groups x
/// column chunks) and `threads` threads: where the tasks do not already share out evenly,
/// rounded up until they do (never to more slices than tiles), the tiles then spread evenly
/// over the slices ([`slice_rows`]). ResNet-50's last 3x3 layer at batch 1 on 2 threads had
/// 11 slices of 4 tiles, the last of 2.67: one thread ran 6 and the other 5 (272 rows
/// against 240); 12 slices of 3-4 tiles give 252 and 260.
fn even_slices(tiles: usize, per: usize, tasks: usize, threads: usize) -> usize {
    let slices = tiles.div_ceil(per.max(1));
    if threads <= 1 || (tasks * slices).is_multiple_of(threads) {
        return slices;
    }
    // The fewest slices from `slices` up whose tasks the threads share evenly.
    (slices..=tiles)
        .find(|&n| (tasks * n).is_multiple_of(threads))
        .unwrap_or(slices)
}

/// Rows `r0..r1` of slice `sl` of `slices` over `tiles` tiles of `ur` of `rows` rows: `per`
/// tiles a slice where [`even_slices`] kept their count (the last slice the rest, as on one
/// thread), else the tiles spread evenly.
fn slice_rows(
    sl: usize,
    slices: usize,
    tiles: usize,
    per: usize,
    ur: usize,
    rows: usize,
) -> (usize, usize) {
    let (t0, t1) = if slices == tiles.div_ceil(per.max(1)) {
        (sl * per, (sl + 1) * per)
    } else {
        (tiles * sl / slices, tiles * (sl + 1) / slices)
    };
    ((t0 * ur).min(rows), (t1 * ur).min(rows))
}

/// Whether the last column of `npx` pixels runs the narrow tile (see [`run`]), with the
/// weights' rows `w_row` floats apart.
fn narrow_tail<S: DirectIsa>(npx: usize, w_row: usize) -> bool {
    let nr = S::TILES[1].1 * S::LANES;
    let cols = npx.div_ceil(nr);
    cols > 0
        && npx - (cols - 1) * nr <= S::LANES
        && nr > S::LANES
        && rows_per_l1_set(w_row, S::TILES[0].0) <= L1_WAYS
}

/// Vector lanes the column form's tiles span over `npx` pixels, with the weights' rows
/// `w_row` floats apart: whole wide columns, the last narrow where [`narrow_tail`] runs it.
pub(super) fn lanes_spanned<S: DirectIsa>(npx: usize, w_row: usize) -> usize {
    let nr = S::TILES[1].1 * S::LANES;
    let cols = npx.div_ceil(nr);
    if narrow_tail::<S>(npx, w_row) {
        (cols - 1) * nr + S::LANES
    } else {
        cols * nr
    }
}

/// The most of `rows` rows `w_row` floats apart whose lines at one step share an L1 set.
fn rows_per_l1_set(w_row: usize, rows: usize) -> usize {
    let line = |i: usize| i.wrapping_mul(w_row) % L1_ALIAS_FLOATS / LINE;
    (0..rows)
        .map(|i| (0..rows).filter(|&j| line(j) == line(i)).count())
        .max()
        .unwrap_or(0)
}

/// Rows of at most this many floats between the first's step and the last's are
/// prefetched ahead by [`prefetch_steps`] (a slice of 3x3 rows: 4 * 12 rows of 9 floats).
const MAX_AHEAD_SPAN: usize = 1024;

/// Asks for the lines the steps `ks` of `list` read in rows `r0 .. r0 + nrows` of `w`
/// (`w[(r0 + i)*w_row + list[k]]`), each line once while the steps advance through it.
fn prefetch_steps(
    w: &[f32],
    list: &[usize],
    ks: std::ops::Range<usize>,
    r0: usize,
    nrows: usize,
    w_row: usize,
) {
    // Line numbers count from the line holding w[0]: `skew` floats before it.
    let skew = (w.as_ptr() as usize / size_of::<f32>()) % LINE;
    let base = w.as_ptr().wrapping_sub(skew);
    let (lo, hi) = (skew + r0 * w_row, skew + (r0 + nrows - 1) * w_row);
    // Lines f..=l have been asked for since the steps last jumped.
    let mut done: Option<(usize, usize)> = None;
    for &off in &list[ks] {
        let (a, b) = ((lo + off) / LINE, (hi + off) / LINE);
        let from = match done {
            Some((f, l)) if f <= a && a <= l + 1 => l + 1,
            _ => a,
        };
        for line in from..=b {
            prefetch_l2(base.wrapping_add(line * LINE));
        }
        done = Some(match done {
            Some((f, l)) if from != a => (f, l.max(b)),
            _ => (a, b),
        });
    }
}

/// `stage[k][i] = w[r0 + i + list[k]]` for `i < nrows` and the `stage.len() / nrows` first
/// steps `k`: a chunk of the weights of adjacent rows `r0 .. r0 + nrows`, in the order the
/// tiles read them. `list` runs on past the chunk: the copy prefetches the rows
/// [`GATHER_AHEAD`] steps ahead, into the next chunk.
struct GatherRows<'a> {
    w: &'a [f32],
    list: &'a [usize],
    r0: usize,
    nrows: usize,
    stage: &'a mut [f32],
}

impl SimdJob for GatherRows<'_> {
    /// Whole vectors, then the rest float by float (a `copy_from_slice` per step would be a
    /// `memcpy` call per 24 floats).
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        let (l, nrows, r0) = (S::LANES, self.nrows, self.r0);
        let whole = nrows / l * l;
        for (k, (dst, &off)) in self
            .stage
            .chunks_exact_mut(nrows)
            .zip(self.list)
            .enumerate()
        {
            if let Some(&ahead) = self.list.get(k + GATHER_AHEAD) {
                let row = &self.w[ahead + r0..][..nrows];
                for v in (0..nrows).step_by(16) {
                    prefetch_l2(row[v..].as_ptr());
                }
                prefetch_l2(&row[nrows - 1]);
            }
            let src = &self.w[off + r0..][..nrows];
            for v in (0..whole).step_by(l) {
                // SAFETY: v + l <= whole <= nrows, the length of both slices.
                unsafe { s.store(dst.as_mut_ptr().add(v), s.load(src.as_ptr().add(v))) };
            }
            for (d, &x) in dst[whole..].iter_mut().zip(&src[whole..]) {
                *d = x;
            }
        }
    }
}

/// Packs one column: `out[r][lane] = src[red[r] + pix[lane]]` for `lane < pix.len()`,
/// else 0.
struct PackColumn<'a> {
    src: &'a [f32],
    red: &'a [usize],
    pix: &'a [usize],
    nr: usize,
    /// Scratch for the runs: `3 * pix.len()` entries.
    runs: &'a mut [usize],
    out: &'a mut [f32],
}

impl SimdJob for PackColumn<'_> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        let (nr, valid, l) = (self.nr, self.pix.len(), S::LANES);
        assert!(valid <= nr, "column wider than its tile");
        // The column's pixels as runs a constant step apart in the source (an output row:
        // step 1, or the stride), found once and replayed for every reduction step.
        {
            let (starts, rest) = self.runs[..3 * valid].split_at_mut(valid);
            let (lens, steps) = rest.split_at_mut(valid);
            let mut n_runs = 0;
            for (lane, &p) in self.pix.iter().enumerate() {
                if n_runs > 0 {
                    let r = n_runs - 1;
                    let prev = self.pix[starts[r] + lens[r] - 1];
                    if p > prev && (lens[r] == 1 || p - prev == steps[r]) {
                        steps[r] = p - prev;
                        lens[r] += 1;
                        continue;
                    }
                }
                (starts[n_runs], lens[n_runs], steps[n_runs]) = (lane, 1, 1);
                n_runs += 1;
            }
            let runs = starts[..n_runs]
                .iter()
                .zip(&lens[..n_runs])
                .zip(&steps[..n_runs]);
            for (dst, &off) in self.out.chunks_exact_mut(nr).zip(self.red) {
                for ((&l0, &len), &step) in runs.clone() {
                    let base = off + self.pix[l0];
                    if step > 1 {
                        for i in 0..len {
                            dst[l0 + i] = self.src[base + i * step];
                        }
                        continue;
                    }
                    // Whole vectors where both sides have room, even past the run's end:
                    // the lanes beyond it belong to later runs (written after this one) or
                    // lie past `valid` (zeroed below).
                    let mut i = 0;
                    while i < len {
                        if l0 + i + l <= nr && base + i + l <= self.src.len() {
                            // SAFETY: reads src[base + i..+l] and writes dst[l0 + i..+l], both
                            // in range (just checked; dst has nr floats).
                            unsafe {
                                let v = s.load(self.src.as_ptr().add(base + i));
                                s.store(dst.as_mut_ptr().add(l0 + i), v);
                            }
                            i += l;
                        } else {
                            dst[l0 + i] = self.src[base + i];
                            i += 1;
                        }
                    }
                }
                dst[valid..].fill(0.0);
            }
        }
    }
}

/// A task's epilogue: its buffer `[col][row][NR]` to the destination, with bias and ReLU.
struct WriteColumns<'a> {
    buf: &'a [f32],
    nr: usize,
    nrows: usize,
    dst_offs: &'a [usize],
    dst: SharedMut,
    base: usize,
    ch_stride: usize,
    bias: Option<&'a [f32]>,
    relu: bool,
}

impl WriteColumns<'_> {
    /// # Safety
    /// No other thread may access the destination elements during the call (their range is
    /// checked here).
    unsafe fn write<S: DirectIsa>(&mut self, s: S) {
        let (Some(&max_off), true) = (self.dst_offs.iter().max(), self.nrows > 0) else {
            return;
        };
        assert!(
            self.buf.len() >= self.dst_offs.len().div_ceil(self.nr) * self.nrows * self.nr,
            "column buffer too short"
        );
        assert!(self.nr.is_multiple_of(S::LANES), "columns of whole vectors");
        assert!(
            self.bias.is_none_or(|b| b.len() >= self.nrows),
            "column bias"
        );
        // at() asserts its offset <= len: the last element written must exist.
        let _ = self
            .dst
            .at(self.base + (self.nrows - 1) * self.ch_stride + max_off + 1);
        s.dispatch(self);
    }
}

impl SimdJob for WriteColumns<'_> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        let (nr, l) = (self.nr, S::LANES);
        let first = self.dst.at(self.base);
        for (j, offs) in self.dst_offs.chunks(nr).enumerate() {
            let col = &self.buf[j * self.nrows * nr..][..self.nrows * nr];
            for (v, offs) in offs.chunks(l).enumerate() {
                let run = offs.len() == l && offs.windows(2).all(|w| w[1] == w[0] + 1);
                for (i, row) in col.chunks_exact(nr).enumerate() {
                    let b = self.bias.map_or(0.0, |b| b[i]);
                    let at = i * self.ch_stride;
                    if run {
                        // SAFETY: reads row[v*l..(v+1)*l] (v*l + l <= nr = row.len(), as
                        // offs is a whole vector); writes pixels offs[0]..offs[0]+l of
                        // channel i, in dst (checked in write); write's caller guarantees
                        // exclusive access.
                        unsafe {
                            let mut a = s.add(s.load(row.as_ptr().add(v * l)), s.splat(b));
                            if self.relu {
                                a = s.max(a, s.zero());
                            }
                            s.store(first.add(at + offs[0]), a);
                        }
                    } else {
                        for (lane, &o) in offs.iter().enumerate() {
                            let a = row[v * l + lane] + b;
                            // SAFETY: pixel o of channel i is in dst (checked in write),
                            // exclusive to this call (write's caller).
                            unsafe { *first.add(at + o) = if self.relu { a.max(0.0) } else { a } };
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{even_slices, slice_rows};

    #[test]
    fn slices_cover_every_row_once_and_share_out_evenly() {
        for rows in 1..=100usize {
            for ur in [3, 4, 12] {
                let tiles = rows.div_ceil(ur);
                for per in 1..=5 {
                    for tasks in 1..=3 {
                        for threads in 1..=4 {
                            let n = even_slices(tiles, per, tasks, threads);
                            let case = format!(
                                "{rows} rows, ur {ur}, per {per}, tasks {tasks}, {threads} threads"
                            );
                            assert!(n >= tiles.div_ceil(per) && n <= tiles, "{case}: {n}");
                            let even = (tasks * n).is_multiple_of(threads);
                            let possible = (tiles.div_ceil(per)..=tiles)
                                .any(|m| (tasks * m).is_multiple_of(threads));
                            assert!(even || !possible, "{case}: {n} slices");
                            let mut next = 0;
                            for sl in 0..n {
                                let (r0, r1) = slice_rows(sl, n, tiles, per, ur, rows);
                                assert_eq!(r0, next, "{case}: slice {sl} starts");
                                assert!(r1 > r0 && r1 - r0 <= per * ur, "{case}: slice {sl}");
                                assert!(r0.is_multiple_of(ur), "{case}: slice {sl} tile");
                                next = r1;
                            }
                            assert_eq!(next, rows, "{case}: rows covered");
                            if threads == 1 {
                                // One thread: `per` tiles a slice, the last the rest.
                                assert_eq!(
                                    slice_rows(0, n, tiles, per, ur, rows).1,
                                    (per * ur).min(rows)
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
