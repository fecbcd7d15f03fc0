//! im2col overhead: each shape's im2col forward next to a bare `matrixmultiply::sgemm` of
//! the same `M x N x K` (M = c_out/g, N = oh*ow, K = (c_in/g)*kh*kw, once per image and
//! group), single-threaded, both reported in FLOP/s: the gap between the two rows of a shape
//! is what the column packing and tiling cost.

use std::hint::black_box;
use std::time::Duration;

use convnet_kernels::testing::{DataKind, fill};
use convnet_kernels::{Algorithm, Conv2d, ConvParams, Pass};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn conv(n: usize, c: usize, hw: usize, k: usize, r: usize, s: usize, pad: usize) -> ConvParams {
    ConvParams {
        stride: [s, s],
        padding: [pad; 4],
        ..ConvParams::new(n, c, hw, hw, k, [r, r])
    }
}

/// Shapes from real networks, named after their source.
fn shapes() -> Vec<(&'static str, ConvParams)> {
    vec![
        ("resnet50_conv2_3x3", conv(1, 64, 56, 64, 3, 1, 1)),
        ("resnet50_conv4_3x3", conv(1, 256, 14, 256, 3, 1, 1)),
        ("resnet50_conv5_3x3_n8", conv(8, 512, 7, 512, 3, 1, 1)),
        ("vgg16_conv3_1", conv(1, 128, 56, 256, 3, 1, 1)),
        ("resnet50_conv3_3x3s2", conv(1, 128, 56, 128, 3, 2, 1)),
        (
            "deeplab_dilated3x3",
            ConvParams {
                dilation: [2, 2],
                ..conv(1, 256, 28, 256, 3, 1, 2)
            },
        ),
        ("resnet50_conv2_1x1", conv(1, 64, 56, 256, 1, 1, 0)),
        ("alexnet_conv1_11x11s4", conv(1, 3, 224, 64, 11, 4, 2)),
        ("lenet5_c1_n64", conv(64, 1, 32, 6, 5, 1, 0)),
        (
            "dcgan_4x4s2_transposed",
            ConvParams {
                transposed: true,
                ..conv(1, 256, 16, 128, 4, 2, 1)
            },
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("im2col_vs_gemm");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for (name, params) in shapes() {
        let conv = Conv2d::new(params).unwrap();
        let g = conv.geom();
        group.throughput(Throughput::Elements(conv.flops()));
        let x = fill(1, conv.input_len(), DataKind::Real);
        let w = fill(2, conv.weight_len(), DataKind::Real);
        let mut y = vec![0.0; conv.output_len()];
        let kernel = conv.kernel(Algorithm::Im2col, Pass::Forward).unwrap();
        group.bench_function(BenchmarkId::new("im2col", name), |b| {
            single.install(|| {
                b.iter(|| {
                    conv.forward_with(kernel, black_box(&x), &w, None, &mut y)
                        .unwrap()
                })
            })
        });
        // The same GEMMs without the packing: per image and group, (M x K) * (K x N).
        let [oh, ow] = g.output_hw();
        let [kh, kw] = g.kernel_hw();
        let (m, k, n) = (g.c_out_g(), g.c_in_g() * kh * kw, oh * ow);
        let a = fill(5, m * k, DataKind::Real);
        let bm = fill(6, k * n, DataKind::Real);
        let mut cm = vec![0.0; m * n];
        group.bench_function(BenchmarkId::new("sgemm", name), |b| {
            b.iter(|| {
                for _ in 0..g.n() * g.groups() {
                    convnet_kernels::gemm::gemm_dense(
                        m,
                        k,
                        n,
                        1.0,
                        black_box(&a),
                        false,
                        &bm,
                        false,
                        0.0,
                        &mut cm,
                    )
                    .unwrap();
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
