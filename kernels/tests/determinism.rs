//! Every kernel gives bitwise-identical results for 1, 2 and 3 threads, on every pass, on
//! generated problems and on shapes large enough to split into many tasks and tiles.

use convnet_kernels::testing::{self, ConvProblem, DataKind};
use convnet_kernels::{Conv2d, ConvParams, Pass, registry};

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

fn bits(outputs: Vec<Vec<f32>>) -> Vec<Vec<u32>> {
    outputs
        .into_iter()
        .map(|o| o.into_iter().map(f32::to_bits).collect())
        .collect()
}

fn assert_thread_count_invariant(p: &ConvProblem) {
    for kernel in registry::available() {
        for pass in Pass::ALL {
            if kernel
                .supports(p.conv.geom(), p.conv.canonical_pass(pass))
                .is_err()
            {
                continue;
            }
            let run = || bits(testing::run_pass(kernel.as_ref(), p, pass).unwrap());
            let one = in_pool(1, run);
            for threads in [2, 3] {
                assert!(
                    one == in_pool(threads, run),
                    "{} {} differs between 1 and {threads} threads on {}",
                    kernel.name(),
                    pass.name(),
                    p.conv.params().id()
                );
            }
        }
    }
}

#[test]
fn generated_problems_are_thread_count_invariant() {
    for p in testing::sample_problems(40, 3, DataKind::Real) {
        assert_thread_count_invariant(&p);
    }
}

#[test]
fn large_problems_are_thread_count_invariant() {
    let conv = |n, c, hw, k, r, s, pad| ConvParams {
        stride: [s, s],
        padding: [pad; 4],
        ..ConvParams::new(n, c, hw, hw, k, [r, r])
    };
    for params in [
        conv(1, 32, 40, 24, 3, 1, 1),
        conv(2, 3, 64, 16, 5, 2, 2),
        conv(1, 48, 24, 40, 1, 1, 0),
        // Short reductions, pixel-vectorised backward-weight with the bias summed in its
        // tasks: an image in parts, and a batch in chunks of images.
        conv(1, 3, 112, 16, 3, 1, 1),
        conv(20, 1, 28, 6, 5, 1, 0),
        // 1x1 expansion: backward-weight with the operands swapped.
        conv(2, 32, 28, 128, 1, 1, 0),
        ConvParams {
            groups: 4,
            ..conv(2, 16, 20, 8, 3, 1, 1)
        },
        ConvParams {
            transposed: true,
            ..conv(1, 24, 12, 16, 4, 2, 1)
        },
        // The column form (more output channels than pixels; 32, whole columns, which
        // 16-lane passes keep in it): forward, 9 tiles of 12 channels in 3 slices on 1 and
        // 3 threads, 4 on 2 (AVX-512's tiles); backward-data, 6 tiles in 2 slices on 1 and
        // 2 threads, 3 on 3.
        conv(2, 64, 4, 100, 3, 1, 1),
        // Winograd F(6,3) with 1 Mi floats of transformed filters, whose 8 tiles fit one
        // chunk: its 4 blocks of 32 output channels (on AVX-512) in 1, 2 or 3 parts.
        conv(2, 128, 8, 128, 3, 1, 1),
        // The same with one block of output channels (on AVX-512): its 4 tiles in 1, 2 or
        // 3 chunks forward; backward-data's 512 output channels in 1, 2 or 3 parts.
        conv(1, 512, 8, 32, 3, 1, 1),
    ] {
        let p = ConvProblem::new(Conv2d::new(params).unwrap(), DataKind::Real, 11, true);
        assert_thread_count_invariant(&p);
    }
}
