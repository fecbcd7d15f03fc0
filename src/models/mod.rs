//! The model zoo: each model is one file defining a [`ModelSpec`] (its layers, input size,
//! initialization and default training settings), listed once in [`MODELS`].

mod lenet5;

use crate::Error;
use crate::data::Augment;
use crate::init::{Init, init_weights};
use crate::layers::Sequential;
use crate::optim::{LrSchedule, SgdConfig};
use crate::rng::Rng;

/// The default training settings of a model (what `convnet train MODEL` runs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainDefaults {
    /// The bundled data set (a folder of `data/`).
    pub data: &'static str,
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
pub static MODELS: &[ModelSpec] = &[lenet5::SPEC];

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
