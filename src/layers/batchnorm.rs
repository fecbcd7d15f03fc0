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
//! Channel sums accumulate in f64 in a fixed order (sample by sample, pixel by pixel), one
//! channel per task, so statistics do not depend on the thread count.

use rayon::prelude::*;

use super::{Ctx, Layer, cached, check_channels, check_grad};
use crate::error::ensure;
use crate::param::{Param, join};
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

/// What the backward pass needs.
#[derive(Clone, Debug)]
struct Saved {
    xhat: Tensor,
    inv_std: Vec<f32>,
    train: bool,
}

/// `f(channel, plane)` summed in f64 over every plane of `channel`, in sample order.
fn channel_sum(
    t: &[f32],
    channels: usize,
    plane: usize,
    ch: usize,
    f: impl Fn(usize) -> f64,
) -> f64 {
    let samples = t.len() / (channels * plane).max(1);
    (0..samples)
        .map(|b| {
            let start = (b * channels + ch) * plane;
            (start..start + plane).map(&f).sum::<f64>()
        })
        .sum()
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
                let mean =
                    channel_sum(data, self.channels, plane, ch, |i| data[i] as f64) / m as f64;
                let var = channel_sum(data, self.channels, plane, ch, |i| {
                    (data[i] as f64 - mean).powi(2)
                }) / m as f64;
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
    fn forward(&mut self, mut x: Tensor, ctx: &mut Ctx) -> Result<Tensor, Error> {
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
        let mut xhat = x.clone();
        let (w, b, c) = (&self.weight.value, &self.bias.value, self.channels);
        xhat.data_mut()
            .par_chunks_mut(plane)
            .zip(x.data_mut().par_chunks_mut(plane))
            .enumerate()
            .for_each(|(i, (hp, yp))| {
                let ch = i % c;
                for (h, y) in hp.iter_mut().zip(yp) {
                    *h = (*h - mean[ch]) * inv_std[ch];
                    *y = w[ch] * *h + b[ch];
                }
            });
        let train = ctx.is_train();
        self.saved = Some(Saved {
            xhat,
            inv_std,
            train,
        });
        Ok(x)
    }
    fn backward(&mut self, mut grad_y: Tensor) -> Result<Tensor, Error> {
        let s = cached(&self.saved, "BatchNorm2d")?;
        check_grad("BatchNorm2d", &grad_y, s.xhat.shape())?;
        let (c, plane) = (self.channels, s.xhat.plane_len().max(1));
        let m = (s.xhat.n() * s.xhat.plane_len()) as f64;
        let (gy, xh) = (grad_y.data(), s.xhat.data());
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let sum_dy = channel_sum(gy, c, plane, ch, |i| gy[i] as f64);
                let sum_dy_xhat = channel_sum(gy, c, plane, ch, |i| gy[i] as f64 * xh[i] as f64);
                (sum_dy, sum_dy_xhat)
            })
            .collect();
        for (ch, &(sum_dy, sum_dy_xhat)) in sums.iter().enumerate() {
            self.bias.grad[ch] = sum_dy as f32;
            self.weight.grad[ch] = sum_dy_xhat as f32;
        }
        let (w, inv_std, train) = (&self.weight.value, &s.inv_std, s.train);
        grad_y
            .data_mut()
            .par_chunks_mut(plane)
            .zip(s.xhat.data().par_chunks(plane))
            .enumerate()
            .for_each(|(i, (gp, hp))| {
                let ch = i % c;
                let scale = w[ch] * inv_std[ch];
                let (mean_dy, mean_dy_xhat) = if train {
                    ((sums[ch].0 / m) as f32, (sums[ch].1 / m) as f32)
                } else {
                    (0.0, 0.0)
                };
                for (g, &h) in gp.iter_mut().zip(hp) {
                    *g = scale * (*g - mean_dy - h * mean_dy_xhat);
                }
            });
        Ok(grad_y)
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
