//! Criterion benches: one group per shape family, every available kernel x pass that supports
//! the shape, `Throughput::Elements(FLOPs)` so "elem/s" reads as FLOP/s (the direct-conv FLOP
//! count for every algorithm, Winograd included). Single-threaded unless the group name ends
//! in `/threads`. Only `conv2d/tiny` benchmarks the reference.
//!
//! `cargo bench --bench conv2d` runs the forward pass of every family; set
//! `CONVNET_BENCH_PASSES=all` for the backward passes too, and filter as usual
//! (`cargo bench --bench conv2d -- 3x3s1`).

use std::hint::black_box;
use std::time::Duration;

use convnet_kernels::testing::{DataKind, fill};
use convnet_kernels::{Algorithm, Conv2d, ConvKernel, ConvParams, Pass, registry};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// A conv from a real network.
fn conv(n: usize, c: usize, hw: usize, k: usize, r: usize, s: usize, pad: usize) -> ConvParams {
    ConvParams {
        stride: [s, s],
        padding: [pad; 4],
        ..ConvParams::new(n, c, hw, hw, k, [r, r])
    }
}

fn families() -> Vec<(&'static str, Vec<ConvParams>)> {
    vec![
        // LeNet-5 C1/C3 (LeCun 1998), a batch of 64.
        (
            "conv2d/tiny",
            vec![conv(1, 1, 32, 6, 5, 1, 0), conv(1, 6, 14, 16, 5, 1, 0)],
        ),
        // ResNet-50 conv2_x / conv4_x / conv5_x 3x3; VGG-16 conv3 (56x56 128->256).
        (
            "conv2d/3x3s1",
            vec![
                conv(1, 64, 56, 64, 3, 1, 1),
                conv(1, 256, 14, 256, 3, 1, 1),
                conv(8, 512, 7, 512, 3, 1, 1),
                conv(1, 128, 56, 256, 3, 1, 1),
                conv(16, 64, 32, 64, 3, 1, 1),
            ],
        ),
        // ResNet-50 conv3_1 3x3 stride 2.
        ("conv2d/3x3s2", vec![conv(1, 128, 56, 128, 3, 2, 1)]),
        // ResNet-50 bottleneck 1x1 (conv2_x expand, conv4_x reduce).
        (
            "conv2d/1x1",
            vec![
                conv(1, 64, 56, 256, 1, 1, 0),
                conv(1, 1024, 14, 256, 1, 1, 0),
            ],
        ),
        // ResNet stem 7x7 s2; AlexNet conv1 11x11 s4; LeNet-5 C1 at batch 64.
        (
            "conv2d/large_kernel",
            vec![
                conv(1, 3, 224, 64, 7, 2, 3),
                conv(1, 3, 224, 64, 11, 4, 2),
                conv(64, 1, 32, 6, 5, 1, 0),
            ],
        ),
        // DeepLab-style dilated 3x3 (rate 2) at 28x28x256.
        (
            "conv2d/dilated3x3",
            vec![ConvParams {
                dilation: [2, 2],
                ..conv(1, 256, 28, 256, 3, 1, 2)
            }],
        ),
        // MobileNet-style depthwise 3x3, 256 channels at 28x28.
        (
            "conv2d/dw3x3",
            vec![ConvParams {
                groups: 256,
                ..conv(1, 256, 28, 256, 3, 1, 1)
            }],
        ),
        // DCGAN generator 4x4 s2 transposed (256 -> 128, 16x16 -> 32x32).
        (
            "conv_transpose2d/4x4s2",
            vec![ConvParams {
                transposed: true,
                ..conv(1, 256, 16, 128, 4, 2, 1)
            }],
        ),
    ]
}

fn passes() -> Vec<Pass> {
    match std::env::var("CONVNET_BENCH_PASSES").as_deref() {
        Ok("all") => Pass::ALL.to_vec(),
        _ => vec![Pass::Forward],
    }
}

fn run_pass(kernel: &dyn ConvKernel, conv: &Conv2d, pass: Pass, bufs: &mut Buffers) {
    let r = match pass {
        Pass::Forward => conv.forward_with(kernel, &bufs.x, &bufs.w, Some(&bufs.b), &mut bufs.y),
        Pass::BackwardData => conv.backward_data_with(kernel, &bufs.y, &bufs.w, &mut bufs.x),
        Pass::BackwardWeight => {
            conv.backward_weight_with(kernel, &bufs.x, &bufs.y, &mut bufs.w, Some(&mut bufs.b))
        }
    };
    r.expect("supported geometry");
}

struct Buffers {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    y: Vec<f32>,
}

fn bench(c: &mut Criterion) {
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for (family, shapes) in families() {
        let mut group = c.benchmark_group(family);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        for params in shapes {
            let conv = Conv2d::new(params).expect("bench shapes are valid");
            group.throughput(Throughput::Elements(conv.flops()));
            let mut bufs = Buffers {
                x: fill(1, conv.input_len(), DataKind::Real),
                w: fill(2, conv.weight_len(), DataKind::Real),
                b: fill(3, conv.bias_len(), DataKind::Real),
                y: fill(4, conv.output_len(), DataKind::Real),
            };
            for pass in passes() {
                for kernel in registry::available() {
                    let is_reference = kernel.algorithm() == Algorithm::Reference;
                    if (is_reference && family != "conv2d/tiny")
                        || kernel
                            .supports(conv.geom(), conv.canonical_pass(pass))
                            .is_err()
                    {
                        continue;
                    }
                    let id =
                        BenchmarkId::new(format!("{}/{}", kernel.name(), pass.name()), params.id());
                    group.bench_function(id, |b| {
                        single.install(|| {
                            b.iter(|| run_pass(kernel.as_ref(), black_box(&conv), pass, &mut bufs))
                        })
                    });
                }
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
