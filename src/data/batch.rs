//! [`Pipeline`]: from byte images to a normalized `[n, c, h, w]` batch, centred on a canvas
//! of the model's input size (MNIST's 28x28 in LeNet-5's 32x32), with optional augmentation.
//!
//! ```text
//! value = (byte / 255 - mean[ch]) / std[ch]          mean, std: of the training split
//! canvas outside the image = (0 - mean[ch]) / std[ch]   (the value of a black pixel)
//! augmentation, per image: shift by (dy, dx) uniform in [-pad, pad]   (random crop of the
//!   image zero-padded by `pad`), then mirror left-right with probability 1/2
//! ```

use super::{DataError, Dataset};
use crate::rng::Rng;
use crate::{Error, Tensor};

/// Training-time augmentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Augment {
    /// Random crop from the image zero-padded by this many pixels on each side (0: off).
    pub crop_padding: usize,
    /// Random horizontal flip.
    pub hflip: bool,
}

/// Normalization statistics and canvas size for turning a data set into batches.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    input: [usize; 3],
    image: [usize; 3],
    mean: Vec<f32>,
    std: Vec<f32>,
}

/// Per-channel mean and standard deviation of the pixels (as fractions of 255), exact
/// integer sums.
fn channel_stats(data: &Dataset) -> (Vec<f32>, Vec<f32>) {
    let [c, h, w] = data.shape;
    let plane = h * w;
    let mut sums = vec![(0u64, 0u64); c];
    for image in data.images.chunks_exact(data.image_len()) {
        for (ch, p) in image.chunks_exact(plane).enumerate() {
            for &v in p {
                sums[ch].0 += v as u64;
                sums[ch].1 += (v as u64) * (v as u64);
            }
        }
    }
    let count = (data.len() * plane).max(1) as f64;
    sums.iter()
        .map(|&(s, s2)| {
            let mean = s as f64 / count;
            let var = (s2 as f64 / count - mean * mean).max(0.0);
            ((mean / 255.0) as f32, (var.sqrt() / 255.0).max(1e-6) as f32)
        })
        .unzip()
}

impl Pipeline {
    /// A pipeline for images of `train`'s shape into `input = [c, h, w]` batches, normalized
    /// with `train`'s statistics. The image must fit the canvas and have its channel count.
    pub fn new(train: &Dataset, input: [usize; 3]) -> Result<Pipeline, Error> {
        let [c, h, w] = train.shape;
        if c != input[0] || h > input[1] || w > input[2] {
            return Err(Error::Data(DataError::Mismatch {
                detail: format!(
                    "{c}x{h}x{w} images do not fit the model's {}x{}x{} input",
                    input[0], input[1], input[2]
                ),
            }));
        }
        let (mean, std) = channel_stats(train);
        Ok(Pipeline {
            input,
            image: train.shape,
            mean,
            std,
        })
    }

    /// Per-channel mean of the training pixels, in `[0, 1]`.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Per-channel standard deviation of the training pixels, in `[0, 1]`.
    pub fn std(&self) -> &[f32] {
        &self.std
    }

    /// The batch of images `indices` of `data` and their labels; augmented with draws from
    /// `rng`, image by image in index order, as `augment` asks.
    pub fn batch(
        &self,
        data: &Dataset,
        indices: &[usize],
        augment: Augment,
        rng: &mut Rng,
    ) -> Result<(Tensor, Vec<usize>), Error> {
        if data.shape != self.image {
            return Err(Error::Data(DataError::Mismatch {
                detail: format!(
                    "{:?} images in a pipeline built for {:?}",
                    data.shape, self.image
                ),
            }));
        }
        let [c, ih, iw] = self.input;
        let mut out = Vec::with_capacity(indices.len() * c * ih * iw);
        let mut labels = Vec::with_capacity(indices.len());
        let lut = self.lookup();
        for &i in indices {
            let pad = augment.crop_padding as isize;
            let shift = if pad > 0 {
                let span = 2 * augment.crop_padding + 1;
                [
                    rng.below(span) as isize - pad,
                    rng.below(span) as isize - pad,
                ]
            } else {
                [0, 0]
            };
            let flip = augment.hflip && rng.below(2) == 1;
            self.place(&lut, data.image(i), shift, flip, &mut out);
            labels.push(data.labels[i] as usize);
        }
        Ok((Tensor::new([indices.len(), c, ih, iw], out)?, labels))
    }

    /// The normalized value of each byte, per channel.
    fn lookup(&self) -> Vec<[f32; 256]> {
        self.mean
            .iter()
            .zip(&self.std)
            .map(|(&mean, &std)| std::array::from_fn(|b| (b as f32 / 255.0 - mean) / std))
            .collect()
    }

    /// Appends one normalized image, centred on the canvas, shifted by `[dy, dx]`, mirrored
    /// if `flip`.
    fn place(
        &self,
        lut: &[[f32; 256]],
        image: &[u8],
        [dy, dx]: [isize; 2],
        flip: bool,
        out: &mut Vec<f32>,
    ) {
        let [c, ih, iw] = self.input;
        let [_, h, w] = self.image;
        let top = ((ih - h) / 2) as isize + dy;
        let left = ((iw - w) / 2) as isize + dx;
        for (ch, lut) in lut.iter().enumerate().take(c) {
            let plane = &image[ch * h * w..(ch + 1) * h * w];
            for y in 0..ih as isize {
                let sy = y - top;
                for x in 0..iw as isize {
                    let sx = x - left;
                    let inside = (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                    let byte = if inside {
                        let sx = if flip { w as isize - 1 - sx } else { sx };
                        plane[sy as usize * w + sx as usize]
                    } else {
                        0
                    };
                    out.push(lut[byte as usize]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Dataset {
        // Two 1x2x2 images.
        Dataset::new(vec![0, 255, 255, 0, 10, 20, 30, 40], vec![3, 7], [1, 2, 2]).unwrap()
    }

    #[test]
    fn centres_normalizes_and_flips() {
        let data = tiny();
        let p = Pipeline::new(&data, [1, 4, 4]).unwrap();
        let (x, labels) = p
            .batch(&data, &[1, 0], Augment::default(), &mut Rng::new(0))
            .unwrap();
        assert_eq!(labels, vec![7, 3]);
        assert_eq!(x.shape(), [2, 1, 4, 4]);
        let norm = |b: u8| (b as f32 / 255.0 - p.mean()[0]) / p.std()[0];
        // Image 1 sits at rows 1..3, cols 1..3 of the first sample.
        assert_eq!(x.data()[5], norm(10));
        assert_eq!(x.data()[10], norm(40));
        assert_eq!(x.data()[0], norm(0));
        // Mirrored: with a flip and no shift, [0, 255] becomes [255, 0].
        let flip = Augment {
            crop_padding: 0,
            hflip: true,
        };
        let mut rng = Rng::new(1);
        let mut saw_flip = false;
        for _ in 0..20 {
            let (x, _) = p.batch(&data, &[0], flip, &mut rng).unwrap();
            saw_flip |= x.data()[5] == norm(255);
        }
        assert!(saw_flip);
        assert!(Pipeline::new(&data, [1, 1, 1]).is_err());
        assert!(Pipeline::new(&data, [3, 4, 4]).is_err());
    }

    #[test]
    fn stats_are_exact() {
        let p = Pipeline::new(&tiny(), [1, 2, 2]).unwrap();
        let bytes = [0.0f64, 255.0, 255.0, 0.0, 10.0, 20.0, 30.0, 40.0];
        let mean = bytes.iter().sum::<f64>() / 8.0;
        let var = bytes.iter().map(|b| (b - mean).powi(2)).sum::<f64>() / 8.0;
        assert!((p.mean()[0] as f64 - mean / 255.0).abs() < 1e-7);
        assert!((p.std()[0] as f64 - var.sqrt() / 255.0).abs() < 1e-6);
    }
}
