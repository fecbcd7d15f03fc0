//! Activations: ReLU, LeakyReLU, PReLU (learned slope), RReLU (random slope in training, the
//! mean slope in evaluation), ELU, Sigmoid, Tanh and the channel Softmax, on the kernels of
//! `convnet_kernels::activation`.

use convnet_kernels::ConvError;
use convnet_kernels::activation as act;
use rayon::prelude::*;

use super::{Ctx, Layer, PAR_CHUNK, cached, check_grad};
use crate::error::ensure;
use crate::param::{Param, join};
use crate::{Error, Tensor};

/// An element-wise function with its derivative, for [`Pointwise`].
pub trait PointwiseFn: Send + Sync {
    /// The PyTorch layer name.
    const KIND: &'static str;
    /// Whether the backward pass reads the forward output (else the forward input).
    const SAVES_OUTPUT: bool;
    /// `x = f(x)` in place.
    fn apply(&self, x: &mut [f32]);
    /// `grad *= f'(.)`, reading the saved input or output.
    fn derive(&self, saved: &[f32], grad: &mut [f32]) -> Result<(), ConvError>;
}

/// A layer applying a [`PointwiseFn`] to every element.
#[derive(Clone, Debug)]
pub struct Pointwise<F> {
    f: F,
    saved: Option<Tensor>,
}

impl<F: PointwiseFn> Pointwise<F> {
    fn with(f: F) -> Self {
        Pointwise { f, saved: None }
    }
}

/// Applies `f` to consecutive chunks of `data`, in parallel.
fn par_apply(data: &mut [f32], f: impl Fn(&mut [f32]) + Sync + Send) {
    if data.len() <= PAR_CHUNK {
        f(data);
    } else {
        data.par_chunks_mut(PAR_CHUNK).for_each(f);
    }
}

/// Applies `f(saved_chunk, grad_chunk)` over matching chunks of two equal-length slices, in
/// parallel.
fn par_zip(
    saved: &[f32],
    grad: &mut [f32],
    f: impl Fn(&[f32], &mut [f32]) -> Result<(), ConvError> + Sync,
) -> Result<(), ConvError> {
    if grad.len() <= PAR_CHUNK {
        return f(saved, grad);
    }
    grad.par_chunks_mut(PAR_CHUNK)
        .zip(saved.par_chunks(PAR_CHUNK))
        .try_for_each(|(g, s)| f(s, g))
}

impl<F: PointwiseFn> Layer for Pointwise<F> {
    fn kind(&self) -> &'static str {
        F::KIND
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        Ok(input)
    }
    fn forward(&mut self, mut x: Tensor, _ctx: &mut Ctx) -> Result<Tensor, Error> {
        if !F::SAVES_OUTPUT {
            self.saved = Some(x.clone());
        }
        par_apply(x.data_mut(), |c| self.f.apply(c));
        if F::SAVES_OUTPUT {
            self.saved = Some(x.clone());
        }
        Ok(x)
    }
    fn backward(&mut self, mut grad_y: Tensor) -> Result<Tensor, Error> {
        let saved = cached(&self.saved, F::KIND)?;
        check_grad(F::KIND, &grad_y, saved.shape())?;
        par_zip(saved.data(), grad_y.data_mut(), |s, g| self.f.derive(s, g))?;
        Ok(grad_y)
    }
}

/// `max(x, 0)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReluFn;
impl PointwiseFn for ReluFn {
    const KIND: &'static str = "ReLU";
    const SAVES_OUTPUT: bool = true;
    fn apply(&self, x: &mut [f32]) {
        act::relu(x)
    }
    fn derive(&self, y: &[f32], grad: &mut [f32]) -> Result<(), ConvError> {
        act::relu_backward(y, grad)
    }
}

/// `x >= 0 ? x : slope * x`.
#[derive(Clone, Copy, Debug)]
pub struct LeakyReluFn {
    slope: f32,
}
impl PointwiseFn for LeakyReluFn {
    const KIND: &'static str = "LeakyReLU";
    const SAVES_OUTPUT: bool = false;
    fn apply(&self, x: &mut [f32]) {
        act::leaky_relu(x, self.slope)
    }
    fn derive(&self, x: &[f32], grad: &mut [f32]) -> Result<(), ConvError> {
        act::leaky_relu_backward(x, grad, self.slope)
    }
}

/// `x > 0 ? x : alpha * (e^x - 1)`.
#[derive(Clone, Copy, Debug)]
pub struct EluFn {
    alpha: f32,
}
impl PointwiseFn for EluFn {
    const KIND: &'static str = "ELU";
    const SAVES_OUTPUT: bool = false;
    fn apply(&self, x: &mut [f32]) {
        act::elu(x, self.alpha)
    }
    fn derive(&self, x: &[f32], grad: &mut [f32]) -> Result<(), ConvError> {
        act::elu_backward(x, grad, self.alpha)
    }
}

/// `1 / (1 + e^-x)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SigmoidFn;
impl PointwiseFn for SigmoidFn {
    const KIND: &'static str = "Sigmoid";
    const SAVES_OUTPUT: bool = true;
    fn apply(&self, x: &mut [f32]) {
        act::sigmoid(x)
    }
    fn derive(&self, y: &[f32], grad: &mut [f32]) -> Result<(), ConvError> {
        act::sigmoid_backward(y, grad)
    }
}

/// `tanh x`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TanhFn;
impl PointwiseFn for TanhFn {
    const KIND: &'static str = "Tanh";
    const SAVES_OUTPUT: bool = true;
    fn apply(&self, x: &mut [f32]) {
        act::tanh(x)
    }
    fn derive(&self, y: &[f32], grad: &mut [f32]) -> Result<(), ConvError> {
        act::tanh_backward(y, grad)
    }
}

/// ReLU.
pub type Relu = Pointwise<ReluFn>;
/// LeakyReLU with a fixed negative slope.
pub type LeakyRelu = Pointwise<LeakyReluFn>;
/// ELU.
pub type Elu = Pointwise<EluFn>;
/// Logistic sigmoid.
pub type Sigmoid = Pointwise<SigmoidFn>;
/// Hyperbolic tangent.
pub type Tanh = Pointwise<TanhFn>;

impl Relu {
    /// ReLU.
    pub fn new() -> Self {
        Pointwise::with(ReluFn)
    }
}
impl Default for Relu {
    fn default() -> Self {
        Self::new()
    }
}
impl LeakyRelu {
    /// LeakyReLU with `slope` for negative inputs (PyTorch's default is 0.01).
    pub fn new(slope: f32) -> Self {
        Pointwise::with(LeakyReluFn { slope })
    }
}
impl Elu {
    /// ELU with `alpha` (PyTorch's default is 1).
    pub fn new(alpha: f32) -> Self {
        Pointwise::with(EluFn { alpha })
    }
}
impl Sigmoid {
    /// Sigmoid.
    pub fn new() -> Self {
        Pointwise::with(SigmoidFn)
    }
}
impl Default for Sigmoid {
    fn default() -> Self {
        Self::new()
    }
}
impl Tanh {
    /// Tanh.
    pub fn new() -> Self {
        Pointwise::with(TanhFn)
    }
}
impl Default for Tanh {
    fn default() -> Self {
        Self::new()
    }
}

/// PReLU: LeakyReLU whose slope is learned, one per channel or one shared (PyTorch's
/// `num_parameters`, parameter `weight`, initialized to 0.25).
#[derive(Clone, Debug)]
pub struct PRelu {
    weight: Param,
    input: Option<Tensor>,
}

impl PRelu {
    /// `num_parameters` is 1 (one shared slope) or the channel count.
    pub fn new(num_parameters: usize) -> Result<Self, Error> {
        ensure(num_parameters > 0, || {
            "PReLU: num_parameters must be positive".to_string()
        })?;
        Ok(PRelu {
            weight: Param::learned(&[num_parameters], 0.25),
            input: None,
        })
    }

    /// `[n, c, spatial]` view of `shape` matching the slope count: per channel, or one plane
    /// per sample for a shared slope.
    fn spatial(&self, shape: [usize; 4]) -> Result<usize, Error> {
        let slopes = self.weight.len();
        if slopes == 1 {
            Ok(shape[1] * shape[2] * shape[3])
        } else if shape[1] == slopes {
            Ok(shape[2] * shape[3])
        } else {
            Err(Error::Shape {
                layer: "PReLU",
                detail: format!("{slopes} slopes for input of shape {shape:?}"),
            })
        }
    }
}

impl Layer for PRelu {
    fn kind(&self) -> &'static str {
        "PReLU"
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        self.spatial(input).map(|_| input)
    }
    fn forward(&mut self, mut x: Tensor, _ctx: &mut Ctx) -> Result<Tensor, Error> {
        let spatial = self.spatial(x.shape())?;
        self.input = Some(x.clone());
        if !x.is_empty() {
            act::prelu(x.data_mut(), &self.weight.value, spatial)?;
        }
        Ok(x)
    }
    fn backward(&mut self, mut grad_y: Tensor) -> Result<Tensor, Error> {
        let x = cached(&self.input, "PReLU")?;
        check_grad("PReLU", &grad_y, x.shape())?;
        let spatial = self.spatial(x.shape())?;
        if x.is_empty() {
            self.weight.grad.fill(0.0);
        } else {
            let w = &mut self.weight;
            act::prelu_backward(x.data(), &w.value, spatial, grad_y.data_mut(), &mut w.grad)?;
        }
        Ok(grad_y)
    }
    fn visit_params<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Param)) {
        f(join(prefix, "weight"), &self.weight);
    }
    fn visit_params_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(String, &'a mut Param)) {
        f(join(prefix, "weight"), &mut self.weight);
    }
}

/// RReLU: in training each negative element gets its own slope drawn uniformly from
/// `[lower, upper]`; in evaluation the slope is `(lower + upper) / 2` (PyTorch's defaults are
/// 1/8 and 1/3).
#[derive(Clone, Debug)]
pub struct RRelu {
    lower: f32,
    upper: f32,
    /// Forward input and the slope each element used.
    saved: Option<(Tensor, Vec<f32>)>,
}

impl RRelu {
    /// Slopes in `[lower, upper]`, `lower <= upper`.
    pub fn new(lower: f32, upper: f32) -> Result<Self, Error> {
        ensure(lower <= upper, || {
            format!("RReLU: lower {lower} must not exceed upper {upper}")
        })?;
        Ok(RRelu {
            lower,
            upper,
            saved: None,
        })
    }
}

impl Layer for RRelu {
    fn kind(&self) -> &'static str {
        "RReLU"
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        Ok(input)
    }
    fn forward(&mut self, mut x: Tensor, ctx: &mut Ctx) -> Result<Tensor, Error> {
        let slopes: Vec<f32> = if ctx.is_train() {
            let width = self.upper - self.lower;
            let rng = ctx.rng();
            (0..x.len())
                .map(|_| self.lower + width * rng.uniform())
                .collect()
        } else {
            vec![(self.lower + self.upper) / 2.0; x.len()]
        };
        let input = x.clone();
        for (v, &a) in x.data_mut().iter_mut().zip(&slopes) {
            if *v < 0.0 {
                *v *= a;
            }
        }
        self.saved = Some((input, slopes));
        Ok(x)
    }
    fn backward(&mut self, mut grad_y: Tensor) -> Result<Tensor, Error> {
        let (x, slopes) = cached(&self.saved, "RReLU")?;
        check_grad("RReLU", &grad_y, x.shape())?;
        for ((g, &x), &a) in grad_y.data_mut().iter_mut().zip(x.data()).zip(slopes) {
            if x <= 0.0 {
                *g *= a;
            }
        }
        Ok(grad_y)
    }
}

/// Softmax over the channels (PyTorch's `Softmax(dim=1)`).
#[derive(Clone, Debug, Default)]
pub struct Softmax {
    output: Option<Tensor>,
}

impl Softmax {
    /// Softmax over dimension 1.
    pub fn new() -> Self {
        Softmax { output: None }
    }
}

impl Layer for Softmax {
    fn kind(&self) -> &'static str {
        "Softmax"
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        Ok(input)
    }
    fn forward(&mut self, mut x: Tensor, _ctx: &mut Ctx) -> Result<Tensor, Error> {
        let (c, spatial) = (x.c(), x.plane_len());
        if !x.is_empty() {
            act::softmax_channels(x.data_mut(), c, spatial)?;
        }
        self.output = Some(x.clone());
        Ok(x)
    }
    fn backward(&mut self, mut grad_y: Tensor) -> Result<Tensor, Error> {
        let y = cached(&self.output, "Softmax")?;
        check_grad("Softmax", &grad_y, y.shape())?;
        if !y.is_empty() {
            act::softmax_channels_backward(y.data(), grad_y.data_mut(), y.c(), y.plane_len())?;
        }
        Ok(grad_y)
    }
}
