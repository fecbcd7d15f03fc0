//! The training loop: shuffled mini-batches, softmax cross-entropy, SGD with a scheduled
//! learning rate, and evaluation on a test split.
//!
//! Every random draw of epoch `e` (shuffle, augmentation, dropout) comes from the streams
//! `Rng::derive(seed, 2e)` and `Rng::derive(seed, 2e + 1)`, so a run is reproducible bit
//! for bit, and a resumed run replays the epochs it continues with.

use crate::Error;
use crate::data::{Augment, Dataset, Pipeline};
use crate::layers::{Ctx, Layer, Storage};
use crate::loss::softmax_cross_entropy;
use crate::optim::{LrSchedule, Sgd};
use crate::rng::Rng;

/// What a training run does each epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// Total epochs of the run (the schedule spans them).
    pub epochs: usize,
    /// Mini-batch size.
    pub batch: usize,
    /// Base learning rate.
    pub lr: f64,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Training augmentation.
    pub augment: Augment,
    /// Seed of shuffling, augmentation and dropout.
    pub seed: u64,
    /// The number format convolution and linear layers compute in (master weights stay f32).
    pub storage: Storage,
}

/// Progress within an epoch, after each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Steps done in this epoch.
    pub step: usize,
    /// Steps in the epoch.
    pub steps: usize,
    /// Mean loss over the samples so far.
    pub loss: f64,
    /// Accuracy over the samples so far.
    pub acc: f64,
    /// The learning rate of this step.
    pub lr: f64,
}

/// Mean loss and accuracy over a pass.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PassStats {
    /// Mean softmax cross-entropy.
    pub loss: f64,
    /// Fraction classified right.
    pub acc: f64,
    /// Samples seen.
    pub samples: usize,
}

/// Running sums of a pass.
#[derive(Default)]
struct Tally {
    loss: f64,
    correct: usize,
    samples: usize,
}

impl Tally {
    fn add(&mut self, mean_loss: f64, correct: usize, samples: usize) {
        self.loss += mean_loss * samples as f64;
        self.correct += correct;
        self.samples += samples;
    }
    fn stats(&self) -> PassStats {
        let n = self.samples.max(1) as f64;
        PassStats {
            loss: self.loss / n,
            acc: self.correct as f64 / n,
            samples: self.samples,
        }
    }
}

/// One epoch (`epoch` counts from 0) of training on `data`; `on_step` sees the progress.
pub fn train_epoch<L: Layer + ?Sized>(
    model: &mut L,
    opt: &mut Sgd,
    pipeline: &Pipeline,
    data: &Dataset,
    config: &TrainConfig,
    epoch: usize,
    on_step: &mut dyn FnMut(&StepStats),
) -> Result<PassStats, Error> {
    let batch = config.batch.max(1);
    let mut data_rng = Rng::derive(config.seed, 2 * epoch as u64);
    let mut ctx =
        Ctx::train(Rng::derive(config.seed, 2 * epoch as u64 + 1)).with_storage(config.storage);
    let mut order: Vec<usize> = (0..data.len()).collect();
    data_rng.shuffle(&mut order);
    let steps = data.len().div_ceil(batch);
    let mut tally = Tally::default();
    for (step, indices) in order.chunks(batch).enumerate() {
        let progress = epoch as f64 + step as f64 / steps as f64;
        let lr = config.schedule.lr_at(config.lr, progress, config.epochs);
        let (x, labels) = pipeline.batch(data, indices, config.augment, &mut data_rng)?;
        let logits = model.forward(x, &mut ctx)?;
        let out = softmax_cross_entropy(&logits, &labels)?;
        model.backward_params(out.grad)?;
        opt.step(model, lr as f32)?;
        tally.add(out.loss, out.correct, labels.len());
        let s = tally.stats();
        on_step(&StepStats {
            step: step + 1,
            steps,
            loss: s.loss,
            acc: s.acc,
            lr,
        });
    }
    Ok(tally.stats())
}

/// Loss and accuracy of `model` on `data` in evaluation mode, in batches of `batch`, with
/// convolution and linear layers computing in `storage`.
pub fn evaluate<L: Layer + ?Sized>(
    model: &mut L,
    pipeline: &Pipeline,
    data: &Dataset,
    batch: usize,
    storage: Storage,
) -> Result<PassStats, Error> {
    let mut ctx = Ctx::eval().with_storage(storage);
    let mut rng = Rng::new(0);
    let mut tally = Tally::default();
    let order: Vec<usize> = (0..data.len()).collect();
    for indices in order.chunks(batch.max(1)) {
        let (x, labels) = pipeline.batch(data, indices, Augment::default(), &mut rng)?;
        let logits = model.forward(x, &mut ctx)?;
        let out = softmax_cross_entropy(&logits, &labels)?;
        tally.add(out.loss, out.correct, labels.len());
    }
    Ok(tally.stats())
}
