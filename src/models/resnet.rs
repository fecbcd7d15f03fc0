//! ResNet (He, Zhang, Ren, Sun 2016, "Deep residual learning for image recognition").
//!
//! A residual block computes `y = relu(F(x) + shortcut(x))`. The shortcut is the identity,
//! or, where the block changes the shape (stride 2 or more channels), a projection: a 1x1
//! convolution with that stride and batch norm (the paper's option B).
//!
//! ```text
//! basic block       conv1 3x3/s, bn1, relu, conv2 3x3, bn2                       (x1 channels)
//! bottleneck block  conv1 1x1, bn1, relu, conv2 3x3/s, bn2, relu, conv3 1x1, bn3   (x4 channels)
//! projection        downsample.0 1x1/s conv, downsample.1 bn
//! ```
//!
//! The bottleneck strides in its 3x3 convolution (torchvision's "ResNet v1.5"). Convolutions
//! have no bias; every one is followed by batch norm.
//!
//! The ImageNet models are torchvision's definitions (names `layer1.0.conv1.weight`,
//! `layer2.0.downsample.0.weight`, ...): a 7x7 stride-2 stem with a 3x3 stride-2 max pool,
//! four stages of 64, 128, 256, 512 planes (the first at stride 1, the others 2), global
//! average pooling and `fc`.
//!
//! | model    | block      | blocks per stage | parameters |
//! | -------- | ---------- | ---------------- | ---------- |
//! | resnet18 | basic      | 2 2 2 2          | 11,689,512 |
//! | resnet34 | basic      | 3 4 6 3          | 21,797,672 |
//! | resnet50 | bottleneck | 3 4 6 3          | 25,557,032 |
//!
//! The CIFAR networks of section 4.2 (ResNet-20 and ResNet-56: depth `6n + 2` with `n` = 3
//! and 9) have a 3x3 stem of 16 channels and three stages of `n` basic blocks at 16, 32, 64
//! channels on 32x32, 16x16, 8x8. The paper's CIFAR experiments use zero-padding identity
//! shortcuts (option A); these use projection shortcuts (option B: 1x1 convolutions 16 -> 32 and
//! 32 -> 64 with batch norm, 2,752 more parameters) so every ResNet here is built from the
//! same blocks.

use super::{
    IMAGENET_CLASSES, IMAGENET_INPUT, KAIMING, ModelSpec, SMALL_CLASSES, SMALL_INPUT,
    fashion_defaults, imagenet_defaults, pool,
};
use crate::Error;
use crate::layers::{
    AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Padding, Relu, Residual,
    Sequential,
};

/// The residual block a ResNet stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    /// Two 3x3 convolutions.
    Basic,
    /// 1x1 reduce, 3x3, 1x1 expand to four times the planes.
    Bottleneck,
}

impl Block {
    /// Output channels per plane of the block's width.
    fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

/// A `k`x`k` convolution without bias, padding `k/2`.
fn conv(c_in: usize, c_out: usize, k: usize, stride: usize) -> Result<Conv2d, Error> {
    Conv2d::builder(c_in, c_out, [k, k])
        .stride([stride; 2])
        .padding(Padding::Symmetric([k / 2; 2]))
        .bias(false)
        .build()
}

/// One block: `c_in` channels in, `planes * expansion` out, striding by `stride`. Its
/// parameters sit directly under the block's name, as in torchvision (`conv1.weight`,
/// `downsample.0.weight`).
fn block(kind: Block, c_in: usize, planes: usize, stride: usize) -> Result<Sequential, Error> {
    let c_out = planes * kind.expansion();
    let body = match kind {
        Block::Basic => Sequential::new()
            .with_named("conv1", conv(c_in, planes, 3, stride)?)
            .with_named("bn1", BatchNorm2d::new(planes)?)
            .with_named("relu", Relu::new())
            .with_named("conv2", conv(planes, planes, 3, 1)?)
            .with_named("bn2", BatchNorm2d::new(planes)?),
        Block::Bottleneck => Sequential::new()
            .with_named("conv1", conv(c_in, planes, 1, 1)?)
            .with_named("bn1", BatchNorm2d::new(planes)?)
            .with_named("relu", Relu::new())
            .with_named("conv2", conv(planes, planes, 3, stride)?)
            .with_named("bn2", BatchNorm2d::new(planes)?)
            .with_named("relu", Relu::new())
            .with_named("conv3", conv(planes, c_out, 1, 1)?)
            .with_named("bn3", BatchNorm2d::new(c_out)?),
    };
    let mut residual = Residual::new(body);
    if stride != 1 || c_in != c_out {
        let projection = Sequential::new()
            .with(conv(c_in, c_out, 1, stride)?)
            .with(BatchNorm2d::new(c_out)?);
        residual = residual.with_shortcut(projection);
    }
    Ok(Sequential::new()
        .with_named("", residual.named("", "downsample"))
        .with_named("relu", Relu::new()))
}

/// A ResNet's layout: which block, how many per stage, and each stage's planes.
struct Layout {
    block: Block,
    blocks: &'static [usize],
    planes: &'static [usize],
}

/// Appends the stages `layer1`, `layer2`, ... to `net`, whose output has `c` channels; the
/// first stage keeps the resolution, each later one halves it. Returns the output channels.
fn stages(
    mut net: Sequential,
    mut c: usize,
    layout: &Layout,
) -> Result<(Sequential, usize), Error> {
    for (i, (&n, &planes)) in layout.blocks.iter().zip(layout.planes).enumerate() {
        let mut stage = Sequential::new();
        for b in 0..n {
            let stride = if i > 0 && b == 0 { 2 } else { 1 };
            stage = stage.with(block(layout.block, c, planes, stride)?);
            c = planes * layout.block.expansion();
        }
        net = net.with_named(format!("layer{}", i + 1), stage);
    }
    Ok((net, c))
}

/// Global average pooling and the classifier `fc`.
fn head(net: Sequential, c: usize, classes: usize) -> Result<Sequential, Error> {
    Ok(net
        .with_named("avgpool", AdaptiveAvgPool2d::global())
        .with_named("flatten", Flatten::new())
        .with_named("fc", Linear::new(c, classes, true)?))
}

/// torchvision's ImageNet ResNet.
fn imagenet(layout: &Layout) -> Result<Sequential, Error> {
    let stem = Sequential::new()
        .with_named("conv1", conv(3, 64, 7, 2)?)
        .with_named("bn1", BatchNorm2d::new(64)?)
        .with_named("relu", Relu::new())
        .with_named("maxpool", MaxPool2d::new(pool(3, 2, 1, false)));
    let (net, c) = stages(stem, 64, layout)?;
    head(net, c, IMAGENET_CLASSES)
}

/// He et al.'s CIFAR ResNet with `blocks` basic blocks per stage (`[n, n, n]`: depth
/// `6n + 2`), on Fashion-MNIST's one input channel.
fn cifar(blocks: &'static [usize]) -> Result<Sequential, Error> {
    let layout = Layout {
        block: Block::Basic,
        blocks,
        planes: &[16, 32, 64],
    };
    let stem = Sequential::new()
        .with_named("conv1", conv(SMALL_INPUT[0], 16, 3, 1)?)
        .with_named("bn1", BatchNorm2d::new(16)?)
        .with_named("relu", Relu::new());
    let (net, c) = stages(stem, 16, &layout)?;
    head(net, c, SMALL_CLASSES)
}

const BASIC_2222: Layout = Layout {
    block: Block::Basic,
    blocks: &[2, 2, 2, 2],
    planes: &[64, 128, 256, 512],
};
const BASIC_3463: Layout = Layout {
    block: Block::Basic,
    blocks: &[3, 4, 6, 3],
    planes: &[64, 128, 256, 512],
};
const BOTTLENECK_3463: Layout = Layout {
    block: Block::Bottleneck,
    blocks: &[3, 4, 6, 3],
    planes: &[64, 128, 256, 512],
};

fn build_resnet18() -> Result<Sequential, Error> {
    imagenet(&BASIC_2222)
}

fn build_resnet34() -> Result<Sequential, Error> {
    imagenet(&BASIC_3463)
}

fn build_resnet50() -> Result<Sequential, Error> {
    imagenet(&BOTTLENECK_3463)
}

fn build_resnet20() -> Result<Sequential, Error> {
    cifar(&[3, 3, 3])
}

fn build_resnet56() -> Result<Sequential, Error> {
    cifar(&[9, 9, 9])
}

/// ResNet-18, torchvision's definition.
pub const RESNET18: ModelSpec = ModelSpec {
    name: "resnet18",
    description: "ResNet-18 (He et al. 2016): basic blocks 2-2-2-2, projection shortcuts, BN",
    input: IMAGENET_INPUT,
    classes: IMAGENET_CLASSES,
    build: build_resnet18,
    init: KAIMING,
    defaults: imagenet_defaults(0.1, 1e-4),
};

/// ResNet-34, torchvision's definition.
pub const RESNET34: ModelSpec = ModelSpec {
    name: "resnet34",
    description: "ResNet-34 (He et al. 2016): basic blocks 3-4-6-3, projection shortcuts, BN",
    input: IMAGENET_INPUT,
    classes: IMAGENET_CLASSES,
    build: build_resnet34,
    init: KAIMING,
    defaults: imagenet_defaults(0.1, 1e-4),
};

/// ResNet-50, torchvision's definition.
pub const RESNET50: ModelSpec = ModelSpec {
    name: "resnet50",
    description: "ResNet-50 (He et al. 2016): bottleneck blocks 3-4-6-3, projection shortcuts, BN",
    input: IMAGENET_INPUT,
    classes: IMAGENET_CLASSES,
    build: build_resnet50,
    init: KAIMING,
    defaults: imagenet_defaults(0.1, 1e-4),
};

/// He et al.'s CIFAR ResNet-20.
pub const RESNET20: ModelSpec = ModelSpec {
    name: "resnet20",
    description: "ResNet-20 (He et al. 2016, CIFAR): 3x3 basic blocks 3-3-3 at 16-32-64 channels",
    input: SMALL_INPUT,
    classes: SMALL_CLASSES,
    build: build_resnet20,
    init: KAIMING,
    defaults: fashion_defaults(8, 0.1),
};

/// He et al.'s CIFAR ResNet-56.
pub const RESNET56: ModelSpec = ModelSpec {
    name: "resnet56",
    description: "ResNet-56 (He et al. 2016, CIFAR): 3x3 basic blocks 9-9-9 at 16-32-64 channels",
    input: SMALL_INPUT,
    classes: SMALL_CLASSES,
    build: build_resnet56,
    init: KAIMING,
    defaults: fashion_defaults(8, 0.1),
};
