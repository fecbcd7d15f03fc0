//! Operand preparation for the direct kernel: zero-padded copies of the broadcast operand
//! (so the microkernel never tests a bound) and channel-blocked packing of the vector
//! operand (so each reduction step loads `NB` contiguous vectors).

use super::{DirectIsa, SimdJob};
use crate::parallel::{SharedMut, for_each_chunk_mut, for_each_task, threads};
use crate::simd::{F32Simd, LINE_FLOATS as LINE, prefetch_l2};
use std::ops::Range;

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

/// How [`pad_planes`] shares its planes out among threads.
#[derive(Clone, Copy)]
pub(crate) enum PadSplit {
    /// Whole planes a task: backward-weight, whose tasks read every pixel of their planes.
    Planes,
    /// Bands of rows of every plane of one image a task, `images` images: the order in
    /// which the data passes' tasks take pixels (the batch image after image, row after
    /// row), so each thread pads mostly the rows it then reads. Split by planes, every
    /// thread read half of its input from the other core's cache; 2 threads, AVX-512 (Zen
    /// 4, while moving lines between the two vCPUs was slow): the padding's copy went from
    /// 16% to 2% of a ResNet-50 stride-2 3x3 forward (56x56x128, batch 1), which ran 1.12x
    /// (its 3x3 stride-1 56x56x64 layer 1.11x, median of 300 paired calls).
    Rows { images: usize },
}

/// Tasks [`PadSplit::Rows`] cuts a pass's padding into per thread, where the batch has
/// fewer images.
const PAD_BANDS_PER_THREAD: usize = 4;

/// `src` (`planes` planes of `h x w`) embedded in zero planes of `rows x cols` with source
/// pixel `(0, 0)` at `(top, left)`, written into `buf` (of [`padded_len`] floats) in
/// parallel as `split` says; `src` itself when no padding or cropping is needed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pad_planes<'a, S: DirectIsa>(
    s: S,
    src: &'a [f32],
    planes: usize,
    h: usize,
    w: usize,
    rows: usize,
    cols: usize,
    top: usize,
    left: usize,
    split: PadSplit,
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
    // Padded rows r0.. of plane p into `dst` (whole rows).
    let fill = |p: usize, r0: usize, dst: &mut [f32]| {
        s.dispatch(&mut PadRows {
            src: &src[p * h * w..][..h * w],
            w,
            rows: r0..r0 + dst.len() / cols,
            top,
            left,
            len,
            dst,
        })
    };
    match split {
        PadSplit::Rows { images } if images > 0 && threads() > 1 && plane > 0 => {
            let per_image = planes / images;
            let bands = (PAD_BANDS_PER_THREAD * threads()).div_ceil(images);
            let band = rows.div_ceil(bands.min(rows));
            let bands = rows.div_ceil(band);
            let out = SharedMut::new(data);
            for_each_task(images * bands, |t| {
                let (b, r0) = (t / bands, t % bands * band);
                let n_rows = band.min(rows - r0);
                for p in b * per_image..(b + 1) * per_image {
                    // SAFETY: task (b, band) alone writes rows r0..r0 + n_rows of image b's
                    // planes (bands tile the rows, images the planes); `data` stays
                    // borrowed (as `out`) until every task has returned.
                    fill(p, r0, unsafe {
                        out.slice_mut(p * plane + r0 * cols, n_rows * cols)
                    });
                }
            });
            Planes {
                data: &*data,
                row: cols,
                plane,
            }
        }
        _ => {
            for_each_chunk_mut(data, plane, |p, dst| fill(p, 0, dst));
            Planes {
                data,
                row: cols,
                plane,
            }
        }
    }
}

/// Rows `rows` of a padded plane (`dst`, rows of `dst.len() / rows.len()` floats) of the
/// `h x w` plane `src`: source row `r - top` at columns `left..left + len` of row `r`, zero
/// around it. In vectors, not a `memcpy` and two `memset` calls per row: a small layer's
/// rows are a few floats (9 in ResNet-50's 7x7 layers, where those calls took 1.7% of the
/// forward and backward-data profile, this 1.0%). AVX-512 on Zen 4, 1 thread.
struct PadRows<'a> {
    src: &'a [f32],
    w: usize,
    rows: Range<usize>,
    top: usize,
    left: usize,
    /// Source floats per row, `len <= w`.
    len: usize,
    dst: &'a mut [f32],
}

impl SimdJob for PadRows<'_> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        let (l, left, len, end) = (S::LANES, self.left, self.len, self.dst.len());
        let cols = end.checked_div(self.rows.len()).unwrap_or(0);
        assert!(
            len <= self.w && left + len <= cols && l <= 16,
            "padded rows hold their source"
        );
        let h = self.src.len().checked_div(self.w).unwrap_or(0);
        let dst = self.dst.as_mut_ptr();
        let mut tail = [0.0f32; 16];
        for (i, r) in self.rows.clone().enumerate() {
            let from = (r.checked_sub(self.top))
                .filter(|&iy| iy < h)
                .map(|iy| self.src[iy * self.w..][..len].as_ptr());
            let at = i * cols;
            for x in (0..cols).step_by(l) {
                // Lanes lo..hi of the vector at column x come from the source row.
                let (lo, hi) = (
                    (left.saturating_sub(x)).min(l),
                    (left + len).saturating_sub(x).min(l),
                );
                let v = match from {
                    // SAFETY: lanes 0..l all fall in the source's columns (lo = 0: x >= left;
                    // hi = l: x + l <= left + len), so from + (x - left) .. + l lies in its
                    // row of len floats.
                    Some(p) if lo == 0 && hi == l => unsafe { s.load(p.add(x - left)) },
                    // SAFETY: lane i in lo..hi reads source column x + i - left, in 0..len.
                    Some(p) if lo < hi => unsafe {
                        s.load_range(p.wrapping_add(x).wrapping_sub(left), lo, hi)
                    },
                    _ => s.zero(),
                };
                if at + x + l <= end {
                    // SAFETY: at + x + l <= dst.len(). Lanes past this row's end land on the
                    // following rows' first columns (several rows when cols < l), which
                    // their own stores overwrite after this one.
                    unsafe { s.store(dst.add(at + x), v) };
                } else {
                    // A vector that would cross the end of `dst` (the last row's last,
                    // or more when cols < l): through a buffer, so nothing past it is
                    // written.
                    // SAFETY: tail holds 16 >= l floats (asserted above).
                    unsafe { s.store(tail.as_mut_ptr(), v) };
                    for (j, &t) in tail.iter().enumerate().take(end - at - x) {
                        // SAFETY: at + x + j < end = dst.len().
                        unsafe { *dst.add(at + x + j) = t };
                    }
                }
            }
        }
    }
}

/// Reduction entries [`pack_blocks`] moves per lane at a time.
const PACK_RUN: usize = 16;

/// Reduction entries ahead of its window that [`pack_blocks`] asks for each lane's cache
/// line. Backward-data's lanes are input channels: a 3x3 layer's block of 8 reads 288
/// contiguous bytes of each output channel's weights, a few KiB apart, which no hardware
/// prefetcher foresees. AlexNet's 13x13 and VGG's 14x14 3x3 layers on an AVX2-only Zen 3
/// EPYC (batch 1): backward-data's packing took 16% of the tiles' time, 11% with this
/// (1.02-1.06x the pass); forward's 11%, 9%.
const PACK_AHEAD: usize = 64;

/// Asks for the lines of `src[at + lane*ch_stride]` for `lane < lanes` (into L2), one
/// prefetch per line when lanes share lines.
#[inline(always)]
fn prefetch_lanes(src: &[f32], at: usize, lanes: usize, ch_stride: usize) {
    let p = src.as_ptr();
    if ch_stride >= LINE {
        for lane in 0..lanes {
            prefetch_l2(p.wrapping_add(at + lane * ch_stride));
        }
    } else if lanes > 0 {
        // The lanes' entries lie within LINE floats past the last lane's.
        let end = at + (lanes - 1) * ch_stride + LINE;
        for a in (at..end).step_by(LINE) {
            prefetch_l2(p.wrapping_add(a));
        }
    }
}

/// Floats [`pack_blocks`] writes.
pub(crate) fn blocks_len(groups: usize, n: usize, nr: usize, red: usize) -> usize {
    groups * n.div_ceil(nr) * red * nr
}

/// A block's reduction entries as [`pack_blocks`] reads them: entry `i` is read at source
/// offset `src[i]` into packed row `row[i]` (row `i` without `row`). Listed by increasing
/// source offset ([`Entries::sorted`]), up to `LANES` entries within `LANES` floats of
/// each other move in one register transpose whatever order the reduction takes them in:
/// forward's `[ky][ic][kx]` rows out of the `[ic][ky][kx]` weights then come 16 taps a
/// transpose, not the 6 (two channels' taps of one kernel row) that lie within 16 floats
/// in row order; backward-data's `(ky, oc, kx)` phase rows an output channel's 9 taps, not
/// a kernel row's 3.
#[derive(Clone, Copy)]
pub(crate) struct Entries<'a> {
    /// Source offset of each entry.
    pub src: &'a [usize],
    /// Packed row of each entry (a permutation of `0..src.len()`), or entry order.
    pub row: Option<&'a [usize]>,
    /// Whether the source offsets are one run of consecutive floats (forward's weights).
    dense: bool,
}

impl<'a> Entries<'a> {
    /// Row `r` from source offset `red_src[r]`, read in row order.
    pub fn in_order(red_src: &'a [usize]) -> Self {
        Entries {
            src: red_src,
            row: None,
            dense: is_dense(red_src),
        }
    }

    /// Entries listed by increasing source offset: entry `i` read at `src[i]` into packed
    /// row `row[i]` (a permutation of `0..src.len()`).
    pub fn sorted(src: &'a [usize], row: &'a [usize]) -> Self {
        debug_assert!(src.len() == row.len() && src.windows(2).all(|p| p[0] < p[1]));
        Entries {
            dense: is_dense(src),
            src,
            row: Some(row),
        }
    }

    /// `red`'s entries (row `r` read at `red[r]`, offsets distinct) by source offset, as
    /// the reduction builders list them, but sorted the plain way (the tests' reference),
    /// in `scratch` (at least `2 * red.len()` long).
    #[cfg(test)]
    pub(crate) fn by_sorting(red: &[usize], scratch: &'a mut [usize]) -> Self {
        let (src, row) = scratch[..2 * red.len()].split_at_mut(red.len());
        for (i, r) in row.iter_mut().enumerate() {
            *r = i;
        }
        row.sort_by_key(|&r| red[r]);
        for (s, &r) in src.iter_mut().zip(row.iter()) {
            *s = red[r];
        }
        Entries::sorted(src, row)
    }

    pub fn len(&self) -> usize {
        self.src.len()
    }

    /// The packed row of entry `i`.
    fn row(&self, i: usize) -> usize {
        self.row.map_or(i, |r| r[i])
    }

    /// Whether entries `i0..i1` go to consecutive rows.
    fn rows_in_order(&self, i0: usize, i1: usize) -> bool {
        self.row
            .is_none_or(|r| r[i0..i1].windows(2).all(|p| p[1] == p[0] + 1))
    }
}

/// Entries of the window from entry `r0` of `offs` (increasing source offsets): up to
/// `lanes` increasing entries within `lanes` floats of the first.
fn window(offs: &[usize], r0: usize, lanes: usize) -> usize {
    let mut len = 1;
    while len < lanes
        && r0 + len < offs.len()
        && offs[r0 + len] > offs[r0 + len - 1]
        && offs[r0 + len] - offs[r0] < lanes
    {
        len += 1;
    }
    len
}

/// Entries of a dense run's window from source offset `off`, with `left` entries left in
/// the run: `lanes`, or fewer to end at the end of `off`'s line (given the source's `phase`,
/// its first float's place in a cache line) or of the run. Known without a scan.
fn dense_window(off: usize, left: usize, lanes: usize, phase: Option<usize>) -> usize {
    phase
        .map_or(lanes, |a| lanes.min(LINE - (a + off) % LINE))
        .min(left)
}

/// Whether `src` runs through consecutive offsets.
fn is_dense(src: &[usize]) -> bool {
    src.windows(2).all(|w| w[1] == w[0].wrapping_add(1))
}

/// Packs an operand into channel blocks of `nr` in `out` (of [`blocks_len`] floats):
///
/// ```text
/// out[grp][blk][red.row(i)][lane] = src[grp*group_stride + (blk*nr + lane)*ch_stride + red.src[i]]
///                                   for lane < n - blk*nr, else 0
/// ```
///
/// with `n` channels per group and `red.len()` reduction entries per channel; each block is
/// packed on ISA `s` (its transposes in registers).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_blocks<S: DirectIsa>(
    s: S,
    src: &[f32],
    groups: usize,
    n: usize,
    nr: usize,
    group_stride: usize,
    ch_stride: usize,
    red: Entries<'_>,
    out: &mut [f32],
) {
    let blocks = n.div_ceil(nr);
    let per_block = red.len() * nr;
    if per_block == 0 {
        return;
    }
    for_each_chunk_mut(
        &mut out[..groups * blocks * per_block],
        per_block,
        |gb, blk_out| {
            let (grp, blk) = (gb / blocks, gb % blocks);
            let base = grp * group_stride + blk * nr * ch_stride;
            let lanes = nr.min(n - blk * nr);
            pack_block(s, src, base, lanes, nr, ch_stride, red, blk_out);
        },
    );
}

/// One block of [`pack_blocks`], on the calling thread, into `out` (`red.len() * nr`
/// floats):
///
/// ```text
/// out[red.row(i)][lane] = src[base + lane*ch_stride + red.src[i]]   for lane < lanes, else 0
/// ```
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_block<S: DirectIsa>(
    s: S,
    src: &[f32],
    base: usize,
    lanes: usize,
    nr: usize,
    ch_stride: usize,
    red: Entries<'_>,
    out: &mut [f32],
) {
    struct Job<'a> {
        src: &'a [f32],
        base: usize,
        lanes: usize,
        nr: usize,
        ch_stride: usize,
        red: Entries<'a>,
        out: &'a mut [f32],
    }
    impl SimdJob for Job<'_> {
        #[inline(always)]
        fn run<S: DirectIsa>(&mut self, s: S) {
            pack_block_on(s, self);
        }
    }
    s.dispatch(&mut Job {
        src,
        base,
        lanes,
        nr,
        ch_stride,
        red,
        out: &mut out[..red.len() * nr],
    });

    /// The body of [`pack_block`], compiled for `S`.
    #[inline(always)]
    fn pack_block_on<S: F32Simd>(s: S, j: &mut Job<'_>) {
        let (src, base, lanes, nr, ch_stride) = (j.src, j.base, j.lanes, j.nr, j.ch_stride);
        let red = j.red;
        let l = S::LANES;
        if l >= 8 && nr.is_multiple_of(l) {
            // Windows of up to LANES increasing entries within LANES floats of the first
            // (forward weights: whole runs of 16; backward-data's stride-1 3x3 phase: each
            // output channel's 9 taps; a stride-2 phase: that channel's taps of the phase,
            // 2 or 4 of 9 or 16), each moved LANES lanes at a time by one register
            // transpose.
            let offs_all = red.src;
            // A dense run's windows start on the source's cache lines when every lane's do
            // (a channel stride of whole lines), so each of a window's loads reads one line,
            // not two: the caller's weights need not be aligned (a large `Vec` from the
            // system allocator starts 16 bytes into a page). ResNet-50's 14x14x256 and
            // 7x7x512 forward weights 16 bytes past a line, AVX-512 on Zen 4: packing alone
            // 1.13x and 1.12x; the unprepared 14x14x256 forward 1.01-1.02x, DCGAN's 4x4
            // stride-2 backward-data (a forward kernel) 1.02x. Gapped entries (backward-data's
            // phases) keep whole windows: cut at the lines, DCGAN's transposed forward made
            // more, shorter windows and ran 0.965x.
            let phase = (red.dense && ch_stride.is_multiple_of(LINE))
                .then(|| (src.as_ptr() as usize / size_of::<f32>() + base) % LINE);
            let n = offs_all.len();
            // Whole dense windows store at their rows unchecked (below): check the rows once.
            assert!(
                red.row
                    .is_none_or(|r| r.len() == n && r.iter().all(|&x| x < n)),
                "pack rows"
            );
            let mut r0 = 0;
            while r0 < n {
                let len = if red.dense {
                    dense_window(offs_all[r0], n - r0, l, phase)
                } else {
                    window(offs_all, r0, l)
                };
                if let Some(&ahead) = offs_all.get(r0 + PACK_AHEAD) {
                    prefetch_lanes(src, base + ahead, lanes, ch_stride);
                }
                let offs = &offs_all[r0..r0 + len];
                // Consecutive entries (a dense run's windows; a stride-1 backward-data phase's
                // windows, an output channel's taps): one transpose per `LANES` lanes straight
                // from the source to the window's rows, without `segment`'s checks and
                // staging. AVX-512 on Zen 4, 1 thread: ResNet-50's 14x14x256 and 7x7x512
                // forward weights, packing alone, 1.4x and 1.2x (with the scan-free dense
                // window above); unprepared passes: 14x14x256 forward 1.02x, backward-data
                // 1.05x, 7x7x512 batch 8 backward-data 1.025x (AVX2 1.04x). Not for a lone
                // entry, or lanes already adjacent (a 1x1 layer's backward-data weights):
                // `segment` moves those without a transpose.
                let seq: [usize; 16];
                let direct_rows = if len > 1 && ch_stride != 1 && offs[len - 1] - offs[0] + 1 == len
                {
                    Some(match red.row {
                        Some(r) => &r[r0..r0 + len],
                        None => {
                            seq = std::array::from_fn(|i| r0 + i);
                            &seq[..len]
                        }
                    })
                } else {
                    None
                };
                for l0 in (0..nr).step_by(l) {
                    let at = base + l0 * ch_stride + offs[0];
                    let in_src = (l - 1)
                        .checked_mul(ch_stride)
                        .and_then(|d| d.checked_add(at + l))
                        .is_some_and(|end| end <= src.len());
                    if let Some(rows) = direct_rows.filter(|_| lanes >= l0 + l && in_src) {
                        // SAFETY: rows i < l of l floats at src[at + i*ch_stride..] lie in src
                        // (checked); rows.len() = len <= l, and each rows[k] < n (asserted
                        // above), and out holds n rows of nr floats, so l floats at
                        // out[rows[k]*nr + l0..] (l0 + l <= nr) lie in out.
                        unsafe {
                            s.transpose_to_rows(
                                src.as_ptr().add(at),
                                ch_stride,
                                j.out.as_mut_ptr().add(l0),
                                nr,
                                rows,
                            )
                        };
                        continue;
                    }
                    // The window's rows: one slab from its first, or listed.
                    let (at, rows) = if red.rows_in_order(r0, r0 + len) {
                        (red.row(r0) * nr, None)
                    } else {
                        (0, red.row.map(|r| &r[r0..r0 + len]))
                    };
                    segment(
                        s,
                        src,
                        base + l0 * ch_stride,
                        lanes.saturating_sub(l0),
                        ch_stride,
                        offs,
                        rows,
                        &mut j.out[at + l0..],
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
        for (i0, offs) in (0..).step_by(run).zip(red.src.chunks(run)) {
            if !red.rows_in_order(i0, i0 + offs.len()) {
                for lane in 0..nr {
                    for (i, &off) in (i0..).zip(offs) {
                        j.out[red.row(i) * nr + lane] = if lane < lanes {
                            src[base + lane * ch_stride + off]
                        } else {
                            0.0
                        };
                    }
                }
                continue;
            }
            let dst = &mut j.out[red.row(i0) * nr..][..offs.len() * nr];
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

    /// One segment of one group of `LANES` lanes:
    ///
    /// ```text
    /// dst[row(r)*nr + i] = src[at + i*ch_stride + offs[r]]   for i < min(valid, LANES), else 0
    /// ```
    ///
    /// for `r < offs.len() <= LANES`, with `offs` increasing and within `LANES` of
    /// `offs[0]`, and `row(r)` = `rows[r]`, or `r` without `rows`. A single entry lane by
    /// lane; else one register transpose of the window, straight from the source when all
    /// `LANES` rows of `LANES` floats are there (a plain copy when the lanes are adjacent and
    /// the entries consecutive), else from a square on the stack.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn segment<S: F32Simd>(
        s: S,
        src: &[f32],
        at: usize,
        valid: usize,
        ch_stride: usize,
        offs: &[usize],
        rows: Option<&[usize]>,
        dst: &mut [f32],
        nr: usize,
    ) {
        let l = S::LANES;
        let n = offs.len();
        assert!(n >= 1 && n <= l && l <= 16, "pack segment");
        assert!(rows.is_none_or(|r| r.len() == n), "pack segment rows");
        let row = |r: usize| rows.map_or(r, |rows| rows[r]);
        let last = rows.map_or(n - 1, |r| r.iter().copied().max().unwrap_or(0));
        assert!(dst.len() >= last * nr + l, "pack segment destination");
        let span = offs[n - 1] - offs[0] + 1;
        assert!(span >= n && span <= l, "pack segment window");
        if valid == 0 {
            for r in 0..n {
                dst[row(r) * nr..][..l].fill(0.0);
            }
            return;
        }
        let start = at + offs[0];
        if n == 1 {
            // A lone entry: LANES loads beat a transpose that keeps one column of LANES.
            for (i, d) in dst[row(0) * nr..][..l].iter_mut().enumerate() {
                *d = if i < valid {
                    src[start + i * ch_stride]
                } else {
                    0.0
                };
            }
            return;
        }
        let consecutive = span == n;
        if consecutive && ch_stride == 1 && valid >= l && start + (n - 1) + l <= src.len() {
            // Lanes already contiguous (a 1x1 layer's backward-data weights): a copy per
            // entry, no transpose.
            for r in 0..n {
                // SAFETY: reads l floats at src[start + r..] (start + r + l <= src.len(),
                // checked); writes l floats at dst[row(r)*nr..] (row(r) <= last, checked
                // above).
                unsafe {
                    s.store(
                        dst[row(r) * nr..].as_mut_ptr(),
                        s.load(src[start + r..].as_ptr()),
                    )
                };
            }
            return;
        }
        // The transpose's source: the window's rows in place, or copied into a square
        // (zeroed only then: a memset of 1 KiB per window was 2% of the samples of a conv4
        // forward pass).
        let mut sq;
        let (src_rows, stride) = if valid >= l && start + (l - 1) * ch_stride + l <= src.len() {
            (&src[start..], ch_stride)
        } else {
            sq = [0.0f32; 16 * 16];
            for (i, row) in sq.chunks_exact_mut(l).enumerate().take(l) {
                if i < valid {
                    row[..span].copy_from_slice(&src[start + i * ch_stride..][..span]);
                } else {
                    row.fill(0.0);
                }
            }
            (&sq[..], l)
        };
        if consecutive && rows.is_none() {
            // SAFETY: reads rows i < l of l floats at src_rows[i*stride..] (in src, checked
            // above, or the l x l square); writes rows r < n of l floats at dst[r*nr..]
            // (checked).
            unsafe {
                s.transpose_store(
                    src_rows.as_ptr(),
                    stride,
                    dst.as_mut_ptr(),
                    nr,
                    None,
                    n,
                    false,
                )
            };
            return;
        }
        // Gaps between the entries, or rows out of order: the window's columns in
        // registers, each entry's stored at its row.
        let mut ptrs = [std::ptr::null::<f32>(); 16];
        for (i, p) in ptrs.iter_mut().enumerate().take(l) {
            *p = src_rows.as_ptr().wrapping_add(i * stride);
        }
        let mut cols = [s.zero(); 16];
        // SAFETY: rows i < l of l floats at src_rows[i*stride..] are readable (checked
        // above, or the square); span <= l <= 16 outputs.
        unsafe { s.gather_transpose(&ptrs[..l], &mut cols[..span]) };
        for (r, &off) in offs.iter().enumerate() {
            // SAFETY: l floats at dst[row(r)*nr..] (row(r) <= last, checked above).
            unsafe { s.store(dst[row(r) * nr..].as_mut_ptr(), cols[off - offs[0]]) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "x86_64")]
    use crate::simd::{Avx2Fma, Avx512F};
    use crate::simd::{Portable, Scalar};

    /// `pack_blocks` against its formula: consecutive runs, windows with gaps (the taps of a
    /// stride-2 phase), lone entries, lanes adjacent and strided, channel counts that leave
    /// a partial block, and a source that ends right after its last entry, so windows near
    /// the end must be copied before their transpose.
    fn check_pack<S: DirectIsa>(s: S) {
        let l = S::LANES;
        let patterns: [(&str, Vec<usize>); 8] = [
            ("run", (0..20).collect()),
            (
                "4x4 phase",
                (0..5)
                    .flat_map(|c| [5, 7, 13, 15].map(|t| c * 40 + t))
                    .collect(),
            ),
            (
                "3x3 phase",
                (0..5)
                    .flat_map(|c| [0, 2, 6, 8].map(|t| c * 40 + t))
                    .collect(),
            ),
            ("lone", (0..7).map(|c| c * 40 + 4).collect()),
            // A gapped window exactly LANES floats wide (0 and LANES - 1), then a run.
            ("wide gap", vec![0, l.max(2) - 1, 40, 41, 42]),
            // Row orders that are not the source's: forward's [ky][ic][kx] of [ic][ky][kx]
            // weights, a stride-2 backward-data phase's (ky, oc, kx).
            (
                "kernel rows first",
                (0..3)
                    .flat_map(|ky| {
                        (0..5).flat_map(move |ic| (0..3).map(move |kx| ic * 9 + ky * 3 + kx))
                    })
                    .collect(),
            ),
            // A stride-1 backward-data phase's (ky, oc, kx): runs of 9 consecutive taps, one
            // output channel's, 40 floats apart.
            (
                "stride-1 phase rows first",
                (0..3)
                    .flat_map(|ky| {
                        (0..5).flat_map(move |oc| (0..3).map(move |kx| oc * 40 + ky * 3 + kx))
                    })
                    .collect(),
            ),
            (
                "phase rows first",
                [0, 6]
                    .into_iter()
                    .flat_map(|ky| (0..5).flat_map(move |oc| [0, 2].map(|kx| oc * 40 + ky + kx)))
                    .collect(),
            ),
        ];
        // Each pattern read in row order and by source offset.
        let mut scratch = vec![0; 2 * patterns.iter().map(|p| p.1.len()).max().unwrap()];
        for (name, red, by_source) in patterns
            .iter()
            .flat_map(|(name, red)| [(name, red, false), (name, red, true)])
        {
            let entries = if by_source {
                Entries::by_sorting(red, &mut scratch)
            } else {
                Entries::in_order(red)
            };
            for (n, nr) in [(l, l), (2 * l + 3, 2 * l), (3, l.max(2)), (5, 2 * l)] {
                if !nr.is_multiple_of(l) {
                    continue;
                }
                // The source from every float of a cache line: dense runs cut their windows
                // at the source's lines where the channel stride is whole lines (16, 32); 9
                // is a 3x3 layer's backward-data lanes (input channels), whose rows overlap.
                for (ch_stride, shift) in [1, 9, 16, 32, 300]
                    .into_iter()
                    .flat_map(|c| (0..LINE).map(move |shift| (c, shift)))
                {
                    let groups = 2;
                    let last = (n - 1) * ch_stride + red.iter().max().unwrap();
                    let group_stride = last + 1;
                    let buf: Vec<f32> = (0..shift + groups * group_stride)
                        .map(|i| i as f32 - shift as f32 + 1.0)
                        .collect();
                    let src = &buf[shift..];
                    let mut out = vec![f32::NAN; blocks_len(groups, n, nr, red.len())];
                    pack_blocks(
                        s,
                        src,
                        groups,
                        n,
                        nr,
                        group_stride,
                        ch_stride,
                        entries,
                        &mut out,
                    );
                    let blocks = n.div_ceil(nr);
                    for (at, got) in out.iter().enumerate() {
                        let (gb, r, lane) = (at / (red.len() * nr), at / nr % red.len(), at % nr);
                        let (grp, blk) = (gb / blocks, gb % blocks);
                        let ch = blk * nr + lane;
                        let want = if ch < n {
                            src[grp * group_stride + ch * ch_stride + red[r]]
                        } else {
                            0.0
                        };
                        assert_eq!(
                            *got, want,
                            "{l} lanes, {name} (by source {by_source}), n {n}, nr {nr}, \
                             ch_stride {ch_stride}, {shift} floats into the buffer: \
                             group {grp} block {blk} entry {r} lane {lane}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn pack_blocks_matches_its_formula_on_every_isa() {
        check_pack(Scalar);
        check_pack(Portable);
        // The windowed transposes run from 8 lanes up: AVX-512's 16 on any host.
        #[cfg(feature = "testing")]
        check_pack(crate::direct::Emu16::<false>);
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(s) = Avx2Fma::detect() {
                check_pack(s);
            }
            if let Some(s) = Avx512F::detect() {
                check_pack(s);
            }
        }
    }

    /// A dense run's windows with the source's phase: none crosses a line of the source
    /// or holds more than `lanes` entries, each is cut short only at a line's end (so at
    /// 16 lanes every one after the first starts on a line), and together they cover the
    /// run; without a phase, whole windows of `lanes`. Only consecutive offsets are dense.
    #[test]
    fn dense_windows_start_on_the_source_lines() {
        assert!(Entries::in_order(&[3, 4, 5, 6]).dense);
        assert!(!Entries::in_order(&[3, 4, 6]).dense);
        let mut scratch = [0; 8];
        assert!(Entries::by_sorting(&[2, 3, 0, 1], &mut scratch).dense);
        for lanes in [4, 8, 16] {
            for start in [0, 5, 16] {
                let offs: Vec<usize> = (start..start + 100).collect();
                for phase in (0..LINE).map(Some).chain([None]) {
                    let mut r0 = 0;
                    while r0 < offs.len() {
                        let len = dense_window(offs[r0], offs.len() - r0, lanes, phase);
                        let case =
                            format!("{lanes} lanes, run from {start}, phase {phase:?}, at {r0}");
                        assert!(
                            len >= 1 && len <= lanes && r0 + len <= offs.len(),
                            "{case}: {len}"
                        );
                        match phase {
                            Some(a) => {
                                let (first, last) = (a + offs[r0], a + offs[r0 + len - 1]);
                                assert_eq!(first / LINE, last / LINE, "{case}: crosses a line");
                                if r0 > 0 && lanes == LINE {
                                    assert_eq!(first % LINE, 0, "{case}: starts mid-line");
                                }
                                // Cut only at a line or after `lanes` entries.
                                let full = len == lanes || r0 + len == offs.len();
                                assert!(full || (last + 1) % LINE == 0, "{case}: cut short");
                            }
                            None => assert_eq!(len, lanes.min(offs.len() - r0), "{case}"),
                        }
                        r0 += len;
                    }
                }
            }
        }
    }
}
