//! `ConvError`: every way a request can be refused, each with a name and a message.

use std::fmt;

/// Why a convolution request was refused.
///
/// The public API returns one of these before any kernel runs; no input a caller can
/// pass makes it panic, read or write out of bounds, or allocate without bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConvError {
    /// A size that must be positive is zero (`what` names it: `c_in`, `kh`, `stride`, ...).
    /// Only the batch may be zero; it yields an empty output.
    ZeroSize {
        /// The parameter that is zero.
        what: &'static str,
    },
    /// Input or output channels are not divisible by `groups`.
    GroupsMismatch {
        /// Input channels.
        c_in: usize,
        /// Output channels.
        c_out: usize,
        /// Groups.
        groups: usize,
    },
    /// The dilated kernel does not fit in the padded input along one axis.
    KernelTooLarge {
        /// `"height"` or `"width"`.
        axis: &'static str,
        /// Dilated kernel extent, `d*(k-1)+1`.
        extent: usize,
        /// Padded input size, `size + pad_before + pad_after`.
        padded: usize,
    },
    /// Transposed mode: `output_padding` must be smaller than `max(stride, dilation)`.
    OutputPaddingTooLarge {
        /// `"height"` or `"width"`.
        axis: &'static str,
        /// The requested output padding.
        output_padding: usize,
        /// `max(stride, dilation)` on that axis.
        limit: usize,
    },
    /// `output_padding` is only meaningful in transposed mode.
    OutputPaddingWithoutTransposed,
    /// Transposed mode: the padding crops the whole output away along one axis.
    EmptyOutput {
        /// `"height"` or `"width"`.
        axis: &'static str,
    },
    /// A size, element count or FLOP count overflows `usize`/`isize` (`what` names it).
    Overflow {
        /// The quantity that overflowed.
        what: &'static str,
    },
    /// A buffer has the wrong length.
    BufferLength {
        /// The buffer: `x`, `weight`, `bias`, `y`, `grad_y`, `grad_x`, `grad_weight`, `grad_bias`.
        buffer: &'static str,
        /// The length the geometry requires.
        expected: usize,
        /// The length passed.
        got: usize,
    },
    /// The requested algorithm or kernel does not implement this geometry or pass.
    Unsupported {
        /// The algorithm or kernel asked for.
        kernel: &'static str,
        /// What it cannot do.
        reason: &'static str,
    },
}

impl fmt::Display for ConvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvError::ZeroSize { what } => {
                write!(f, "{what} is zero (only the batch may be zero)")
            }
            ConvError::GroupsMismatch {
                c_in,
                c_out,
                groups,
            } => write!(
                f,
                "channels not divisible by groups: c_in {c_in}, c_out {c_out}, groups {groups}"
            ),
            ConvError::KernelTooLarge {
                axis,
                extent,
                padded,
            } => write!(
                f,
                "kernel extent {extent} is larger than the padded input {padded} along {axis}"
            ),
            ConvError::OutputPaddingTooLarge {
                axis,
                output_padding,
                limit,
            } => write!(
                f,
                "output_padding {output_padding} along {axis} must be smaller than max(stride, dilation) = {limit}"
            ),
            ConvError::OutputPaddingWithoutTransposed => {
                write!(f, "output_padding is only allowed in transposed mode")
            }
            ConvError::EmptyOutput { axis } => {
                write!(
                    f,
                    "transposed convolution output is empty along {axis}: padding too large"
                )
            }
            ConvError::Overflow { what } => write!(f, "{what} overflows the address space"),
            ConvError::BufferLength {
                buffer,
                expected,
                got,
            } => {
                write!(f, "buffer `{buffer}` has length {got}, expected {expected}")
            }
            ConvError::Unsupported { kernel, reason } => {
                write!(f, "{kernel} does not support {reason}")
            }
        }
    }
}

impl std::error::Error for ConvError {}
