//! Pooling layers on the kernels of `convnet_kernels::pool`: [`MaxPool2d`] and [`AvgPool2d`]
//! (kernel, stride, padding, overlapping windows, ceil mode), [`AdaptiveAvgPool2d`] (global
//! average pooling at `[1, 1]`), and LeNet-5's trainable subsampling [`Subsample2d`].
//!
//! Planes are pooled independently, so a batch is split into chunks of planes that run in
//! parallel with bitwise-identical results for any thread count.

use convnet_kernels::ConvError;
use convnet_kernels::pool::{self as kpool, PoolGeom, PoolParams};
use rayon::prelude::*;

use super::{Ctx, Layer, PAR_CHUNK, cached, check_channels, check_grad};
use crate::param::{Param, join};
use crate::summary::{self, Window};
use crate::{Error, Tensor};

/// Runs `f(x_chunk, y_chunk)` over matching chunks of whole planes, in parallel.
fn par_planes(
    x: &[f32],
    x_plane: usize,
    y: &mut [f32],
    y_plane: usize,
    f: impl Fn(&[f32], &mut [f32]) -> Result<(), ConvError> + Sync,
) -> Result<(), ConvError> {
    let planes = (PAR_CHUNK / x_plane.max(y_plane).max(1)).max(1);
    if x.len() <= planes * x_plane || x_plane == 0 || y_plane == 0 {
        return f(x, y);
    }
    x.par_chunks(planes * x_plane)
        .zip(y.par_chunks_mut(planes * y_plane))
        .try_for_each(|(xc, yc)| f(xc, yc))
}

fn out_shape([n, c, _, _]: [usize; 4], g: &PoolGeom) -> [usize; 4] {
    [n, c, g.oh, g.ow]
}

/// FLOPs of a window pooling: one per window element per output.
fn window_flops(params: PoolParams, output: [usize; 4]) -> u64 {
    (params.kernel[0] * params.kernel[1]) as u64 * summary::elements(output)
}

/// Max pooling (PyTorch's `nn.MaxPool2d`).
#[derive(Clone, Debug)]
pub struct MaxPool2d {
    params: PoolParams,
    /// Input shape, geometry and each output's argmax.
    saved: Option<([usize; 4], PoolGeom, Vec<u32>)>,
}

impl MaxPool2d {
    /// A pool with these window parameters (see [`PoolParams`]; `PoolParams::new(k)` is
    /// PyTorch's `MaxPool2d(k)`).
    pub fn new(params: PoolParams) -> Self {
        MaxPool2d {
            params,
            saved: None,
        }
    }
}

impl Layer for MaxPool2d {
    fn kind(&self) -> &'static str {
        "MaxPool2d"
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        let g = PoolGeom::new(input[2], input[3], self.params)?;
        Ok(out_shape(input, &g))
    }
    fn flops(&self, input: [usize; 4]) -> Result<u64, Error> {
        Ok(window_flops(self.params, self.output_shape(input)?))
    }
    fn window(&self, _input: [usize; 4]) -> Option<Window> {
        Some(Window::conv(self.params.kernel, self.params.stride, [1, 1]))
    }
    fn forward(&mut self, x: Tensor, _ctx: &mut Ctx) -> Result<Tensor, Error> {
        let g = PoolGeom::new(x.shape()[2], x.shape()[3], self.params)?;
        let mut y = Tensor::zeros(out_shape(x.shape(), &g));
        let mut argmax = vec![0u32; y.len()];
        let out_plane = g.oh * g.ow;
        // Chunks of planes: y and argmax are split alike.
        let planes = (PAR_CHUNK / (g.h * g.w).max(1)).max(1);
        let work = x
            .data()
            .par_chunks(planes * g.h * g.w)
            .zip(y.data_mut().par_chunks_mut(planes * out_plane))
            .zip(argmax.par_chunks_mut(planes * out_plane));
        if !x.is_empty() {
            work.try_for_each(|((xc, yc), ac)| kpool::max_pool2d_forward(&g, xc, yc, ac))?;
        }
        self.saved = Some((x.shape(), g, argmax));
        Ok(y)
    }
    fn backward(&mut self, grad_y: Tensor) -> Result<Tensor, Error> {
        let (shape, g, argmax) = cached(&self.saved, "MaxPool2d")?;
        check_grad("MaxPool2d", &grad_y, out_shape(*shape, g))?;
        let mut grad_x = Tensor::zeros(*shape);
        let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
        let planes = (PAR_CHUNK / in_plane.max(1)).max(1);
        if !grad_x.is_empty() {
            grad_x
                .data_mut()
                .par_chunks_mut(planes * in_plane)
                .zip(grad_y.data().par_chunks(planes * out_plane))
                .zip(argmax.par_chunks(planes * out_plane))
                .try_for_each(|((gx, gy), am)| kpool::max_pool2d_backward(g, gy, am, gx))?;
        }
        Ok(grad_x)
    }
}

/// Average pooling (PyTorch's `nn.AvgPool2d`; `count_include_pad` defaults to true there).
#[derive(Clone, Debug)]
pub struct AvgPool2d {
    params: PoolParams,
    count_include_pad: bool,
    saved: Option<([usize; 4], PoolGeom)>,
}

impl AvgPool2d {
    /// A pool with these window parameters; `count_include_pad` says whether padding counts in
    /// the divisor.
    pub fn new(params: PoolParams, count_include_pad: bool) -> Self {
        AvgPool2d {
            params,
            count_include_pad,
            saved: None,
        }
    }
}

impl Layer for AvgPool2d {
    fn kind(&self) -> &'static str {
        "AvgPool2d"
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        let g = PoolGeom::new(input[2], input[3], self.params)?;
        Ok(out_shape(input, &g))
    }
    fn flops(&self, input: [usize; 4]) -> Result<u64, Error> {
        Ok(window_flops(self.params, self.output_shape(input)?))
    }
    fn window(&self, _input: [usize; 4]) -> Option<Window> {
        Some(Window::conv(self.params.kernel, self.params.stride, [1, 1]))
    }
    fn forward(&mut self, x: Tensor, _ctx: &mut Ctx) -> Result<Tensor, Error> {
        let g = PoolGeom::new(x.shape()[2], x.shape()[3], self.params)?;
        let mut y = Tensor::zeros(out_shape(x.shape(), &g));
        let include = self.count_include_pad;
        par_planes(x.data(), g.h * g.w, y.data_mut(), g.oh * g.ow, |xc, yc| {
            kpool::avg_pool2d_forward(&g, include, xc, yc)
        })?;
        self.saved = Some((x.shape(), g));
        Ok(y)
    }
    fn backward(&mut self, grad_y: Tensor) -> Result<Tensor, Error> {
        let (shape, g) = cached(&self.saved, "AvgPool2d")?;
        check_grad("AvgPool2d", &grad_y, out_shape(*shape, g))?;
        let mut grad_x = Tensor::zeros(*shape);
        let include = self.count_include_pad;
        par_planes(
            grad_y.data(),
            g.oh * g.ow,
            grad_x.data_mut(),
            g.h * g.w,
            |gy, gx| kpool::avg_pool2d_backward(g, include, gy, gx),
        )?;
        Ok(grad_x)
    }
}

/// Adaptive average pooling to a fixed output size (PyTorch's `nn.AdaptiveAvgPool2d`);
/// `[1, 1]` is global average pooling.
#[derive(Clone, Debug)]
pub struct AdaptiveAvgPool2d {
    out: [usize; 2],
    input_shape: Option<[usize; 4]>,
}

impl AdaptiveAvgPool2d {
    /// Pools every plane to `out = [oh, ow]`.
    pub fn new(out: [usize; 2]) -> Self {
        AdaptiveAvgPool2d {
            out,
            input_shape: None,
        }
    }
    /// Global average pooling, `[1, 1]`.
    pub fn global() -> Self {
        Self::new([1, 1])
    }
}

impl Layer for AdaptiveAvgPool2d {
    fn kind(&self) -> &'static str {
        "AdaptiveAvgPool2d"
    }
    fn output_shape(&self, [n, c, h, w]: [usize; 4]) -> Result<[usize; 4], Error> {
        if h == 0 || w == 0 || self.out.contains(&0) {
            return Err(Error::Shape {
                layer: "AdaptiveAvgPool2d",
                detail: format!("cannot pool {h}x{w} to {:?}", self.out),
            });
        }
        Ok([n, c, self.out[0], self.out[1]])
    }
    fn flops(&self, input: [usize; 4]) -> Result<u64, Error> {
        self.output_shape(input)?;
        Ok(summary::elements(input))
    }
    /// Output row `oy` pools rows `floor(oy*h/oh) .. ceil((oy+1)*h/oh)`: at most
    /// `ceil(h/oh) + 1` rows (one more when `oh` does not divide `h`), `h/oh` apart.
    fn window(&self, [_, _, h, w]: [usize; 4]) -> Option<Window> {
        let axis = |len: usize, out: usize| {
            let out = out.max(1);
            let extent = len.div_ceil(out) + usize::from(!len.is_multiple_of(out));
            (extent.min(len) as f64, len as f64 / out as f64)
        };
        let (eh, sh) = axis(h, self.out[0]);
        let (ew, sw) = axis(w, self.out[1]);
        Some(Window {
            extent: [eh, ew],
            stride: [sh, sw],
        })
    }
    fn forward(&mut self, x: Tensor, _ctx: &mut Ctx) -> Result<Tensor, Error> {
        let shape = x.shape();
        let mut y = Tensor::zeros(self.output_shape(shape)?);
        let (hw, out) = ([shape[2], shape[3]], self.out);
        par_planes(
            x.data(),
            hw[0] * hw[1],
            y.data_mut(),
            out[0] * out[1],
            |xc, yc| kpool::adaptive_avg_pool2d_forward(hw, out, xc, yc),
        )?;
        self.input_shape = Some(shape);
        Ok(y)
    }
    fn backward(&mut self, grad_y: Tensor) -> Result<Tensor, Error> {
        let shape = *cached(&self.input_shape, "AdaptiveAvgPool2d")?;
        check_grad("AdaptiveAvgPool2d", &grad_y, self.output_shape(shape)?)?;
        let mut grad_x = Tensor::zeros(shape);
        let (hw, out) = ([shape[2], shape[3]], self.out);
        par_planes(
            grad_y.data(),
            out[0] * out[1],
            grad_x.data_mut(),
            hw[0] * hw[1],
            |gy, gx| kpool::adaptive_avg_pool2d_backward(hw, out, gy, gx),
        )?;
        Ok(grad_x)
    }
}

/// LeNet-5's subsampling layer (S2): the average of each 2x2 block, times a trainable
/// coefficient, plus a trainable bias, one pair per channel (LeCun et al. 1998, section II.B):
/// `y[b, ch] = weight[ch] * avgpool2x2(x)[b, ch] + bias[ch]`. Parameters `weight [c]`
/// (initialized to 1) and `bias [c]` (0).
#[derive(Clone, Debug)]
pub struct Subsample2d {
    channels: usize,
    weight: Param,
    bias: Param,
    pool: AvgPool2d,
    /// The pooled input `avgpool2x2(x)`.
    pooled: Option<Tensor>,
}

impl Subsample2d {
    /// Subsampling of `channels` maps.
    pub fn new(channels: usize) -> Self {
        Subsample2d {
            channels,
            weight: Param::learned(&[channels], 1.0),
            bias: Param::learned(&[channels], 0.0),
            pool: AvgPool2d::new(PoolParams::new([2, 2]), true),
            pooled: None,
        }
    }
}

impl Layer for Subsample2d {
    fn kind(&self) -> &'static str {
        "Subsample2d"
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        check_channels("Subsample2d", input, self.channels)?;
        self.pool.output_shape(input)
    }
    fn flops(&self, input: [usize; 4]) -> Result<u64, Error> {
        // The 2x2 average, then a multiply and an add.
        Ok(self.pool.flops(input)? + 2 * summary::elements(self.output_shape(input)?))
    }
    fn window(&self, input: [usize; 4]) -> Option<Window> {
        self.pool.window(input)
    }
    fn forward(&mut self, x: Tensor, ctx: &mut Ctx) -> Result<Tensor, Error> {
        check_channels("Subsample2d", x.shape(), self.channels)?;
        let pooled = self.pool.forward(x, ctx)?;
        let mut y = pooled.clone();
        let plane = y.plane_len().max(1);
        let (w, b) = (&self.weight.value, &self.bias.value);
        for (i, p) in y.data_mut().chunks_exact_mut(plane).enumerate() {
            let ch = i % self.channels;
            for v in p {
                *v = w[ch] * *v + b[ch];
            }
        }
        self.pooled = Some(pooled);
        Ok(y)
    }
    fn backward(&mut self, mut grad_y: Tensor) -> Result<Tensor, Error> {
        let pooled = cached(&self.pooled, "Subsample2d")?;
        check_grad("Subsample2d", &grad_y, pooled.shape())?;
        let plane = pooled.plane_len().max(1);
        self.weight.grad.fill(0.0);
        self.bias.grad.fill(0.0);
        let planes = grad_y
            .data_mut()
            .chunks_exact_mut(plane)
            .zip(pooled.data().chunks_exact(plane));
        for (i, (gp, pp)) in planes.enumerate() {
            let ch = i % self.channels;
            let (mut gw, mut gb) = (0.0f32, 0.0f32);
            for (g, &p) in gp.iter_mut().zip(pp) {
                gw += *g * p;
                gb += *g;
                *g *= self.weight.value[ch];
            }
            self.weight.grad[ch] += gw;
            self.bias.grad[ch] += gb;
        }
        self.pool.backward(grad_y)
    }
    fn visit_params<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Param)) {
        f(join(prefix, "weight"), &self.weight);
        f(join(prefix, "bias"), &self.bias);
    }
    fn visit_params_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(String, &'a mut Param)) {
        f(join(prefix, "weight"), &mut self.weight);
        f(join(prefix, "bias"), &mut self.bias);
    }
}
