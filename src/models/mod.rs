//! The model zoo: each family is one file defining its [`ModelSpec`]s (layers, input size,
//! initialization and default training settings), all listed once in [`MODELS`].
//!
//! Two kinds of models live here. The full-size ImageNet definitions (`alexnet`, `vgg11`,
//! `vgg16`, `googlenet`, `resnet18/34/50`, `densenet121`: 3x224x224 input, 1000 classes)
//! have torchvision's structure, parameter names (`state_dict` keys) and parameter counts,
//! so weights exported from PyTorch load and give PyTorch's outputs. The small variants
//! (`alexnet_small`, `vgg_small`, `inception_small`, `resnet20`, `resnet56`, `densenet_bc`:
//! 1x32x32 input, 10 classes) keep each family's defining structure at a size that trains
//! on Fashion-MNIST, padded to 32x32, in minutes on one core.

mod alexnet;
mod densenet;
mod googlenet;
mod lenet5;
mod resnet;
mod vgg;

use convnet_kernels::pool::PoolParams;

use crate::Error;
use crate::data::Augment;
use crate::init::{Init, RELU_GAIN, init_weights};
use crate::layers::Sequential;
use crate::optim::{LrSchedule, SgdConfig};
use crate::rng::Rng;

/// The default training settings of a model (what `convnet train MODEL` runs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainDefaults {
    /// The bundled data set (a folder of `data/`); `None` for the ImageNet models, which
    /// train only on a data set given with `--data`.
    pub data: Option<&'static str>,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Base learning rate.
    pub lr: f64,
    /// Momentum, Nesterov, weight decay.
    pub sgd: SgdConfig,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Training augmentation.
    pub augment: Augment,
}

/// A model of the zoo.
#[derive(Clone, Copy, Debug)]
pub struct ModelSpec {
    /// The name on the command line.
    pub name: &'static str,
    /// One line on what it is.
    pub description: &'static str,
    /// Input `[c, h, w]`.
    pub input: [usize; 3],
    /// Output classes.
    pub classes: usize,
    /// Builds the layers with zero weights.
    pub build: fn() -> Result<Sequential, Error>,
    /// How its weights are drawn.
    pub init: Init,
    /// Its default training settings.
    pub defaults: TrainDefaults,
}

impl ModelSpec {
    /// The model with weights drawn from `seed`: the same seed, the same weights, bit for bit.
    pub fn build_initialized(&self, seed: u64) -> Result<Sequential, Error> {
        let mut model = (self.build)()?;
        init_weights(&mut model, self.init, &mut Rng::derive(seed, INIT_STREAM));
        Ok(model)
    }
}

/// The random stream of weight initialization (epochs use streams `0..`).
const INIT_STREAM: u64 = u64::MAX;

/// Every model, in the order `convnet models` lists them.
pub static MODELS: &[ModelSpec] = &[
    lenet5::SPEC,
    alexnet::ALEXNET_SMALL,
    vgg::VGG_SMALL,
    googlenet::INCEPTION_SMALL,
    resnet::RESNET20,
    resnet::RESNET56,
    densenet::DENSENET_BC,
    alexnet::ALEXNET,
    vgg::VGG11,
    vgg::VGG16,
    googlenet::GOOGLENET,
    resnet::RESNET18,
    resnet::RESNET34,
    resnet::RESNET50,
    densenet::DENSENET121,
];

/// The model called `name`.
pub fn find(name: &str) -> Result<&'static ModelSpec, Error> {
    MODELS
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| Error::UnknownModel {
            name: name.to_string(),
            known: MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
        })
}

/// PyTorch's `MaxPool2d` / `AvgPool2d(kernel, stride, padding, ceil_mode)`, square.
fn pool(kernel: usize, stride: usize, padding: usize, ceil_mode: bool) -> PoolParams {
    PoolParams {
        kernel: [kernel; 2],
        stride: [stride; 2],
        padding: [padding; 2],
        ceil_mode,
    }
}

/// Kaiming-normal weights for ReLU networks (He et al. 2015), every model's initialization.
const KAIMING: Init = Init::KaimingNormal { gain: RELU_GAIN };

/// Input of the ImageNet models, `[c, h, w]`.
const IMAGENET_INPUT: [usize; 3] = [3, 224, 224];
/// Classes of the ImageNet models.
const IMAGENET_CLASSES: usize = 1000;
/// Input of the small variants: Fashion-MNIST's 28x28 padded to 32x32.
const SMALL_INPUT: [usize; 3] = [1, 32, 32];
/// Classes of the small variants.
const SMALL_CLASSES: usize = 10;

/// The ImageNet recipe of the papers (SGD with momentum 0.9, the rate divided by 10 every
/// 30 epochs, 90 epochs, batch 256, horizontal flips): nominal settings documenting how
/// the full-size models are trained, on a data set given with `--data`.
const fn imagenet_defaults(lr: f64, weight_decay: f32) -> TrainDefaults {
    TrainDefaults {
        data: None,
        epochs: 90,
        batch: 256,
        lr,
        sgd: SgdConfig {
            momentum: 0.9,
            nesterov: false,
            weight_decay,
        },
        schedule: LrSchedule::Step {
            every: 30,
            gamma: 0.1,
        },
        augment: Augment {
            crop_padding: 0,
            hflip: true,
        },
    }
}

/// The small variants' Fashion-MNIST recipe: batch 128, SGD with Nesterov momentum 0.9 and
/// weight decay 5e-4, a cosine schedule from `lr` to 0, random shifts of up to 2 pixels and
/// horizontal flips.
const fn fashion_defaults(epochs: usize, lr: f64) -> TrainDefaults {
    TrainDefaults {
        data: Some("fashion-mnist"),
        epochs,
        batch: 128,
        lr,
        sgd: SgdConfig {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
        },
        schedule: LrSchedule::Cosine { min_lr: 0.0 },
        augment: Augment {
            crop_padding: 2,
            hflip: true,
        },
    }
}
