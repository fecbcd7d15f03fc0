//! Backward-weight of the pixel-vectorised kernel for stride-1 convs with few output
//! channels per group (LeNet's C1: 1 -> 6, 5x5, whose channel-vectorised tile filled 6 of 16
//! or 32 lanes), or few weights per output channel (VGG's stem: 3 -> 64, 27 weights).
//!
//! Each weight gradient is a dot product over the batch's pixels, `dw[o][t] = sum_b sum_q
//! dy[b][o][q] * x[b][q + off(t)]`, on flat planes: with `R = ow + (kw - 1) * dw` the
//! padded input's row width, output pixel `(oy, ox)` sits at `q = oy * R + ox` and tap
//! `t = (ic, ky, kx)` reads the padded input at `q + ic * plane + ky * dh * R + kx * dw`.
//! The output gradient is copied onto the same grid (zeros at `ox >= ow`), so the lanes past
//! a row add nothing. The tile keeps `J` output channels x `T` taps of vector accumulators
//! (3 x 4 with vectors of 8 lanes or fewer; 6 x 4 with 16 lanes, the AVX-512 level with 32
//! registers, 3 x 8 there for up to 3 channels), and every tile
//! sums a block of pixels before any sums the next, so the block stays in L1:
//!
//! ```text
//!   acc[j][t] += dy[o0 + j][q ..] * x[off(t0 + t) + q ..]    (J + T loads, J*T FMAs)
//! ```
//!
//! Tasks split groups, and chunks of images or parts of an image's flat pixels (so one
//! large image spreads over the threads); a task copies the padded input rows its pixels'
//! taps read, and one tile's channels of the output gradient per block of pixels as the
//! tiles need them (prefetching the next tile's lines meanwhile), summing the bias gradient
//! from that copy when the caller wants it. It keeps its vector accumulators across its
//! images and sums their lanes once at the end, into its own partial gradient, and the
//! partials are added in task order (bitwise the same for any thread count).
//!
//! The lanes past each row multiply the gradient's zeros by real input pixels (of the next
//! columns or rows): nothing for finite inputs, but NaN for an infinite or NaN pixel that the
//! true sum never multiplies there. The tasks check the input windows they copy, and an
//! input with a non-finite value in any of them takes the channel-vectorised kernel's
//! backward-weight instead, which multiplies only real pairs. (A separate scan of the input
//! before the tasks read it from memory once more: 14% of the 64 -> 3 output layer at
//! 224x224.)

use super::rows::short_reduction;
use super::{DirectIsa, MAX_LANES, SimdJob};
use crate::parallel::{for_each_chunk_mut, with_index_scratch, with_scratch};
use crate::params::ConvGeom;
use crate::simd::prefetch_l2;
use std::sync::atomic::{AtomicBool, Ordering};

/// Most images per task.
const TASK_IMAGES: usize = 8;
/// Flat pixels per task: an image with more splits into parts of this many; smaller ones
/// share a task, up to [`TASK_IMAGES`] of them.
const Q_TASK: usize = 8 * Q_BLOCK;
/// Output channels x taps per tile with 16-lane vectors (AVX-512's 32 registers): 6 x 4, 24
/// accumulators, 6 gradient vectors and an input vector in registers.
const J: usize = 6;
const T_WIDE: usize = 4;
/// Output channels per tile for up to this many with 16-lane vectors (RGB images' 3, where
/// the 6-channel tile spent half its FMAs on missing channels), with twice the taps (the
/// same accumulators); and every tile with narrower vectors (AVX2's 16 registers), with
/// [`T_NARROW`] taps: 12 accumulators, 3 gradient vectors and an input vector. (Zen 3's
/// 6 x 2 tile needed 18 registers: the compiler kept two accumulators on the stack, and
/// their store-to-load round trip every pixel vector held VGG's stem at 20 GFLOP/s.)
const J_FEW: usize = 3;
const T_NARROW: usize = 4;
/// The most taps of any tile.
const MAX_T: usize = 2 * T_WIDE;
/// Flat pixels per block: every tile sums one block before the next, so the block's
/// output-gradient rows (4 KiB per channel of the tile) and the input rows its taps read stay in L1, rather
/// than every tile streaming whole planes (200 KiB per channel at 224x224) from memory.
const Q_BLOCK: usize = 1024;

/// Whether the pixel-vectorised kernel runs backward-weight of `g`: stride 1, at most 8
/// output channels per group or fewer than 32 weights per output channel (`rows.rs`'s
/// `SHORT_REDUCTION`: the channel-vectorised kernel transposes the whole output gradient
/// for a reduction that short; 3 -> 16 and 3 -> 64 at 224x224 1.3x on one thread, 1.4-2.5x
/// on two), not depthwise, 1x1 or dense (the depthwise kernel and the channel-vectorised
/// kernel's GEMM forms have those).
pub(crate) fn fits(g: &ConvGeom) -> Result<(), &'static str> {
    if g.is_depthwise() || g.is_dense() || g.is_pointwise() {
        return Err("depthwise, dense and 1x1 backward-weight (their own kernels and forms)");
    }
    if g.c_out / g.g > 8 && !short_reduction(g, g.c_in / g.g) {
        return Err(
            "backward-weight with more than 8 output channels per group, over 32 or more \
             weights each",
        );
    }
    if g.sh != 1 || g.sw != 1 {
        return Err("backward-weight at strides other than 1");
    }
    Ok(())
}

/// Backward-weight of `g` (see the module docs), and the bias gradient (`g.c_out` sums of
/// `grad_y`'s planes) when `grad_bias` is given, summed as the tiles copy `grad_y` (else a
/// second pass over it from memory: a fifth of VGG's stem); `fits(g)` holds.
pub(super) fn backward_weight<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    x: &[f32],
    grad_y: &[f32],
    grad_weight: &mut [f32],
    mut grad_bias: Option<&mut [f32]>,
) {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let k = c_in_g * g.kh * g.kw;
    if g.n == 0 || g.oh * g.ow == 0 {
        // No pixels to sum over: the gradients are zero.
        grad_weight.fill(0.0);
        if let Some(gb) = grad_bias {
            gb.fill(0.0);
        }
        return;
    }
    // Tasks: chunks of images, or parts of an image's flat pixels (ranges of Q_TASK), so a
    // single large image spreads over the threads; the split does not depend on how many
    // threads there are.
    let q_len = flat_len(g, S::LANES);
    let parts = q_len.div_ceil(Q_TASK);
    let per_chunk = if parts > 1 {
        1
    } else {
        (Q_TASK / q_len).clamp(1, TASK_IMAGES)
    };
    let chunks = g.n.div_ceil(per_chunk) * parts;
    // A task's partial: its weight gradient `[oc][tap]`, then its bias sums `[oc]`.
    let per_group = c_out_g * k;
    let with_bias = grad_bias.is_some();
    let per_task = per_group + if with_bias { c_out_g } else { 0 };
    let non_finite = AtomicBool::new(false);
    with_scratch(g.g * chunks * per_task, |partials| {
        for_each_chunk_mut(partials, per_task, |t, partial| {
            let (grp, chunk) = (t / chunks, t % chunks);
            let (chunk, part) = (chunk / parts, chunk % parts);
            let images = chunk * per_chunk..g.n.min((chunk + 1) * per_chunk);
            let qs = part * Q_TASK..q_len.min((part + 1) * Q_TASK);
            // Once a task has found a non-finite input, the partials are thrown away.
            if non_finite.load(Ordering::Relaxed) {
                return;
            }
            if task(s, g, x, grad_y, grp, images, qs, partial, with_bias) {
                non_finite.store(true, Ordering::Relaxed);
            }
        });
        if non_finite.load(Ordering::Relaxed) {
            return;
        }
        // The partials in task order, for every thread count alike.
        for grp in 0..g.g {
            let dst = &mut grad_weight[grp * per_group..][..per_group];
            let mut db = grad_bias
                .as_deref_mut()
                .map(|gb| &mut gb[grp * c_out_g..][..c_out_g]);
            for chunk in 0..chunks {
                let p = &partials[(grp * chunks + chunk) * per_task..][..per_task];
                let (pw, pb) = p.split_at(per_group);
                if chunk == 0 {
                    dst.copy_from_slice(pw);
                    if let Some(db) = db.as_deref_mut() {
                        db.copy_from_slice(pb);
                    }
                } else {
                    dst.iter_mut().zip(pw).for_each(|(d, v)| *d += v);
                    if let Some(db) = db.as_deref_mut() {
                        db.iter_mut().zip(pb).for_each(|(d, v)| *d += v);
                    }
                }
            }
        }
    });
    if non_finite.into_inner() {
        super::backward_weight(s, g, x, grad_y, grad_weight);
        if let Some(gb) = grad_bias {
            crate::bias::bias_grad(grad_y, g.n, g.c_out, g.oh * g.ow, gb);
        }
    }
}

/// Flat output pixels of an image, `(oh - 1) * R + ow`, in whole vectors of `l`.
fn flat_len(g: &ConvGeom, l: usize) -> usize {
    let r = g.ow + (g.kw - 1) * g.dw;
    ((g.oh - 1) * r + g.ow).div_ceil(l) * l
}

/// One task: group `grp`'s gradient over flat pixels `qs` (whole vectors) of `images`, into
/// `partial` (`[oc][tap]`, then with `with_bias` the sums of `grad_y`'s pixels `[oc]`).
/// Returns whether the input windows it copied hold an infinite or NaN value (then
/// `partial` is unspecified).
#[allow(clippy::too_many_arguments)]
fn task<S: DirectIsa>(
    s: S,
    g: &ConvGeom,
    x: &[f32],
    grad_y: &[f32],
    grp: usize,
    images: std::ops::Range<usize>,
    qs: std::ops::Range<usize>,
    partial: &mut [f32],
    with_bias: bool,
) -> bool {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let l = S::LANES;
    let (j_tile, t_tile) = match (l >= 16, c_out_g <= J_FEW) {
        (true, false) => (J, T_WIDE),
        (true, true) => (J_FEW, MAX_T),
        (false, _) => (J_FEW, T_NARROW),
    };
    let k = c_in_g * g.kh * g.kw;
    // At stride 1 the taps read R = ow + (kw - 1) * dw padded columns (w + pad_l + pad_r,
    // or fewer when the output is cropped) and oh + (kh - 1) * dh padded rows.
    let r = g.ow + (g.kw - 1) * g.dw;
    let rows = g.oh + (g.kh - 1) * g.dh;
    // The padded rows the taps of flat pixels qs read: from qs's first row to its last
    // row's last tap row, and one more, which the lanes past a row's end reach.
    let y0 = qs.start / r;
    let y1 = rows.min((qs.end - 1) / r + (g.kh - 1) * g.dh + 2);
    let plane = (y1 - y0) * r;
    // Pixel q's tap t reads the window at q - y0 * R + off(t). The last vector of the last
    // tap ends within the window, or, when the window ends at the plane's last row, before
    // c_in_g * plane + l; zeros after the planes (R + l of them, a margin).
    let x_len = c_in_g * plane + r + l;
    let oc_pad = c_out_g.div_ceil(j_tile) * j_tile;
    let k_pad = k.div_ceil(t_tile) * t_tile;
    let dy_len = J * Q_BLOCK;
    let acc_len = oc_pad * k_pad * l;
    let bias_len = if with_bias { c_out_g * l } else { 0 };
    let mut non_finite = false;
    with_scratch(x_len + dy_len + acc_len + bias_len, |buf| {
        let (xs, rest) = buf.split_at_mut(x_len);
        let (dys, rest) = rest.split_at_mut(dy_len);
        let (accs, bias) = rest.split_at_mut(acc_len);
        // Zeros once: the slack after the input planes is never written below.
        xs[c_in_g * plane..].fill(0.0);
        accs.fill(0.0);
        bias.fill(0.0);
        with_index_scratch(k_pad, |offs| {
            for (t, o) in offs.iter_mut().enumerate() {
                // Taps past k read tap 0's pixels into accumulators that are never summed.
                let t = if t < k { t } else { 0 };
                let (ic, ky, kx) = (t / (g.kh * g.kw), t / g.kw % g.kh, t % g.kw);
                *o = ic * plane + ky * g.dh * r + kx * g.dw;
            }
            for b in images {
                let src = &x[(b * g.c_in + grp * c_in_g) * g.h * g.w..][..c_in_g * g.h * g.w];
                // The window: padded rows y0..y1 of each input plane.
                for (ic, win) in xs[..c_in_g * plane].chunks_exact_mut(plane).enumerate() {
                    for (row, y) in win.chunks_exact_mut(r).zip(y0..y1) {
                        match y.checked_sub(g.pad_t).filter(|&sy| sy < g.h) {
                            Some(sy) => {
                                // The input's columns up to R (a cropped output, as with a
                                // transposed conv's output padding, needs fewer).
                                let left = g.pad_l.min(r);
                                let n = g.w.min(r - left);
                                row[..left].fill(0.0);
                                let src = &src[(ic * g.h + sy) * g.w..][..n];
                                non_finite |= copy_checked(&mut row[left..left + n], src);
                                row[left + n..].fill(0.0);
                            }
                            None => row.fill(0.0),
                        }
                    }
                }
                if non_finite {
                    // The caller starts over on the channel-vectorised kernel.
                    break;
                }
                let p = g.oh * g.ow;
                s.dispatch(&mut Job {
                    x: xs,
                    x_base: y0 * r,
                    grad_y: &grad_y[(b * g.c_out + grp * c_out_g) * p..][..c_out_g * p],
                    plane: p,
                    ow: g.ow,
                    r,
                    dy: dys,
                    bias: with_bias.then_some(&mut *bias),
                    acc: accs,
                    offs,
                    qs: qs.clone(),
                    oc_pad,
                    j_tile,
                    t_tile,
                });
            }
        });
        // Lane sums of the accumulators of the real channels and taps.
        let mut lanes = [0.0f32; MAX_LANES];
        for oc in 0..c_out_g {
            for t in 0..k {
                lanes[..l].copy_from_slice(&accs[(oc * k_pad + t) * l..][..l]);
                partial[oc * k + t] = lanes[..l].iter().sum();
            }
        }
        if with_bias {
            for (p, b) in partial[c_out_g * k..].iter_mut().zip(bias.chunks_exact(l)) {
                *p = b.iter().sum();
            }
        }
    });
    non_finite
}

/// Copies `src` to `dst`; whether `src` holds an infinite or NaN value (checked with
/// integer lanes, which the compiler vectorises with the copy).
fn copy_checked(dst: &mut [f32], src: &[f32]) -> bool {
    let mut any = 0u32;
    for (d, v) in dst.iter_mut().zip(src) {
        *d = *v;
        any |= u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000);
    }
    any != 0
}

/// One image's contribution to a task's vector accumulators `acc` (`[oc][tap][lane]`).
struct Job<'a> {
    /// Padded input rows from flat pixel `x_base` on, of every input plane (see `task`).
    x: &'a [f32],
    x_base: usize,
    /// The image's output-gradient planes of the group (`oh x ow` each).
    grad_y: &'a [f32],
    /// Pixels of an output-gradient plane.
    plane: usize,
    ow: usize,
    /// The flat grid's row width.
    r: usize,
    /// One tile's channels of a block of flat pixels, `[j][Q_BLOCK]` (see [`Job::gather`]).
    dy: &'a mut [f32],
    /// The bias gradient's vector sums, `[oc][lane]`, when the caller wants it.
    bias: Option<&'a mut [f32]>,
    acc: &'a mut [f32],
    offs: &'a [usize],
    /// The flat pixels to sum over (whole vectors).
    qs: std::ops::Range<usize>,
    oc_pad: usize,
    j_tile: usize,
    t_tile: usize,
}

impl SimdJob for Job<'_> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        match (self.j_tile, self.t_tile) {
            (J, _) => self.tiles::<S, J, T_WIDE>(s),
            (_, MAX_T) => self.tiles::<S, J_FEW, MAX_T>(s),
            _ => self.tiles::<S, J_FEW, T_NARROW>(s),
        }
    }
}

impl Job<'_> {
    /// Copies channels `o0..o0 + jt` of flat pixels `q0..q1` onto the flat grid at `dy[j *
    /// Q_BLOCK + q - q0]`: zeros at the columns past each output row, past the last output
    /// pixel and for channels past the group's. One tile's block, so it stays in L1 while
    /// the tiles of every tap read it (copying the whole image's gradient first streamed
    /// it through memory twice more: 13 MB at 64 channels of 224x224). Adds the copy to the
    /// channels' bias sums when the job has them.
    #[inline(always)]
    fn gather<S: DirectIsa>(&mut self, s: S, o0: usize, jt: usize, q0: usize, q1: usize) {
        let (r, ow, p, l) = (self.r, self.ow, self.plane, S::LANES);
        let (oy0, ox0) = (q0 / r, q0 % r);
        for j in 0..jt {
            let dst = &mut self.dy[j * Q_BLOCK..][..q1 - q0];
            let Some(src) = self.grad_y.get((o0 + j) * p..(o0 + j + 1) * p) else {
                dst.fill(0.0);
                continue;
            };
            // Flat row by flat row: its output pixels, then its padding columns.
            let (mut q, mut oy, mut ox) = (q0, oy0, ox0);
            while q < q1 {
                let end = q1.min(q + r - ox);
                let mut n = 0;
                if ox < ow && oy * ow < p {
                    n = (ow - ox).min(end - q);
                    dst[q - q0..][..n].copy_from_slice(&src[oy * ow + ox..][..n]);
                }
                dst[q - q0 + n..end - q0].fill(0.0);
                (q, oy, ox) = (end, oy + 1, 0);
            }
            // The bias sums, from the copy in L1 (its zeros add nothing), in four chains
            // of vectors.
            if let Some(bias) = self.bias.as_deref_mut() {
                let sums = &mut bias[(o0 + j) * l..][..l];
                let mut quads = dst.chunks_exact(4 * l);
                // SAFETY: every load reads l floats of a chunk of l or more floats, and the
                // load and store of `sums` l floats of its l.
                unsafe {
                    let mut v = [s.load(sums.as_ptr()), s.zero(), s.zero(), s.zero()];
                    for quad in &mut quads {
                        for (i, vi) in v.iter_mut().enumerate() {
                            *vi = s.add(*vi, s.load(quad[i * l..].as_ptr()));
                        }
                    }
                    for rest in quads.remainder().chunks_exact(l) {
                        v[0] = s.add(v[0], s.load(rest.as_ptr()));
                    }
                    let v = s.add(s.add(v[0], v[1]), s.add(v[2], v[3]));
                    s.store(sums.as_mut_ptr(), v);
                }
            }
        }
    }

    /// Asks for the lines of channels `o0..o0 + jt`'s output pixels at flat pixels `q0..q1`
    /// to be brought into L2, ahead of the [`Job::gather`] that copies them. Each gather
    /// reads a few KiB of each of its channels' planes, a plane apart: cold lines of a new
    /// page each, which the hardware prefetchers do not fetch ahead (VGG's stem spent as
    /// long in the gather's copies as in the FMAs).
    #[inline(always)]
    fn prefetch(&self, o0: usize, jt: usize, q0: usize, q1: usize) {
        let (r, ow, p) = (self.r, self.ow, self.plane);
        let pixel = |q: usize| (q / r * ow + (q % r).min(ow)).min(p);
        let (a, b) = (pixel(q0), pixel(q1));
        // Lines of 16 floats.
        const LINE: usize = 16;
        for j in o0..o0 + jt {
            let Some(src) = self.grad_y.get(j * p..(j + 1) * p) else {
                break;
            };
            for i in (a..b).step_by(LINE) {
                prefetch_l2(src[i..].as_ptr());
            }
            // The last line, which the steps from an unaligned `a` can miss.
            if a < b {
                prefetch_l2(src[b - 1..].as_ptr());
            }
        }
    }

    #[inline(always)]
    fn tiles<S: DirectIsa, const JT: usize, const T: usize>(&mut self, s: S) {
        let l = S::LANES;
        let k_pad = self.offs.len();
        assert!(
            (JT, T) == (self.j_tile, self.t_tile) && k_pad.is_multiple_of(T),
            "weight tile shape differs from the job's"
        );
        // Bounds for the raw reads below, checked once: every tap's last vector stays in x,
        // every channel's in dy, every accumulator in acc.
        let max_off = self.offs.iter().copied().max().unwrap_or(0);
        let qs = self.qs.clone();
        assert!(
            qs.start.is_multiple_of(l)
                && qs.end.is_multiple_of(l)
                && qs.start >= self.x_base
                && max_off + qs.end - self.x_base <= self.x.len(),
            "flat input out of range"
        );
        assert!(
            self.oc_pad.is_multiple_of(JT) && JT * Q_BLOCK <= self.dy.len(),
            "gradient block out of range"
        );
        assert!(
            self.oc_pad * k_pad * l <= self.acc.len(),
            "accumulators out of range"
        );
        let (x, acc) = (self.x.as_ptr(), self.acc.as_mut_ptr());
        // Blocks of Q_BLOCK flat pixels (a multiple of every LANES, so of l): each lane's
        // sum still runs over q in order, so the result is the same bits as unblocked.
        let x_base = self.x_base;
        for q0 in qs.clone().step_by(Q_BLOCK) {
            let q1 = qs.end.min(q0 + Q_BLOCK);
            for o0 in (0..self.oc_pad).step_by(JT) {
                self.gather(s, o0, JT, q0, q1);
                // The next gather's lines: the next tile's channels, or the first tile's
                // of the next block.
                if o0 + JT < self.oc_pad {
                    self.prefetch(o0 + JT, JT, q0, q1);
                } else if q1 < qs.end {
                    self.prefetch(0, JT, q1, qs.end.min(q1 + Q_BLOCK));
                }
                let dy = self.dy.as_ptr();
                for t0 in (0..k_pad).step_by(T) {
                    let mut offs = [0usize; T];
                    offs.copy_from_slice(&self.offs[t0..t0 + T]);
                    let mut a = [[s.zero(); T]; JT];
                    for (j, a_j) in a.iter_mut().enumerate() {
                        for (t, a_jt) in a_j.iter_mut().enumerate() {
                            // SAFETY: ((o0 + j) * k_pad + t0 + t + 1) * l <= oc_pad * k_pad * l
                            // <= acc.len() (asserted above).
                            *a_jt = unsafe { s.load(acc.add(((o0 + j) * k_pad + t0 + t) * l)) };
                        }
                    }
                    // LOOP: the block's flat pixels, one vector at a time.
                    for q in (q0..q1).step_by(l) {
                        let mut d = [s.zero(); JT];
                        for (j, d_j) in d.iter_mut().enumerate() {
                            // SAFETY: j * Q_BLOCK + q - q0 + l <= JT * Q_BLOCK <= dy.len()
                            // (asserted above), as q + l <= q1 <= q0 + Q_BLOCK.
                            *d_j = unsafe { s.load(dy.add(j * Q_BLOCK + q - q0)) };
                        }
                        for (t, &off) in offs.iter().enumerate() {
                            // SAFETY: x_base <= q and off + q - x_base + l <= max_off +
                            // qs.end - x_base <= x.len() (asserted above).
                            let xv = unsafe { s.load(x.add(off + q - x_base)) };
                            for (a_j, d_j) in a.iter_mut().zip(&d) {
                                a_j[t] = s.mul_add(*d_j, xv, a_j[t]);
                            }
                        }
                    }
                    for (j, a_j) in a.iter().enumerate() {
                        for (t, a_jt) in a_j.iter().enumerate() {
                            // SAFETY: as for the loads above.
                            unsafe { s.store(acc.add(((o0 + j) * k_pad + t0 + t) * l), *a_jt) };
                        }
                    }
                }
            }
        }
    }
}
