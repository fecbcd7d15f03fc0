//! The naive reference: the oracle every kernel is tested against. Plain loops over the
//! canonical geometry (see [`crate::params`]), f64 accumulation. Never optimise this file.
//!
//! ```text
//! forward          y[b, oc, oy, ox]    = bias[oc] + sum_{ic, ky, kx} x[b, c, iy, ix] * w[oc, ic, ky, kx]
//! backward_data    dx[b, c, iy, ix]    = bias[c]  + sum_{oc, ky, kx} dy[b, oc, oy, ox] * w[oc, ic, ky, kx]
//! backward_weight  dw[oc, ic, ky, kx]  =            sum_{b, oy, ox}  x[b, c, iy, ix] * dy[b, oc, oy, ox]
//! bias_grad        db[c]               =            sum_{b, s}       dy[b, c, s]
//!   where c = grp*c_in_g + ic for the group grp = oc / c_out_g,
//!         iy = oy*sh + ky*dh - pad_t,  ix = ox*sw + kx*dw - pad_l   (outside 0..h, 0..w: zero)
//! ```
//!
//! Backward-data is written as a *gather* over each input pixel (solving the index equation
//! for `oy`), not as the scatter of the forward loop, so the adjointness test between the two
//! compares two independently written loop nests.

use crate::params::ConvGeom;

/// Input index `o*s + k*d - pad` when it lies in `0..size`.
fn tap(o: usize, s: usize, k: usize, d: usize, pad: usize, size: usize) -> Option<usize> {
    (o * s + k * d).checked_sub(pad).filter(|&i| i < size)
}

/// Output index `o` with `o*s + k*d - pad == i`, when it exists and lies in `0..out`.
fn tap_back(i: usize, s: usize, k: usize, d: usize, pad: usize, out: usize) -> Option<usize> {
    let t = (i + pad).checked_sub(k * d)?;
    (t % s == 0 && t / s < out).then_some(t / s)
}

/// Forward: `x [n, c_in, h, w]`, `weight [c_out, c_in/g, kh, kw]`, `bias [c_out]` ->
/// `y [n, c_out, oh, ow]`, in f64.
pub fn forward_f64<T: Copy + Into<f64>>(
    g: &ConvGeom,
    x: &[T],
    weight: &[T],
    bias: Option<&[T]>,
) -> Vec<f64> {
    assert_eq!(x.len(), g.x_len);
    assert_eq!(weight.len(), g.w_len);
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let mut y = vec![0.0f64; g.y_len];
    for b in 0..g.n {
        for oc in 0..g.c_out {
            let grp = oc / c_out_g;
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut acc = bias.map_or(0.0, |bias| bias[oc].into());
                    for ic in 0..c_in_g {
                        let c = grp * c_in_g + ic;
                        for ky in 0..g.kh {
                            let Some(iy) = tap(oy, g.sh, ky, g.dh, g.pad_t, g.h) else {
                                continue;
                            };
                            for kx in 0..g.kw {
                                let Some(ix) = tap(ox, g.sw, kx, g.dw, g.pad_l, g.w) else {
                                    continue;
                                };
                                let xv: f64 = x[((b * g.c_in + c) * g.h + iy) * g.w + ix].into();
                                let wv: f64 =
                                    weight[((oc * c_in_g + ic) * g.kh + ky) * g.kw + kx].into();
                                acc += xv * wv;
                            }
                        }
                    }
                    y[((b * g.c_out + oc) * g.oh + oy) * g.ow + ox] = acc;
                }
            }
        }
    }
    y
}

/// Backward-data: `grad_y [n, c_out, oh, ow]`, `weight [c_out, c_in/g, kh, kw]`, `bias [c_in]`
/// -> `grad_x [n, c_in, h, w]`, in f64. With a bias this is the transposed conv's forward.
pub fn backward_data_f64<T: Copy + Into<f64>>(
    g: &ConvGeom,
    grad_y: &[T],
    weight: &[T],
    bias: Option<&[T]>,
) -> Vec<f64> {
    assert_eq!(grad_y.len(), g.y_len);
    assert_eq!(weight.len(), g.w_len);
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let mut grad_x = vec![0.0f64; g.x_len];
    for b in 0..g.n {
        for c in 0..g.c_in {
            let (grp, ic) = (c / c_in_g, c % c_in_g);
            for iy in 0..g.h {
                for ix in 0..g.w {
                    let mut acc = bias.map_or(0.0, |bias| bias[c].into());
                    for oc in grp * c_out_g..(grp + 1) * c_out_g {
                        for ky in 0..g.kh {
                            let Some(oy) = tap_back(iy, g.sh, ky, g.dh, g.pad_t, g.oh) else {
                                continue;
                            };
                            for kx in 0..g.kw {
                                let Some(ox) = tap_back(ix, g.sw, kx, g.dw, g.pad_l, g.ow) else {
                                    continue;
                                };
                                let dy: f64 =
                                    grad_y[((b * g.c_out + oc) * g.oh + oy) * g.ow + ox].into();
                                let wv: f64 =
                                    weight[((oc * c_in_g + ic) * g.kh + ky) * g.kw + kx].into();
                                acc += dy * wv;
                            }
                        }
                    }
                    grad_x[((b * g.c_in + c) * g.h + iy) * g.w + ix] = acc;
                }
            }
        }
    }
    grad_x
}

/// Backward-weight: `x [n, c_in, h, w]`, `grad_y [n, c_out, oh, ow]` ->
/// `grad_weight [c_out, c_in/g, kh, kw]`, in f64.
pub fn backward_weight_f64<T: Copy + Into<f64>>(g: &ConvGeom, x: &[T], grad_y: &[T]) -> Vec<f64> {
    assert_eq!(x.len(), g.x_len);
    assert_eq!(grad_y.len(), g.y_len);
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    let mut grad_w = vec![0.0f64; g.w_len];
    for oc in 0..g.c_out {
        let grp = oc / c_out_g;
        for ic in 0..c_in_g {
            let c = grp * c_in_g + ic;
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let mut acc = 0.0f64;
                    for b in 0..g.n {
                        for oy in 0..g.oh {
                            let Some(iy) = tap(oy, g.sh, ky, g.dh, g.pad_t, g.h) else {
                                continue;
                            };
                            for ox in 0..g.ow {
                                let Some(ix) = tap(ox, g.sw, kx, g.dw, g.pad_l, g.w) else {
                                    continue;
                                };
                                let xv: f64 = x[((b * g.c_in + c) * g.h + iy) * g.w + ix].into();
                                let dy: f64 =
                                    grad_y[((b * g.c_out + oc) * g.oh + oy) * g.ow + ox].into();
                                acc += xv * dy;
                            }
                        }
                    }
                    grad_w[((oc * c_in_g + ic) * g.kh + ky) * g.kw + kx] = acc;
                }
            }
        }
    }
    grad_w
}

/// Bias gradient: `grad_y [n, c, spatial]` -> `grad_bias [c]`, in f64.
pub fn bias_grad_f64<T: Copy + Into<f64>>(
    grad_y: &[T],
    n: usize,
    c: usize,
    spatial: usize,
) -> Vec<f64> {
    assert_eq!(grad_y.len(), n * c * spatial);
    let mut grad_b = vec![0.0f64; c];
    for (ch, gb) in grad_b.iter_mut().enumerate() {
        for b in 0..n {
            for s in 0..spatial {
                *gb += grad_y[(b * c + ch) * spatial + s].into();
            }
        }
    }
    grad_b
}

/// The reference as a registered kernel: every geometry and pass, f64 accumulation rounded
/// once to f32.
pub struct ReferenceF32;

fn store(out: &mut [f32], vals: &[f64]) {
    for (o, v) in out.iter_mut().zip(vals) {
        *o = *v as f32;
    }
}

// SAFETY: plain safe Rust, no ISA requirement.
unsafe impl crate::registry::ConvKernel for ReferenceF32 {
    fn name(&self) -> &'static str {
        "reference_f32"
    }
    fn algorithm(&self) -> crate::Algorithm {
        crate::Algorithm::Reference
    }
    fn isa(&self) -> crate::Isa {
        crate::Isa::Scalar
    }
    fn supports(&self, _g: &ConvGeom, _pass: crate::Pass) -> Result<(), &'static str> {
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
        store(y, &forward_f64(g, x, weight, bias));
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
        store(grad_x, &backward_data_f64(g, grad_y, weight, bias));
    }
    fn backward_weight(&self, g: &ConvGeom, x: &[f32], grad_y: &[f32], grad_weight: &mut [f32]) {
        g.assert_backward_weight(x, grad_y, grad_weight);
        store(grad_weight, &backward_weight_f64(g, x, grad_y));
    }
    fn bias_grad(&self, grad_y: &[f32], n: usize, c: usize, spatial: usize, grad_bias: &mut [f32]) {
        store(grad_bias, &bias_grad_f64(grad_y, n, c, spatial));
    }
}
