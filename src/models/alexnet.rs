//! AlexNet (Krizhevsky, Sutskever, Hinton 2012, "ImageNet classification with deep
//! convolutional neural networks").
//!
//! `alexnet` is torchvision's definition (the single-tower variant of Krizhevsky 2014, "One
//! weird trick"), so its parameter names, count (61,100,840) and outputs equal PyTorch's:
//!
//! ```text
//! input    3@224x224
//! conv1   64@55x55   11x11 stride 4, pad 2, ReLU         features.0
//! pool1   64@27x27   3x3 stride 2 (overlapping)           features.2
//! conv2  192@27x27   5x5 pad 2, ReLU                      features.3
//! pool2  192@13x13   3x3 stride 2                         features.5
//! conv3  384@13x13   3x3 pad 1, ReLU                      features.6
//! conv4  256@13x13   3x3 pad 1, ReLU                      features.8
//! conv5  256@13x13   3x3 pad 1, ReLU                      features.10
//! pool5  256@6x6     3x3 stride 2                         features.12
//!                    adaptive average pool to 6x6         avgpool
//! fc6    4096        dropout 0.5, ReLU                    classifier.1
//! fc7    4096        dropout 0.5, ReLU                    classifier.4
//! fc8    1000                                             classifier.6
//! ```
//!
//! Local response normalization: the paper normalizes after the ReLU of conv1 and conv2
//! (section 3.3: size 5, k 2, alpha 1e-4, beta 0.75). torchvision drops it, and so does
//! `alexnet`, so that PyTorch's weights reproduce PyTorch's outputs (LRN has no parameters;
//! the count is the same either way). `alexnet_small` keeps it, where the paper has it.
//!
//! `alexnet_small` is the same design for 1@32x32 Fashion-MNIST: five convolutions (the
//! first two 5x5, the rest 3x3), ReLU, LRN after the first two, three overlapping 3x3 stride-2
//! max pools (32 -> 15 -> 7 -> 3), and the three-layer classifier with dropout 0.5, at about
//! a tenth of the channels.

use super::{
    IMAGENET_CLASSES, IMAGENET_INPUT, KAIMING, ModelSpec, SMALL_CLASSES, SMALL_INPUT,
    fashion_defaults, imagenet_defaults, pool,
};
use crate::Error;
use crate::layers::{
    AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2d, Padding,
    Relu, Sequential,
};

/// Channels and kernel of each convolution, and what follows its ReLU.
struct ConvStage {
    c_out: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    lrn: bool,
    pool: bool,
}

/// The paper's LRN: size 5, alpha 1e-4, beta 0.75, k 2.
fn lrn() -> Result<LocalResponseNorm, Error> {
    LocalResponseNorm::new(5, 1e-4, 0.75, 2.0)
}

/// `features`: the five convolutions with their ReLUs, LRNs and overlapping pools, named
/// by position as torchvision's `nn.Sequential` names them.
fn features(c_in: usize, stages: &[ConvStage]) -> Result<Sequential, Error> {
    let mut seq = Sequential::new();
    let mut c = c_in;
    for s in stages {
        let conv = Conv2d::builder(c, s.c_out, [s.kernel; 2])
            .stride([s.stride; 2])
            .padding(Padding::Symmetric([s.pad; 2]))
            .build()?;
        seq = seq.with(conv).with(Relu::new());
        if s.lrn {
            seq = seq.with(lrn()?);
        }
        if s.pool {
            seq = seq.with(MaxPool2d::new(pool(3, 2, 0, false)));
        }
        c = s.c_out;
    }
    Ok(seq)
}

/// `classifier`: dropout, fc, ReLU, dropout, fc, ReLU, fc.
fn classifier(features: usize, hidden: usize, classes: usize) -> Result<Sequential, Error> {
    Ok(Sequential::new()
        .with(Dropout::new(0.5)?)
        .with(Linear::new(features, hidden, true)?)
        .with(Relu::new())
        .with(Dropout::new(0.5)?)
        .with(Linear::new(hidden, hidden, true)?)
        .with(Relu::new())
        .with(Linear::new(hidden, classes, true)?))
}

/// A convolution with ReLU: `c_out` channels, `kernel` x `kernel`, `stride`, padding `pad`;
/// then LRN if `lrn` and a max pool if `pool`.
fn stage(
    c_out: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    lrn: bool,
    pool: bool,
) -> ConvStage {
    ConvStage {
        c_out,
        kernel,
        stride,
        pad,
        lrn,
        pool,
    }
}

fn build_alexnet() -> Result<Sequential, Error> {
    let stages = [
        stage(64, 11, 4, 2, false, true),
        stage(192, 5, 1, 2, false, true),
        stage(384, 3, 1, 1, false, false),
        stage(256, 3, 1, 1, false, false),
        stage(256, 3, 1, 1, false, true),
    ];
    Ok(Sequential::new()
        .with_named("features", features(3, &stages)?)
        .with_named("avgpool", AdaptiveAvgPool2d::new([6, 6]))
        .with_named("flatten", Flatten::new())
        .with_named(
            "classifier",
            classifier(256 * 6 * 6, 4096, IMAGENET_CLASSES)?,
        ))
}

fn build_alexnet_small() -> Result<Sequential, Error> {
    let stages = [
        stage(32, 5, 1, 2, true, true),
        stage(64, 5, 1, 2, true, true),
        stage(96, 3, 1, 1, false, false),
        stage(96, 3, 1, 1, false, false),
        stage(64, 3, 1, 1, false, true),
    ];
    Ok(Sequential::new()
        .with_named("features", features(1, &stages)?)
        .with_named("flatten", Flatten::new())
        .with_named("classifier", classifier(64 * 3 * 3, 512, SMALL_CLASSES)?))
}

/// Full-size AlexNet, torchvision's definition.
pub const ALEXNET: ModelSpec = ModelSpec {
    name: "alexnet",
    description: "AlexNet (Krizhevsky et al. 2012), torchvision's definition: 5 convs, overlapping max pools, dropout 0.5",
    input: IMAGENET_INPUT,
    classes: IMAGENET_CLASSES,
    build: build_alexnet,
    init: KAIMING,
    defaults: imagenet_defaults(0.01, 5e-4),
};

/// AlexNet for 32x32 Fashion-MNIST, with the paper's LRN.
pub const ALEXNET_SMALL: ModelSpec = ModelSpec {
    name: "alexnet_small",
    description: "AlexNet for 32x32: 5 convs, ReLU, LRN, overlapping 3x3/2 max pools, dropout 0.5",
    input: SMALL_INPUT,
    classes: SMALL_CLASSES,
    build: build_alexnet_small,
    init: KAIMING,
    defaults: fashion_defaults(12, 0.02),
};
