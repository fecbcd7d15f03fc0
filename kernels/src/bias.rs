//! Bias epilogue and bias gradient shared by the fast kernels.
//!
//! `t` is `[n, c, spatial]` dense. The gradient sums each channel in a fixed order (batch,
//! then pixels in 8 interleaved partial sums, then the partials left to right), so the result
//! does not depend on the thread count.

/// `t[b, ch, s] += bias[ch]`.
pub fn add_bias(t: &mut [f32], n: usize, c: usize, spatial: usize, bias: &[f32]) {
    assert_eq!(t.len(), n * c * spatial);
    assert_eq!(bias.len(), c);
    if spatial == 0 {
        return;
    }
    for (plane, &b) in t.chunks_exact_mut(spatial).zip(bias.iter().cycle()) {
        for v in plane {
            *v += b;
        }
    }
}

/// `grad_bias[ch] = sum_{b, s} grad_y[b, ch, s]`.
pub fn bias_grad(grad_y: &[f32], n: usize, c: usize, spatial: usize, grad_bias: &mut [f32]) {
    assert_eq!(grad_y.len(), n * c * spatial);
    assert_eq!(grad_bias.len(), c);
    for (ch, gb) in grad_bias.iter_mut().enumerate() {
        let mut part = [0.0f32; 8];
        for b in 0..n {
            let plane = &grad_y[(b * c + ch) * spatial..][..spatial];
            let mut chunks = plane.chunks_exact(8);
            for chunk in &mut chunks {
                for (p, v) in part.iter_mut().zip(chunk) {
                    *p += v;
                }
            }
            for (p, v) in part.iter_mut().zip(chunks.remainder()) {
                *p += v;
            }
        }
        *gb = part.iter().sum();
    }
}
