//! [`Conv2d`] and [`ConvTranspose2d`] on the kernel crate: stride, asymmetric padding (or
//! `Same`), dilation, groups, output padding and an optional bias, as PyTorch defines them.
//!
//! ```text
//! Conv2d           x [n, c_in, h, w] -> y [n, c_out, oh, ow]    weight [c_out, c_in/g, kh, kw]
//! ConvTranspose2d  x [n, c_in, h, w] -> y [n, c_out, oh, ow]    weight [c_in, c_out/g, kh, kw]
//! bias [c_out]
//! ```
//!
//! Every pass runs on `Algorithm::Auto`, the fastest kernel for the geometry. The geometry is
//! validated once per input shape and kept until the shape changes. In [`Storage::Bf16`]
//! (chosen by the forward pass's [`Ctx`]) the kernels run on bf16 input, weight, output and
//! gradient buffers with f32 accumulation, and the backward pass follows the forward pass;
//! the master weights and their gradients stay f32.

use std::marker::PhantomData;

use convnet_kernels::{Algorithm, Conv2d as KernelConv, Padding};

use half::bf16;

use super::{Ctx, Layer, Storage, cached, check_channels, check_grad, from_bf16, to_bf16};
use crate::error::ensure;
use crate::param::{Param, join};
use crate::summary::Window;
use crate::{Error, Tensor};

/// A convolution's arguments, PyTorch's `Conv2d` / `ConvTranspose2d` constructor arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    /// Padding of the input (`Explicit([t, b, l, r])`, `Symmetric([ph, pw])` or `Same`).
    pub padding: Padding,
    /// `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Groups (`groups == c_in` is depthwise).
    pub groups: usize,
    /// Transposed mode only: `[oph, opw]`.
    pub output_padding: [usize; 2],
    /// Whether the layer has a bias.
    pub bias: bool,
}

/// The two convolution layers, built from a [`ConvSpec`] by [`ConvBuilder::build`].
pub trait ConvLayer: Sized {
    /// Whether the layer is a transposed convolution.
    const TRANSPOSED: bool;
    /// Wraps a validated core.
    #[doc(hidden)]
    fn from_core(core: ConvCore) -> Self;
}

/// Builds a [`Conv2d`] or [`ConvTranspose2d`] with PyTorch's defaults: stride 1, no padding,
/// dilation 1, one group, with a bias.
#[derive(Clone, Debug)]
pub struct ConvBuilder<L> {
    spec: ConvSpec,
    layer: PhantomData<fn() -> L>,
}

impl<L: ConvLayer> ConvBuilder<L> {
    fn new(c_in: usize, c_out: usize, kernel: [usize; 2]) -> Self {
        ConvBuilder {
            spec: ConvSpec {
                c_in,
                c_out,
                kernel,
                stride: [1, 1],
                padding: Padding::Explicit([0; 4]),
                dilation: [1, 1],
                groups: 1,
                output_padding: [0, 0],
                bias: true,
            },
            layer: PhantomData,
        }
    }
    /// `[sh, sw]`.
    pub fn stride(mut self, stride: [usize; 2]) -> Self {
        self.spec.stride = stride;
        self
    }
    /// Input padding.
    pub fn padding(mut self, padding: Padding) -> Self {
        self.spec.padding = padding;
        self
    }
    /// `[dh, dw]`.
    pub fn dilation(mut self, dilation: [usize; 2]) -> Self {
        self.spec.dilation = dilation;
        self
    }
    /// Groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.spec.groups = groups;
        self
    }
    /// With or without a bias.
    pub fn bias(mut self, bias: bool) -> Self {
        self.spec.bias = bias;
        self
    }
    /// Checks every size that does not depend on the input and allocates the parameters
    /// (weights zero until [`crate::init`] draws them, bias zero).
    pub fn build(self) -> Result<L, Error> {
        ConvCore::new(self.spec, L::TRANSPOSED).map(L::from_core)
    }
}

impl ConvBuilder<ConvTranspose2d> {
    /// `[oph, opw]`, each smaller than `max(stride, dilation)` on its axis.
    pub fn output_padding(mut self, output_padding: [usize; 2]) -> Self {
        self.spec.output_padding = output_padding;
        self
    }
}

/// What both convolution layers share: spec, parameters, the geometry of the last input
/// shape and the cached input.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct ConvCore {
    spec: ConvSpec,
    transposed: bool,
    weight: Param,
    bias: Option<Param>,
    geometry: Option<KernelConv>,
    input: Option<Tensor>,
    /// The bf16 input and weight of the last forward pass when it ran in bf16 storage; the
    /// backward pass then runs in bf16 too.
    bf16: Option<Bf16Saved>,
}

#[derive(Clone, Debug)]
struct Bf16Saved {
    x: Vec<bf16>,
    weight: Vec<bf16>,
}

impl ConvCore {
    fn kind(&self) -> &'static str {
        if self.transposed {
            "ConvTranspose2d"
        } else {
            "Conv2d"
        }
    }

    fn new(spec: ConvSpec, transposed: bool) -> Result<ConvCore, Error> {
        let s = &spec;
        for (what, v) in [
            ("c_in", s.c_in),
            ("c_out", s.c_out),
            ("kernel height", s.kernel[0]),
            ("kernel width", s.kernel[1]),
            ("stride", s.stride[0].min(s.stride[1])),
            ("dilation", s.dilation[0].min(s.dilation[1])),
            ("groups", s.groups),
        ] {
            ensure(v > 0, || format!("convolution {what} must be positive"))?;
        }
        ensure(
            s.c_in.is_multiple_of(s.groups) && s.c_out.is_multiple_of(s.groups),
            || {
                format!(
                    "convolution channels {} -> {} are not divisible by {} groups",
                    s.c_in, s.c_out, s.groups
                )
            },
        )?;
        for axis in 0..2 {
            let limit = s.stride[axis].max(s.dilation[axis]);
            ensure(s.output_padding[axis] < limit, || {
                format!(
                    "output_padding {:?} must be smaller than max(stride, dilation) = {limit}",
                    s.output_padding
                )
            })?;
        }
        let weight_shape = if transposed {
            [s.c_in, s.c_out / s.groups, s.kernel[0], s.kernel[1]]
        } else {
            [s.c_out, s.c_in / s.groups, s.kernel[0], s.kernel[1]]
        };
        Ok(ConvCore {
            spec,
            transposed,
            weight: Param::weight(&weight_shape),
            bias: s.bias.then(|| Param::learned(&[s.c_out], 0.0)),
            geometry: None,
            input: None,
            bf16: None,
        })
    }

    /// The kernel geometry for an input shape, built once per shape.
    fn geometry(&mut self, input: [usize; 4]) -> Result<KernelConv, Error> {
        check_channels(self.kind(), input, self.spec.c_in)?;
        if let Some(g) = self.geometry.filter(|g| g.input_shape() == input) {
            return Ok(g);
        }
        let g = self.build_geometry(input)?;
        self.geometry = Some(g);
        Ok(g)
    }

    fn build_geometry(&self, [n, c, h, w]: [usize; 4]) -> Result<KernelConv, Error> {
        let s = &self.spec;
        let mut b = KernelConv::builder(n, c, h, w, s.c_out, s.kernel)
            .stride(s.stride)
            .padding(s.padding)
            .dilation(s.dilation)
            .groups(s.groups);
        if self.transposed {
            b = b.transposed(s.output_padding);
        }
        Ok(b.build()?)
    }

    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        check_channels(self.kind(), input, self.spec.c_in)?;
        Ok(self.build_geometry(input)?.output_shape())
    }

    fn forward(&mut self, x: Tensor, storage: Storage) -> Result<Tensor, Error> {
        let g = self.geometry(x.shape())?;
        let mut y = Tensor::zeros(g.output_shape());
        let bias = self.bias.as_ref().map(|b| b.value.as_slice());
        self.bf16 = None;
        match storage {
            Storage::F32 => g.forward(
                Algorithm::Auto,
                x.data(),
                &self.weight.value,
                bias,
                y.data_mut(),
            )?,
            Storage::Bf16 => {
                let saved = Bf16Saved {
                    x: to_bf16(x.data()),
                    weight: to_bf16(&self.weight.value),
                };
                let bias = bias.map(to_bf16);
                let mut y16 = vec![bf16::ZERO; y.len()];
                g.forward(
                    Algorithm::Auto,
                    &saved.x,
                    &saved.weight,
                    bias.as_deref(),
                    &mut y16,
                )?;
                from_bf16(&y16, y.data_mut());
                self.bf16 = Some(saved);
            }
        }
        self.input = Some(x);
        Ok(y)
    }

    /// The geometry of the last forward pass, checked against `grad_y`.
    fn saved_geometry(&self, grad_y: &Tensor) -> Result<KernelConv, Error> {
        let kind = self.kind();
        let x = cached(&self.input, kind)?;
        let g = self
            .geometry
            .filter(|g| g.input_shape() == x.shape())
            .ok_or(Error::BackwardBeforeForward { layer: kind })?;
        check_grad(kind, grad_y, g.output_shape())?;
        Ok(g)
    }

    /// `grad_y` in bf16 when the last forward pass ran in bf16, converted once for both
    /// backward passes.
    fn grad_bf16(&self, grad_y: &Tensor) -> Option<Vec<bf16>> {
        self.bf16.as_ref().map(|_| to_bf16(grad_y.data()))
    }

    /// Overwrites the weight and bias gradients (`dy16`: [`ConvCore::grad_bf16`]).
    fn param_grads(&mut self, grad_y: &Tensor, dy16: Option<&[bf16]>) -> Result<(), Error> {
        let g = self.saved_geometry(grad_y)?;
        let x = cached(&self.input, self.kind())?;
        let grad_bias = self.bias.as_mut().map(|b| b.grad.as_mut_slice());
        match self.bf16.as_ref().zip(dy16) {
            None => g.backward_weight(
                Algorithm::Auto,
                x.data(),
                grad_y.data(),
                &mut self.weight.grad,
                grad_bias,
            )?,
            Some((saved, dy)) => {
                let mut dw = vec![bf16::ZERO; self.weight.grad.len()];
                let mut db = grad_bias.as_ref().map(|b| vec![bf16::ZERO; b.len()]);
                g.backward_weight(Algorithm::Auto, &saved.x, dy, &mut dw, db.as_deref_mut())?;
                from_bf16(&dw, &mut self.weight.grad);
                if let (Some(out), Some(db)) = (grad_bias, db) {
                    from_bf16(&db, out);
                }
            }
        }
        Ok(())
    }

    /// The input gradient (`dy16`: [`ConvCore::grad_bf16`]).
    fn input_grad(&self, grad_y: &Tensor, dy16: Option<&[bf16]>) -> Result<Tensor, Error> {
        let g = self.saved_geometry(grad_y)?;
        let mut grad_x = Tensor::zeros(g.input_shape());
        match self.bf16.as_ref().zip(dy16) {
            None => g.backward_data(
                Algorithm::Auto,
                grad_y.data(),
                &self.weight.value,
                grad_x.data_mut(),
            )?,
            Some((saved, dy)) => {
                let mut dx = vec![bf16::ZERO; grad_x.len()];
                g.backward_data(Algorithm::Auto, dy, &saved.weight, &mut dx)?;
                from_bf16(&dx, grad_x.data_mut());
            }
        }
        Ok(grad_x)
    }

    /// The receptive-field window: `kh` taps `dh` apart moved by `sh`; in transposed mode
    /// an output sees `ceil(extent / sh)` inputs, and neighbouring outputs are `1 / sh`
    /// inputs apart.
    fn window(&self) -> Window {
        let s = &self.spec;
        let w = Window::conv(s.kernel, s.stride, s.dilation);
        if !self.transposed {
            return w;
        }
        Window {
            extent: std::array::from_fn(|a| (w.extent[a] / w.stride[a]).ceil()),
            stride: std::array::from_fn(|a| 1.0 / w.stride[a]),
        }
    }

    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Param)) {
        f(join(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(join(prefix, "bias"), b);
        }
    }

    fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(String, &'a mut Param)) {
        f(join(prefix, "weight"), &mut self.weight);
        if let Some(b) = &mut self.bias {
            f(join(prefix, "bias"), b);
        }
    }
}

/// 2-D convolution (PyTorch's `nn.Conv2d`): parameters `weight [c_out, c_in/g, kh, kw]` and
/// `bias [c_out]`.
#[derive(Clone, Debug)]
pub struct Conv2d(ConvCore);

/// 2-D transposed convolution (PyTorch's `nn.ConvTranspose2d`): parameters
/// `weight [c_in, c_out/g, kh, kw]` and `bias [c_out]`.
#[derive(Clone, Debug)]
pub struct ConvTranspose2d(ConvCore);

impl Conv2d {
    /// `c_in -> c_out` channels with a `kernel` window; set the rest on the builder.
    pub fn builder(c_in: usize, c_out: usize, kernel: [usize; 2]) -> ConvBuilder<Conv2d> {
        ConvBuilder::new(c_in, c_out, kernel)
    }
    /// The arguments it was built with.
    pub fn spec(&self) -> &ConvSpec {
        &self.0.spec
    }
}

impl ConvTranspose2d {
    /// `c_in -> c_out` channels with a `kernel` window; set the rest on the builder.
    pub fn builder(c_in: usize, c_out: usize, kernel: [usize; 2]) -> ConvBuilder<ConvTranspose2d> {
        ConvBuilder::new(c_in, c_out, kernel)
    }
    /// The arguments it was built with.
    pub fn spec(&self) -> &ConvSpec {
        &self.0.spec
    }
}

impl ConvLayer for Conv2d {
    const TRANSPOSED: bool = false;
    fn from_core(core: ConvCore) -> Self {
        Conv2d(core)
    }
}

impl ConvLayer for ConvTranspose2d {
    const TRANSPOSED: bool = true;
    fn from_core(core: ConvCore) -> Self {
        ConvTranspose2d(core)
    }
}

/// The [`Layer`] impl of a newtype over [`ConvCore`].
macro_rules! conv_layer {
    ($t:ty) => {
        impl Layer for $t {
            fn kind(&self) -> &'static str {
                self.0.kind()
            }
            fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
                self.0.output_shape(input)
            }
            fn forward(&mut self, x: Tensor, ctx: &mut Ctx) -> Result<Tensor, Error> {
                self.0.forward(x, ctx.storage())
            }
            fn backward(&mut self, grad_y: Tensor) -> Result<Tensor, Error> {
                let dy16 = self.0.grad_bf16(&grad_y);
                self.0.param_grads(&grad_y, dy16.as_deref())?;
                self.0.input_grad(&grad_y, dy16.as_deref())
            }
            fn backward_params(&mut self, grad_y: Tensor) -> Result<(), Error> {
                let dy16 = self.0.grad_bf16(&grad_y);
                self.0.param_grads(&grad_y, dy16.as_deref())
            }
            fn flops(&self, input: [usize; 4]) -> Result<u64, Error> {
                check_channels(self.0.kind(), input, self.0.spec.c_in)?;
                Ok(self.0.build_geometry(input)?.flops())
            }
            fn window(&self, _input: [usize; 4]) -> Option<Window> {
                Some(self.0.window())
            }
            fn conv_params(&self, input: [usize; 4]) -> Option<convnet_kernels::ConvParams> {
                check_channels(self.0.kind(), input, self.0.spec.c_in).ok()?;
                Some(*self.0.build_geometry(input).ok()?.params())
            }
            fn visit_params<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Param)) {
                self.0.visit(prefix, f)
            }
            fn visit_params_mut<'a>(
                &'a mut self,
                prefix: &str,
                f: &mut dyn FnMut(String, &'a mut Param),
            ) {
                self.0.visit_mut(prefix, f)
            }
        }
    };
}

conv_layer!(Conv2d);
conv_layer!(ConvTranspose2d);
