//! Geometry: what the caller describes ([`ConvParams`]), its validation, and the
//! canonical forward-conv view every kernel works on ([`ConvGeom`]).
//!
//! A transposed convolution is the backward-data pass of the convolution with the same
//! kernel, stride, padding and dilation, so kernels only ever see a *forward* geometry:
//!
//! ```text
//!   mode        public pass      canonical pass on ConvGeom
//!   normal      forward          forward          (x -> y)
//!   normal      backward_data    backward_data    (grad_y -> grad_x)
//!   normal      backward_weight  backward_weight  (x, grad_y -> grad_weight)
//!   transposed  forward          backward_data    (x plays grad_y, y plays grad_x)
//!   transposed  backward_data    forward          (grad_y plays x, grad_x plays y)
//!   transposed  backward_weight  backward_weight  (grad_y plays x, x plays grad_y)
//! ```
//!
//! In transposed mode the canonical geometry has `c_in = c_out_t`, `c_out = c_in_t`,
//! `(h, w) = (oh_t, ow_t)` and `(oh, ow) = (h_t, w_t)`, and the transposed weight layout
//! `[c_in_t, c_out_t/g, kh, kw]` is exactly the conv layout `[c_out, c_in/g, kh, kw]`.
//! With `output_padding` the canonical output may be smaller than the conv's natural
//! output size; kernels therefore take `oh`, `ow` from the geometry, never recompute them,
//! and treat every input index outside `0..h`, `0..w` as zero padding.

use crate::error::ConvError;

/// How the input is padded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// `[top, bottom, left, right]`, asymmetric allowed.
    Explicit([usize; 4]),
    /// `[ph, pw]` on both sides of each axis (PyTorch's `padding=(ph, pw)`).
    Symmetric([usize; 2]),
    /// Output size `ceil(input / stride)`; for stride 1 this is PyTorch's `padding='same'`
    /// (the odd extra row or column goes to the bottom or right). Normal mode only.
    Same,
}

/// A convolution as the caller describes it: PyTorch's `conv2d` / `conv_transpose2d` arguments
/// plus the input shape. Validate it with [`ConvParams::validate`] or [`crate::Conv2d::new`].
///
/// In transposed mode `c_in` and `c_out` are the transposed conv's own input and output
/// channels, and the weight is `[c_in, c_out/groups, kh, kw]` (PyTorch's layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvParams {
    /// Batch size (may be zero).
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    /// `[pad_t, pad_b, pad_l, pad_r]`.
    pub padding: [usize; 4],
    /// `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Groups; depthwise when `groups == c_in`.
    pub groups: usize,
    /// Transposed convolution (PyTorch's `conv_transpose2d`).
    pub transposed: bool,
    /// `[oph, opw]`, transposed mode only; each must be `< max(stride, dilation)`.
    pub output_padding: [usize; 2],
}

impl ConvParams {
    /// A conv with PyTorch's defaults: stride 1, no padding, dilation 1, one group.
    pub fn new(
        n: usize,
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        kernel: [usize; 2],
    ) -> Self {
        ConvParams {
            n,
            c_in,
            h,
            w,
            c_out,
            kh: kernel[0],
            kw: kernel[1],
            stride: [1, 1],
            padding: [0; 4],
            dilation: [1, 1],
            groups: 1,
            transposed: false,
            output_padding: [0, 0],
        }
    }

    /// `[top, bottom, left, right]` padding giving output `ceil(input / stride)` along each
    /// axis (TensorFlow's `SAME`; PyTorch's `padding='same'` for stride 1).
    pub fn same_padding(
        h: usize,
        w: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<[usize; 4], ConvError> {
        let axis = |size: usize, k: usize, s: usize, d: usize| -> Result<[usize; 2], ConvError> {
            if s == 0 {
                return Err(ConvError::ZeroSize { what: "stride" });
            }
            let extent = dilated_extent(k, d)?;
            let out = size.div_ceil(s);
            let needed = out
                .saturating_sub(1)
                .checked_mul(s)
                .and_then(|v| v.checked_add(extent))
                .ok_or(ConvError::Overflow {
                    what: "same padding",
                })?;
            let total = needed.saturating_sub(size);
            Ok([total / 2, total - total / 2])
        };
        let [t, b] = axis(h, kernel[0], stride[0], dilation[0])?;
        let [l, r] = axis(w, kernel[1], stride[1], dilation[1])?;
        Ok([t, b, l, r])
    }

    /// Short, unique id used by benches and messages, e.g. `n1_c64_56x56_k64_3x3s2p1d2g4t`
    /// (XNNPACK's `3x3s2p1` notation; defaults are left out).
    pub fn id(&self) -> String {
        let mut id = format!(
            "n{}_c{}_{}x{}_k{}_{}x{}",
            self.n, self.c_in, self.h, self.w, self.c_out, self.kh, self.kw
        );
        let [sh, sw] = self.stride;
        if sh != 1 || sw != 1 {
            id += &if sh == sw {
                format!("s{sh}")
            } else {
                format!("s{sh}x{sw}")
            };
        }
        let [t, b, l, r] = self.padding;
        if [t, b, l, r] != [0; 4] {
            id += &if t == b && b == l && l == r {
                format!("p{t}")
            } else {
                format!("p{t}_{b}_{l}_{r}")
            };
        }
        let [dh, dw] = self.dilation;
        if dh != 1 || dw != 1 {
            id += &if dh == dw {
                format!("d{dh}")
            } else {
                format!("d{dh}x{dw}")
            };
        }
        if self.groups != 1 {
            id += &format!("g{}", self.groups);
        }
        if self.transposed {
            id += "t";
            let [oph, opw] = self.output_padding;
            if oph != 0 || opw != 0 {
                id += &format!("op{oph}x{opw}");
            }
        }
        id
    }

    /// Checks every size (with checked arithmetic) and derives the canonical geometry.
    pub fn validate(&self) -> Result<ConvGeom, ConvError> {
        let p = self;
        for (what, v) in [
            ("c_in", p.c_in),
            ("c_out", p.c_out),
            ("h", p.h),
            ("w", p.w),
            ("kh", p.kh),
            ("kw", p.kw),
            ("stride", p.stride[0]),
            ("stride", p.stride[1]),
            ("dilation", p.dilation[0]),
            ("dilation", p.dilation[1]),
            ("groups", p.groups),
        ] {
            if v == 0 {
                return Err(ConvError::ZeroSize { what });
            }
        }
        if !p.c_in.is_multiple_of(p.groups) || !p.c_out.is_multiple_of(p.groups) {
            return Err(ConvError::GroupsMismatch {
                c_in: p.c_in,
                c_out: p.c_out,
                groups: p.groups,
            });
        }
        let [sh, sw] = p.stride;
        let [dh, dw] = p.dilation;
        let [pad_t, pad_b, pad_l, pad_r] = p.padding;
        let (geom_in, geom_out, c_in, c_out) = if p.transposed {
            let out_h = transposed_out(
                "height",
                p.h,
                p.kh,
                sh,
                dh,
                pad_t,
                pad_b,
                p.output_padding[0],
            )?;
            let out_w = transposed_out(
                "width",
                p.w,
                p.kw,
                sw,
                dw,
                pad_l,
                pad_r,
                p.output_padding[1],
            )?;
            ([out_h, out_w], [p.h, p.w], p.c_out, p.c_in)
        } else {
            if p.output_padding != [0, 0] {
                return Err(ConvError::OutputPaddingWithoutTransposed);
            }
            let out_h = forward_out("height", p.h, p.kh, sh, dh, pad_t, pad_b)?;
            let out_w = forward_out("width", p.w, p.kw, sw, dw, pad_l, pad_r)?;
            ([p.h, p.w], [out_h, out_w], p.c_in, p.c_out)
        };
        // Per image first, so an empty batch cannot hide an image whose size overflows;
        // the padded image too, which kernels materialise.
        elements(&[c_in, geom_in[0], geom_in[1]], "input size")?;
        elements(&[c_out, geom_out[0], geom_out[1]], "output size")?;
        let padded = |size: usize, a: usize, b: usize| size.checked_add(a)?.checked_add(b);
        let (ph, pw) = (
            padded(geom_in[0], pad_t, pad_b),
            padded(geom_in[1], pad_l, pad_r),
        );
        let (ph, pw) = ph.zip(pw).ok_or(ConvError::Overflow {
            what: "padded input size",
        })?;
        elements(&[c_in, ph, pw], "padded input size")?;
        let per_image_macs = [c_out, geom_out[0], geom_out[1], c_in / p.groups, p.kh, p.kw]
            .iter()
            .try_fold(1u64, |acc, &v| acc.checked_mul(v as u64));
        per_image_macs.ok_or(ConvError::Overflow { what: "FLOP count" })?;
        let x_len = elements(&[p.n, c_in, geom_in[0], geom_in[1]], "input size")?;
        let y_len = elements(&[p.n, c_out, geom_out[0], geom_out[1]], "output size")?;
        let w_len = elements(&[c_out, c_in / p.groups, p.kh, p.kw], "weight size")?;
        let macs = [
            p.n,
            c_out,
            geom_out[0],
            geom_out[1],
            c_in / p.groups,
            p.kh,
            p.kw,
        ]
        .iter()
        .try_fold(1u64, |acc, &v| acc.checked_mul(v as u64));
        let flops = macs
            .and_then(|m| m.checked_mul(2))
            .ok_or(ConvError::Overflow { what: "FLOP count" })?;
        Ok(ConvGeom {
            n: p.n,
            c_in,
            c_out,
            g: p.groups,
            h: geom_in[0],
            w: geom_in[1],
            oh: geom_out[0],
            ow: geom_out[1],
            kh: p.kh,
            kw: p.kw,
            sh,
            sw,
            dh,
            dw,
            pad_t,
            pad_l,
            x_len,
            y_len,
            w_len,
            flops,
        })
    }

    /// Output shape `[n, c_out, oh, ow]` of the public forward pass.
    pub fn output_shape(&self) -> Result<[usize; 4], ConvError> {
        let g = self.validate()?;
        Ok(if self.transposed {
            [g.n, g.c_in, g.h, g.w]
        } else {
            [g.n, g.c_out, g.oh, g.ow]
        })
    }

    /// Weight shape: `[c_out, c_in/g, kh, kw]`, or `[c_in, c_out/g, kh, kw]` when transposed.
    pub fn weight_shape(&self) -> [usize; 4] {
        let g = self.groups.max(1);
        if self.transposed {
            [self.c_in, self.c_out / g, self.kh, self.kw]
        } else {
            [self.c_out, self.c_in / g, self.kh, self.kw]
        }
    }

    /// Effective (dilated) kernel extent `[dh*(kh-1)+1, dw*(kw-1)+1]`: the receptive field of
    /// one output pixel on this layer's input.
    pub fn receptive_field(&self) -> Result<[usize; 2], ConvError> {
        Ok([
            dilated_extent(self.kh, self.dilation[0])?,
            dilated_extent(self.kw, self.dilation[1])?,
        ])
    }
}

fn dilated_extent(k: usize, d: usize) -> Result<usize, ConvError> {
    k.checked_sub(1)
        .ok_or(ConvError::ZeroSize { what: "kernel" })?
        .checked_mul(d)
        .and_then(|v| v.checked_add(1))
        .ok_or(ConvError::Overflow {
            what: "dilated kernel extent",
        })
}

/// `P = (H + top + bottom - d*(k-1) - 1) / s + 1`.
fn forward_out(
    axis: &'static str,
    size: usize,
    k: usize,
    s: usize,
    d: usize,
    before: usize,
    after: usize,
) -> Result<usize, ConvError> {
    let extent = dilated_extent(k, d)?;
    let padded = size
        .checked_add(before)
        .and_then(|v| v.checked_add(after))
        .ok_or(ConvError::Overflow {
            what: "padded input size",
        })?;
    if extent > padded {
        return Err(ConvError::KernelTooLarge {
            axis,
            extent,
            padded,
        });
    }
    Ok((padded - extent) / s + 1)
}

/// `H_out = (H-1)*s - top - bottom + d*(k-1) + output_padding + 1`.
#[allow(clippy::too_many_arguments)]
fn transposed_out(
    axis: &'static str,
    size: usize,
    k: usize,
    s: usize,
    d: usize,
    before: usize,
    after: usize,
    output_padding: usize,
) -> Result<usize, ConvError> {
    let limit = s.max(d);
    if output_padding >= limit {
        return Err(ConvError::OutputPaddingTooLarge {
            axis,
            output_padding,
            limit,
        });
    }
    let full = (size - 1)
        .checked_mul(s)
        .and_then(|v| v.checked_add(dilated_extent(k, d).ok()?))
        .and_then(|v| v.checked_add(output_padding))
        .ok_or(ConvError::Overflow {
            what: "transposed output size",
        })?;
    let crop = before
        .checked_add(after)
        .ok_or(ConvError::Overflow { what: "padding" })?;
    if crop >= full {
        return Err(ConvError::EmptyOutput { axis });
    }
    Ok(full - crop)
}

/// Product of `dims`, checked so that the byte size of an f32 buffer fits in `isize`.
fn elements(dims: &[usize], what: &'static str) -> Result<usize, ConvError> {
    let len = dims
        .iter()
        .try_fold(1usize, |acc, &v| acc.checked_mul(v))
        .ok_or(ConvError::Overflow { what })?;
    if len > isize::MAX as usize / std::mem::size_of::<f64>() {
        return Err(ConvError::Overflow { what });
    }
    Ok(len)
}

/// The canonical forward-conv geometry every kernel runs on (see the module docs), built only
/// by [`ConvParams::validate`], so its invariants hold:
///
/// - every size but `n` is positive; `c_in`, `c_out` are multiples of `g`;
/// - `oh <= (h + pad_t + pad_b - dh*(kh-1) - 1)/sh + 1` for some `pad_b`, so any input index
///   a kernel computes outside `0..h` is padding (same for the width);
/// - the lengths `x_len = n*c_in*h*w`, `y_len = n*c_out*oh*ow`, `w_len = c_out*(c_in/g)*kh*kw`
///   and every index below them fit in `isize` with room for an f64 byte size.
///
/// Layouts: `x` is `[n, c_in, h, w]`, `weight` is `[c_out, c_in/g, kh, kw]`, `y` is
/// `[n, c_out, oh, ow]`, all dense row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeom {
    pub(crate) n: usize,
    pub(crate) c_in: usize,
    pub(crate) c_out: usize,
    pub(crate) g: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) sh: usize,
    pub(crate) sw: usize,
    pub(crate) dh: usize,
    pub(crate) dw: usize,
    pub(crate) pad_t: usize,
    pub(crate) pad_l: usize,
    pub(crate) x_len: usize,
    pub(crate) y_len: usize,
    pub(crate) w_len: usize,
    pub(crate) flops: u64,
}

impl ConvGeom {
    /// Batch.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Input channels of the canonical conv.
    pub fn c_in(&self) -> usize {
        self.c_in
    }
    /// Output channels of the canonical conv.
    pub fn c_out(&self) -> usize {
        self.c_out
    }
    /// Groups.
    pub fn groups(&self) -> usize {
        self.g
    }
    /// Input channels per group.
    pub fn c_in_g(&self) -> usize {
        self.c_in / self.g
    }
    /// Output channels per group.
    pub fn c_out_g(&self) -> usize {
        self.c_out / self.g
    }
    /// Input `[h, w]`.
    pub fn input_hw(&self) -> [usize; 2] {
        [self.h, self.w]
    }
    /// Output `[oh, ow]`.
    pub fn output_hw(&self) -> [usize; 2] {
        [self.oh, self.ow]
    }
    /// Kernel `[kh, kw]`.
    pub fn kernel_hw(&self) -> [usize; 2] {
        [self.kh, self.kw]
    }
    /// Stride `[sh, sw]`.
    pub fn stride(&self) -> [usize; 2] {
        [self.sh, self.sw]
    }
    /// Dilation `[dh, dw]`.
    pub fn dilation(&self) -> [usize; 2] {
        [self.dh, self.dw]
    }
    /// Leading padding `[pad_t, pad_l]`; trailing padding is implied by `oh`, `ow`.
    pub fn pad_tl(&self) -> [usize; 2] {
        [self.pad_t, self.pad_l]
    }
    /// `n*c_in*h*w`.
    pub fn x_len(&self) -> usize {
        self.x_len
    }
    /// `n*c_out*oh*ow`.
    pub fn y_len(&self) -> usize {
        self.y_len
    }
    /// `c_out*(c_in/g)*kh*kw`.
    pub fn w_len(&self) -> usize {
        self.w_len
    }
    /// `2*n*c_out*oh*ow*(c_in/g)*kh*kw`, the FLOP count of every pass.
    pub fn flops(&self) -> u64 {
        self.flops
    }
    /// Multiply-accumulates of one pass, `flops / 2`.
    pub fn macs(&self) -> u64 {
        self.flops / 2
    }
    /// Whether each group has one input and one output channel (a depthwise conv).
    pub fn is_depthwise(&self) -> bool {
        self.c_in / self.g == 1 && self.c_out / self.g == 1
    }
    /// Whether this is a 1x1, stride-1, unpadded conv (a plain GEMM per image and group).
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.pad_t == 0
            && self.pad_l == 0
            && self.oh == self.h
            && self.ow == self.w
    }

    /// Whether the window covers the whole unpadded input (one output pixel, ungrouped,
    /// undilated): LeNet-5's C5, or a transposed conv from 1x1 (DCGAN's first layer). Such a
    /// layer is a dense (fully connected) layer over the batch, `y[n][o] = sum_j w[o][j]
    /// x[n][j]` with `j` running over the `c_in * h * w` input floats of an image.
    pub fn is_dense(&self) -> bool {
        self.g == 1
            && self.kh == self.h
            && self.kw == self.w
            && self.dh == 1
            && self.dw == 1
            && self.pad_t == 0
            && self.pad_l == 0
            && self.oh == 1
            && self.ow == 1
    }

    /// Panics unless the slices fit a forward pass. Kernels call this first; the public API
    /// has already returned an `Err` for any mismatch, so it only fires on direct misuse of a
    /// kernel, and it turns that misuse into a panic rather than an out-of-bounds access.
    pub fn assert_forward(&self, x: &[f32], weight: &[f32], bias: Option<&[f32]>, y: &[f32]) {
        assert_eq!(x.len(), self.x_len, "x length");
        assert_eq!(weight.len(), self.w_len, "weight length");
        assert_eq!(y.len(), self.y_len, "y length");
        if let Some(b) = bias {
            assert_eq!(b.len(), self.c_out, "bias length");
        }
    }

    /// Panics unless the slices fit a backward-data pass (see [`ConvGeom::assert_forward`]).
    pub fn assert_backward_data(
        &self,
        grad_y: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        grad_x: &[f32],
    ) {
        assert_eq!(grad_y.len(), self.y_len, "grad_y length");
        assert_eq!(weight.len(), self.w_len, "weight length");
        assert_eq!(grad_x.len(), self.x_len, "grad_x length");
        if let Some(b) = bias {
            assert_eq!(b.len(), self.c_in, "bias length");
        }
    }

    /// Panics unless the slices fit a backward-weight pass (see [`ConvGeom::assert_forward`]).
    pub fn assert_backward_weight(&self, x: &[f32], grad_y: &[f32], grad_weight: &[f32]) {
        assert_eq!(x.len(), self.x_len, "x length");
        assert_eq!(grad_y.len(), self.y_len, "grad_y length");
        assert_eq!(grad_weight.len(), self.w_len, "grad_weight length");
    }
}
