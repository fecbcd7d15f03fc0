//! GoogLeNet / Inception v1 (Szegedy et al. 2015, "Going deeper with convolutions").
//!
//! An inception module runs four branches on one input and concatenates their outputs on
//! the channels: a 1x1 convolution; a 1x1 reduction then a 3x3; a 1x1 reduction then a
//! "5x5"; a 3x3 stride-1 max pool then a 1x1 projection. The 1x1 reductions keep the wide
//! convolutions cheap. Every convolution is torchvision's `BasicConv2d`: conv without bias,
//! batch norm (eps 1e-3), ReLU.
//!
//! `googlenet` is torchvision's definition without the auxiliary classifiers (6,624,904
//! parameters; names `conv1.conv.weight`, `inception3a.branch2.1.bn.running_mean`, ...). As
//! in torchvision, its "5x5" branch uses a 3x3 kernel (torchvision keeps this for weight
//! compatibility; the count depends on it):
//!
//! ```text
//! conv1 7x7/2 64, maxpool 3/2, conv2 1x1 64, conv3 3x3 192, maxpool 3/2       224 -> 28
//! inception 3a 3b, maxpool 3/2, 4a 4b 4c 4d 4e, maxpool 2/2, 5a 5b              28 -> 7
//! global average pool, dropout 0.2, fc 1024 -> 1000        (max pools round up: ceil mode)
//! ```
//!
//! `inception_small` applies the same modules (with a true 5x5 branch, as in the paper) to
//! 1@32x32: a 3x3 stem of 32 channels, max pool to 16x16, modules 3a 3b, max pool to 8x8,
//! 4a 4b, max pool to 4x4, 5a, global average pool, dropout 0.2, fc.

use super::{
    IMAGENET_CLASSES, IMAGENET_INPUT, KAIMING, ModelSpec, SMALL_CLASSES, SMALL_INPUT,
    fashion_defaults, imagenet_defaults, pool,
};
use crate::Error;
use crate::layers::{
    AdaptiveAvgPool2d, BatchNorm2d, Concat, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Padding,
    Relu, Sequential,
};

/// torchvision's `BasicConv2d`: `conv` (no bias), `bn` (eps 1e-3), `relu`.
fn basic_conv(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
) -> Result<Sequential, Error> {
    let conv = Conv2d::builder(c_in, c_out, [kernel; 2])
        .stride([stride; 2])
        .padding(Padding::Symmetric([pad; 2]))
        .bias(false)
        .build()?;
    Ok(Sequential::new()
        .with_named("conv", conv)
        .with_named("bn", BatchNorm2d::with(c_out, 1e-3, 0.1)?)
        .with_named("relu", Relu::new()))
}

/// Output channels of each branch of an inception module (torchvision's argument names).
struct Inception {
    ch1x1: usize,
    ch3x3red: usize,
    ch3x3: usize,
    ch5x5red: usize,
    ch5x5: usize,
    pool_proj: usize,
}

impl Inception {
    /// Output channels: the four branches concatenated.
    fn c_out(&self) -> usize {
        self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj
    }

    /// The module on `c_in` channels; `kernel5` is the size of the "5x5" convolution.
    fn build(&self, c_in: usize, kernel5: usize) -> Result<Concat, Error> {
        let branch2 = Sequential::new()
            .with(basic_conv(c_in, self.ch3x3red, 1, 1, 0)?)
            .with(basic_conv(self.ch3x3red, self.ch3x3, 3, 1, 1)?);
        let branch3 = Sequential::new()
            .with(basic_conv(c_in, self.ch5x5red, 1, 1, 0)?)
            .with(basic_conv(
                self.ch5x5red,
                self.ch5x5,
                kernel5,
                1,
                kernel5 / 2,
            )?);
        let branch4 = Sequential::new()
            .with(MaxPool2d::new(pool(3, 1, 1, true)))
            .with(basic_conv(c_in, self.pool_proj, 1, 1, 0)?);
        Ok(Concat::new()
            .with_named("branch1", basic_conv(c_in, self.ch1x1, 1, 1, 0)?)
            .with_named("branch2", branch2)
            .with_named("branch3", branch3)
            .with_named("branch4", branch4))
    }
}

/// `(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)`.
const fn module(c: [usize; 6]) -> Inception {
    Inception {
        ch1x1: c[0],
        ch3x3red: c[1],
        ch3x3: c[2],
        ch5x5red: c[3],
        ch5x5: c[4],
        pool_proj: c[5],
    }
}

/// A stage of the network after the stem: a named module, or a named `k`x`k` stride-2
/// max pool (ceil mode).
enum Stage {
    Module(&'static str, Inception),
    Pool(&'static str, usize),
}

/// The stages of torchvision's GoogLeNet after `maxpool2` (Szegedy et al., table 1).
const IMAGENET_STAGES: [Stage; 11] = [
    Stage::Module("inception3a", module([64, 96, 128, 16, 32, 32])),
    Stage::Module("inception3b", module([128, 128, 192, 32, 96, 64])),
    Stage::Pool("maxpool3", 3),
    Stage::Module("inception4a", module([192, 96, 208, 16, 48, 64])),
    Stage::Module("inception4b", module([160, 112, 224, 24, 64, 64])),
    Stage::Module("inception4c", module([128, 128, 256, 24, 64, 64])),
    Stage::Module("inception4d", module([112, 144, 288, 32, 64, 64])),
    Stage::Module("inception4e", module([256, 160, 320, 32, 128, 128])),
    Stage::Pool("maxpool4", 2),
    Stage::Module("inception5a", module([256, 160, 320, 32, 128, 128])),
    Stage::Module("inception5b", module([384, 192, 384, 48, 128, 128])),
];

/// The stages of `inception_small` after its stem and first pool (16x16).
const SMALL_STAGES: [Stage; 7] = [
    Stage::Module("inception3a", module([16, 24, 32, 4, 8, 8])),
    Stage::Module("inception3b", module([32, 32, 48, 8, 16, 16])),
    Stage::Pool("maxpool3", 3),
    Stage::Module("inception4a", module([48, 32, 64, 8, 16, 16])),
    Stage::Module("inception4b", module([64, 48, 96, 12, 24, 24])),
    Stage::Pool("maxpool4", 2),
    Stage::Module("inception5a", module([96, 64, 128, 16, 32, 32])),
];

/// Appends `stages` to `net`, whose output has `c` channels; `kernel5` is the size of the
/// modules' "5x5" convolution. Returns the network and its output channels.
fn append_stages(
    mut net: Sequential,
    mut c: usize,
    stages: &[Stage],
    kernel5: usize,
) -> Result<(Sequential, usize), Error> {
    for stage in stages {
        net = match stage {
            Stage::Module(name, m) => {
                let layer = m.build(c, kernel5)?;
                c = m.c_out();
                net.with_named(*name, layer)
            }
            Stage::Pool(name, k) => net.with_named(*name, MaxPool2d::new(pool(*k, 2, 0, true))),
        };
    }
    Ok((net, c))
}

/// Global average pool, flatten, dropout 0.2, fc.
fn head(net: Sequential, c: usize, classes: usize) -> Result<Sequential, Error> {
    Ok(net
        .with_named("avgpool", AdaptiveAvgPool2d::global())
        .with_named("flatten", Flatten::new())
        .with_named("dropout", Dropout::new(0.2)?)
        .with_named("fc", Linear::new(c, classes, true)?))
}

fn build_googlenet() -> Result<Sequential, Error> {
    let stem = Sequential::new()
        .with_named("conv1", basic_conv(3, 64, 7, 2, 3)?)
        .with_named("maxpool1", MaxPool2d::new(pool(3, 2, 0, true)))
        .with_named("conv2", basic_conv(64, 64, 1, 1, 0)?)
        .with_named("conv3", basic_conv(64, 192, 3, 1, 1)?)
        .with_named("maxpool2", MaxPool2d::new(pool(3, 2, 0, true)));
    let (net, c) = append_stages(stem, 192, &IMAGENET_STAGES, 3)?;
    head(net, c, IMAGENET_CLASSES)
}

fn build_inception_small() -> Result<Sequential, Error> {
    let stem = Sequential::new()
        .with_named("conv1", basic_conv(1, 32, 3, 1, 1)?)
        .with_named("maxpool1", MaxPool2d::new(pool(3, 2, 0, true)));
    let (net, c) = append_stages(stem, 32, &SMALL_STAGES, 5)?;
    head(net, c, SMALL_CLASSES)
}

/// GoogLeNet, torchvision's definition without auxiliary classifiers.
pub const GOOGLENET: ModelSpec = ModelSpec {
    name: "googlenet",
    description: "GoogLeNet / Inception v1 (Szegedy et al. 2015), torchvision's: 9 inception modules, BN, no aux heads",
    input: IMAGENET_INPUT,
    classes: IMAGENET_CLASSES,
    build: build_googlenet,
    init: KAIMING,
    defaults: imagenet_defaults(0.01, 1e-4),
};

/// GoogLeNet-style network for 32x32 Fashion-MNIST.
pub const INCEPTION_SMALL: ModelSpec = ModelSpec {
    name: "inception_small",
    description: "Inception for 32x32: 5 GoogLeNet modules (1x1, 1x1-3x3, 1x1-5x5, pool-1x1), BN",
    input: SMALL_INPUT,
    classes: SMALL_CLASSES,
    build: build_inception_small,
    init: KAIMING,
    defaults: fashion_defaults(6, 0.05),
};
