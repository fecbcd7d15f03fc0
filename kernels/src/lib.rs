//! # convnet-kernels
//!
//! 2-D convolution on plain `f32` slices: forward, backward-data and backward-weight (plus
//! the bias gradient), in normal and transposed mode, with stride, asymmetric padding,
//! dilation and groups, exactly as PyTorch's `conv2d` / `conv_transpose2d` define them.
//! Every kernel is registered in one list ([`registry::KERNELS`]) and checked against the
//! naive f64 [`reference`] under the accuracy contract of [`accuracy`].
//!
//! ```
//! use convnet_kernels::{Algorithm, Conv2d, Padding};
//!
//! // LeNet-5's C1: a batch of 2 grey 32x32 images, 6 filters of 5x5.
//! let conv = Conv2d::builder(2, 1, 32, 32, 6, [5, 5]).build()?;
//! assert_eq!(conv.output_shape(), [2, 6, 28, 28]);
//! let x = vec![0.5f32; conv.input_len()];
//! let weight = vec![0.1f32; conv.weight_len()];
//! let bias = vec![0.0f32; conv.bias_len()];
//! let mut y = vec![0.0f32; conv.output_len()];
//! conv.forward(Algorithm::Auto, &x, &weight, Some(&bias), &mut y)?;
//! assert!((y[0] - 25.0 * 0.05).abs() < 1e-5);
//!
//! // Gradients for training.
//! let grad_y = vec![1.0f32; conv.output_len()];
//! let mut grad_x = vec![0.0f32; conv.input_len()];
//! let mut grad_w = vec![0.0f32; conv.weight_len()];
//! let mut grad_b = vec![0.0f32; conv.bias_len()];
//! conv.backward_data(Algorithm::Auto, &grad_y, &weight, &mut grad_x)?;
//! conv.backward_weight(Algorithm::Auto, &x, &grad_y, &mut grad_w, Some(&mut grad_b))?;
//! assert_eq!(grad_b[0], 2.0 * 28.0 * 28.0);
//!
//! // Bad input is a named error, never a panic.
//! let err = Conv2d::builder(1, 3, 4, 4, 8, [5, 5]).padding(Padding::Explicit([0; 4])).build();
//! assert!(matches!(err, Err(convnet_kernels::ConvError::KernelTooLarge { .. })));
//! # Ok::<(), convnet_kernels::ConvError>(())
//! ```
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod accuracy;
pub mod activation;
pub mod auto;
pub mod bias;
mod conv;
mod direct;
mod error;
pub mod gemm;
pub mod im2col;
pub mod isa;
pub mod parallel;
pub mod params;
pub mod peak;
pub mod pool;
pub mod reference;
pub mod registry;
mod simd;
pub mod storage;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod winograd;

pub use conv::{Algorithm, Conv2d, Conv2dBuilder, ConvPlan, Pass, WinogradTile};
pub use error::ConvError;
pub use isa::Isa;
pub use params::{ConvGeom, ConvParams, Padding};
pub use registry::{ConvKernel, KERNELS};
pub use storage::Element;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
