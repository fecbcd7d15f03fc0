//! The layer API and the file readers on arbitrary input: IDX (raw or gzipped), CIFAR-10
//! binary and safetensors checkpoints from arbitrary bytes, and conv / pool / linear layers
//! built from arbitrary (bounded) arguments and run on arbitrarily shaped tensors. Every
//! call returns `Ok` or a named `Err`; nothing panics.
#![no_main]

use std::io::Write;

use arbitrary::Arbitrary;
use convnet::checkpoint::Checkpoint;
use convnet::data::{read_cifar10, read_idx};
use convnet::kernels::pool::PoolParams;
use convnet::layers::{AvgPool2d, Conv2d, ConvTranspose2d, Layer, Linear, MaxPool2d, Padding};
use convnet::rng::Rng;
use convnet::{Tensor, layers::Ctx};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Case {
    File {
        kind: u8,
        gzip: bool,
        bytes: Vec<u8>,
    },
    Layer {
        kind: u8,
        args: [u8; 12],
        shape: [u8; 4],
        train: bool,
    },
}

fn file_case(kind: u8, gzip: bool, bytes: &[u8]) {
    let dir = std::env::temp_dir().join(format!("convnet-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let name = match (kind % 3, gzip) {
        (0, true) => "f-idx3-ubyte.gz",
        (0, false) => "f-idx3-ubyte",
        (1, _) => "test_batch.bin",
        _ => "weights.safetensors",
    };
    let path = dir.join(name);
    let Ok(mut f) = std::fs::File::create(&path) else {
        return;
    };
    if gzip && kind % 3 == 0 {
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        let _ = enc.write_all(bytes);
        let _ = enc.finish();
    } else {
        let _ = f.write_all(bytes);
    }
    match kind % 3 {
        0 => drop(read_idx(&path)),
        1 => drop(read_cifar10(&path)),
        _ => drop(Checkpoint::load(&path)),
    }
}

fn layer_case(kind: u8, a: &[u8; 12], shape: [u8; 4], train: bool) {
    let s = |i: usize| a[i] as usize % 6;
    let layer: Result<Box<dyn Layer>, _> = match kind % 5 {
        0 => Conv2d::builder(s(0), s(1), [s(2), s(3)])
            .stride([s(4), s(5)])
            .padding(Padding::Explicit([s(6), s(7), s(8), s(9)]))
            .dilation([s(10), s(11) % 3])
            .groups(a[0] as usize % 3)
            .build()
            .map(|l| Box::new(l) as Box<dyn Layer>),
        1 => ConvTranspose2d::builder(s(0), s(1), [s(2), s(3)])
            .stride([s(4), s(5)])
            .padding(Padding::Symmetric([s(6), s(7)]))
            .output_padding([s(8) % 3, s(9) % 3])
            .build()
            .map(|l| Box::new(l) as Box<dyn Layer>),
        2 => Ok(Box::new(MaxPool2d::new(PoolParams {
            kernel: [s(0), s(1)],
            stride: [s(2), s(3)],
            padding: [s(4), s(5)],
            ceil_mode: a[6] % 2 == 0,
        })) as Box<dyn Layer>),
        3 => Ok(Box::new(AvgPool2d::new(
            PoolParams {
                kernel: [s(0), s(1)],
                stride: [s(2), s(3)],
                padding: [s(4), s(5)],
                ceil_mode: a[6] % 2 == 0,
            },
            a[7] % 2 == 0,
        )) as Box<dyn Layer>),
        _ => Linear::new(a[0] as usize % 40, a[1] as usize % 40, a[2] % 2 == 0)
            .map(|l| Box::new(l) as Box<dyn Layer>),
    };
    let Ok(mut layer) = layer else { return };
    let shape = shape.map(|d| d as usize % 9);
    let x = Tensor::zeros(shape);
    let mut ctx = if train {
        Ctx::train(Rng::new(1))
    } else {
        Ctx::eval()
    };
    let _ = layer.output_shape(shape);
    if let Ok(y) = layer.forward(x, &mut ctx) {
        let grad = Tensor::zeros(y.shape());
        let _ = layer.backward(grad);
    }
}

fuzz_target!(|c: Case| match c {
    Case::File { kind, gzip, bytes } => file_case(kind, gzip, &bytes),
    Case::Layer {
        kind,
        args,
        shape,
        train,
    } => layer_case(kind, &args, shape, train),
});
