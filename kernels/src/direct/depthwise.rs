//! Depthwise direct convolution (one input and one output channel per group: MobileNet's
//! 3x3 layers), all three passes, any stride, dilation and padding.
//!
//! A depthwise channel is a single plane convolved with its own `kh x kw` filter, so there
//! are no channels to vectorise over: the vectors hold `LANES` consecutive pixels of a row.
//! Each task copies its channel's input into a zero-padded plane split into the column
//! phases the taps read (`sw` phases at most; one when `sw = 1`), so every tap reads whole
//! vectors at unit stride, whatever the stride, dilation or padding (but for the AVX2
//! paths of "same" 3x3 layers below, which read x in place):
//!
//! ```text
//!   q[slot(kx)][r][j] = x[r - pad_t][j*sw + phase(kx) - pad_l]   (0 outside x)
//!   x column of output ox, tap kx = (ox + jo(kx))*sw + phase(kx) - pad_l
//!   phase(kx) = (kx*dw) % sw,  jo(kx) = (kx*dw) / sw
//! ```
//!
//! - forward: a register tile of `UR` output rows x `NV` pixel vectors; per tap one
//!   broadcast and `UR*NV` loads feed `UR*NV` FMAs. The last vector of a row is shifted left
//!   to end at the row's end (it recomputes a few pixels, bit for bit the same), so every
//!   store is a whole vector; rows narrower than a vector go through a staging array.
//!   3x3 stride-1 undilated layers (MobileNet's) at least a vector wide unroll the taps
//!   over per-row base pointers instead (`tiles_3x3`: 1.16-1.23x on an AVX2-only Zen 3
//!   EPYC, forward and backward-data, 14x14 to 112x112 planes); narrower planes read the
//!   padded plane flat, unpadded to a vector (`tiles_3x3_narrow`: MobileNet's 7x7 layer
//!   3.7 -> 11 GFLOP/s there, with the copies in and out as whole vectors). On AVX2, whose
//!   masked loads take a mask built once, "same" 3x3 layers (padding 1) at least a vector
//!   wide skip the padded copy: strips of two vectors stream down the plane, each loaded
//!   row feeding the three output rows it reaches, the padding columns masked off
//!   (`rows_3x3`: 1.4-1.6x over `tiles_3x3` on MobileNet's 14x14 to 56x56 planes); planes
//!   narrower than a vector the same way, one vector per row and two planes side by side
//!   (`narrow_rows_3x3`: MobileNet's 7x7 layer 10 -> 18 GFLOP/s at best).
//! - backward-data: at stride 1 (padding at most the dilated kernel's extent), the forward
//!   kernel on `grad_y` with the filters flipped and the complementary padding; otherwise
//!   the transposed scatter `dq[slot][oy*sh + ky*dh][ox + jo] += w * dy`, one tap at a time
//!   over the whole plane (so no store feeds an overlapping load soon after), into a zeroed
//!   padded plane that is then cropped into `grad_x`.
//! - backward-weight: per tap, `NACC` vector accumulators over each row's pixel vectors of
//!   every image (grad_y zero-padded to whole vectors), summed in a fixed order. 3x3 stride-1
//!   layers on AVX-512 (and on AVX2 up to 32-wide planes) skip the copies: one register
//!   accumulator per tap, `x` and `grad_y` read in place with masked loads at the row edges.
//!
//! Tasks are (image, channel) for the data passes and channels for backward-weight; every
//! output is computed by one task in a fixed order, so results do not depend on the thread
//! count.

use super::{DirectIsa, SimdJob};
use crate::parallel::{SharedMut, for_each_task, with_scratch};
use crate::params::{ConvGeom, ConvParams};
use crate::registry::ConvKernel;
use crate::{Algorithm, Isa, Pass};

/// Output rows per forward tile.
const UR: usize = 4;
/// Pixel vectors per forward tile row.
const NV: usize = 2;
/// Pixel vectors per strip of the streaming 3x3 rows (`FwdJob::rows_3x3`): 3 x 2
/// accumulators, 2 masks and the loaded vector take 9 of AVX2's 16 registers and the nine
/// weights share the rest (some reloaded from the stack); 3 and 4 vectors (9 and 12
/// accumulators) ran no faster on MobileNet's planes.
const NV_ROWS: usize = 2;
/// Input floats per band of the streaming 3x3 rows (16 KiB: half of L1).
const BAND_FLOATS: usize = 4096;
/// Accumulators per tap in backward-weight.
const NACC: usize = 4;
/// Largest `LANES` of any ISA (staging for narrow rows and reductions).
const MAX_LANES: usize = 16;

/// The depthwise direct kernel on ISA `S`.
pub struct DirectDepthwise<S>(S);

impl<S: DirectIsa> DirectDepthwise<S> {
    /// The kernel, if this CPU has the ISA.
    pub(crate) fn make() -> Option<Box<dyn ConvKernel>> {
        S::detect().map(|s| Box::new(DirectDepthwise(s)) as Box<dyn ConvKernel>)
    }
}

// SAFETY: a DirectDepthwise<S> holds the proof value S; every raw access is bounded by the
// asserts in `Layout::fill` and the jobs' `run` (via `Layout::end`), or, on the paths that
// read x in place, by those of `rows_3x3` and `narrow_rows_3x3`; raw writes to shared
// outputs touch the task's own planes only.
unsafe impl<S: DirectIsa> ConvKernel for DirectDepthwise<S> {
    fn name(&self) -> &'static str {
        S::DW_NAME
    }
    fn algorithm(&self) -> Algorithm {
        Algorithm::Direct
    }
    fn isa(&self) -> Isa {
        S::ISA
    }
    fn supports(&self, g: &ConvGeom, _pass: Pass) -> Result<(), &'static str> {
        if !g.is_depthwise() {
            return Err("convs other than depthwise (one input and one output channel per group)");
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
        assert!(g.is_depthwise(), "unsupported geometry");
        forward(self.0, g, x, weight, bias, false, y);
    }
    fn backward_data(
        &self,
        g: &ConvGeom,
        dy: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        dx: &mut [f32],
    ) {
        g.assert_backward_data(dy, weight, bias, dx);
        assert!(g.is_depthwise(), "unsupported geometry");
        backward_data(self.0, g, dy, weight, bias, dx);
    }
    fn backward_weight(&self, g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
        g.assert_backward_weight(x, dy, dw);
        assert!(g.is_depthwise(), "unsupported geometry");
        backward_weight(self.0, g, x, dy, dw);
    }
    fn prepare(&self, g: &ConvGeom, pass: Pass, weight: &[f32]) -> Option<Vec<f32>> {
        assert_eq!(weight.len(), g.w_len, "weight length");
        self.supports(g, pass).ok()?;
        // The filters are used as they are; a copy lets plans fuse the ReLU.
        (pass == Pass::Forward).then(|| weight.to_vec())
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
        assert!(g.is_depthwise(), "unsupported geometry");
        g.assert_forward(x, prepared, bias, y);
        forward(self.0, g, x, prepared, bias, relu, y);
    }
}

/// The padded, phase-split plane of one channel and how taps index it.
struct Layout {
    /// Padded rows: every row any output row's taps read.
    rows: usize,
    /// Columns per phase row.
    cols: usize,
    /// Per slot: its column phase.
    phase: Vec<usize>,
    /// The largest tap-column offset `slot(kx)*rows*cols + jo(kx)`.
    max_kx_off: usize,
    /// Per tap `(ky, kx)`, row-major: its offset from its output row's start.
    tap_off: Vec<usize>,
    /// Pixels computed per row: `ow` rounded so whole vectors cover it (just `ow` for the
    /// narrow 3x3 tiles, which read the plane as one flat row).
    span: usize,
}

impl Layout {
    /// The layout for `span` computed pixels per row (at least one vector, but for the narrow
    /// 3x3 tiles: see `forward`).
    fn new(g: &ConvGeom, span: usize) -> Layout {
        let rows = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1;
        let mut phase = Vec::new();
        let mut slot_of = Vec::with_capacity(g.kw);
        for kx in 0..g.kw {
            let p = kx * g.dw % g.sw;
            let s = phase.iter().position(|&q| q == p).unwrap_or_else(|| {
                phase.push(p);
                phase.len() - 1
            });
            slot_of.push(s);
        }
        let cols = span + (g.kw - 1) * g.dw / g.sw;
        // Per tap column: the offset of its first float, slot(kx)*rows*cols + jo(kx).
        let kx_off: Vec<usize> = (0..g.kw)
            .map(|kx| slot_of[kx] * rows * cols + kx * g.dw / g.sw)
            .collect();
        let tap_off = (0..g.kh * g.kw)
            .map(|t| kx_off[t % g.kw] + t / g.kw * g.dh * cols)
            .collect();
        Layout {
            max_kx_off: kx_off.iter().copied().max().unwrap_or(0),
            tap_off,
            rows,
            cols,
            phase,
            span,
        }
    }
    fn len(&self) -> usize {
        self.phase.len() * self.rows * self.cols
    }
    /// Offset of tap `(ky, kx)` for output row `oy`, pixel 0.
    fn tap(&self, g: &ConvGeom, oy: usize, ky: usize, kx: usize) -> usize {
        self.tap_off[ky * g.kw + kx] + oy * g.sh * self.cols
    }
    /// One past the last float a tap reads for output row `oy`: at most `len()` for every
    /// `oy < oh`, since `(oh-1)*sh + (kh-1)*dh = rows - 1` and `jo + span <= cols`.
    fn end(&self, g: &ConvGeom, oy: usize) -> usize {
        self.max_kx_off + (oy * g.sh + (g.kh - 1) * g.dh) * self.cols + self.span
    }
    /// Fills `q` (at least `len() + LANES` floats) with channel plane `plane` (`h x w`),
    /// zero outside. Called inside a dispatched job, so the fast path's vector copies are
    /// inlined instead of a `memcpy` and two `memset` calls per row.
    ///
    /// The zeros depend on the geometry only, so with `borders == false` (a plane of the same
    /// geometry was filled into `q` before and nothing has written `q` since) the fast path
    /// copies just the rows of x.
    #[inline(always)]
    fn fill<S: DirectIsa>(&self, s: S, g: &ConvGeom, plane: &[f32], q: &mut [f32], borders: bool) {
        let l = S::LANES;
        let len = g.w.min(self.cols.saturating_sub(g.pad_l));
        assert!(
            plane.len() == g.h * g.w && q.len() >= self.len() + l,
            "depthwise fill"
        );
        if g.sw == 1 && len > 0 {
            let (dst, src) = (q.as_mut_ptr(), plane.as_ptr());
            let (cols, left) = (self.cols, g.pad_l);
            for r in 0..self.rows {
                let row = r * cols;
                let Some(iy) = r.checked_sub(g.pad_t).filter(|&iy| iy < g.h) else {
                    if !borders {
                        continue;
                    }
                    for c in (0..cols).step_by(l) {
                        // SAFETY: row + c < rows*cols = len(), and q has l floats of slack.
                        unsafe { s.store(dst.add(row + c), s.zero()) };
                    }
                    continue;
                };
                // Zeros over the left padding, the row (the last vector shifted to end at
                // left + len; float by float when len < l), zeros from there to the row's
                // end. Stores past the row's end land in the next row, written after this
                // one, or in the slack.
                for c in (0..if borders { left } else { 0 }).step_by(l) {
                    // SAFETY: row + c < row + left < row + cols (len > 0 so left < cols), so
                    // the l floats end below len() + l <= q.len() (asserted above).
                    unsafe { s.store(dst.add(row + c), s.zero()) };
                }
                if len < l {
                    if iy * g.w + l <= plane.len() {
                        // A whole vector, then zeros over the l - len floats it took past the
                        // row's data: they land on zeros, or on rows written after this one,
                        // or in the slack (a float loop here compiles to masked moves, which
                        // are microcoded on AMD's cores).
                        // SAFETY: iy*w + l <= plane.len() (checked); row + left + len + l <=
                        // row + cols + l <= len() + l <= q.len() (asserted above).
                        unsafe {
                            s.store(dst.add(row + left), s.load(src.add(iy * g.w)));
                            s.store(dst.add(row + left + len), s.zero());
                        }
                    } else {
                        // SAFETY: iy*w + len <= h*w = plane.len(); row + left + len <= row +
                        // cols <= len(); plane and q do not overlap (q is &mut).
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                src.add(iy * g.w),
                                dst.add(row + left),
                                len,
                            )
                        };
                    }
                }
                for c in (0..if len >= l { len } else { 0 }).step_by(l) {
                    let c = c.min(len - l);
                    // SAFETY: iy*w + c + l <= iy*w + len <= h*w = plane.len(); row + left +
                    // c + l <= row + left + len <= row + cols <= len().
                    unsafe { s.store(dst.add(row + left + c), s.load(src.add(iy * g.w + c))) };
                }
                for c in (left + len..if borders { cols } else { 0 }).step_by(l) {
                    // SAFETY: row + c < rows*cols = len(), and q has l floats of slack.
                    unsafe { s.store(dst.add(row + c), s.zero()) };
                }
            }
            return;
        }
        // Any stride: slot `k` (column phase p) holds x columns j*sw + p - pad_l, which
        // are inside x for j in j_lo..j_hi (j*sw < w + pad_l there, so nothing overflows).
        for (k, &p) in self.phase.iter().enumerate() {
            let j_lo = g.pad_l.saturating_sub(p).div_ceil(g.sw).min(self.cols);
            let j_hi = (g.w + g.pad_l)
                .saturating_sub(p)
                .div_ceil(g.sw)
                .clamp(j_lo, self.cols);
            let block = &mut q[k * self.rows * self.cols..][..self.rows * self.cols];
            for (r, row) in block.chunks_exact_mut(self.cols).enumerate() {
                let Some(iy) = r.checked_sub(g.pad_t).filter(|&iy| iy < g.h) else {
                    row.fill(0.0);
                    continue;
                };
                let src = &plane[iy * g.w..][..g.w];
                row[..j_lo].fill(0.0);
                // Columns start + j*sw for j < n, bounds checked once: a check per float
                // (indexed, or a stepped iterator's) made this copy the bulk of a stride-2
                // depthwise pass.
                let n = j_hi - j_lo;
                if n > 0 {
                    let start = j_lo * g.sw + p - g.pad_l;
                    assert!(start + (n - 1) * g.sw < g.w, "depthwise fill columns");
                    let from = src[start..].as_ptr();
                    let to = row[j_lo..j_hi].as_mut_ptr();
                    // Stride 2: a vector of every other float from two loads.
                    let mut j0 = 0;
                    while g.sw == 2 && j0 + l <= n && start + 2 * (j0 + l) <= g.w {
                        // SAFETY: reads floats start + 2*j0 .. start + 2*(j0 + l) <= w =
                        // src.len(); writes j0 .. j0 + l <= n.
                        unsafe { s.store(to.add(j0), s.even_lanes(from.add(2 * j0))) };
                        j0 += l;
                    }
                    for j in j0..n {
                        // SAFETY: start + j*sw <= start + (n-1)*sw < w = src.len()
                        // (asserted), and j < n = the length of row[j_lo..j_hi].
                        unsafe { *to.add(j) = *from.add(j * g.sw) };
                    }
                }
                row[j_hi..].fill(0.0);
            }
        }
    }
    /// Writes `grad_x` plane `out` (`h x w`): the crop of the padded plane `q`, plus `bias`.
    fn crop(&self, g: &ConvGeom, q: &[f32], bias: f32, out: &mut [f32]) {
        for (iy, row) in out.chunks_exact_mut(g.w).enumerate() {
            let r = iy + g.pad_t;
            if r >= self.rows {
                row.fill(bias);
                continue;
            }
            if g.sw == 1 {
                // One slot, phase 0: x column ix is q column ix + pad_l.
                let src = &q[r * self.cols..][..self.cols];
                for (ix, v) in row.iter_mut().enumerate() {
                    *v = src.get(ix + g.pad_l).copied().unwrap_or(0.0) + bias;
                }
                continue;
            }
            for (ix, v) in row.iter_mut().enumerate() {
                let c = ix + g.pad_l;
                let (j, p) = (c / g.sw, c % g.sw);
                let got = match self.phase.iter().position(|&ph| ph == p) {
                    Some(s) if j < self.cols => q[(s * self.rows + r) * self.cols + j],
                    _ => 0.0,
                };
                *v = got + bias;
            }
        }
    }
}

fn forward<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    // The narrow 3x3 tiles read the plane flat, so its rows get no padding to a vector.
    let narrow = is_3x3_unit(g) && g.ow < S::LANES;
    let lay = Layout::new(g, if narrow { g.ow } else { g.ow.max(S::LANES) });
    let out = SharedMut::new(y);
    let planes = g.n * g.c_out;
    let per_task = planes_per_task(planes);
    for_each_task(planes.div_ceil(per_task), |t| {
        // Past the plane, the slack the narrow 3x3 tiles read (see `tiles_3x3_narrow`).
        with_scratch(lay.len() + (UR * NV + 1) * S::LANES, |q| {
            let mut job = FwdJob {
                g,
                lay: &lay,
                x,
                q,
                weight,
                bias,
                relu,
                dst: out,
                planes: t * per_task..planes.min((t + 1) * per_task),
            };
            s.dispatch(&mut job);
        });
    });
}

/// A 3x3 filter at stride 1, undilated: the forward pass's unrolled tiles.
fn is_3x3_unit(g: &ConvGeom) -> bool {
    g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1
}

/// A 3x3 stride-1 undilated filter with padding 1 all round: output planes the size of the
/// input's (MobileNet's layers, and their backward-data).
fn is_same_3x3(g: &ConvGeom) -> bool {
    is_3x3_unit(g) && g.pad_t == 1 && g.pad_l == 1 && g.oh == g.h && g.ow == g.w
}

/// Channel planes per task: up to 8 (the padded copy's zeros and the task's setup are
/// shared by them), fewer when that would leave fewer than 8 tasks.
fn planes_per_task(planes: usize) -> usize {
    (planes / 8).clamp(1, 8)
}

struct FwdJob<'a> {
    g: &'a ConvGeom,
    lay: &'a Layout,
    x: &'a [f32],
    /// The padded copy of the current plane.
    q: &'a mut [f32],
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    relu: bool,
    dst: SharedMut,
    /// This task's planes (`image * c + channel`).
    planes: std::ops::Range<usize>,
}

impl SimdJob for FwdJob<'_> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        let (g, planes) = (self.g, self.planes.clone());
        if S::HOISTED_MASK_LOADS && is_same_3x3(g) && g.w < S::LANES {
            // Planes narrower than a vector, two at a time (six accumulator chains).
            let masks = narrow_masks(s, g.w);
            let mut t = planes.start;
            while t + 2 <= planes.end {
                self.narrow_rows_3x3::<S, 2>(s, t, &masks);
                t += 2;
            }
            if t < planes.end {
                self.narrow_rows_3x3::<S, 1>(s, t, &masks);
            }
            return;
        }
        for t in planes {
            self.plane(s, t, t == self.planes.start);
        }
    }
}

impl FwdJob<'_> {
    /// An output vector from its accumulator: plus the bias, through the ReLU if fused.
    #[inline(always)]
    fn finish<S: DirectIsa>(&self, s: S, acc: S::V, bias: S::V) -> S::V {
        let y = s.add(acc, bias);
        if self.relu { s.max(y, s.zero()) } else { y }
    }

    /// Output plane `t` (image `t / c`, channel `t % c`).
    #[inline(always)]
    fn plane<S: DirectIsa>(&mut self, s: S, t: usize, borders: bool) {
        let (g, lay, l) = (self.g, self.lay, S::LANES);
        let (oh, ow, taps) = (g.oh, g.ow, g.kh * g.kw);
        let c = t % g.c_out;
        let w = &self.weight[c * taps..][..taps];
        if S::HOISTED_MASK_LOADS && is_same_3x3(g) && g.w >= l {
            let bias = s.splat(self.bias.map_or(0.0, |b| b[c]));
            return self.rows_3x3(s, t, w, bias);
        }
        lay.fill(s, g, &self.x[t * g.h * g.w..][..g.h * g.w], self.q, borders);
        let dst_base = t * oh * ow;
        // Bounds for the raw accesses below, checked once: every tap of the last output row
        // reads below lay.end(oh - 1) <= q.len(); the task owns y[dst_base..+oh*ow].
        assert!(
            lay.end(g, oh - 1) <= self.q.len(),
            "depthwise source out of range"
        );
        assert!(
            dst_base + oh * ow <= self.dst.len(),
            "depthwise destination"
        );
        let bias = s.splat(self.bias.map_or(0.0, |b| b[c]));
        if is_3x3_unit(g) {
            return if ow >= l {
                self.tiles_3x3(s, w, dst_base, bias)
            } else {
                self.tiles_3x3_narrow(s, w, dst_base, bias)
            };
        }
        assert!(lay.span >= l && lay.tap_off.len() == taps);
        let q = self.q.as_ptr();
        let mut tmp = [0.0f32; MAX_LANES];
        for oy0 in (0..oh).step_by(UR) {
            let nrows = UR.min(oh - oy0);
            // Rows past the end repeat the last row (not stored).
            let row_off: [usize; UR] =
                std::array::from_fn(|i| (oy0 + i.min(nrows - 1)) * g.sh * lay.cols);
            for ox0 in (0..lay.span).step_by(NV * l) {
                // Vector starts, the last ones shifted to end at the span's end.
                let start: [usize; NV] = std::array::from_fn(|v| (ox0 + v * l).min(lay.span - l));
                let mut acc = [[s.zero(); NV]; UR];
                for (&off, &wt) in lay.tap_off.iter().zip(w) {
                    let wv = s.splat(wt);
                    for (acc_i, &ro) in acc.iter_mut().zip(&row_off) {
                        for (a, &st) in acc_i.iter_mut().zip(&start) {
                            // SAFETY: off + ro = lay.tap(oy, ky, kx) for some oy < oh, and
                            // st + l <= span, so the vector ends below lay.end(oy) <= q.len()
                            // (asserted above).
                            let xv = unsafe { s.load(q.add(off + ro + st)) };
                            *a = s.mul_add(wv, xv, *a);
                        }
                    }
                }
                for (i, acc_i) in acc.iter().enumerate().take(nrows) {
                    let row = dst_base + (oy0 + i) * ow;
                    for (a, &st) in acc_i.iter().zip(&start) {
                        let v = self.finish(s, *a, bias);
                        if ow >= l {
                            // SAFETY: st + l <= span = ow, so row + st + l <= dst_base + oh*ow
                            // <= dst.len() (asserted); this channel belongs to this task.
                            unsafe { s.store(self.dst.at(row + st), v) };
                        } else {
                            // SAFETY: tmp holds MAX_LANES >= l floats.
                            unsafe { s.store(tmp.as_mut_ptr(), v) };
                            for (px, t) in tmp.iter().enumerate().take(ow) {
                                // SAFETY: row + px < row + ow <= dst.len() (asserted).
                                unsafe { *self.dst.at(row + px) = *t };
                            }
                        }
                    }
                }
            }
        }
    }

    /// The tiles of plane `self.q` for a 3x3 stride-1 undilated filter `w` (MobileNet's
    /// layers), at least one vector wide: the `UR + 2` input rows of a tile get a base
    /// pointer each, and every load is a base, a vector start and a constant displacement,
    /// where the general loop above spends four address computations and an offset load on
    /// each tap. The vectors start where the general loop's do (the last of a row shifted
    /// left to end at the row's end) and the FMAs run in the same order, so the results are
    /// the general loop's, bit for bit.
    #[inline(always)]
    fn tiles_3x3<S: DirectIsa>(&mut self, s: S, w: &[f32], dst_base: usize, bias: S::V) {
        let (g, lay, l) = (self.g, self.lay, S::LANES);
        let (oh, ow, cols, span) = (g.oh, g.ow, lay.cols, lay.span);
        // One phase (stride 1): rows = oh + 2, cols = span + 2, and span = ow >= l.
        assert!(
            lay.rows == oh + 2 && cols == span + 2 && span == ow && span >= l,
            "depthwise 3x3 layout"
        );
        assert!(lay.rows * cols <= self.q.len() && w.len() == 9);
        let q = self.q.as_ptr();
        for oy0 in (0..oh).step_by(UR) {
            let nrows = UR.min(oh - oy0);
            for ox0 in (0..span).step_by(NV * l) {
                // Vector starts, the last ones shifted to end at the span's end.
                let st: [usize; NV] = std::array::from_fn(|v| (ox0 + v * l).min(span - l));
                // Input row oy0 + r of the tile from column st[0]; past the plane's last row
                // (a partial tile's rows, not stored) the last row again.
                let rp: [*const f32; UR + 2] = std::array::from_fn(|r| {
                    let row = (oy0 + r).min(lay.rows - 1);
                    // SAFETY: row < rows and st[0] < span < cols, inside q's rows*cols floats
                    // (asserted).
                    unsafe { q.add(row * cols + st[0]) }
                });
                // Each vector's start from the first's.
                let dv: [usize; NV] = std::array::from_fn(|v| st[v] - st[0]);
                let mut acc = [[s.zero(); NV]; UR];
                for ky in 0..3 {
                    for kx in 0..3 {
                        let wv = s.splat(w[ky * 3 + kx]);
                        for (i, acc_i) in acc.iter_mut().enumerate() {
                            for (v, a) in acc_i.iter_mut().enumerate() {
                                // SAFETY: rp[i + ky] is a row of q at column st[0], and
                                // st[0] + dv[v] + kx + l = st[v] + kx + l <= span + 2 = cols:
                                // inside that row.
                                let xv = unsafe { s.load(rp[i + ky].add(dv[v] + kx)) };
                                *a = s.mul_add(wv, xv, *a);
                            }
                        }
                    }
                }
                for (i, acc_i) in acc.iter().enumerate().take(nrows) {
                    let row = dst_base + (oy0 + i) * ow;
                    for (a, &st) in acc_i.iter().zip(&st) {
                        let y = self.finish(s, *a, bias);
                        // SAFETY: st + l <= span = ow, so the vector ends inside output row
                        // oy0 + i < oh of this task's plane (dst_base + oh*ow <= dst.len(),
                        // asserted by the caller).
                        unsafe { s.store(self.dst.at(row + st), y) };
                    }
                }
            }
        }
    }

    /// The tiles of a plane narrower than a vector (MobileNet's 7x7 layer; its 14x14 ones on
    /// AVX-512) for a 3x3 stride-1 undilated filter: the padded plane read as one flat row,
    /// `out[f] = sum w[ky][kx] * q[f + ky*cols + kx]` for the flat index `f = oy*cols + ox`,
    /// in tiles of `UR * NV` vectors; a tile's outputs are staged and each output row's
    /// `ow` pixels copied out (the rest of each flat row, `cols - ow` columns, is computed
    /// and dropped). The general loop instead computes `NV` vectors of one row for `ow`
    /// pixels and stores them through the staging array pixel by pixel.
    #[inline(always)]
    fn tiles_3x3_narrow<S: DirectIsa>(&mut self, s: S, w: &[f32], dst_base: usize, bias: S::V) {
        const T: usize = UR * NV;
        let (g, lay, l) = (self.g, self.lay, S::LANES);
        let (oh, ow, cols) = (g.oh, g.ow, lay.cols);
        // One phase (stride 1): rows = oh + 2, cols = span + 2 = ow + 2.
        assert!(lay.rows == oh + 2 && cols == ow + 2 && w.len() == 9);
        // Flat outputs 0..flat (the last row's last pixel is flat - 1); a tile at f0 <
        // flat reads below f0 + T*l + 2*cols + 2 <= flat + T*l + 2*cols + 1, which is at
        // most (oh + 1)*cols + ow + T*l + 1 <= lay.len() + (T + 1)*l: inside q (forward
        // allocates that slack; its floats only reach outputs that are dropped).
        let flat = (oh - 1) * cols + ow;
        assert!(
            flat + T * l + 2 * cols < self.q.len(),
            "depthwise narrow slack"
        );
        let q = self.q.as_ptr();
        // A tile's outputs, and a vector of slack for the whole-vector copies out of it.
        let mut tmp = [0.0f32; (T + 1) * MAX_LANES];
        assert!(l <= MAX_LANES);
        let plane_end = dst_base + oh * ow;
        for f0 in (0..flat).step_by(T * l) {
            // SAFETY: f0 < flat, and the reads below end under flat + T*l + 2*cols + 1 <=
            // q.len() (asserted).
            let rp: [*const f32; 3] = std::array::from_fn(|ky| unsafe { q.add(f0 + ky * cols) });
            let mut acc = [s.zero(); T];
            for ky in 0..3 {
                for kx in 0..3 {
                    let wv = s.splat(w[ky * 3 + kx]);
                    for (v, a) in acc.iter_mut().enumerate() {
                        // SAFETY: f0 + ky*cols + v*l + kx + l <= f0 + T*l + 2*cols + 2, in
                        // q (asserted above).
                        let xv = unsafe { s.load(rp[ky].add(v * l + kx)) };
                        *a = s.mul_add(wv, xv, *a);
                    }
                }
            }
            for (v, a) in acc.iter().enumerate() {
                let y = self.finish(s, *a, bias);
                // SAFETY: tmp holds (T + 1)*MAX_LANES >= (v + 1)*l floats.
                unsafe { s.store(tmp.as_mut_ptr().add(v * l), y) };
            }
            // The output rows this tile reaches, each row's pixels within the tile.
            let f1 = (f0 + T * l).min(flat);
            for oy in f0 / cols..=(f1 - 1) / cols {
                let (a, b) = ((oy * cols).max(f0), (oy * cols + ow).min(f1));
                if a >= b {
                    continue;
                }
                let at = dst_base + oy * ow + a - oy * cols;
                if at + l <= plane_end {
                    // A whole vector: its floats past the segment land on pixels of this
                    // plane written after it (later rows, the next tile), so none survive;
                    // a `copy_from_slice` here was a `memmove` call per row.
                    // SAFETY: at + l <= plane_end <= dst.len() (asserted by the caller; this
                    // task owns the plane); a - f0 < T*l, so tmp has l floats from there.
                    unsafe {
                        s.store(self.dst.at(at), s.load(tmp.as_ptr().add(a - f0)));
                    }
                } else {
                    // SAFETY: this task owns the plane at dst_base (oh*ow floats); the row
                    // segment at .. at + (b - a) lies in row oy < oh (slice_mut checks).
                    let dst = unsafe { self.dst.slice_mut(at, b - a) };
                    dst.copy_from_slice(&tmp[a - f0..b - f0]);
                }
            }
        }
    }

    /// Output plane `t` of a 3x3 stride-1 "same" layer (padding 1 all round, so `oh = h`
    /// and `ow = w`) at least a vector wide, on ISAs whose masked loads take a mask built
    /// once: x is read where it lies, with no padded copy. Strips of up to `NV_ROWS` pixel
    /// vectors stream down the plane one input row at a time; each loaded vector feeds the
    /// three output rows it reaches (taps `ky = 0, 1, 2` of rows `iy + 1`, `iy`, `iy - 1`),
    /// in three rotating sets of accumulators, so a row's vectors are loaded once, not once
    /// per output row, and the output row `iy - 1` is complete and stored after input row
    /// `iy`. The padding rows contribute nothing and are skipped; the padding columns are
    /// the masked-off lanes of the strip's first and last loads. Each output row gets its
    /// taps in the padded loops' order (`ky`, then `kx`).
    #[inline(always)]
    fn rows_3x3<S: DirectIsa>(&mut self, s: S, t: usize, w: &[f32], bias: S::V) {
        let (g, l) = (self.g, S::LANES);
        let (h, wd) = (g.h, g.w);
        assert!(
            is_same_3x3(g) && wd >= l && w.len() == 9 && S::HOISTED_MASK_LOADS,
            "depthwise 3x3 rows"
        );
        let x = &self.x[t * h * wd..][..h * wd];
        // The task's output plane, checked once here: the stores below add offsets inside it.
        let out = self.dst.rows(t * h * wd, wd, h, wd);
        // Loops, not `array::from_fn`: a closure not inlined would lose the ISA's features.
        let mut wv = [s.zero(); 9];
        for (v, &w) in wv.iter_mut().zip(w) {
            *v = s.splat(w);
        }
        let nvec = wd.div_ceil(l);
        // Bands of output rows whose input rows stay in L1 while every strip reads them.
        let bands = (h * wd).div_ceil(BAND_FLOATS);
        let band = h.div_ceil(bands);
        for o0 in (0..h).step_by(band) {
            let rows = o0..h.min(o0 + band);
            let mut v0 = 0;
            while v0 < nvec {
                let nv = (nvec - v0).min(NV_ROWS);
                let r = rows.clone();
                if nv == NV_ROWS {
                    self.strip_3x3::<S, NV_ROWS>(s, x, (v0, r), &wv, out, bias)
                } else {
                    self.strip_3x3::<S, 1>(s, x, (v0, r), &wv, out, bias)
                }
                v0 += nv;
            }
        }
    }

    /// The strip of [`rows_3x3`](Self::rows_3x3) made of pixel vectors `v0 .. v0 + NV` of
    /// plane `x`, the last vector of a row shifted left to end at the row's end.
    #[inline(always)]
    fn strip_3x3<S: DirectIsa, const NV: usize>(
        &self,
        s: S,
        x: &[f32],
        (v0, rows): (usize, std::ops::Range<usize>),
        wv: &[S::V; 9],
        out: *mut f32,
        bias: S::V,
    ) {
        // `out` is this task's output plane, `h x w` floats (checked by `rows_3x3`).
        let (l, h, wd) = (S::LANES, self.g.h, self.g.w);
        let st: [usize; NV] = std::array::from_fn(|v| ((v0 + v) * l).min(wd - l));
        // Tap kx of vector v reads columns st[v] + kx - 1 ..: inside the row but for column
        // -1 (the first vector at st = 0, tap 0: lane 0) and column w (the last vector at
        // st = w - l, tap 2: lane l - 1), which the two masks leave out.
        let left = s.range_mask(usize::from(st[0] == 0), l);
        let right = s.range_mask(0, l - usize::from(st[NV - 1] == wd - l));
        let (xp, masks) = (x.as_ptr(), [left, right]);
        // A local, not a field: the stores through raw pointers would make the loop reload it.
        let relu = self.relu;
        let zero = [s.zero(); NV];
        // Input rows i0..i1 feed output rows o0..o1. Three sets in rotation: after input row
        // iy, the set that took tap 2 holds output row iy - 1, complete; it starts over as
        // the next row's tap-0 set. When the band ends the plane, the last input row's tap-1
        // set is row h - 1, complete (row h is padding).
        let (o0, o1) = (rows.start, rows.end);
        let (i0, i1) = (o0.saturating_sub(1), h.min(o1 + 1));
        let (mut s0, mut s1, mut s2) = (zero, zero, zero);
        let mut iy = i0;
        macro_rules! step {
            ($a:ident, $b:ident, $c:ident) => {
                // SAFETY: iy < i1 <= h; st and masks as above.
                unsafe { row_3x3(s, xp, wd, iy, &st, masks, wv, [&mut $a, &mut $b, &mut $c]) };
                if iy > o0 {
                    // SAFETY: row iy - 1 < h of this task's plane `out`, st[v] + l <= w.
                    unsafe { store_row(s, out.add((iy - 1) * wd), &st, bias, relu, &$a) };
                }
                $a = zero;
                iy += 1;
                if iy == i1 {
                    if o1 == h {
                        // SAFETY: row h - 1 of this task's plane `out`, st[v] + l <= w.
                        unsafe { store_row(s, out.add((h - 1) * wd), &st, bias, relu, &$b) };
                    }
                    return;
                }
            };
        }
        loop {
            step!(s0, s1, s2);
            step!(s1, s2, s0);
            step!(s2, s0, s1);
        }
    }
}

impl FwdJob<'_> {
    /// Output planes `t0 .. t0 + NP` of a 3x3 stride-1 "same" layer whose rows are narrower
    /// than a vector (MobileNet's 7x7 layer on AVX2), read in place: as in
    /// [`strip_3x3`](Self::strip_3x3), each input row is loaded once (one vector per plane,
    /// its lanes past the row masked off) and feeds the three output rows it reaches, here
    /// with the planes of the strip side by side, each with its own filter. An output row is
    /// stored as a whole vector whose lanes past the row land on the rows after it, stored
    /// later; a row whose vector would pass the plane's end goes through a staging array.
    /// `masks[kx]` are tap kx's lanes inside a row (see [`narrow_masks`]), built once per
    /// task.
    #[inline(always)]
    fn narrow_rows_3x3<S: DirectIsa, const NP: usize>(
        &mut self,
        s: S,
        t0: usize,
        masks: &[S::V; 3],
    ) {
        let (g, l) = (self.g, S::LANES);
        let (h, wd, hw) = (g.h, g.w, g.h * g.w);
        assert!(
            is_same_3x3(g) && wd < l && l <= MAX_LANES && S::HOISTED_MASK_LOADS,
            "depthwise narrow 3x3 rows"
        );
        assert!(
            (t0 + NP) * hw <= self.x.len() && (t0 + NP) * hw <= self.dst.len(),
            "depthwise narrow planes"
        );
        // Loops, not `array::from_fn`: a closure not inlined would lose the ISA's features.
        let (mut wv, mut bias) = ([[s.zero(); 9]; NP], [s.zero(); NP]);
        for (p, (wp, b)) in wv.iter_mut().zip(bias.iter_mut()).enumerate() {
            let c = (t0 + p) % g.c_out;
            for (v, &w) in wp.iter_mut().zip(&self.weight[c * 9..][..9]) {
                *v = s.splat(w);
            }
            *b = s.splat(self.bias.map_or(0.0, |b| b[c]));
        }
        let (xp, relu) = (self.x.as_ptr().wrapping_add(t0 * hw), self.relu);
        // The task's NP output planes, checked once here (and asserted above).
        let out = self.dst.rows(t0 * hw, hw, NP, hw);
        let zero = [s.zero(); NP];
        let (mut s0, mut s1, mut s2) = (zero, zero, zero);
        let mut iy = 0;
        macro_rules! step {
            ($a:ident, $b:ident, $c:ident) => {
                let row = xp.wrapping_add(iy * wd);
                for kx in 0..3 {
                    for p in 0..NP {
                        let at = row.wrapping_add(p * hw + kx).wrapping_sub(1);
                        // SAFETY: lanes lo..hi of masks[kx] read columns kx - 1 + i in 0..w
                        // of row iy < h of plane t0 + p, inside x (asserted above).
                        let xv = unsafe { s.load_masked(at, masks[kx]) };
                        let w = &wv[p];
                        $c[p] = s.mul_add(w[kx], xv, $c[p]);
                        $b[p] = s.mul_add(w[3 + kx], xv, $b[p]);
                        $a[p] = s.mul_add(w[6 + kx], xv, $a[p]);
                    }
                }
                if iy > 0 {
                    // SAFETY: planes t0 .. t0 + NP are this task's, inside dst (asserted).
                    unsafe { store_narrow(s, out, (h, wd), iy - 1, &bias, relu, &$a) };
                }
                $a = zero;
                iy += 1;
                if iy == h {
                    // SAFETY: as above.
                    return unsafe { store_narrow(s, out, (h, wd), h - 1, &bias, relu, &$b) };
                }
            };
        }
        loop {
            step!(s0, s1, s2);
            step!(s1, s2, s0);
            step!(s2, s0, s1);
        }
    }
}

/// Per tap column kx of a 3x3 "same" filter on rows `w < LANES` wide, read from column
/// `kx - 1`: the mask of the lanes inside the row (lane i reads column kx - 1 + i).
#[inline(always)]
fn narrow_masks<S: DirectIsa>(s: S, w: usize) -> [S::V; 3] {
    let l = S::LANES;
    // A loop, not `array::from_fn`: a closure not inlined would lose the ISA's features.
    let mut masks = [s.zero(); 3];
    for (kx, m) in masks.iter_mut().enumerate() {
        let lo = usize::from(kx == 0);
        *m = s.range_mask(lo, (w + 1 - kx).clamp(lo, l));
    }
    masks
}

/// Output row `oy` of the `NP` narrow planes from `out` (`h x w` each, `w < LANES`)
/// for [`FwdJob::narrow_rows_3x3`]: plus the bias, through the ReLU if `relu`; a whole
/// vector (its lanes past the row land on the plane's later rows, stored after it) unless
/// it would pass the plane's end, then through a staging array.
///
/// # Safety
/// The `NP` planes from `out` must be writable and this task's alone.
#[inline(always)]
unsafe fn store_narrow<S: DirectIsa, const NP: usize>(
    s: S,
    out: *mut f32,
    (h, w): (usize, usize),
    oy: usize,
    bias: &[S::V; NP],
    relu: bool,
    acc: &[S::V; NP],
) {
    let (l, hw) = (S::LANES, h * w);
    for (p, (a, b)) in acc.iter().zip(bias).enumerate() {
        let y = s.add(*a, *b);
        let y = if relu { s.max(y, s.zero()) } else { y };
        // SAFETY: row oy < h of plane p < NP, inside the caller's planes.
        let at = unsafe { out.add(p * hw + oy * w) };
        if oy * w + l <= hw {
            // SAFETY: the vector ends inside plane p (oy*w + l <= h*w), the caller's.
            unsafe { s.store(at, y) };
        } else {
            let mut tmp = [0.0f32; MAX_LANES];
            // SAFETY: tmp holds MAX_LANES >= l floats.
            unsafe { s.store(tmp.as_mut_ptr(), y) };
            // SAFETY: row oy of plane p holds w floats, the caller's, and tmp is a local.
            unsafe { std::ptr::copy_nonoverlapping(tmp.as_ptr(), at, w) };
        }
    }
}

/// The vectors `acc` of an output row starting at `row`, at columns `st`: plus the bias,
/// through the ReLU if `relu`. The row's pointer comes from a plane checked once
/// (`SharedMut::rows`), so no store pays a bounds check of its own.
///
/// # Safety
/// The row's first `st[v] + LANES` floats must be writable and this task's alone.
#[inline(always)]
unsafe fn store_row<S: DirectIsa, const NV: usize>(
    s: S,
    row: *mut f32,
    st: &[usize; NV],
    bias: S::V,
    relu: bool,
    acc: &[S::V; NV],
) {
    for (a, &st) in acc.iter().zip(st) {
        let y = s.add(*a, bias);
        let y = if relu { s.max(y, s.zero()) } else { y };
        // SAFETY: the caller's guarantee.
        unsafe { s.store(row.add(st), y) };
    }
}

/// Input row `iy` of plane `xp` (`w` wide) for a strip of [`FwdJob::rows_3x3`] at columns
/// `st`: each loaded vector feeds row `iy + 1` (`acc[2]`, tap `ky = 0`), row `iy` (`acc[1]`,
/// `ky = 1`) and row `iy - 1` (`acc[0]`, `ky = 2`); `masks` are the strip's first and last
/// loads' (see `strip_3x3`).
///
/// # Safety
/// `iy` must be a row of the plane, and `st` and `masks` as `strip_3x3` builds them.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn row_3x3<S: DirectIsa, const NV: usize>(
    s: S,
    xp: *const f32,
    w: usize,
    iy: usize,
    st: &[usize; NV],
    masks: [S::V; 2],
    wv: &[S::V; 9],
    acc: [&mut [S::V; NV]; 3],
) {
    let [a, b, c] = acc;
    let p = xp.wrapping_add(iy * w);
    for kx in 0..3 {
        let (w0, w1, w2) = (wv[kx], wv[3 + kx], wv[6 + kx]);
        for v in 0..NV {
            let at = p.wrapping_add(st[v] + kx).wrapping_sub(1);
            // SAFETY: row iy is in the plane (the caller's guarantee); the lanes read are
            // columns st[v] + kx - 1 + i of it, inside 0..w for every lane the masks keep,
            // and for every lane of the plain loads: st[v] >= 1 for any but the first vector
            // (st[v] >= l, or a shifted last one at w - l >= 1, since w > l there), and
            // st[v] + l < w for any but the last.
            let xv = unsafe {
                if v == 0 && kx == 0 {
                    s.load_masked(at, masks[0])
                } else if v == NV - 1 && kx == 2 {
                    s.load_masked(at, masks[1])
                } else {
                    s.load(at)
                }
            };
            c[v] = s.mul_add(w0, xv, c[v]);
            b[v] = s.mul_add(w1, xv, b[v]);
            a[v] = s.mul_add(w2, xv, a[v]);
        }
    }
}

/// `grad_y` plane `src` (`oh x ow`) copied into `dst` (`oh x span`, `span` whole vectors
/// covering `ow`), zero past `ow` in each row. Called inside a dispatched job, so the copies
/// are inlined vector moves instead of a `memcpy` and a `memset` call per row (a third of a
/// 28x28 depthwise backward-weight pass).
#[inline(always)]
fn pad_rows<S: DirectIsa>(s: S, g: &ConvGeom, src: &[f32], span: usize, dst: &mut [f32]) {
    let (l, ow) = (S::LANES, g.ow);
    assert!(
        src.len() == g.oh * ow
            && dst.len() == g.oh * span
            && span.is_multiple_of(l)
            && span >= ow.max(l)
            && span - l < ow.max(1),
        "depthwise grad_y rows"
    );
    for oy in 0..g.oh {
        let (from, to) = (src[oy * ow..].as_ptr(), dst[oy * span..].as_mut_ptr());
        // SAFETY: the zero vector fills to[span - l..span], in row oy of dst (span >= l);
        // it covers ow..span (span - l < ow), and the copies then rewrite 0..ow: each reads
        // from[c..c + l] and writes to[c..c + l] with c + l <= ow <= span (row oy of src and
        // dst), or one float at a time below ow.
        unsafe {
            s.store(to.add(span - l), s.zero());
            if ow >= l {
                for c in (0..ow).step_by(l) {
                    let c = c.min(ow - l);
                    s.store(to.add(c), s.load(from.add(c)));
                }
            } else {
                for c in 0..ow {
                    *to.add(c) = *from.add(c);
                }
            }
        }
    }
}

fn backward_data<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    dy: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    dx: &mut [f32],
) {
    if let Some(gf) = gather_view(g) {
        // Stride 1: grad_x is the forward conv of grad_y with the flipped filters.
        let taps = g.kh * g.kw;
        with_scratch(g.w_len, |flipped| {
            for (f, w) in flipped
                .chunks_exact_mut(taps)
                .zip(weight.chunks_exact(taps))
            {
                for (fi, wi) in f.iter_mut().zip(w.iter().rev()) {
                    *fi = *wi;
                }
            }
            forward(s, &gf, dy, flipped, bias, false, dx);
        });
        return;
    }
    let l = S::LANES;
    let lay = Layout::new(g, g.ow.div_ceil(l) * l);
    let taps = g.kh * g.kw;
    let out = SharedMut::new(dx);
    for_each_task(g.n * g.c_in, |t| {
        let c = t % g.c_in;
        let plane = &dy[t * g.oh * g.ow..][..g.oh * g.ow];
        with_scratch(lay.len() + g.oh * lay.span, |buf| {
            let (q, dyp) = buf.split_at_mut(lay.len());
            q.fill(0.0);
            let mut job = BwdDataJob {
                g,
                lay: &lay,
                q,
                dy_src: plane,
                dy: dyp,
                w: &weight[c * taps..][..taps],
            };
            s.dispatch(&mut job);
            // SAFETY: plane t of grad_x belongs to this task alone, and lies in the buffer
            // (t < n*c_in, so (t+1)*h*w <= x_len = dx.len()).
            let dst = unsafe { out.slice_mut(t * g.h * g.w, g.h * g.w) };
            lay.crop(g, q, bias.map_or(0.0, |b| b[c]), dst);
        });
    });
}

/// For stride 1 with padding no wider than the dilated kernel, backward-data as a forward
/// conv: input `grad_y` (`oh x ow`), output `grad_x` (`h x w`), padding `(k-1)*d - pad` on
/// each side, the filters flipped in both axes (`None` otherwise).
fn gather_view(g: &ConvGeom) -> Option<ConvGeom> {
    if g.sh != 1 || g.sw != 1 {
        return None;
    }
    let (eh, ew) = ((g.kh - 1) * g.dh, (g.kw - 1) * g.dw);
    // Stride 1: oh = h + pad_t + pad_b - eh, so pad_b = oh + eh - h - pad_t.
    let pad_b = (g.oh + eh).checked_sub(g.h + g.pad_t)?;
    let pad_r = (g.ow + ew).checked_sub(g.w + g.pad_l)?;
    let p = ConvParams {
        n: g.n,
        c_in: g.c_out,
        h: g.oh,
        w: g.ow,
        c_out: g.c_in,
        kh: g.kh,
        kw: g.kw,
        stride: [1, 1],
        padding: [
            eh.checked_sub(g.pad_t)?,
            eh.checked_sub(pad_b)?,
            ew.checked_sub(g.pad_l)?,
            ew.checked_sub(pad_r)?,
        ],
        dilation: [g.dh, g.dw],
        groups: g.g,
        transposed: false,
        output_padding: [0, 0],
    };
    let gf = p.validate().ok()?;
    (gf.oh == g.h && gf.ow == g.w && gf.oh > 0 && gf.ow > 0).then_some(gf)
}

struct BwdDataJob<'a> {
    g: &'a ConvGeom,
    lay: &'a Layout,
    q: &'a mut [f32],
    /// The channel's `grad_y` plane, and its copy in rows of `span` (filled by `run`).
    dy_src: &'a [f32],
    dy: &'a mut [f32],
    w: &'a [f32],
}

impl SimdJob for BwdDataJob<'_> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        let (g, lay, l) = (self.g, self.lay, S::LANES);
        pad_rows(s, g, self.dy_src, lay.span, self.dy);
        assert!(
            lay.end(g, g.oh - 1) <= self.q.len(),
            "depthwise target out of range"
        );
        assert!(self.dy.len() == g.oh * lay.span && self.w.len() == g.kh * g.kw);
        let q = self.q.as_mut_ptr();
        let dy = self.dy.as_ptr();
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let wv = s.splat(self.w[ky * g.kw + kx]);
                for oy in 0..g.oh {
                    let base = lay.tap(g, oy, ky, kx);
                    for v in (0..lay.span).step_by(l) {
                        // SAFETY: oy*span + v + l <= oh*span = dy.len(); base + v + l <=
                        // lay.end(oy) <= q.len() (asserted above).
                        unsafe {
                            let d = s.load(dy.add(oy * lay.span + v));
                            let p = q.add(base + v);
                            s.store(p, s.mul_add(wv, d, s.load(p)));
                        }
                    }
                }
            }
        }
    }
}

fn backward_weight<S: DirectIsa>(s: S, g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    // With AVX2's masked loads (masks built once per column) the in-place form leads up to
    // 28x28 planes and the copying form beyond (Zen 3: 1.3x at 28x28, 2.4x at 14x14, 4.8x at
    // 7x7; 0.86x at 56x56, 0.77x at 112x112).
    let masked = S::MASKED_LOADS || (S::HOISTED_MASK_LOADS && g.ow <= 4 * S::LANES);
    if masked && g.sh == 1 && g.sw == 1 && g.kh == 3 && g.kw == 3 {
        return backward_weight_in_place(s, g, x, dy, dw);
    }
    let l = S::LANES;
    let lay = Layout::new(g, g.ow.div_ceil(l) * l);
    let taps = g.kh * g.kw;
    crate::parallel::for_each_chunk_mut(dw, taps, |c, dw_c| {
        with_scratch(lay.len() + l + g.oh * lay.span + taps * NACC * l, |buf| {
            let (q, rest) = buf.split_at_mut(lay.len() + l);
            let (dyp, acc) = rest.split_at_mut(g.oh * lay.span);
            acc.fill(0.0);
            for b in 0..g.n {
                let t = b * g.c_in + c;
                let mut job = BwdWeightJob {
                    g,
                    lay: &lay,
                    plane: &x[t * g.h * g.w..][..g.h * g.w],
                    q,
                    borders: b == 0,
                    dy_src: &dy[t * g.oh * g.ow..][..g.oh * g.ow],
                    dy: &mut *dyp,
                    acc,
                };
                s.dispatch(&mut job);
            }
            for (d, a) in dw_c.iter_mut().zip(acc.chunks_exact(NACC * l)) {
                *d = lane_sum(a, l);
            }
        });
    });
}

/// Backward-weight of a 3x3 stride-1 layer (any padding and dilation), reading `x` and
/// `grad_y` where they lie: no padded copies, no accumulators in memory. A tap's pixel
/// vectors read `x` with [`F32Simd::load_range`] (AVX-512) or [`F32Simd::load_masked`]
/// (AVX2), whose lanes outside the row (the padding) and past `ow` come out zero; rows
/// outside `x` are skipped. Tasks are runs of
/// channels, each channel summed by one task in a fixed order.
///
/// (The copying form spends as long filling its padded planes and summing its accumulators
/// as on its FMAs at 28x28: 1.7x slower on MobileNet's 256-channel layer with AVX-512. Only
/// ISAs with native masked loads take this form: on AVX2, `vmaskmovps` with its mask built
/// per load ran 0.6x the copying form; with the masks built once per vector column
/// ([`F32Simd::load_masked`]) it leads on planes up to 32 wide.)
fn backward_weight_in_place<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
) {
    let per_task = planes_per_task(g.c_in);
    crate::parallel::for_each_chunk_mut(dw, 9 * per_task, |t, dw_t| {
        let mut job = BwdWeightInPlaceJob {
            g,
            x,
            dy,
            c0: t * per_task,
            dw: dw_t,
        };
        s.dispatch(&mut job);
    });
}

struct BwdWeightInPlaceJob<'a> {
    g: &'a ConvGeom,
    x: &'a [f32],
    dy: &'a [f32],
    /// The first channel of this task.
    c0: usize,
    /// Its channels' `[3][3]` filters' gradients.
    dw: &'a mut [f32],
}

impl SimdJob for BwdWeightInPlaceJob<'_> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        let (g, l) = (self.g, S::LANES);
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        assert!(
            g.sh == 1 && g.sw == 1 && g.kh == 3 && g.kw == 3,
            "depthwise in-place geometry"
        );
        assert!(
            self.x.len() == g.n * g.c_in * hw
                && self.dy.len() == g.n * g.c_in * ohw
                && self.dw.len().is_multiple_of(9)
                && self.c0 + self.dw.len() / 9 <= g.c_in,
            "depthwise in-place operands"
        );
        let mut lanes = [0.0f32; MAX_LANES];
        for (k, dw_c) in self.dw.chunks_exact_mut(9).enumerate() {
            let c = self.c0 + k;
            let mut acc = [[s.zero(); 3]; 3];
            for b in 0..g.n {
                let t = b * g.c_in + c;
                let xp = self.x[t * hw..][..hw].as_ptr();
                let dyp = self.dy[t * ohw..][..ohw].as_ptr();
                for v0 in (0..g.ow).step_by(l) {
                    let n = l.min(g.ow - v0);
                    // Per tap column: the x column of lane 0 (`shift`), and the lanes
                    // lo..hi whose column lies inside the row (and below ow).
                    let cols: [(isize, usize, usize); 3] = std::array::from_fn(|kx| {
                        let shift = (v0 + kx * g.dw) as isize - g.pad_l as isize;
                        let lo = (-shift).clamp(0, n as isize);
                        let hi = (g.w as isize - shift).clamp(lo, n as isize);
                        (shift, lo as usize, hi as usize)
                    });
                    let col = BwColumn {
                        xp,
                        dp: dyp.wrapping_add(v0),
                        cols,
                        n,
                        _isa: std::marker::PhantomData,
                    };
                    // Whole vectors inside the row for every tap: plain loads, and registers
                    // to spare for the nine accumulators.
                    if n == l && cols.iter().all(|&(_, lo, hi)| lo == 0 && hi == l) {
                        // SAFETY: xp and dp are this task's planes of x and grad_y, cols
                        // and n the column's (see BwColumn).
                        unsafe { col.run::<false>(s, g, &mut acc) };
                    } else {
                        // SAFETY: as above.
                        unsafe { col.run::<true>(s, g, &mut acc) };
                    }
                }
            }
            for (d, a) in dw_c.iter_mut().zip(acc.iter().flatten()) {
                // SAFETY: lanes holds MAX_LANES >= l floats.
                unsafe { s.store(lanes.as_mut_ptr(), *a) };
                *d = lane_sum(&lanes[..l], l);
            }
        }
    }
}

/// One vector column of a plane in the in-place 3x3 backward-weight: `n` output pixels
/// from column `v0`, and each tap column's x columns. The loop walks the input rows:
/// each row's three tap vectors are loaded once and meet the grad_y rows `iy + pad_t -
/// ky*dh` of the three filter rows, 6 loads for 9 FMAs where a walk over the output rows
/// loads every x vector three times (10 loads for 9 FMAs): 1.2-1.35x on MobileNet's 28x28
/// and 14x14 planes (AVX2, Zen 3). For each tap the products are summed in order of output
/// rows either way. Columns whose loads all lie inside the rows take plain loads.
struct BwColumn<S: DirectIsa> {
    /// x plane.
    xp: *const f32,
    /// grad_y plane from column v0.
    dp: *const f32,
    /// Per tap column: the x column of lane 0 and the lanes lo..hi inside the row.
    cols: [(isize, usize, usize); 3],
    /// Output pixels (lanes of grad_y).
    n: usize,
    _isa: std::marker::PhantomData<S>,
}

impl<S: DirectIsa> BwColumn<S> {
    /// Adds the column's products into `acc[ky][kx]`; `MASKED: false` reads whole vectors.
    ///
    /// # Safety
    /// `xp` must be a plane of `h x w` floats and `dp` a column `v0` of an `oh x ow` plane
    /// with `v0 + n <= ow`; for every tap column, lanes lo..hi at the shift must lie in
    /// 0..w, and lo..hi must be 0..l and n = l when `!MASKED`.
    #[inline(always)]
    unsafe fn run<const MASKED: bool>(&self, s: S, g: &ConvGeom, acc: &mut [[S::V; 3]; 3]) {
        // The masks, built here so that the unmasked loop has no use for their registers
        // (zero vectors, unused, where load_range is one masked load). Loops and functions,
        // not closures: a closure not inlined would lose the ISA's features.
        let masked = MASKED && S::HOISTED_MASK_LOADS;
        let mut masks = [s.zero(); 3];
        for (m, &(_, lo, hi)) in masks.iter_mut().zip(&self.cols) {
            if masked {
                *m = s.range_mask(lo, hi);
            }
        }
        let (d_lo, d_hi) = (0, self.n);
        let d_mask = if masked {
            s.range_mask(0, self.n)
        } else {
            s.zero()
        };
        for iy in 0..g.h {
            let row = self.xp.wrapping_add(iy * g.w);
            let mut xv = [s.zero(); 3];
            for (x, (&(shift, lo, hi), &m)) in xv.iter_mut().zip(self.cols.iter().zip(&masks)) {
                // SAFETY: lanes lo..hi at the shift lie in row iy of the plane (the caller's
                // guarantee), all l of them when !MASKED.
                *x = unsafe { load_lanes::<S, MASKED>(s, row.wrapping_offset(shift), (lo, hi), m) };
            }
            for (ky, acc_y) in acc.iter_mut().enumerate() {
                let Some(oy) = (iy + g.pad_t)
                    .checked_sub(ky * g.dh)
                    .filter(|&oy| oy < g.oh)
                else {
                    continue;
                };
                // SAFETY: lanes 0..n of grad_y row oy < oh from v0 (v0 + n <= ow), all l of
                // them when !MASKED (the caller's guarantee).
                let d = unsafe {
                    load_lanes::<S, MASKED>(
                        s,
                        self.dp.wrapping_add(oy * g.ow),
                        (d_lo, d_hi),
                        d_mask,
                    )
                };
                for (a, x) in acc_y.iter_mut().zip(&xv) {
                    *a = s.mul_add(d, *x, *a);
                }
            }
        }
    }
}

/// Lanes `lo..hi` of `p` (the others zero) when `MASKED`, with `mask` (`range_mask(lo, hi)`)
/// where masked loads take a mask built once; all lanes otherwise.
///
/// # Safety
/// Lanes `lo..hi` of `p` must be readable, all `LANES` of them when `!MASKED`.
#[inline(always)]
unsafe fn load_lanes<S: DirectIsa, const MASKED: bool>(
    s: S,
    p: *const f32,
    (lo, hi): (usize, usize),
    mask: S::V,
) -> S::V {
    // SAFETY: the caller's guarantee.
    unsafe {
        if !MASKED {
            s.load(p)
        } else if S::HOISTED_MASK_LOADS {
            s.load_masked(p, mask)
        } else {
            s.load_range(p, lo, hi)
        }
    }
}

/// The sum of a tap's accumulators (`[NACC][LANES]`, or `[1][LANES]`) in a fixed order: the
/// accumulators lane by lane, then the lanes pairwise. (A left-to-right sum is one chain of
/// `NACC * LANES` dependent adds per tap, which cost a 28x28 backward-weight pass a sixth of
/// its time.)
fn lane_sum(a: &[f32], l: usize) -> f32 {
    assert!(l.is_power_of_two() && l <= MAX_LANES && a.len().is_multiple_of(l));
    let mut lanes = [0.0f32; MAX_LANES];
    for acc in a.chunks_exact(l) {
        for (s, v) in lanes.iter_mut().zip(acc) {
            *s += v;
        }
    }
    let mut n = l;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            lanes[i] += lanes[i + n];
        }
    }
    lanes[0]
}

struct BwdWeightJob<'a> {
    g: &'a ConvGeom,
    lay: &'a Layout,
    /// The channel's input plane, and its padded copy (filled by `run`).
    plane: &'a [f32],
    q: &'a mut [f32],
    /// Whether `q` needs its zeros (the first image; see `Layout::fill`).
    borders: bool,
    /// The channel's `grad_y` plane, and its copy in rows of `span` (filled by `run`).
    dy_src: &'a [f32],
    dy: &'a mut [f32],
    /// `[tap][NACC][LANES]` running sums.
    acc: &'a mut [f32],
}

impl SimdJob for BwdWeightJob<'_> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        let (g, lay, l) = (self.g, self.lay, S::LANES);
        lay.fill(s, g, self.plane, self.q, self.borders);
        pad_rows(s, g, self.dy_src, lay.span, self.dy);
        assert!(
            lay.end(g, g.oh - 1) <= self.q.len(),
            "depthwise source out of range"
        );
        assert!(self.dy.len() == g.oh * lay.span);
        assert!(self.acc.len() == g.kh * g.kw * NACC * l);
        if g.kh * g.kw == 9 {
            return self.taps_in_registers::<S, 9>(s);
        }
        let q = self.q.as_ptr();
        let dy = self.dy.as_ptr();
        let vecs = lay.span / l;
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let tap = ky * g.kw + kx;
                let sums = &mut self.acc[tap * NACC * l..][..NACC * l];
                // SAFETY: sums holds NACC*l floats.
                let mut a: [S::V; NACC] =
                    std::array::from_fn(|i| unsafe { s.load(sums.as_ptr().add(i * l)) });
                // Each row's pixel vectors in groups of NACC, one per accumulator; a row's
                // last partial group goes to the first accumulators (a fixed order).
                for oy in 0..g.oh {
                    let base = lay.tap(g, oy, ky, kx);
                    let row = oy * lay.span;
                    for v0 in (0..vecs).step_by(NACC) {
                        for (i, ai) in a.iter_mut().enumerate().take(vecs - v0) {
                            let v = (v0 + i) * l;
                            // SAFETY: v < vecs*l = span, so row + v + l <= oh*span = dy.len()
                            // and base + v + l <= lay.end(oy) <= q.len() (asserted above).
                            unsafe {
                                let d = s.load(dy.add(row + v));
                                let xv = s.load(q.add(base + v));
                                *ai = s.mul_add(d, xv, *ai);
                            }
                        }
                    }
                }
                for (i, ai) in a.iter().enumerate() {
                    // SAFETY: sums holds NACC*l floats.
                    unsafe { s.store(sums.as_mut_ptr().add(i * l), *ai) };
                }
            }
        }
    }
}

impl BwdWeightJob<'_> {
    /// The pass for `T` taps (3x3: 9) with one accumulator per tap in registers: each
    /// `dy` vector is loaded once for all taps, and the `T` independent sums cover the FMA
    /// latency that the per-tap loop (2 pixel vectors per row at 28x28: 2 chains) waits on.
    /// Sums land in the first accumulator of each tap's `[NACC][LANES]`; the plane has been
    /// filled and the bounds asserted by `run`.
    #[inline(always)]
    fn taps_in_registers<S: DirectIsa, const T: usize>(&mut self, s: S) {
        let (g, lay, l) = (self.g, self.lay, S::LANES);
        debug_assert_eq!(g.kh * g.kw, T);
        let q = self.q.as_ptr();
        let dy = self.dy.as_ptr();
        let mut offs = [0usize; T];
        offs.copy_from_slice(&lay.tap_off[..T]);
        let mut a = [s.zero(); T];
        for oy in 0..g.oh {
            let rowx = oy * g.sh * lay.cols;
            let row = oy * lay.span;
            for v in (0..lay.span).step_by(l) {
                // SAFETY: v + l <= span, so row + v + l <= oh*span = dy.len(); tap t reads
                // tap_off[t] + oy*sh*cols + v + l <= lay.end(oy) <= q.len() (asserted in run).
                unsafe {
                    let d = s.load(dy.add(row + v));
                    for (at, &o) in a.iter_mut().zip(&offs) {
                        *at = s.mul_add(d, s.load(q.add(o + rowx + v)), *at);
                    }
                }
            }
        }
        for (t, at) in a.iter().enumerate() {
            let sums = &mut self.acc[t * NACC * l..][..l];
            // SAFETY: sums holds l floats.
            unsafe { s.store(sums.as_mut_ptr(), s.add(s.load(sums.as_ptr()), *at)) };
        }
    }
}
