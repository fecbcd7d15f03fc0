//! Losses, each returning the mean loss over the batch and its gradient with respect to the
//! network output.
//!
//! ```text
//! softmax cross-entropy:  loss = mean_b ( logsumexp(z_b) - z_b[label_b] )
//!                         dz_b = (softmax(z_b) - onehot(label_b)) / n
//! mean squared error:     loss = mean_i (y_i - t_i)^2,   dy_i = 2 (y_i - t_i) / len
//! ```
//!
//! Cross-entropy subtracts each row's maximum before exponentiating, so no logit overflows;
//! sums accumulate in f64 in index order.

use crate::{Error, Tensor};

/// The value of a loss on a batch, its gradient, and (for classification) how many samples
/// the output classified right.
#[derive(Clone, Debug)]
pub struct LossOutput {
    /// Mean loss over the batch.
    pub loss: f64,
    /// Gradient with respect to the network output.
    pub grad: Tensor,
    /// Samples whose largest logit is their label (cross-entropy only; 0 for MSE).
    pub correct: usize,
}

/// The index of the largest value (the first on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Softmax cross-entropy of logits `[n, classes, 1, 1]` (any `[n, c, h, w]` flattens per
/// sample) against class labels.
pub fn softmax_cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<LossOutput, Error> {
    let (n, classes) = (logits.n(), logits.sample_len());
    if labels.len() != n {
        return Err(Error::Shape {
            layer: "softmax_cross_entropy",
            detail: format!("{} labels for a batch of {n}", labels.len()),
        });
    }
    if let Some(&bad) = labels.iter().find(|&&l| l >= classes) {
        return Err(Error::Shape {
            layer: "softmax_cross_entropy",
            detail: format!("label {bad} out of range for {classes} classes"),
        });
    }
    let mut grad = Tensor::zeros(logits.shape());
    let (mut total, mut correct) = (0.0f64, 0usize);
    let rows = logits.data().chunks_exact(classes.max(1));
    for ((row, g), &label) in rows
        .zip(grad.data_mut().chunks_exact_mut(classes.max(1)))
        .zip(labels)
    {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = row.iter().map(|&z| (z as f64 - max).exp()).sum();
        total += sum.ln() + max - row[label] as f64;
        for (gi, &z) in g.iter_mut().zip(row) {
            *gi = (((z as f64 - max).exp() / sum) / n as f64) as f32;
        }
        g[label] -= 1.0 / n as f32;
        correct += usize::from(argmax(row) == label);
    }
    Ok(LossOutput {
        loss: if n == 0 { 0.0 } else { total / n as f64 },
        grad,
        correct,
    })
}

/// Mean squared error between `output` and a `target` of the same shape.
pub fn mse(output: &Tensor, target: &Tensor) -> Result<LossOutput, Error> {
    if output.shape() != target.shape() {
        return Err(Error::Shape {
            layer: "mse",
            detail: format!(
                "output {:?} and target {:?} differ",
                output.shape(),
                target.shape()
            ),
        });
    }
    let len = output.len().max(1) as f64;
    let mut grad = Tensor::zeros(output.shape());
    let mut total = 0.0f64;
    let pairs = output.data().iter().zip(target.data());
    for (g, (&y, &t)) in grad.data_mut().iter_mut().zip(pairs) {
        let d = y as f64 - t as f64;
        total += d * d;
        *g = (2.0 * d / len) as f32;
    }
    Ok(LossOutput {
        loss: total / len,
        grad,
        correct: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_is_stable_and_matches_the_definition() {
        let logits = Tensor::new([2, 3, 1, 1], vec![1000.0, 0.0, -1000.0, 1.0, 2.0, 3.0]).unwrap();
        let out = softmax_cross_entropy(&logits, &[0, 1]).unwrap();
        let row2 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() - 2.0;
        assert!((out.loss - row2 / 2.0).abs() < 1e-12, "{}", out.loss);
        assert_eq!(out.correct, 1);
        // Gradient rows sum to zero.
        for row in out.grad.data().chunks(3) {
            assert!(row.iter().sum::<f32>().abs() < 1e-7);
        }
        assert!(softmax_cross_entropy(&logits, &[0, 3]).is_err());
        assert!(softmax_cross_entropy(&logits, &[0]).is_err());
    }

    #[test]
    fn mse_matches_the_definition() {
        let y = Tensor::new([1, 2, 1, 1], vec![1.0, 3.0]).unwrap();
        let t = Tensor::new([1, 2, 1, 1], vec![0.0, 1.0]).unwrap();
        let out = mse(&y, &t).unwrap();
        assert_eq!(out.loss, 2.5);
        assert_eq!(out.grad.data(), &[1.0, 2.0]);
    }
}
