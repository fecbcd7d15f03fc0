//! Hand-vectorised direct convolution, every geometry and pass, one generic body per pass
//! over the microkernel of [`tile`], instantiated per ISA in `avx2fma.rs`, `avx512f.rs`,
//! `portable.rs` and `scalar.rs`.
//!
//! All three passes are the same computation with different operands (see `tile.rs`):
//!
//! ```text
//! pass             rows (tile height)     vector operand (NR channels)     broadcast operand
//! forward          output pixels          weights [c_out blk][ic,ky,kx]    padded x
//! backward_data    input pixels of one    weights [c_in blk][oc,ky,kx]     padded grad_y
//!                  stride phase           (the taps of that phase)
//! backward_weight  weight taps (ic,ky,kx) grad_y [c_out blk][b, pixel]     padded x
//!   1x1 expansion  output channels        x [c_in blk][b, pixel]           grad_y
//! ```
//!
//! (The last row is [`backward_weight_swapped`]: 1x1 unpadded layers with fewer input than
//! output channels, where packing the input moves less than packing `grad_y`.)
//!
//! Backward-data is split into the `sh*sw` stride phases (sub-pixel decomposition): the
//! input pixels `iy = ry + sh*a` receive only the taps `ky` with
//! `(ry + pad_t - ky*dh) % sh == 0`, from `grad_y` rows `a + (ry + pad_t - ky*dh)/sh`, so
//! each phase is a stride-1 correlation with no wasted multiply.
//!
//! Tasks are (group, channel block, pixel chunk) for the data passes (a forward pass that
//! packs its own weights block by block: (group, channel block), over every chunk) and
//! (group, channel block, tap chunk) for backward-weight ((group, output-channel chunk,
//! input-channel block) swapped); each output is computed by one task in one fixed order,
//! so results do not depend on the thread count.

#[cfg(target_arch = "x86_64")]
mod avx2fma;
#[cfg(target_arch = "x86_64")]
mod avx512f;
mod columns;
mod depthwise;
#[cfg(feature = "testing")]
mod emulated;
mod pack;
mod pointwise;
mod portable;
mod rows;
mod rows_banded;
mod rows_weight;
mod scalar;
mod tile;

pub(crate) use depthwise::DirectDepthwise;
#[cfg(feature = "testing")]
pub(crate) use emulated::{Emu16, Emu16Masked, OddScalar};
pub(crate) use pack::{Entries, pack_blocks};
pub(crate) use rows::{
    DirectRows, backward_data_fits as rows_backward_data_fits, forward_fits as rows_forward_fits,
};
pub(crate) use rows_weight::fits as rows_backward_weight_fits;
pub(crate) use tile::{Block, Out, Red};

use crate::parallel::{
    SharedMut, for_each_chunk_mut, for_each_task, threads, with_index_scratch, with_scratch,
};
use crate::params::ConvGeom;
use crate::registry::ConvKernel;
use crate::simd::{F32Simd, LINE_FLOATS, prefetch_l2};
use crate::{Algorithm, Isa, Pass};
use pack::{PadSplit, blocks_len, pack_block, pad_planes, padded_len};
use std::ops::Range;

/// Output rows per task (rounded up to whole register tiles).
const ROWS_PER_TASK: usize = 192;
/// Largest `LANES` of any ISA (the epilogue reads whole blocks of this many rows;
/// backward-weight's lane sums).
const MAX_LANES: usize = 16;
/// Reduction steps per pass over a task's rows, by default (about: [`run_chunked`] shares a
/// reduction out in chunks of `0.75..=1.25` times [`DirectIsa::RED_CHUNK`], see
/// [`red_chunks`], and the column form cuts at exactly that; the fused backward-weight
/// packing cuts at exactly this on every ISA): the vector operand of one chunk
/// (`RED_CHUNK * NR` floats, 8 KiB at NR = 16) stays in L1 beside the task's input rows
/// while every tile of the task consumes it; partial sums wait in the task's buffer in
/// vector form. 128 measured best of {64, 96, 128, 256} on ResNet-50 conv2/conv4/conv5 and
/// a CIFAR layer (best-of-3 minimum times, AVX2).
const RED_CHUNK: usize = 128;
/// Floats of a block's packed vector operand beyond which backward-weight packs it chunk
/// by chunk inside its tasks, where its taps allow (256 KiB: a quarter of Zen 5's and
/// Sapphire Rapids' L2 and beyond the others' L2 share, beside the input rows).
const FUSE_PACK_FLOATS: usize = 1 << 16;

/// An ISA the direct kernel is instantiated on: its tiles and its `#[target_feature]` entry.
///
/// # Safety
/// For implementors: `run_to` must run [`tile::run_block`] (or [`tile::run_block_tail`])
/// with the tile of `TILES[wide]` (and `run` keep its default), and a value of `Self` may
/// exist only on a CPU with the ISA.
pub(crate) unsafe trait DirectIsa: F32Simd {
    /// Kernel name, `direct_f32_any_{UR}x{NR}_{isa}` of the wide tile.
    const NAME: &'static str;
    /// The tier.
    const ISA: Isa;
    /// `(UR, NB)` of the narrow tile (`NB = 1`, for few channels) and the wide tile.
    const TILES: [(usize, usize); 2];
    /// Reduction steps per chunk of [`run_chunked`] (about; see [`red_chunks`]): the
    /// default keeps a chunk's vector operand in L1; AVX-512 streams it from L2 instead
    /// (see its implementation).
    const RED_CHUNK: usize = RED_CHUNK;
    /// Name of the pixel-vectorised kernel (`rows.rs`) on this ISA.
    const ROWS_NAME: &'static str;
    /// Name of the depthwise kernel (`depthwise.rs`) on this ISA.
    const DW_NAME: &'static str;
    /// Names of the Winograd F(2,3), F(4,3), F(6,3) kernels built on this ISA's tile.
    const WINOGRAD_NAMES: [&'static str; 3];
    /// The proof value, when this CPU has the ISA.
    fn detect() -> Option<Self>;
    /// Runs `b` into `out` with tile `TILES[wide as usize]`.
    fn run_to(self, b: &Block<'_>, out: Out<'_>, wide: bool);
    /// Runs `b` into `buf` (rows of `NR` floats) with tile `TILES[wide as usize]`.
    fn run(self, b: &Block<'_>, buf: &mut [f32], wide: bool) {
        self.run_to(b, Out::Buf(buf), wide)
    }
    /// Runs `job` inside a function compiled for this ISA, so its `#[inline(always)]` body
    /// (written once, generic over the ISA) gets the ISA's instructions (pulp's `dispatch`).
    fn dispatch<J: SimdJob>(self, job: &mut J);
}

/// A piece of ISA-generic work for [`DirectIsa::dispatch`]; implement `run` with
/// `#[inline(always)]` so it is compiled inside the ISA's `#[target_feature]` function.
pub(crate) trait SimdJob {
    /// Does the work on ISA `S`.
    fn run<S: DirectIsa>(&mut self, s: S);
}

/// The tile for `channels` in the vectorised dimension: `(wide, UR, NR)`; the narrow tile
/// when one vector covers the channels.
pub(crate) fn tile_for<S: DirectIsa>(channels: usize) -> (bool, usize, usize) {
    let wide = channels > S::LANES;
    let (ur, nb) = S::TILES[usize::from(wide)];
    (wide, ur, nb * S::LANES)
}

/// The chunks `(r0, r1)` a reduction of `len` steps is cut into, for chunks of about `chunk`
/// steps ([`DirectIsa::RED_CHUNK`] in [`run_chunked`]; the pointwise form's column
/// chunks): `len / chunk` rounded to the nearest whole number (at least one; none for an
/// empty reduction), the steps then shared out evenly, so no chunk is a sliver: one chunk
/// below `1.5 * chunk` steps, else chunks of `0.75 * chunk` to `1.25 * chunk`.
///
/// Each chunk costs every tile of the task a load and a store of its accumulators and a loop
/// start; cut every 128 steps, the 7x7 stem's 147 made a second chunk of 19 (and LeNet's C3,
/// 150 steps, one of 22) that paid those for a sixth of the FMAs. One chunk of 147 and of
/// 150: stem forward 1.03x, LeNet C3 forward 1.04-1.05x on AVX-512 (1.04x on AVX2);
/// ResNet-50's and CIFAR's 3x3 layers (576 steps: four chunks of 144, not 4 x 128 + 64) and
/// every backward-data timed within 1%. In the pointwise form (128-step column chunks on
/// AVX-512, 256 on AVX2), DenseNet-121's 1x1 layers over 160 channels at 56x56 ran 1.04x
/// forward, over 288 and 416 at 28x28 1.02x and 1.01x (AVX2: 288 1.04x), ResNet-50's
/// (whole chunks already) and backward-data's (128 output channels) 1.00x. Sapphire
/// Rapids, 1 thread, medians of 150-300 paired calls, an A/A within 0.5%.
pub(super) fn red_chunks(
    len: usize,
    chunk: usize,
) -> impl DoubleEndedIterator<Item = (usize, usize)> {
    let chunk = chunk.max(1);
    let chunks = match len {
        0 => 0,
        _ => (len / chunk + usize::from(2 * (len % chunk) >= chunk)).max(1),
    };
    // The first `len % chunks` chunks one step longer; no bound exceeds `len`.
    let (q, rem) = (
        len.checked_div(chunks).unwrap_or(0),
        len.checked_rem(chunks).unwrap_or(0),
    );
    let start = move |i: usize| i * q + i.min(rem);
    (0..chunks).map(move |i| (start(i), start(i + 1)))
}

/// Items `(first, count)` of part `i` when `len` items, in whole units of `unit` (the last
/// perhaps partial), are spread over `parts` parts as evenly as they go: part `i` starts
/// at unit `i * units / parts` rounded down, so parts differ by at most a unit and the
/// longer ones are spaced out along the range rather than first. Rayon gives each of two
/// threads half of a task range (and halves of halves to more), and spaced out, every
/// such half holds its share of the longer parts. Computed in `u128`, so no product
/// overflows; `parts` and `unit` at least 1.
fn spread_units(len: usize, unit: usize, parts: usize, i: usize) -> (usize, usize) {
    let units = len.div_ceil(unit) as u128;
    let start = |i: usize| ((i as u128 * units / parts as u128) as usize * unit).min(len);
    (start(i), start(i + 1) - start(i))
}

/// Runs `whole` (a task's rows over the whole reduction) in the chunks of [`red_chunks`].
pub(crate) fn run_chunked<S: DirectIsa>(
    s: S,
    wide: bool,
    whole: &Block<'_>,
    nr: usize,
    buf: &mut [f32],
) {
    if whole.red.is_empty() {
        buf[..whole.rows.len() * nr].fill(0.0);
        return;
    }
    for (r0, r1) in red_chunks(whole.red.len(), S::RED_CHUNK) {
        let block = Block {
            src: &whole.src[whole.red.src_shift(r0)..],
            red: whole.red.slice(r0, r1),
            vecs: &whole.vecs[r0 * whole.vstride..(r1 - 1) * whole.vstride + nr],
            accumulate: r0 > 0,
            ..*whole
        };
        s.run(&block, buf, wide);
    }
}

/// Where a task's buffer (`[row][NR]`) goes: `dst[base + ch*ch_stride + offs[i]]`.
struct Scatter<'a> {
    dst: SharedMut,
    base: usize,
    ch_stride: usize,
    offs: &'a [usize],
    n_ch: usize,
    bias: Option<&'a [f32]>,
    relu: bool,
}

impl Scatter<'_> {
    /// Writes `buf` with the epilogue (bias, ReLU), on ISA `s`.
    ///
    /// # Safety
    /// No other thread may access the destination elements during the call; they must lie
    /// in the buffer `dst` was made from (checked).
    unsafe fn write<S: DirectIsa>(&self, s: S, buf: &[f32], nr: usize) {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.write_phases(s, &[buf], nr) }
    }

    /// Writes two stride phases side by side, with the epilogue: row `i` of `buf0` to
    /// `offs[i]` and row `i` of `buf1` to `offs[i] + 1` ([`paired_phases`]: the pixels of
    /// column phases 0 and 1 of a stride of 2). Runs of `LANES / 2` offsets two apart
    /// interleave into whole vectors of consecutive pixels, transposed in registers.
    ///
    /// # Safety
    /// As for [`Scatter::write`], for the elements at `offs[i]` and `offs[i] + 1`.
    unsafe fn write_pair<S: DirectIsa>(&self, s: S, buf0: &[f32], buf1: &[f32], nr: usize) {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.write_phases(s, &[buf0, buf1], nr) }
    }

    /// [`Scatter::write`] (one buffer) or [`Scatter::write_pair`] (two): checks the
    /// buffers, bias and destination range, then runs the body compiled for `S`.
    ///
    /// # Safety
    /// As for those two.
    unsafe fn write_phases<S: DirectIsa>(&self, s: S, bufs: &[&[f32]], nr: usize) {
        assert!(matches!(bufs.len(), 1 | 2), "one or two phases");
        let Some(&max_off) = self.offs.iter().max() else {
            return;
        };
        if self.n_ch == 0 {
            return;
        }
        assert!(
            bufs.iter().all(|b| b.len() >= self.offs.len() * nr),
            "scatter buffer too short"
        );
        assert!(self.n_ch <= nr, "scatter channels beyond the tile");
        assert!(nr.is_multiple_of(S::LANES), "scatter tile of whole vectors");
        assert!(
            self.bias.is_none_or(|b| b.len() >= self.n_ch),
            "scatter bias"
        );
        let first = self.dst.at(self.base);
        // at() asserts its index <= len: the last element written (at the last channel's
        // max_off + bufs.len() - 1) must exist too.
        let _ = self
            .dst
            .at(self.base + (self.n_ch - 1) * self.ch_stride + max_off + bufs.len());
        struct Job<'a, 'b> {
            sc: &'a Scatter<'b>,
            bufs: &'a [&'a [f32]],
            nr: usize,
            first: *mut f32,
        }
        impl SimdJob for Job<'_, '_> {
            #[inline(always)]
            fn run<S: DirectIsa>(&mut self, s: S) {
                let (sc, first, nr) = (self.sc, self.first, self.nr);
                // SAFETY: the checks above (the caller guarantees exclusive access).
                unsafe {
                    match *self.bufs {
                        [buf] => sc.write_on(s, first, buf, nr),
                        [buf0, buf1] => sc.write_pair_on(s, first, [buf0, buf1], nr),
                        _ => unreachable!("one or two phases (checked)"),
                    }
                }
            }
        }
        s.dispatch(&mut Job {
            sc: self,
            bufs,
            nr,
            first,
        });
    }

    /// Asks for the destination's cache lines (into L2) before the task's tiles run, so
    /// the epilogue's stores find them there instead of each waiting for a line from L3 or
    /// memory (a 1x1 layer writes 4 bytes of output per 64 multiply-adds). `span`: the
    /// floats written from each offset (2 for [`Scatter::write_pair`]).
    fn prefetch(&self, span: usize) {
        let Some(&max_off) = self.offs.iter().max() else {
            return;
        };
        if self.n_ch == 0 {
            return;
        }
        let first = self.dst.at(self.base);
        let _ = self
            .dst
            .at(self.base + (self.n_ch - 1) * self.ch_stride + max_off + span.max(1));
        for ch in 0..self.n_ch {
            // One address per 16 floats written: a cache line of consecutive pixels. In
            // range (checked above), though a prefetch could take any address.
            for &off in self.offs.iter().step_by(16 / span.clamp(1, 16)) {
                prefetch_l2(first.wrapping_add(ch * self.ch_stride + off));
            }
        }
    }

    /// The body of [`Scatter::write`], compiled for `S` (inside its `dispatch`): runs of up
    /// to `LANES` destination pixels a constant stride apart move as `LANES x LANES` blocks
    /// transposed in registers (the tile's buffer is `[row][channel]`, NCHW wants
    /// channel-major): straight to the destination when `LANES` pixels are consecutive,
    /// else spread over the run's pixels ([`F32Simd::transpose_store_spread`]: a stride
    /// phase of backward-data, a task's last rows); a lone pixel, or rows where a block
    /// would read past the buffer, one float at a time.
    ///
    /// # Safety
    /// As for `write`, whose `write_phases` has checked `buf.len() >= offs.len() * nr`,
    /// `n_ch <= nr`, that `nr` is a multiple of `LANES`, the bias length, and that
    /// `first + ch*ch_stride + off` is in `dst` for every `ch < n_ch` and `off` in `offs`.
    #[inline(always)]
    unsafe fn write_on<S: F32Simd>(&self, s: S, first: *mut f32, buf: &[f32], nr: usize) {
        let lanes = S::LANES;
        let rows = self.offs.len();
        let mut i = 0;
        while i < rows {
            // The run from row i: m <= lanes increasing offsets a constant `step` apart,
            // offs[i + l] = offs[i] + l*step.
            let off = self.offs[i];
            let step = self.offs.get(i + 1).map_or(0, |&o| o.saturating_sub(off));
            let mut m = 1;
            while m < lanes.min(rows - i)
                && step > 0
                && self.offs[i + m] > self.offs[i + m - 1]
                && self.offs[i + m] - self.offs[i + m - 1] == step
            {
                m += 1;
            }
            // A block transpose reads `lanes` rows of buf, so it needs them to exist (the
            // callers leave MAX_LANES - 1 rows of slack past their last).
            if lanes > 1 && m >= 2 && (i + lanes) * nr <= buf.len() {
                for c in (0..self.n_ch).step_by(lanes) {
                    let n_out = lanes.min(self.n_ch - c);
                    let bias = self.bias.map(|b| &b[c..]);
                    // SAFETY: reads buf rows i..i+lanes, columns c..c+lanes: c < n_ch <= nr
                    // and nr is a whole number of vectors, so c + lanes <= nr, and
                    // (i + lanes)*nr <= buf.len(). Writes channels c + j < n_ch at pixels
                    // off + l*step = offs[i + l], l < m: in dst (checked in write_phases).
                    unsafe {
                        let src = buf.as_ptr().add(i * nr + c);
                        let to = first.add(c * self.ch_stride + off);
                        if step == 1 && m == lanes {
                            s.transpose_store(src, nr, to, self.ch_stride, bias, n_out, self.relu);
                        } else {
                            s.transpose_store_spread(
                                src,
                                nr,
                                to,
                                self.ch_stride,
                                step,
                                m,
                                bias,
                                n_out,
                                self.relu,
                            );
                        }
                    };
                }
                i += m;
            } else {
                for ch in 0..self.n_ch {
                    let v = buf[i * nr + ch] + self.bias.map_or(0.0, |b| b[ch]);
                    // SAFETY: first + ch*ch_stride + off is in dst (checked in write_phases); the
                    // caller guarantees exclusive access to these elements.
                    unsafe {
                        *first.add(ch * self.ch_stride + off) =
                            if self.relu { v.max(0.0) } else { v }
                    };
                }
                i += 1;
            }
        }
    }

    /// The body of [`Scatter::write_pair`], compiled for `S`.
    ///
    /// # Safety
    /// As for `write_pair`, whose `write_phases` has checked both buffers hold `offs.len()`
    /// rows of `nr` (a multiple of `LANES`) floats, `n_ch <= nr`, the bias length, and that
    /// `first + ch*ch_stride + off + 1` is in `dst` for every `ch < n_ch` and `off` in
    /// `offs`.
    #[inline(always)]
    unsafe fn write_pair_on<S: F32Simd>(
        &self,
        s: S,
        first: *mut f32,
        bufs: [&[f32]; 2],
        nr: usize,
    ) {
        let (lanes, half) = (S::LANES, S::LANES / 2);
        let rows = self.offs.len();
        let epilogue = |v: S::V, ch: usize| {
            let v = match self.bias {
                Some(b) => s.add(v, s.splat(b[ch])),
                None => v,
            };
            if self.relu { s.max(v, s.zero()) } else { v }
        };
        let mut i = 0;
        while i < rows {
            let off = self.offs[i];
            if half == 0 {
                for ch in 0..self.n_ch {
                    for (p, buf) in bufs.iter().enumerate() {
                        let v = buf[i * nr + ch] + self.bias.map_or(0.0, |b| b[ch]);
                        // SAFETY: first + ch*ch_stride + off + p is in dst (checked in
                        // write_phases); the caller guarantees exclusive access.
                        unsafe {
                            *first.add(ch * self.ch_stride + off + p) =
                                if self.relu { v.max(0.0) } else { v }
                        };
                    }
                }
                i += 1;
                continue;
            }
            // The run from row i: m <= half offsets two apart, so 2m consecutive floats.
            let mut m = 1;
            while m < half.min(rows - i) && self.offs[i + m] == off + 2 * m {
                m += 1;
            }
            for c in (0..self.n_ch).step_by(lanes) {
                let n_out = lanes.min(self.n_ch - c);
                // Interleaved rows, the run's last repeated past its end (only 2m lanes
                // are stored).
                let mut ptrs = [std::ptr::null::<f32>(); MAX_LANES];
                for l in 0..half {
                    let at = (i + l.min(m - 1)) * nr + c;
                    ptrs[2 * l] = bufs[0][at..].as_ptr();
                    ptrs[2 * l + 1] = bufs[1][at..].as_ptr();
                }
                let mut cols = [s.zero(); MAX_LANES];
                // SAFETY: each pointer is row i + l (< rows) of a buffer at column c, and
                // c + lanes <= nr (c < n_ch <= nr, nr whole vectors): LANES floats readable.
                unsafe { s.gather_transpose(&ptrs[..lanes], &mut cols[..n_out]) };
                for (j, &col) in cols[..n_out].iter().enumerate() {
                    let v = epilogue(col, c + j);
                    // SAFETY: writes channel c + j < n_ch at off + k for k < 2m, that is
                    // offs[i + k/2] + k%2, both in dst (checked in write_phases).
                    unsafe {
                        let p = first.add((c + j) * self.ch_stride + off);
                        if m == half {
                            s.store(p, v)
                        } else {
                            s.store_spread(p, v, 1, 2 * m)
                        }
                    }
                }
            }
            i += m;
        }
    }
}

/// Whether backward-data runs the two column phases of each phase row in one task
/// ([`Scatter::write_pair`]): a horizontal stride of 2 over an even width, so both phases
/// have `w / 2` columns and their pixels alternate along every row; on packed weights (the
/// column form writes its pixels itself). Storing the two phases' results as whole vectors
/// instead of every other float (masked stores, each line fetched twice) ran the stride-2
/// 3x3 backward-data 1.04-1.09x faster at ResNet-50's 56x56 (1.08x at batch 4), 1.02-1.07x
/// at 28x28, 1.09-1.12x on 16x64x32x32 and 1.08x on a 4x4 upsampler's; 1.03-1.15x on 2
/// threads (Sapphire Rapids, best of 5 alternating runs).
fn paired_phases<S: DirectIsa>(g: &ConvGeom, weights: &Weights<'_>) -> bool {
    g.sw == 2 && g.w >= 2 && g.w.is_multiple_of(2) && !matches!(weights, Weights::Raw(_))
}

/// The direct kernel on ISA `S`.
pub struct Direct<S>(S);

impl<S: DirectIsa> Direct<S> {
    /// The kernel, if this CPU has the ISA.
    pub(crate) fn make() -> Option<Box<dyn ConvKernel>> {
        S::detect().map(|s| Box::new(Direct(s)) as Box<dyn ConvKernel>)
    }
}

// SAFETY: a Direct<S> holds the proof value S; every raw write goes through Scatter::write
// or, in the pointwise form (and the dense form on it), SharedMut::slice_mut over one output
// row's pixels, whose ranges are checked there, and each task's destination elements are
// disjoint (argued at each call).
unsafe impl<S: DirectIsa> ConvKernel for Direct<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }
    fn algorithm(&self) -> Algorithm {
        Algorithm::Direct
    }
    fn isa(&self) -> Isa {
        S::ISA
    }
    fn supports(&self, _g: &ConvGeom, _pass: Pass) -> Result<(), &'static str> {
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
        if pointwise::applies::<S>(g, Pass::Forward) {
            return pointwise_run(self.0, g, Pass::Forward, x, weight, bias, false, y);
        }
        if forward_in_columns::<S>(g) {
            return forward(self.0, g, x, Weights::Raw(weight), bias, y, false);
        }
        forward(self.0, g, x, Weights::ToPack(weight), bias, y, false);
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
        if g.is_dense() {
            return dense_run(self.0, g, Pass::BackwardData, grad_y, weight, bias, grad_x);
        }
        if pointwise::applies::<S>(g, Pass::BackwardData) {
            let (m, k) = (g.c_in / g.g, g.c_out / g.g);
            return with_scratch(g.w_len, |wt| {
                pointwise::transpose_weights(self.0, weight, g.g, m, k, wt);
                let pass = Pass::BackwardData;
                pointwise_run(self.0, g, pass, grad_y, wt, bias, false, grad_x)
            });
        }
        if backward_in_columns::<S>(g) {
            return backward_data(self.0, g, grad_y, Weights::Raw(weight), bias, grad_x);
        }
        backward_data(self.0, g, grad_y, Weights::ToPack(weight), bias, grad_x);
    }
    fn backward_weight(&self, g: &ConvGeom, x: &[f32], grad_y: &[f32], grad_weight: &mut [f32]) {
        g.assert_backward_weight(x, grad_y, grad_weight);
        if g.is_dense() {
            return dense_run(
                self.0,
                g,
                Pass::BackwardWeight,
                grad_y,
                x,
                None,
                grad_weight,
            );
        }
        if g.n == 0 || g.oh * g.ow == 0 {
            // No pixels to sum over (and no input planes or grad_y to slice): the gradient
            // is zero.
            grad_weight.fill(0.0);
            return;
        }
        if weight_swaps_operands::<S>(g) {
            return backward_weight_swapped(self.0, g, x, grad_y, grad_weight);
        }
        backward_weight(self.0, g, x, grad_y, grad_weight);
    }
    fn prepare(&self, g: &ConvGeom, pass: Pass, weight: &[f32]) -> Option<Vec<f32>> {
        assert_eq!(weight.len(), g.w_len, "weight length");
        match pass {
            // The dense and column forms and the pointwise forward read the weights as
            // they are; the pointwise backward-data reads their transpose.
            Pass::BackwardData if g.is_dense() => Some(weight.to_vec()),
            Pass::Forward if pointwise::applies::<S>(g, Pass::Forward) => Some(weight.to_vec()),
            Pass::BackwardData if pointwise::applies::<S>(g, Pass::BackwardData) => {
                let mut wt = vec![0.0; g.w_len];
                let (m, k) = (g.c_in / g.g, g.c_out / g.g);
                pointwise::transpose_weights(self.0, weight, g.g, m, k, &mut wt);
                Some(wt)
            }
            Pass::Forward if forward_in_columns::<S>(g) => Some(weight.to_vec()),
            // Backward-data packs for the pixel form even where an unprepared call would run
            // the column form (few pixels): that form's edge is not packing per call, and
            // with the packing paid once the pixel form ran ResNet-50's 7x7 layers and
            // layer4 downsample (batch 1, 49-pixel phases) 1.06-1.60x faster on AVX-512
            // and 1.19-1.68x on AVX2 (Zen 5, medians of 4-5 alternating runs, A/A
            // 0.97-1.04). Not forward, whose two forms sum in different orders (a plan
            // must equal the one-shot call bit for bit), so it packs only where the
            // one-shot call runs the pixel form (see `forward_in_columns`).
            Pass::Forward => {
                let nr = tile_for::<S>(g.c_out / g.g).2;
                let mut packed = vec![0.0; forward_packed_len(g, nr)];
                pack_forward(self.0, g, weight, nr, &mut packed);
                Some(packed)
            }
            Pass::BackwardData => {
                let nr = tile_for::<S>(g.c_in / g.g).2;
                let mut packed = vec![0.0; backward_packed_len(g, nr)];
                pack_backward(self.0, g, weight, nr, &mut packed);
                Some(packed)
            }
            Pass::BackwardWeight => None,
        }
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
        if pointwise::applies::<S>(g, Pass::Forward) {
            assert_eq!(prepared.len(), g.w_len, "prepared weights");
            return pointwise_run(self.0, g, Pass::Forward, x, prepared, bias, relu, y);
        }
        if forward_in_columns::<S>(g) {
            assert_eq!(prepared.len(), g.w_len, "prepared weights");
            return forward(self.0, g, x, Weights::Raw(prepared), bias, y, relu);
        }
        assert_eq!(
            prepared.len(),
            forward_packed_len(g, tile_for::<S>(g.c_out / g.g).2),
            "prepared weights"
        );
        forward(self.0, g, x, Weights::Packed(prepared), bias, y, relu);
    }
    fn backward_data_prepared(
        &self,
        g: &ConvGeom,
        grad_y: &[f32],
        prepared: &[f32],
        bias: Option<&[f32]>,
        grad_x: &mut [f32],
    ) {
        if g.is_dense() {
            assert_eq!(prepared.len(), g.w_len, "prepared weights");
            assert_eq!(grad_y.len(), g.y_len, "grad_y length");
            assert_eq!(grad_x.len(), g.x_len, "grad_x length");
            assert!(bias.is_none_or(|b| b.len() == g.c_in), "bias length");
            let pass = Pass::BackwardData;
            return dense_run(self.0, g, pass, grad_y, prepared, bias, grad_x);
        }
        if pointwise::applies::<S>(g, Pass::BackwardData) {
            assert_eq!(prepared.len(), g.w_len, "prepared weights");
            return pointwise_run(
                self.0,
                g,
                Pass::BackwardData,
                grad_y,
                prepared,
                bias,
                false,
                grad_x,
            );
        }
        // Packed for the pixel form also where the column form would run raw (see
        // `prepare`).
        assert_eq!(
            prepared.len(),
            backward_packed_len(g, tile_for::<S>(g.c_in / g.g).2),
            "prepared weights"
        );
        backward_data(self.0, g, grad_y, Weights::Packed(prepared), bias, grad_x);
    }
}

/// Backward-data or backward-weight of a dense layer ([`ConvGeom::is_dense`]: the window
/// covers the whole input) on the pointwise form's GEMM, with the batch as the tile's rows or
/// the reduction. With `j` over an image's `c_in * h * w` input floats and `o` over the
/// output channels:
///
/// ```text
///   backward-data    dx[b][j] = sum_o dy[b][o] w[o][j]   rows b, reduction o, vectors w[o]
///   backward-weight  dw[o][j] = sum_b dy[b][o] x[b][j]   rows o, reduction b, vectors x[b]
/// ```
///
/// In the pixel form these layers run one pixel per image and, for backward-data, a
/// reduction over every tap of a zero-padded output gradient, all but one of them zero.
/// `a` is `grad_y`; `b` the weights (backward-data) or the input; `bias` (a transposed conv's
/// forward) is added per input channel.
fn dense_run<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    pass: Pass,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    debug_assert!(g.is_dense());
    let (n, c_out, j) = (g.n, g.c_out, g.c_in * g.h * g.w);
    let (m, k, w_row, w_red) = match pass {
        Pass::BackwardData => (n, c_out, c_out, 1),
        Pass::BackwardWeight => (c_out, n, 1, c_out),
        Pass::Forward => unreachable!("the dense form runs backward passes only"),
    };
    let pw = pointwise::Pointwise {
        src: b,
        w: a,
        w_row,
        w_red,
        n: 1,
        groups: 1,
        m,
        k,
        p: j,
        bias: None,
        relu: false,
    };
    // SAFETY: out is borrowed for the whole call and only the pass writes it.
    unsafe { pointwise::run(s, &pw, SharedMut::new(out)) };
    if let Some(bias) = bias {
        let hw = g.h * g.w;
        for_each_chunk_mut(out, hw, |plane, dst| {
            let b = bias[plane % g.c_in];
            dst.iter_mut().for_each(|v| *v += b);
        });
    }
}

/// A data pass in pointwise form (`pointwise.rs`): `src` is the input (forward) or the
/// output gradient, `weight` the weights (forward) or their transpose
/// ([`pointwise::transpose_weights`]), `y` the output or the input gradient. A strided 1x1
/// layer runs on the subsampled input planes: gathered before the forward pass, scattered
/// after the backward-data pass.
#[allow(clippy::too_many_arguments)]
fn pointwise_run<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    pass: Pass,
    src: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let (m, k) = match pass {
        Pass::Forward => (c_out_g, c_in_g),
        Pass::BackwardData => (c_in_g, c_out_g),
        Pass::BackwardWeight => unreachable!("the pointwise form runs data passes only"),
    };
    // The prepared entry points reach here without the geometry's own length checks.
    let (src_len, y_len) = match pass {
        Pass::Forward => (g.x_len, g.y_len),
        _ => (g.y_len, g.x_len),
    };
    assert_eq!(src.len(), src_len, "source length");
    assert_eq!(y.len(), y_len, "destination length");
    let p = g.oh * g.ow;
    let run = |src: &[f32], y: &mut [f32]| {
        let pw = pointwise::Pointwise {
            src,
            w: weight,
            w_row: k,
            w_red: 1,
            n: g.n,
            groups: g.g,
            m,
            k,
            p,
            bias,
            relu,
        };
        // SAFETY: y is borrowed for the whole call and only the pass writes it.
        unsafe { pointwise::run(s, &pw, SharedMut::new(y)) }
    };
    if p == g.h * g.w {
        return run(src, y);
    }
    // Strided: the pass runs on the subsampled input planes (pixels (oy*sh, ox*sw)), taken
    // and put back row by row.
    let (h, w, ow, sh, sw) = (g.h, g.w, g.ow, g.sh, g.sw);
    with_scratch(g.n * g.c_in * p, |sub| match pass {
        Pass::Forward => {
            for_each_chunk_mut(sub, p, |plane, dst| {
                let x = &src[plane * h * w..][..h * w];
                for (d, x) in dst.chunks_exact_mut(ow).zip(x.chunks(sh * w)) {
                    for (ox, d) in d.iter_mut().enumerate() {
                        *d = x[ox * sw];
                    }
                }
            });
            run(sub, y);
        }
        _ => {
            run(src, sub);
            let sub = &*sub;
            // The rest of each input-gradient plane gets no contribution: zero, or the bias.
            for_each_chunk_mut(y, h * w, |plane, dst| {
                let fill = bias.map_or(0.0, |b| b[plane % g.c_in]);
                let mut from = sub[plane * p..][..p].chunks_exact(ow);
                for (r, row) in dst.chunks_exact_mut(w).enumerate() {
                    row.fill(fill);
                    if r % sh == 0
                        && let Some(from) = from.next()
                    {
                        for (ox, &v) in from.iter().enumerate() {
                            row[ox * sw] = v;
                        }
                    }
                }
            });
        }
    })
}

/// The padded input a forward or backward-weight pass reads (every tap of every output
/// pixel lands inside it), built in a scratch buffer (its work shared out as `split` says)
/// and handed to `f`.
fn with_padded_input<S: DirectIsa, R>(
    s: S,
    g: &ConvGeom,
    x: &[f32],
    split: PadSplit,
    f: impl FnOnce(pack::Planes<'_>) -> R,
) -> R {
    let rows = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    let cols = (g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1;
    let cols = if g.pad_t == 0 && g.pad_l == 0 && rows <= g.h && cols <= g.w {
        g.w
    } else {
        cols
    };
    let planes = g.n * g.c_in;
    with_scratch(
        padded_len(planes, g.h, g.w, rows, cols, g.pad_t, g.pad_l),
        |buf| {
            f(pad_planes(
                s, x, planes, g.h, g.w, rows, cols, g.pad_t, g.pad_l, split, buf,
            ))
        },
    )
}

/// Floats of the packed forward weights for channel blocks of `nr`.
fn forward_packed_len(g: &ConvGeom, nr: usize) -> usize {
    blocks_len(g.g, g.c_out / g.g, nr, (g.c_in / g.g) * g.kh * g.kw)
}

/// Forward weights `[grp][c_out block][ky][ic][kx][nr]` into `out`: kernel row outermost,
/// so the taps of any band of kernel rows are one run ([`RowClass`]).
fn pack_forward<S: DirectIsa>(s: S, g: &ConvGeom, weight: &[f32], nr: usize, out: &mut [f32]) {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let k = c_in_g * g.kh * g.kw;
    with_index_scratch(2 * k, |idx| {
        let red = forward_entries(g, k, idx);
        pack_blocks(s, weight, g.g, c_out_g, nr, c_out_g * k, k, red, out);
    });
}

/// The forward reduction's `k` entries as the packer reads them, by source offset, listed
/// in `idx` (at least `2 * k` long): an output channel's weights `[ic][ky][kx]` in order,
/// each into its row of the `[ky][ic][kx]` reduction ([`forward_order`]).
fn forward_entries<'a>(g: &ConvGeom, k: usize, idx: &'a mut [usize]) -> Entries<'a> {
    let c_in_g = g.c_in / g.g;
    let (src, row) = idx[..2 * k].split_at_mut(k);
    let mut i = 0;
    for ic in 0..c_in_g {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                (src[i], row[i]) = (i, (ky * c_in_g + ic) * g.kw + kx);
                i += 1;
            }
        }
    }
    Entries::sorted(src, row)
}

/// `order[r]`: the index in an output channel's `[ic][ky][kx]` weights of the forward pixel
/// form's reduction step `r`, which runs `[ky][ic][kx]`.
fn forward_order(g: &ConvGeom, order: &mut [usize]) {
    let c_in_g = g.c_in / g.g;
    let mut r = 0;
    for ky in 0..g.kh {
        for ic in 0..c_in_g {
            for kx in 0..g.kw {
                order[r] = (ic * g.kh + ky) * g.kw + kx;
                r += 1;
            }
        }
    }
}

/// Output rows of a forward pass (or of a backward-data stride phase) whose taps inside
/// the input (`grad_y`) are the same band of kernel rows: the pixel form runs each class of
/// rows over its band alone, so the taps over the zero padding above and below the input
/// cost nothing. (oneDNN's direct kernel skips them too: on ResNet-50's 7x7 layers 18% of
/// the taps.)
#[derive(Clone, Debug, Default, PartialEq)]
struct RowClass {
    /// Output rows (of every image; a phase's rows).
    rows: Range<usize>,
    /// Kernel rows its reduction runs over (a phase's: indices into its [`phase_taps`]).
    taps: Range<usize>,
    /// Its pixels over the batch (its rows of every image, image after image), run in
    /// `chunks` tasks (per channel block) of whole tiles of `ur` ([`RowClass::chunk`]).
    pixels: usize,
    ur: usize,
    chunks: usize,
}

impl RowClass {
    /// Pixels `(first, count)` of chunk `ch` of the class: its tiles spread evenly
    /// ([`spread_units`]), so chunks differ by at most one tile (the last also holds the
    /// partial one).
    ///
    /// Cut into chunks of one rounded-up size instead, the last took the remainder: a
    /// stride-2 backward-data phase's 784 pixels in 4 x 168 + 112, a task a third shorter
    /// than the rest. Two threads split the tasks in halves of unequal work and then stole
    /// whole tasks to even them, and one waited out the other's last task. Shared evenly
    /// (13-14 tiles a chunk), 2 threads, Zen 4: ResNet-50's stride-2 3x3 layer backward-data
    /// 1.10x (AVX-512; 1.06x on AVX2), its 56x56x64 layer 1.02-1.03x, VGG's 56x56
    /// 1.01-1.03x, forward 56x56x64 1.01-1.03x, the rest within 1%; one thread within 1%
    /// (blocks of 6-12 calls per variant, alternated, median of block medians).
    fn chunk(&self, ch: usize) -> (usize, usize) {
        spread_units(self.pixels, self.ur, self.chunks, ch)
    }
}

/// Most [`RowClass`]es a pass is split into (a 3x3 layer has 3; more distinct bands, from
/// padding past the kernel's reach, run as one class): held inline, since a warm prepared
/// pass allocates nothing.
const MAX_ROW_CLASSES: usize = 16;

/// Up to [`MAX_ROW_CLASSES`] row classes, in row order.
struct RowClasses {
    list: [RowClass; MAX_ROW_CLASSES],
    len: usize,
}

impl RowClasses {
    /// The chunks of every class.
    fn chunks(&self) -> usize {
        self.iter().map(|c| c.chunks).sum()
    }

    /// Chunk `ch` of the chunks of every class, class after class: its class, and its
    /// index within that class.
    fn class_chunk(&self, mut ch: usize) -> (&RowClass, usize) {
        for c in self.iter() {
            if ch < c.chunks {
                return (c, ch);
            }
            ch -= c.chunks;
        }
        panic!("chunk {ch} past the classes' chunks")
    }
}

impl std::ops::Deref for RowClasses {
    type Target = [RowClass];
    fn deref(&self) -> &[RowClass] {
        &self.list[..self.len]
    }
}

/// Least share of a pass's multiply-adds, in percent, row classes must save to be used:
/// below it the saving is lost in the timing noise. From 3% down to 1% (classes now also
/// at 56x56, 28x28 and CIFAR's 32x32, saving 1.2-2.1%), Zen 4, 1 thread, paired medians:
/// ResNet-50 56x56x64 1.014-1.016x, 14x14x256 1.021-1.025x, VGG 1.010x, stride-2 1.010x,
/// CIFAR 1.008-1.025x (batch 8 1.014-1.031x), 28x28x128 1.014-1.018x, 5x5 at 28x28
/// 1.033-1.039x; the layers without padding rows or with classes already 0.994-0.999x.
const MIN_CLASS_SAVING: usize = 1;

/// `g`'s forward rows in classes ([`RowClass`]) for tiles of `ur` pixels (see
/// [`classes_by`]).
fn row_classes(g: &ConvGeom, ur: usize) -> RowClasses {
    // Kernel rows ky with 0 <= oy*sh + ky*dh - pad_t < h (i128: a stride may be near
    // usize::MAX); rows whose taps all land in the padding keep every tap.
    let (sh, dh, h, kh) = (g.sh as i128, g.dh as i128, g.h as i128, g.kh as i128);
    let ceil_div = |a: i128, d: i128| -(-a).div_euclid(d);
    classes_by(g.n, g.oh, g.ow, g.kh, ur, |oy| {
        let base = oy as i128 * sh - g.pad_t as i128;
        let lo = ceil_div(-base, dh).clamp(0, kh) as usize;
        let hi = ceil_div(h - base, dh).clamp(0, kh) as usize;
        lo..hi
    })
}

/// The rows of backward-data's stride phase row `ry` (`na_y` rows of `na_x` pixels an
/// image) in classes ([`RowClass`]) for tiles of `ur` pixels (see [`classes_by`]): `taps`
/// index the phase's kernel rows ([`phase_taps`]), whose `grad_y` rows `a + q` must lie
/// inside it. Vertical stride 1 only: ResNet-50's stride-2 3x3 layer (one phase row of 28
/// loses one of its two taps) ran 1.013x on one thread but 0.91-0.93x on two (Zen 4,
/// paired medians; not found why), where stride 1 gains on both (see `backward_data`).
fn phase_row_classes(g: &ConvGeom, ry: usize, na_y: usize, na_x: usize, ur: usize) -> RowClasses {
    let n_taps = phase_taps(ry, g.sh, g.dh, g.pad_t, g.kh).count();
    classes_by(g.n, na_y, na_x, n_taps, ur, |a| {
        if g.sh > 1 {
            return 0..0; // every tap, so one class
        }
        // q falls as the tap rises, so the taps inside are one run.
        let mut inside = phase_taps(ry, g.sh, g.dh, g.pad_t, g.kh)
            .enumerate()
            .filter(|(_, (_, q))| (0..g.oh as isize).contains(&(a as isize + q)))
            .map(|(i, _)| i);
        match inside.next() {
            Some(lo) => lo..inside.last().map_or(lo, |hi| hi) + 1,
            None => 0..0,
        }
    })
}

/// `rows` rows of `per_row` pixels in each of `n` images, in classes ([`RowClass`]) by the
/// band `taps(row)` of their `n_taps` kernel rows (an empty band: every tap, which reads
/// only padding), for tiles of `ur` pixels; or one class of every row and tap where the
/// classes would save under [`MIN_CLASS_SAVING`] of the multiply-adds (their tiles start
/// afresh per class: a few pixels a class would fill whole tiles) or would number more
/// than [`MAX_ROW_CLASSES`].
fn classes_by(
    n: usize,
    rows: usize,
    per_row: usize,
    n_taps: usize,
    ur: usize,
    taps: impl Fn(usize) -> Range<usize>,
) -> RowClasses {
    let class = |rows: Range<usize>, taps: Range<usize>| {
        let pixels = n * rows.len() * per_row;
        RowClass {
            rows,
            taps,
            pixels,
            ur,
            chunks: row_chunks(pixels, ur),
        }
    };
    let mut whole = RowClasses {
        list: std::array::from_fn(|_| RowClass::default()),
        len: 1,
    };
    whole.list[0] = class(0..rows, 0..n_taps);
    if n_taps < 2 || n * rows * per_row == 0 {
        return whole;
    }
    let taps = |row: usize| {
        Some(taps(row))
            .filter(|t| !t.is_empty())
            .unwrap_or(0..n_taps)
    };
    let mut classes = RowClasses {
        list: std::array::from_fn(|_| RowClass::default()),
        len: 0,
    };
    let (mut start, mut band) = (0, taps(0));
    for row in 1..=rows {
        let next = if row < rows { taps(row) } else { 0..0 };
        if next != band {
            if classes.len == MAX_ROW_CLASSES {
                return whole;
            }
            classes.list[classes.len] = class(start..row, band);
            classes.len += 1;
            (start, band) = (row, next);
        }
    }
    // Multiply-adds per reduction step over a channel, tiles rounded up to whole.
    let cost = |c: &[RowClass]| -> usize {
        c.iter()
            .map(|c| (n * c.rows.len() * per_row).div_ceil(ur) * ur * c.taps.len())
            .sum()
    };
    if classes.len() > 1 && cost(&classes) * 100 <= cost(&whole) * (100 - MIN_CLASS_SAVING) {
        classes
    } else {
        whole
    }
}

/// The weights a data pass gets: packed for the pixel form (by the caller, or by the pass
/// itself: `ToPack`), or as the caller has them for the column form (`columns.rs`).
#[derive(Clone, Copy)]
enum Weights<'a> {
    Packed(&'a [f32]),
    /// The caller's weights, for the pixel form to pack itself (see [`forward`] and
    /// [`backward_data`]).
    ToPack(&'a [f32]),
    Raw(&'a [f32]),
}

/// The forward pass runs in column form (`columns.rs`): few pixels, more output channels per
/// group.
///
/// On AVX2: on an AVX2-only Zen 3 EPYC it ran ResNet-50's and DenseNet-121's 7x7 layers at
/// 1.08-1.31x the pixel form (batch 1; 1x1 at batch 2 1.23x, 3x3 at batch 2 a tie; medians
/// of 4 alternating pairs), though Sapphire Rapids capped at AVX2 had measured 0.8-1.06x:
/// the AVX2 path is for AVX2-only CPUs, so the native one decides. Not on the narrower
/// portable and scalar vectors, where it was never measured.
///
/// On 16 lanes only below [`COLUMN_PIXELS_16`] pixels whose columns fill more than 3/4 of
/// the lanes they span. The column form was chosen against a pixel form that packed every
/// block of the weights before it ran; since each task packs its own block into L2, the
/// pixel form leads on Zen 4 wherever the column form's lanes run empty: ResNet-50's 7x7
/// layers at batch 1 (49 pixels in 64 lanes) forward 1.00-1.12x on 1 thread and 1.04-1.23x
/// on 2, at batch 2 1.14-1.30x and 1.17-1.36x, the layer-4 downsample 1.10x and 1.12x,
/// DenseNet-121's 7x7 1x1 layer 1.13x and 1.50x; 36 pixels (in 64 lanes) 1.47-1.50x, 16
/// pixels in a wide column (half its lanes) 1.25-1.47x, 4 and 9 pixels 1.5-2.5x. The column
/// form keeps 25 and 32 pixels in 32 lanes and 16 in a narrow column (pixel form 0.76-0.91x
/// there); at exactly 3/4 the pixel form led or tied (36 pixels in 48 lanes 1.13-1.47x, 24
/// in 32 0.99x and 1.04x, 12 in a narrow column 0.92x and 1.42x). Medians of 4 alternating
/// runs. Prepared weights take the same form: the two forms
/// sum in different orders, and a plan must equal the one-shot call bit for bit (prepared,
/// the pixel form had led by 1.07-6.3x, but for 0.96x at 32 pixels on 1 thread).
fn forward_in_columns<S: DirectIsa>(g: &ConvGeom) -> bool {
    let npx = g.n * g.oh * g.ow;
    if S::LANES < 8 || !columns::preferred(g.c_out / g.g, npx) {
        return false;
    }
    if S::LANES < 16 {
        return true;
    }
    let w_row = g.c_in / g.g * g.kh * g.kw;
    npx < COLUMN_PIXELS_16 && 4 * npx > 3 * columns::lanes_spanned::<S>(npx, w_row)
}

/// Pixels from which a 16-lane forward pass takes the pixel form (see
/// [`forward_in_columns`]): 48 pixels are four whole tiles of 12 rows; the column form's 64
/// lanes (or 48, with a narrow last column) ran 0.61-0.92x of it there, 1 and 2 threads.
const COLUMN_PIXELS_16: usize = 48;

/// Backward-data runs in column form: few pixels in its largest stride phase, and more
/// input channels per group; on 16 lanes, a 1x1 layer's (whose weights the column form
/// gathers, see `columns::run`) or one whose largest phase's pixels fill every lane of
/// its columns, below [`COLUMN_PIXELS_16`] (smaller phases may leave lanes empty).
///
/// As in the forward pass ([`forward_in_columns`]), the pixel form now packs block by block
/// and leads on Zen 4 where the column form's lanes run partly empty: pixel / column form,
/// medians of 3 alternating runs (a noisy host on 2 threads), 1 and 2 threads: ResNet-50's
/// 3x3 layers at 7x7, batch 1 (49-pixel planes and stride-2 phases) 1.04-1.15x and
/// 1.02-1.11x, batch 2 1.14-1.20x and 1.07x; 36 pixels in 48 lanes 1.28x and 1.21x, 25 in
/// 32 1.07-1.12x and 0.98-1.17x, 4 and 9 pixels 1.08-1.7x. Full columns stay: 32 pixels
/// 0.92x and 0.83x in the pixel form, 16 in a narrow column 1.0-1.01x and 0.93-1.11x. The
/// 1x1 layers stay too (0.53-0.94x in the pixel form, batch 1 and 2, but for one tie at
/// 1.03x).
fn backward_in_columns<S: DirectIsa>(g: &ConvGeom) -> bool {
    let npx = g.n * g.h.div_ceil(g.sh) * g.w.div_ceil(g.sw);
    if !columns::preferred(g.c_in / g.g, npx) {
        return false;
    }
    if S::LANES < 16 {
        return true;
    }
    let khw = g.kh * g.kw;
    khw == 1 || (npx < COLUMN_PIXELS_16 && npx == columns::lanes_spanned::<S>(npx, khw))
}

/// Forward pass, pixel form with weights packed by the caller (see [`pack_forward`]) or
/// here ([`Weights::ToPack`]), or column form with the raw ones; `relu` fuses a ReLU.
fn forward<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    x: &[f32],
    weights: Weights<'_>,
    bias: Option<&[f32]>,
    y: &mut [f32],
    relu: bool,
) {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let (wide, ur, nr) = tile_for::<S>(c_out_g);
    let k = c_in_g * g.kh * g.kw;
    let p = g.oh * g.ow;
    let blocks = c_out_g.div_ceil(nr);
    // The rows are the output pixels of the whole batch, image after image: a pixel's
    // source offset includes its image's offset, so one task may span images and a batch
    // of small images fills whole tiles and reuses each chunk of weights over many of
    // them (ResNet-50's 7x7 layers at batch 8: 392 rows, not 8 tasks of 49).
    let total = g.n * p;
    let out = SharedMut::new(y);
    with_padded_input(s, g, x, PadSplit::Rows { images: g.n }, |src| {
        // Source offset of tap `i` of a channel's `[ic][ky][kx]` weights.
        let tap_offset = |i: usize| {
            let (ic, ky, kx) = (i / (g.kh * g.kw), i / g.kw % g.kh, i % g.kw);
            ic * src.plane + ky * g.dh * src.row + kx * g.dw
        };
        with_index_scratch(k, |red| {
            let w = match weights {
                Weights::Packed(_) | Weights::ToPack(_) => weights,
                Weights::Raw(w) => {
                    // The column form's reduction: the caller's `[ic][ky][kx]` order.
                    for (r, o) in red.iter_mut().enumerate() {
                        *o = tap_offset(r);
                    }
                    let red = &*red;
                    return with_index_scratch(2 * total, |idx| {
                        let (pix, offs) = idx.split_at_mut(total);
                        let (row, col) = (g.sh.saturating_mul(src.row), g.sw);
                        pixel_offsets(pix, g.ow, g.oh, g.c_in * src.plane, row, col);
                        pixel_offsets(offs, g.ow, g.oh, g.c_out * p, g.ow, 1);
                        let pass = columns::Columns {
                            src: src.data,
                            src_grp: c_in_g * src.plane,
                            red,
                            pix,
                            w,
                            w_grp: c_out_g * k,
                            w_row: k,
                            w_red: Red::Strided { stride: 1, len: k },
                            rows: c_out_g,
                            groups: g.g,
                            dst_offs: offs,
                            ch_stride: p,
                            bias,
                            relu,
                        };
                        // SAFETY: y is borrowed (as `out`) for the whole call, and only
                        // this call writes it; offs holds each pixel (image, position) once.
                        unsafe { columns::run(s, &pass, out) };
                    });
                }
            };
            // The packed weights' order, `[ky][ic][kx]`.
            forward_order(g, red);
            for o in red.iter_mut() {
                *o = tap_offset(*o);
            }
            let red = &*red;
            let classes = row_classes(g, ur);
            // Row chunks over every class, class after class.
            let chunks = classes.chunks();
            // One task: row chunk `ch` of channel block `blk` of group `grp`, with the
            // block's packed weights `vecs`.
            let task = |grp: usize, ch: usize, blk: usize, vecs: &[f32]| {
                let (class, ch) = classes.class_chunk(ch);
                // Its pixels: `p_c` a image (the class's rows), from row `row0`.
                let (row0, p_c) = (class.rows.start, class.rows.len() * g.ow);
                let (q0, npx) = class.chunk(ch);
                // Its taps: a run of kernel rows of the `[ky][ic][kx]` reduction.
                let per_ky = c_in_g * g.kw;
                let (red, vecs) = (
                    &red[class.taps.start * per_ky..class.taps.end * per_ky],
                    &vecs[class.taps.start * per_ky * nr..class.taps.end * per_ky * nr],
                );
                let c0 = grp * c_out_g + blk * nr;
                let n_ch = nr.min(c_out_g - blk * nr);
                with_index_scratch(2 * npx, |idx| {
                    let (rows, offs) = idx.split_at_mut(npx);
                    // Image b, pixel q = (oy, ox), stepped without a division per row
                    // or a multiplication per pixel (with a short reduction, as in a
                    // 7x7 stem's 147 steps, the index arithmetic was 5% of a pass): `line`
                    // is the source offset of the output row's first pixel, `r` of this one.
                    // Only offsets of real pixels are formed (products in that order): a
                    // stride near usize::MAX with a single output row or column must not
                    // overflow (found by fuzz/api_never_panics).
                    // Pixels q count the class's rows of each image.
                    let (img_src, img_dst) = (g.c_in * src.plane, g.c_out * p);
                    let (b, q) = (q0 / p_c, q0 % p_c);
                    let (oy, ox) = (row0 + q / g.ow, q % g.ow);
                    let (mut ox, mut o) = (ox, b * img_dst + row0 * g.ow + q);
                    let mut line = b * img_src + oy * g.sh * src.row;
                    let (mut r, mut qq) = (line + ox * g.sw, q);
                    for (i, (row, off)) in rows.iter_mut().zip(offs.iter_mut()).enumerate() {
                        (*row, *off) = (r, o);
                        if i + 1 == npx {
                            break;
                        }
                        // To the next pixel, which exists.
                        (qq, ox, o) = (qq + 1, ox + 1, o + 1);
                        if qq == p_c {
                            // The next image: the class's first output row.
                            (qq, ox, o) = (0, 0, o + img_dst - p_c);
                            line += img_src - (p_c / g.ow - 1) * g.sh * src.row;
                            r = line;
                        } else if ox == g.ow {
                            (ox, line) = (0, line + g.sh * src.row);
                            r = line;
                        } else {
                            r += g.sw;
                        }
                    }
                    let block = Block {
                        src: &src.data[grp * c_in_g * src.plane..],
                        red: Red::List(red),
                        vecs,
                        vstride: nr,
                        rows,
                        accumulate: false,
                    };
                    with_scratch((npx + MAX_LANES - 1) * nr, |buf| {
                        let scatter = Scatter {
                            dst: out,
                            base: c0 * p,
                            ch_stride: p,
                            offs,
                            n_ch,
                            bias: bias.map(|bias| &bias[c0..c0 + n_ch]),
                            relu,
                        };
                        scatter.prefetch(1);
                        run_chunked(s, wide, &block, nr, buf);
                        // SAFETY: this task writes channels c0..c0+n_ch at its own pixels
                        // (image and position), disjoint from every other task; y stays
                        // borrowed throughout.
                        unsafe { scatter.write(s, buf, nr) };
                    });
                });
            };
            let order = TaskOrder::new(chunks, blocks, k * nr, g.n * c_in_g * src.plane);
            let run_packed = |packed: &[f32]| {
                for_each_task(g.g * chunks * blocks, |t| {
                    let (grp, ch, blk) = order.task(t);
                    task(
                        grp,
                        ch,
                        blk,
                        &packed[(grp * blocks + blk) * k * nr..][..k * nr],
                    );
                });
            };
            match w {
                Weights::Packed(packed) => run_packed(packed),
                // Weights outweigh the input (ResNet-50's 14x14 and 7x7 layers): each task
                // packs one channel block into a buffer of its own, which stays in L2 while
                // the task runs every row chunk over it, instead of packing all blocks first
                // and reading them back from memory; while there are blocks enough to keep
                // every thread busy.
                Weights::ToPack(w) if order.weights_major && g.g * blocks >= 2 * threads() => {
                    with_index_scratch(2 * k, |idx| {
                        let red = forward_entries(g, k, idx);
                        for_each_task(g.g * blocks, |t| {
                            let (grp, blk) = (t / blocks, t % blocks);
                            let n_ch = nr.min(c_out_g - blk * nr);
                            let first = &w[(grp * c_out_g + blk * nr) * k..][..n_ch * k];
                            with_scratch(k * nr, |vecs| {
                                pack_block(s, first, 0, n_ch, nr, k, red, vecs);
                                for ch in 0..chunks {
                                    task(grp, ch, blk, vecs);
                                }
                            });
                        });
                    })
                }
                Weights::ToPack(w) => with_scratch(forward_packed_len(g, nr), |packed| {
                    pack_forward(s, g, w, nr, packed);
                    run_packed(packed);
                }),
                Weights::Raw(_) => unreachable!("the column form returned above"),
            }
        });
    });
}

/// The order of a data pass's tasks over (group, row chunk, channel block).
#[derive(Clone, Copy)]
struct TaskOrder {
    chunks: usize,
    blocks: usize,
    /// Channel block outermost within a group: neighbouring tasks share a block of weights.
    weights_major: bool,
}

impl TaskOrder {
    /// Row chunks innermost when a group's packed weights (`blocks` blocks of
    /// `block_floats`) outweigh its input (`input_floats`), so neighbouring tasks share a
    /// block of weights (ResNet-50's 14x14 and 7x7 layers: 2.4 and 9.4 MB of weights against
    /// 0.26 and 1.3 MB of input; 1.2x faster); else channel blocks innermost, so they share
    /// the input chunk (a CIFAR batch, whose input is 32x its weights: 1.25x the other way).
    fn new(chunks: usize, blocks: usize, block_floats: usize, input_floats: usize) -> Self {
        TaskOrder {
            chunks,
            blocks,
            weights_major: blocks * block_floats > input_floats,
        }
    }

    /// Task `t` as `(group, row chunk, channel block)`.
    fn task(self, t: usize) -> (usize, usize, usize) {
        let (chunks, blocks) = (self.chunks, self.blocks);
        let (ch, blk) = if self.weights_major {
            (t % chunks, t / chunks % blocks)
        } else {
            (t / blocks % chunks, t % blocks)
        };
        (t / (chunks * blocks), ch, blk)
    }
}

/// The tasks `total` rows run in: one per [`ROWS_PER_TASK`] begun, but no more than the
/// whole tiles of `ur` rows they make ([`RowClass::chunk`] shares those out); none for none.
fn row_chunks(total: usize, ur: usize) -> usize {
    total.div_ceil(ROWS_PER_TASK).min(total.div_ceil(ur.max(1)))
}

/// `out[(b * oh + oy) * ow + ox] = b * img + oy * row + ox * col` for the pixels of
/// `out.len() / (oh * ow)` images: offsets built by additions, not a division per pixel
/// (the 7x7 stem's 12544-pixel lists had taken 6% of its backward-weight). Only offsets of
/// real pixels are formed, so none overflows where the products would not (a stride near
/// `usize::MAX` with one output row or column; callers pass a saturated row step, added
/// only when a second row exists).
fn pixel_offsets(out: &mut [usize], ow: usize, oh: usize, img: usize, row: usize, col: usize) {
    let p = oh * ow;
    if p == 0 {
        return;
    }
    let mut first = 0;
    for (b, image) in out.chunks_mut(p).enumerate() {
        if b > 0 {
            first += img;
        }
        let mut line = first;
        for (y, pixels) in image.chunks_mut(ow).enumerate() {
            if y > 0 {
                line += row;
            }
            let mut o = line;
            for (x, d) in pixels.iter_mut().enumerate() {
                if x > 0 {
                    o += col;
                }
                *d = o;
            }
        }
    }
}

/// `floor(a / b)` for a possibly negative `a` (in i128: a stride may exceed `isize::MAX`).
fn floor_div(a: isize, b: usize) -> isize {
    (a as i128).div_euclid(b as i128) as isize
}

/// The taps of one stride phase of backward-data along an axis: those reaching pixels
/// `r + s*a`, each as (tap, `q`) with `grad_y` index `a + q`.
fn phase_taps(
    r: usize,
    s: usize,
    d: usize,
    pad: usize,
    k: usize,
) -> impl Iterator<Item = (usize, isize)> {
    // i128: a stride may exceed isize::MAX; r + pad and kk*d fit (validated sizes), so t
    // and the quotient fit in isize.
    (0..k).filter_map(move |kk| {
        let t = (r + pad) as i128 - (kk * d) as i128;
        (t.rem_euclid(s as i128) == 0).then(|| (kk, t.div_euclid(s as i128) as isize))
    })
}

/// The stride phases `(ry, rx)` that have pixels, with their tap counts, in packing order.
fn phases(g: &ConvGeom) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
    (0..g.sh.min(g.h)).flat_map(move |ry| {
        (0..g.sw.min(g.w)).map(move |rx| {
            let ty = phase_taps(ry, g.sh, g.dh, g.pad_t, g.kh).count();
            let tx = phase_taps(rx, g.sw, g.dw, g.pad_l, g.kw).count();
            (ry, rx, ty, tx)
        })
    })
}

/// The reduction steps `(ky, oc, kx)` of stride phase `(ry, rx)` as offsets into the
/// weights of input channel 0 of the group: step `r` reads `w[oc][ic][ky][kx]` at
/// `ic*kh*kw + out[r]`. Kernel row outermost, so the taps of any band of the phase's kernel
/// rows are one run ([`phase_row_classes`]).
fn phase_weight_offsets(g: &ConvGeom, ry: usize, rx: usize, out: &mut [usize]) {
    let (c_in_g, c_out_g, khw) = (g.c_in / g.g, g.c_out / g.g, g.kh * g.kw);
    // Listed once: each tap costs a 128-bit division.
    let kxs: Vec<usize> = phase_taps(rx, g.sw, g.dw, g.pad_l, g.kw)
        .map(|(kx, _)| kx)
        .collect();
    let mut r = 0;
    for (ky, _) in phase_taps(ry, g.sh, g.dh, g.pad_t, g.kh) {
        for oc in 0..c_out_g {
            for &kx in &kxs {
                out[r] = oc * c_in_g * khw + ky * g.kw + kx;
                r += 1;
            }
        }
    }
}

/// Floats of the packed backward-data weights: every phase's
/// `[grp][c_in block][ky][oc][kx][nr]` (its taps).
fn backward_packed_len(g: &ConvGeom, nr: usize) -> usize {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    phases(g)
        .map(|(_, _, ty, tx)| blocks_len(g.g, c_in_g, nr, c_out_g * ty * tx))
        .sum()
}

/// Backward-data weights of every phase, concatenated in [`phases`] order.
fn pack_backward<S: DirectIsa>(s: S, g: &ConvGeom, weight: &[f32], nr: usize, out: &mut [f32]) {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let mut at = 0;
    for (ry, rx, ty, tx) in phases(g) {
        let len = blocks_len(g.g, c_in_g, nr, c_out_g * ty * tx);
        let n = c_out_g * ty * tx;
        with_index_scratch(2 * n, |idx| {
            let red = phases_entries(g, &[(ry, rx, ty * tx, at)], idx);
            pack_phase(s, g, weight, nr, red, &mut out[at..at + len]);
        });
        at += len;
    }
}

/// The reduction entries of phases `ph` (`(ry, rx, taps, _)`, as `backward_data` lists
/// them) as one list for the packer, by source offset, listed in `idx` (at least twice the
/// entries long). Each phase's rows ([`phase_weight_offsets`], `c_out / g * taps` of them)
/// follow the phase before's, as the packed weights hold them. By source offset, an output
/// channel's taps that the phases share out (a kernel row of a stride-2 layer over a
/// task's two paired phases, or every tap over all the phases) move in one register
/// transpose, not one per phase.
///
/// Listed straight in that order, output channel by output channel, each tap to its row
/// (only the kernel's few taps are sorted, once), not merge-sorted entry by entry: merging
/// the phases' runs of offsets had taken 1.3% of DCGAN's 4x4 stride-2 transposed forward
/// (256 -> 128 at 16x16; all 16 taps, 4096 entries), on the calling thread while the
/// others waited. AVX-512 on Zen 4, 1 thread: 1.026x (4 alternating runs, with forward's
/// entries listed the same way).
fn phases_entries<'a>(
    g: &ConvGeom,
    ph: &[(usize, usize, usize, usize)],
    idx: &'a mut [usize],
) -> Entries<'a> {
    let (c_in_g, c_out_g, khw) = (g.c_in / g.g, g.c_out / g.g, g.kh * g.kw);
    // Tap ky * kw + kx of the phases: (the tap, its row for output channel 0, the rows
    // between output channels: its phase's taps in a kernel row), by tap.
    let mut taps: Vec<(usize, usize, usize)> = Vec::new();
    let mut at = 0;
    for &(ry, rx, n_taps, _) in ph {
        let kxs: Vec<usize> = phase_taps(rx, g.sw, g.dw, g.pad_l, g.kw)
            .map(|(kx, _)| kx)
            .collect();
        let tx = kxs.len();
        for (iy, (ky, _)) in phase_taps(ry, g.sh, g.dh, g.pad_t, g.kh).enumerate() {
            for (ix, &kx) in kxs.iter().enumerate() {
                taps.push((ky * g.kw + kx, at + iy * c_out_g * tx + ix, tx));
            }
        }
        at += c_out_g * n_taps;
    }
    taps.sort_unstable();
    let (src, row) = idx[..2 * at].split_at_mut(at);
    let mut i = 0;
    for oc in 0..c_out_g {
        for &(tap, row0, tx) in &taps {
            (src[i], row[i]) = (oc * c_in_g * khw + tap, row0 + oc * tx);
            i += 1;
        }
    }
    debug_assert_eq!(i, at, "phases_entries: every row");
    Entries::sorted(src, row)
}

/// One stride phase's backward-data weights, `[grp][c_in block][ky][oc][kx][nr]`, from the
/// phases' [`phases_entries`].
fn pack_phase<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    weight: &[f32],
    nr: usize,
    red: Entries<'_>,
    out: &mut [f32],
) {
    let (c_in_g, c_out_g, khw) = (g.c_in / g.g, g.c_out / g.g, g.kh * g.kw);
    let group_stride = c_out_g * c_in_g * khw;
    pack_blocks(s, weight, g.g, c_in_g, nr, group_stride, khw, red, out);
}

/// Backward-data, pixel form with weights packed by the caller (see [`pack_backward`]) or
/// here ([`Weights::ToPack`]: every phase's at once where tasks take some of the phases,
/// else by each task), or column form with the raw ones; `bias` serves a transposed conv's
/// forward.
fn backward_data<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    grad_y: &[f32],
    weights: Weights<'_>,
    bias: Option<&[f32]>,
    grad_x: &mut [f32],
) {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let (wide, ur, nr) = tile_for::<S>(c_in_g);
    let hw = g.h * g.w;
    // grad_y rows a + q for a < ceil(h/sh): q ranges over [floor((pad_t - (kh-1)dh)/sh),
    // ceil(pad_t/sh)]; pad grad_y so all of them exist.
    let q_lo_y = floor_div(g.pad_t as isize - ((g.kh - 1) * g.dh) as isize, g.sh);
    let q_lo_x = floor_div(g.pad_l as isize - ((g.kw - 1) * g.dw) as isize, g.sw);
    let (top, left) = ((-q_lo_y).max(0) as usize, (-q_lo_x).max(0) as usize);
    let rows_q = (g.h.div_ceil(g.sh) + g.pad_t.div_ceil(g.sh) + top + 1).max(g.oh + top);
    let cols_q = (g.w.div_ceil(g.sw) + g.pad_l.div_ceil(g.sw) + left + 1).max(g.ow + left);
    let planes = g.n * g.c_out;
    let blocks = c_in_g.div_ceil(nr);
    let out = SharedMut::new(grad_x);
    with_scratch(
        padded_len(planes, g.oh, g.ow, rows_q, cols_q, top, left),
        |pad_buf| {
            let src = pad_planes(
                s,
                grad_y,
                planes,
                g.oh,
                g.ow,
                rows_q,
                cols_q,
                top,
                left,
                PadSplit::Rows { images: g.n },
                pad_buf,
            );
            // The phases, each with its taps and the offset of its blocks in the packed
            // weights. A stride of 2 across an even width pairs the two column phases of each
            // phase row ([`paired_phases`]): one task runs both over the same grad_y pixels
            // and stores their interleaved results as whole vectors.
            let mut at = 0;
            let list: Vec<(usize, usize, usize, usize)> = phases(g)
                .map(|(ry, rx, ty, tx)| {
                    let phase = (ry, rx, ty * tx, at);
                    at += blocks_len(g.g, c_in_g, nr, c_out_g * ty * tx);
                    phase
                })
                .collect();
            let per_task = if paired_phases::<S>(g, &weights) {
                2
            } else {
                1
            };
            // Reduction rows before phase i's in the rows of all phases, and in all.
            let mut red_before: Vec<usize> = list.iter().map(|p| c_out_g * p.2).collect();
            let red_every = prefix_sums(&mut red_before);
            let run_phases = |hoisted: Option<&[f32]>| {
                for (ci, ph) in list.chunks(per_task).enumerate() {
                    let (ry, rx) = (ph[0].0, ph[0].1);
                    // Each phase's reduction length (0 for the second of an unpaired task).
                    let red_lens = [c_out_g * ph[0].2, ph.get(1).map_or(0, |p| c_out_g * p.2)];
                    let red_total = red_lens[0] + red_lens[1];
                    let (na_y, na_x) = ((g.h - ry).div_ceil(g.sh), (g.w - rx).div_ceil(g.sw));
                    // Rows span the batch, as in the forward pass.
                    let npx_img = na_y * na_x;
                    let npx_all = g.n * npx_img;
                    // A paired task runs its rows twice, over the same chunk of them: halving the
                    // chunk was 0.98-1.01x. The rows go in classes by their band of the phase's
                    // kernel rows (both phases of a pair share theirs), chunked class by class.
                    let classes = phase_row_classes(g, ry, na_y, na_x, ur);
                    let chunks = classes.chunks();
                    // Reduction steps per kernel row of the phase, of each phase.
                    let n_ty = phase_taps(ry, g.sh, g.dh, g.pad_t, g.kh).count();
                    let per_ty = red_lens.map(|len| len.checked_div(n_ty).unwrap_or(0));
                    with_index_scratch(red_total, |red_all| {
                        // Phase p's reduction: `red_lens[p]` source offsets, (ky, oc, kx)
                        // order, as its weights ([`phase_weight_offsets`]).
                        let (red0, red1) = red_all.split_at_mut(red_lens[0]);
                        let mut reds = [red0, red1];
                        for (p, red) in reds.iter_mut().enumerate().take(ph.len()) {
                            let (ry, rx, ..) = ph[p];
                            let qxs: Vec<usize> = phase_taps(rx, g.sw, g.dw, g.pad_l, g.kw)
                                .map(|(_, qx)| (qx + left as isize) as usize)
                                .collect();
                            let mut r = 0;
                            for (_, qy) in phase_taps(ry, g.sh, g.dh, g.pad_t, g.kh) {
                                let line = (qy + top as isize) as usize * src.row;
                                for oc in 0..c_out_g {
                                    for &qx in &qxs {
                                        red[r] = oc * src.plane + line + qx;
                                        r += 1;
                                    }
                                }
                            }
                        }
                        let reds = [&*reds[0], &*reds[1]];
                        let red = reds[0];
                        let red_len = red_lens[0];
                        if let Weights::Raw(w) = weights {
                            // Unpaired (see paired_phases).
                            let khw = g.kh * g.kw;
                            return with_index_scratch(red_len + 2 * npx_all, |idx| {
                                let (w_red, rest) = idx.split_at_mut(red_len);
                                let (pix, offs) = rest.split_at_mut(npx_all);
                                phase_weight_offsets(g, ry, rx, w_red);
                                for (q, (r, o)) in pix.iter_mut().zip(offs.iter_mut()).enumerate() {
                                    let (b, qq) = (q / npx_img, q % npx_img);
                                    let (a, c) = (qq / na_x, qq % na_x);
                                    *r = b * g.c_out * src.plane + a * src.row + c;
                                    *o = b * g.c_in * hw + (ry + g.sh * a) * g.w + rx + g.sw * c;
                                }
                                let pass = columns::Columns {
                                    src: src.data,
                                    src_grp: c_out_g * src.plane,
                                    red,
                                    pix,
                                    w,
                                    w_grp: c_out_g * c_in_g * khw,
                                    w_row: khw,
                                    w_red: Red::List(w_red),
                                    rows: c_in_g,
                                    groups: g.g,
                                    dst_offs: offs,
                                    ch_stride: hw,
                                    bias,
                                    relu: false,
                                };
                                // SAFETY: grad_x is borrowed (as `out`) for the whole call; this
                                // phase's pixels are written by this call alone, each once (offs
                                // lists each image and phase position once).
                                unsafe { columns::run(s, &pass, out) };
                            });
                        }
                        // One task: row chunk `ch` of input-channel block `blk` of group `grp`,
                        // with the block's packed weights `vecs[p]` for each phase p of `ph`.
                        let task = |grp: usize, ch: usize, blk: usize, vecs: [&[f32]; 2]| {
                            let (class, ch) = classes.class_chunk(ch);
                            // Its pixels: `p_c` an image (the class's phase rows, from `a0`).
                            let (a0, p_c) = (class.rows.start, class.rows.len() * na_x);
                            let (px0, npx) = class.chunk(ch);
                            // Its taps: a run of the phase's kernel rows, in each phase.
                            let taps =
                                |p: usize| class.taps.start * per_ty[p]..class.taps.end * per_ty[p];
                            let c0 = grp * c_in_g + blk * nr;
                            let n_ch = nr.min(c_in_g - blk * nr);
                            with_index_scratch(2 * npx, |idx| {
                                let (rows, offs) = idx.split_at_mut(npx);
                                // Image b, phase pixel q = (a, c), stepped without a division
                                // per row (as in the forward pass): `line_src` and `line_dst`
                                // are the offsets of phase row a's first pixel. A paired task's
                                // second phase reads the same grad_y pixels and writes the
                                // grad_x pixels one to the right.
                                let (img_src, img_dst) = (g.c_out * src.plane, g.c_in * hw);
                                let (mut b, mut q) = (px0 / p_c, px0 % p_c);
                                let (a, mut c) = (a0 + q / na_x, q % na_x);
                                let mut line_src = b * img_src + a * src.row;
                                let mut line_dst = b * img_dst + (ry + g.sh * a) * g.w + rx;
                                for (i, (r, o)) in rows.iter_mut().zip(offs.iter_mut()).enumerate()
                                {
                                    (*r, *o) = (line_src + c, line_dst + g.sw * c);
                                    if i + 1 == npx {
                                        break; // no step past the last pixel (as forward)
                                    }
                                    (q, c) = (q + 1, c + 1);
                                    if q == p_c {
                                        // The next image: the class's first row.
                                        (b, q, c) = (b + 1, 0, 0);
                                        line_src = b * img_src + a0 * src.row;
                                        line_dst = b * img_dst + (ry + g.sh * a0) * g.w + rx;
                                    } else if c == na_x {
                                        c = 0;
                                        line_src += src.row;
                                        line_dst += g.sh * g.w;
                                    }
                                }
                                let rows = &*rows;
                                let per_buf = (npx + MAX_LANES - 1) * nr;
                                with_scratch(ph.len() * per_buf, |buf| {
                                    let scatter = Scatter {
                                        dst: out,
                                        base: c0 * hw,
                                        ch_stride: hw,
                                        offs,
                                        n_ch,
                                        bias: bias.map(|bias| &bias[c0..c0 + n_ch]),
                                        relu: false,
                                    };
                                    scatter.prefetch(ph.len());
                                    for (p, buf) in buf.chunks_exact_mut(per_buf).enumerate() {
                                        let block = Block {
                                            src: &src.data[grp * c_out_g * src.plane..],
                                            red: Red::List(&reds[p][taps(p)]),
                                            vecs: &vecs[p][taps(p).start * nr..taps(p).end * nr],
                                            vstride: nr,
                                            rows,
                                            accumulate: false,
                                        };
                                        run_chunked(s, wide, &block, nr, buf);
                                    }
                                    let (buf0, buf1) = buf.split_at(per_buf);
                                    // SAFETY: this task writes channels c0..c0+n_ch at the pixels
                                    // (image and position) of phase (ry, rx) in its chunk (and of
                                    // phase (ry, rx + 1), one to the right, if paired): disjoint
                                    // from every other task of the phases, and phases partition
                                    // the pixels.
                                    unsafe {
                                        if ph.len() == 2 {
                                            scatter.write_pair(s, buf0, buf1, nr)
                                        } else {
                                            scatter.write(s, buf0, nr)
                                        }
                                    };
                                });
                            });
                        };
                        let order = TaskOrder::new(
                            chunks,
                            blocks,
                            red_total * nr,
                            g.n * c_out_g * src.plane,
                        );
                        // Block gb = (grp, blk) of phase p in `packed`: at ats[p] + gb*strides[p]
                        // (each phase's blocks in a run of their own, or both phases' rows block
                        // after block).
                        let block_of =
                            |ats: [usize; 2], strides: [usize; 2], p: usize, gb: usize| {
                                let at = ats[p] + gb * strides[p];
                                at..at + red_lens[p] * nr
                            };
                        let run_packed = |packed: &[f32], ats: [usize; 2], strides: [usize; 2]| {
                            for_each_task(g.g * chunks * blocks, |t| {
                                let (grp, ch, blk) = order.task(t);
                                let gb = grp * blocks + blk;
                                let vecs = [
                                    &packed[block_of(ats, strides, 0, gb)],
                                    &packed[block_of(ats, strides, 1, gb)],
                                ];
                                task(grp, ch, blk, vecs);
                            });
                        };
                        if let Some(packed) = hoisted {
                            // Every phase's rows block after block, packed before the first.
                            let i = ci * per_task;
                            let at = |p: usize| red_before.get(i + p).map_or(0, |r| r * nr);
                            return run_packed(packed, [at(0), at(1)], [red_every * nr; 2]);
                        }
                        match weights {
                            Weights::Packed(packed) => run_packed(
                                packed,
                                [ph[0].3, ph.get(1).map_or(0, |p| p.3)],
                                [red_lens[0] * nr, red_lens[1] * nr],
                            ),
                            // Weights outweigh grad_y (ResNet-50's 14x14 and 7x7 layers): each
                            // task packs one block of these phases into a buffer of its own,
                            // which stays in L2 while the task runs every row chunk over it, as
                            // in the forward pass.
                            Weights::ToPack(w)
                                if order.weights_major && g.g * blocks >= 2 * threads() =>
                            {
                                with_index_scratch(2 * red_total, |idx| {
                                    // Both phases' entries in one sweep (where the phases
                                    // are one task's: a pair of column phases). Measured
                                    // before all phases were packed at once (below): DCGAN's
                                    // 4x4 stride-2 transposed layer (256 -> 128 at 16x16),
                                    // per call, AVX-512 on Zen 4, 1 thread: 1.065x.
                                    let both = phases_entries(g, ph, idx);
                                    let khw = g.kh * g.kw;
                                    for_each_task(g.g * blocks, |t| {
                                        let (grp, blk) = (t / blocks, t % blocks);
                                        let n_ch = nr.min(c_in_g - blk * nr);
                                        // Input channel blk*nr of the group: its weights start
                                        // (blk*nr)*khw floats into the group's.
                                        let first = &w[(grp * c_out_g * c_in_g + blk * nr) * khw..];
                                        with_scratch(red_total * nr, |vecs| {
                                            pack_block(s, first, 0, n_ch, nr, khw, both, vecs);
                                            let (v0, v1) = vecs.split_at(red_lens[0] * nr);
                                            for ch in 0..chunks {
                                                task(grp, ch, blk, [v0, v1]);
                                            }
                                        });
                                    });
                                })
                            }
                            // Else these phases' blocks are packed together, then run.
                            Weights::ToPack(w) => {
                                // Block by block, both phases' rows one after the other, packed
                                // in one sweep as in the per-task packing above.
                                with_scratch(blocks_len(g.g, c_in_g, nr, red_total), |packed| {
                                    with_index_scratch(2 * red_total, |idx| {
                                        let both = phases_entries(g, ph, idx);
                                        pack_phase(s, g, w, nr, both, packed);
                                    });
                                    run_packed(packed, [0, red_lens[0] * nr], [red_total * nr; 2]);
                                })
                            }
                            Weights::Raw(_) => unreachable!("the column form returned above"),
                        }
                    });
                }
            };
            match weights {
                // More than one task's phases (a stride of 2 or more): pack every phase's
                // weights in one sweep, each output channel's taps moving in one register
                // transpose, not one per task's phases (and each task's blocks packed once per
                // call, not once per row of phases). DCGAN's 4x4 stride-2 transposed layer
                // (256 -> 128 at 16x16), forward with weights packed per call, AVX-512 on
                // Zen 4, 1 thread: 1.04x; ResNet-50's 3x3 stride-2 layers' backward-data
                // (128 at 56x56, 256 at 28x28) 1.02x and 1.07x (with the taps listed once
                // in `phase_weight_offsets`; 3-4 alternating runs).
                Weights::ToPack(w) if list.len() > per_task => {
                    with_scratch(blocks_len(g.g, c_in_g, nr, red_every), |packed| {
                        with_index_scratch(2 * red_every, |idx| {
                            let every = phases_entries(g, &list, idx);
                            pack_phase(s, g, w, nr, every, packed);
                        });
                        run_phases(Some(packed));
                    })
                }
                _ => run_phases(None),
            }
        },
    );
}

/// Turns `v` into its exclusive prefix sums; returns the total.
fn prefix_sums(v: &mut [usize]) -> usize {
    let mut total = 0;
    for x in v.iter_mut() {
        (*x, total) = (total, total + *x);
    }
    total
}

/// Backward-weight swaps its operands ([`backward_weight_swapped`]): a 1x1 unpadded layer
/// with fewer input than output channels per group, at least two vectors of them.
fn weight_swaps_operands<S: DirectIsa>(g: &ConvGeom) -> bool {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let inside = g.oh.saturating_sub(1) * g.sh < g.h && g.ow.saturating_sub(1) * g.sw < g.w;
    let one = g.kh == 1 && g.kw == 1 && g.pad_t == 0 && g.pad_l == 0 && inside;
    one && c_in_g < c_out_g && c_in_g >= 2 * S::LANES
}

/// Backward-weight of a 1x1 layer (see [`weight_swaps_operands`]) with the input as the
/// vector operand and `grad_y` broadcast where it lies:
///
/// ```text
/// pass             rows (tile height)   vector operand (NR channels)    broadcast operand
/// backward_weight  output channels      x [c_in block][b, pixel]         grad_y planes
/// ```
///
/// The pixel-form pass packs `grad_y` instead, all of it on every call: 3.2 MB for
/// ResNet-50's 64 -> 256 expansion at 56x56, against 0.8 MB of input packed here, and its
/// rows are the 64 input channels, 5 1/3 tiles of 12. The tile's buffer comes out in the
/// gradient's layout, so the epilogue is a copy. Tasks are (group, output-channel chunk,
/// input-channel block), blocks innermost so a chunk's `grad_y` planes are read again from
/// L2; but blocks outermost on several threads when the blocks split evenly between them,
/// as chunks of whole tiles may not (ResNet-50's 64 -> 256 expansion: 256 rows in chunks of
/// 96, 96 and 64, whose 6 tasks split as 288 + 224 rows; 1.18x on 2 threads, and 1.11x on
/// its 128 -> 512 at 28x28). Each gradient is summed over the pixels in one fixed order.
fn backward_weight_swapped<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    x: &[f32],
    grad_y: &[f32],
    grad_weight: &mut [f32],
) {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let (wide, ur, nr) = tile_for::<S>(c_in_g);
    let (p, hw) = (g.oh * g.ow, g.h * g.w);
    let np = g.n * p;
    let blocks = c_in_g.div_ceil(nr);
    let chunk = (ROWS_PER_TASK / 2).div_ceil(ur) * ur;
    let chunks = c_out_g.div_ceil(chunk);
    let out = SharedMut::new(grad_weight);
    with_scratch(blocks_len(g.g, c_in_g, nr, np), |packed| {
        // x transposed into blocks: [grp][c_in block][b*p + px][nr], pixel px of image b
        // read at (oy*sh, ox*sw).
        with_index_scratch(np, |red_src| {
            pixel_offsets(
                red_src,
                g.ow,
                g.oh,
                g.c_in * hw,
                g.sh.saturating_mul(g.w),
                g.sw,
            );
            let red = Entries::in_order(red_src);
            pack_blocks(s, x, g.g, c_in_g, nr, c_in_g * hw, hw, red, packed);
        });
        let packed = &*packed;
        with_index_scratch(np + c_out_g, |idx| {
            let (red, rows) = idx.split_at_mut(np);
            pixel_offsets(red, g.ow, g.oh, g.c_out * p, g.ow, 1);
            for (oc, o) in rows.iter_mut().enumerate() {
                *o = oc * p;
            }
            let (red, rows) = (&*red, &*rows);
            let blocks_outer = threads() > 1 && (g.g * blocks).is_multiple_of(threads());
            for_each_task(g.g * chunks * blocks, |t| {
                let (ch, blk) = if blocks_outer {
                    (t % chunks, t / chunks % blocks)
                } else {
                    (t / blocks % chunks, t % blocks)
                };
                let grp = t / (chunks * blocks);
                let o0 = ch * chunk;
                let nt = chunk.min(c_out_g - o0);
                let i0 = blk * nr;
                let n_ch = nr.min(c_in_g - i0);
                let block = Block {
                    src: &grad_y[grp * c_out_g * p..],
                    red: Red::List(red),
                    vecs: &packed[(grp * blocks + blk) * np * nr..][..np * nr],
                    vstride: nr,
                    rows: &rows[o0..o0 + nt],
                    accumulate: false,
                };
                with_scratch(nt * nr, |buf| {
                    run_chunked(s, wide, &block, nr, buf);
                    // The buffer is already [output channel][input channel], the gradient's
                    // own layout: each row is a copy, of whole vectors when the block is
                    // (a `memcpy` call per 16 floats, and the reloads of everything around
                    // it, had taken a third of ResNet-50's layer4 downsample).
                    let dst = out.rows((grp * c_out_g + o0) * c_in_g + i0, c_in_g, nt, n_ch);
                    s.dispatch(&mut CopyRows {
                        buf,
                        nr,
                        n_ch,
                        dst,
                        stride: c_in_g,
                    });
                });
            });
        });
    });
}

/// Copies rows of `nr` floats from `buf` to `dst + i * stride`, the first `n_ch` of each.
struct CopyRows<'a> {
    buf: &'a [f32],
    nr: usize,
    n_ch: usize,
    /// `buf.len() / nr` rows of `n_ch` floats `stride` apart, checked to lie in the
    /// destination and written by this job alone (see the caller).
    dst: *mut f32,
    stride: usize,
}

impl SimdJob for CopyRows<'_> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        let (nr, n_ch, l) = (self.nr, self.n_ch, S::LANES);
        assert!(n_ch <= nr && nr.is_multiple_of(l), "rows of whole vectors");
        for (i, row) in self.buf.chunks_exact(nr).enumerate() {
            let to = self.dst.wrapping_add(i * self.stride);
            if n_ch == nr {
                for v in (0..nr).step_by(l) {
                    // SAFETY: row has nr floats; row i of the destination has n_ch = nr
                    // (checked by SharedMut::rows, the caller's).
                    unsafe { s.store(to.add(v), s.load(row.as_ptr().add(v))) };
                }
            } else {
                for (c, &x) in row[..n_ch].iter().enumerate() {
                    // SAFETY: c < n_ch floats of row i of the destination (as above).
                    unsafe { *to.add(c) = x };
                }
            }
        }
    }
}

/// Backward-weight, pixel form (see the module docs); the batch has pixels to sum over.
fn backward_weight<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    x: &[f32],
    grad_y: &[f32],
    grad_weight: &mut [f32],
) {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let (wide, ur, nr) = tile_for::<S>(c_out_g);
    let k = c_in_g * g.kh * g.kw;
    let p = g.oh * g.ow;
    let np = g.n * p;
    let blocks = c_out_g.div_ceil(nr);
    // Few taps and many pixels (the stems: 147 taps, 12544 pixels; VGG's first layer: 27
    // and 50176): each task takes all of its block's taps and packs its own `grad_y` chunk
    // by chunk just before the tiles use it, instead of all of `grad_y` packed up front
    // (1.6 MB per block for the 7x7 stem, beyond L2) and read back from L3 by every task.
    let fused = k <= ROWS_PER_TASK && np * nr > FUSE_PACK_FLOATS && g.g * blocks >= threads();
    let chunk = if fused {
        k.div_ceil(ur).max(1) * ur
    } else {
        (ROWS_PER_TASK / 2).div_ceil(ur) * ur
    };
    let chunks = k.div_ceil(chunk);
    let out = SharedMut::new(grad_weight);
    with_padded_input(s, g, x, PadSplit::Planes, |src| {
        with_index_scratch(2 * np + k, |idx| {
            let (red_src, idx) = idx.split_at_mut(np);
            let (red, taps) = idx.split_at_mut(np);
            // grad_y's pixel b*p + px at b*c_out*p + px; the input's at its window's corner.
            pixel_offsets(red_src, g.ow, g.oh, g.c_out * p, g.ow, 1);
            let img = g.c_in * src.plane;
            pixel_offsets(red, g.ow, g.oh, img, g.sh.saturating_mul(src.row), g.sw);
            for (t, o) in taps.iter_mut().enumerate() {
                let (ic, ky, kx) = (t / (g.kh * g.kw), t / g.kw % g.kh, t % g.kw);
                *o = ic * src.plane + ky * g.dh * src.row + kx * g.dw;
            }
            let (red_src, red, taps) = (&*red_src, &*red, &*taps);
            let packed_len = if fused {
                0
            } else {
                blocks_len(g.g, c_out_g, nr, np)
            };
            with_scratch(packed_len, |packed| {
                // grad_y transposed into blocks: [grp][c_out block][b*p + px][nr].
                if !fused {
                    let red = Entries::in_order(red_src);
                    pack_blocks(s, grad_y, g.g, c_out_g, nr, c_out_g * p, p, red, packed);
                }
                let packed = &*packed;
                for_each_task(g.g * blocks * chunks, |t| {
                    let (grp, blk, ch) = (t / (blocks * chunks), t / chunks % blocks, t % chunks);
                    let t0 = ch * chunk;
                    let nt = chunk.min(k - t0);
                    let c0 = grp * c_out_g + blk * nr;
                    let n_ch = nr.min(c_out_g - blk * nr);
                    let block = Block {
                        src: &src.data[grp * c_in_g * src.plane..],
                        red: Red::List(red),
                        vecs: if fused {
                            &[]
                        } else {
                            &packed[(grp * blocks + blk) * np * nr..][..np * nr]
                        },
                        vstride: nr,
                        rows: &taps[t0..t0 + nt],
                        accumulate: false,
                    };
                    with_index_scratch(nt, |offs| {
                        for (i, o) in offs.iter_mut().enumerate() {
                            *o = t0 + i;
                        }
                        with_scratch((nt + MAX_LANES - 1) * nr, |buf| {
                            if fused {
                                with_scratch(RED_CHUNK * nr, |vecs| {
                                    let whole = PackedChunks {
                                        src: grad_y,
                                        base: c0 * p,
                                        lanes: n_ch,
                                        ch_stride: p,
                                        red_src,
                                        vecs,
                                    };
                                    whole.run(s, wide, &block, nr, buf);
                                });
                            } else {
                                run_chunked(s, wide, &block, nr, buf);
                            }
                            let scatter = Scatter {
                                dst: out,
                                base: c0 * k,
                                ch_stride: k,
                                offs,
                                n_ch,
                                bias: None,
                                relu: false,
                            };
                            // SAFETY: this task writes the gradient of channels c0..c0+n_ch at
                            // taps t0..t0+nt, disjoint from every other task.
                            unsafe { scatter.write(s, buf, nr) };
                        });
                    });
                });
            });
        });
    });
}

/// A block's vector operand packed chunk by chunk as [`run_chunked`] reaches it (see
/// [`backward_weight`]): chunk `r0..r1`'s vectors are
/// `src[base + lane*ch_stride + red_src[r]]`, packed into `vecs` (`RED_CHUNK * nr` floats).
struct PackedChunks<'a, 'v> {
    src: &'a [f32],
    base: usize,
    lanes: usize,
    ch_stride: usize,
    red_src: &'a [usize],
    vecs: &'v mut [f32],
}

impl PackedChunks<'_, '_> {
    /// [`run_chunked`] of `whole` (whose `vecs` this replaces) into `buf`.
    fn run<S: DirectIsa>(self, s: S, wide: bool, whole: &Block<'_>, nr: usize, buf: &mut [f32]) {
        let len = whole.red.len();
        if len == 0 {
            buf[..whole.rows.len() * nr].fill(0.0);
            return;
        }
        for r0 in (0..len).step_by(RED_CHUNK) {
            let r1 = len.min(r0 + RED_CHUNK);
            let vecs = &mut self.vecs[..(r1 - r0) * nr];
            let (src, red_src) = (self.src, &self.red_src[r0..r1]);
            pack_block(
                s,
                src,
                self.base,
                self.lanes,
                nr,
                self.ch_stride,
                Entries::in_order(red_src),
                vecs,
            );
            // The next chunk's lines, asked for (into L2) while this chunk's tiles run: a
            // lane's entries are mostly consecutive floats, so one address per LINE entries
            // covers them (at an image boundary a line may be missed, and fetched on use).
            let next = &self.red_src[r1..len.min(r1 + RED_CHUNK)];
            for lane in 0..self.lanes {
                let at = src.as_ptr().wrapping_add(self.base + lane * self.ch_stride);
                for &off in next.iter().step_by(LINE_FLOATS) {
                    prefetch_l2(at.wrapping_add(off));
                }
            }
            let block = Block {
                src: &whole.src[whole.red.src_shift(r0)..],
                red: whole.red.slice(r0, r1),
                vecs,
                vstride: nr,
                accumulate: r0 > 0,
                ..*whole
            };
            s.run(&block, buf, wide);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        ConvGeom, Entries, RED_CHUNK, ROWS_PER_TASK, RowClass, forward_entries, forward_order,
        phase_row_classes, phase_taps, phase_weight_offsets, phases, phases_entries, pixel_offsets,
        red_chunks, row_chunks, row_classes,
    };
    use crate::params::ConvParams;

    /// A square `r x r` kernel padded by `r / 2` on every side, at stride `s`.
    #[cfg(feature = "testing")]
    fn same(n: usize, c: usize, [h, w]: [usize; 2], k: usize, r: usize, s: usize) -> ConvGeom {
        ConvParams {
            padding: [r / 2; 4],
            stride: [s, s],
            ..ConvParams::new(n, c, h, w, k, [r, r])
        }
        .validate()
        .expect("a valid conv")
    }

    #[cfg(feature = "testing")]
    #[test]
    fn sixteen_lanes_keep_the_forward_column_form_for_few_well_filled_pixels() {
        // (batch, c_in, h, w, c_out, kernel, column form on 16 lanes)
        for (n, c, h, w, k, r, want) in [
            // ResNet-50's 7x7 layers at batch 1 and 2: 49 and 98 pixels in 64 and 128 lanes.
            (1, 512, 7, 7, 512, 3, false),
            (2, 512, 7, 7, 512, 3, false),
            (1, 2048, 7, 7, 512, 1, false),
            // 32 pixels fill a wide column; 25 fill 25 of its 32 lanes.
            (1, 512, 4, 8, 512, 3, true),
            (1, 512, 5, 5, 512, 3, true),
            // A wide column and a narrow one (48 lanes), where the weights' rows (576 floats
            // apart) spread over the L1 sets: 40 pixels fill more than 3/4, 36 exactly 3/4;
            // 1024 channels of a 1x1 layer (rows 4 KiB apart) keep the wide tile, 64 lanes.
            (1, 64, 5, 8, 100, 3, true),
            (1, 64, 6, 6, 100, 3, false),
            (1, 1024, 6, 6, 1024, 1, false),
            // 16 pixels: a narrow column with rows 9 KiB apart, a wide one with 18 KiB.
            (1, 256, 4, 4, 256, 3, true),
            (1, 512, 4, 4, 512, 3, false),
            // From 48 pixels the pixel form.
            (1, 64, 6, 8, 100, 3, false),
            // More pixels than channels: the pixel form, as on every ISA.
            (1, 16, 4, 8, 24, 3, false),
        ] {
            let got = super::forward_in_columns::<super::Emu16>(&same(n, c, [h, w], k, r, 1));
            assert_eq!(got, want, "{n}x{c}x{h}x{w} -> {k}, {r}x{r}");
        }
    }

    #[cfg(feature = "testing")]
    #[test]
    fn sixteen_lanes_keep_the_backward_column_form_for_1x1_and_full_columns() {
        // (batch, c_in, h, w, c_out, kernel, stride, column form on 16 lanes)
        for (n, c, h, w, k, r, s, want) in [
            // ResNet-50's 3x3 layers at 7x7, batch 1: 49-pixel planes and stride-2 phases.
            (1, 512, 7, 7, 512, 3, 1, false),
            (1, 512, 14, 14, 512, 3, 2, false),
            // Its 1x1 layers (the gathered weights), at batch 1 and 2.
            (1, 2048, 7, 7, 512, 1, 1, true),
            (2, 512, 7, 7, 2048, 1, 1, true),
            // 32 pixels in a wide column, 16 in a narrow one (rows 9 floats apart).
            (1, 40, 4, 8, 32, 3, 1, true),
            (1, 256, 4, 4, 256, 3, 1, true),
            // 36 pixels in 48 lanes, 25 in 32, 48 in 48.
            (1, 64, 6, 6, 100, 3, 1, false),
            (1, 512, 5, 5, 512, 3, 1, false),
            (1, 64, 6, 8, 100, 3, 1, false),
            // More pixels than input channels: the pixel form, as on every ISA.
            (1, 16, 4, 8, 24, 3, 1, false),
        ] {
            let got = super::backward_in_columns::<super::Emu16>(&same(n, c, [h, w], k, r, s));
            assert_eq!(got, want, "{n}x{c}x{h}x{w} -> {k}, {r}x{r} stride {s}");
        }
    }

    /// Geometries for the class tests, `(label, geometry)`: vertical strides, dilations,
    /// padding past the kernel's reach, batch 1 and 8 (5 columns, 3x3 wide kernels).
    fn class_geometries() -> impl Iterator<Item = (String, ConvGeom)> {
        [
            (7, 3, 1, 1, 1),
            (14, 3, 1, 1, 1),
            (28, 3, 1, 2, 2),
            (56, 3, 2, 1, 1),
            (224, 7, 2, 3, 1),
            (5, 5, 1, 2, 1),
            (3, 3, 2, 4, 1),
            (1, 3, 1, 3, 1),
            (9, 4, 3, 0, 1),
            (6, 2, 1, 1, 3),
            (9, 3, 1, 0, 1),
            (16, 4, 2, 1, 1),
        ]
        .into_iter()
        .flat_map(|(h, k, stride, pad, dil)| {
            [1, 8].map(move |n| {
                let p = ConvParams {
                    stride: [stride, 1],
                    padding: [pad, pad, 1, 1],
                    dilation: [dil, 1],
                    ..ConvParams::new(n, 4, h, 5, 8, [k, 3])
                };
                let label = format!("{h}x{k} s{stride} p{pad} d{dil} n{n}");
                (label, p.validate().expect("a valid conv"))
            })
        })
    }

    /// `(offset, row)` of every entry, as listed.
    fn listed(e: &Entries<'_>) -> Vec<(usize, usize)> {
        let rows = e.row.expect("the builders list rows");
        e.src.iter().copied().zip(rows.iter().copied()).collect()
    }

    /// The packer's entry lists are the reductions' rows by source offset, each row once:
    /// forward's `[ky][ic][kx]` rows, and backward-data's rows of one stride phase, of a
    /// pair of column phases and of every phase, whose rows follow one phase after another.
    #[test]
    fn entry_lists_are_the_reductions_by_source_offset() {
        let mut checked = 0;
        for (label, g) in class_geometries().chain([{
            // DCGAN's 4x4 stride-2 transposed layer, as its backward-data, with groups.
            let p = ConvParams {
                stride: [2, 2],
                padding: [1; 4],
                groups: 2,
                ..ConvParams::new(1, 6, 32, 32, 4, [4, 4])
            };
            ("dcgan".to_string(), p.validate().expect("a valid conv"))
        }]) {
            let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
            let k = c_in_g * g.kh * g.kw;
            let mut order = vec![0; k];
            forward_order(&g, &mut order);
            let (mut idx, mut want) = (vec![usize::MAX; 2 * k], vec![0; 2 * k]);
            let e = forward_entries(&g, k, &mut idx);
            let want = Entries::by_sorting(&order, &mut want);
            assert_eq!(listed(&e), listed(&want), "{label}: forward");
            let list: Vec<(usize, usize, usize, usize)> = phases(&g)
                .map(|(ry, rx, ty, tx)| (ry, rx, ty * tx, 0))
                .collect();
            let runs = (1..=list.len())
                .map(|n| &list[..n])
                .chain(list.windows(2))
                .chain(list.chunks(1));
            for ph in runs {
                // The phases' rows one after another, as the packed weights hold them.
                let mut red = Vec::new();
                for &(ry, rx, taps, _) in ph {
                    let mut offs = vec![0; c_out_g * taps];
                    phase_weight_offsets(&g, ry, rx, &mut offs);
                    red.extend(offs);
                }
                let (mut idx, mut want) = (vec![usize::MAX; 2 * red.len()], vec![0; 2 * red.len()]);
                let e = phases_entries(&g, ph, &mut idx);
                let want = Entries::by_sorting(&red, &mut want);
                assert_eq!(listed(&e), listed(&want), "{label}: phases {ph:?}");
                checked += 1;
            }
        }
        assert!(checked > 50, "only {checked} phase runs");
    }

    /// Row classes tile the output rows in order, each with a band of kernel rows; a
    /// kernel row left out of a class lands in the padding for every row of it; each
    /// class's chunks cover its pixels over the batch.
    #[test]
    fn row_classes_skip_only_taps_in_the_padding() {
        let mut split = 0;
        for (label, g) in class_geometries() {
            let classes = row_classes(&g, 12);
            split += usize::from(classes.len() > 1);
            let mut next = 0;
            for RowClass {
                rows,
                taps,
                pixels,
                ur,
                ..
            } in classes.iter()
            {
                assert_eq!(rows.start, next, "{label}: rows in order");
                next = rows.end;
                assert!(taps.start < taps.end && taps.end <= g.kh);
                for oy in rows.clone() {
                    for ky in (0..g.kh).filter(|ky| !taps.contains(ky)) {
                        let iy = (oy * g.sh + ky * g.dh) as isize - g.pad_t as isize;
                        assert!(
                            iy < 0 || iy >= g.h as isize,
                            "{label}: row {oy} skips tap {ky}"
                        );
                    }
                }
                assert_eq!(
                    (*pixels, *ur),
                    (g.n * rows.len() * g.ow, 12),
                    "{label}: pixels"
                );
            }
            assert_eq!(next, g.oh, "{label}: every row");
        }
        assert!(split >= 8, "only {split} geometries split into classes");
        // ResNet-50's 7x7 layer at batch 8: the first and last rows skip a kernel row.
        let g = ConvParams {
            padding: [1; 4],
            ..ConvParams::new(8, 512, 7, 7, 512, [3, 3])
        };
        let classes = row_classes(&g.validate().expect("a valid conv"), 12);
        let bands: Vec<_> = classes
            .iter()
            .map(|c| (c.rows.clone(), c.taps.clone()))
            .collect();
        assert_eq!(bands, [(0..1, 1..3), (1..6, 0..3), (6..7, 0..2)]);
        // At 56x56 the classes save 1.3% (two rows of 56 skip a third of their taps;
        // whole tiles); at 224x224 0.3%, under MIN_CLASS_SAVING: one class.
        let classes_at = |hw: usize| {
            let g = ConvParams {
                padding: [1; 4],
                ..ConvParams::new(1, 64, hw, hw, 64, [3, 3])
            };
            row_classes(&g.validate().expect("a valid conv"), 12).len()
        };
        assert_eq!((classes_at(56), classes_at(224)), (3, 1));
    }

    /// A class's chunks tile its pixels in order, each starting on a whole tile of `ur` and
    /// holding at least one, their whole tiles within one of each other: one chunk per
    /// `ROWS_PER_TASK` pixels begun, unless there are fewer tiles.
    #[test]
    fn row_chunks_share_whole_tiles_evenly() {
        for ur in [1, 4, 6, 12, 14, 16, 28] {
            for pixels in (0..2000).chain([3136, 100_352]) {
                let class = RowClass {
                    pixels,
                    ur,
                    chunks: row_chunks(pixels, ur),
                    ..RowClass::default()
                };
                let tiles = pixels.div_ceil(ur);
                let label = format!("{pixels} pixels, ur {ur}");
                assert_eq!(
                    class.chunks,
                    pixels.div_ceil(ROWS_PER_TASK).min(tiles),
                    "{label}: chunks"
                );
                let (mut next, mut fewest, mut most) = (0, usize::MAX, 0);
                for ch in 0..class.chunks {
                    let (q0, n) = class.chunk(ch);
                    assert_eq!(q0, next, "{label}: chunk {ch} starts where the last ended");
                    assert!(q0 % ur == 0 && n > 0, "{label}: chunk {ch} at {q0} of {n}");
                    let whole = n.div_ceil(ur);
                    (fewest, most, next) = (fewest.min(whole), most.max(whole), q0 + n);
                }
                assert_eq!(next, pixels, "{label}: every pixel");
                assert!(
                    class.chunks == 0 || most - fewest <= 1,
                    "{label}: {fewest}..{most}"
                );
            }
        }
        // A stride-2 backward-data phase of ResNet-50 (28x28): 66 tiles of 12, the last
        // partial, in 5 chunks of 13, 13, 13, 13, 14 tiles (not 4 x 14 + 10).
        let class = RowClass {
            pixels: 784,
            ur: 12,
            chunks: row_chunks(784, 12),
            ..RowClass::default()
        };
        let sizes: Vec<usize> = (0..class.chunks).map(|ch| class.chunk(ch).1).collect();
        assert_eq!(sizes, [156, 156, 156, 156, 160]);
    }

    /// Backward-data's phase row classes tile each phase's rows in order, each with a band
    /// of the phase's kernel rows; a kernel row left out of a class reads a `grad_y` row
    /// outside it for every row of the class; a vertical stride over 1 keeps one class.
    #[test]
    fn phase_row_classes_skip_only_taps_outside_grad_y() {
        let mut split = 0;
        for (label, g) in class_geometries() {
            for ry in 0..g.sh.min(g.h) {
                let na_y = (g.h - ry).div_ceil(g.sh);
                let classes = phase_row_classes(&g, ry, na_y, g.w, 12);
                split += usize::from(classes.len() > 1);
                assert!(g.sh == 1 || classes.len() == 1, "{label}: one class");
                let qs: Vec<isize> = phase_taps(ry, g.sh, g.dh, g.pad_t, g.kh)
                    .map(|(_, q)| q)
                    .collect();
                let mut next = 0;
                for RowClass { rows, taps, .. } in classes.iter() {
                    assert_eq!(rows.start, next, "{label}: rows in order");
                    next = rows.end;
                    assert!(taps.end <= qs.len() && (taps.start < taps.end || qs.is_empty()));
                    for a in rows.clone() {
                        for (_, q) in qs.iter().enumerate().filter(|(i, _)| !taps.contains(i)) {
                            let iy = a as isize + q;
                            assert!(
                                iy < 0 || iy >= g.oh as isize,
                                "{label}: phase row {a} skips a tap inside"
                            );
                        }
                    }
                }
                assert_eq!(next, na_y, "{label}: every row");
            }
        }
        assert!(split >= 6, "only {split} phases split into classes");
    }

    /// The reduction's chunks cover `0..len` in order, without gaps or overlap, one chunk
    /// below `1.5 * chunk` steps and otherwise each of `0.75..=1.25 * chunk` steps (rounded
    /// out), for the chunk sizes the kernels use and odd ones, also for lengths whose
    /// products with the chunk count would overflow (there the first and last few chunks).
    #[test]
    fn reduction_chunks_tile_the_reduction_without_slivers() {
        for chunk in [RED_CHUNK, 1, 3, 64, 128, 256, 512, 4096] {
            let check = |len: usize, r0: usize, r1: usize| {
                let steps = r1.checked_sub(r0).expect("ordered bounds");
                if len.saturating_mul(2) < 3 * chunk {
                    assert_eq!((r0, steps), (0, len), "len {len}, chunk {chunk}: one chunk");
                } else {
                    assert!(
                        4 * steps + 3 >= 3 * chunk && 4 * steps <= 5 * chunk + 3,
                        "len {len}, chunk {chunk}: chunk {r0}..{r1}"
                    );
                }
            };
            for len in (1..3000).chain([100_000, 1 << 20]) {
                let mut next = 0;
                for (r0, r1) in red_chunks(len, chunk) {
                    assert_eq!(
                        r0, next,
                        "len {len}, chunk {chunk}: chunks must be contiguous"
                    );
                    check(len, r0, r1);
                    next = r1;
                }
                assert_eq!(
                    next, len,
                    "len {len}, chunk {chunk}: must end at the reduction's end"
                );
            }
            for len in [1 << 40, usize::MAX / 3, usize::MAX - 1, usize::MAX] {
                let (mut first, mut last) = (0, len);
                for (r0, r1) in red_chunks(len, chunk).take(3) {
                    assert_eq!(r0, first, "len {len}: first chunks contiguous");
                    check(len, r0, r1);
                    first = r1;
                }
                for (r0, r1) in red_chunks(len, chunk).rev().take(3) {
                    assert_eq!(r1, last, "len {len}: last chunks contiguous, ending at len");
                    check(len, r0, r1);
                    last = r0;
                }
            }
        }
        assert_eq!(
            red_chunks(0, RED_CHUNK).count(),
            0,
            "an empty reduction has no chunks"
        );
        // The cases that motivated it: the 7x7 stem's 147 steps and LeNet C3's 150 in one
        // chunk each, not 128 and a sliver.
        assert_eq!(red_chunks(147, RED_CHUNK).collect::<Vec<_>>(), [(0, 147)]);
        assert_eq!(red_chunks(150, RED_CHUNK).collect::<Vec<_>>(), [(0, 150)]);
    }

    /// `pixel_offsets` against its formula, over batches, single rows and columns, and
    /// strides that would overflow if an offset past the last row or column were formed.
    #[test]
    fn pixel_offsets_match_their_formula() {
        let big = usize::MAX / 2;
        let cases = [
            (3, 4, 5, 1000, 37, 2),
            (1, 112, 112, 0, 230 * 2, 2),
            (2, 1, 7, 100, big, 3),
            (2, 6, 1, 100, 9, big),
            (1, 1, 1, big, big, big),
            (0, 3, 3, 10, 3, 1),
        ];
        for (n, oh, ow, img, row, col) in cases {
            let mut out = vec![usize::MAX; n * oh * ow];
            pixel_offsets(&mut out, ow, oh, img, row, col);
            for (i, &o) in out.iter().enumerate() {
                let (b, y, x) = (i / (oh * ow), i % (oh * ow) / ow, i % ow);
                // The product form, in the same order; only real pixels' terms are nonzero.
                let want = (if b > 0 { b * img } else { 0 })
                    + (if y > 0 { y * row } else { 0 })
                    + (if x > 0 { x * col } else { 0 });
                assert_eq!(o, want, "n={n} {oh}x{ow} pixel {i}");
            }
        }
        // An empty image leaves the (empty) list alone rather than dividing by zero.
        pixel_offsets(&mut [], 0, 5, 1, 1, 1);
    }
}
