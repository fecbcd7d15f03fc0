//! The layer API: every layer implements [`Layer`] (forward, backward, its parameters by
//! name), and containers ([`Sequential`], [`Residual`], [`Concat`]) compose layers into
//! networks that are layers themselves.
//!
//! A forward pass takes its input by value and keeps what its backward pass needs; the
//! backward pass takes the output gradient, *overwrites* the gradients of the layer's
//! parameters and returns the input gradient. Parameters are named as PyTorch's
//! `state_dict` names them (`features.0.weight`), so checkpoints map one to one.
//!
//! Every reduction runs in a fixed order and any parallel split is over independent outputs,
//! so results are bitwise identical for any thread count.

mod activation;
mod batchnorm;
mod container;
mod conv;
mod dropout;
mod flatten;
mod linear;
mod lrn;
mod pool;

pub use activation::{Elu, LeakyRelu, PRelu, RRelu, Relu, Sigmoid, Softmax, Tanh};
pub use batchnorm::BatchNorm2d;
pub use container::{Concat, Residual, Sequential};
pub use conv::{Conv2d, ConvBuilder, ConvLayer, ConvSpec, ConvTranspose2d};
pub use convnet_kernels::Padding;
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use linear::Linear;
pub use lrn::LocalResponseNorm;
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, Subsample2d};

use convnet_kernels::storage::{bf16_narrow, bf16_widen};
use half::bf16;

use crate::param::Param;
use crate::rng::Rng;
use crate::summary::{self, Field, Row, Window};
use crate::{Error, Tensor};

/// Training or evaluation, and the random stream stochastic layers (dropout, RReLU) draw from
/// in training. Layers draw in network order, so a seed fixes the whole pass.
#[derive(Clone, Debug)]
pub struct Ctx {
    train: bool,
    rng: Rng,
    storage: Storage,
}

/// The number format convolution and linear layers compute on: their inputs, weights,
/// outputs and gradients are held in it, products accumulate in f32, and the master weights
/// the optimizer updates stay f32 either way (mixed-precision training).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    /// f32 throughout.
    #[default]
    F32,
    /// bfloat16 (8 exponent bits, 8 significant bits), rounded to nearest even.
    Bf16,
}

impl Storage {
    /// The name `--storage` takes.
    pub fn name(self) -> &'static str {
        match self {
            Storage::F32 => "f32",
            Storage::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Storage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Storage, Error> {
        match s {
            "f32" => Ok(Storage::F32),
            "bf16" => Ok(Storage::Bf16),
            _ => Err(Error::InvalidConfig {
                what: format!("storage {s:?}: expected f32 or bf16"),
            }),
        }
    }
}

impl Ctx {
    /// Training mode: batch statistics, dropout and random slopes on, drawn from `rng`.
    pub fn train(rng: Rng) -> Ctx {
        Ctx {
            train: true,
            rng,
            storage: Storage::F32,
        }
    }
    /// Evaluation mode: running statistics, no dropout, mean slopes.
    pub fn eval() -> Ctx {
        Ctx {
            train: false,
            rng: Rng::new(0),
            storage: Storage::F32,
        }
    }
    /// The same context computing convolution and linear layers in `storage`.
    pub fn with_storage(mut self, storage: Storage) -> Ctx {
        self.storage = storage;
        self
    }
    /// The storage convolution and linear layers compute in.
    pub fn storage(&self) -> Storage {
        self.storage
    }
    /// Whether this is a training pass.
    pub fn is_train(&self) -> bool {
        self.train
    }
    /// The random stream.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
}

/// A differentiable layer on NCHW tensors.
pub trait Layer: Send {
    /// The layer type, as PyTorch names it (`Conv2d`, `MaxPool2d`, ...).
    fn kind(&self) -> &'static str;

    /// The output shape for an input of shape `input`, or why the input does not fit.
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error>;

    /// `y = f(x)`; keeps what [`Layer::backward`] needs.
    fn forward(&mut self, x: Tensor, ctx: &mut Ctx) -> Result<Tensor, Error>;

    /// From `dL/dy` of the last forward pass: overwrites the parameter gradients and returns
    /// `dL/dx`.
    fn backward(&mut self, grad_y: Tensor) -> Result<Tensor, Error>;

    /// [`Layer::backward`] without the input gradient (for the first layer of a network,
    /// whose input gradient nobody reads). The default computes it and drops it.
    fn backward_params(&mut self, grad_y: Tensor) -> Result<(), Error> {
        self.backward(grad_y).map(drop)
    }

    /// Calls `f` with the full name (`prefix.local`) of each parameter and buffer, in a
    /// fixed order.
    fn visit_params<'a>(&'a self, _prefix: &str, _f: &mut dyn FnMut(String, &'a Param)) {}

    /// [`Layer::visit_params`], mutable.
    fn visit_params_mut<'a>(
        &'a mut self,
        _prefix: &str,
        _f: &mut dyn FnMut(String, &'a mut Param),
    ) {
    }

    /// FLOPs of a forward pass on an input of shape `input`, by the rules of
    /// [`crate::summary`]; one per output element unless the layer says otherwise.
    fn flops(&self, input: [usize; 4]) -> Result<u64, Error> {
        Ok(summary::elements(self.output_shape(input)?))
    }

    /// The kernel-crate geometry of a convolution layer on an input of shape `input`; `None`
    /// (the default) for every other layer or an input that does not fit.
    fn conv_params(&self, _input: [usize; 4]) -> Option<convnet_kernels::ConvParams> {
        None
    }

    /// The window through which each output sees the input, for receptive fields; `None`
    /// (the default) for a point-wise layer.
    fn window(&self, _input: [usize; 4]) -> Option<Window> {
        None
    }

    /// Appends this layer's summary rows, named under `name`, for an input described by
    /// `input`, and returns the field of its output. A layer without children adds one row
    /// (the default); containers add their children's rows.
    fn summarize(&self, name: &str, input: Field, rows: &mut Vec<Row>) -> Result<Field, Error> {
        summary::leaf(self, name, input, rows)
    }
}

/// Conveniences on any layer.
pub trait LayerExt: Layer {
    /// Every parameter and buffer with its `state_dict` name, in a fixed order.
    fn named_params(&self) -> Vec<(String, &Param)> {
        let mut out = Vec::new();
        self.visit_params("", &mut |name, p| out.push((name, p)));
        out
    }
    /// [`LayerExt::named_params`], mutable.
    fn named_params_mut(&mut self) -> Vec<(String, &mut Param)> {
        let mut out = Vec::new();
        self.visit_params_mut("", &mut |name, p| out.push((name, p)));
        out
    }
    /// Number of trained scalars (buffers excluded, as PyTorch counts parameters).
    fn param_count(&self) -> usize {
        self.named_params()
            .iter()
            .filter(|(_, p)| p.is_trainable())
            .map(|(_, p)| p.len())
            .sum()
    }
}

impl<L: Layer + ?Sized> LayerExt for L {}

/// The cached forward value a backward pass needs, or the named error.
fn cached<'a, T>(slot: &'a Option<T>, layer: &'static str) -> Result<&'a T, Error> {
    slot.as_ref().ok_or(Error::BackwardBeforeForward { layer })
}

/// Checks that a gradient has the shape of the output it belongs to.
fn check_grad(layer: &'static str, grad: &Tensor, output: [usize; 4]) -> Result<(), Error> {
    if grad.shape() == output {
        Ok(())
    } else {
        Err(Error::Shape {
            layer,
            detail: format!(
                "output gradient of shape {:?}, the output was {output:?}",
                grad.shape()
            ),
        })
    }
}

/// Checks the input channel count.
fn check_channels(layer: &'static str, input: [usize; 4], channels: usize) -> Result<(), Error> {
    if input[1] == channels {
        Ok(())
    } else {
        Err(Error::Shape {
            layer,
            detail: format!("expects {channels} input channels, got shape {input:?}"),
        })
    }
}

/// Elements per parallel task of element-wise and per-plane work: large enough that a
/// task outweighs rayon's overhead. The split never changes a result (each output depends on
/// its own inputs only).
const PAR_CHUNK: usize = 1 << 15;

/// `v` in bf16 (round to nearest even).
fn to_bf16(v: &[f32]) -> Vec<bf16> {
    let mut out = vec![bf16::ZERO; v.len()];
    bf16_narrow(v, &mut out);
    out
}

/// `v` widened to f32 (exact).
fn from_bf16(v: &[bf16], out: &mut [f32]) {
    bf16_widen(v, out);
}

/// `v` rounded to the nearest bf16 value, kept in f32.
fn round_bf16(v: &mut [f32]) {
    let narrow = to_bf16(v);
    from_bf16(&narrow, v);
}
