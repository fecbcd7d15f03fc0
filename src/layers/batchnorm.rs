//! [`BatchNorm2d`] (PyTorch's `nn.BatchNorm2d`): per-channel normalization with batch
//! statistics in training and running statistics in evaluation.
//!
//! ```text
//! training:  mean, var = batch mean and biased variance over (n, h, w)
//!            running_mean += momentum * (mean - running_mean)
//!            running_var  += momentum * (var * m/(m-1) - running_var)      (m = n*h*w)
//! both:      xhat = (x - mean) / sqrt(var + eps),  y = weight * xhat + bias
//! backward (training):   dx = weight / sqrt(var + eps) / m * (m*dy - sum dy - xhat * sum dy*xhat)
//! backward (evaluation): dx = weight / sqrt(running_var + eps) * dy
//! dweight = sum dy*xhat,  dbias = sum dy
//! ```
//!
//! Channel sums accumulate in f64 in a fixed order (sample by sample; within a plane, eight
//! interleaved partial sums), one channel per task, so statistics do not depend on the
//! thread count. The forward pass keeps its input, not `xhat`, which the backward pass
//! recomputes on the fly: one tensor less written per pass.

use rayon::prelude::*;

use super::{Ctx, Layer, cached, check_channels, check_grad};
use crate::error::ensure;
use crate::param::{Param, join};
use crate::summary;
use crate::{Error, Tensor};

/// Batch normalization over the channels of NCHW input. Parameters `weight`, `bias`;
/// buffers `running_mean`, `running_var`, `num_batches_tracked` (PyTorch's state_dict).
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    channels: usize,
    eps: f32,
    momentum: f32,
    weight: Param,
    bias: Param,
    running_mean: Param,
    running_var: Param,
    num_batches_tracked: Param,
    saved: Option<Saved>,
}

/// What the backward pass needs: the input and the statistics it was normalized with
/// (`xhat` is recomputed from them rather than stored).
#[derive(Clone, Debug)]
struct Saved {
    x: Tensor,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    train: bool,
}

/// Independent accumulators of the f64 channel sums: enough to keep the adds pipelined and
/// vectorized. The order of a sum is fixed by this split, not by the thread count.
const LANES: usize = 8;

/// `sum f(v)` over one plane in f64: `LANES` interleaved partial sums, added at the end.
fn plane_sum(plane: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = plane.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v as f64)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v as f64);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `(sum dy, sum dy * (x - shift))` over one plane of `dy` and `x`, in f64, ordered as
/// [`plane_sum`] orders its sum.
fn plane_grad_sums(dy: &[f32], x: &[f32], shift: f64) -> (f64, f64) {
    let (mut s1, mut s2) = ([0.0f64; LANES], [0.0f64; LANES]);
    let (cd, cx) = (dy.chunks_exact(LANES), x.chunks_exact(LANES));
    let (mut t1, mut t2) = (0.0f64, 0.0f64);
    for (&d, &v) in cd.remainder().iter().zip(cx.remainder()) {
        t1 += d as f64;
        t2 += d as f64 * (v as f64 - shift);
    }
    for (d, v) in cd.zip(cx) {
        for lane in 0..LANES {
            s1[lane] += d[lane] as f64;
            s2[lane] += d[lane] as f64 * (v[lane] as f64 - shift);
        }
    }
    (s1.iter().sum::<f64>() + t1, s2.iter().sum::<f64>() + t2)
}

/// The planes of channel `ch` in a `[n, channels, plane]` tensor, in sample order.
fn channel_planes(
    t: &[f32],
    channels: usize,
    plane: usize,
    ch: usize,
) -> impl Iterator<Item = &[f32]> {
    t.chunks_exact((channels * plane).max(1))
        .map(move |sample| &sample[ch * plane..(ch + 1) * plane])
}

impl BatchNorm2d {
    /// PyTorch's defaults: `eps = 1e-5`, `momentum = 0.1`, affine, tracking running stats.
    pub fn new(channels: usize) -> Result<Self, Error> {
        Self::with(channels, 1e-5, 0.1)
    }

    /// With explicit `eps > 0` and `momentum` in `[0, 1]`.
    pub fn with(channels: usize, eps: f32, momentum: f32) -> Result<Self, Error> {
        ensure(
            channels > 0 && eps > 0.0 && (0.0..=1.0).contains(&momentum),
            || {
                format!(
                    "BatchNorm2d: needs channels > 0, eps > 0, momentum in [0, 1]; got {channels}, {eps}, {momentum}"
                )
            },
        )?;
        Ok(BatchNorm2d {
            channels,
            eps,
            momentum,
            weight: Param::learned(&[channels], 1.0),
            bias: Param::learned(&[channels], 0.0),
            running_mean: Param::buffer(&[channels], 0.0),
            running_var: Param::buffer(&[channels], 1.0),
            num_batches_tracked: Param::buffer(&[], 0.0),
            saved: None,
        })
    }

    /// Batch mean and biased variance per channel (two passes, f64).
    fn batch_stats(&self, x: &Tensor) -> Result<Vec<(f64, f64)>, Error> {
        let (plane, m) = (x.plane_len(), x.n() * x.plane_len());
        ensure(m > 1, || {
            format!(
                "BatchNorm2d: training needs more than one value per channel, got shape {:?}",
                x.shape()
            )
        })?;
        let data = x.data();
        Ok((0..self.channels)
            .into_par_iter()
            .map(|ch| {
                let planes = || channel_planes(data, self.channels, plane, ch);
                let mean = planes().map(|p| plane_sum(p, |v| v)).sum::<f64>() / m as f64;
                let var = planes()
                    .map(|p| plane_sum(p, |v| (v - mean) * (v - mean)))
                    .sum::<f64>()
                    / m as f64;
                (mean, var)
            })
            .collect())
    }

    fn update_running(&mut self, stats: &[(f64, f64)], m: usize) {
        let mom = self.momentum as f64;
        let unbias = m as f64 / (m - 1) as f64;
        let running = self
            .running_mean
            .value
            .iter_mut()
            .zip(&mut self.running_var.value);
        for ((rm, rv), &(mean, var)) in running.zip(stats) {
            *rm = ((1.0 - mom) * *rm as f64 + mom * mean) as f32;
            *rv = ((1.0 - mom) * *rv as f64 + mom * var * unbias) as f32;
        }
        self.num_batches_tracked.value[0] += 1.0;
    }
}

impl Layer for BatchNorm2d {
    fn kind(&self) -> &'static str {
        "BatchNorm2d"
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        check_channels("BatchNorm2d", input, self.channels)?;
        Ok(input)
    }
    fn forward(&mut self, x: Tensor, ctx: &mut Ctx) -> Result<Tensor, Error> {
        check_channels("BatchNorm2d", x.shape(), self.channels)?;
        let (mean, inv_std): (Vec<f32>, Vec<f32>) = if ctx.is_train() {
            let stats = self.batch_stats(&x)?;
            self.update_running(&stats, x.n() * x.plane_len());
            stats
                .iter()
                .map(|&(m, v)| (m as f32, (1.0 / (v + self.eps as f64).sqrt()) as f32))
                .unzip()
        } else {
            let rm = &self.running_mean.value;
            let rv = &self.running_var.value;
            let inv = rv.iter().map(|&v| 1.0 / (v + self.eps).sqrt());
            (rm.clone(), inv.collect())
        };
        let plane = x.plane_len().max(1);
        let mut y = Tensor::zeros(x.shape());
        let (w, b, c) = (&self.weight.value, &self.bias.value, self.channels);
        y.data_mut()
            .par_chunks_mut(plane)
            .zip(x.data().par_chunks(plane))
            .enumerate()
            .for_each(|(i, (yp, xp))| {
                let ch = i % c;
                let (m, inv, wc, bc) = (mean[ch], inv_std[ch], w[ch], b[ch]);
                for (y, &x) in yp.iter_mut().zip(xp) {
                    *y = wc * ((x - m) * inv) + bc;
                }
            });
        let train = ctx.is_train();
        self.saved = Some(Saved {
            x,
            mean,
            inv_std,
            train,
        });
        Ok(y)
    }
    fn backward(&mut self, mut grad_y: Tensor) -> Result<Tensor, Error> {
        let s = cached(&self.saved, "BatchNorm2d")?;
        check_grad("BatchNorm2d", &grad_y, s.x.shape())?;
        let (c, plane) = (self.channels, s.x.plane_len().max(1));
        let m = (s.x.n() * s.x.plane_len()) as f64;
        let (gy, x) = (grad_y.data(), s.x.data());
        // Per channel: sum dy, and sum dy * xhat = inv_std * sum dy * (x - mean).
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let planes = channel_planes(gy, c, plane, ch).zip(channel_planes(x, c, plane, ch));
                let (mut sum_dy, mut sum_dy_xc) = (0.0f64, 0.0f64);
                for (gp, xp) in planes {
                    let (a, b) = plane_grad_sums(gp, xp, s.mean[ch] as f64);
                    sum_dy += a;
                    sum_dy_xc += b;
                }
                (sum_dy, sum_dy_xc * s.inv_std[ch] as f64)
            })
            .collect();
        for (ch, &(sum_dy, sum_dy_xhat)) in sums.iter().enumerate() {
            self.bias.grad[ch] = sum_dy as f32;
            self.weight.grad[ch] = sum_dy_xhat as f32;
        }
        let (w, train) = (&self.weight.value, s.train);
        grad_y
            .data_mut()
            .par_chunks_mut(plane)
            .zip(s.x.data().par_chunks(plane))
            .enumerate()
            .for_each(|(i, (gp, xp))| {
                let ch = i % c;
                let (mean, inv) = (s.mean[ch], s.inv_std[ch]);
                let scale = w[ch] * inv;
                let (mean_dy, mean_dy_xhat) = if train {
                    ((sums[ch].0 / m) as f32, (sums[ch].1 / m) as f32)
                } else {
                    (0.0, 0.0)
                };
                for (g, &x) in gp.iter_mut().zip(xp) {
                    let xhat = (x - mean) * inv;
                    *g = scale * (*g - mean_dy - xhat * mean_dy_xhat);
                }
            });
        Ok(grad_y)
    }
    fn flops(&self, input: [usize; 4]) -> Result<u64, Error> {
        Ok(2 * summary::elements(self.output_shape(input)?))
    }
    fn visit_params<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Param)) {
        f(join(prefix, "weight"), &self.weight);
        f(join(prefix, "bias"), &self.bias);
        f(join(prefix, "running_mean"), &self.running_mean);
        f(join(prefix, "running_var"), &self.running_var);
        f(
            join(prefix, "num_batches_tracked"),
            &self.num_batches_tracked,
        );
    }
    fn visit_params_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(String, &'a mut Param)) {
        f(join(prefix, "weight"), &mut self.weight);
        f(join(prefix, "bias"), &mut self.bias);
        f(join(prefix, "running_mean"), &mut self.running_mean);
        f(join(prefix, "running_var"), &mut self.running_var);
        f(
            join(prefix, "num_batches_tracked"),
            &mut self.num_batches_tracked,
        );
    }
}
