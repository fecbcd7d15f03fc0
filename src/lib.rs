//! convnet: layers, networks and training on the `convnet-kernels` convolution kernels.

pub use convnet_kernels as kernels;
