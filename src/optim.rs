//! [`Sgd`] with momentum, Nesterov momentum and weight decay (PyTorch's `torch.optim.SGD`
//! update, dampening 0), and learning-rate schedules ([`LrSchedule`]).
//!
//! ```text
//! g = grad + weight_decay * p
//! v = g                      on the first step, then  v = momentum * v + g
//! p -= lr * (nesterov ? g + momentum * v : v)
//! ```

use crate::Error;
use crate::error::ensure;
use crate::layers::{Layer, LayerExt};

/// SGD hyperparameters other than the learning rate, which the schedule gives each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Momentum factor (0 for plain SGD).
    pub momentum: f32,
    /// Nesterov momentum (needs `momentum > 0`).
    pub nesterov: bool,
    /// L2 penalty added to every trained parameter's gradient.
    pub weight_decay: f32,
}

/// Stochastic gradient descent with momentum buffers kept by parameter name.
#[derive(Clone, Debug)]
pub struct Sgd {
    config: SgdConfig,
    /// Momentum buffer of each trained parameter, by name (empty until the first step).
    velocity: Vec<(String, Vec<f32>)>,
}

impl Sgd {
    /// Validates the hyperparameters.
    pub fn new(config: SgdConfig) -> Result<Sgd, Error> {
        let SgdConfig {
            momentum,
            nesterov,
            weight_decay,
        } = config;
        ensure((0.0..1.0).contains(&momentum), || {
            format!("SGD: momentum must be in [0, 1), got {momentum}")
        })?;
        ensure(weight_decay >= 0.0 && weight_decay.is_finite(), || {
            format!("SGD: weight decay must be non-negative, got {weight_decay}")
        })?;
        ensure(!nesterov || momentum > 0.0, || {
            "SGD: Nesterov momentum needs momentum > 0".into()
        })?;
        Ok(Sgd {
            config,
            velocity: Vec::new(),
        })
    }

    /// One update of every trained parameter of `model` with learning rate `lr`.
    pub fn step<L: Layer + ?Sized>(&mut self, model: &mut L, lr: f32) -> Result<(), Error> {
        let SgdConfig {
            momentum,
            nesterov,
            weight_decay,
        } = self.config;
        let params: Vec<_> = model
            .named_params_mut()
            .into_iter()
            .filter(|(_, p)| p.is_trainable())
            .collect();
        let first = self.velocity.is_empty();
        if first {
            self.velocity = params
                .iter()
                .map(|(name, p)| (name.clone(), vec![0.0; p.len()]))
                .collect();
        }
        self.check_matches(params.iter().map(|(n, p)| (n.as_str(), p.len())))?;
        for ((_, p), (_, v)) in params.into_iter().zip(&mut self.velocity) {
            for ((w, &g), v) in p.value.iter_mut().zip(&p.grad).zip(v.iter_mut()) {
                let g = g + weight_decay * *w;
                let update = if momentum == 0.0 {
                    g
                } else {
                    *v = if first { g } else { momentum * *v + g };
                    if nesterov { g + momentum * *v } else { *v }
                };
                *w -= lr * update;
            }
        }
        Ok(())
    }

    fn check_matches<'a>(
        &self,
        mut params: impl Iterator<Item = (&'a str, usize)>,
    ) -> Result<(), Error> {
        let same = self
            .velocity
            .iter()
            .all(|(name, v)| params.next() == Some((name.as_str(), v.len())));
        ensure(same && params.next().is_none(), || {
            "SGD: the model's parameters changed since the optimizer's first step".into()
        })
    }

    /// The momentum buffers by parameter name (empty before the first step), for checkpoints.
    pub fn momentum_buffers(&self) -> &[(String, Vec<f32>)] {
        &self.velocity
    }

    /// Restores momentum buffers saved by [`Sgd::momentum_buffers`].
    pub fn set_momentum_buffers(&mut self, buffers: Vec<(String, Vec<f32>)>) {
        self.velocity = buffers;
    }
}

/// How the learning rate changes over training.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// The base rate times `gamma` every `every` epochs (PyTorch's `StepLR`).
    Step {
        /// Epochs between decays.
        every: usize,
        /// Decay factor.
        gamma: f64,
    },
    /// Half a cosine from the base rate down to `min_lr` over the whole run, evaluated at
    /// every step (PyTorch's `CosineAnnealingLR` with `T_max` = all steps).
    Cosine {
        /// The final learning rate.
        min_lr: f64,
    },
}

impl LrSchedule {
    /// The rate after `progress` epochs (fractional: step / steps per epoch) of `epochs`.
    pub fn lr_at(self, base: f64, progress: f64, epochs: usize) -> f64 {
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Step { every, gamma } => {
                base * gamma.powi((progress as usize / every.max(1)) as i32)
            }
            LrSchedule::Cosine { min_lr } => {
                let t = (progress / epochs.max(1) as f64).clamp(0.0, 1.0);
                min_lr + (base - min_lr) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Linear;

    #[test]
    fn update_matches_pytorch_formulas() {
        for nesterov in [false, true] {
            let mut layer = Linear::new(1, 1, false).unwrap();
            let mut opt = Sgd::new(SgdConfig {
                momentum: 0.5,
                nesterov,
                weight_decay: 0.1,
            })
            .unwrap();
            let (mut w, mut v) = (1.0f32, 0.0f32);
            for step in 0..3 {
                let grad = 0.25 * (step + 1) as f32;
                layer.named_params_mut()[0].1.value[0] = w;
                layer.named_params_mut()[0].1.grad[0] = grad;
                opt.step(&mut layer, 0.1).unwrap();
                let g = grad + 0.1 * w;
                v = if step == 0 { g } else { 0.5 * v + g };
                w -= 0.1 * if nesterov { g + 0.5 * v } else { v };
                assert_eq!(layer.named_params()[0].1.value[0], w);
            }
        }
        assert!(
            Sgd::new(SgdConfig {
                momentum: 0.0,
                nesterov: true,
                weight_decay: 0.0
            })
            .is_err()
        );
    }

    #[test]
    fn schedules() {
        let cos = LrSchedule::Cosine { min_lr: 0.0 };
        assert_eq!(cos.lr_at(0.1, 0.0, 10), 0.1);
        assert!((cos.lr_at(0.1, 5.0, 10) - 0.05).abs() < 1e-12);
        assert!(cos.lr_at(0.1, 10.0, 10).abs() < 1e-12);
        let step = LrSchedule::Step {
            every: 3,
            gamma: 0.1,
        };
        assert_eq!(step.lr_at(1.0, 2.9, 10), 1.0);
        assert!((step.lr_at(1.0, 3.0, 10) - 0.1).abs() < 1e-12);
        assert_eq!(LrSchedule::Constant.lr_at(0.3, 7.0, 10), 0.3);
    }
}
