//! [`Tensor`]: a dense row-major NCHW `f32` array that owns its data.
//!
//! Every activation in the network is 4-D. Fully connected features are `[n, features, 1, 1]`,
//! which is what [`crate::layers::Flatten`] produces and [`crate::layers::Linear`] consumes.

use crate::Error;

/// A dense NCHW `f32` tensor: `data[((b * c + ch) * h + y) * w + x]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: [usize; 4],
    data: Vec<f32>,
}

/// Elements of a shape, or `None` on overflow.
pub fn numel(shape: [usize; 4]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl Tensor {
    /// A tensor of `shape` holding `data`; the length must match.
    pub fn new(shape: [usize; 4], data: Vec<f32>) -> Result<Tensor, Error> {
        if numel(shape) != Some(data.len()) {
            return Err(Error::Shape {
                layer: "Tensor",
                detail: format!("shape {shape:?} does not hold {} elements", data.len()),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros. Panics only if the element count overflows `usize`.
    pub fn zeros(shape: [usize; 4]) -> Tensor {
        let len = numel(shape).expect("tensor size overflows usize");
        Tensor {
            shape,
            data: vec![0.0; len],
        }
    }

    /// `[n, c, h, w]`.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }
    /// Batch size.
    pub fn n(&self) -> usize {
        self.shape[0]
    }
    /// Channels.
    pub fn c(&self) -> usize {
        self.shape[1]
    }
    /// Elements of one sample, `c * h * w`.
    pub fn sample_len(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }
    /// Elements of one channel plane, `h * w`.
    pub fn plane_len(&self) -> usize {
        self.shape[2] * self.shape[3]
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// The elements, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    /// The elements, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    /// The element vector.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
    /// The same elements under another shape with the same element count.
    pub fn reshape(self, shape: [usize; 4]) -> Result<Tensor, Error> {
        Tensor::new(shape, self.data)
    }
}
