//! Criterion benches: one group per shape family, every available kernel that supports the
//! shape, `Throughput::Elements(FLOPs)` so "elem/s" reads as FLOP/s (the direct-conv FLOP
//! count for every algorithm, Winograd included). Groups `conv2d/<family>` run on one
//! thread; `conv2d/threads/<family>` on the whole rayon pool. Only `conv2d/tiny` benchmarks
//! the reference.
//!
//! `cargo bench --bench conv2d` runs the forward pass of the best-ISA kernels (a few
//! minutes). The full sweep (every pass, every kernel including the portable, scalar and
//! test-only ones): `CONVNET_BENCH_FULL=1 cargo bench --bench conv2d`. Filter as usual:
//! `cargo bench --bench conv2d -- 3x3s1`. Compare runs with `--save-baseline NAME` /
//! `--baseline NAME`.

use std::hint::black_box;
use std::time::Duration;

use convnet_kernels::testing::{DataKind, fill};
use convnet_kernels::{Algorithm, Conv2d, ConvKernel, ConvParams, Isa, Pass, registry};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn conv(n: usize, c: usize, hw: usize, k: usize, r: usize, s: usize, pad: usize) -> ConvParams {
    ConvParams {
        stride: [s, s],
        padding: [pad; 4],
        ..ConvParams::new(n, c, hw, hw, k, [r, r])
    }
}

/// Shape families from real networks; the comment names the source.
fn families() -> Vec<(&'static str, Vec<ConvParams>)> {
    vec![
        // LeNet-5 C1 and C3 (LeCun et al. 1998), one image.
        (
            "tiny",
            vec![conv(1, 1, 32, 6, 5, 1, 0), conv(1, 6, 14, 16, 5, 1, 0)],
        ),
        // ResNet-50 conv2_x and conv4_x 3x3; VGG-16 conv3_1.
        (
            "3x3s1",
            vec![
                conv(1, 64, 56, 64, 3, 1, 1),
                conv(1, 256, 14, 256, 3, 1, 1),
                conv(1, 128, 56, 256, 3, 1, 1),
            ],
        ),
        // ResNet-50 conv3_1, the strided 3x3.
        ("3x3s2", vec![conv(1, 128, 56, 128, 3, 2, 1)]),
        // ResNet-50 bottleneck 1x1s (conv2_x expand, conv4_x reduce).
        (
            "1x1",
            vec![
                conv(1, 64, 56, 256, 1, 1, 0),
                conv(1, 1024, 14, 256, 1, 1, 0),
            ],
        ),
        // AlexNet conv2 5x5 (27x27, 64 -> 192).
        ("5x5", vec![conv(1, 64, 27, 192, 5, 1, 2)]),
        // ResNet stem 7x7 stride 2.
        ("7x7s2", vec![conv(1, 3, 224, 64, 7, 2, 3)]),
        // AlexNet conv1 11x11 stride 4.
        ("11x11s4", vec![conv(1, 3, 224, 64, 11, 4, 2)]),
        // DeepLab-style dilated 3x3 (rate 2) at 28x28x256.
        (
            "dilated3x3",
            vec![ConvParams {
                dilation: [2, 2],
                ..conv(1, 256, 28, 256, 3, 1, 2)
            }],
        ),
        // MobileNet-style depthwise 3x3, 256 channels at 28x28.
        (
            "dw3x3",
            vec![ConvParams {
                groups: 256,
                ..conv(1, 256, 28, 256, 3, 1, 1)
            }],
        ),
        // ResNeXt-50 conv3 grouped 3x3 (32 groups, 28x28, 256 channels).
        (
            "grouped3x3",
            vec![ConvParams {
                groups: 32,
                ..conv(1, 256, 28, 256, 3, 1, 1)
            }],
        ),
        // DCGAN generator 4x4 stride-2 transposed conv (256 -> 128, 16x16 -> 32x32).
        (
            "transposed4x4s2",
            vec![ConvParams {
                transposed: true,
                ..conv(1, 256, 16, 128, 4, 2, 1)
            }],
        ),
        // ResNet-50 conv5_x 3x3 at batch 8; a CIFAR ResNet layer at batch 16.
        (
            "batch",
            vec![conv(8, 512, 7, 512, 3, 1, 1), conv(16, 64, 32, 64, 3, 1, 1)],
        ),
    ]
}

fn full() -> bool {
    std::env::var("CONVNET_BENCH_FULL").is_ok_and(|v| v == "1")
}

/// The kernels a family benchmarks: the best ISA of each kernel family by default, all of
/// them in the full sweep; the reference only in `tiny`.
fn kernels(family: &str) -> Vec<&'static dyn ConvKernel> {
    let best = Isa::detect();
    registry::available()
        .iter()
        .map(|k| k.as_ref())
        .filter(|k| (k.algorithm() != Algorithm::Reference) || family == "tiny")
        .filter(|k| {
            full()
                || k.isa() == best
                || k.algorithm() == Algorithm::Im2col
                || k.algorithm() == Algorithm::Reference
        })
        .collect()
}

struct Buffers {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    y: Vec<f32>,
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

fn bench_family(
    c: &mut Criterion,
    group_name: String,
    family: &str,
    shapes: &[ConvParams],
    pool: &rayon::ThreadPool,
) {
    let mut group = c.benchmark_group(group_name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(800));
    let passes = if full() {
        Pass::ALL.to_vec()
    } else {
        vec![Pass::Forward]
    };
    for params in shapes {
        let conv = Conv2d::new(*params).expect("bench shapes are valid");
        group.throughput(Throughput::Elements(conv.flops()));
        let mut bufs = Buffers {
            x: fill(1, conv.input_len(), DataKind::Real),
            w: fill(2, conv.weight_len(), DataKind::Real),
            b: fill(3, conv.bias_len(), DataKind::Real),
            y: fill(4, conv.output_len(), DataKind::Real),
        };
        for &pass in &passes {
            for kernel in kernels(family) {
                if kernel
                    .supports(conv.geom(), conv.canonical_pass(pass))
                    .is_err()
                {
                    continue;
                }
                let id =
                    BenchmarkId::new(format!("{}/{}", kernel.name(), pass.name()), params.id());
                group.bench_function(id, |b| {
                    pool.install(|| b.iter(|| run_pass(kernel, black_box(&conv), pass, &mut bufs)))
                });
            }
        }
    }
    group.finish();
}

fn bench(c: &mut Criterion) {
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("thread pool");
    let all = rayon::ThreadPoolBuilder::new()
        .build()
        .expect("thread pool");
    for (family, shapes) in families() {
        bench_family(c, format!("conv2d/{family}"), family, &shapes, &single);
    }
    for (family, shapes) in families()
        .into_iter()
        .filter(|(f, _)| ["3x3s1", "1x1", "batch"].contains(f))
    {
        bench_family(c, format!("conv2d/threads/{family}"), family, &shapes, &all);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
