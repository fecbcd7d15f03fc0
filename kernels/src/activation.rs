//! Element-wise activations and the channel softmax on plain `f32` slices, forward and
//! backward, with PyTorch's definitions.
//!
//! ```text
//! relu        y = max(x, 0)                       dy/dx = [x > 0]      (from y: [y > 0])
//! leaky_relu  y = x >= 0 ? x : slope*x            dy/dx = x > 0 ? 1 : slope
//! prelu       leaky_relu with slope[ch] learned   dy/dslope = x > 0 ? 0 : x
//! elu         y = x > 0 ? x : alpha*(e^x - 1)     dy/dx = x > 0 ? 1 : alpha*e^x
//! sigmoid     y = 1 / (1 + e^-x)                  dy/dx = y * (1 - y)
//! tanh        y = tanh x                          dy/dx = 1 - y^2
//! softmax     y[c] = e^x[c] / sum_k e^x[k]        dx[c] = y[c] * (dy[c] - sum_k dy[k] * y[k])
//!             over the channels of x [n, c, spatial], at each sample and pixel
//! ```
//!
//! Forward passes work in place; backward passes turn the output gradient into the input
//! gradient in place, reading the forward input or output as the table says. Each output
//! depends on its own input only (softmax: on its own pixel), so a caller may split the work
//! across threads without changing a bit. Mismatched lengths are a [`ConvError::BufferLength`].

use crate::ConvError;

fn same_len(buffer: &'static str, got: usize, expected: usize) -> Result<(), ConvError> {
    if got == expected {
        Ok(())
    } else {
        Err(ConvError::BufferLength {
            buffer,
            expected,
            got,
        })
    }
}

/// `x = max(x, 0)`.
pub fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

/// `grad *= [y > 0]`, `y` the ReLU output.
pub fn relu_backward(y: &[f32], grad: &mut [f32]) -> Result<(), ConvError> {
    same_len("grad", grad.len(), y.len())?;
    for (g, &y) in grad.iter_mut().zip(y) {
        // A select, not a branch, so the loop vectorizes.
        *g = if y > 0.0 { *g } else { 0.0 };
    }
    Ok(())
}

/// `x = x >= 0 ? x : slope * x`.
pub fn leaky_relu(x: &mut [f32], slope: f32) {
    for v in x {
        if *v < 0.0 {
            *v *= slope;
        }
    }
}

/// `grad *= x > 0 ? 1 : slope`, `x` the forward input.
pub fn leaky_relu_backward(x: &[f32], grad: &mut [f32], slope: f32) -> Result<(), ConvError> {
    same_len("grad", grad.len(), x.len())?;
    for (g, &x) in grad.iter_mut().zip(x) {
        if x <= 0.0 {
            *g *= slope;
        }
    }
    Ok(())
}

/// Checks that `x` holds whole `[c, spatial]` planes, with `c` and `spatial` positive.
fn channel_planes(x_len: usize, c: usize, spatial: usize) -> Result<(), ConvError> {
    if c == 0 || spatial == 0 {
        return Err(ConvError::ZeroSize {
            what: if c == 0 { "channels" } else { "spatial" },
        });
    }
    let plane = c.checked_mul(spatial).ok_or(ConvError::Overflow {
        what: "channel planes",
    })?;
    if !x_len.is_multiple_of(plane) {
        return Err(ConvError::BufferLength {
            buffer: "x",
            expected: (x_len / plane + 1) * plane,
            got: x_len,
        });
    }
    Ok(())
}

/// PReLU on `x [n, c, spatial]` with one slope per channel (`slope.len() == c`).
pub fn prelu(x: &mut [f32], slope: &[f32], spatial: usize) -> Result<(), ConvError> {
    channel_planes(x.len(), slope.len(), spatial)?;
    for (plane, &a) in x.chunks_exact_mut(spatial).zip(slope.iter().cycle()) {
        leaky_relu(plane, a);
    }
    Ok(())
}

/// PReLU backward: `grad` becomes the input gradient in place, and `grad_slope[ch]` is set to
/// `sum over samples and pixels of (x <= 0 ? x * grad : 0)`, summed in index order.
pub fn prelu_backward(
    x: &[f32],
    slope: &[f32],
    spatial: usize,
    grad: &mut [f32],
    grad_slope: &mut [f32],
) -> Result<(), ConvError> {
    channel_planes(x.len(), slope.len(), spatial)?;
    same_len("grad", grad.len(), x.len())?;
    same_len("grad_slope", grad_slope.len(), slope.len())?;
    grad_slope.fill(0.0);
    let c = slope.len();
    for (i, (xp, gp)) in x
        .chunks_exact(spatial)
        .zip(grad.chunks_exact_mut(spatial))
        .enumerate()
    {
        let ch = i % c;
        let mut acc = 0.0f32;
        for (g, &x) in gp.iter_mut().zip(xp) {
            if x <= 0.0 {
                acc += x * *g;
                *g *= slope[ch];
            }
        }
        grad_slope[ch] += acc;
    }
    Ok(())
}

/// `x = x > 0 ? x : alpha * (e^x - 1)`.
pub fn elu(x: &mut [f32], alpha: f32) {
    for v in x {
        if *v <= 0.0 {
            *v = alpha * v.exp_m1();
        }
    }
}

/// `grad *= x > 0 ? 1 : alpha * e^x`, `x` the forward input.
pub fn elu_backward(x: &[f32], grad: &mut [f32], alpha: f32) -> Result<(), ConvError> {
    same_len("grad", grad.len(), x.len())?;
    for (g, &x) in grad.iter_mut().zip(x) {
        if x <= 0.0 {
            *g *= alpha * x.exp();
        }
    }
    Ok(())
}

/// `x = 1 / (1 + e^-x)`.
pub fn sigmoid(x: &mut [f32]) {
    for v in x {
        *v = 1.0 / (1.0 + (-*v).exp());
    }
}

/// `grad *= y * (1 - y)`, `y` the sigmoid output.
pub fn sigmoid_backward(y: &[f32], grad: &mut [f32]) -> Result<(), ConvError> {
    same_len("grad", grad.len(), y.len())?;
    for (g, &y) in grad.iter_mut().zip(y) {
        *g *= y * (1.0 - y);
    }
    Ok(())
}

/// `x = tanh x`.
pub fn tanh(x: &mut [f32]) {
    for v in x {
        *v = v.tanh();
    }
}

/// `grad *= 1 - y^2`, `y` the tanh output.
pub fn tanh_backward(y: &[f32], grad: &mut [f32]) -> Result<(), ConvError> {
    same_len("grad", grad.len(), y.len())?;
    for (g, &y) in grad.iter_mut().zip(y) {
        *g *= 1.0 - y * y;
    }
    Ok(())
}

/// Softmax over the channels of `x [n, c, spatial]`, in place, at each sample and pixel
/// (PyTorch's `softmax(x, dim=1)`); the maximum is subtracted first, so no input overflows.
pub fn softmax_channels(x: &mut [f32], c: usize, spatial: usize) -> Result<(), ConvError> {
    channel_planes(x.len(), c, spatial)?;
    let mut col = vec![0.0f32; c];
    for sample in x.chunks_exact_mut(c * spatial) {
        for s in 0..spatial {
            for (ch, v) in col.iter_mut().enumerate() {
                *v = sample[ch * spatial + s];
            }
            let max = col.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for v in col.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            for (ch, v) in col.iter().enumerate() {
                sample[ch * spatial + s] = v / sum;
            }
        }
    }
    Ok(())
}

/// Softmax backward: `grad[c] = y[c] * (grad[c] - sum_k grad[k] * y[k])` at each sample and
/// pixel, `y` the softmax output.
pub fn softmax_channels_backward(
    y: &[f32],
    grad: &mut [f32],
    c: usize,
    spatial: usize,
) -> Result<(), ConvError> {
    channel_planes(y.len(), c, spatial)?;
    same_len("grad", grad.len(), y.len())?;
    let samples = y
        .chunks_exact(c * spatial)
        .zip(grad.chunks_exact_mut(c * spatial));
    for (ys, gs) in samples {
        for s in 0..spatial {
            let dot: f32 = (0..c)
                .map(|ch| ys[ch * spatial + s] * gs[ch * spatial + s])
                .sum();
            for ch in 0..c {
                let i = ch * spatial + s;
                gs[i] = ys[i] * (gs[i] - dot);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite f32 of the same sign or zero.
    fn ulps(a: f32, b: f32) -> u32 {
        if a == b {
            return 0;
        }
        let key = |v: f32| {
            let bits = v.to_bits() as i64;
            if bits < 0 { i64::MIN - bits } else { bits }
        };
        (key(a) - key(b)).unsigned_abs() as u32
    }

    /// Inputs spanning the interesting range, including zero, tiny and large magnitudes.
    fn inputs() -> Vec<f32> {
        let mut xs = vec![0.0, -0.0, 1e-30, -1e-30, 20.0, -20.0, 88.0, -88.0];
        xs.extend((-400..=400).map(|i| i as f32 / 50.0));
        xs
    }

    fn assert_within_ulps(name: &str, got: &[f32], want: impl Fn(f64) -> f64, max_ulps: u32) {
        for (&x, &g) in inputs().iter().zip(got) {
            let w = want(x as f64) as f32;
            assert!(
                ulps(g, w) <= max_ulps,
                "{name}({x}) = {g}, want {w} ({} ulps > {max_ulps})",
                ulps(g, w)
            );
        }
    }

    fn apply(f: impl Fn(&mut [f32])) -> Vec<f32> {
        let mut x = inputs();
        f(&mut x);
        x
    }

    #[test]
    fn forwards_match_f64_formulas() {
        assert_within_ulps("relu", &apply(relu), |x| x.max(0.0), 0);
        assert_within_ulps(
            "leaky_relu",
            &apply(|x| leaky_relu(x, 0.01)),
            |x| if x >= 0.0 { x } else { 0.01f32 as f64 * x },
            1,
        );
        assert_within_ulps(
            "elu",
            &apply(|x| elu(x, 1.0)),
            |x| if x > 0.0 { x } else { x.exp_m1() },
            2,
        );
        assert_within_ulps("sigmoid", &apply(sigmoid), |x| 1.0 / (1.0 + (-x).exp()), 4);
        assert_within_ulps("tanh", &apply(tanh), f64::tanh, 2);
    }

    #[test]
    fn backwards_match_f64_derivatives() {
        let xs = inputs();
        let dy: Vec<f32> = (0..xs.len())
            .map(|i| (i % 7) as f32 * 0.25 - 0.75)
            .collect();
        let check = |name: &str, got: &[f32], deriv: &dyn Fn(f64) -> f64, max_ulps: u32| {
            for ((&x, &g), &d) in xs.iter().zip(got).zip(&dy) {
                let w = (deriv(x as f64) * d as f64) as f32;
                assert!(ulps(g, w) <= max_ulps, "{name}'({x}) * {d} = {g}, want {w}");
            }
        };
        let mut g = dy.clone();
        relu_backward(&apply(relu), &mut g).unwrap();
        check("relu", &g, &|x| if x > 0.0 { 1.0 } else { 0.0 }, 0);
        let mut g = dy.clone();
        leaky_relu_backward(&xs, &mut g, 0.5).unwrap();
        check("leaky_relu", &g, &|x| if x > 0.0 { 1.0 } else { 0.5 }, 0);
        let mut g = dy.clone();
        elu_backward(&xs, &mut g, 1.0).unwrap();
        check("elu", &g, &|x| if x > 0.0 { 1.0 } else { x.exp() }, 3);
        // Derivatives from the f32 outputs: the error is the output's own rounding, amplified
        // at most by the derivative's slope, so compare on the rounded outputs.
        let y = apply(sigmoid);
        let mut g = dy.clone();
        sigmoid_backward(&y, &mut g).unwrap();
        for ((&y, &g), &d) in y.iter().zip(&g).zip(&dy) {
            let w = (y as f64 * (1.0 - y as f64) * d as f64) as f32;
            assert!(ulps(g, w) <= 3, "sigmoid' at y={y}: {g} vs {w}");
        }
        let y = apply(tanh);
        let mut g = dy.clone();
        tanh_backward(&y, &mut g).unwrap();
        for ((&y, &g), &d) in y.iter().zip(&g).zip(&dy) {
            let w = ((1.0 - y as f64 * y as f64) * d as f64) as f32;
            assert!(
                (g - w).abs() <= 2.0 * f32::EPSILON * d.abs(),
                "tanh' at y={y}"
            );
        }
    }

    #[test]
    fn prelu_matches_leaky_per_channel_and_sums_slope_grads() {
        let (n, c, spatial) = (2, 3, 4);
        let x: Vec<f32> = (0..n * c * spatial).map(|i| i as f32 - 11.0).collect();
        let slope = [0.25, 0.5, -1.0];
        let mut y = x.clone();
        prelu(&mut y, &slope, spatial).unwrap();
        let mut grad = vec![1.0f32; x.len()];
        let mut grad_slope = [f32::NAN; 3];
        prelu_backward(&x, &slope, spatial, &mut grad, &mut grad_slope).unwrap();
        for (i, &xv) in x.iter().enumerate() {
            let a = slope[(i / spatial) % c];
            assert_eq!(y[i], if xv >= 0.0 { xv } else { a * xv });
            assert_eq!(grad[i], if xv > 0.0 { 1.0 } else { a });
        }
        for (ch, &gs) in grad_slope.iter().enumerate() {
            let mut want = 0.0f32;
            for b in 0..n {
                for s in 0..spatial {
                    let v = x[(b * c + ch) * spatial + s];
                    if v <= 0.0 {
                        want += v;
                    }
                }
            }
            assert_eq!(gs, want, "channel {ch}");
        }
        assert!(
            prelu(&mut y, &[0.1; 5], spatial).is_err(),
            "24 values are not whole 5x4 planes"
        );
        assert!(prelu(&mut y, &[], spatial).is_err());
    }

    #[test]
    fn softmax_is_stable_and_its_backward_matches_the_jacobian() {
        let (c, spatial) = (4, 3);
        let x: Vec<f32> = vec![
            1000.0, 1.0, -3.0, // channel 0 at the 3 pixels
            1001.0, 2.0, -3.0, //
            999.0, 3.0, -3.0, //
            0.0, 4.0, 80.0,
        ];
        let mut y = x.clone();
        softmax_channels(&mut y, c, spatial).unwrap();
        for s in 0..spatial {
            let col: Vec<f64> = (0..c).map(|ch| x[ch * spatial + s] as f64).collect();
            let max = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = col.iter().map(|v| (v - max).exp()).sum();
            for ch in 0..c {
                let want = ((col[ch] - max).exp() / z) as f32;
                let got = y[ch * spatial + s];
                assert!(got.is_finite() && ulps(got, want) <= 4, "{got} vs {want}");
            }
        }
        let dy: Vec<f32> = (0..x.len()).map(|i| (i % 5) as f32 - 2.0).collect();
        let mut g = dy.clone();
        softmax_channels_backward(&y, &mut g, c, spatial).unwrap();
        for s in 0..spatial {
            for i in 0..c {
                // Jacobian: dy_j/dx_i = y_j (delta_ij - y_i).
                let want: f64 = (0..c)
                    .map(|j| {
                        let yi = y[i * spatial + s] as f64;
                        let yj = y[j * spatial + s] as f64;
                        let delta = if i == j { 1.0 } else { 0.0 };
                        dy[j * spatial + s] as f64 * yj * (delta - yi)
                    })
                    .sum();
                assert!(
                    (g[i * spatial + s] as f64 - want).abs() < 1e-5,
                    "pixel {s} ch {i}"
                );
            }
        }
        assert!(softmax_channels(&mut y[..11], c, spatial).is_err());
    }
}
