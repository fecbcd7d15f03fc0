//! Containers: [`Sequential`] (a chain), [`Residual`] (`y = body(x) + shortcut(x)`) and
//! [`Concat`] (parallel branches joined on channels). Each child has a name, the prefix of
//! its parameters' names, as PyTorch's module tree names them: the position in a
//! `Sequential` (`features.0.weight`), or a field name (`layer1.0.downsample.0.weight`).

use super::{Ctx, Layer, cached, check_grad};
use crate::param::{Param, join};
use crate::summary::{self, Field, Row};
use crate::{Error, Tensor};

/// A named child layer.
type Child = (String, Box<dyn Layer>);

fn visit_children<'a>(children: &'a [Child], prefix: &str, f: &mut dyn FnMut(String, &'a Param)) {
    for (name, layer) in children {
        layer.visit_params(&join(prefix, name), f);
    }
}

fn visit_children_mut<'a>(
    children: &'a mut [Child],
    prefix: &str,
    f: &mut dyn FnMut(String, &'a mut Param),
) {
    for (name, layer) in children {
        layer.visit_params_mut(&join(prefix, name), f);
    }
}

/// Layers applied one after the other (PyTorch's `nn.Sequential`).
#[derive(Default)]
pub struct Sequential {
    children: Vec<Child>,
}

impl Sequential {
    /// An empty chain (the identity).
    pub fn new() -> Self {
        Sequential {
            children: Vec::new(),
        }
    }

    /// Appends `layer`, named by its position (`0`, `1`, ...).
    pub fn with(self, layer: impl Layer + 'static) -> Self {
        let name = self.children.len().to_string();
        self.with_named(name, layer)
    }

    /// Appends `layer` under `name` (PyTorch's `OrderedDict` form, e.g. `features`).
    pub fn with_named(mut self, name: impl Into<String>, layer: impl Layer + 'static) -> Self {
        self.children.push((name.into(), Box::new(layer)));
        self
    }

    /// The children with their names.
    pub fn children(&self) -> impl Iterator<Item = (&str, &dyn Layer)> {
        self.children.iter().map(|(n, l)| (n.as_str(), l.as_ref()))
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether the chain is empty.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    fn backward_rest(&mut self, mut grad: Tensor) -> Result<Tensor, Error> {
        for (_, layer) in self.children.iter_mut().skip(1).rev() {
            grad = layer.backward(grad)?;
        }
        Ok(grad)
    }
}

impl Layer for Sequential {
    fn kind(&self) -> &'static str {
        "Sequential"
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        self.children
            .iter()
            .try_fold(input, |shape, (_, l)| l.output_shape(shape))
    }
    fn forward(&mut self, mut x: Tensor, ctx: &mut Ctx) -> Result<Tensor, Error> {
        for (_, layer) in &mut self.children {
            x = layer.forward(x, ctx)?;
        }
        Ok(x)
    }
    fn backward(&mut self, grad_y: Tensor) -> Result<Tensor, Error> {
        let grad = self.backward_rest(grad_y)?;
        match self.children.first_mut() {
            Some((_, first)) => first.backward(grad),
            None => Ok(grad),
        }
    }
    fn backward_params(&mut self, grad_y: Tensor) -> Result<(), Error> {
        let grad = self.backward_rest(grad_y)?;
        match self.children.first_mut() {
            Some((_, first)) => first.backward_params(grad),
            None => Ok(()),
        }
    }
    fn visit_params<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Param)) {
        visit_children(&self.children, prefix, f)
    }
    fn visit_params_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(String, &'a mut Param)) {
        visit_children_mut(&mut self.children, prefix, f)
    }
    fn summarize(&self, name: &str, input: Field, rows: &mut Vec<Row>) -> Result<Field, Error> {
        self.children
            .iter()
            .try_fold(input, |field, (child, layer)| {
                layer.summarize(&join(name, child), field, rows)
            })
    }
}

/// The summary rows of parallel children on one input, then the row of their join
/// (`kind`, `flops`) into `shape`; returns the joined field. `identity` adds the input
/// itself as a branch (a residual block's identity shortcut).
fn summarize_branches(
    children: &[Child],
    identity: bool,
    join_row: (&str, &'static str, u64, [usize; 4]),
    input: Field,
    rows: &mut Vec<Row>,
) -> Result<Field, Error> {
    let (name, kind, flops, shape) = join_row;
    let mut fields = children
        .iter()
        .map(|(child, layer)| layer.summarize(&join(name, child), input, rows))
        .collect::<Result<Vec<_>, _>>()?;
    if identity {
        fields.push(input);
    }
    let out = Field::join(&fields, shape);
    rows.push(Row {
        name: name.to_string(),
        kind,
        output: shape,
        params: 0,
        flops,
        receptive: out.receptive,
        jump: out.jump,
        conv: None,
    });
    Ok(out)
}

/// `y = body(x) + shortcut(x)`, the shortcut being the identity unless given (He et al.'s
/// residual block; a projection shortcut is a 1x1 conv, usually with batch norm).
pub struct Residual {
    /// `[body, shortcut]`, the shortcut absent for the identity.
    children: Vec<Child>,
    output_shape: Option<[usize; 4]>,
}

impl Residual {
    /// Identity shortcut. The body's parameters are named `body.*`.
    pub fn new(body: impl Layer + 'static) -> Self {
        Residual {
            children: vec![("body".into(), Box::new(body))],
            output_shape: None,
        }
    }

    /// With a projection shortcut, named `shortcut.*`.
    pub fn with_shortcut(mut self, shortcut: impl Layer + 'static) -> Self {
        self.children.truncate(1);
        self.children.push(("shortcut".into(), Box::new(shortcut)));
        self
    }

    /// Renames the two parameter prefixes; an empty body name puts the body's parameters
    /// directly under the block (torchvision's `BasicBlock`: `conv1.weight`, ...,
    /// `downsample.0.weight`).
    pub fn named(mut self, body: &str, shortcut: &str) -> Self {
        self.children[0].0 = body.into();
        if let Some(s) = self.children.get_mut(1) {
            s.0 = shortcut.into();
        }
        self
    }

    fn mismatch(body: [usize; 4], shortcut: [usize; 4]) -> Error {
        Error::Shape {
            layer: "Residual",
            detail: format!("body output {body:?} and shortcut output {shortcut:?} differ"),
        }
    }
}

impl Layer for Residual {
    fn kind(&self) -> &'static str {
        "Residual"
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        let body = self.children[0].1.output_shape(input)?;
        let shortcut = match self.children.get(1) {
            Some((_, s)) => s.output_shape(input)?,
            None => input,
        };
        if body == shortcut {
            Ok(body)
        } else {
            Err(Self::mismatch(body, shortcut))
        }
    }
    fn forward(&mut self, x: Tensor, ctx: &mut Ctx) -> Result<Tensor, Error> {
        let skip = match self.children.get_mut(1) {
            Some((_, s)) => s.forward(x.clone(), ctx)?,
            None => x.clone(),
        };
        let mut y = self.children[0].1.forward(x, ctx)?;
        if y.shape() != skip.shape() {
            return Err(Self::mismatch(y.shape(), skip.shape()));
        }
        for (a, b) in y.data_mut().iter_mut().zip(skip.data()) {
            *a += b;
        }
        self.output_shape = Some(y.shape());
        Ok(y)
    }
    fn backward(&mut self, grad_y: Tensor) -> Result<Tensor, Error> {
        check_grad(
            "Residual",
            &grad_y,
            *cached(&self.output_shape, "Residual")?,
        )?;
        let mut grad_x = self.children[0].1.backward(grad_y.clone())?;
        let skip = match self.children.get_mut(1) {
            Some((_, s)) => s.backward(grad_y)?,
            None => grad_y,
        };
        for (a, b) in grad_x.data_mut().iter_mut().zip(skip.data()) {
            *a += b;
        }
        Ok(grad_x)
    }
    fn backward_params(&mut self, grad_y: Tensor) -> Result<(), Error> {
        check_grad(
            "Residual",
            &grad_y,
            *cached(&self.output_shape, "Residual")?,
        )?;
        if let Some((_, s)) = self.children.get_mut(1) {
            s.backward_params(grad_y.clone())?;
        }
        self.children[0].1.backward_params(grad_y)
    }
    fn visit_params<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Param)) {
        visit_children(&self.children, prefix, f)
    }
    /// The body's rows, the shortcut's (none for the identity), and the addition's.
    fn summarize(&self, name: &str, input: Field, rows: &mut Vec<Row>) -> Result<Field, Error> {
        let shape = self.output_shape(input.shape)?;
        let join_row = (name, "Residual", summary::elements(shape), shape);
        let identity = self.children.len() == 1;
        summarize_branches(&self.children, identity, join_row, input, rows)
    }
    fn visit_params_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(String, &'a mut Param)) {
        visit_children_mut(&mut self.children, prefix, f)
    }
}

/// Parallel branches on the same input, their outputs concatenated along the channels in
/// branch order (GoogLeNet's inception module; DenseNet's feature reuse).
#[derive(Default)]
pub struct Concat {
    branches: Vec<Child>,
    /// Output channels of each branch in the last pass, and the output shape.
    split: Option<(Vec<usize>, [usize; 4])>,
}

impl Concat {
    /// No branches yet.
    pub fn new() -> Self {
        Concat {
            branches: Vec::new(),
            split: None,
        }
    }

    /// Adds a branch named by its position.
    pub fn with(self, branch: impl Layer + 'static) -> Self {
        let name = self.branches.len().to_string();
        self.with_named(name, branch)
    }

    /// Adds a branch under `name` (torchvision's `branch1`, ...).
    pub fn with_named(mut self, name: impl Into<String>, branch: impl Layer + 'static) -> Self {
        self.branches.push((name.into(), Box::new(branch)));
        self
    }

    fn joined(shapes: &[[usize; 4]]) -> Result<[usize; 4], Error> {
        let Some(&[n, _, h, w]) = shapes.first() else {
            return Err(Error::Shape {
                layer: "Concat",
                detail: "no branches".into(),
            });
        };
        if shapes.iter().any(|s| [s[0], s[2], s[3]] != [n, h, w]) {
            return Err(Error::Shape {
                layer: "Concat",
                detail: format!("branch outputs {shapes:?} differ in batch or spatial size"),
            });
        }
        Ok([n, shapes.iter().map(|s| s[1]).sum(), h, w])
    }

    /// The output gradient's channel slice of each branch.
    fn split_grad(&self, grad_y: &Tensor) -> Result<Vec<Tensor>, Error> {
        let (channels, shape) = cached(&self.split, "Concat")?;
        check_grad("Concat", grad_y, *shape)?;
        let [n, _, h, w] = *shape;
        let mut parts: Vec<Vec<f32>> = channels
            .iter()
            .map(|c| Vec::with_capacity(n * c * h * w))
            .collect();
        for sample in grad_y.data().chunks_exact(grad_y.sample_len().max(1)) {
            let mut offset = 0;
            for (part, &c) in parts.iter_mut().zip(channels) {
                part.extend_from_slice(&sample[offset..offset + c * h * w]);
                offset += c * h * w;
            }
        }
        parts
            .into_iter()
            .zip(channels)
            .map(|(p, &c)| Tensor::new([n, c, h, w], p))
            .collect()
    }
}

impl Layer for Concat {
    fn kind(&self) -> &'static str {
        "Concat"
    }
    fn output_shape(&self, input: [usize; 4]) -> Result<[usize; 4], Error> {
        let shapes = self
            .branches
            .iter()
            .map(|(_, b)| b.output_shape(input))
            .collect::<Result<Vec<_>, _>>()?;
        Self::joined(&shapes)
    }
    fn forward(&mut self, x: Tensor, ctx: &mut Ctx) -> Result<Tensor, Error> {
        // Every branch but the last gets a copy of the input; the last takes it.
        let Some(((_, last), rest)) = self.branches.split_last_mut() else {
            return Self::joined(&[]).map(Tensor::zeros);
        };
        let mut outputs = rest
            .iter_mut()
            .map(|(_, b)| b.forward(x.clone(), ctx))
            .collect::<Result<Vec<_>, _>>()?;
        outputs.push(last.forward(x, ctx)?);
        let shapes: Vec<[usize; 4]> = outputs.iter().map(|t| t.shape()).collect();
        let shape = Self::joined(&shapes)?;
        let mut data = Vec::with_capacity(shape.iter().product());
        for b in 0..shape[0] {
            for out in &outputs {
                let len = out.sample_len();
                data.extend_from_slice(&out.data()[b * len..(b + 1) * len]);
            }
        }
        self.split = Some((shapes.iter().map(|s| s[1]).collect(), shape));
        Tensor::new(shape, data)
    }
    fn backward(&mut self, grad_y: Tensor) -> Result<Tensor, Error> {
        let parts = self.split_grad(&grad_y)?;
        let mut grad_x: Option<Tensor> = None;
        for ((_, branch), part) in self.branches.iter_mut().zip(parts) {
            let g = branch.backward(part)?;
            match &mut grad_x {
                None => grad_x = Some(g),
                Some(acc) => {
                    for (a, b) in acc.data_mut().iter_mut().zip(g.data()) {
                        *a += b;
                    }
                }
            }
        }
        grad_x.ok_or(Error::BackwardBeforeForward { layer: "Concat" })
    }
    fn backward_params(&mut self, grad_y: Tensor) -> Result<(), Error> {
        let parts = self.split_grad(&grad_y)?;
        for ((_, branch), part) in self.branches.iter_mut().zip(parts) {
            branch.backward_params(part)?;
        }
        Ok(())
    }
    fn visit_params<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Param)) {
        visit_children(&self.branches, prefix, f)
    }
    /// Each branch's rows, then the concatenation's.
    fn summarize(&self, name: &str, input: Field, rows: &mut Vec<Row>) -> Result<Field, Error> {
        let shape = self.output_shape(input.shape)?;
        summarize_branches(
            &self.branches,
            false,
            (name, "Concat", 0, shape),
            input,
            rows,
        )
    }
    fn visit_params_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(String, &'a mut Param)) {
        visit_children_mut(&mut self.branches, prefix, f)
    }
}
