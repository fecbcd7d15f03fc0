//! [`Param`]: a named, shaped parameter or buffer of a layer, with its gradient, and the
//! PyTorch-style `state_dict` names containers give it (`features.0.weight`).

/// What a parameter is, for the initializer and the optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A trained weight, drawn by [`crate::init`] from its fans (PyTorch's
    /// `_calculate_fan_in_and_fan_out`: `fan_in = shape[1] * receptive field`,
    /// `fan_out = shape[0] * receptive field`).
    Weight {
        /// Inputs feeding one output.
        fan_in: usize,
        /// Outputs fed by one input.
        fan_out: usize,
    },
    /// A trained value that keeps its constructor value at initialization (biases, batch-norm
    /// scale and shift, PReLU slopes, LeNet's subsampling coefficients).
    Learned,
    /// State that is saved but not trained (batch-norm running statistics; PyTorch's buffers).
    Buffer,
}

/// A layer's parameter: values, gradient (empty for buffers) and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The values, row-major in `shape`.
    pub value: Vec<f32>,
    /// The gradient of the last backward pass (same length as `value`; empty for a buffer).
    pub grad: Vec<f32>,
    /// The shape (PyTorch's, so checkpoints load by name and shape).
    pub shape: Vec<usize>,
    /// What it is.
    pub kind: ParamKind,
}

impl Param {
    /// A weight of `shape`, zero until [`crate::init`] draws it; fans from the shape.
    pub fn weight(shape: &[usize]) -> Param {
        let receptive: usize = shape.iter().skip(2).product();
        let fan_in = shape.get(1).copied().unwrap_or(1) * receptive;
        let fan_out = shape.first().copied().unwrap_or(1) * receptive;
        Param::filled(shape, 0.0, ParamKind::Weight { fan_in, fan_out })
    }

    /// A trained parameter of `shape`, every element `fill`.
    pub fn learned(shape: &[usize], fill: f32) -> Param {
        Param::filled(shape, fill, ParamKind::Learned)
    }

    /// A buffer of `shape`, every element `fill`.
    pub fn buffer(shape: &[usize], fill: f32) -> Param {
        let mut p = Param::filled(shape, fill, ParamKind::Buffer);
        p.grad = Vec::new();
        p
    }

    fn filled(shape: &[usize], fill: f32, kind: ParamKind) -> Param {
        let len = shape.iter().product();
        Param {
            value: vec![fill; len],
            grad: vec![0.0; len],
            shape: shape.to_vec(),
            kind,
        }
    }

    /// Whether the optimizer updates it.
    pub fn is_trainable(&self) -> bool {
        self.kind != ParamKind::Buffer
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

/// `prefix.name`, or `name` at the top level.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else if name.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
