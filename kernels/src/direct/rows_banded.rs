//! The banded form of the pixel-vectorised kernel (`rows.rs`), for layers with few channels
//! on the vectorised side whose input planes are too large to pad whole per task:
//!
//! - **backward-data** with few input channels per group: strided convs (the ResNet-50 and
//!   AlexNet stems, 3 <- 64 channels at 7x7 stride 2 and 11x11 stride 4; as a transposed
//!   conv, DCGAN's last layer, 64 -> 3 at stride 2) and stride-1 convs whose gradient rows
//!   overflow L1 (VGG's 3 -> 64 stem);
//! - **forward** passes of `rows.rs` over large planes (an image-producing last layer,
//!   64 -> 3 at 224x224; VGG's 3 -> 64 stem), which padded every input plane in every
//!   task, or that it would split into bands of rows (few tasks per image), each padding
//!   the whole planes; and forward passes with a horizontal stride over few input channels
//!   (the ResNet-50 stem, 3 -> 64 at 7x7 stride 2), which only this form takes.
//!
//! The channel-vectorised tile would fill 3 of its 8 or 16 lanes on the few-channel ones,
//! and spend half its time transposing on the short reductions. Here the vectors
//! hold output pixels. Backward-data goes one stride phase at a time: an input pixel
//! `(y, x) = (ey + sh*p, ex + sw*q)` receives from output-gradient pixel `(p + dy, q + dx)`
//! through tap `(ky, kx)` exactly when
//!
//! ```text
//!   ey + pad_t - ky*dh = sh*dy    and    ex + pad_l - kx*dw = sw*dx
//! ```
//!
//! so each phase `(ey, ex)` of `grad_x` is a stride-1 correlation of `grad_y` with that
//! phase's taps, at offsets `(dy, dx)`. Every tap belongs to exactly one phase, so no
//! multiply is wasted on the zeros a zero-upsampled `grad_y` would hold. [`RowJob`] runs
//! each phase: vectors of consecutive `q`, one weight broadcast per (reduction step,
//! channel), stored to every `sw`-th pixel (backward-data: a scalar store per pixel when
//! `sw > 1`, against a reduction of `c_out / g * kh * kw / (sh * sw)` FMAs per pixel).
//!
//! The forward pass is the one-phase case, output pixel `(p, q)` reading source pixel
//! `(sh*p + ky*dh - pad_t, sw*q + kx*dw - pad_l)`. With `sw > 1` the buffer holds each
//! source row as its `sw` column phases one after another (phase `e` holding the columns
//! `sw*c + e`), so a tap reads consecutive floats for consecutive `q`.
//!
//! Each task takes a band of output rows of one image and group, and runs the reduction in
//! chunks of source channels whose rows under one tile fit L1 ([`CHUNK_BYTES`]), partial
//! sums waiting in a [`Stage`] between chunks. For each chunk it copies the band's source
//! rows of the chunk's channels, zero-padded on every side the taps reach past, into a
//! buffer of at most [`BAND_BYTES`] (so the taps read L2, not memory), or of one band row
//! where that alone is larger, and runs every channel block and phase over it.

use super::rows::{
    NJ, NJ_FEW, NV_FEW_NARROW, RedList, RowJob, SharedRows, Stage, UR_FEW_NARROW, UR_FEW_WIDE,
    UR_WIDE, nj_for, nv, ur_for,
};
use super::{DirectIsa, spread_units};
use crate::parallel::{SharedMut, for_each_mut, for_each_task, with_scratch};
use crate::params::ConvGeom;

/// Largest backward-data stride per axis this form takes (`sh * sw` phases per call), and
/// largest forward horizontal stride (column phases per buffer row).
const MAX_STRIDE: usize = 16;
/// Most taps per axis: the tap lists are built per call (and per `supports` query, which
/// comes before any buffer exists to bound a geometry).
const MAX_TAPS: usize = 4096;
/// Most input channels per group of a backward-data pass: one tile of `rows.rs`'s `NJ`
/// shape (beyond, the channel-vectorised tile fills most of its lanes).
const MAX_CHANNELS: usize = 6;
/// Bytes of padded source rows a task works in (one reduction chunk's): half of a 512 KiB
/// L2. Forward passes whose whole padded planes take more use this form (and those
/// `rows.rs` would split into bands).
pub(super) const BAND_BYTES: usize = 256 * 1024;
/// Fewest tasks a pass is split into, where it has the rows (bands of one row at least).
const MIN_TASKS: usize = 8;
/// Bytes of source rows one tile reads in a reduction chunk: most of a 32 KiB L1, the rest
/// for the chunk's weights.
const CHUNK_BYTES: usize = 24 * 1024;

/// Whether this form runs backward-data of `g` (the caller has ruled out dense, 1x1 and
/// depthwise convs, and stride-1 convs whose gradient rows fit L1).
pub(super) fn backward_data_fits(g: &ConvGeom) -> Result<(), &'static str> {
    if g.c_in / g.g > MAX_CHANNELS {
        return Err(
            "backward-data with more than 6 input channels per group beyond the stride-1 form",
        );
    }
    if g.sh > MAX_STRIDE || g.sw > MAX_STRIDE {
        return Err("backward-data with a stride above 16");
    }
    // Before any tap list is built: `supports` runs before buffer lengths are checked.
    if g.kh > MAX_TAPS || g.kw > MAX_TAPS {
        return Err("backward-data with more than 4096 taps per axis");
    }
    if !Banded::backward(g).bounded(g.kh, g.kw) {
        return Err("backward-data whose taps reach past the output gradient and a kernel");
    }
    Ok(())
}

/// One axis's taps by phase: `taps[e]` lists `(k, d)` for the taps `k` that output phase
/// `e` receives through: its pixel `p` reads source pixel `a * p + d`.
struct Axis {
    taps: Vec<Vec<(usize, i128)>>,
    /// Least and greatest `d` over every phase's taps (0 when there are none).
    d_min: i128,
    d_max: i128,
}

impl Axis {
    fn new(taps: Vec<Vec<(usize, i128)>>) -> Axis {
        let ds = || taps.iter().flatten().map(|&(_, d)| d);
        Axis {
            d_min: ds().min().unwrap_or(0),
            d_max: ds().max().unwrap_or(0),
            taps,
        }
    }
    /// Backward-data: phase `e < stride` (none at or past the input's `extent`) receives
    /// through the taps `k` with `e + pad - k * dil = stride * d`, from `a = 1`.
    fn backward(stride: usize, extent: usize, pad: usize, k: usize, dil: usize) -> Axis {
        let s = stride as i128;
        Axis::new(
            (0..stride)
                .map(|e| {
                    if e >= extent {
                        return Vec::new();
                    }
                    (0..k)
                        .filter_map(|kk| {
                            let num = e as i128 + pad as i128 - (kk as i128) * (dil as i128);
                            (num.rem_euclid(s) == 0).then_some((kk, num.div_euclid(s)))
                        })
                        .collect()
                })
                .collect(),
        )
    }
    /// Forward: one phase, tap `k` at `d = k * dil - pad`.
    fn forward(pad: usize, k: usize, dil: usize) -> Axis {
        Axis::new(vec![
            (0..k)
                .map(|kk| (kk, (kk as i128) * (dil as i128) - pad as i128))
                .collect(),
        ])
    }
    /// Extent of `d`: the buffer's extra rows or columns.
    fn reach(&self) -> usize {
        (self.d_max - self.d_min) as usize
    }
    /// Taps over every phase.
    fn total(&self) -> usize {
        self.taps.iter().map(Vec::len).sum()
    }
    /// Most taps of one phase.
    fn most(&self) -> usize {
        self.taps.iter().map(Vec::len).max().unwrap_or(0)
    }
}

/// A pass in banded form: the source planes (`src_ch` per image, `red` of them per group,
/// `src_h x src_w`) reduced into the destination (`dst_ch` per image, `dst_g` per group,
/// `dst_h x dst_w`), output phase `(ey, ex)` holding the pixels `(ey + py*p, ex + px*q)`
/// (`py`, `px` the phase counts).
struct Banded {
    y: Axis,
    x: Axis,
    /// Source rows per output row (the forward stride; 1 for backward-data's phases).
    a: usize,
    /// Source columns per output column (likewise): above 1 the band buffer holds each
    /// row's `b` column phases one after another, so a tap's source pixels for consecutive
    /// output columns are consecutive floats.
    b: usize,
    n: usize,
    groups: usize,
    src_ch: usize,
    src_h: usize,
    src_w: usize,
    red: usize,
    dst_ch: usize,
    dst_g: usize,
    dst_h: usize,
    dst_w: usize,
}

impl Banded {
    /// Backward-data of `g`: from `grad_y` into `grad_x`.
    fn backward(g: &ConvGeom) -> Banded {
        Banded {
            y: Axis::backward(g.sh, g.h, g.pad_t, g.kh, g.dh),
            x: Axis::backward(g.sw, g.w, g.pad_l, g.kw, g.dw),
            a: 1,
            b: 1,
            n: g.n,
            groups: g.g,
            src_ch: g.c_out,
            src_h: g.oh,
            src_w: g.ow,
            red: g.c_out / g.g,
            dst_ch: g.c_in,
            dst_g: g.c_in / g.g,
            dst_h: g.h,
            dst_w: g.w,
        }
    }
    /// Forward of `g`: from `x` into `y`.
    fn forward(g: &ConvGeom) -> Banded {
        Banded {
            y: Axis::forward(g.pad_t, g.kh, g.dh),
            x: Axis::forward(g.pad_l, g.kw, g.dw),
            a: g.sh,
            b: g.sw,
            n: g.n,
            groups: g.g,
            src_ch: g.c_in,
            src_h: g.h,
            src_w: g.w,
            red: g.c_in / g.g,
            dst_ch: g.c_out,
            dst_g: g.c_out / g.g,
            dst_h: g.oh,
            dst_w: g.ow,
        }
    }
    /// Whether the taps reach less than a source plane plus a kernel past it on each axis,
    /// which bounds the band buffer by the source and the weights (a dilation far past
    /// the input, kept valid by as much padding, would otherwise ask for a buffer of its
    /// size).
    fn bounded(&self, kh: usize, kw: usize) -> bool {
        self.y.reach() < self.src_h.saturating_add(kh)
            && self.x.reach() < self.src_w.saturating_add(kw)
    }
    fn nj(&self) -> usize {
        nj_for(self.dst_g)
    }
    /// Floats of the packed weights: `[grp][channel block][phase (ey, ex)][red][ky][kx][nj]`,
    /// phases in order, each with its taps (phases past the destination's extent have none).
    fn packed_len(&self) -> usize {
        let nj = self.nj();
        self.groups * self.dst_g.div_ceil(nj) * self.red * self.y.total() * self.x.total() * nj
    }
}

/// Floats of [`pack_backward`]'s weights.
pub(super) fn backward_packed_len(g: &ConvGeom) -> usize {
    Banded::backward(g).packed_len()
}

/// Packs `weight` (`[c_out][c_in / g][kh][kw]`) for [`backward_data`].
pub(super) fn pack_backward(g: &ConvGeom, weight: &[f32], out: &mut [f32]) {
    assert_eq!(weight.len(), g.w_len, "weight length");
    let p = Banded::backward(g);
    assert_eq!(out.len(), p.packed_len(), "packed weight length");
    match p.nj() {
        1 => pack_backward_nj::<1>(g, &p, weight, out),
        NJ_FEW => pack_backward_nj::<NJ_FEW>(g, &p, weight, out),
        NJ => pack_backward_nj::<NJ>(g, &p, weight, out),
        nj => unreachable!("no block of {nj} channels"),
    }
}

/// [`pack_backward`] for blocks of `N` channels: one task per group, block and phase,
/// each writing its span of the packed weights in order (a copy, so the split does not
/// change any result). Per call, a pass packs before any thread can start: AlexNet's
/// conv1 took 45 us a call to pack with the channel and offsets computed per float on the
/// calling thread, 5% of its 2-thread backward-data; this takes 12 us on one thread, 9 on
/// two (Zen 4), and that pass ran 1.055x on 2 threads (1.79x to 1.86x one thread's speed),
/// 1.008x on one (5 alternating runs).
fn pack_backward_nj<const N: usize>(g: &ConvGeom, p: &Banded, weight: &[f32], out: &mut [f32]) {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let taps = g.kh * g.kw;
    // Each phase's taps, as offsets into one channel's `kh x kw` plane, in packed order.
    let phases: Vec<Vec<usize>> = (p.y.taps.iter())
        .flat_map(|ty| {
            (p.x.taps.iter()).map(move |tx| {
                (ty.iter())
                    .flat_map(|&(ky, _)| tx.iter().map(move |&(kx, _)| ky * g.kw + kx))
                    .collect()
            })
        })
        .collect();
    let blocks = c_in_g.div_ceil(N);
    let mut spans: Vec<(usize, &[usize], &mut [f32])> =
        Vec::with_capacity(g.g * blocks * phases.len());
    let mut rest = out;
    for gb in 0..g.g * blocks {
        for ph in &phases {
            let (span, tail) = rest.split_at_mut(c_out_g * ph.len() * N);
            spans.push((gb, ph, span));
            rest = tail;
        }
    }
    debug_assert!(rest.is_empty());
    for_each_mut(&mut spans, |_, (gb, ph, span)| {
        let (grp, ic0) = (*gb / blocks, *gb % blocks * N);
        let live = N.min(c_in_g - ic0);
        let mut rows = span.chunks_exact_mut(N);
        for oc in 0..c_out_g {
            let w = &weight[((grp * c_out_g + oc) * c_in_g + ic0) * taps..][..live * taps];
            for &t in ph.iter() {
                let d = rows.next().expect("a row per channel and tap");
                for (j, v) in d.iter_mut().enumerate() {
                    *v = if j < live { w[j * taps + t] } else { 0.0 };
                }
            }
        }
    });
}

/// `grad_x := conv_transpose(grad_y, weight) + bias`, from [`pack_backward`]'s weights.
pub(super) fn backward_data<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    grad_y: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    grad_x: &mut [f32],
) {
    assert_eq!(grad_y.len(), g.y_len, "grad_y length");
    assert_eq!(grad_x.len(), g.x_len, "grad_x length");
    assert!(bias.is_none_or(|b| b.len() == g.c_in), "bias length");
    run(s, &Banded::backward(g), grad_y, packed, bias, false, grad_x);
}

/// Rows `p0..p1` of band `i` of `bands` over `rows` output rows: the rows' `unit`s (whole
/// tiles, the last perhaps partial) spread over the bands ([`spread_units`]), so bands
/// differ by at most a unit and the longer ones are spaced out. With `bands = rows.div_ceil(band)`
/// and `band` a multiple of `unit`, no band is longer than `band`.
///
/// Cut every `band` rows instead, the last band held the remainder: AlexNet's
/// backward-data, 9 bands of 6 of its 56 phase rows and one of 2, so that of two threads one
/// ran 30 rows and the other 26 (a task timeline: 5 x 175 us against 4 x 175 + 57). Spread
/// (bands of 4 and 6 rows, 2-row tiles), 2 threads, Zen 4: AlexNet backward-data 1.035x and
/// 1.038x (blocks of calls per variant; in a timeline 1084 -> 1002 us a call), the other
/// few-channel layers 0.98-1.05x, within the noise; one thread, AlexNet 0.99-1.01x.
fn band_rows(rows: usize, bands: usize, unit: usize, i: usize) -> (usize, usize) {
    let (p0, n) = spread_units(rows, unit, bands, i);
    (p0, p0 + n)
}

/// Most input channels per group of a forward pass with a horizontal stride (RGB images
/// and a spare): the stems of ResNet-50 (7x7 stride 2) and AlexNet (11x11 stride 4).
const MAX_STRIDED_CHANNELS: usize = 4;

/// Whether [`forward`] runs `g`'s forward pass with a horizontal stride (`rows.rs` takes
/// only stride 1) on tiles `span` pixels wide: a stride up to [`MAX_STRIDE`], at most
/// [`MAX_STRIDED_CHANNELS`] input channels per group, not depthwise, 1x1 or dense, and
/// output rows that whole tiles cover to within an eighth. Over so few input channels the
/// channel-vectorised tile splits a 147-step reduction (the ResNet-50 stem) into a chunk
/// of 128 and one of 19, and transposes every output tile into the NCHW planes, where
/// these tiles keep each sum in registers and store rows of pixels: the stem 1.18-1.28x
/// (batch 4: 0.99-1.2x), AlexNet's 11x11 stride 4 over 64 output columns 1.02-1.23x. Where
/// a row's last tile overlaps the one before it by much, it computes that many pixels
/// twice: AlexNet's 55 columns (64 computed) 0.77-0.89x, the stem's at 110x110 (55
/// columns) 0.97-1.2x, 56 columns at stride 4 0.95-1.06x (Zen 3, AVX2, 1 thread, median
/// and best of 6-8 alternating runs).
pub(super) fn strided_forward_fits(g: &ConvGeom, span: usize) -> Result<(), &'static str> {
    if g.sw == 1 {
        return Err("a horizontal stride of 1 (the stride-1 forms take it)");
    }
    if g.ow.div_ceil(span).saturating_mul(span) > g.ow.saturating_add(g.ow / 8) {
        return Err("horizontal strides over rows that whole pixel tiles overhang by an eighth");
    }
    if g.sw > MAX_STRIDE {
        return Err("horizontal strides above 16");
    }
    if g.c_in / g.g > MAX_STRIDED_CHANNELS || g.is_depthwise() {
        return Err("horizontal strides over more than 4 input channels per group, or depthwise");
    }
    if g.kh * g.kw == 1 || g.is_dense() {
        return Err("strided 1x1 and dense convs (the channel-vectorised kernel's forms)");
    }
    if g.kh > MAX_TAPS || g.kw > MAX_TAPS || !Banded::forward(g).bounded(g.kh, g.kw) {
        return Err("strided forward passes whose taps reach past the input and a kernel");
    }
    Ok(())
}

/// Whether [`forward`] should run `g`'s forward pass: horizontal stride 1, not depthwise,
/// and a group's padded input planes (what `rows.rs` pads per task) past [`BAND_BYTES`] or
/// `banded` (`rows.rs` would split each image into bands of rows, every task padding
/// whole planes).
pub(super) fn forward_preferred(g: &ConvGeom, padded_floats: usize, banded: bool) -> bool {
    g.sw == 1
        && !g.is_depthwise()
        && (banded || padded_floats.saturating_mul(4) > BAND_BYTES)
        && g.kh <= MAX_TAPS
        && g.kw <= MAX_TAPS
        && Banded::forward(g).bounded(g.kh, g.kw)
}

/// `y := conv(x, weight) + bias` (ReLU'd when `relu`), from `rows.rs`'s packed weights
/// (`[grp][c_out block][ic][ky][kx][nj]`, the one-phase case of the banded layout).
pub(super) fn forward<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    x: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    assert_eq!(x.len(), g.x_len, "x length");
    assert_eq!(y.len(), g.y_len, "y length");
    assert!(bias.is_none_or(|b| b.len() == g.c_out), "bias length");
    run(s, &Banded::forward(g), x, packed, bias, relu, y);
}

/// A banded pass's buffer and work split for one tile width (see `run`).
struct Layout {
    /// Floats of one column phase of a buffer row, and of the row.
    phase_cols: usize,
    cols: usize,
    /// Source channels per reduction chunk, and the chunks.
    kc: usize,
    chunks: usize,
    /// Output rows per task.
    band: usize,
}

fn run<S: DirectIsa>(
    s: S,
    p: &Banded,
    src: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    dst: &mut [f32],
) {
    assert_eq!(packed.len(), p.packed_len(), "packed weight length");
    assert_eq!(
        src.len(),
        p.n * p.src_ch * p.src_h * p.src_w,
        "source length"
    );
    assert_eq!(
        dst.len(),
        p.n * p.dst_ch * p.dst_h * p.dst_w,
        "destination length"
    );
    let nj = p.nj();
    let blocks = p.dst_g.div_ceil(nj);
    if p.n == 0 || p.groups == 0 || blocks == 0 {
        return;
    }
    let (py, px) = (p.y.taps.len(), p.x.taps.len());
    // Phase rows and columns: phase 0's are the most.
    let (rows_all, cols_all) = (p.dst_h.div_ceil(py), p.dst_w.div_ceil(px));
    let reach_y = p.y.reach();
    // Buffer rows for a band of `band` output rows.
    let buf_rows = |band: usize| p.a * (band - 1) + reach_y + 1;
    let images = p.n * p.groups;
    // The layout for tiles `span` pixels wide of `ur_max` rows at most.
    // - A column phase's floats: every vector of an output row and the taps' reach, in that
    //   phase's columns; a buffer row holds the phases the taps read: tap column `cx` (at
    //   most the reach) is in phase `cx % b`.
    // - Reduction chunks: the source channels whose rows under one tile (its taps' rows,
    //   its vectors and their reach) stay in L1 while the tile sums over them; partial sums
    //   wait in the stage between chunks.
    // - A task copies one chunk's rows at a time into its buffer, so a band is as tall as a
    //   buffer of BAND_BYTES holds of one chunk (bands of whole sources were 1-4 rows under
    //   64 or more channels: each source row copied 2-4 times, in 8-16 jobs a row), with at
    //   least MIN_TASKS tasks where the rows allow, so that threads share the work evenly
    //   (the stem at batch 1 would be 3 bands).
    let layout = |span: usize, ur_max: usize| {
        let phase_cols = cols_all.div_ceil(span) * span + p.x.reach() / p.b;
        let cols = p.b.min(p.x.reach() + 1) * phase_cols;
        let tile_rows = (ur_max - 1) * p.a + p.y.most().max(1);
        let kc = (CHUNK_BYTES / (tile_rows * (p.b * span + p.x.reach()) * 4)).max(1);
        let chunks = p.red.div_ceil(kc).max(1);
        let kc = p.red.div_ceil(chunks);
        let per_row = kc * cols * 4;
        let mut band = 1;
        while band < rows_all && (p.a * band + reach_y + 1).saturating_mul(per_row) <= BAND_BYTES {
            band += 1;
        }
        if images * rows_all.div_ceil(band) < MIN_TASKS {
            band = band.min(rows_all.div_ceil(MIN_TASKS.div_ceil(images)).max(1));
        }
        Layout {
            phase_cols,
            cols,
            kc,
            chunks,
            band,
        }
    };
    // On 32-register ISAs the few-channel shape takes several rows a tile (a band's rows
    // past its last whole tile compute rows they do not store): over phases at most
    // `NV_FEW_NARROW` vectors wide (a 64-pixel tile half fills DCGAN's 32: 1.72x), 4 rows of
    // them where bands have 8; else 2 rows where bands have 4: the stems' backward-data
    // 1.15-1.25x (AVX-512, Zen 5).
    let wide = nj == NJ_FEW && S::LANES >= 16;
    // Likewise the 6-channel shape, 2 rows where bands have 4.
    let wide_nj = nj == NJ && S::LANES >= 16;
    let narrow_span = NV_FEW_NARROW * S::LANES;
    let narrow = (wide && cols_all <= narrow_span)
        .then(|| layout(narrow_span, UR_FEW_NARROW))
        .filter(|l| l.band >= 2 * UR_FEW_NARROW);
    let narrow_tile = narrow.is_some();
    let (
        span,
        Layout {
            phase_cols,
            cols,
            kc,
            chunks,
            mut band,
        },
    ) = match narrow {
        Some(l) => (narrow_span, l),
        None => {
            let span = nv(nj) * S::LANES;
            let ur_max = if wide {
                UR_FEW_WIDE
            } else if wide_nj {
                UR_WIDE
            } else {
                1
            };
            (span, layout(span, ur_max))
        }
    };
    let ur = if narrow_tile {
        UR_FEW_NARROW
    } else if wide && band >= 2 * UR_FEW_WIDE {
        UR_FEW_WIDE
    } else if wide_nj && band >= 2 * UR_WIDE {
        UR_WIDE
    } else {
        ur_for(nj)
    };
    if nj == NJ_FEW || wide_nj {
        band -= band % ur;
    }
    let bands = rows_all.div_ceil(band);
    // Bands are whole tiles of rows where `band` is (single rows else): see `band_rows`.
    let unit = if band % ur == 0 { ur } else { 1 };
    // Each phase's first weight, per (group, block): phases in (ey, ex) order.
    let phase_w: Vec<usize> =
        p.y.taps
            .iter()
            .flat_map(|ty| p.x.taps.iter().map(move |tx| ty.len() * tx.len()))
            .scan(0, |at, taps| {
                let first = *at;
                *at += taps * p.red * nj;
                Some(first)
            })
            .collect();
    let block_w = packed.len() / (p.groups * blocks);
    let tiles = cols_all.div_ceil(span);
    let phases = py * px;
    // Stage floats per (block, phase): every row and tile of the band.
    let phase_stage = if chunks > 1 {
        band * tiles * nj * span
    } else {
        0
    };
    // Every task's buffer holds `band` rows' worth of one chunk (rows past the source are
    // zeros; a band of fewer rows copies the next ones too, which it reads but never
    // stores), so the reduction's offsets are the same in every task: listed
    // once per call, chunk by chunk and phase by phase (`reds[chunk * phases + phase]`).
    let plane = buf_rows(band) * cols;
    let mut red_all = Vec::with_capacity(p.red * p.y.total() * p.x.total());
    let mut red_at = Vec::with_capacity(chunks * phases + 1);
    for chunk in 0..chunks {
        for ty in &p.y.taps {
            for tx in &p.x.taps {
                red_at.push(red_all.len());
                for ch in 0..kc.min(p.red - chunk * kc) {
                    for &(_, dy) in ty {
                        for &(_, dx) in tx {
                            let cx = (dx - p.x.d_min) as usize;
                            red_all.push(
                                ch * plane
                                    + (dy - p.y.d_min) as usize * cols
                                    + cx % p.b * phase_cols
                                    + cx / p.b,
                            );
                        }
                    }
                }
            }
        }
    }
    red_at.push(red_all.len());
    let reds: Vec<RedList> = red_at
        .windows(2)
        .map(|at| RedList::new(&red_all[at[0]..at[1]]))
        .collect();
    // Per (chunk, phase): whether the phase's tap rows step through the buffer a row at a
    // time (undilated rows: every backward-data phase of the stems), which two-row tiles
    // then load once for both rows.
    let shared: Vec<Option<SharedRows>> =
        p.y.taps
            .iter()
            .flat_map(|ty| p.x.taps.iter().map(move |tx| (ty.len(), tx.len())))
            .cycle()
            .zip(&reds)
            .map(|((t, tx), red)| SharedRows::find(red.list(), t, tx, p.a * cols))
            .collect();
    // Column phase e's columns c in lo..hi of a buffer row hold the source row's columns
    // from `from` (b * lo + e + d_min_x) on, every b-th; the rest are zeros.
    let seg_cols: Vec<(usize, usize, usize)> = (0..cols / phase_cols)
        .map(|e| {
            let off = e as i128 + p.x.d_min;
            let ceil_div = |v: i128| -(-v).div_euclid(p.b as i128);
            let clamp = |v: i128| v.clamp(0, phase_cols as i128) as usize;
            let lo = clamp(ceil_div(-off));
            let hi = clamp(ceil_div(p.src_w as i128 - off)).max(lo);
            let from = if lo < hi {
                (p.b as i128 * lo as i128 + off) as usize
            } else {
                0
            };
            (lo, hi, from)
        })
        .collect();
    let out = SharedMut::new(dst);
    for_each_task(p.n * p.groups * bands, |t| {
        let (b, grp, band_i) = (t / (p.groups * bands), t / bands % p.groups, t % bands);
        let (p0, p1) = band_rows(rows_all, bands, unit, band_i);
        with_scratch(kc * plane + blocks * phases * phase_stage, |scratch| {
            let (buf, stage) = scratch.split_at_mut(kc * plane);
            let src_plane = p.src_h * p.src_w;
            let src = &src[(b * p.src_ch + grp * p.red) * src_plane..][..p.red * src_plane];
            let row0 = (p.a * p0) as i128 + p.y.d_min;
            for chunk in 0..chunks {
                let r0 = chunk * kc;
                // Buffer plane ch, row i, column phase e, column c hold source channel
                // r0 + ch, row a * p0 + d_min_y + i, column b * c + e + d_min_x, or 0 past
                // its edges. Which floats are past the edges depends on the row and column
                // alone, so the first chunk's zeros serve every later chunk (whose planes
                // are the same or fewer): written once (the ResNet-50 stem's backward-data
                // 1.03x, AlexNet's 1.02x).
                let src = &src[r0 * src_plane..];
                for (ch, dst) in buf.chunks_exact_mut(plane).take(p.red - r0).enumerate() {
                    for (i, row) in dst.chunks_exact_mut(cols).enumerate() {
                        let sy = row0 + i as i128;
                        if sy < 0 || sy >= p.src_h as i128 {
                            if chunk == 0 {
                                row.fill(0.0);
                            }
                            continue;
                        }
                        let src_row = &src[ch * src_plane + sy as usize * p.src_w..][..p.src_w];
                        for (seg, &(lo, hi, from)) in
                            row.chunks_exact_mut(phase_cols).zip(&seg_cols)
                        {
                            if chunk == 0 {
                                seg[..lo].fill(0.0);
                                seg[hi..].fill(0.0);
                            }
                            if lo == hi {
                                continue;
                            }
                            let from = &src_row[from..];
                            if p.b == 1 {
                                seg[lo..hi].copy_from_slice(&from[..hi - lo]);
                            } else {
                                for (d, s) in seg[lo..hi].iter_mut().zip(from.iter().step_by(p.b)) {
                                    *d = *s;
                                }
                            }
                        }
                    }
                }
                let buf = &*buf;
                for blk in 0..blocks {
                    let c0 = grp * p.dst_g + blk * nj;
                    let n_ch = nj.min(p.dst_g - blk * nj);
                    let w_blk = &packed[(grp * blocks + blk) * block_w..][..block_w];
                    for (ey, ty) in p.y.taps.iter().enumerate() {
                        let p_end = p1.min(p.dst_h.saturating_sub(ey).div_ceil(py));
                        for (ex, tx) in p.x.taps.iter().enumerate() {
                            let width = p.dst_w.saturating_sub(ex).div_ceil(px);
                            if p_end <= p0 || width == 0 {
                                continue;
                            }
                            let taps = ty.len() * tx.len();
                            let phase = ey * px + ex;
                            let red = reds[chunk * phases + phase];
                            let w0 = phase_w[phase] + r0 * taps * nj;
                            let stage_at = (blk * phases + phase) * phase_stage;
                            let mut job = RowJob {
                                src: buf,
                                // Formed only where a second row exists: a stride near
                                // usize::MAX leaves one output row.
                                row_step: if p_end - p0 > 1 { p.a * cols } else { 0 },
                                row0: p0,
                                red,
                                w: &w_blk[w0..][..red.list().len() * nj],
                                nj,
                                ur,
                                n_ch,
                                rows: p0..p_end,
                                width,
                                flat: None,
                                dst: out,
                                dst_base: (b * p.dst_ch + c0) * p.dst_h * p.dst_w
                                    + ey * p.dst_w
                                    + ex,
                                dst_plane: p.dst_h * p.dst_w,
                                dst_row: py * p.dst_w,
                                dst_col: px,
                                bias: bias.map(|bias| &bias[c0..c0 + n_ch]),
                                relu,
                                stage: (chunks > 1).then(|| Stage {
                                    buf: SharedMut::new(&mut stage[stage_at..][..phase_stage]),
                                    first: chunk == 0,
                                    last: chunk + 1 == chunks,
                                }),
                                shared: shared[chunk * phases + phase],
                            };
                            s.dispatch(&mut job);
                        }
                    }
                }
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::band_rows;

    /// Bands tile the rows in order, each starting on a whole unit, none longer than `band`
    /// (a multiple of the unit), their whole units within one of each other; AlexNet's 56
    /// backward-data phase rows in bands of at most 6 (2-row tiles) split 28 / 28 between
    /// the halves two threads take.
    #[test]
    fn bands_spread_whole_tiles_of_rows() {
        for unit in [1, 2, 4, 8] {
            for band in (unit..=64).step_by(unit) {
                for rows in 1usize..300 {
                    let bands = rows.div_ceil(band);
                    let label = format!("{rows} rows, band {band}, unit {unit}");
                    let (mut next, mut fewest, mut most) = (0, usize::MAX, 0);
                    for i in 0..bands {
                        let (p0, p1) = band_rows(rows, bands, unit, i);
                        assert_eq!(p0, next, "{label}: band {i} starts where the last ended");
                        assert!(p0 % unit == 0 && p0 < p1, "{label}: band {i} {p0}..{p1}");
                        assert!(p1 - p0 <= band, "{label}: band {i} {p0}..{p1}");
                        let units = (p1 - p0).div_ceil(unit);
                        (fewest, most, next) = (fewest.min(units), most.max(units), p1);
                    }
                    assert_eq!(next, rows, "{label}: every row");
                    assert!(most - fewest <= 1, "{label}: {fewest}..{most} units");
                }
            }
        }
        let sizes: Vec<usize> = (0..10)
            .map(|i| band_rows(56, 10, 2, i))
            .map(|(p0, p1)| p1 - p0)
            .collect();
        assert_eq!(sizes, [4, 6, 6, 6, 6, 4, 6, 6, 6, 6]);
        assert_eq!(sizes[..5].iter().sum::<usize>(), 28);
    }
}
