//! DenseNet (Huang, Liu, van der Maaten, Weinberger 2017, "Densely connected convolutional
//! networks").
//!
//! In a dense block each layer's input is the concatenation of the block's input and the
//! outputs of every layer before it, so a block of `L` layers has `L(L+1)/2` connections.
//! Each layer here is the DenseNet-B bottleneck, and it adds `growth` channels:
//!
//! ```text
//! dense layer   norm1 BN, relu1, conv1 1x1 -> bn_size*growth, norm2 BN, relu2, conv2 3x3 -> growth
//!               output: concat(input, conv2 output)       (a Concat of the identity and the layer)
//! transition    norm BN, relu, conv 1x1 -> floor(c/2) (compression 0.5, DenseNet-C), pool 2x2 avg
//! ```
//!
//! `densenet121` is torchvision's definition (growth 32, blocks 6-12-24-16, 64 initial
//! features, bottleneck width 4*growth; names `features.denseblock1.denselayer1.norm1.weight`,
//! `features.transition1.conv.weight`, ...; 7,978,856 parameters): a 7x7 stride-2 stem with
//! a 3x3 stride-2 max pool, the four blocks with transitions between them, `norm5`, ReLU,
//! global average pooling and `classifier`.
//!
//! `densenet_bc` is the paper's smallest CIFAR DenseNet-BC (section 3, "Implementation
//! details"): depth 40, so `(40 - 4) / 6 = 6` bottleneck layers in each of three dense
//! blocks, growth 12, compression 0.5, a 3x3 stem of `2*growth` channels; then BN, ReLU,
//! global average pooling and fc. One departure, for time: the stem convolution has stride
//! 2, so the blocks run on 16x16, 8x8 and 4x4 instead of 32x32, 16x16 and 8x8. That cuts
//! the FLOPs by 4 (to 37 M per image, less than ResNet-20's 82 M) and the memory traffic
//! of the concatenations with them; at full resolution one Fashion-MNIST epoch took an
//! hour on one core.

use super::{
    IMAGENET_CLASSES, IMAGENET_INPUT, KAIMING, ModelSpec, SMALL_CLASSES, SMALL_INPUT,
    fashion_defaults, imagenet_defaults, pool,
};
use crate::Error;
use crate::layers::{
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Concat, Conv2d, Flatten, Linear, MaxPool2d, Padding,
    Relu, Sequential,
};
use convnet_kernels::pool::PoolParams;

/// A `k`x`k` convolution without bias, padding `k/2`.
fn conv(c_in: usize, c_out: usize, k: usize, stride: usize) -> Result<Conv2d, Error> {
    Conv2d::builder(c_in, c_out, [k, k])
        .stride([stride; 2])
        .padding(Padding::Symmetric([k / 2; 2]))
        .bias(false)
        .build()
}

/// The first layers before the dense blocks.
#[derive(Clone, Copy, Debug)]
enum Stem {
    /// ImageNet: `conv0` 7x7 stride 2, `norm0`, `relu0`, `pool0` 3x3 stride 2.
    ImageNet,
    /// CIFAR: `conv0` 3x3 with this stride.
    Cifar {
        /// The convolution's stride.
        stride: usize,
    },
}

/// A DenseNet's hyperparameters (torchvision's `DenseNet` arguments).
struct Config {
    /// Channels each dense layer adds.
    growth: usize,
    /// Dense layers per block.
    blocks: &'static [usize],
    /// Channels of the stem.
    init_features: usize,
    /// Width of the bottleneck 1x1 convolution, in units of `growth`.
    bn_size: usize,
    stem: Stem,
    /// Channels of the input image.
    in_channels: usize,
    classes: usize,
}

/// One dense layer on `c_in` channels: the concatenation of its input and its `growth` new
/// maps, its parameters under `denselayerN`.
fn dense_layer(cfg: &Config, c_in: usize, index: usize) -> Result<Concat, Error> {
    let width = cfg.bn_size * cfg.growth;
    let layer = Sequential::new()
        .with_named("norm1", BatchNorm2d::new(c_in)?)
        .with_named("relu1", Relu::new())
        .with_named("conv1", conv(c_in, width, 1, 1)?)
        .with_named("norm2", BatchNorm2d::new(width)?)
        .with_named("relu2", Relu::new())
        .with_named("conv2", conv(width, cfg.growth, 3, 1)?);
    Ok(Concat::new()
        .with_named("input", Sequential::new())
        .with_named(format!("denselayer{index}"), layer))
}

/// A transition: BN, ReLU, 1x1 convolution from `c_in` to `c_out`, 2x2 average pooling.
fn transition(c_in: usize, c_out: usize) -> Result<Sequential, Error> {
    Ok(Sequential::new()
        .with_named("norm", BatchNorm2d::new(c_in)?)
        .with_named("relu", Relu::new())
        .with_named("conv", conv(c_in, c_out, 1, 1)?)
        .with_named("pool", AvgPool2d::new(PoolParams::new([2, 2]), true)))
}

fn build(cfg: &Config) -> Result<Sequential, Error> {
    let (c_in, c0) = (cfg.in_channels, cfg.init_features);
    let mut features = Sequential::new();
    features = match cfg.stem {
        Stem::ImageNet => features
            .with_named("conv0", conv(c_in, c0, 7, 2)?)
            .with_named("norm0", BatchNorm2d::new(c0)?)
            .with_named("relu0", Relu::new())
            .with_named("pool0", MaxPool2d::new(pool(3, 2, 1, false))),
        Stem::Cifar { stride } => features.with_named("conv0", conv(c_in, c0, 3, stride)?),
    };
    let mut c = cfg.init_features;
    for (i, &layers) in cfg.blocks.iter().enumerate() {
        // The layers sit directly under `denseblockN`, each a Concat named by its layer.
        let mut block = Sequential::new();
        for l in 0..layers {
            block = block.with_named("", dense_layer(cfg, c, l + 1)?);
            c += cfg.growth;
        }
        features = features.with_named(format!("denseblock{}", i + 1), block);
        if i + 1 < cfg.blocks.len() {
            features = features.with_named(format!("transition{}", i + 1), transition(c, c / 2)?);
            c /= 2;
        }
    }
    features = features.with_named(
        format!("norm{}", cfg.blocks.len() + 1),
        BatchNorm2d::new(c)?,
    );
    Ok(Sequential::new()
        .with_named("features", features)
        .with_named("relu", Relu::new())
        .with_named("avgpool", AdaptiveAvgPool2d::global())
        .with_named("flatten", Flatten::new())
        .with_named("classifier", Linear::new(c, cfg.classes, true)?))
}

fn build_densenet121() -> Result<Sequential, Error> {
    build(&Config {
        growth: 32,
        blocks: &[6, 12, 24, 16],
        init_features: 64,
        bn_size: 4,
        stem: Stem::ImageNet,
        in_channels: IMAGENET_INPUT[0],
        classes: IMAGENET_CLASSES,
    })
}

fn build_densenet_bc() -> Result<Sequential, Error> {
    build(&Config {
        growth: 12,
        blocks: &[6, 6, 6],
        init_features: 24,
        bn_size: 4,
        stem: Stem::Cifar { stride: 2 },
        in_channels: SMALL_INPUT[0],
        classes: SMALL_CLASSES,
    })
}

/// DenseNet-121, torchvision's definition.
pub const DENSENET121: ModelSpec = ModelSpec {
    name: "densenet121",
    description: "DenseNet-121 (Huang et al. 2017): growth 32, dense blocks 6-12-24-16, BC transitions",
    input: IMAGENET_INPUT,
    classes: IMAGENET_CLASSES,
    build: build_densenet121,
    init: KAIMING,
    defaults: imagenet_defaults(0.1, 1e-4),
};

/// The CIFAR DenseNet-BC on Fashion-MNIST.
pub const DENSENET_BC: ModelSpec = ModelSpec {
    name: "densenet_bc",
    description: "DenseNet-BC for 32x32 (Huang et al. 2017): depth 40, growth 12, 3 dense blocks, stride-2 stem",
    input: SMALL_INPUT,
    classes: SMALL_CLASSES,
    build: build_densenet_bc,
    init: KAIMING,
    defaults: fashion_defaults(6, 0.1),
};
