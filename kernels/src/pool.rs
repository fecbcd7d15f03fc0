//! 2-D pooling on plain NCHW `f32` slices, as PyTorch's `max_pool2d`, `avg_pool2d` and
//! `adaptive_avg_pool2d` define it.
//!
//! ```text
//! x  [planes, h, w]       (planes = n * c; every plane is pooled on its own)
//! y  [planes, oh, ow]
//!
//! window of (oy, ox), in padded coordinates:  rows oy*sh .. oy*sh + kh, cols ox*sw .. ox*sw + kw
//! max:  y = max of the window's real (unpadded) elements; padding is -inf
//! avg:  y = sum of the window's real elements / divisor, where the divisor counts the window
//!       clipped to the padded input (count_include_pad) or to the real input (exclude)
//!
//! oh = (h + 2*ph - kh + (ceil_mode ? sh - 1 : 0)) / sh + 1,
//!      minus one in ceil mode when the last window would start inside the right padding
//! ```
//!
//! Adaptive average pooling maps output row `oy` to input rows
//! `floor(oy*h/oh) .. ceil((oy+1)*h/oh)` (and the same for columns).
//!
//! The functions take any whole number of planes, so a caller can split a batch into chunks of
//! planes and pool them on separate threads; results do not depend on the split. Every pass
//! overwrites its output. Lengths are checked: a mismatch is a [`ConvError::BufferLength`].

use crate::ConvError;

/// Window geometry of a pooling layer (PyTorch's `kernel_size`, `stride`, `padding`,
/// `ceil_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolParams {
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    /// `[ph, pw]`, on both sides of each axis; at most half the kernel (PyTorch's rule).
    pub padding: [usize; 2],
    /// Round the output size up instead of down.
    pub ceil_mode: bool,
}

impl PoolParams {
    /// A `kernel` window with stride equal to the kernel, no padding, floor mode
    /// (PyTorch's defaults).
    pub fn new(kernel: [usize; 2]) -> Self {
        PoolParams {
            kernel,
            stride: kernel,
            padding: [0, 0],
            ceil_mode: false,
        }
    }
}

/// A validated pooling geometry for `h x w` planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolGeom {
    /// The window parameters.
    pub params: PoolParams,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

const AXES: [&str; 2] = ["height", "width"];

/// One axis of a pooling window: the real input indices it covers, and its length clipped
/// to the padded input (the `count_include_pad` divisor factor).
type Window = (std::ops::Range<usize>, usize);

fn pooled_size(
    axis: &'static str,
    size: usize,
    k: usize,
    s: usize,
    p: usize,
    ceil_mode: bool,
) -> Result<usize, ConvError> {
    if p > k / 2 {
        return Err(ConvError::Unsupported {
            kernel: "pool2d",
            reason: "padding larger than half the window",
        });
    }
    let padded = size.checked_add(2 * p).ok_or(ConvError::Overflow {
        what: "padded size",
    })?;
    if padded < k {
        return Err(ConvError::KernelTooLarge {
            axis,
            extent: k,
            padded,
        });
    }
    let round = if ceil_mode { s - 1 } else { 0 };
    let mut out = (padded - k + round) / s + 1;
    // The last window must start inside the input or the left padding (PyTorch's rule).
    if ceil_mode && (out - 1) * s >= size + p {
        out -= 1;
    }
    Ok(out)
}

impl PoolGeom {
    /// Validates `params` for `h x w` planes: nonzero sizes, padding at most half the window,
    /// and a window that fits in the padded input.
    pub fn new(h: usize, w: usize, params: PoolParams) -> Result<PoolGeom, ConvError> {
        for (what, v) in [
            ("h", h),
            ("w", w),
            ("kh", params.kernel[0]),
            ("kw", params.kernel[1]),
            ("stride", params.stride[0]),
            ("stride", params.stride[1]),
        ] {
            if v == 0 {
                return Err(ConvError::ZeroSize { what });
            }
        }
        h.checked_mul(w)
            .filter(|&len| len <= u32::MAX as usize)
            .ok_or(ConvError::Overflow {
                what: "pooling plane",
            })?;
        let mut out = [0; 2];
        for (axis, size) in [h, w].into_iter().enumerate() {
            out[axis] = pooled_size(
                AXES[axis],
                size,
                params.kernel[axis],
                params.stride[axis],
                params.padding[axis],
                params.ceil_mode,
            )?;
        }
        Ok(PoolGeom {
            params,
            h,
            w,
            oh: out[0],
            ow: out[1],
        })
    }

    /// Whether every window lies wholly inside the input (no padding, no ceil-mode overhang):
    /// then the fast paths below run, with the same summation order as the general loops.
    fn unclipped(&self) -> bool {
        let [kh, kw] = self.params.kernel;
        let [sh, sw] = self.params.stride;
        self.params.padding == [0, 0]
            && (self.oh - 1) * sh + kh <= self.h
            && (self.ow - 1) * sw + kw <= self.w
    }

    /// The windows of every output row (`axis` 0) or column (1).
    fn windows(&self, axis: usize) -> Vec<Window> {
        let out = [self.oh, self.ow][axis];
        (0..out).map(|o| self.window(axis, o)).collect()
    }

    /// The window of output row or column `o` along `axis`: the real input range and the
    /// length of the window clipped to the padded input.
    fn window(&self, axis: usize, o: usize) -> Window {
        let size = [self.h, self.w][axis];
        let (k, s, p) = (
            self.params.kernel[axis],
            self.params.stride[axis],
            self.params.padding[axis],
        );
        let start = o * s; // padded coordinates
        let end = (start + k).min(size + 2 * p);
        let lo = start.max(p) - p;
        let hi = end.min(size + p).saturating_sub(p).max(lo);
        (lo..hi, end - start)
    }
}

/// Number of whole planes in `x` and `y`, checking that they agree.
fn planes(
    x_len: usize,
    x_plane: usize,
    y_len: usize,
    y_plane: usize,
    x_name: &'static str,
    y_name: &'static str,
) -> Result<usize, ConvError> {
    let planes = x_len / x_plane;
    if planes * x_plane != x_len {
        return Err(ConvError::BufferLength {
            buffer: x_name,
            expected: (planes + 1) * x_plane,
            got: x_len,
        });
    }
    if y_len != planes * y_plane {
        return Err(ConvError::BufferLength {
            buffer: y_name,
            expected: planes * y_plane,
            got: y_len,
        });
    }
    Ok(planes)
}

/// Max pooling: `y[p, oy, ox]` is the window maximum, and `argmax` holds its index
/// `iy * w + ix` within the plane: the first maximum in row-major order, or the last NaN
/// (NaN propagates, as in PyTorch).
pub fn max_pool2d_forward(
    g: &PoolGeom,
    x: &[f32],
    y: &mut [f32],
    argmax: &mut [u32],
) -> Result<(), ConvError> {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    planes(x.len(), in_plane, y.len(), out_plane, "x", "y")?;
    if argmax.len() != y.len() {
        return Err(ConvError::BufferLength {
            buffer: "argmax",
            expected: y.len(),
            got: argmax.len(),
        });
    }
    if g.unclipped() {
        max_forward_unclipped(g, x, y, argmax);
        return Ok(());
    }
    let (row_windows, col_windows) = (g.windows(0), g.windows(1));
    let out = y
        .chunks_exact_mut(out_plane)
        .zip(argmax.chunks_exact_mut(out_plane));
    for (xp, (yp, ap)) in x.chunks_exact(in_plane).zip(out) {
        for (oy, (rows, _)) in row_windows.iter().enumerate() {
            for (ox, (cols, _)) in col_windows.iter().enumerate() {
                let mut best = f32::NEG_INFINITY;
                let mut best_at = rows.start * g.w + cols.start;
                for iy in rows.clone() {
                    let row = &xp[iy * g.w..][cols.clone()];
                    for (ix, &v) in cols.clone().zip(row) {
                        if v > best || v.is_nan() {
                            best = v;
                            best_at = iy * g.w + ix;
                        }
                    }
                }
                yp[oy * g.ow + ox] = best;
                // In range: h * w <= u32::MAX was checked by PoolGeom::new.
                ap[oy * g.ow + ox] = best_at as u32;
            }
        }
    }
    Ok(())
}

/// Max pooling backward: `grad_x` is zero except where a window's maximum was, which receives
/// the sum of the gradients of the outputs it was the maximum of.
pub fn max_pool2d_backward(
    g: &PoolGeom,
    grad_y: &[f32],
    argmax: &[u32],
    grad_x: &mut [f32],
) -> Result<(), ConvError> {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    planes(
        grad_x.len(),
        in_plane,
        grad_y.len(),
        out_plane,
        "grad_x",
        "grad_y",
    )?;
    if argmax.len() != grad_y.len() {
        return Err(ConvError::BufferLength {
            buffer: "argmax",
            expected: grad_y.len(),
            got: argmax.len(),
        });
    }
    let out = grad_y
        .chunks_exact(out_plane)
        .zip(argmax.chunks_exact(out_plane));
    for (gxp, (gyp, ap)) in grad_x.chunks_exact_mut(in_plane).zip(out) {
        gxp.fill(0.0);
        for (&gy, &at) in gyp.iter().zip(ap) {
            let Some(slot) = gxp.get_mut(at as usize) else {
                return Err(ConvError::Unsupported {
                    kernel: "max_pool2d_backward",
                    reason: "an argmax outside the input plane",
                });
            };
            *slot += gy;
        }
    }
    Ok(())
}

/// The divisor of an average-pooling window.
fn divisor((rows, padded_h): &Window, (cols, padded_w): &Window, count_include_pad: bool) -> f32 {
    let count = if count_include_pad {
        padded_h * padded_w
    } else {
        rows.len() * cols.len()
    };
    count as f32
}

/// Average pooling: `y[p, oy, ox]` is the sum of the window's real elements over the divisor
/// (the window clipped to the padded input when `count_include_pad`, PyTorch's default, or to
/// the real input otherwise).
pub fn avg_pool2d_forward(
    g: &PoolGeom,
    count_include_pad: bool,
    x: &[f32],
    y: &mut [f32],
) -> Result<(), ConvError> {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    planes(x.len(), in_plane, y.len(), out_plane, "x", "y")?;
    if g.unclipped() {
        avg_forward_unclipped(g, x, y);
        return Ok(());
    }
    let (row_windows, col_windows) = (g.windows(0), g.windows(1));
    for (xp, yp) in x.chunks_exact(in_plane).zip(y.chunks_exact_mut(out_plane)) {
        for (oy, rw) in row_windows.iter().enumerate() {
            for (ox, cw) in col_windows.iter().enumerate() {
                let mut sum = 0.0f32;
                for iy in rw.0.clone() {
                    for &v in &xp[iy * g.w..][cw.0.clone()] {
                        sum += v;
                    }
                }
                yp[oy * g.ow + ox] = sum / divisor(rw, cw, count_include_pad);
            }
        }
    }
    Ok(())
}

/// Average pooling backward: every real element of a window receives the window's output
/// gradient over its divisor.
pub fn avg_pool2d_backward(
    g: &PoolGeom,
    count_include_pad: bool,
    grad_y: &[f32],
    grad_x: &mut [f32],
) -> Result<(), ConvError> {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    planes(
        grad_x.len(),
        in_plane,
        grad_y.len(),
        out_plane,
        "grad_x",
        "grad_y",
    )?;
    if g.unclipped() {
        avg_backward_unclipped(g, grad_y, grad_x);
        return Ok(());
    }
    let (row_windows, col_windows) = (g.windows(0), g.windows(1));
    for (gxp, gyp) in grad_x
        .chunks_exact_mut(in_plane)
        .zip(grad_y.chunks_exact(out_plane))
    {
        gxp.fill(0.0);
        for (oy, rw) in row_windows.iter().enumerate() {
            for (ox, cw) in col_windows.iter().enumerate() {
                let share = gyp[oy * g.ow + ox] / divisor(rw, cw, count_include_pad);
                for iy in rw.0.clone() {
                    for v in &mut gxp[iy * g.w..][cw.0.clone()] {
                        *v += share;
                    }
                }
            }
        }
    }
    Ok(())
}

/// [`avg_pool2d_forward`] when every window is whole: the window sum in the same order
/// (rows, then columns), vectorizable across each output row.
fn avg_forward_unclipped(g: &PoolGeom, x: &[f32], y: &mut [f32]) {
    let ([kh, kw], [sh, sw]) = (g.params.kernel, g.params.stride);
    let div = (kh * kw) as f32;
    for (xp, yp) in x
        .chunks_exact(g.h * g.w)
        .zip(y.chunks_exact_mut(g.oh * g.ow))
    {
        for (oy, yrow) in yp.chunks_exact_mut(g.ow).enumerate() {
            yrow.fill(0.0);
            for ky in 0..kh {
                let xrow = &xp[(oy * sh + ky) * g.w..][..g.w];
                if kw == 2 && sw == 2 {
                    // The common 2x2 / 2 window as pairs, which the compiler vectorises (the
                    // same additions in the same order).
                    for (acc, pair) in yrow.iter_mut().zip(xrow.chunks_exact(2)) {
                        *acc += pair[0];
                        *acc += pair[1];
                    }
                    continue;
                }
                for kx in 0..kw {
                    for (ox, acc) in yrow.iter_mut().enumerate() {
                        *acc += xrow[ox * sw + kx];
                    }
                }
            }
            for v in yrow {
                *v /= div;
            }
        }
    }
}

/// [`avg_pool2d_backward`] when every window is whole.
fn avg_backward_unclipped(g: &PoolGeom, grad_y: &[f32], grad_x: &mut [f32]) {
    let ([kh, kw], [sh, sw]) = (g.params.kernel, g.params.stride);
    let div = (kh * kw) as f32;
    let mut share = vec![0.0f32; g.ow];
    for (gxp, gyp) in grad_x
        .chunks_exact_mut(g.h * g.w)
        .zip(grad_y.chunks_exact(g.oh * g.ow))
    {
        gxp.fill(0.0);
        for (oy, gyrow) in gyp.chunks_exact(g.ow).enumerate() {
            for (s, &d) in share.iter_mut().zip(gyrow) {
                *s = d / div;
            }
            for ky in 0..kh {
                let gxrow = &mut gxp[(oy * sh + ky) * g.w..][..g.w];
                if kw == 2 && sw == 2 {
                    // Disjoint pairs: each element gets exactly its one share.
                    for (pair, &s) in gxrow.chunks_exact_mut(2).zip(&share) {
                        pair[0] += s;
                        pair[1] += s;
                    }
                    continue;
                }
                for (ox, &s) in share.iter().enumerate() {
                    for v in &mut gxrow[ox * sw..][..kw] {
                        *v += s;
                    }
                }
            }
        }
    }
}

/// [`max_pool2d_forward`] when every window is whole: the same scan order and tie rule.
fn max_forward_unclipped(g: &PoolGeom, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let ([kh, kw], [sh, sw]) = (g.params.kernel, g.params.stride);
    let out = y
        .chunks_exact_mut(g.oh * g.ow)
        .zip(argmax.chunks_exact_mut(g.oh * g.ow));
    for (xp, (yp, ap)) in x.chunks_exact(g.h * g.w).zip(out) {
        let rows = yp.chunks_exact_mut(g.ow).zip(ap.chunks_exact_mut(g.ow));
        for (oy, (yrow, arow)) in rows.enumerate() {
            yrow.fill(f32::NEG_INFINITY);
            for (ox, a) in arow.iter_mut().enumerate() {
                // In range: h * w <= u32::MAX was checked by PoolGeom::new.
                *a = (oy * sh * g.w + ox * sw) as u32;
            }
            for ky in 0..kh {
                let iy = oy * sh + ky;
                let xrow = &xp[iy * g.w..][..g.w];
                for kx in 0..kw {
                    for (ox, (best, at)) in yrow.iter_mut().zip(arow.iter_mut()).enumerate() {
                        let v = xrow[ox * sw + kx];
                        if v > *best || v.is_nan() {
                            *best = v;
                            *at = (iy * g.w + ox * sw + kx) as u32;
                        }
                    }
                }
            }
        }
    }
}

/// Input range of adaptive output index `o` of `out` along an axis of `size`.
fn adaptive_range(o: usize, size: usize, out: usize) -> std::ops::Range<usize> {
    (o * size / out)..((o + 1) * size).div_ceil(out)
}

fn check_adaptive(h: usize, w: usize, oh: usize, ow: usize) -> Result<(), ConvError> {
    for (what, v) in [("h", h), ("w", w), ("oh", oh), ("ow", ow)] {
        if v == 0 {
            return Err(ConvError::ZeroSize { what });
        }
    }
    h.checked_mul(w)
        .and_then(|_| oh.checked_mul(ow))
        .and_then(|_| h.checked_mul(oh))
        .and_then(|_| w.checked_mul(ow))
        .map(drop)
        .ok_or(ConvError::Overflow {
            what: "adaptive pooling size",
        })
}

/// Adaptive average pooling of `h x w` planes to `out = [oh, ow]` (global average pooling
/// when `out == [1, 1]`).
pub fn adaptive_avg_pool2d_forward(
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    x: &[f32],
    y: &mut [f32],
) -> Result<(), ConvError> {
    check_adaptive(h, w, oh, ow)?;
    planes(x.len(), h * w, y.len(), oh * ow, "x", "y")?;
    for (xp, yp) in x.chunks_exact(h * w).zip(y.chunks_exact_mut(oh * ow)) {
        for oy in 0..oh {
            let rows = adaptive_range(oy, h, oh);
            for ox in 0..ow {
                let cols = adaptive_range(ox, w, ow);
                let mut sum = 0.0f32;
                for iy in rows.clone() {
                    for ix in cols.clone() {
                        sum += xp[iy * w + ix];
                    }
                }
                yp[oy * ow + ox] = sum / (rows.len() * cols.len()) as f32;
            }
        }
    }
    Ok(())
}

/// Adaptive average pooling backward.
pub fn adaptive_avg_pool2d_backward(
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    grad_y: &[f32],
    grad_x: &mut [f32],
) -> Result<(), ConvError> {
    check_adaptive(h, w, oh, ow)?;
    planes(
        grad_x.len(),
        h * w,
        grad_y.len(),
        oh * ow,
        "grad_x",
        "grad_y",
    )?;
    for (gxp, gyp) in grad_x
        .chunks_exact_mut(h * w)
        .zip(grad_y.chunks_exact(oh * ow))
    {
        gxp.fill(0.0);
        for oy in 0..oh {
            let rows = adaptive_range(oy, h, oh);
            for ox in 0..ow {
                let cols = adaptive_range(ox, w, ow);
                let share = gyp[oy * ow + ox] / (rows.len() * cols.len()) as f32;
                for iy in rows.clone() {
                    for ix in cols.clone() {
                        gxp[iy * w + ix] += share;
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive pooling written from PyTorch's formulas with signed window bounds: returns
    /// (max, argmax, avg include-pad, avg exclude-pad) for one plane.
    fn naive(
        x: &[f32],
        h: usize,
        w: usize,
        p: PoolParams,
        oh: usize,
        ow: usize,
    ) -> (Vec<f32>, Vec<u32>, Vec<f32>, Vec<f32>) {
        let (mut mx, mut am, mut inc, mut exc) = (vec![], vec![], vec![], vec![]);
        for oy in 0..oh as i64 {
            for ox in 0..ow as i64 {
                let hs = oy * p.stride[0] as i64 - p.padding[0] as i64;
                let ws = ox * p.stride[1] as i64 - p.padding[1] as i64;
                let he = (hs + p.kernel[0] as i64).min((h + p.padding[0]) as i64);
                let we = (ws + p.kernel[1] as i64).min((w + p.padding[1]) as i64);
                let pool_size = (he - hs) * (we - ws);
                let (hs, ws) = (hs.max(0), ws.max(0));
                let (he, we) = (he.min(h as i64), we.min(w as i64));
                let (mut best, mut at, mut sum) = (f32::NEG_INFINITY, (hs * w as i64 + ws), 0.0);
                for iy in hs..he {
                    for ix in ws..we {
                        let v = x[(iy * w as i64 + ix) as usize];
                        sum += v as f64;
                        if v > best {
                            best = v;
                            at = iy * w as i64 + ix;
                        }
                    }
                }
                mx.push(best);
                am.push(at as u32);
                inc.push((sum / pool_size as f64) as f32);
                exc.push((sum / ((he - hs) * (we - ws)) as f64) as f32);
            }
        }
        (mx, am, inc, exc)
    }

    fn cases() -> Vec<(usize, usize, PoolParams)> {
        let mut out = vec![];
        for (h, w) in [(1, 1), (4, 5), (7, 7), (6, 3)] {
            for k in 1..=3 {
                for s in 1..=3 {
                    for pad in 0..=k / 2 {
                        for ceil_mode in [false, true] {
                            let p = PoolParams {
                                kernel: [k, k.min(2)],
                                stride: [s, 1 + s % 2],
                                padding: [pad, pad.min(k.min(2) / 2)],
                                ceil_mode,
                            };
                            out.push((h, w, p));
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn forward_matches_naive_on_integers() {
        let mut checked = 0;
        for (h, w, p) in cases() {
            let Ok(g) = PoolGeom::new(h, w, p) else {
                assert!(h + 2 * p.padding[0] < p.kernel[0] || w + 2 * p.padding[1] < p.kernel[1]);
                continue;
            };
            let planes = 2;
            // Distinct small integers: every sum is exact, the maximum is unique.
            let x: Vec<f32> = (0..planes * h * w)
                .map(|i| ((i * 7919) % 97) as f32 - 48.0)
                .collect();
            let mut y = vec![f32::NAN; planes * g.oh * g.ow];
            let mut am = vec![u32::MAX; y.len()];
            max_pool2d_forward(&g, &x, &mut y, &mut am).unwrap();
            let mut inc = vec![f32::NAN; y.len()];
            avg_pool2d_forward(&g, true, &x, &mut inc).unwrap();
            let mut exc = vec![f32::NAN; y.len()];
            avg_pool2d_forward(&g, false, &x, &mut exc).unwrap();
            for plane in 0..planes {
                let (mx, nam, ninc, nexc) =
                    naive(&x[plane * h * w..][..h * w], h, w, p, g.oh, g.ow);
                let out = plane * g.oh * g.ow..(plane + 1) * g.oh * g.ow;
                assert_eq!(y[out.clone()], mx[..], "{h}x{w} {p:?}");
                assert_eq!(am[out.clone()], nam[..], "{h}x{w} {p:?}");
                assert_eq!(inc[out.clone()], ninc[..], "{h}x{w} {p:?}");
                assert_eq!(exc[out], nexc[..], "{h}x{w} {p:?}");
            }
            checked += 1;
        }
        assert!(checked > 100, "only {checked} geometries checked");
    }

    #[test]
    fn output_size_matches_pytorch_examples() {
        // torch.nn.MaxPool2d(3, 2, ceil_mode=True) on 112x112 (GoogLeNet) -> 56x56.
        let p = PoolParams {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [0, 0],
            ceil_mode: true,
        };
        let g = PoolGeom::new(112, 112, p).unwrap();
        assert_eq!((g.oh, g.ow), (56, 56));
        // AlexNet's overlapping 3x3 s2 pool on 55x55 -> 27x27.
        let g = PoolGeom::new(
            55,
            55,
            PoolParams {
                ceil_mode: false,
                ..p
            },
        )
        .unwrap();
        assert_eq!((g.oh, g.ow), (27, 27));
        // ceil mode drops a window starting in the right padding: 5 wide, k2 s2 p1 -> 3.
        let p = PoolParams {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [1, 1],
            ceil_mode: true,
        };
        assert_eq!(PoolGeom::new(5, 5, p).unwrap().ow, 3);
    }

    #[test]
    fn backward_is_the_adjoint_of_forward() {
        // <grad_y, pool(x)> == <pool_backward(grad_y), x> for the linear avg pool (up to the
        // f32 rounding of the divisions and sums), and max pool routes each gradient to its
        // argmax, exactly.
        for (h, w, p) in cases() {
            let Ok(g) = PoolGeom::new(h, w, p) else {
                continue;
            };
            let x: Vec<f32> = (0..h * w).map(|i| ((i * 31) % 13) as f32 - 6.0).collect();
            let gy: Vec<f32> = (0..g.oh * g.ow).map(|i| (i % 5) as f32 - 2.0).collect();
            let mut y = vec![0.0; gy.len()];
            let mut gx = vec![f32::NAN; x.len()];
            avg_pool2d_forward(&g, false, &x, &mut y).unwrap();
            avg_pool2d_backward(&g, false, &gy, &mut gx).unwrap();
            let lhs: f64 = gy.iter().zip(&y).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = gx.iter().zip(&x).map(|(a, b)| (a * b) as f64).sum();
            let mag: f64 = gx.iter().zip(&x).map(|(a, b)| (a * b).abs() as f64).sum();
            let terms = (p.kernel[0] * p.kernel[1] * x.len()) as f64;
            let bound = terms * f32::EPSILON as f64 * (mag + 1.0);
            assert!((lhs - rhs).abs() <= bound, "{p:?}: {lhs} vs {rhs}");

            let mut am = vec![0u32; gy.len()];
            max_pool2d_forward(&g, &x, &mut y, &mut am).unwrap();
            max_pool2d_backward(&g, &gy, &am, &mut gx).unwrap();
            let mut want = vec![0.0f32; x.len()];
            for (&a, &d) in am.iter().zip(&gy) {
                want[a as usize] += d;
            }
            assert_eq!(gx, want);
        }
    }

    #[test]
    fn adaptive_matches_naive_and_global_mean() {
        let (h, w) = (7, 5);
        let x: Vec<f32> = (0..2 * h * w).map(|i| (i % 11) as f32).collect();
        let mut y = vec![0.0; 2];
        adaptive_avg_pool2d_forward([h, w], [1, 1], &x, &mut y).unwrap();
        for (plane, &v) in y.iter().enumerate() {
            let mean = x[plane * h * w..][..h * w].iter().sum::<f32>() / (h * w) as f32;
            assert_eq!(v, mean);
        }
        // 7 -> 3 rows: PyTorch's bins are [0,3), [2,5), [4,7).
        assert_eq!(adaptive_range(0, 7, 3), 0..3);
        assert_eq!(adaptive_range(1, 7, 3), 2..5);
        assert_eq!(adaptive_range(2, 7, 3), 4..7);
        let gy = vec![1.0f32; 2 * 3 * 2];
        let mut y = vec![0.0; gy.len()];
        let mut gx = vec![f32::NAN; x.len()];
        adaptive_avg_pool2d_forward([h, w], [3, 2], &x, &mut y).unwrap();
        adaptive_avg_pool2d_backward([h, w], [3, 2], &gy, &mut gx).unwrap();
        let lhs: f32 = y.iter().sum();
        let rhs: f32 = gx.iter().zip(&x).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-4 * lhs.abs());
    }

    #[test]
    fn nan_propagates_through_max() {
        let g = PoolGeom::new(2, 2, PoolParams::new([2, 2])).unwrap();
        let mut y = [0.0];
        let mut am = [0];
        max_pool2d_forward(&g, &[1.0, f32::NAN, 3.0, 2.0], &mut y, &mut am).unwrap();
        assert!(y[0].is_nan());
        assert_eq!(am[0], 1);
    }

    #[test]
    fn bad_geometry_and_lengths_are_errors() {
        let p = PoolParams::new([3, 3]);
        assert!(matches!(
            PoolGeom::new(2, 2, p),
            Err(ConvError::KernelTooLarge { .. })
        ));
        let too_much_pad = PoolParams {
            padding: [2, 2],
            ..p
        };
        assert!(PoolGeom::new(8, 8, too_much_pad).is_err());
        assert!(PoolGeom::new(0, 8, p).is_err());
        assert!(
            PoolGeom::new(
                8,
                8,
                PoolParams {
                    stride: [0, 1],
                    ..p
                }
            )
            .is_err()
        );
        let g = PoolGeom::new(4, 4, PoolParams::new([2, 2])).unwrap();
        let mut y = vec![0.0; 4];
        let mut am = vec![0; 4];
        assert!(max_pool2d_forward(&g, &[0.0; 15], &mut y, &mut am).is_err());
        assert!(avg_pool2d_forward(&g, true, &[0.0; 32], &mut y).is_err());
        assert!(max_pool2d_backward(&g, &y, &[99; 4], &mut [0.0; 16]).is_err());
        assert!(adaptive_avg_pool2d_forward([4, 4], [0, 1], &[0.0; 16], &mut y).is_err());
    }
}
