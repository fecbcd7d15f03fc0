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

/// Floats of `grad_y` from which [`bias_grad`] splits its channels between threads (a
/// ResNet-50 stem's 3.2 MB took 5% of its single-threaded backward-weight pass; a LeNet
/// layer is not worth a thread's wake-up).
const PARALLEL_FLOATS: usize = 1 << 16;

/// `grad_bias[ch] = sum_{b, s} grad_y[b, ch, s]`, channels split between threads for large
/// tensors (each channel's sum still computed by one thread in the fixed order).
pub fn bias_grad(grad_y: &[f32], n: usize, c: usize, spatial: usize, grad_bias: &mut [f32]) {
    assert_eq!(grad_y.len(), n * c * spatial);
    assert_eq!(grad_bias.len(), c);
    let threads = crate::parallel::threads();
    if threads > 1 && grad_y.len() >= PARALLEL_FLOATS && c > 1 {
        let per = c.div_ceil(threads);
        crate::parallel::for_each_chunk_mut(grad_bias, per, |i, part| {
            channel_sums(grad_y, n, c, spatial, i * per, part);
        });
    } else {
        channel_sums(grad_y, n, c, spatial, 0, grad_bias);
    }
}

/// `out[i]` = the sum of channel `ch0 + i` of `grad_y` (`[n, c, spatial]`).
fn channel_sums(grad_y: &[f32], n: usize, c: usize, spatial: usize, ch0: usize, out: &mut [f32]) {
    for (i, gb) in out.iter_mut().enumerate() {
        let ch = ch0 + i;
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
