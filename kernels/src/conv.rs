//! The public entry points: [`Conv2d`] (a validated geometry) and its three passes, in
//! normal and transposed mode, on any [`Algorithm`] or an explicit kernel.

use crate::error::ConvError;
use crate::parallel::with_scratch;
use crate::params::{ConvGeom, ConvParams, Padding};
use crate::registry::{self, ConvKernel};
use crate::storage::Element;

/// Winograd output tile sizes, F(m x m, 3x3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WinogradTile {
    /// F(2x2, 3x3): 4x4 input tiles, points {0, +-1, inf}.
    F2,
    /// F(4x4, 3x3): 6x6 input tiles, points {0, +-1, +-2, inf}.
    F4,
    /// F(6x6, 3x3): 8x8 input tiles, points {0, +-1, +-2, +-1/2, inf}.
    F6,
}

impl WinogradTile {
    /// Output tile size `m` of F(m x m, 3 x 3).
    pub fn m(self) -> usize {
        match self {
            WinogradTile::F2 => 2,
            WinogradTile::F4 => 4,
            WinogradTile::F6 => 6,
        }
    }
}

/// Which algorithm runs a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// The naive f64-accumulating loops: the oracle.
    Reference,
    /// Hand-vectorised direct convolution.
    Direct,
    /// im2col + GEMM (on `matrixmultiply`).
    Im2col,
    /// Winograd with the given tile.
    Winograd(WinogradTile),
    /// The fastest supported algorithm for the geometry.
    Auto,
}

impl Algorithm {
    /// `reference`, `direct`, `im2col`, `winograd_f2`, `winograd_f4`, `winograd_f6`, `auto`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Reference => "reference",
            Algorithm::Direct => "direct",
            Algorithm::Im2col => "im2col",
            Algorithm::Winograd(WinogradTile::F2) => "winograd_f2",
            Algorithm::Winograd(WinogradTile::F4) => "winograd_f4",
            Algorithm::Winograd(WinogradTile::F6) => "winograd_f6",
            Algorithm::Auto => "auto",
        }
    }

    /// Parses a name from [`Algorithm::name`]; `winograd` alone means F(4x4, 3x3).
    pub fn parse(s: &str) -> Option<Algorithm> {
        let s = s.trim().to_ascii_lowercase();
        if s == "winograd" {
            return Some(Algorithm::Winograd(WinogradTile::F4));
        }
        Algorithm::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Every algorithm, `Auto` last.
    pub const ALL: [Algorithm; 7] = [
        Algorithm::Reference,
        Algorithm::Direct,
        Algorithm::Im2col,
        Algorithm::Winograd(WinogradTile::F2),
        Algorithm::Winograd(WinogradTile::F4),
        Algorithm::Winograd(WinogradTile::F6),
        Algorithm::Auto,
    ];
}

/// One of the three passes of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pass {
    /// `y = conv(x, w) + b`.
    Forward,
    /// `grad_x` from `grad_y`.
    BackwardData,
    /// `grad_w` (and `grad_b`) from `x` and `grad_y`.
    BackwardWeight,
}

impl Pass {
    /// `fwd`, `bwd_data`, `bwd_weight` (the names `convnet bench --pass` takes).
    pub fn name(self) -> &'static str {
        match self {
            Pass::Forward => "fwd",
            Pass::BackwardData => "bwd_data",
            Pass::BackwardWeight => "bwd_weight",
        }
    }
    /// Parses a name from [`Pass::name`].
    pub fn parse(s: &str) -> Option<Pass> {
        Pass::ALL.into_iter().find(|p| p.name() == s.trim())
    }
    /// All three passes.
    pub const ALL: [Pass; 3] = [Pass::Forward, Pass::BackwardData, Pass::BackwardWeight];
}

/// Builds a [`Conv2d`]; see [`Conv2d::builder`].
#[derive(Clone, Debug)]
pub struct Conv2dBuilder {
    params: ConvParams,
    padding: Padding,
}

impl Conv2dBuilder {
    /// `[sh, sw]`.
    pub fn stride(mut self, stride: [usize; 2]) -> Self {
        self.params.stride = stride;
        self
    }
    /// Padding: `Padding::Explicit([t, b, l, r])`, `Padding::Symmetric([ph, pw])` or `Padding::Same`.
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }
    /// `[dh, dw]`.
    pub fn dilation(mut self, dilation: [usize; 2]) -> Self {
        self.params.dilation = dilation;
        self
    }
    /// Groups (`groups == c_in` is depthwise).
    pub fn groups(mut self, groups: usize) -> Self {
        self.params.groups = groups;
        self
    }
    /// Transposed mode with `[oph, opw]` output padding.
    pub fn transposed(mut self, output_padding: [usize; 2]) -> Self {
        self.params.transposed = true;
        self.params.output_padding = output_padding;
        self
    }
    /// Validates every size.
    pub fn build(mut self) -> Result<Conv2d, ConvError> {
        let p = &mut self.params;
        p.padding = match self.padding {
            Padding::Explicit(pad) => pad,
            Padding::Symmetric([ph, pw]) => [ph, ph, pw, pw],
            Padding::Same if p.transposed => {
                return Err(ConvError::Unsupported {
                    kernel: "Padding::Same",
                    reason: "transposed mode",
                });
            }
            Padding::Same => {
                ConvParams::same_padding(p.h, p.w, [p.kh, p.kw], p.stride, p.dilation)?
            }
        };
        Conv2d::new(self.params)
    }
}

/// A validated convolution geometry, ready to run any pass with any algorithm.
///
/// Buffers are dense NCHW f32: `x [n, c_in, h, w]`, `y [n, c_out, oh, ow]`, weight
/// `[c_out, c_in/g, kh, kw]` (transposed: `[c_in, c_out/g, kh, kw]`), bias `[c_out]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2d {
    params: ConvParams,
    geom: ConvGeom,
}

impl Conv2d {
    /// Starts a builder with PyTorch's defaults (stride 1, no padding, dilation 1, one group).
    pub fn builder(
        n: usize,
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        kernel: [usize; 2],
    ) -> Conv2dBuilder {
        Conv2dBuilder {
            params: ConvParams::new(n, c_in, h, w, c_out, kernel),
            padding: Padding::Explicit([0; 4]),
        }
    }

    /// Validates `params`.
    pub fn new(params: ConvParams) -> Result<Conv2d, ConvError> {
        Ok(Conv2d {
            geom: params.validate()?,
            params,
        })
    }

    /// The parameters as given (with `Padding::Same` resolved).
    pub fn params(&self) -> &ConvParams {
        &self.params
    }
    /// The canonical forward-conv geometry the kernels run on.
    pub fn geom(&self) -> &ConvGeom {
        &self.geom
    }
    /// Whether this is a transposed convolution.
    pub fn is_transposed(&self) -> bool {
        self.params.transposed
    }
    /// `[n, c_in, h, w]`.
    pub fn input_shape(&self) -> [usize; 4] {
        let p = &self.params;
        [p.n, p.c_in, p.h, p.w]
    }
    /// `[n, c_out, oh, ow]` of the public forward pass.
    pub fn output_shape(&self) -> [usize; 4] {
        let g = &self.geom;
        if self.params.transposed {
            [g.n, g.c_in, g.h, g.w]
        } else {
            [g.n, g.c_out, g.oh, g.ow]
        }
    }
    /// Weight shape (see [`ConvParams::weight_shape`]).
    pub fn weight_shape(&self) -> [usize; 4] {
        self.params.weight_shape()
    }
    /// Elements of `x`.
    pub fn input_len(&self) -> usize {
        if self.params.transposed {
            self.geom.y_len
        } else {
            self.geom.x_len
        }
    }
    /// Elements of `y`.
    pub fn output_len(&self) -> usize {
        if self.params.transposed {
            self.geom.x_len
        } else {
            self.geom.y_len
        }
    }
    /// Elements of the weight.
    pub fn weight_len(&self) -> usize {
        self.geom.w_len
    }
    /// Elements of the bias (`c_out`).
    pub fn bias_len(&self) -> usize {
        self.params.c_out
    }
    /// FLOPs of each pass: `2*n*c_out*oh*ow*(c_in/g)*kh*kw`, counted through the equivalent
    /// forward conv in transposed mode.
    pub fn flops(&self) -> u64 {
        self.geom.flops
    }

    /// The pass a kernel runs on the canonical geometry to serve public `pass`.
    pub fn canonical_pass(&self, pass: Pass) -> Pass {
        match (self.params.transposed, pass) {
            (false, p) => p,
            (true, Pass::Forward) => Pass::BackwardData,
            (true, Pass::BackwardData) => Pass::Forward,
            (true, Pass::BackwardWeight) => Pass::BackwardWeight,
        }
    }

    /// The kernel `algo` resolves to for public `pass` on this geometry.
    pub fn kernel(
        &self,
        algo: Algorithm,
        pass: Pass,
    ) -> Result<&'static dyn ConvKernel, ConvError> {
        registry::select(algo, &self.geom, self.canonical_pass(pass))
    }

    fn check_kernel(&self, kernel: &dyn ConvKernel, pass: Pass) -> Result<(), ConvError> {
        kernel
            .supports(&self.geom, self.canonical_pass(pass))
            .map_err(|reason| ConvError::Unsupported {
                kernel: kernel.name(),
                reason,
            })
    }

    /// `y = conv(x, weight) + bias` (or the transposed conv), on `f32`, `f16` or `bf16`
    /// storage (the latter two accumulate in f32; see [`crate::storage`]).
    pub fn forward<T: Element>(
        &self,
        algo: Algorithm,
        x: &[T],
        weight: &[T],
        bias: Option<&[T]>,
        y: &mut [T],
    ) -> Result<(), ConvError> {
        self.forward_with(self.kernel(algo, Pass::Forward)?, x, weight, bias, y)
    }

    /// [`Conv2d::forward`] on an explicit kernel.
    pub fn forward_with<T: Element>(
        &self,
        kernel: &dyn ConvKernel,
        x: &[T],
        weight: &[T],
        bias: Option<&[T]>,
        y: &mut [T],
    ) -> Result<(), ConvError> {
        check_len("x", x.len(), self.input_len())?;
        check_len("weight", weight.len(), self.weight_len())?;
        if let Some(b) = bias {
            check_len("bias", b.len(), self.bias_len())?;
        }
        check_len("y", y.len(), self.output_len())?;
        self.check_kernel(kernel, Pass::Forward)?;
        with_f32(x, |x| {
            with_f32(weight, |weight| {
                with_f32_opt(bias, |bias| {
                    with_f32_out(y, |y| {
                        if self.params.transposed {
                            kernel.backward_data(&self.geom, x, weight, bias, y);
                        } else {
                            kernel.forward(&self.geom, x, weight, bias, y);
                        }
                    })
                })
            })
        });
        Ok(())
    }

    /// `grad_x` from `grad_y` (the gradient of [`Conv2d::forward`] with respect to `x`).
    pub fn backward_data<T: Element>(
        &self,
        algo: Algorithm,
        grad_y: &[T],
        weight: &[T],
        grad_x: &mut [T],
    ) -> Result<(), ConvError> {
        self.backward_data_with(
            self.kernel(algo, Pass::BackwardData)?,
            grad_y,
            weight,
            grad_x,
        )
    }

    /// [`Conv2d::backward_data`] on an explicit kernel.
    pub fn backward_data_with<T: Element>(
        &self,
        kernel: &dyn ConvKernel,
        grad_y: &[T],
        weight: &[T],
        grad_x: &mut [T],
    ) -> Result<(), ConvError> {
        check_len("grad_y", grad_y.len(), self.output_len())?;
        check_len("weight", weight.len(), self.weight_len())?;
        check_len("grad_x", grad_x.len(), self.input_len())?;
        self.check_kernel(kernel, Pass::BackwardData)?;
        with_f32(grad_y, |grad_y| {
            with_f32(weight, |weight| {
                with_f32_out(grad_x, |grad_x| {
                    if self.params.transposed {
                        kernel.forward(&self.geom, grad_y, weight, None, grad_x);
                    } else {
                        kernel.backward_data(&self.geom, grad_y, weight, None, grad_x);
                    }
                })
            })
        });
        Ok(())
    }

    /// `grad_weight` (and `grad_bias` when given) from `x` and `grad_y`.
    pub fn backward_weight<T: Element>(
        &self,
        algo: Algorithm,
        x: &[T],
        grad_y: &[T],
        grad_weight: &mut [T],
        grad_bias: Option<&mut [T]>,
    ) -> Result<(), ConvError> {
        self.backward_weight_with(
            self.kernel(algo, Pass::BackwardWeight)?,
            x,
            grad_y,
            grad_weight,
            grad_bias,
        )
    }

    /// [`Conv2d::backward_weight`] on an explicit kernel.
    pub fn backward_weight_with<T: Element>(
        &self,
        kernel: &dyn ConvKernel,
        x: &[T],
        grad_y: &[T],
        grad_weight: &mut [T],
        grad_bias: Option<&mut [T]>,
    ) -> Result<(), ConvError> {
        check_len("x", x.len(), self.input_len())?;
        check_len("grad_y", grad_y.len(), self.output_len())?;
        check_len("grad_weight", grad_weight.len(), self.weight_len())?;
        if let Some(gb) = grad_bias.as_deref() {
            check_len("grad_bias", gb.len(), self.bias_len())?;
        }
        self.check_kernel(kernel, Pass::BackwardWeight)?;
        let g = &self.geom;
        with_f32(x, |x| {
            with_f32(grad_y, |grad_y| {
                if self.params.transposed {
                    // The canonical conv's grad_y is this conv's input: the bias is summed
                    // over this conv's output (the canonical x) on its own.
                    with_f32_out(grad_weight, |grad_weight| {
                        kernel.backward_weight(g, grad_y, x, grad_weight)
                    });
                    if let Some(gb) = grad_bias {
                        let [n, c, oh, ow] = self.output_shape();
                        with_f32_out(gb, |gb| kernel.bias_grad(grad_y, n, c, oh * ow, gb));
                    }
                } else {
                    with_f32_out(grad_weight, |grad_weight| match grad_bias {
                        Some(gb) => with_f32_out(gb, |gb| {
                            kernel.backward_weight_bias(g, x, grad_y, grad_weight, Some(gb))
                        }),
                        None => kernel.backward_weight_bias(g, x, grad_y, grad_weight, None),
                    });
                }
            })
        });
        Ok(())
    }
}

/// Runs `f` on `s` as f32: the slice itself, or a widened copy in scratch.
fn with_f32<T: Element, R>(s: &[T], f: impl FnOnce(&[f32]) -> R) -> R {
    match T::as_f32(s) {
        Some(s) => f(s),
        None => with_scratch(s.len(), |buf| {
            T::widen(s, buf);
            f(buf)
        }),
    }
}

fn with_f32_opt<T: Element, R>(s: Option<&[T]>, f: impl FnOnce(Option<&[f32]>) -> R) -> R {
    match s {
        Some(s) => with_f32(s, |s| f(Some(s))),
        None => f(None),
    }
}

/// Runs `f` on an f32 view of the output `s`: the slice itself, or scratch narrowed into
/// `s` afterwards.
fn with_f32_out<T: Element>(s: &mut [T], f: impl FnOnce(&mut [f32])) {
    match T::as_f32_mut(s) {
        Some(s) => f(s),
        None => with_scratch(s.len(), |buf| {
            f(buf);
            T::narrow(buf, s);
        }),
    }
}

fn check_len(buffer: &'static str, got: usize, expected: usize) -> Result<(), ConvError> {
    if got == expected {
        Ok(())
    } else {
        Err(ConvError::BufferLength {
            buffer,
            expected,
            got,
        })
    }
}

/// One public pass of a [`ConvPlan`]: its kernel (or why there is none) and the weights it
/// prepared.
#[derive(Debug)]
struct PassPlan {
    kernel: Result<&'static dyn ConvKernel, ConvError>,
    prepared: Option<crate::parallel::AlignedVec>,
}

impl std::fmt::Debug for dyn ConvKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A convolution with its weights prepared once per pass (packed for the direct kernel,
/// transformed for Winograd), for repeated calls with the same weights: inference, or the
/// forward and backward passes of one training step. Steady-state forward calls allocate
/// nothing (scratch comes from per-thread pools).
///
/// ```
/// use convnet_kernels::{Algorithm, Conv2d, Padding};
/// let conv = Conv2d::builder(1, 16, 8, 8, 32, [3, 3]).padding(Padding::Same).build()?;
/// let weight = vec![0.01f32; conv.weight_len()];
/// let plan = conv.plan(Algorithm::Auto, &weight)?;
/// let x = vec![1.0f32; conv.input_len()];
/// let mut y = vec![0.0f32; conv.output_len()];
/// plan.forward_relu(&x, None, &mut y)?;
/// assert!(y.iter().all(|&v| v >= 0.0));
/// # Ok::<(), convnet_kernels::ConvError>(())
/// ```
#[derive(Debug)]
pub struct ConvPlan {
    conv: Conv2d,
    weight: Vec<f32>,
    forward: PassPlan,
    backward_data: PassPlan,
    backward_weight: Result<&'static dyn ConvKernel, ConvError>,
}

impl Conv2d {
    /// Resolves `algo` for every pass and prepares `weight` for the forward and
    /// backward-data passes. A pass `algo` cannot run is reported when that pass is called.
    pub fn plan<T: Element>(&self, algo: Algorithm, weight: &[T]) -> Result<ConvPlan, ConvError> {
        check_len("weight", weight.len(), self.weight_len())?;
        let mut widened = vec![0.0f32; weight.len()];
        T::widen(weight, &mut widened);
        let weight = &widened[..];
        let pass_plan = |pass: Pass| {
            let kernel = match algo {
                Algorithm::Auto => {
                    crate::auto::select_auto(&self.geom, self.canonical_pass(pass), true)
                }
                _ => self.kernel(algo, pass),
            };
            let prepared = kernel
                .as_ref()
                .ok()
                .and_then(|k| k.prepare(&self.geom, self.canonical_pass(pass), weight))
                .map(|p| crate::parallel::AlignedVec::from_slice(&p));
            PassPlan { kernel, prepared }
        };
        Ok(ConvPlan {
            conv: *self,
            weight: widened.clone(),
            forward: pass_plan(Pass::Forward),
            backward_data: pass_plan(Pass::BackwardData),
            backward_weight: self.kernel(algo, Pass::BackwardWeight),
        })
    }
}

impl ConvPlan {
    /// The geometry.
    pub fn conv(&self) -> &Conv2d {
        &self.conv
    }

    /// The kernel each pass runs on (or why it cannot run).
    pub fn kernel(&self, pass: Pass) -> Result<&'static dyn ConvKernel, ConvError> {
        match pass {
            Pass::Forward => self.forward.kernel.clone(),
            Pass::BackwardData => self.backward_data.kernel.clone(),
            Pass::BackwardWeight => self.backward_weight.clone(),
        }
    }

    /// `y = conv(x, weight) + bias`.
    pub fn forward<T: Element>(
        &self,
        x: &[T],
        bias: Option<&[T]>,
        y: &mut [T],
    ) -> Result<(), ConvError> {
        self.run_forward(x, bias, false, y)
    }

    /// `y = max(conv(x, weight) + bias, 0)`, the ReLU fused into the kernel's store where it
    /// can be.
    pub fn forward_relu<T: Element>(
        &self,
        x: &[T],
        bias: Option<&[T]>,
        y: &mut [T],
    ) -> Result<(), ConvError> {
        self.run_forward(x, bias, true, y)
    }

    fn run_forward<T: Element>(
        &self,
        x: &[T],
        bias: Option<&[T]>,
        relu: bool,
        y: &mut [T],
    ) -> Result<(), ConvError> {
        let c = &self.conv;
        let kernel = self.forward.kernel.clone()?;
        check_len("x", x.len(), c.input_len())?;
        if let Some(b) = bias {
            check_len("bias", b.len(), c.bias_len())?;
        }
        check_len("y", y.len(), c.output_len())?;
        let mut result = Ok(());
        with_f32(x, |x| {
            with_f32_opt(bias, |bias| {
                with_f32_out(y, |y| {
                    match &self.forward.prepared {
                        None => result = c.forward_with(kernel, x, &self.weight, bias, y),
                        Some(prepared) if c.is_transposed() => {
                            kernel.backward_data_prepared(&c.geom, x, prepared, bias, y)
                        }
                        Some(prepared) => {
                            kernel.forward_prepared(&c.geom, x, prepared, bias, relu, y);
                            return;
                        }
                    }
                    if relu {
                        y.iter_mut().for_each(|v| *v = v.max(0.0));
                    }
                })
            })
        });
        result
    }

    /// `grad_x` from `grad_y`.
    pub fn backward_data<T: Element>(
        &self,
        grad_y: &[T],
        grad_x: &mut [T],
    ) -> Result<(), ConvError> {
        let c = &self.conv;
        let kernel = self.backward_data.kernel.clone()?;
        check_len("grad_y", grad_y.len(), c.output_len())?;
        check_len("grad_x", grad_x.len(), c.input_len())?;
        let mut result = Ok(());
        with_f32(grad_y, |grad_y| {
            with_f32_out(grad_x, |grad_x| match &self.backward_data.prepared {
                None => result = c.backward_data_with(kernel, grad_y, &self.weight, grad_x),
                Some(prepared) if c.is_transposed() => {
                    kernel.forward_prepared(&c.geom, grad_y, prepared, None, false, grad_x)
                }
                Some(prepared) => {
                    kernel.backward_data_prepared(&c.geom, grad_y, prepared, None, grad_x)
                }
            })
        });
        result
    }

    /// `grad_weight` (and `grad_bias`) from `x` and `grad_y`.
    pub fn backward_weight<T: Element>(
        &self,
        x: &[T],
        grad_y: &[T],
        grad_weight: &mut [T],
        grad_bias: Option<&mut [T]>,
    ) -> Result<(), ConvError> {
        self.conv.backward_weight_with(
            self.backward_weight.clone()?,
            x,
            grad_y,
            grad_weight,
            grad_bias,
        )
    }
}
