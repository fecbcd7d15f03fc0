//! Pixel-vectorised direct convolution for the layers the channel-vectorised tile serves
//! badly: depthwise convs (one channel per group), convs with few output channels per
//! group (LeNet's C1: 1 -> 6), and convs with few weights per output channel (VGG's stem:
//! 3 -> 64, 27 weights), where that tile's transposing epilogue costs as much as its sums
//! (see [`SHORT_REDUCTION`]). Forward pass, horizontal stride 1; and backward-data of convs
//! with few input channels per group, or few weights per input channel: at stride 1
//! (LeNet's C3: 16 -> 6) as the forward conv it is (see [`backward_as_forward`]), else one
//! stride phase at a time in the banded form (`rows_banded.rs`), which also takes forward
//! passes over planes too large to pad whole per task, or split into bands of rows, and
//! forward passes with a horizontal stride over at most 4 input channels per group (the
//! ResNet-50 stem).
//!
//! The accumulators are vectors of `LANES` consecutive output pixels of one row, so they
//! store straight into NCHW, and no lane is wasted on missing channels:
//!
//! ```text
//!   acc[i][j][v] += w[r][j] * x[red[r] + rows[i] + v*LANES ..]     (one broadcast per j,
//!                                                                   one load per (i, v))
//!   tile = UR output rows x NJ output channels x NV vectors of LANES pixels
//! ```
//!
//! One output channel per group (depthwise among them) uses `NJ = 1`, `UR = 6`, `NV = 2`
//! (12 accumulators; each input vector feeds one FMA, folded into it as a memory operand).
//! Few-channel convs use `UR = 1`, `NJ = 6`, `NV = 2` (12 accumulators; 2 input loads and 6
//! weight broadcasts feed 12 FMAs), or for up to 3 channels (RGB) `NJ = 3`, `NV = 4` (12
//! accumulators; 3 broadcasts and 4 loads feed 12 FMAs, where the 6-channel tile would
//! spend half its FMAs on missing channels); where that tile runs two rows (the banded
//! form on 16-lane ISAs), rows of 3.5 vectors or a little less (AlexNet's 56-pixel
//! backward-data phases) pair the two rows' half-used last vectors into one, 21 FMAs a step
//! instead of 24 (`RowJob::tile_paired`); other rows whose tap rows step through the source a
//! row at a time (the stems' backward-data phases) load each source row once for both
//! rows (`few_channels_shared`). The input is a zero-padded copy wide enough
//! for whole vectors. A row at least a tile wide ends with a tile shifted left to end at
//! the row's end, so every vector it stores is whole; in a narrower row the partial
//! vectors compute on padding and only their valid lanes are stored. In flat mode (narrow
//! planes, see `forward`) the copy is as wide as the taps need, followed by a vector tile
//! of zeros, and a tile's vectors run across output rows.

use super::pack::{Entries, PadSplit, Planes, pack_blocks, pad_planes, padded_len};
use super::{DirectIsa, SimdJob, rows_banded};
use crate::parallel::{SharedMut, for_each_task, with_index_scratch, with_scratch};
use crate::params::{ConvGeom, ConvParams};
use crate::registry::ConvKernel;
use crate::{Algorithm, Isa, Pass};

/// Output channels per tile in the few-channel shape.
pub(super) const NJ: usize = 6;
/// Output channels per tile for up to this many (RGB images' 3), with [`NV_FEW`] vectors.
pub(super) const NJ_FEW: usize = 3;
/// Pixel vectors per tile row in the [`NJ_FEW`] shape (12 accumulators).
const NV_FEW: usize = 4;
/// Pixel vectors of a row's last [`NV_FEW`] tile where that many cover what is left of it.
const NV_FEW_TAIL: usize = 3;
/// Output rows per tile in the one-channel shape (depthwise, or one output channel per
/// group).
const UR_DW: usize = 6;
/// Output rows per tile in the [`NJ_FEW`] shape on ISAs with 32 vector registers (those of
/// 16 lanes; see [`few_channels`]), where the banded form's bands have the rows: 24
/// accumulators, and each weight broadcast feeds twice the FMAs.
pub(super) const UR_FEW_WIDE: usize = 2;
/// Output rows per tile in the [`NJ_FEW`] shape over phases at most [`NV_FEW_NARROW`]
/// vectors wide on ISAs with 32 vector registers, where bands have the rows (the banded
/// form's backward-data of DCGAN's last layer, 32-pixel phases): 24 accumulators.
pub(super) const UR_FEW_NARROW: usize = 4;
/// Pixel vectors per tile row of the [`UR_FEW_NARROW`] tile.
pub(super) const NV_FEW_NARROW: usize = 2;
/// Output rows per tile in the [`NJ`] shape on ISAs with 32 vector registers, where the
/// banded form's bands have the rows: 24 accumulators, each weight broadcast feeding 4
/// FMAs instead of 2 (VGG's stem forward, 3 -> 64 channels at 224x224, 1.09-1.12x; a
/// 64 -> 3 layer's backward-data at 224x224, run as a forward pass, 1.11x: AVX-512, 1
/// thread, in-process paired medians).
pub(super) const UR_WIDE: usize = 2;
/// Pixel vectors per tile row (the [`NJ`] and one-channel shapes).
const NV: usize = 2;
/// Largest `LANES` of any ISA (staging for partial vectors).
const MAX_LANES: usize = 16;

/// The pixel-vectorised direct kernel on ISA `S`.
pub struct DirectRows<S>(S);

impl<S: DirectIsa> DirectRows<S> {
    /// The kernel, if this CPU has the ISA.
    pub(crate) fn make() -> Option<Box<dyn ConvKernel>> {
        S::detect().map(|s| Box::new(DirectRows(s)) as Box<dyn ConvKernel>)
    }
}

// SAFETY: a DirectRows<S> holds the proof value S; raw reads and writes are bounded by
// `RowJob::in_bounds`, checked once per job in `RowJob::tiles`; writes are disjoint between
// tasks.
unsafe impl<S: DirectIsa> ConvKernel for DirectRows<S> {
    fn name(&self) -> &'static str {
        S::ROWS_NAME
    }
    fn algorithm(&self) -> Algorithm {
        Algorithm::Direct
    }
    fn isa(&self) -> Isa {
        S::ISA
    }
    fn supports(&self, g: &ConvGeom, pass: Pass) -> Result<(), &'static str> {
        if pass == Pass::BackwardData {
            return backward_data_fits(g);
        }
        if pass == Pass::BackwardWeight {
            return super::rows_weight::fits(g);
        }
        forward_fits(g, S::LANES)
    }
    fn forward(
        &self,
        g: &ConvGeom,
        x: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) {
        g.assert_forward(x, weight, bias, y);
        assert!(
            self.supports(g, Pass::Forward).is_ok(),
            "unsupported geometry"
        );
        with_scratch(packed_len(g), |packed| {
            pack(self.0, g, weight, packed);
            forward(self.0, g, x, packed, bias, false, y);
        });
    }
    fn backward_data(
        &self,
        g: &ConvGeom,
        grad_y: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        grad_x: &mut [f32],
    ) {
        g.assert_backward_data(grad_y, weight, bias, grad_x);
        assert!(
            self.supports(g, Pass::BackwardData).is_ok(),
            "unsupported geometry"
        );
        match as_forward(g) {
            Some(eq) => with_scratch(packed_len(&eq), |packed| {
                pack_flipped(self.0, g, &eq, weight, packed);
                forward(self.0, &eq, grad_y, packed, bias, false, grad_x);
            }),
            None => with_scratch(rows_banded::backward_packed_len(g), |packed| {
                rows_banded::pack_backward(g, weight, packed);
                rows_banded::backward_data(self.0, g, grad_y, packed, bias, grad_x);
            }),
        }
    }
    fn backward_weight(&self, g: &ConvGeom, x: &[f32], grad_y: &[f32], grad_weight: &mut [f32]) {
        g.assert_backward_weight(x, grad_y, grad_weight);
        assert!(
            self.supports(g, Pass::BackwardWeight).is_ok(),
            "unsupported geometry"
        );
        super::rows_weight::backward_weight(self.0, g, x, grad_y, grad_weight, None);
    }
    fn backward_weight_bias(
        &self,
        g: &ConvGeom,
        x: &[f32],
        grad_y: &[f32],
        grad_weight: &mut [f32],
        grad_bias: Option<&mut [f32]>,
    ) {
        g.assert_backward_weight(x, grad_y, grad_weight);
        assert!(
            self.supports(g, Pass::BackwardWeight).is_ok(),
            "unsupported geometry"
        );
        if let Some(gb) = grad_bias.as_deref() {
            assert_eq!(gb.len(), g.c_out, "grad_bias length");
        }
        super::rows_weight::backward_weight(self.0, g, x, grad_y, grad_weight, grad_bias);
    }
    fn prepare(&self, g: &ConvGeom, pass: Pass, weight: &[f32]) -> Option<Vec<f32>> {
        assert_eq!(weight.len(), g.w_len, "weight length");
        self.supports(g, pass).ok()?;
        if pass == Pass::BackwardWeight {
            return None;
        }
        if pass == Pass::BackwardData {
            let Some(eq) = as_forward(g) else {
                let mut packed = vec![0.0; rows_banded::backward_packed_len(g)];
                rows_banded::pack_backward(g, weight, &mut packed);
                return Some(packed);
            };
            let mut packed = vec![0.0; packed_len(&eq)];
            pack_flipped(self.0, g, &eq, weight, &mut packed);
            return Some(packed);
        }
        let mut packed = vec![0.0; packed_len(g)];
        pack(self.0, g, weight, &mut packed);
        Some(packed)
    }
    fn backward_data_prepared(
        &self,
        g: &ConvGeom,
        grad_y: &[f32],
        prepared: &[f32],
        bias: Option<&[f32]>,
        grad_x: &mut [f32],
    ) {
        assert!(
            self.supports(g, Pass::BackwardData).is_ok(),
            "unsupported geometry"
        );
        let Some(eq) = as_forward(g) else {
            rows_banded::backward_data(self.0, g, grad_y, prepared, bias, grad_x);
            return;
        };
        assert_eq!(prepared.len(), packed_len(&eq), "prepared weights");
        assert_eq!(grad_y.len(), eq.x_len, "grad_y length");
        assert_eq!(grad_x.len(), eq.y_len, "grad_x length");
        assert!(bias.is_none_or(|b| b.len() == g.c_in), "bias length");
        forward(self.0, &eq, grad_y, prepared, bias, false, grad_x);
    }
    fn forward_prepared(
        &self,
        g: &ConvGeom,
        x: &[f32],
        prepared: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
        y: &mut [f32],
    ) {
        assert!(
            self.supports(g, Pass::Forward).is_ok(),
            "unsupported geometry"
        );
        assert_eq!(prepared.len(), packed_len(g), "prepared weights");
        forward(self.0, g, x, prepared, bias, relu, y);
    }
}

/// Most weights per output channel (input channels per group x taps) plus one at which this
/// kernel takes a forward pass with any number of output channels (and stride-1
/// backward-data, the forward conv of `grad_y`, with any number of input channels). Over so
/// short a reduction the channel-vectorised kernel spends about half its time transposing
/// its tiles into the NCHW planes, which these tiles store into directly: 3 -> 64 channels
/// 3x3 at 64x64 to 224x224 1.1-1.8x, 3 -> 16 and 3 -> 32 at 128x128 and 224x224 1.2-1.7x,
/// 64 -> 3 and 32 -> 3 backward-data at 224x224 and 128x128 1.2x; ties (0.9-1.1x) at
/// 56x56, on a 16-channel gradient and on 1 -> 32 5x5 (Zen 3, AVX2, 1 and 2 threads, medians
/// of 3 alternating runs). The VGG stem's 27 weights are the common case.
pub(crate) const SHORT_REDUCTION: usize = 32;

/// Whether `channels` channels times `g`'s taps is a reduction below [`SHORT_REDUCTION`].
pub(super) fn short_reduction(g: &ConvGeom, channels: usize) -> bool {
    channels.saturating_mul(g.kh).saturating_mul(g.kw) < SHORT_REDUCTION
}

/// Whether this kernel runs the forward pass of `g` on an ISA of `lanes` lanes: horizontal
/// stride 1, and depthwise, at most 8 output channels per group, or fewer than
/// [`SHORT_REDUCTION`] weights per output channel (not 1x1 or dense: the
/// channel-vectorised kernel's pointwise and dense forms have no transposing epilogue);
/// a horizontal stride over few input channels in the banded form, on ISAs of at most 8
/// lanes (see [`rows_banded::strided_forward_fits`]).
pub(crate) fn forward_fits(g: &ConvGeom, lanes: usize) -> Result<(), &'static str> {
    if g.sw != 1 {
        // Measured on AVX2 only: 16-lane ISAs keep the channel-vectorised kernel.
        if lanes > 8 {
            return Err("horizontal strides on 16-lane ISAs");
        }
        return rows_banded::strided_forward_fits(g, nv(nj(g)) * lanes);
    }
    let short = short_reduction(g, g.c_in / g.g) && !g.is_pointwise() && !g.is_dense();
    if !(g.is_depthwise() || g.c_out / g.g <= 8 || short) {
        return Err(
            "more than 8 output channels per group, over 32 or more weights each or 1x1 or \
             dense (the channel-vectorised tile is faster)",
        );
    }
    Ok(())
}

/// Whether this kernel runs backward-data of `g` (not depthwise, dense or 1x1): with at most
/// 8 input channels per group, or fewer than [`SHORT_REDUCTION`] weights per input channel
/// (output channels per group x taps) over input planes of at least 112x112, in its
/// stride-1 form ([`as_forward`]); with at most 6 input channels per group, in its banded
/// form (`rows_banded.rs`, one stride phase at a time). Below 112x112 the channel-vectorised
/// kernel leads on those short reductions (64 -> 3 at 14x14 to 96x96, 32 -> 3 at 56x56:
/// 0.6-0.92x on one thread, 0.83-1.28x on two; 1.2x from 128x128).
pub(crate) fn backward_data_fits(g: &ConvGeom) -> Result<(), &'static str> {
    if g.is_dense() || g.is_pointwise() {
        return Err("dense and 1x1 backward-data (the channel-vectorised kernel's GEMM forms)");
    }
    if g.is_depthwise() {
        return Err("depthwise backward-data (the depthwise kernel has it)");
    }
    let few = g.c_in / g.g <= 8;
    let short = short_reduction(g, g.c_out / g.g) && g.h * g.w >= 112 * 112;
    if !(few || short) {
        return Err(
            "backward-data with more than 8 input channels per group, over 32 or more \
             weights each or planes below 112x112 (the channel-vectorised kernel has it)",
        );
    }
    if as_forward(g).is_some() {
        return Ok(());
    }
    rows_banded::backward_data_fits(g)
}

/// The stride-1 form of backward-data: [`backward_as_forward`]'s conv when the output-
/// gradient rows one row of `grad_x` reads fit L1 (32 KiB). LeNet's C3 (16 -> 6, 10x10
/// planes) reads 6 KiB and runs 1.6x im2col; VGG's 3 -> 64 stem (64 planes of 224 + 2
/// columns, 3 rows: 170 KiB) ran at 0.6x the channel-vectorised kernel this way, every tap
/// missing L1, as each task pads whole planes (the banded form pads bands of rows).
fn as_forward(g: &ConvGeom) -> Option<ConvGeom> {
    let eq = backward_as_forward(g)?;
    let row_bytes = (g.c_out / g.g)
        .saturating_mul((g.kh - 1) * g.dh + 1)
        .saturating_mul(g.w + (g.kw - 1) * g.dw)
        .saturating_mul(4);
    (row_bytes <= 32 * 1024).then_some(eq)
}

/// The forward conv whose output is backward-data of `g`, for a stride-1 `g` whose padding
/// is within its dilated kernel: over the output gradient padded by `(k - 1) * d - pad_t`
/// on top (`pad_l` left) and `h + pad_t - oh` at the bottom (`w + pad_l - ow` right), which
/// makes its output `h x w` also when `oh` was cropped (a transposed conv's output padding), with the weights flipped in both axes and their channel axes swapped (see
/// [`flip`]); it maps `c_out` channels to `c_in`, `oh x ow` to `h x w`. `None` otherwise.
fn backward_as_forward(g: &ConvGeom) -> Option<ConvGeom> {
    if g.sh != 1 || g.sw != 1 {
        return None;
    }
    let (eh, ew) = ((g.kh - 1) * g.dh, (g.kw - 1) * g.dw);
    // Output row oy' = iy of the equivalent conv reads grad_y rows iy + pad_t - eh + ky*dh,
    // up to h - 1 + pad_t: the rows past oh - 1 are its bottom padding.
    let padding = [
        eh.checked_sub(g.pad_t)?,
        (g.h + g.pad_t).checked_sub(g.oh)?,
        ew.checked_sub(g.pad_l)?,
        (g.w + g.pad_l).checked_sub(g.ow)?,
    ];
    let eq = ConvParams {
        padding,
        dilation: [g.dh, g.dw],
        groups: g.g,
        ..ConvParams::new(g.n, g.c_out, g.oh, g.ow, g.c_in, [g.kh, g.kw])
    }
    .validate()
    .ok()?;
    (eq.oh == g.h && eq.ow == g.w).then_some(eq)
}

/// The weights of [`backward_as_forward`]'s conv: `out[grp*c_in_g + ic][oc][kh-1-ky][kw-1-kx]
/// = w[grp*c_out_g + oc][ic][ky][kx]`.
fn flip(g: &ConvGeom, w: &[f32], out: &mut [f32]) {
    let (c_in_g, c_out_g, khw) = (g.c_in / g.g, g.c_out / g.g, g.kh * g.kw);
    assert_eq!(w.len(), g.w_len, "weight length");
    assert_eq!(out.len(), g.w_len, "flipped weight length");
    for grp in 0..g.g {
        for oc in 0..c_out_g {
            for ic in 0..c_in_g {
                let from = &w[((grp * c_out_g + oc) * c_in_g + ic) * khw..][..khw];
                let to = &mut out[((grp * c_in_g + ic) * c_out_g + oc) * khw..][..khw];
                // Flipping both axes of a row-major window reverses it.
                for (t, f) in to.iter_mut().zip(from.iter().rev()) {
                    *t = *f;
                }
            }
        }
    }
}

/// The packed weights of `eq = backward_as_forward(g)`, from `g`'s weights.
fn pack_flipped<S: DirectIsa>(s: S, g: &ConvGeom, eq: &ConvGeom, weight: &[f32], out: &mut [f32]) {
    with_scratch(g.w_len, |flipped| {
        flip(g, weight, flipped);
        pack(s, eq, flipped, out);
    });
}

/// Channels per weight block: 1 for depthwise and one output channel per group (the
/// 3-channel tile would spend two thirds of its FMAs on missing channels: LeNet C1's
/// backward-data, 6 -> 1 as a forward conv, 1.3-1.4x), [`NJ_FEW`] for up to that many,
/// else [`NJ`].
fn nj(g: &ConvGeom) -> usize {
    nj_for(g.c_out / g.g)
}

/// [`nj`] for `channels` output channels per group.
pub(super) fn nj_for(channels: usize) -> usize {
    if channels == 1 {
        1
    } else if channels <= NJ_FEW {
        NJ_FEW
    } else {
        NJ
    }
}

/// Output rows per tile for `nj` channels per block: [`UR_DW`] rows of one channel
/// (depthwise, or one output channel per group), else 1.
pub(super) fn ur_for(nj: usize) -> usize {
    if nj == 1 { UR_DW } else { 1 }
}

/// Pixel vectors per tile row for `nj` channels per block.
pub(super) fn nv(nj: usize) -> usize {
    if nj == NJ_FEW { NV_FEW } else { NV }
}

/// Packed weights `[grp][c_out block][ic][ky][kx][nj]`.
fn packed_len(g: &ConvGeom) -> usize {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    g.g * c_out_g.div_ceil(nj(g)) * c_in_g * g.kh * g.kw * nj(g)
}

fn pack<S: DirectIsa>(s: S, g: &ConvGeom, weight: &[f32], out: &mut [f32]) {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let k = c_in_g * g.kh * g.kw;
    with_index_scratch(k, |red_src| {
        for (r, o) in red_src.iter_mut().enumerate() {
            *o = r;
        }
        let red = Entries::in_order(red_src);
        pack_blocks(s, weight, g.g, c_out_g, nj(g), c_out_g * k, k, red, out);
    });
}

fn forward<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    x: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    if g.sw != 1 {
        // Only the banded form takes a horizontal stride (`forward_fits`).
        rows_banded::forward(s, g, x, packed, bias, relu, y);
        return;
    }
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let nj = nj(g);
    let ur = ur_for(nj);
    let k = c_in_g * g.kh * g.kw;
    let span = nv(nj) * S::LANES;
    // Flat mode, for narrow outputs (LeNet's 10x10 and 14x14 planes would fill 10 or 14 of
    // a row's 32 or 64 lanes): at stride 1 the output pixel (oy, ox) at flat index
    // q = oy * R + ox, R the padded row width, reads the padded input at q plus a constant
    // per tap, so a tile's vectors run across output rows; the R - ow columns past each row
    // are computed and not stored.
    // It runs one task per image, group and channel block: only where there are two.
    let blocks = c_out_g.div_ceil(nj);
    let flat_row = g.ow + (g.kw - 1) * g.dw;
    let flat_len = (g.oh - 1) * flat_row + g.ow;
    let flat = ur == 1
        && g.sh == 1
        && g.n * g.g * blocks >= 2
        && flat_len.div_ceil(span) < g.oh * g.ow.div_ceil(span);
    // Each task pads its own group's input planes: rows for every output row's taps,
    // columns for whole vectors (a small copy, used at once while it is in cache); in flat
    // mode columns for the taps and a vector tile's worth of zeros after the last plane.
    let rows = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    let cols = if flat {
        flat_row
    } else {
        g.ow.div_ceil(span) * span + (g.kw - 1) * g.dw
    };
    // Tasks: (image, group, channel block), split into bands of rows when there are few.
    let bands = if flat || g.n * g.g * blocks >= 8 {
        1
    } else {
        g.oh.div_ceil(16)
    };
    // Large planes, or bands: each task would pad every input plane of its group, so the
    // banded form pads bands of rows instead (a 64 -> 3 layer at 224x224 padded 13 MB per
    // task; 3 -> 32 channels at 128x128, in 8 bands per block, 9.6 MB per pass).
    if !flat
        && rows_banded::forward_preferred(
            g,
            c_in_g.saturating_mul(rows).saturating_mul(cols),
            bands > 1,
        )
    {
        rows_banded::forward(s, g, x, packed, bias, relu, y);
        return;
    }
    let band = g.oh.div_ceil(ur).div_ceil(bands) * ur;
    let out = SharedMut::new(y);
    {
        for_each_task(g.n * g.g * blocks * bands, |t| {
            let (b, grp, blk, band_i) = (
                t / (g.g * blocks * bands),
                t / (blocks * bands) % g.g,
                t / bands % blocks,
                t % bands,
            );
            let oc0 = grp * c_out_g + blk * nj;
            let n_ch = nj.min(c_out_g - blk * nj);
            let planes = &x[(b * g.c_in + grp * c_in_g) * g.h * g.w..][..c_in_g * g.h * g.w];
            let need = padded_len(c_in_g, g.h, g.w, rows, cols, g.pad_t, g.pad_l);
            let body = if need == 0 { planes.len() } else { need };
            let scratch = if flat { body + span } else { need };
            with_scratch(scratch, |buf| {
                // Borrowed in place when no padding is needed (except in flat mode, whose
                // tiles read past the last plane); plane and row strides say which.
                let src = if need == 0 && !flat {
                    Planes {
                        data: planes,
                        row: g.w,
                        plane: g.h * g.w,
                    }
                } else {
                    let (row, plane) = if need == 0 {
                        buf[..body].copy_from_slice(planes);
                        (g.w, g.h * g.w)
                    } else {
                        let (top, left) = (g.pad_t, g.pad_l);
                        let split = PadSplit::Planes;
                        let p = pad_planes(
                            s, planes, c_in_g, g.h, g.w, rows, cols, top, left, split, buf,
                        );
                        (p.row, p.plane)
                    };
                    // `buf` is `body` floats and, in flat mode, a tail the tiles read past.
                    buf[body..].fill(0.0);
                    Planes {
                        data: &*buf,
                        row,
                        plane,
                    }
                };
                with_index_scratch(k, |red| {
                    for (r, o) in red.iter_mut().enumerate() {
                        let (ic, ky, kx) = (r / (g.kh * g.kw), r / g.kw % g.kh, r % g.kw);
                        *o = ic * src.plane + ky * g.dh * src.row + kx * g.dw;
                    }
                    let mut job = RowJob {
                        src: src.data,
                        // Formed only where a second row exists: a stride near usize::MAX
                        // leaves one output row.
                        row_step: if g.oh > 1 { g.sh * src.row } else { 0 },
                        row0: 0,
                        red: RedList::new(red),
                        w: &packed[(grp * blocks + blk) * k * nj..][..k * nj],
                        nj,
                        ur,
                        n_ch,
                        rows: if flat {
                            0..1
                        } else {
                            band_i * band..g.oh.min((band_i + 1) * band)
                        },
                        width: if flat { flat_len } else { g.ow },
                        flat: flat.then_some((flat_row, g.ow)),
                        dst: out,
                        dst_base: (b * g.c_out + oc0) * g.oh * g.ow,
                        dst_plane: g.oh * g.ow,
                        dst_row: g.ow,
                        dst_col: 1,
                        bias: bias.map(|bias| &bias[oc0..oc0 + n_ch]),
                        relu,
                        stage: None,
                        shared: None,
                    };
                    s.dispatch(&mut job);
                });
            });
        });
    }
}

/// One task: output rows `rows` of channels `dst_base..+n_ch` of one image.
/// A job's reduction offsets (see [`RowJob::red`]) with the greatest of them, found once
/// when the list is made (the banded form reuses one list in every task), and read by
/// [`RowJob::in_bounds`] to bound the tiles' reads.
#[derive(Clone, Copy)]
pub(super) struct RedList<'a> {
    list: &'a [usize],
    max: usize,
}

impl<'a> RedList<'a> {
    pub(super) fn new(list: &'a [usize]) -> Self {
        RedList {
            list,
            max: list.iter().copied().max().unwrap_or(0),
        }
    }
    pub(super) fn list(&self) -> &'a [usize] {
        self.list
    }
}

pub(super) struct RowJob<'a> {
    /// The (padded) source planes.
    pub src: &'a [f32],
    /// Source floats from one output row's taps to the next row's (stride x row width).
    pub row_step: usize,
    /// The output row whose taps start at `src` offset `red[r]` (the rows before it are
    /// not in `src`).
    pub row0: usize,
    /// Source offset of each reduction step (channel and tap) from a tile's first pixel.
    pub red: RedList<'a>,
    /// Weights `[r][nj]`.
    pub w: &'a [f32],
    pub nj: usize,
    pub ur: usize,
    pub n_ch: usize,
    /// Output rows (in flat mode one row of `width` flat pixels).
    pub rows: std::ops::Range<usize>,
    /// Pixels of a tile row: the output width, or in flat mode the flat length
    /// `(oh - 1) * R + ow`.
    pub width: usize,
    /// Flat mode's padded row width `R` and output width `ow` (`None`: rows as they are).
    pub flat: Option<(usize, usize)>,
    pub dst: SharedMut,
    /// Destination of channel 0's pixel (row 0, column 0).
    pub dst_base: usize,
    /// Destination strides of a channel, an output row and an output pixel.
    pub dst_plane: usize,
    pub dst_row: usize,
    pub dst_col: usize,
    pub bias: Option<&'a [f32]>,
    pub relu: bool,
    /// Partial sums carried between reduction chunks, `None` when `red` is the whole
    /// reduction.
    pub stage: Option<Stage>,
    /// How `red`'s tap rows step through the source rows, where two-row tiles can share
    /// them (see [`SharedRows`]).
    pub shared: Option<SharedRows>,
}

/// A reduction list (`RowJob::red`) that runs, per source channel, over `t` tap rows of `tx`
/// taps each, every tap row reading the source row next to the one the tap row before it
/// reads: the row below where `down` (`red[r + tx] == red[r] + row_step`: a forward pass's
/// taps), the row above otherwise (backward-data's phases, whose taps run up the gradient).
/// Two output rows `row_step` apart then read the same source rows a tap row apart, and
/// the two-row tile loads each once for both ([`few_channels_shared`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct SharedRows {
    pub t: usize,
    pub tx: usize,
    pub down: bool,
}

impl SharedRows {
    /// The sharing `red` allows as `t` tap rows of `tx` taps per channel, output rows
    /// `row_step` floats apart; `None` where its tap rows do not step by one source row (a
    /// dilated or strided axis), or there is one tap row (nothing to share).
    pub(super) fn find(red: &[usize], t: usize, tx: usize, row_step: usize) -> Option<Self> {
        let steps = t.checked_mul(tx)?;
        if t < 2 || steps == 0 || !red.len().is_multiple_of(steps) {
            return None;
        }
        // Each channel's steps against the same taps a tap row on (r and r + tx).
        let (mut down, mut up) = (true, true);
        for ch in red.chunks_exact(steps) {
            for (&a, &b) in ch.iter().zip(&ch[tx..]) {
                down &= a.checked_add(row_step) == Some(b);
                up &= b.checked_add(row_step) == Some(a);
            }
        }
        (down || up).then_some(SharedRows { t, tx, down })
    }
}

/// Where a tile sits: its first output row and pixel, how many of its rows the job has, and
/// its partial sums' first float in the job's [`Stage`] with the floats from one row's to
/// the next's.
#[derive(Clone, Copy)]
struct TileAt {
    oy0: usize,
    nrows: usize,
    ox0: usize,
    stage0: usize,
    stage_row: usize,
}

impl TileAt {
    /// The stage float where row `i`'s channel `j`'s vector `v` of an `nvec`-vector tile of
    /// `lanes` lanes starts.
    fn stage_at(&self, i: usize, j: usize, v: usize, nvec: usize, lanes: usize) -> usize {
        self.stage0 + i * self.stage_row + (j * nvec + v) * lanes
    }
}

/// A task's partial sums between the chunks of its reduction (the phase form's), in vector
/// form: row `i` (from `rows.start`), tile `t`, channel `j`, vector `v` at float
/// `(((i * tiles + t) * nj + j) * nv + v) * LANES`, `tiles` the row's tiles (a row's
/// narrower last tile of `nt` vectors: `((i * tiles + t) * nj * nv + j * nt + v) * LANES`).
#[derive(Clone, Copy)]
pub(super) struct Stage {
    pub buf: SharedMut,
    /// The first chunk: the sums start from zero, not from `buf`.
    pub first: bool,
    /// The last chunk: the sums go to the destination, not to `buf`.
    pub last: bool,
}

impl SimdJob for RowJob<'_> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        match (self.ur, self.nj) {
            (1, NJ) => self.tiles::<S, 1, NJ, NV, 1>(s),
            (UR_WIDE, NJ) => self.tiles::<S, UR_WIDE, NJ, NV, 1>(s),
            (1, NJ_FEW) => self.tiles::<S, 1, NJ_FEW, NV_FEW, NV_FEW_TAIL>(s),
            (UR_FEW_WIDE, NJ_FEW) => self.tiles::<S, UR_FEW_WIDE, NJ_FEW, NV_FEW, NV_FEW_TAIL>(s),
            (UR_FEW_NARROW, NJ_FEW) => {
                self.tiles::<S, UR_FEW_NARROW, NJ_FEW, NV_FEW_NARROW, NV_FEW_NARROW>(s)
            }
            _ => self.tiles::<S, UR_DW, 1, NV, 1>(s),
        }
    }
}

impl RowJob<'_> {
    /// The channels, output rows and vectors of pixels tiles of `j` channels and `nv`
    /// vectors of `lanes` cover: whether the last destination index they write, the last
    /// source float, weight and stage float they read are in range.
    fn in_bounds(&self, lanes: usize, j: usize, nv: usize) -> Result<(), &'static str> {
        let span = nv * lanes;
        if j != self.nj || j == 0 || self.n_ch > j {
            return Err("row tile shape differs from the job's channels");
        }
        if self.rows.is_empty() || self.width == 0 || self.n_ch == 0 {
            return Ok(());
        }
        if self.rows.start < self.row0 {
            return Err("row tile rows start before the source's first row");
        }
        if self.flat.is_some() && (self.dst_col != 1 || self.rows.len() != 1) {
            return Err("flat row tiles store one row of contiguous pixels");
        }
        // The last tap of the last vector of the last row stays inside src.
        let (red, max_red) = (self.red.list, self.red.max);
        let last_src = (self.rows.end - 1)
            .checked_sub(self.row0)
            .and_then(|r| r.checked_mul(self.row_step))
            .and_then(|o| o.checked_add(max_red))
            .and_then(|o| o.checked_add(self.width.div_ceil(span) * span - 1));
        if !red.is_empty() && last_src.is_none_or(|o| o >= self.src.len()) {
            return Err("row tile source out of range");
        }
        if self.w.len() < red.len() * j {
            return Err("row tile weights too short");
        }
        if let Some(st) = self.stage {
            let tiles = self.width.div_ceil(span);
            if st.buf.len() / (j * span) / tiles < self.rows.len() {
                return Err("row tile stage too short");
            }
        }
        let (last_row, last_col) = match self.flat {
            Some((r, ow)) => ((self.width - 1) / r, ow - 1),
            None => (self.rows.end - 1, self.width - 1),
        };
        let last_dst = (self.n_ch - 1)
            .checked_mul(self.dst_plane)
            .zip(last_row.checked_mul(self.dst_row))
            .zip(last_col.checked_mul(self.dst_col))
            .and_then(|((a, b), c)| a.checked_add(b)?.checked_add(c)?.checked_add(self.dst_base));
        if last_dst.is_none_or(|d| d >= self.dst.len()) {
            return Err("row tile destination out of range");
        }
        Ok(())
    }

    /// Runs the job in tiles of `UR` rows x `J` channels x `NVEC` vectors; a row's last
    /// tile, where `NT < NVEC` vectors cover what is left of it, in `NT` vectors.
    #[inline(always)]
    fn tiles<S: DirectIsa, const UR: usize, const J: usize, const NVEC: usize, const NT: usize>(
        &self,
        s: S,
    ) {
        let l = S::LANES;
        let span = NVEC * l;
        debug_assert_eq!((UR, J), (self.ur, self.nj));
        debug_assert!(NT <= NVEC);
        // Bounds for the raw reads and writes below, checked once (see `in_bounds`): the
        // `NT`-vector tiles read and write less than an `NVEC` one at the same place.
        if let Err(why) = self.in_bounds(l, J, NVEC) {
            panic!("{why}");
        }
        if self.rows.is_empty() || self.width == 0 || self.n_ch == 0 {
            return;
        }
        let tiles = self.width.div_ceil(span);
        // Rows of one tile whose last vector is at most half used (AlexNet's 56-pixel
        // backward-data phases: 3.5 vectors of 16) go two at a time through `tile_paired`.
        let paired = UR == UR_FEW_WIDE
            && J == NJ_FEW
            && NVEC == NV_FEW
            && l >= 2
            && self.flat.is_none()
            && self.width > (NV_FEW - 1) * l
            && self.width <= (NV_FEW - 1) * l + l / 2;
        for oy0 in self.rows.clone().step_by(UR) {
            let nrows = UR.min(self.rows.end - oy0);
            let mut offs = [0usize; UR];
            for (i, o) in offs.iter_mut().enumerate() {
                *o = (oy0 + i.min(nrows - 1) - self.row0) * self.row_step;
            }
            for t in 0..tiles {
                let at = TileAt {
                    oy0,
                    nrows,
                    ox0: t * span,
                    stage0: ((oy0 - self.rows.start) * tiles + t) * J * span,
                    stage_row: tiles * J * span,
                };
                if paired && nrows == UR_FEW_WIDE {
                    let offs = [offs[0], offs[1.min(UR - 1)]];
                    self.tile_paired(s, at, &offs);
                } else if NT < NVEC && self.width - t * span <= NT * l {
                    // The row's last tile, narrower (the ResNet-50 stem's 112-pixel
                    // backward-data phases: 7 vectors as 4 + 3, not 4 + 4 overlapping).
                    self.tile::<S, UR, J, NT>(s, at, &offs);
                } else if self.width >= span {
                    // The last tile of a row at least a tile wide ends at the row's end,
                    // overlapping the one before it: every vector it stores is whole. The
                    // pixels both tiles cover get the same sums in the same order.
                    let ox0 = at.ox0.min(self.width - span);
                    self.tile::<S, UR, J, NVEC>(s, TileAt { ox0, ..at }, &offs);
                } else {
                    self.tile::<S, UR, J, NVEC>(s, at, &offs);
                }
            }
        }
    }

    /// One tile of `NVEC` vectors at `at`, its rows' sources at `offs` from the reduction
    /// offsets. The caller (`tiles`) has checked the bounds (`in_bounds`) for a tile of at
    /// least `NVEC` vectors starting at most at `at.ox0`.
    #[inline(always)]
    fn tile<S: DirectIsa, const UR: usize, const J: usize, const NVEC: usize>(
        &self,
        s: S,
        at: TileAt,
        offs: &[usize; UR],
    ) {
        let l = S::LANES;
        let (src, w) = (self.src.as_ptr(), self.w.as_ptr());
        let TileAt {
            oy0, nrows, ox0, ..
        } = at;
        let mut acc = [[[s.zero(); NVEC]; J]; UR];
        let stage_at =
            |i: usize, j: usize, v: usize| at.stage0 + i * at.stage_row + (j * NVEC + v) * l;
        if let Some(st) = self.stage.filter(|st| !st.first) {
            for (i, acc_i) in acc.iter_mut().enumerate().take(nrows) {
                for (j, acc_ij) in acc_i.iter_mut().enumerate() {
                    for (v, a) in acc_ij.iter_mut().enumerate() {
                        // SAFETY: row oy0 + i < rows.end and the tile is one of the row's
                        // `tiles`, and (j * NVEC + v + 1) * l <= J * span, so the vector ends
                        // within rows.len() * tiles * J * span floats <= stage.len()
                        // (`in_bounds`); the stage is this task's.
                        *a = unsafe { s.load(st.buf.at(stage_at(i, j, v))) };
                    }
                }
            }
        }
        let shared = self.shared.filter(|_| J == NJ_FEW && UR == 2 && nrows == 2);
        if let Some(SharedRows { t, tx, down }) = shared {
            // Tap rows stepping down the source (forward passes): the rows' roles swap, row
            // 1's tap row m reading what row 0's m + 1 reads.
            let (a, b) = if down { (1, 0) } else { (0, 1) };
            let pair = few_channels_shared::<S, J, NVEC>(
                s,
                [acc[a], acc[b]],
                (src, w),
                self.red.list,
                (t, tx),
                &[offs[a], offs[b]],
                ox0,
            );
            acc[a] = pair[0];
            acc[b] = pair[1];
        } else if J == NJ_FEW {
            // A function of its own, taking and returning the tile by value: inline here,
            // the two-row tile's sums went through memory at every step.
            acc = few_channels::<S, UR, J, NVEC>(s, acc, (src, w), self.red.list, offs, ox0);
        } else {
            for (r, &red) in self.red.list.iter().enumerate() {
                let mut xv = [[s.zero(); NVEC]; UR];
                for (i, xi) in xv.iter_mut().enumerate() {
                    for (v, xiv) in xi.iter_mut().enumerate() {
                        // SAFETY: ox0 + NVEC * l <= tiles * span (the caller), so red +
                        // offs[i] + ox0 + v*l + l - 1 <= max_red + (rows.end - 1 - row0) *
                        // row_step + width.div_ceil(span) * span - 1 < src.len()
                        // (`in_bounds`).
                        *xiv = unsafe { s.load(src.add(red + offs[i] + ox0 + v * l)) };
                    }
                }
                for j in 0..J {
                    // SAFETY: r*J + j < red.len()*J <= w.len() (`in_bounds`).
                    let wj = unsafe { s.broadcast(w.add(r * J + j)) };
                    for (acc_i, xi) in acc.iter_mut().zip(&xv) {
                        for (a, x) in acc_i[j].iter_mut().zip(xi) {
                            *a = s.mul_add(wj, *x, *a);
                        }
                    }
                }
            }
        }
        match self.stage.filter(|st| !st.last) {
            Some(st) => {
                for (i, acc_i) in acc.iter().enumerate().take(nrows) {
                    for (j, acc_ij) in acc_i.iter().enumerate() {
                        for (v, a) in acc_ij.iter().enumerate() {
                            // SAFETY: as for the loads above.
                            unsafe { s.store(st.buf.at(stage_at(i, j, v)), *a) };
                        }
                    }
                }
            }
            None => {
                // Through one copy in memory, so the epilogue's indexing does not keep the
                // accumulators in memory during the sums.
                let acc = std::hint::black_box(acc);
                self.store::<S, UR, J, NVEC>(s, &acc, oy0, nrows, ox0)
            }
        }
    }

    /// The two-row few-channel tile over rows of `NV_FEW - 1` whole vectors and a last
    /// vector at most half used (see `tiles`): each row's whole vectors, and the two rows'
    /// ends in one vector (row `oy0`'s in the low half, row `oy0 + 1`'s in the high half),
    /// so a reduction step is 21 FMAs where the `NV_FEW` tile spent 24, 3 of them on lanes
    /// past the rows' ends. Each sum takes the same terms in the same order as in that tile,
    /// so the results are the same bits; the partial sums (the stage) and the epilogue keep
    /// its layout, each row's end in the low lanes of its last vector. The caller has checked
    /// the bounds of an `NV_FEW` tile at `at` (`in_bounds`), whose reads these cover.
    #[inline(always)]
    fn tile_paired<S: DirectIsa>(&self, s: S, at: TileAt, offs: &[usize; UR_FEW_WIDE]) {
        const NF: usize = NV_FEW - 1;
        let (l, h) = (S::LANES, S::LANES / 2);
        let mut acc = [[[s.zero(); NV_FEW]; NJ_FEW]; UR_FEW_WIDE];
        self.staged::<S, UR_FEW_WIDE, NJ_FEW, NV_FEW>(s, at, &mut acc);
        let mut whole = [[[s.zero(); NF]; NJ_FEW]; UR_FEW_WIDE];
        let mut ends = [s.zero(); NJ_FEW];
        // The rows' ends into one vector and back, through memory: once a tile.
        let mut tmp = [0.0f32; 2 * MAX_LANES];
        let p = tmp.as_mut_ptr();
        for j in 0..NJ_FEW {
            for (i, acc_i) in acc.iter().enumerate() {
                whole[i][j].copy_from_slice(&acc_i[j][..NF]);
            }
            // SAFETY: tmp holds 2 * MAX_LANES >= 2 * l floats.
            unsafe {
                s.store(p, acc[0][j][NF]);
                s.store(p.add(l), acc[1][j][NF]);
                ends[j] = s.load_halves(p, p.add(l));
            }
        }
        let (src, w) = (self.src.as_ptr(), self.w.as_ptr());
        (whole, ends) = few_channels_paired::<S, NJ_FEW, NF>(
            s,
            (whole, ends),
            (src, w),
            self.red.list,
            offs,
            at.ox0,
        );
        for j in 0..NJ_FEW {
            for (i, acc_i) in acc.iter_mut().enumerate() {
                acc_i[j][..NF].copy_from_slice(&whole[i][j]);
            }
            acc[0][j][NF] = ends[j];
            // SAFETY: tmp holds 2 * MAX_LANES >= h + l floats.
            unsafe {
                s.store(p, ends[j]);
                acc[1][j][NF] = s.load(p.add(h));
            }
        }
        self.finish::<S, UR_FEW_WIDE, NJ_FEW, NV_FEW>(s, at, &acc);
    }

    /// A tile's partial sums so far into `acc` (zeros): left in the first reduction chunk,
    /// else read from the stage. For `tile_paired`; `tile` keeps its own copy of this and of
    /// [`finish`](Self::finish) (calling them, the ResNet-50 stem's backward-data and a
    /// 64 -> 3 layer's at 224x224 ran 0.96-0.97x, best of 9-11 alternating runs, with the
    /// same inner loop).
    #[inline(always)]
    fn staged<S: DirectIsa, const UR: usize, const J: usize, const NVEC: usize>(
        &self,
        s: S,
        at: TileAt,
        acc: &mut [[[S::V; NVEC]; J]; UR],
    ) {
        let l = S::LANES;
        if let Some(st) = self.stage.filter(|st| !st.first) {
            for (i, acc_i) in acc.iter_mut().enumerate().take(at.nrows) {
                for (j, acc_ij) in acc_i.iter_mut().enumerate() {
                    for (v, a) in acc_ij.iter_mut().enumerate() {
                        // SAFETY: row oy0 + i < rows.end and the tile is one of the row's
                        // `tiles`, and (j * NVEC + v + 1) * l <= J * span, so the vector ends
                        // within rows.len() * tiles * J * span floats <= stage.len()
                        // (`in_bounds`); the stage is this task's.
                        *a = unsafe { s.load(st.buf.at(at.stage_at(i, j, v, NVEC, l))) };
                    }
                }
            }
        }
    }

    /// A tile's sums to the stage, or in the last reduction chunk to the destination.
    #[inline(always)]
    fn finish<S: DirectIsa, const UR: usize, const J: usize, const NVEC: usize>(
        &self,
        s: S,
        at: TileAt,
        acc: &[[[S::V; NVEC]; J]; UR],
    ) {
        let l = S::LANES;
        match self.stage.filter(|st| !st.last) {
            Some(st) => {
                for (i, acc_i) in acc.iter().enumerate().take(at.nrows) {
                    for (j, acc_ij) in acc_i.iter().enumerate() {
                        for (v, a) in acc_ij.iter().enumerate() {
                            // SAFETY: as for the loads in `staged`.
                            unsafe { s.store(st.buf.at(at.stage_at(i, j, v, NVEC, l)), *a) };
                        }
                    }
                }
            }
            None => {
                // Through one copy in memory, so the epilogue's indexing does not keep the
                // accumulators in memory during the sums.
                let acc = std::hint::black_box(*acc);
                self.store::<S, UR, J, NVEC>(s, &acc, at.oy0, at.nrows, at.ox0)
            }
        }
    }

    /// Writes a tile's valid rows, channels and pixels with the bias/ReLU epilogue.
    #[inline(always)]
    fn store<S: DirectIsa, const UR: usize, const J: usize, const NVEC: usize>(
        &self,
        s: S,
        acc: &[[[S::V; NVEC]; J]; UR],
        oy0: usize,
        nrows: usize,
        ox0: usize,
    ) {
        let l = S::LANES;
        // The destination's start: the job checked every index it stores once
        // (`in_bounds`), so the stores below add offsets to it with no check of their own
        // (a check per store spilled its panic arguments to the stack each time).
        let out = self.dst.at(0);
        if self.flat.is_none()
            && self.dst_col == 1
            && self.n_ch == J
            && ox0 + NVEC * l <= self.width
        {
            // A whole tile of a full channel block in a contiguous row (every tile of
            // a row at least a tile wide, see `tiles`): stored straight, with no
            // per-lane path.
            // Each bias read and broadcast where it is added: an array of them built first
            // (`array::from_fn`, a call once the tile grew) was written float by float and
            // read back as a vector, stalling on the store forwarding.
            let bias = |j: usize| s.splat(self.bias.map_or(0.0, |b| b[j]));
            let base = self.dst_base + oy0 * self.dst_row + ox0;
            for (i, acc_i) in acc.iter().enumerate() {
                if i == nrows {
                    break;
                }
                for (j, acc_ij) in acc_i.iter().enumerate() {
                    let b = bias(j);
                    for (v, a) in acc_ij.iter().enumerate() {
                        let mut a = s.add(*a, b);
                        if self.relu {
                            a = s.max(a, s.zero());
                        }
                        let at = base + i * self.dst_row + j * self.dst_plane + v * l;
                        // SAFETY: row oy0 + i < rows.end, channel j < n_ch and pixels
                        // ox0 + v*l .. + l <= width: at most the last destination index,
                        // in range (`in_bounds`); these pixels of this channel belong to
                        // this task alone.
                        unsafe { s.store(out.add(at), a) };
                    }
                }
            }
            return;
        }
        let mut tmp = [0.0f32; MAX_LANES];
        if let Some((r, ow)) = self.flat {
            for v in 0..NVEC {
                let q0 = ox0 + v * l;
                if q0 >= self.width {
                    break;
                }
                // Flat pixel q0 is output pixel (oy, ox); the vector's lanes run along the
                // row, through the R - ow padding columns past its end (not stored), into
                // the next row.
                let n = l.min(self.width - q0);
                let (oy, ox) = (q0 / r, q0 % r);
                for (j, acc_j) in acc[0].iter().enumerate().take(self.n_ch) {
                    let mut a = s.add(acc_j[v], s.splat(self.bias.map_or(0.0, |b| b[j])));
                    if self.relu {
                        a = s.max(a, s.zero());
                    }
                    let at = self.dst_base + j * self.dst_plane + oy * self.dst_row;
                    if n == l && ox + l <= ow {
                        // SAFETY: q0 < width, so oy <= (width - 1) / R, and ox + l - 1 < ow:
                        // in range (`in_bounds`); this channel's pixels belong to this task.
                        unsafe { s.store(out.add(at + ox), a) };
                        continue;
                    }
                    // SAFETY: tmp holds MAX_LANES >= LANES floats.
                    unsafe { s.store(tmp.as_mut_ptr(), a) };
                    let (mut row, mut col) = (at, ox);
                    for t in &tmp[..n] {
                        if col < ow {
                            // SAFETY: the lane's flat pixel is below width, so its row is
                            // at most (width - 1) / R and col < ow: in range (`in_bounds`);
                            // this channel's pixels belong to this task.
                            unsafe { *out.add(row + col) = *t };
                        }
                        col += 1;
                        if col == r {
                            (row, col) = (row + self.dst_row, 0);
                        }
                    }
                }
            }
            return;
        }
        for (i, acc_i) in acc.iter().enumerate().take(nrows) {
            for (j, acc_ij) in acc_i.iter().enumerate().take(self.n_ch) {
                let bias = self.bias.map_or(0.0, |b| b[j]);
                let row = self.dst_base + j * self.dst_plane + (oy0 + i) * self.dst_row;
                for (v, a) in acc_ij.iter().enumerate() {
                    let x0 = ox0 + v * l;
                    if x0 >= self.width {
                        break;
                    }
                    let mut a = s.add(*a, s.splat(bias));
                    if self.relu {
                        a = s.max(a, s.zero());
                    }
                    if self.dst_col == 1 && x0 + l <= self.width {
                        // SAFETY: row + x0 + l - 1 <= the last destination index, which is
                        // in range (`in_bounds`); these pixels of this channel belong to
                        // this task alone.
                        unsafe { s.store(out.add(row + x0), a) };
                        continue;
                    }
                    let m = l.min(self.width - x0);
                    // SAFETY: lane i < m stores to row + (x0 + i) * dst_col with
                    // x0 + i < width: at most the last destination index, in range
                    // (`in_bounds`); these pixels of this channel belong to this task
                    // alone, and store_spread writes nothing between them.
                    unsafe { s.store_spread(out.add(row + x0 * self.dst_col), a, self.dst_col, m) };
                }
            }
        }
    }
}

/// [`few_channels_paired`]'s tile: two rows of `NF` whole vectors of `J` channels, and the
/// `J` vectors of both rows' ends.
type PairedTile<V, const J: usize, const NF: usize> = ([[[V; NF]; J]; 2], [V; J]);

/// [`few_channels`] for `RowJob::tile_paired`: two rows of `NF` whole vectors each, and
/// one vector of both rows' ends, its low half read at row 0's vector `NF`, its high half
/// at row 1's (`J + 1 + 2 * J * NF + J` registers: 25 for 3 channels and 3 vectors).
/// The caller has checked the reads of a two-row tile of `NF + 1` vectors:
/// `red[r] + offs[i] + ox0 + (NF + 1) * LANES - 1 < src.len()` and `red.len() * J <=
/// w.len()` (`in_bounds`).
#[inline(always)]
fn few_channels_paired<S: DirectIsa, const J: usize, const NF: usize>(
    s: S,
    (mut acc, mut ends): PairedTile<S::V, J, NF>,
    (src, w): (*const f32, *const f32),
    red: &[usize],
    offs: &[usize; 2],
    ox0: usize,
) -> PairedTile<S::V, J, NF> {
    let l = S::LANES;
    for (r, &at) in red.iter().enumerate() {
        let mut wv = [s.zero(); J];
        for (j, wj) in wv.iter_mut().enumerate() {
            // SAFETY: r*J + j < red.len()*J <= w.len() (checked by the caller).
            *wj = unsafe { s.broadcast(w.add(r * J + j)) };
        }
        for (acc_i, &off) in acc.iter_mut().zip(offs) {
            for v in 0..NF {
                // SAFETY: at + off + ox0 + v*l + l - 1 < max(red) + off + ox0 + (NF + 1)*l
                // - 1 < src.len() (checked by the caller).
                let x = unsafe { s.load(src.add(at + off + ox0 + v * l)) };
                for (acc_j, wj) in acc_i.iter_mut().zip(&wv) {
                    acc_j[v] = s.mul_add(*wj, x, acc_j[v]);
                }
            }
        }
        // SAFETY: each half reads at most l floats from at + offs[i] + ox0 + NF*l, within
        // the (NF + 1)-vector tile's reads (checked by the caller).
        let x = unsafe {
            let end = at + ox0 + NF * l;
            s.load_halves(src.add(end + offs[0]), src.add(end + offs[1]))
        };
        for (e, wj) in ends.iter_mut().zip(&wv) {
            *e = s.mul_add(*wj, x, *e);
        }
    }
    (acc, ends)
}

/// [`few_channels`] for two rows over a reduction whose tap rows step up the source a row
/// at a time ([`SharedRows`]; the caller swaps the rows where they step down): row 1's tap
/// row `m + 1` reads the source row that row 0's tap row `m` reads, so each such row is
/// loaded once for both, and each tap's weights broadcast once for both rows (row 1's at
/// one source row, row 0's at the next). Per channel and tap column, `t + 1` source rows
/// feed `2 * t` tap rows: the ResNet-50 stem's backward-data phases (`t` = 3 and 4) load
/// 5/8 or 2/3 of the vectors [`few_channels`] does, 1.07x (AVX-512, 1 thread, in-process
/// paired median). The sums run per channel over tap columns, then tap rows: another
/// order than [`few_channels`]'s, so a job's tiles all take this path or none (a band's
/// last single row aside, which is a tile of its own).
/// The caller has checked the reads of the two-row tile (`in_bounds`); every load here is
/// one that tile makes.
#[inline(always)]
fn few_channels_shared<S: DirectIsa, const J: usize, const NVEC: usize>(
    s: S,
    mut acc: [[[S::V; NVEC]; J]; 2],
    (src, w): (*const f32, *const f32),
    red: &[usize],
    (t, tx): (usize, usize),
    offs: &[usize; 2],
    ox0: usize,
) -> [[[S::V; NVEC]; J]; 2] {
    let l = S::LANES;
    let taps = t * tx;
    if taps == 0 {
        return acc;
    }
    let bcast = |r: usize| -> [S::V; J] {
        // SAFETY: r*J + j < red.len()*J <= w.len() (checked by the caller).
        std::array::from_fn(|j| unsafe { s.broadcast(w.add(r * J + j)) })
    };
    for base in (0..red.len()).step_by(taps) {
        for kx in 0..tx {
            let r = base + kx;
            let mut wc = bcast(r);
            // Row 1's first tap row, whose source row row 0 does not read.
            let p1 = red[r] + offs[1] + ox0;
            for v in 0..NVEC {
                // SAFETY: row 1's read of step r (checked by the caller).
                let x = unsafe { s.load(src.add(p1 + v * l)) };
                for (a, wj) in acc[1].iter_mut().zip(&wc) {
                    a[v] = s.mul_add(*wj, x, a[v]);
                }
            }
            for m in 0..t - 1 {
                let r0 = base + m * tx + kx;
                let wn = bcast(r0 + tx);
                let p0 = red[r0] + offs[0] + ox0;
                for v in 0..NVEC {
                    // SAFETY: row 0's read of step r0 (checked by the caller), which is also
                    // row 1's of step r0 + tx.
                    let x = unsafe { s.load(src.add(p0 + v * l)) };
                    let [a0, a1] = &mut acc;
                    for (((a0, a1), w0), w1) in a0.iter_mut().zip(a1).zip(&wc).zip(&wn) {
                        a0[v] = s.mul_add(*w0, x, a0[v]);
                        a1[v] = s.mul_add(*w1, x, a1[v]);
                    }
                }
                wc = wn;
            }
            // Row 0's last tap row, whose source row row 1 does not read.
            let r0 = base + (t - 1) * tx + kx;
            let p0 = red[r0] + offs[0] + ox0;
            for v in 0..NVEC {
                // SAFETY: row 0's read of its last step in this column (checked by the caller).
                let x = unsafe { s.load(src.add(p0 + v * l)) };
                for (a, wj) in acc[0].iter_mut().zip(&wc) {
                    a[v] = s.mul_add(*wj, x, a[v]);
                }
            }
        }
    }
    acc
}

/// The few-channel tile's sums (`J = NJ_FEW`): per reduction step `J` weight broadcasts,
/// then one load per vector feeding `J` FMAs (`J + 1 + UR * J * NVEC` registers: 16 for one
/// row of 4 vectors, 28 for two such rows or four of 2 vectors, where loading every vector
/// first would need 3 to 7 more).
/// The caller (`RowJob::tiles`) has checked the reads: `red[r] + offs[i] + ox0 + NVEC *
/// LANES - 1 < src.len()` and `red.len() * J <= w.len()` (`in_bounds`).
#[inline(always)]
fn few_channels<S: DirectIsa, const UR: usize, const J: usize, const NVEC: usize>(
    s: S,
    mut acc: [[[S::V; NVEC]; J]; UR],
    (src, w): (*const f32, *const f32),
    red: &[usize],
    offs: &[usize; UR],
    ox0: usize,
) -> [[[S::V; NVEC]; J]; UR] {
    let l = S::LANES;
    for (r, &at) in red.iter().enumerate() {
        let mut wv = [s.zero(); J];
        for (j, wj) in wv.iter_mut().enumerate() {
            // SAFETY: r*J + j < red.len()*J <= w.len() (checked by the caller).
            *wj = unsafe { s.broadcast(w.add(r * J + j)) };
        }
        for (acc_i, &off) in acc.iter_mut().zip(offs) {
            for v in 0..NVEC {
                // SAFETY: at + off + ox0 + v*l + l - 1 <= max(red) + off + ox0 + NVEC*l - 1
                // < src.len() (checked by the caller).
                let x = unsafe { s.load(src.add(at + off + ox0 + v * l)) };
                for (acc_j, wj) in acc_i.iter_mut().zip(&wv) {
                    acc_j[v] = s.mul_add(*wj, x, acc_j[v]);
                }
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::SharedRows;

    /// Offsets of `ch` channels `plane` floats apart, each with tap rows at `rows` (in
    /// order) of `cols` floats and taps at columns `xs`.
    fn list(ch: usize, plane: usize, rows: &[usize], cols: usize, xs: &[usize]) -> Vec<usize> {
        let mut out = Vec::new();
        for c in 0..ch {
            for &y in rows {
                for &x in xs {
                    out.push(c * plane + y * cols + x);
                }
            }
        }
        out
    }

    #[test]
    fn shared_rows_follow_the_tap_rows_direction() {
        let cols = 40;
        // Backward-data's phases: tap rows running up the source.
        let up = list(3, 1000, &[3, 2, 1, 0], cols, &[2, 1, 0]);
        let found = SharedRows::find(&up, 4, 3, cols);
        assert_eq!(
            found,
            Some(SharedRows {
                t: 4,
                tx: 3,
                down: false
            })
        );
        // Forward passes: down the source.
        let down = list(2, 1000, &[0, 1, 2], cols, &[0, 1, 2, 3]);
        let found = SharedRows::find(&down, 3, 4, cols);
        assert_eq!(
            found,
            Some(SharedRows {
                t: 3,
                tx: 4,
                down: true
            })
        );
        // A vertical stride of 2 over a dilation of 2 steps both by two rows.
        let strided = list(2, 1000, &[0, 2, 4], cols, &[0, 1]);
        assert!(SharedRows::find(&strided, 3, 2, 2 * cols).is_some());
    }

    #[test]
    fn shared_rows_refuse_other_steps() {
        let cols = 40;
        // Dilated tap rows (two source rows apart) under output rows one row apart.
        let dilated = list(2, 1000, &[0, 2, 4], cols, &[0, 1, 2]);
        assert_eq!(SharedRows::find(&dilated, 3, 3, cols), None);
        // One tap row: nothing to share.
        let one = list(2, 1000, &[0], cols, &[0, 1, 2]);
        assert_eq!(SharedRows::find(&one, 1, 3, cols), None);
        // A list that is not whole channels of the given taps.
        let ragged = list(2, 1000, &[0, 1], cols, &[0, 1, 2]);
        assert_eq!(SharedRows::find(&ragged[..5], 2, 3, cols), None);
        // One channel whose rows break the step.
        let mut broken = list(2, 1000, &[0, 1, 2], cols, &[0, 1]);
        broken[8] += 1;
        assert_eq!(SharedRows::find(&broken, 3, 2, cols), None);
    }
}
