//! im2col + GEMM convolution on `matrixmultiply::sgemm`, every geometry and pass, in
//! bounded scratch.
//!
//! ```text
//! per image b and group grp, with K = (c_in/g)*kh*kw and P = oh*ow:
//!   forward          Y[c_out/g, P]  = W[c_out/g, K] * col(x)[K, P]              (+ bias)
//!   backward_data    dx             = col2im( W^T[K, c_out/g] * dY[c_out/g, P] )
//!   backward_weight  dW[c_out/g, K] = sum_b dY[c_out/g, P] * col(x)^T[P, K]
//! ```
//!
//! **Bounded workspace.** The column matrix is never built whole: it is tiled over output
//! pixels, `tp = clamp(COL_BUDGET / rows, MIN_TILE, P)` columns at a time, so the scratch of
//! one task is at most `rows * tp <= max(COL_BUDGET, rows * MIN_TILE)` floats, where
//! `rows <= (c_in/g)*kh*kw`: 512 KiB for every layer with `rows <= 1024`, whatever the image
//! size. `tp >= MIN_TILE` keeps each GEMM wide enough to amortise matrixmultiply's packing of
//! `W`. Scratch is per thread and reused across calls ([`crate::parallel::with_scratch`]).
//!
//! **No im2col when none is needed.** A 1x1 stride-1 unpadded conv is a plain GEMM on `x`;
//! a strided 1x1 unpadded conv reads `x` through GEMM strides (`cs = sw`), one output row
//! per GEMM, with no copy.
//!
//! **Determinism.** Tasks are (image, group, output-channel block, pixel tile) for forward
//! (two channel blocks when there is one of the rest, else one), (image, group,
//! channel block) for backward-data and (group, channel block, output-channel block) for
//! backward-weight, chosen from the geometry alone; each output element is produced by one
//! task in a fixed order, so any thread count gives the same bits.

mod pack;

use crate::gemm::{MatRef, gemm_raw};
use crate::parallel::{SharedMut, for_each_mut, for_each_task, with_scratch};
use crate::params::ConvGeom;
use crate::{Algorithm, Isa, Pass};
use pack::{col2im_add, im2col};

/// Column-tile budget in floats (512 KiB: half this machine's L2).
pub const COL_BUDGET: usize = 1 << 18;
/// Narrowest pixel tile, so each GEMM amortises the packing of `W`.
pub const MIN_TILE: usize = 256;

/// How the column matrix of a geometry is formed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cols {
    /// 1x1, stride 1, unpadded: `col(x)` is `x` itself.
    Pointwise,
    /// 1x1, unpadded, strided: `col(x)` rows are strided views of `x`, one output row at a time.
    Strided1x1,
    /// Everything else: pack tiles.
    Packed,
}

fn cols(g: &ConvGeom) -> Cols {
    if g.is_pointwise() {
        Cols::Pointwise
    } else if g.kh == 1
        && g.kw == 1
        && g.pad_t == 0
        && g.pad_l == 0
        && (g.oh - 1) * g.sh < g.h
        && (g.ow - 1) * g.sw < g.w
    {
        Cols::Strided1x1
    } else {
        Cols::Packed
    }
}

/// Pixels per tile for a column matrix with `rows` rows (a multiple of 16 unless it is all of `p`).
pub fn tile_pixels(rows: usize, p: usize) -> usize {
    let tp = (COL_BUDGET / rows.max(1)).max(MIN_TILE);
    if tp >= p { p } else { tp / 16 * 16 }
}

/// The scratch bound, in floats, of one task of any pass on `g`:
/// `min(max(COL_BUDGET, rows * MIN_TILE), rows * oh * ow)` with `rows = (c_in/g)*kh*kw`
/// (tasks over a channel block have fewer rows and stay under it), 0 when no packing is needed.
pub fn scratch_floats(g: &ConvGeom) -> usize {
    let rows = (g.c_in / g.g) * g.kh * g.kw;
    let p = g.oh * g.ow;
    if cols(g) == Cols::Packed {
        COL_BUDGET.max(rows * MIN_TILE).min(rows * p)
    } else {
        0
    }
}

/// Splits `0..len` into `parts` near-equal ranges; returns the `i`-th as `(start, len)`.
fn block(len: usize, parts: usize, i: usize) -> (usize, usize) {
    let base = len / parts;
    let extra = len % parts;
    let start = i * base + i.min(extra);
    (start, base + usize::from(i < extra))
}

/// im2col + GEMM on `matrixmultiply` (which picks its own AVX2/FMA/SSE2 microkernel at run
/// time, so this kernel is available at every ISA level).
pub struct Im2colF32Matrixmultiply;

// SAFETY: no ISA-specific instructions of its own (matrixmultiply checks the CPU itself); all
// raw writes are to disjoint blocks of the output, as argued at each use.
unsafe impl crate::registry::ConvKernel for Im2colF32Matrixmultiply {
    fn name(&self) -> &'static str {
        "im2col_f32_matrixmultiply"
    }
    fn algorithm(&self) -> Algorithm {
        Algorithm::Im2col
    }
    fn isa(&self) -> Isa {
        Isa::Scalar
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
        forward(g, x, weight, bias, y);
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
        backward_data(g, grad_y, weight, bias, grad_x);
    }
    fn backward_weight(&self, g: &ConvGeom, x: &[f32], grad_y: &[f32], grad_weight: &mut [f32]) {
        g.assert_backward_weight(x, grad_y, grad_weight);
        backward_weight(g, x, grad_y, grad_weight);
    }
}

fn forward(g: &ConvGeom, x: &[f32], weight: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let k = c_in_g * g.kh * g.kw;
    let p = g.oh * g.ow;
    let hw = g.h * g.w;
    let tp = tile_pixels(k, p);
    let tiles = p.div_ceil(tp.max(1));
    let out = SharedMut::new(y);
    let mode = cols(g);
    // One (image, group, tile) task (a small image, batch 1): split the output channels in
    // two, so two threads have work. Each block re-forms and re-packs the column tile, about
    // 10% more time on one thread for ResNet-50's 14x14x256 layer (4 blocks cost 30%).
    let oc_blocks = if g.n * g.g * tiles == 1 && c_out_g >= 64 {
        2
    } else {
        1
    };
    // LOOP: tasks over (image, group, output-channel block, pixel tile).
    for_each_task(g.n * g.g * oc_blocks * tiles, |t| {
        let tile = t % tiles;
        let ob = t / tiles % oc_blocks;
        let grp = t / (tiles * oc_blocks) % g.g;
        let b = t / (tiles * oc_blocks * g.g);
        let (oc0, n_oc) = block(c_out_g, oc_blocks, ob);
        let p0 = tile * tp;
        let np = tp.min(p - p0);
        let w_g =
            MatRef::row_major(&weight[(grp * c_out_g + oc0) * k..][..n_oc * k], n_oc, k).unwrap();
        let x_img = &x[b * g.c_in * hw..][..g.c_in * hw];
        let y_off = (b * g.c_out + grp * c_out_g + oc0) * p + p0;
        // The output block: rows oc < n_oc (stride p), columns p0..p0+np of image b, group
        // grp, channels oc0.. of the group.
        let c_block = out.at(y_off);
        let beta = match bias {
            Some(bias) => {
                for oc in 0..n_oc {
                    let v = bias[grp * c_out_g + oc0 + oc];
                    // SAFETY: row oc of this task's block, columns p0..p0+np, lies inside y
                    // (y_off + oc*p + np <= y_len) and no other task writes it.
                    unsafe { std::slice::from_raw_parts_mut(c_block.add(oc * p), np) }.fill(v);
                }
                1.0
            }
            None => 0.0,
        };
        let gemm = |src: MatRef<'_>, col0: usize| {
            // SAFETY: C is this task's block (or a row run inside it): rows oc < n_oc at
            // stride p, columns col0..col0+src.cols() inside p0..p0+np; in bounds of y and
            // written by no other task.
            unsafe { gemm_raw(1.0, w_g, src, beta, c_block.add(col0), p, 1) }
        };
        match mode {
            Cols::Pointwise => gemm(
                MatRef::new(&x_img[grp * c_in_g * hw + p0..], c_in_g, np, hw, 1).unwrap(),
                0,
            ),
            Cols::Strided1x1 => for_each_row_run(g, p0, np, |oy, ox0, len, d| {
                let off = grp * c_in_g * hw + oy * g.sh * g.w + ox0 * g.sw;
                gemm(
                    MatRef::new(&x_img[off..], c_in_g, len, hw, col_stride(len, g.sw)).unwrap(),
                    d,
                );
            }),
            Cols::Packed => with_scratch(k * np, |col| {
                im2col(g, x_img, grp * c_in_g, c_in_g, p0, np, col);
                gemm(MatRef::row_major(col, k, np).unwrap(), 0);
            }),
        }
    });
}

/// Calls `f(oy, ox0, len, d)` for each output-row run of pixels `p0..p0+np` (`d` is the run's
/// offset in the tile).
fn for_each_row_run(
    g: &ConvGeom,
    p0: usize,
    np: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    let mut d = 0;
    while d < np {
        let (oy, ox0) = ((p0 + d) / g.ow, (p0 + d) % g.ow);
        let len = (g.ow - ox0).min(np - d);
        f(oy, ox0, len, d);
        d += len;
    }
}

/// Input-channel blocks per (image, group) for backward-data: enough tasks for a few
/// threads, from the geometry alone.
fn channel_blocks(c_in_g: usize, outer: usize) -> usize {
    if outer >= 4 { 1 } else { c_in_g.min(4) }
}

fn backward_data(
    g: &ConvGeom,
    grad_y: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    grad_x: &mut [f32],
) {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let k = c_in_g * g.kh * g.kw;
    let khw = g.kh * g.kw;
    let p = g.oh * g.ow;
    let hw = g.h * g.w;
    let blocks = channel_blocks(c_in_g, g.n * g.g);
    // Task outputs: disjoint channel ranges of grad_x, split off in order.
    let mut tasks = Vec::with_capacity(g.n * g.g * blocks);
    let mut rest = grad_x;
    for b in 0..g.n {
        for grp in 0..g.g {
            for blk in 0..blocks {
                let (ic0, nc) = block(c_in_g, blocks, blk);
                let (chunk, tail) = rest.split_at_mut(nc * hw);
                rest = tail;
                tasks.push((b, grp, ic0, nc, chunk));
            }
        }
    }
    let mode = cols(g);
    for_each_mut(&mut tasks, |_, (b, grp, ic0, nc, dx)| {
        let (b, grp, ic0, nc) = (*b, *grp, *ic0, *nc);
        let rows = nc * khw;
        // W^T rows for channels ic0..ic0+nc: A[(ic, ky, kx), oc] = W[grp*c_out_g + oc, ic0 + ic, ky, kx].
        let w_t = MatRef::new(
            &weight[grp * c_out_g * k + ic0 * khw..],
            rows,
            c_out_g,
            1,
            k,
        )
        .unwrap();
        let dy_g = &grad_y[(b * g.c_out + grp * c_out_g) * p..][..c_out_g * p];
        match mode {
            Cols::Pointwise => {
                let dy = MatRef::row_major(dy_g, c_out_g, p).unwrap();
                let c = crate::gemm::MatMut::row_major(dx, nc, p).unwrap();
                crate::gemm::gemm(1.0, w_t, dy, 0.0, c).unwrap();
            }
            Cols::Strided1x1 => {
                dx.fill(0.0);
                for oy in 0..g.oh {
                    let dy = MatRef::new(&dy_g[oy * g.ow..], c_out_g, g.ow, p, 1).unwrap();
                    let c = crate::gemm::MatMut::new(
                        &mut dx[oy * g.sh * g.w..],
                        nc,
                        g.ow,
                        hw,
                        col_stride(g.ow, g.sw),
                    )
                    .unwrap();
                    crate::gemm::gemm(1.0, w_t, dy, 0.0, c).unwrap();
                }
            }
            Cols::Packed => {
                dx.fill(0.0);
                let tp = tile_pixels(rows, p);
                with_scratch(rows * tp, |col| {
                    // LOOP: pixel tiles in order (col2im of neighbouring tiles overlaps).
                    for p0 in (0..p).step_by(tp.max(1)) {
                        let np = tp.min(p - p0);
                        let dy = MatRef::new(&dy_g[p0..], c_out_g, np, p, 1).unwrap();
                        let c = crate::gemm::MatMut::row_major(&mut col[..rows * np], rows, np)
                            .unwrap();
                        crate::gemm::gemm(1.0, w_t, dy, 0.0, c).unwrap();
                        col2im_add(g, &col[..rows * np], nc, p0, np, dx);
                    }
                });
            }
        }
        if let Some(bias) = bias {
            for (ic, plane) in dx.chunks_exact_mut(hw).enumerate() {
                let v = bias[grp * c_in_g + ic0 + ic];
                plane.iter_mut().for_each(|o| *o += v);
            }
        }
    });
}

fn backward_weight(g: &ConvGeom, x: &[f32], grad_y: &[f32], grad_weight: &mut [f32]) {
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let k = c_in_g * g.kh * g.kw;
    let khw = g.kh * g.kw;
    let p = g.oh * g.ow;
    let hw = g.h * g.w;
    if g.n == 0 || p == 0 {
        grad_weight.fill(0.0);
        return;
    }
    let k_blocks = c_in_g.min(4);
    let oc_blocks = if g.g * k_blocks >= 4 {
        1
    } else {
        c_out_g.div_ceil(16).min(4)
    };
    let out = SharedMut::new(grad_weight);
    let mode = cols(g);
    for_each_task(g.g * k_blocks * oc_blocks, |t| {
        let (grp, kb, ob) = (
            t / (k_blocks * oc_blocks),
            t / oc_blocks % k_blocks,
            t % oc_blocks,
        );
        let (ic0, nc) = block(c_in_g, k_blocks, kb);
        let (oc0, noc) = block(c_out_g, oc_blocks, ob);
        let rows = nc * khw;
        // This task's block of grad_weight: rows grp*c_out_g + oc0 .. +noc (stride k),
        // columns ic0*khw .. +rows.
        let c_block = out.at((grp * c_out_g + oc0) * k + ic0 * khw);
        let mut beta = 0.0;
        let mut gemm = |dy: MatRef<'_>, cols_t: MatRef<'_>| {
            // SAFETY: C is this task's block, noc rows at stride k and `rows` columns, inside
            // grad_weight and written by no other task (tasks partition (oc, column) space).
            unsafe { gemm_raw(1.0, dy, cols_t, beta, c_block, k, 1) };
            beta = 1.0;
        };
        // LOOP: images, then pixel tiles, in order: the reduction order is fixed.
        for b in 0..g.n {
            let dy_g = &grad_y[(b * g.c_out + grp * c_out_g + oc0) * p..][..noc * p];
            let x_c = &x[(b * g.c_in + grp * c_in_g + ic0) * hw..][..nc * hw];
            match mode {
                Cols::Pointwise => gemm(
                    MatRef::row_major(dy_g, noc, p).unwrap(),
                    MatRef::row_major(x_c, nc, p).unwrap().t(),
                ),
                Cols::Strided1x1 => {
                    for oy in 0..g.oh {
                        let dy = MatRef::new(&dy_g[oy * g.ow..], noc, g.ow, p, 1).unwrap();
                        let xs = MatRef::new(
                            &x_c[oy * g.sh * g.w..],
                            nc,
                            g.ow,
                            hw,
                            col_stride(g.ow, g.sw),
                        )
                        .unwrap();
                        gemm(dy, xs.t());
                    }
                }
                Cols::Packed => {
                    let tp = tile_pixels(rows, p);
                    with_scratch(rows * tp, |col| {
                        for p0 in (0..p).step_by(tp.max(1)) {
                            let np = tp.min(p - p0);
                            let x_img = &x[b * g.c_in * hw..][..g.c_in * hw];
                            im2col(g, x_img, grp * c_in_g + ic0, nc, p0, np, col);
                            let dy = MatRef::new(&dy_g[p0..], noc, np, p, 1).unwrap();
                            gemm(
                                dy,
                                MatRef::row_major(&col[..rows * np], rows, np).unwrap().t(),
                            );
                        }
                    });
                }
            }
        }
    });
}

/// The column stride of a strided 1x1 view with `cols` columns `s` pixels apart: `s`, or 1
/// for a single column, where the stride is never used but a huge one (a valid geometry
/// with one output column) would fail the view's `isize` bound.
fn col_stride(cols: usize, s: usize) -> usize {
    if cols > 1 { s } else { 1 }
}
