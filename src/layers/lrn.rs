//! [`LocalResponseNorm`] across channels, exactly as PyTorch's `nn.LocalResponseNorm` defines
//! it (AlexNet, section 3.3):
//!
//! ```text
//! y[c] = x[c] * P[c],   P[c] = D[c]^-beta,   D[c] = k + alpha/size * sum_{c' in win(c)} x[c']^2,
//! win(c) = [c - size/2, c + (size-1)/2] clipped to the channels   (integer division)
//!
//! dx[j] = dy[j] * P[j] - 2*alpha*beta/size * x[j] * sum_{c : j in win(c)} T[c],
//! T[c]  = dy[c] * x[c] * P[c] / D[c]                 (= dy[c] * x[c] * D[c]^(-beta-1))
//! ```
//!
//! Each window sum runs over whole channel planes, so the inner loops are element-wise over
//! the pixels and vectorize. `P` is kept from the forward pass for the backward pass. For
//! AlexNet's `beta = 0.75`, `D^-0.75 = 1 / (sqrt(D) * sqrt(sqrt(D)))` replaces `powf`.
//!
//! Samples are independent and run in parallel.

use rayon::prelude::*;

use super::{Ctx, Layer, cached, check_grad};
use crate::error::ensure;
use crate::summary;
use crate::{Error, Tensor};

/// Local response normalization over `size` neighbouring channels.
#[derive(Clone, Debug)]
pub struct LocalResponseNorm {
    size: usize,
    alpha: f32,
    beta: f32,
    k: f32,
    /// The input, `D` and `P = D^-beta` of the last pass.
    saved: Option<Saved>,
}

#[derive(Clone, Debug)]
struct Saved {
    x: Tensor,
    d: Vec<f32>,
    p: Vec<f32>,
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

    /// `D^-beta`.
    fn neg_pow(&self, d: f32) -> f32 {
        if self.beta == 0.75 {
            let s = d.sqrt();
            1.0 / (s * s.sqrt())
        } else {
            d.powf(-self.beta)
        }
    }

    /// `D` and `P` for one sample `x [channels, spatial]`.
    fn sample_forward(&self, x: &[f32], d: &mut [f32], p: &mut [f32], spatial: usize) {
        let channels = x.len() / spatial;
        let squares: Vec<f32> = x.iter().map(|v| v * v).collect();
        let scale = self.alpha / self.size as f32;
        for c in 0..channels {
            let dc = &mut d[c * spatial..(c + 1) * spatial];
            dc.fill(0.0);
            for cc in self.window(c, channels) {
                for (acc, &sq) in dc
                    .iter_mut()
                    .zip(&squares[cc * spatial..(cc + 1) * spatial])
                {
                    *acc += sq;
                }
            }
            let pc = &mut p[c * spatial..(c + 1) * spatial];
            for (dv, pv) in dc.iter_mut().zip(pc) {
                *dv = self.k + scale * *dv;
                *pv = self.neg_pow(*dv);
            }
        }
    }

    /// `dx` for one sample, from `x`, `D`, `P` and `dy`.
    fn sample_grad(&self, s: SampleRefs, gx: &mut [f32], spatial: usize) {
        let SampleRefs { x, d, p, gy } = s;
        let channels = x.len() / spatial;
        let factor = 2.0 * self.alpha * self.beta / self.size as f32;
        let t: Vec<f32> = (0..x.len()).map(|i| gy[i] * x[i] * p[i] / d[i]).collect();
        let mut cross = vec![0.0f32; spatial];
        for j in 0..channels {
            cross.fill(0.0);
            for c in self.windows_holding(j, channels) {
                for (acc, &tv) in cross.iter_mut().zip(&t[c * spatial..(c + 1) * spatial]) {
                    *acc += tv;
                }
            }
            let range = j * spatial..(j + 1) * spatial;
            let out = gx[range.clone()].iter_mut().zip(&cross);
            for ((g, &cr), i) in out.zip(range) {
                *g = gy[i] * p[i] - factor * x[i] * cr;
            }
        }
    }
}

/// One sample's slices of the saved tensors and the output gradient.
struct SampleRefs<'a> {
    x: &'a [f32],
    d: &'a [f32],
    p: &'a [f32],
    gy: &'a [f32],
}

impl Layer for LocalResponseNorm {
    fn kind(&self) -> &'static str {
        "LocalResponseNorm"
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        Ok(input)
    }
    fn flops(&self, input: [usize; 4]) -> Result<u64, Error> {
        Ok((2 * self.size as u64 + 3) * summary::elements(input))
    }
    fn forward(&mut self, x: Tensor, _ctx: &mut Ctx) -> Result<Tensor, Error> {
        let (spatial, sample) = (x.plane_len().max(1), x.sample_len().max(1));
        let mut d = vec![0.0f32; x.len()];
        let mut p = vec![0.0f32; x.len()];
        x.data()
            .par_chunks(sample)
            .zip(d.par_chunks_mut(sample))
            .zip(p.par_chunks_mut(sample))
            .for_each(|((xs, ds), ps)| self.sample_forward(xs, ds, ps, spatial));
        let mut y = x.clone();
        for (v, &pv) in y.data_mut().iter_mut().zip(&p) {
            *v *= pv;
        }
        self.saved = Some(Saved { x, d, p });
        Ok(y)
    }
    fn backward(&mut self, grad_y: Tensor) -> Result<Tensor, Error> {
        let s = cached(&self.saved, "LocalResponseNorm")?;
        check_grad("LocalResponseNorm", &grad_y, s.x.shape())?;
        let (spatial, sample) = (s.x.plane_len().max(1), s.x.sample_len().max(1));
        let mut grad_x = Tensor::zeros(s.x.shape());
        grad_x
            .data_mut()
            .par_chunks_mut(sample)
            .zip(s.x.data().par_chunks(sample))
            .zip(s.d.par_chunks(sample))
            .zip(s.p.par_chunks(sample))
            .zip(grad_y.data().par_chunks(sample))
            .for_each(|((((gx, x), d), p), gy)| {
                self.sample_grad(SampleRefs { x, d, p, gy }, gx, spatial)
            });
        Ok(grad_x)
    }
}
