//! Packing between one image and a tile of its column matrix.
//!
//! ```text
//! col [nc*kh*kw, tp], row-major, for channels c0..c0+nc and output pixels p0..p0+tp:
//!   col[(ic*kh + ky)*kw + kx, j] = x[c0 + ic, oy*sh + ky*dh - pad_t, ox*sw + kx*dw - pad_l]
//!   where (oy, ox) = divmod(p0 + j, ow), and x outside the image is 0.
//! ```
//!
//! `im2col` fills a tile; `col2im_add` is its adjoint and adds a tile back into the image.
//! Each row of a tile is walked one output row at a time: the valid output columns of a
//! kernel column `kx` form one interval, so padding is a `fill` and the interior a
//! `copy_from_slice` (stride 1) or a strided gather, with no per-element bounds test.

use crate::params::ConvGeom;

/// Input row `oy*sh + ky*dh - pad_t` when it lies inside the image.
fn input_row(g: &ConvGeom, oy: usize, ky: usize) -> Option<usize> {
    (oy * g.sh + ky * g.dh)
        .checked_sub(g.pad_t)
        .filter(|&iy| iy < g.h)
}

/// The output columns `lo..hi` whose tap `kx` reads inside the image row.
fn valid_cols(g: &ConvGeom, kx: usize) -> (usize, usize) {
    let shift = kx * g.dw;
    let lo = g.pad_l.saturating_sub(shift).div_ceil(g.sw);
    let hi = (g.w + g.pad_l).saturating_sub(shift).div_ceil(g.sw);
    (lo, hi.max(lo))
}

/// Walks tile row `(kx, ky)` over pixels `p0..p0+tp` in runs that stay on one output row;
/// calls `run(dst_start, len, Some((iy, ox0)))` or `None` for rows entirely in padding.
fn for_each_run(
    g: &ConvGeom,
    ky: usize,
    p0: usize,
    tp: usize,
    mut run: impl FnMut(usize, usize, Option<usize>, usize),
) {
    let (mut oy, mut ox0) = (p0 / g.ow, p0 % g.ow);
    let mut d = 0;
    while d < tp {
        let len = (g.ow - ox0).min(tp - d);
        run(d, len, input_row(g, oy, ky), ox0);
        d += len;
        oy += 1;
        ox0 = 0;
    }
}

/// The part `a..b` of a run `ox0..ox0+len` that reads inside the image, and its first input
/// column.
fn interior(g: &ConvGeom, kx: usize, ox0: usize, len: usize) -> (usize, usize, usize) {
    let (lo, hi) = valid_cols(g, kx);
    let a = lo.clamp(ox0, ox0 + len) - ox0;
    let b = hi.clamp(ox0, ox0 + len) - ox0;
    let b = b.max(a);
    let ix0 = if a < b {
        (ox0 + a) * g.sw + kx * g.dw - g.pad_l
    } else {
        0
    };
    (a, b, ix0)
}

/// Fills `col` (at least `nc*kh*kw*tp` floats) from `x_img` (`[c_in, h, w]`, one image).
pub(crate) fn im2col(
    g: &ConvGeom,
    x_img: &[f32],
    c0: usize,
    nc: usize,
    p0: usize,
    tp: usize,
    col: &mut [f32],
) {
    let hw = g.h * g.w;
    for ic in 0..nc {
        let plane = &x_img[(c0 + ic) * hw..][..hw];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &mut col[((ic * g.kh + ky) * g.kw + kx) * tp..][..tp];
                for_each_run(g, ky, p0, tp, |d, len, iy, ox0| {
                    let dst = &mut row[d..d + len];
                    let Some(iy) = iy else { return dst.fill(0.0) };
                    let (a, b, ix0) = interior(g, kx, ox0, len);
                    dst[..a].fill(0.0);
                    dst[b..].fill(0.0);
                    let src = &plane[iy * g.w..][..g.w];
                    if g.sw == 1 {
                        dst[a..b].copy_from_slice(&src[ix0..ix0 + (b - a)]);
                    } else {
                        for (j, v) in dst[a..b].iter_mut().enumerate() {
                            *v = src[ix0 + j * g.sw];
                        }
                    }
                });
            }
        }
    }
}

/// Adds `col` (`[nc*kh*kw, tp]`) into `dx` (`[nc, h, w]`, the channels `c0..c0+nc` of one image).
pub(crate) fn col2im_add(
    g: &ConvGeom,
    col: &[f32],
    nc: usize,
    p0: usize,
    tp: usize,
    dx: &mut [f32],
) {
    let hw = g.h * g.w;
    for ic in 0..nc {
        let plane = &mut dx[ic * hw..][..hw];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &col[((ic * g.kh + ky) * g.kw + kx) * tp..][..tp];
                for_each_run(g, ky, p0, tp, |d, len, iy, ox0| {
                    let Some(iy) = iy else { return };
                    let (a, b, ix0) = interior(g, kx, ox0, len);
                    let dst = &mut plane[iy * g.w..][..g.w];
                    let src = &row[d + a..d + b];
                    if g.sw == 1 {
                        for (o, v) in dst[ix0..ix0 + src.len()].iter_mut().zip(src) {
                            *o += v;
                        }
                    } else {
                        for (j, v) in src.iter().enumerate() {
                            dst[ix0 + j * g.sw] += v;
                        }
                    }
                });
            }
        }
    }
}
