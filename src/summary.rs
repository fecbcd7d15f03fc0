//! Model summaries (`convnet summary`): per layer the output shape, parameter count, FLOPs
//! and receptive field, walking the layer tree in forward order.
//!
//! ```text
//! FLOPs of one forward pass (multiply and add count 2, as DESIGN.md counts convolutions):
//!   Conv2d, ConvTranspose2d   2 * n * c_out * oh * ow * (c_in/g) * kh * kw   (no bias term;
//!                             a transposed conv through its equivalent forward conv)
//!   Linear                    2 * n * in * out
//!   max/avg pooling           kh * kw per output element (adaptive: one per input element)
//!   BatchNorm2d               2 per element (scale and shift, statistics folded in)
//!   LocalResponseNorm         2 * size + 3 per element
//!   Residual                  1 per output element (the addition)
//!   Concat, Flatten           0 (copies and reshapes)
//!   any other layer           1 per output element (activations, dropout)
//!
//! receptive field, per axis, from the input (r = 1, j = 1):
//!   r_out = r_in + (extent - 1) * j_in,   j_out = j_in * stride
//!   extent = dh * (kh - 1) + 1 for a window of kh taps at dilation dh; parallel branches
//!   (Concat, Residual) take the maximum over their branches.
//! ```
//!
//! A layer describes its window with [`Layer::window`] and its cost with [`Layer::flops`];
//! containers recurse through [`Layer::summarize`]. The receptive field is not clipped to
//! the input: it is the span of input pixels an output could depend on, padding included
//! (ResNet-50's last block sees 427 pixels of a 224 image).

use convnet_kernels::ConvParams;

use crate::layers::{Layer, LayerExt};
use crate::{Error, numel};

/// How each output of a layer sees its input, per axis `[h, w]`: one output depends on
/// `extent` consecutive input pixels, and neighbouring outputs are `stride` input pixels
/// apart (fractional for a transposed convolution).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Input pixels one output spans.
    pub extent: [f64; 2],
    /// Input pixels between neighbouring outputs.
    pub stride: [f64; 2],
}

impl Window {
    /// A window of `kernel` taps, `dilation` apart, moved by `stride`.
    pub fn conv(kernel: [usize; 2], stride: [usize; 2], dilation: [usize; 2]) -> Window {
        let extent = |a: usize| (dilation[a] * (kernel[a].max(1) - 1) + 1) as f64;
        Window {
            extent: [extent(0), extent(1)],
            stride: [stride[0] as f64, stride[1] as f64],
        }
    }

    /// The whole `h x w` plane (a flatten, a fully connected layer, global pooling).
    pub fn whole([h, w]: [usize; 2]) -> Window {
        let (h, w) = (h.max(1) as f64, w.max(1) as f64);
        Window {
            extent: [h, w],
            stride: [h, w],
        }
    }
}

/// The shape and receptive field of an activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Field {
    /// `[n, c, h, w]`.
    pub shape: [usize; 4],
    /// Input pixels one element depends on, per axis.
    pub receptive: [f64; 2],
    /// Input pixels between neighbouring elements, per axis.
    pub jump: [f64; 2],
}

impl Field {
    /// The network input: every pixel sees itself.
    pub fn input(shape: [usize; 4]) -> Field {
        Field {
            shape,
            receptive: [1.0; 2],
            jump: [1.0; 2],
        }
    }

    /// The field after a layer with this window (`None`: point-wise) and output shape.
    pub fn through(&self, window: Option<Window>, shape: [usize; 4]) -> Field {
        let Some(w) = window else {
            return Field { shape, ..*self };
        };
        Field {
            shape,
            receptive: std::array::from_fn(|a| {
                self.receptive[a] + (w.extent[a] - 1.0) * self.jump[a]
            }),
            jump: std::array::from_fn(|a| self.jump[a] * w.stride[a]),
        }
    }

    /// The field of parallel branches joined into `shape`: the largest of each.
    pub fn join(fields: &[Field], shape: [usize; 4]) -> Field {
        let max = |f: fn(&Field) -> [f64; 2]| {
            fields
                .iter()
                .map(f)
                .fold([0.0f64; 2], |m, v| [m[0].max(v[0]), m[1].max(v[1])])
        };
        Field {
            shape,
            receptive: max(|f| f.receptive),
            jump: max(|f| f.jump),
        }
    }
}

/// One line of a summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The layer's name in the model (its parameters' prefix), e.g. `layer1.0.conv1`.
    pub name: String,
    /// The layer type.
    pub kind: &'static str,
    /// Output shape `[n, c, h, w]`.
    pub output: [usize; 4],
    /// Trained parameters of this layer itself (a container's row counts none).
    pub params: usize,
    /// FLOPs of its forward pass.
    pub flops: u64,
    /// Receptive field of an output element, input pixels `[h, w]`.
    pub receptive: [f64; 2],
    /// Input pixels between neighbouring output elements `[h, w]`.
    pub jump: [f64; 2],
    /// The convolution geometry of a convolution layer (what `convnet bench` times).
    pub conv: Option<ConvParams>,
}

/// A whole model's summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// One row per layer, in forward order.
    pub rows: Vec<Row>,
    /// Sum of the rows' parameters (the model's trained parameter count).
    pub total_params: usize,
    /// Sum of the rows' FLOPs.
    pub total_flops: u64,
}

/// The summary of `model` for an input of shape `input`.
pub fn summarize<L: Layer + ?Sized>(model: &L, input: [usize; 4]) -> Result<Summary, Error> {
    let mut rows = Vec::new();
    model.summarize("", Field::input(input), &mut rows)?;
    Ok(Summary {
        total_params: rows.iter().map(|r| r.params).sum(),
        total_flops: rows.iter().map(|r| r.flops).sum(),
        rows,
    })
}

/// The row of a layer without children; what [`Layer::summarize`] does by default.
pub fn leaf<L: Layer + ?Sized>(
    layer: &L,
    name: &str,
    input: Field,
    rows: &mut Vec<Row>,
) -> Result<Field, Error> {
    let shape = layer.output_shape(input.shape)?;
    let out = input.through(layer.window(input.shape), shape);
    rows.push(Row {
        name: name.to_string(),
        kind: layer.kind(),
        output: shape,
        params: layer.param_count(),
        flops: layer.flops(input.shape)?,
        receptive: out.receptive,
        jump: out.jump,
        conv: layer.conv_params(input.shape),
    });
    Ok(out)
}

/// Elements of a shape, as a FLOP count.
pub fn elements(shape: [usize; 4]) -> u64 {
    numel(shape).unwrap_or(usize::MAX) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Conv2d, MaxPool2d, Sequential};
    use convnet_kernels::pool::PoolParams;

    #[test]
    fn receptive_field_of_stacked_windows() {
        // 3x3 conv (r 3), 2x2/2 pool (r 4, j 2), 3x3 dilation-2 conv (r 4 + 4*2 = 12).
        let net = Sequential::new()
            .with(Conv2d::builder(1, 2, [3, 3]).build().unwrap())
            .with(MaxPool2d::new(PoolParams::new([2, 2])))
            .with(
                Conv2d::builder(2, 2, [3, 3])
                    .dilation([2, 2])
                    .build()
                    .unwrap(),
            );
        let s = summarize(&net, [1, 1, 20, 20]).unwrap();
        let r: Vec<[f64; 2]> = s.rows.iter().map(|r| r.receptive).collect();
        assert_eq!(r, vec![[3.0; 2], [4.0; 2], [12.0; 2]]);
        assert_eq!(s.rows[2].jump, [2.0; 2]);
        assert_eq!(s.rows[0].flops, 2 * 2 * 18 * 18 * 9);
        assert_eq!(s.total_params, 2 * 9 + 2 + 2 * 2 * 9 + 2);
        // 20 -> 18 (conv) -> 9 (pool) -> 5 (dilated conv spans 5 pixels).
        assert_eq!(s.rows[2].output, [1, 2, 5, 5]);
    }
}
