//! VGG (Simonyan and Zisserman 2015, "Very deep convolutional networks for large-scale image
//! recognition"): stacks of 3x3 convolutions (stride 1, padding 1, ReLU), each stack closed
//! by a 2x2 stride-2 max pool, then three fully connected layers with dropout 0.5.
//!
//! `vgg11` (configuration A) and `vgg16` (configuration D) are torchvision's definitions:
//! parameter names `features.N.*` and `classifier.N.*`, counts 132,863,336 and 138,357,544.
//!
//! ```text
//! A (vgg11): 64 M 128 M 256 256 M 512 512 M 512 512 M
//! D (vgg16): 64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M
//!            (a number: a 3x3 conv to that many channels and a ReLU; M: 2x2 max pool)
//! then       adaptive average pool to 7x7, fc 25088 -> 4096, ReLU, dropout,
//!            fc 4096 -> 4096, ReLU, dropout, fc 4096 -> 1000
//! ```
//!
//! `vgg_small` is configuration `16 M 32 M 64 64 M 128 128 M` on 1@32x32 (32 -> 16 -> 8 -> 4
//! -> 2) with batch normalization after each convolution (torchvision's `vgg*_bn` form),
//! and the three-layer classifier at 256 units.

use super::{
    IMAGENET_CLASSES, IMAGENET_INPUT, KAIMING, ModelSpec, SMALL_CLASSES, SMALL_INPUT,
    fashion_defaults, imagenet_defaults, pool,
};
use crate::Error;
use crate::layers::{
    AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Padding, Relu,
    Sequential,
};

/// One entry of a VGG configuration.
#[derive(Clone, Copy)]
enum Cfg {
    /// A 3x3 convolution to this many channels.
    Conv(usize),
    /// A 2x2 stride-2 max pool.
    Pool,
}

use Cfg::{Conv, Pool};

/// Configuration A.
const CFG_A: [Cfg; 13] = [
    Conv(64),
    Pool,
    Conv(128),
    Pool,
    Conv(256),
    Conv(256),
    Pool,
    Conv(512),
    Conv(512),
    Pool,
    Conv(512),
    Conv(512),
    Pool,
];

/// Configuration D.
const CFG_D: [Cfg; 18] = [
    Conv(64),
    Conv(64),
    Pool,
    Conv(128),
    Conv(128),
    Pool,
    Conv(256),
    Conv(256),
    Conv(256),
    Pool,
    Conv(512),
    Conv(512),
    Conv(512),
    Pool,
    Conv(512),
    Conv(512),
    Conv(512),
    Pool,
];

/// The small configuration.
const CFG_SMALL: [Cfg; 10] = [
    Conv(16),
    Pool,
    Conv(32),
    Pool,
    Conv(64),
    Conv(64),
    Pool,
    Conv(128),
    Conv(128),
    Pool,
];

/// `features` for `cfg` on `c_in` channels (with batch norm after each conv if
/// `batch_norm`); returns it with its output channels.
fn features(c_in: usize, cfg: &[Cfg], batch_norm: bool) -> Result<(Sequential, usize), Error> {
    let mut seq = Sequential::new();
    let mut c = c_in;
    for &entry in cfg {
        seq = match entry {
            Conv(c_out) => {
                let conv = Conv2d::builder(c, c_out, [3, 3])
                    .padding(Padding::Symmetric([1, 1]))
                    .build()?;
                c = c_out;
                let seq = seq.with(conv);
                let seq = if batch_norm {
                    seq.with(BatchNorm2d::new(c_out)?)
                } else {
                    seq
                };
                seq.with(Relu::new())
            }
            Pool => seq.with(MaxPool2d::new(pool(2, 2, 0, false))),
        };
    }
    Ok((seq, c))
}

/// `classifier`: fc, ReLU, dropout, fc, ReLU, dropout, fc.
fn classifier(features: usize, hidden: usize, classes: usize) -> Result<Sequential, Error> {
    Ok(Sequential::new()
        .with(Linear::new(features, hidden, true)?)
        .with(Relu::new())
        .with(Dropout::new(0.5)?)
        .with(Linear::new(hidden, hidden, true)?)
        .with(Relu::new())
        .with(Dropout::new(0.5)?)
        .with(Linear::new(hidden, classes, true)?))
}

/// A full-size VGG: `cfg`, 7x7 adaptive pooling, the 4096-unit classifier.
fn imagenet(cfg: &[Cfg]) -> Result<Sequential, Error> {
    let (features, c) = features(3, cfg, false)?;
    Ok(Sequential::new()
        .with_named("features", features)
        .with_named("avgpool", AdaptiveAvgPool2d::new([7, 7]))
        .with_named("flatten", Flatten::new())
        .with_named("classifier", classifier(c * 7 * 7, 4096, IMAGENET_CLASSES)?))
}

fn build_vgg11() -> Result<Sequential, Error> {
    imagenet(&CFG_A)
}

fn build_vgg16() -> Result<Sequential, Error> {
    imagenet(&CFG_D)
}

fn build_vgg_small() -> Result<Sequential, Error> {
    let (features, c) = features(1, &CFG_SMALL, true)?;
    Ok(Sequential::new()
        .with_named("features", features)
        .with_named("flatten", Flatten::new())
        .with_named("classifier", classifier(c * 2 * 2, 256, SMALL_CLASSES)?))
}

/// VGG-11, torchvision's definition.
pub const VGG11: ModelSpec = ModelSpec {
    name: "vgg11",
    description: "VGG-11 (Simonyan & Zisserman 2015, configuration A): 8 stacked 3x3 convs, 3 fc",
    input: IMAGENET_INPUT,
    classes: IMAGENET_CLASSES,
    build: build_vgg11,
    init: KAIMING,
    defaults: imagenet_defaults(0.01, 5e-4),
};

/// VGG-16, torchvision's definition.
pub const VGG16: ModelSpec = ModelSpec {
    name: "vgg16",
    description: "VGG-16 (Simonyan & Zisserman 2015, configuration D): 13 stacked 3x3 convs, 3 fc",
    input: IMAGENET_INPUT,
    classes: IMAGENET_CLASSES,
    build: build_vgg16,
    init: KAIMING,
    defaults: imagenet_defaults(0.01, 5e-4),
};

/// VGG for 32x32 Fashion-MNIST, with batch norm.
pub const VGG_SMALL: ModelSpec = ModelSpec {
    name: "vgg_small",
    description: "VGG for 32x32: 6 stacked 3x3 convs with batch norm (16-32-64-128), 3 fc",
    input: SMALL_INPUT,
    classes: SMALL_CLASSES,
    build: build_vgg_small,
    init: KAIMING,
    defaults: fashion_defaults(10, 0.05),
};
