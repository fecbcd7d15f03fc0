//! convnet: layers, networks and training on the `convnet-kernels` convolution kernels.
//!
//! ```
//! use convnet::layers::{Conv2d, Ctx, Flatten, Layer, LayerExt, Linear, Relu, Sequential};
//! use convnet::{Tensor, init, loss, rng::Rng};
//!
//! let mut net = Sequential::new()
//!     .with(Conv2d::builder(1, 4, [3, 3]).build()?)
//!     .with(Relu::new())
//!     .with(Flatten::new())
//!     .with(Linear::new(4 * 6 * 6, 3, true)?);
//! init::init_weights(&mut net, init::Init::KaimingNormal { gain: init::RELU_GAIN }, &mut Rng::new(0));
//! assert_eq!(net.named_params()[0].0, "0.weight");
//!
//! let x = Tensor::new([2, 1, 8, 8], vec![0.5; 128])?;
//! let logits = net.forward(x, &mut Ctx::train(Rng::new(1)))?;
//! let out = loss::softmax_cross_entropy(&logits, &[0, 2])?;
//! net.backward_params(out.grad)?; // parameter gradients, ready for an optimizer step
//! # Ok::<(), convnet::Error>(())
//! ```

pub mod checkpoint;
pub mod data;
mod error;
pub mod init;
pub mod layers;
pub mod loss;
pub mod models;
pub mod optim;
pub mod param;
pub mod rng;
pub mod summary;
mod tensor;
pub mod train;

pub use convnet_kernels as kernels;
pub use error::Error;
pub use tensor::{Tensor, numel};
