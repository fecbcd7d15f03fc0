//! LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998, "Gradient-based learning applied to
//! document recognition", section II.B), on MNIST digits padded from 28x28 to 32x32:
//!
//! ```text
//! input  1@32x32
//! C1     6@28x28   5x5 conv                        features.0   156 params
//! S2     6@14x14   2x2 subsampling: avg * w + b    features.2    12
//! C3    16@10x10   5x5 conv over all 6 maps        features.4  2416
//! S4    16@5x5     2x2 max pooling                 features.6
//! C5   120@1x1     5x5 conv                        features.7  48120
//! F6    84         fully connected                 classifier.0 10164
//! out   10         fully connected, softmax        classifier.2   850   (61,718 in all)
//! ```
//!
//! Departures from the paper, each a standard modernization: ReLU instead of the scaled tanh
//! (after C1, S2, C3, C5, F6), C3 connected to all six S2 maps rather than the paper's sparse
//! table (as the issue asks), max pooling in S4, and a softmax output trained with
//! cross-entropy in place of the RBF units.

use super::{ModelSpec, TrainDefaults};
use crate::Error;
use crate::data::Augment;
use crate::init::{Init, RELU_GAIN};
use crate::layers::{Conv2d, Flatten, Linear, MaxPool2d, Relu, Sequential, Subsample2d};
use crate::optim::{LrSchedule, SgdConfig};
use convnet_kernels::pool::PoolParams;

fn build() -> Result<Sequential, Error> {
    let features = Sequential::new()
        .with(Conv2d::builder(1, 6, [5, 5]).build()?)
        .with(Relu::new())
        .with(Subsample2d::new(6))
        .with(Relu::new())
        .with(Conv2d::builder(6, 16, [5, 5]).build()?)
        .with(Relu::new())
        .with(MaxPool2d::new(PoolParams::new([2, 2])))
        .with(Conv2d::builder(16, 120, [5, 5]).build()?)
        .with(Relu::new());
    let classifier = Sequential::new()
        .with(Linear::new(120, 84, true)?)
        .with(Relu::new())
        .with(Linear::new(84, 10, true)?);
    Ok(Sequential::new()
        .with_named("features", features)
        .with_named("flatten", Flatten::new())
        .with_named("classifier", classifier))
}

/// LeNet-5 on MNIST.
pub const SPEC: ModelSpec = ModelSpec {
    name: "lenet5",
    description: "LeNet-5 (LeCun et al. 1998): C1-S2-C3-S4-C5-F6, ReLU, trainable S2 subsampling",
    input: [1, 32, 32],
    classes: 10,
    build,
    init: Init::KaimingNormal { gain: RELU_GAIN },
    defaults: TrainDefaults {
        data: Some("mnist"),
        epochs: 6,
        batch: 64,
        lr: 0.05,
        sgd: SgdConfig {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
        },
        schedule: LrSchedule::Cosine { min_lr: 0.0 },
        augment: Augment {
            crop_padding: 2,
            hflip: false,
        },
    },
};
