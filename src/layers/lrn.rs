//! [`LocalResponseNorm`] across channels, exactly as PyTorch's `nn.LocalResponseNorm` defines
//! it (AlexNet, section 3.3):
//!
//! ```text
//! y[c] = x[c] / D[c]^beta,   D[c] = k + alpha/size * sum_{c' in win(c)} x[c']^2,
//! win(c) = [c - size/2, c + (size-1)/2] clipped to the channels   (integer division)
//!
//! dx[j] = dy[j] / D[j]^beta
//!       - 2*alpha*beta/size * x[j] * sum_{c : j in win(c)} dy[c] * x[c] / D[c]^(beta+1)
//! ```
//!
//! Samples are independent and run in parallel.

use rayon::prelude::*;

use super::{Ctx, Layer, cached, check_grad};
use crate::error::ensure;
use crate::{Error, Tensor};

/// Local response normalization over `size` neighbouring channels.
#[derive(Clone, Debug)]
pub struct LocalResponseNorm {
    size: usize,
    alpha: f32,
    beta: f32,
    k: f32,
    /// The input and `D` of the last pass.
    saved: Option<(Tensor, Vec<f32>)>,
}

impl LocalResponseNorm {
    /// PyTorch's arguments (its defaults: `alpha = 1e-4`, `beta = 0.75`, `k = 1`; AlexNet uses
    /// `size = 5, k = 2`).
    pub fn new(size: usize, alpha: f32, beta: f32, k: f32) -> Result<Self, Error> {
        ensure(size > 0, || {
            "LocalResponseNorm: size must be positive".into()
        })?;
        Ok(LocalResponseNorm {
            size,
            alpha,
            beta,
            k,
            saved: None,
        })
    }

    /// Channels `c'` in the window of channel `c`.
    fn window(&self, c: usize, channels: usize) -> std::ops::Range<usize> {
        c.saturating_sub(self.size / 2)..(c + (self.size - 1) / 2 + 1).min(channels)
    }

    /// Channels `c` whose window holds channel `j`.
    fn windows_holding(&self, j: usize, channels: usize) -> std::ops::Range<usize> {
        j.saturating_sub((self.size - 1) / 2)..(j + self.size / 2 + 1).min(channels)
    }

    /// `D` for one sample `x [c, spatial]`.
    fn denominators(&self, x: &[f32], d: &mut [f32], channels: usize, spatial: usize) {
        let scale = self.alpha / self.size as f32;
        for s in 0..spatial {
            for c in 0..channels {
                let sum: f32 = self
                    .window(c, channels)
                    .map(|cc| x[cc * spatial + s] * x[cc * spatial + s])
                    .sum();
                d[c * spatial + s] = self.k + scale * sum;
            }
        }
    }

    /// `dx` for one sample, from `x`, `D` and `dy`.
    fn sample_grad(&self, x: &[f32], d: &[f32], gy: &[f32], gx: &mut [f32], channels: usize) {
        let spatial = x.len() / channels;
        let factor = 2.0 * self.alpha * self.beta / self.size as f32;
        for s in 0..spatial {
            for j in 0..channels {
                let i = j * spatial + s;
                let cross: f32 = self
                    .windows_holding(j, channels)
                    .map(|c| {
                        let ic = c * spatial + s;
                        gy[ic] * x[ic] * d[ic].powf(-self.beta - 1.0)
                    })
                    .sum();
                gx[i] = gy[i] * d[i].powf(-self.beta) - factor * x[i] * cross;
            }
        }
    }
}

impl Layer for LocalResponseNorm {
    fn kind(&self) -> &'static str {
        "LocalResponseNorm"
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        Ok(input)
    }
    fn forward(&mut self, x: Tensor, _ctx: &mut Ctx) -> Result<Tensor, Error> {
        let (channels, spatial, sample) = (x.c(), x.plane_len(), x.sample_len().max(1));
        let mut d = vec![0.0f32; x.len()];
        x.data()
            .par_chunks(sample)
            .zip(d.par_chunks_mut(sample))
            .for_each(|(xs, ds)| self.denominators(xs, ds, channels, spatial));
        let mut y = x.clone();
        for (v, &dv) in y.data_mut().iter_mut().zip(&d) {
            *v /= dv.powf(self.beta);
        }
        self.saved = Some((x, d));
        Ok(y)
    }
    fn backward(&mut self, grad_y: Tensor) -> Result<Tensor, Error> {
        let (x, d) = cached(&self.saved, "LocalResponseNorm")?;
        check_grad("LocalResponseNorm", &grad_y, x.shape())?;
        let (channels, sample) = (x.c(), x.sample_len().max(1));
        let mut grad_x = Tensor::zeros(x.shape());
        grad_x
            .data_mut()
            .par_chunks_mut(sample)
            .zip(x.data().par_chunks(sample))
            .zip(d.par_chunks(sample))
            .zip(grad_y.data().par_chunks(sample))
            .for_each(|(((gx, xs), ds), gy)| self.sample_grad(xs, ds, gy, gx, channels));
        Ok(grad_x)
    }
}
