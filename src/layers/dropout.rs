//! [`Dropout`]: in training, zero each element with probability `p` and scale the rest by
//! `1 / (1 - p)`; in evaluation, the identity (PyTorch's `nn.Dropout`).

use super::{Ctx, Layer, cached, check_grad};
use crate::error::ensure;
use crate::{Error, Tensor};

/// Inverted dropout.
#[derive(Clone, Debug)]
pub struct Dropout {
    p: f32,
    /// Per-element factor of the last pass (0 or `1 / (1 - p)`; all 1 in evaluation) and the
    /// output shape.
    mask: Option<(Vec<f32>, [usize; 4])>,
}

impl Dropout {
    /// Drop probability `p` in `[0, 1]`.
    pub fn new(p: f32) -> Result<Self, Error> {
        ensure((0.0..=1.0).contains(&p), || {
            format!("Dropout: p must be in [0, 1], got {p}")
        })?;
        Ok(Dropout { p, mask: None })
    }
}

impl Layer for Dropout {
    fn kind(&self) -> &'static str {
        "Dropout"
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        Ok(input)
    }
    fn forward(&mut self, mut x: Tensor, ctx: &mut Ctx) -> Result<Tensor, Error> {
        let mask = if ctx.is_train() {
            let keep = if self.p < 1.0 {
                1.0 / (1.0 - self.p)
            } else {
                0.0
            };
            let rng = ctx.rng();
            (0..x.len())
                .map(|_| if rng.uniform() < self.p { 0.0 } else { keep })
                .collect()
        } else {
            vec![1.0; x.len()]
        };
        for (v, m) in x.data_mut().iter_mut().zip(&mask) {
            *v *= m;
        }
        self.mask = Some((mask, x.shape()));
        Ok(x)
    }
    fn backward(&mut self, mut grad_y: Tensor) -> Result<Tensor, Error> {
        let (mask, shape) = cached(&self.mask, "Dropout")?;
        check_grad("Dropout", &grad_y, *shape)?;
        for (g, m) in grad_y.data_mut().iter_mut().zip(mask) {
            *g *= m;
        }
        Ok(grad_y)
    }
}
