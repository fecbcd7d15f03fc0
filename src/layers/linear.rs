//! [`Linear`]: the fully connected layer `y = x W^T + b` (PyTorch's `nn.Linear`) on the kernel
//! crate's GEMM.
//!
//! ```text
//! x [n, in] (any [n, c, h, w] with c*h*w == in)   weight [out, in]   bias [out]   y [n, out, 1, 1]
//! dW = dy^T x     db = sum over the batch of dy     dx = dy W
//! ```
//!
//! In [`Storage::Bf16`] every operand and result above is rounded to bf16 (the products
//! accumulate in f32), as the convolution kernels do in bf16 storage.

use convnet_kernels::gemm::gemm_dense;

use super::{Ctx, Layer, Storage, cached, check_grad, round_bf16};
use crate::error::ensure;
use crate::param::{Param, join};
use crate::summary::Window;
use crate::{Error, Tensor};

/// A fully connected layer: parameters `weight [out, in]` and `bias [out]`.
#[derive(Clone, Debug)]
pub struct Linear {
    in_features: usize,
    out_features: usize,
    weight: Param,
    bias: Option<Param>,
    input: Option<Tensor>,
    /// The weight rounded to bf16 when the last forward pass ran in bf16 storage (its input
    /// is kept rounded too); the backward pass then rounds its operands and results as well.
    bf16_weight: Option<Vec<f32>>,
}

impl Linear {
    /// `in_features -> out_features`, with or without a bias.
    pub fn new(in_features: usize, out_features: usize, bias: bool) -> Result<Linear, Error> {
        ensure(in_features > 0 && out_features > 0, || {
            format!("Linear: features must be positive, got {in_features} -> {out_features}")
        })?;
        Ok(Linear {
            in_features,
            out_features,
            weight: Param::weight(&[out_features, in_features]),
            bias: bias.then(|| Param::learned(&[out_features], 0.0)),
            input: None,
            bf16_weight: None,
        })
    }

    fn check_input(&self, shape: [usize; 4]) -> Result<(), Error> {
        if shape[1] * shape[2] * shape[3] == self.in_features {
            Ok(())
        } else {
            Err(Error::Shape {
                layer: "Linear",
                detail: format!(
                    "expects {} features per sample, got shape {shape:?}",
                    self.in_features
                ),
            })
        }
    }

    fn output(&self, n: usize) -> [usize; 4] {
        [n, self.out_features, 1, 1]
    }

    /// `grad_y`, rounded to bf16 if the forward pass ran in bf16.
    fn stored_grad(&self, grad_y: Tensor) -> Tensor {
        let mut grad_y = grad_y;
        if self.bf16_weight.is_some() {
            round_bf16(grad_y.data_mut());
        }
        grad_y
    }

    /// Overwrites the weight and bias gradients from `grad_y` as [`Linear::stored_grad`]
    /// returns it.
    fn param_grads(&mut self, grad_y: &Tensor) -> Result<(), Error> {
        let x = cached(&self.input, "Linear")?;
        check_grad("Linear", grad_y, self.output(x.n()))?;
        let (n, fin, fout) = (x.n(), self.in_features, self.out_features);
        // dW [out, in] = dy^T [out, n] * x [n, in]
        gemm_dense(
            fout,
            n,
            fin,
            1.0,
            grad_y.data(),
            true,
            x.data(),
            false,
            0.0,
            &mut self.weight.grad,
        )?;
        if let Some(b) = &mut self.bias {
            b.grad.fill(0.0);
            for row in grad_y.data().chunks_exact(fout) {
                for (g, &d) in b.grad.iter_mut().zip(row) {
                    *g += d;
                }
            }
        }
        if self.bf16_weight.is_some() {
            round_bf16(&mut self.weight.grad);
            if let Some(b) = &mut self.bias {
                round_bf16(&mut b.grad);
            }
        }
        Ok(())
    }
}

impl Layer for Linear {
    fn kind(&self) -> &'static str {
        "Linear"
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        self.check_input(input)?;
        Ok(self.output(input[0]))
    }
    fn forward(&mut self, x: Tensor, ctx: &mut Ctx) -> Result<Tensor, Error> {
        self.check_input(x.shape())?;
        let bf16 = ctx.storage() == Storage::Bf16;
        let mut x = x;
        self.bf16_weight = bf16.then(|| {
            round_bf16(x.data_mut());
            let mut w = self.weight.value.clone();
            round_bf16(&mut w);
            w
        });
        let weight = self.bf16_weight.as_deref().unwrap_or(&self.weight.value);
        let n = x.n();
        let mut y = Tensor::zeros(self.output(n));
        if let Some(b) = &self.bias {
            for row in y.data_mut().chunks_exact_mut(self.out_features) {
                row.copy_from_slice(&b.value);
                if bf16 {
                    round_bf16(row);
                }
            }
        }
        let beta = if self.bias.is_some() { 1.0 } else { 0.0 };
        // y [n, out] = x [n, in] * W^T [in, out] (+ bias rows)
        gemm_dense(
            n,
            self.in_features,
            self.out_features,
            1.0,
            x.data(),
            false,
            weight,
            true,
            beta,
            y.data_mut(),
        )?;
        if bf16 {
            round_bf16(y.data_mut());
        }
        self.input = Some(x);
        Ok(y)
    }
    fn backward(&mut self, grad_y: Tensor) -> Result<Tensor, Error> {
        let grad_y = self.stored_grad(grad_y);
        self.param_grads(&grad_y)?;
        let x = cached(&self.input, "Linear")?;
        let mut grad_x = Tensor::zeros(x.shape());
        // dx [n, in] = dy [n, out] * W [out, in]
        gemm_dense(
            x.n(),
            self.out_features,
            self.in_features,
            1.0,
            grad_y.data(),
            false,
            self.bf16_weight.as_deref().unwrap_or(&self.weight.value),
            false,
            0.0,
            grad_x.data_mut(),
        )?;
        if self.bf16_weight.is_some() {
            round_bf16(grad_x.data_mut());
        }
        Ok(grad_x)
    }
    fn backward_params(&mut self, grad_y: Tensor) -> Result<(), Error> {
        let grad_y = self.stored_grad(grad_y);
        self.param_grads(&grad_y)
    }
    fn flops(&self, input: [usize; 4]) -> Result<u64, Error> {
        self.check_input(input)?;
        Ok(2 * (input[0] * self.in_features * self.out_features) as u64)
    }
    fn window(&self, input: [usize; 4]) -> Option<Window> {
        Some(Window::whole([input[2], input[3]]))
    }
    fn visit_params<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Param)) {
        f(join(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(join(prefix, "bias"), b);
        }
    }
    fn visit_params_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(String, &'a mut Param)) {
        f(join(prefix, "weight"), &mut self.weight);
        if let Some(b) = &mut self.bias {
            f(join(prefix, "bias"), b);
        }
    }
}
