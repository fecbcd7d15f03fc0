//! Weight initialization from a seeded [`Rng`]: Kaiming (He et al. 2015) and Xavier (Glorot and
//! Bengio 2010), normal or uniform, with PyTorch's formulas. Every weight is drawn in the
//! network's parameter order, so the same seed gives the same network, bit for bit.
//!
//! ```text
//! kaiming_normal   std = gain / sqrt(fan)                  (fan = fan_in by default)
//! kaiming_uniform  bound = gain * sqrt(3 / fan)
//! xavier_normal    std = gain * sqrt(2 / (fan_in + fan_out))
//! xavier_uniform   bound = gain * sqrt(6 / (fan_in + fan_out))
//! gain = sqrt(2) for ReLU, 1 for linear/sigmoid, 5/3 for tanh
//! ```

use crate::layers::{Layer, LayerExt};
use crate::param::ParamKind;
use crate::rng::Rng;

/// The distribution weights are drawn from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// `N(0, gain^2 / fan_in)`.
    KaimingNormal {
        /// Nonlinearity gain.
        gain: f64,
    },
    /// `U(-b, b)`, `b = gain * sqrt(3 / fan_in)`.
    KaimingUniform {
        /// Nonlinearity gain.
        gain: f64,
    },
    /// `N(0, gain^2 * 2 / (fan_in + fan_out))`.
    XavierNormal {
        /// Nonlinearity gain.
        gain: f64,
    },
    /// `U(-b, b)`, `b = gain * sqrt(6 / (fan_in + fan_out))`.
    XavierUniform {
        /// Nonlinearity gain.
        gain: f64,
    },
}

/// The ReLU gain, `sqrt(2)`.
pub const RELU_GAIN: f64 = std::f64::consts::SQRT_2;
/// The tanh gain, `5/3`.
pub const TANH_GAIN: f64 = 5.0 / 3.0;

impl Init {
    /// One draw for a weight with these fans.
    fn sample(self, rng: &mut Rng, fan_in: usize, fan_out: usize) -> f32 {
        let fan_in = fan_in.max(1) as f64;
        let fan_avg = (fan_in + fan_out.max(1) as f64) / 2.0;
        let uniform = |rng: &mut Rng, bound: f64| (bound * (2.0 * rng.uniform_f64() - 1.0)) as f32;
        match self {
            Init::KaimingNormal { gain } => (gain / fan_in.sqrt() * rng.normal()) as f32,
            Init::KaimingUniform { gain } => uniform(rng, gain * (3.0 / fan_in).sqrt()),
            Init::XavierNormal { gain } => (gain / fan_avg.sqrt() * rng.normal()) as f32,
            Init::XavierUniform { gain } => uniform(rng, gain * (3.0 / fan_avg).sqrt()),
        }
    }
}

/// Draws every [`ParamKind::Weight`] of `layer` from `init`, in parameter order; other
/// parameters keep their constructor values.
pub fn init_weights<L: Layer + ?Sized>(layer: &mut L, init: Init, rng: &mut Rng) {
    for (_, p) in layer.named_params_mut() {
        if let ParamKind::Weight { fan_in, fan_out } = p.kind {
            for v in &mut p.value {
                *v = init.sample(rng, fan_in, fan_out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Linear;

    #[test]
    fn variance_follows_the_formula_and_seed_repeats() {
        let mut a = Linear::new(400, 300, true).unwrap();
        let mut b = Linear::new(400, 300, true).unwrap();
        init_weights(
            &mut a,
            Init::KaimingNormal { gain: RELU_GAIN },
            &mut Rng::new(5),
        );
        init_weights(
            &mut b,
            Init::KaimingNormal { gain: RELU_GAIN },
            &mut Rng::new(5),
        );
        let (wa, wb) = (&a.named_params()[0].1.value, &b.named_params()[0].1.value);
        assert_eq!(wa, wb);
        let n = wa.len() as f64;
        let var = wa.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n;
        let want = 2.0 / 400.0;
        // Sample variance of n normals: relative sd sqrt(2/n); allow 5 sd.
        assert!(
            (var / want - 1.0).abs() < 5.0 * (2.0 / n).sqrt(),
            "{var} vs {want}"
        );
        assert!(
            a.named_params()[1].1.value.iter().all(|&v| v == 0.0),
            "bias untouched"
        );

        init_weights(&mut a, Init::XavierUniform { gain: 1.0 }, &mut Rng::new(5));
        let bound = (6.0f64 / 700.0).sqrt() as f32;
        let w = &a.named_params()[0].1.value;
        assert!(w.iter().all(|v| v.abs() <= bound));
        assert!(w.iter().any(|v| v.abs() > 0.9 * bound));
    }
}
