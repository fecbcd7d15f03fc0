//! A two-conv-layer CNN learns a generated four-class image problem (a horizontal, vertical,
//! diagonal or anti-diagonal stroke at a random place, with noise) through the library's own
//! training loop: the loss falls from chance (ln 4 = 1.386) below a bound within a fixed number
//! of steps, the same seed repeats every loss bit for bit, and 1 and 2 threads agree bit
//! for bit; in f32 and in bf16 storage.

use convnet::data::{Augment, Dataset, Pipeline};
use convnet::init::{Init, RELU_GAIN, init_weights};
use convnet::kernels::pool::PoolParams;
use convnet::layers::{
    AdaptiveAvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, Padding, Relu, Sequential, Storage,
};
use convnet::optim::{LrSchedule, Sgd, SgdConfig};
use convnet::rng::Rng;
use convnet::train::{TrainConfig, evaluate, train_epoch};

const SIDE: usize = 8;
const EPOCHS: usize = 3;
const BATCH: usize = 16;
const TRAIN: usize = 512;
/// Mean training loss of the last epoch must fall below this (chance is ln 4 = 1.386).
const LOSS_BOUND: f64 = 0.3;

/// `n` images of a 5-pixel stroke of class `label % 4` at a random place, on noise.
fn strokes(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut images = Vec::with_capacity(n * SIDE * SIDE);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % 4;
        let mut img: Vec<u8> = (0..SIDE * SIDE).map(|_| rng.below(120) as u8).collect();
        let (y0, x0) = (rng.below(SIDE - 4), rng.below(SIDE - 4));
        for t in 0..5 {
            let (y, x) = match class {
                0 => (y0 + 2, x0 + t),
                1 => (y0 + t, x0 + 2),
                2 => (y0 + t, x0 + t),
                _ => (y0 + t, x0 + 4 - t),
            };
            img[y * SIDE + x] = 140 + rng.below(116) as u8;
        }
        images.extend(img);
        labels.push(class as u8);
    }
    Dataset::new(images, labels, [1, SIDE, SIDE]).unwrap()
}

fn tiny_cnn(seed: u64) -> Sequential {
    let mut net = Sequential::new()
        .with(
            Conv2d::builder(1, 8, [3, 3])
                .padding(Padding::Symmetric([1, 1]))
                .build()
                .unwrap(),
        )
        .with(Relu::new())
        .with(MaxPool2d::new(PoolParams::new([2, 2])))
        .with(Conv2d::builder(8, 16, [3, 3]).build().unwrap())
        .with(Relu::new())
        .with(AdaptiveAvgPool2d::global())
        .with(Flatten::new())
        .with(Linear::new(16, 4, true).unwrap());
    init_weights(
        &mut net,
        Init::KaimingNormal { gain: RELU_GAIN },
        &mut Rng::new(seed),
    );
    net
}

/// The running training loss after every step, and the final test accuracy.
fn run(seed: u64) -> (Vec<f64>, f64) {
    run_in(seed, Storage::F32)
}

fn run_in(seed: u64, storage: Storage) -> (Vec<f64>, f64) {
    let (train, test) = (strokes(TRAIN, 1), strokes(256, 2));
    let pipeline = Pipeline::new(&train, [1, SIDE, SIDE]).unwrap();
    let mut net = tiny_cnn(seed);
    let mut opt = Sgd::new(SgdConfig {
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
    })
    .unwrap();
    let config = TrainConfig {
        epochs: EPOCHS,
        batch: BATCH,
        lr: 0.05,
        schedule: LrSchedule::Constant,
        augment: Augment::default(),
        seed,
        storage,
    };
    let mut losses = Vec::new();
    for epoch in 0..EPOCHS {
        train_epoch(
            &mut net,
            &mut opt,
            &pipeline,
            &train,
            &config,
            epoch,
            &mut |s| losses.push(s.loss),
        )
        .unwrap();
    }
    let acc = evaluate(&mut net, &pipeline, &test, 64, storage)
        .unwrap()
        .acc;
    (losses, acc)
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn loss_falls_below_bound_and_runs_repeat_bit_for_bit() {
    let (losses, acc) = in_pool(2, || run(7));
    let steps_per_epoch = TRAIN.div_ceil(BATCH);
    assert_eq!(losses.len(), EPOCHS * steps_per_epoch);
    let first = losses[0];
    // The running mean at an epoch's last step is that epoch's mean loss.
    let last_epoch = *losses.last().unwrap();
    println!("first step loss {first:.4}, last epoch mean loss {last_epoch:.4}, test acc {acc:.3}");
    assert!(
        first > 1.0,
        "the first step should be near chance, got {first}"
    );
    assert!(
        last_epoch < LOSS_BOUND,
        "mean loss of epoch {EPOCHS} is {last_epoch}, not below {LOSS_BOUND}"
    );
    assert!(acc > 0.9, "test accuracy {acc}");

    let (again, acc_again) = in_pool(2, || run(7));
    assert!(
        losses
            .iter()
            .zip(&again)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "same seed, different losses"
    );
    assert_eq!(acc.to_bits(), acc_again.to_bits());

    let (one_thread, _) = in_pool(1, || run(7));
    assert!(
        losses
            .iter()
            .zip(&one_thread)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "1 and 2 threads give different losses"
    );

    let (other_seed, _) = in_pool(2, || run(8));
    assert_ne!(losses, other_seed, "the seed must matter");
}

/// Mixed precision: bf16 activations, weights and gradients with f32 master weights learn as
/// well, are as deterministic, and really run in bf16 (the losses differ from f32's).
#[test]
fn bf16_storage_trains_to_the_same_bound_deterministically() {
    let (losses, acc) = in_pool(2, || run_in(7, Storage::Bf16));
    let last_epoch = *losses.last().unwrap();
    println!("bf16: last epoch mean loss {last_epoch:.4}, test acc {acc:.3}");
    assert!(
        last_epoch < LOSS_BOUND,
        "bf16: mean loss of epoch {EPOCHS} is {last_epoch}, not below {LOSS_BOUND}"
    );
    assert!(acc > 0.9, "bf16: test accuracy {acc}");
    let (one_thread, acc_one) = in_pool(1, || run_in(7, Storage::Bf16));
    assert!(
        losses
            .iter()
            .zip(&one_thread)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "bf16: 1 and 2 threads give different losses"
    );
    assert_eq!(acc.to_bits(), acc_one.to_bits());
    let (f32_losses, _) = in_pool(2, || run(7));
    assert_ne!(losses, f32_losses, "bf16 storage computed exactly as f32");
}
