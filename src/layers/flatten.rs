//! [`Flatten`]: `[n, c, h, w] -> [n, c*h*w, 1, 1]` (PyTorch's `nn.Flatten()`), a reshape.

use super::{Ctx, Layer, cached, check_grad};
use crate::summary::Window;
use crate::{Error, Tensor};

/// Flattens every sample into a feature vector.
#[derive(Clone, Debug, Default)]
pub struct Flatten {
    input_shape: Option<[usize; 4]>,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Flatten { input_shape: None }
    }
}

impl Layer for Flatten {
    fn kind(&self) -> &'static str {
        "Flatten"
    }
    fn output_shape(&self, [n, c, h, w]: [usize; 4]) -> Result<[usize; 4], Error> {
        Ok([n, c * h * w, 1, 1])
    }
    fn forward(&mut self, x: Tensor, _ctx: &mut Ctx) -> Result<Tensor, Error> {
        self.input_shape = Some(x.shape());
        let shape = self.output_shape(x.shape())?;
        x.reshape(shape)
    }
    fn backward(&mut self, grad_y: Tensor) -> Result<Tensor, Error> {
        let input = *cached(&self.input_shape, "Flatten")?;
        check_grad("Flatten", &grad_y, self.output_shape(input)?)?;
        grad_y.reshape(input)
    }
    fn flops(&self, _input: [usize; 4]) -> Result<u64, Error> {
        Ok(0)
    }
    fn window(&self, input: [usize; 4]) -> Option<Window> {
        Some(Window::whole([input[2], input[3]]))
    }
}
