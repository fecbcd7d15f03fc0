//! Pixel-vectorised direct convolution for the layers the channel-vectorised tile serves
//! badly: depthwise convs (one channel per group) and convs with few output channels per
//! group (LeNet's C1: 1 -> 6). Forward pass, horizontal stride 1.
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
//! Depthwise uses `NJ = 1`, `UR = 6`, `NV = 2` (12 accumulators; each input vector feeds one
//! FMA, folded into it as a memory operand). Few-channel convs use `UR = 1`, `NJ = 6`,
//! `NV = 2` (12 accumulators; 2 input loads and 6 weight broadcasts feed 12 FMAs). The input
//! is a zero-padded copy wide enough for whole vectors, so partial vectors at the end of a
//! row compute on padding and only their valid lanes are stored.

use super::pack::{pack_blocks, pad_planes};
use super::{DirectIsa, SimdJob};
use crate::parallel::{SharedMut, for_each_task, with_index_scratch, with_scratch};
use crate::params::ConvGeom;
use crate::registry::ConvKernel;
use crate::{Algorithm, Isa, Pass};

/// Output channels per tile in the few-channel shape.
const NJ: usize = 6;
/// Output rows per tile in the depthwise shape.
const UR_DW: usize = 6;
/// Pixel vectors per tile row.
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

// SAFETY: a DirectRows<S> holds the proof value S; raw reads are bounded by the checks in
// `RowJob::run`, raw writes by the range check there and disjoint between tasks.
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
        if pass != Pass::Forward {
            return Err("passes other than forward (the channel-vectorised kernel has them)");
        }
        if g.sw != 1 {
            return Err("horizontal strides other than 1");
        }
        if !(g.is_depthwise() || g.c_out / g.g <= 8) {
            return Err(
                "more than 8 output channels per group (the channel-vectorised tile is faster)",
            );
        }
        Ok(())
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
        _g: &ConvGeom,
        _dy: &[f32],
        _w: &[f32],
        _b: Option<&[f32]>,
        _dx: &mut [f32],
    ) {
        panic!(
            "{} implements the forward pass only (supports() says so)",
            self.name()
        );
    }
    fn backward_weight(&self, _g: &ConvGeom, _x: &[f32], _dy: &[f32], _dw: &mut [f32]) {
        panic!(
            "{} implements the forward pass only (supports() says so)",
            self.name()
        );
    }
    fn prepare(&self, g: &ConvGeom, pass: Pass, weight: &[f32]) -> Option<Vec<f32>> {
        assert_eq!(weight.len(), g.w_len, "weight length");
        self.supports(g, pass).ok()?;
        let mut packed = vec![0.0; packed_len(g)];
        pack(self.0, g, weight, &mut packed);
        Some(packed)
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

/// Channels per weight block: 1 for depthwise, else NJ.
fn nj(g: &ConvGeom) -> usize {
    if g.is_depthwise() { 1 } else { NJ }
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
        pack_blocks(s, weight, g.g, c_out_g, nj(g), c_out_g * k, k, red_src, out);
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
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let (nj, ur) = if g.is_depthwise() {
        (1, UR_DW)
    } else {
        (NJ, 1)
    };
    let k = c_in_g * g.kh * g.kw;
    let span = NV * S::LANES;
    // Each task pads its own group's input planes: rows for every output row's taps,
    // columns for whole vectors (a small copy, used at once while it is in cache).
    let rows = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    let cols = g.ow.div_ceil(span) * span + (g.kw - 1) * g.dw;
    let blocks = c_out_g.div_ceil(nj);
    // Tasks: (image, group, channel block), split into bands of rows when there are few.
    let bands = if g.n * g.g * blocks >= 8 {
        1
    } else {
        g.oh.div_ceil(16)
    };
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
            with_scratch(c_in_g * rows * cols, |buf| {
                // Borrowed in place when no padding is needed; plane and row strides say which.
                let src = pad_planes(planes, c_in_g, g.h, g.w, rows, cols, g.pad_t, g.pad_l, buf);
                with_index_scratch(k, |red| {
                    for (r, o) in red.iter_mut().enumerate() {
                        let (ic, ky, kx) = (r / (g.kh * g.kw), r / g.kw % g.kh, r % g.kw);
                        *o = ic * src.plane + ky * g.dh * src.row + kx * g.dw;
                    }
                    let mut job = RowJob {
                        g,
                        src: src.data,
                        row_stride: src.row,
                        red,
                        w: &packed[(grp * blocks + blk) * k * nj..][..k * nj],
                        nj,
                        ur,
                        n_ch,
                        rows: band_i * band..g.oh.min((band_i + 1) * band),
                        dst: out,
                        dst_base: (b * g.c_out + oc0) * g.oh * g.ow,
                        bias: bias.map(|bias| &bias[oc0..oc0 + n_ch]),
                        relu,
                    };
                    s.dispatch(&mut job);
                });
            });
        });
    }
}

/// One task: output rows `rows` of channels `dst_base..+n_ch` of one image.
struct RowJob<'a> {
    g: &'a ConvGeom,
    src: &'a [f32],
    row_stride: usize,
    red: &'a [usize],
    w: &'a [f32],
    nj: usize,
    ur: usize,
    n_ch: usize,
    rows: std::ops::Range<usize>,
    dst: SharedMut,
    dst_base: usize,
    bias: Option<&'a [f32]>,
    relu: bool,
}

impl SimdJob for RowJob<'_> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        if self.ur == 1 {
            self.tiles::<S, 1, NJ>(s);
        } else {
            self.tiles::<S, UR_DW, 1>(s);
        }
    }
}

impl RowJob<'_> {
    #[inline(always)]
    fn tiles<S: DirectIsa, const UR: usize, const J: usize>(&self, s: S) {
        let g = self.g;
        let l = S::LANES;
        let span = NV * l;
        debug_assert_eq!((UR, J), (self.ur, self.nj));
        // Bounds for the raw reads below, checked once: the last tap of the last vector of
        // the last row stays inside src; the weights hold red.len() * J floats.
        let max_red = self.red.iter().copied().max().unwrap_or(0);
        let last_row = (self.rows.end.max(1) - 1) * g.sh * self.row_stride;
        let last_col = g.ow.div_ceil(span) * span - 1;
        assert!(
            self.red.is_empty() || max_red + last_row + last_col < self.src.len(),
            "row tile source out of range"
        );
        assert!(
            self.w.len() >= self.red.len() * J,
            "row tile weights too short"
        );
        let plane = g.oh * g.ow;
        assert!(
            self.n_ch >= 1 && self.dst_base + (self.n_ch - 1) * plane + plane <= self.dst.len(),
            "row tile destination out of range"
        );
        let src = self.src.as_ptr();
        let w = self.w.as_ptr();
        for oy0 in self.rows.clone().step_by(UR) {
            let nrows = UR.min(self.rows.end - oy0);
            let mut offs = [0usize; UR];
            for (i, o) in offs.iter_mut().enumerate() {
                *o = (oy0 + i.min(nrows - 1)) * g.sh * self.row_stride;
            }
            for ox0 in (0..g.ow).step_by(span) {
                let mut acc = [[[s.zero(); NV]; J]; UR];
                for (r, &red) in self.red.iter().enumerate() {
                    let mut xv = [[s.zero(); NV]; UR];
                    for (i, xi) in xv.iter_mut().enumerate() {
                        for (v, xiv) in xi.iter_mut().enumerate() {
                            // SAFETY: red + offs[i] + ox0 + v*l + l - 1 <= max_red + last_row
                            // + last_col < src.len() (asserted above).
                            *xiv = unsafe { s.load(src.add(red + offs[i] + ox0 + v * l)) };
                        }
                    }
                    for j in 0..J {
                        // SAFETY: r*J + j < red.len()*J <= w.len() (asserted above).
                        let wj = unsafe { s.broadcast(w.add(r * J + j)) };
                        for (acc_i, xi) in acc.iter_mut().zip(&xv) {
                            for (a, x) in acc_i[j].iter_mut().zip(xi) {
                                *a = s.mul_add(wj, *x, *a);
                            }
                        }
                    }
                }
                self.store::<S, UR, J>(s, &acc, oy0, nrows, ox0);
            }
        }
    }

    /// Writes a tile's valid rows, channels and pixels with the bias/ReLU epilogue.
    #[inline(always)]
    fn store<S: DirectIsa, const UR: usize, const J: usize>(
        &self,
        s: S,
        acc: &[[[S::V; NV]; J]; UR],
        oy0: usize,
        nrows: usize,
        ox0: usize,
    ) {
        let g = self.g;
        let l = S::LANES;
        let mut tmp = [0.0f32; MAX_LANES];
        for (i, acc_i) in acc.iter().enumerate().take(nrows) {
            for (j, acc_ij) in acc_i.iter().enumerate().take(self.n_ch) {
                let bias = self.bias.map_or(0.0, |b| b[j]);
                let row = self.dst_base + (j * g.oh + oy0 + i) * g.ow;
                for (v, a) in acc_ij.iter().enumerate() {
                    let x0 = ox0 + v * l;
                    if x0 >= g.ow {
                        break;
                    }
                    let mut a = s.add(*a, s.splat(bias));
                    if self.relu {
                        a = s.max(a, s.zero());
                    }
                    if x0 + l <= g.ow {
                        // SAFETY: row + x0 + l <= row + ow <= dst.len() (asserted in tiles);
                        // these pixels of this channel belong to this task alone.
                        unsafe { s.store(self.dst.at(row + x0), a) };
                        continue;
                    }
                    // SAFETY: tmp holds MAX_LANES >= LANES floats.
                    unsafe { s.store(tmp.as_mut_ptr(), a) };
                    for (lane, t) in tmp.iter().enumerate().take(g.ow - x0) {
                        // SAFETY: row + x0 + lane < row + ow <= dst.len() (asserted in tiles);
                        // these pixels of this channel belong to this task alone.
                        unsafe { *self.dst.at(row + x0 + lane) = *t };
                    }
                }
            }
        }
    }
}
