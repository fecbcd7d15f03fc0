//! Prepared weights change nothing but speed: for every kernel that prepares, the prepared
//! passes equal the unprepared ones bit for bit, the fused ReLU equals a ReLU afterwards, and
//! a `ConvPlan` equals the one-shot API for every algorithm.

use convnet_kernels::testing::{self, ConvProblem, DataKind};
use convnet_kernels::{Algorithm, Conv2d, ConvError, ConvParams, Pass, WinogradTile, registry};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn check_prepared(p: &ConvProblem) {
    let conv = &p.conv;
    let g = conv.geom();
    for kernel in registry::available() {
        for pass in [Pass::Forward, Pass::BackwardData] {
            let cpass = conv.canonical_pass(pass);
            if kernel.supports(g, cpass).is_err() {
                continue;
            }
            let Some(prepared) = kernel.prepare(g, cpass, &p.weight) else {
                continue;
            };
            let want = testing::run_pass(kernel.as_ref(), p, pass)
                .unwrap()
                .swap_remove(0);
            let (src, bias, len) = match pass {
                Pass::Forward => (&p.x, p.bias.as_deref(), conv.output_len()),
                _ => (&p.grad_y, None, conv.input_len()),
            };
            for relu in [false, true] {
                let mut got = vec![f32::NAN; len];
                match cpass {
                    Pass::Forward => {
                        kernel.forward_prepared(g, src, &prepared, bias, relu, &mut got)
                    }
                    _ => {
                        kernel.backward_data_prepared(g, src, &prepared, bias, &mut got);
                        if relu {
                            got.iter_mut().for_each(|v| *v = v.max(0.0));
                        }
                    }
                }
                let want: Vec<f32> = want[..len]
                    .iter()
                    .map(|&v| if relu { v.max(0.0) } else { v })
                    .collect();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{} {} relu={relu} on {}",
                    kernel.name(),
                    pass.name(),
                    conv.params().id()
                );
            }
        }
    }
}

/// [`check_prepared`] on one geometry, real-valued data from `seed`, with a bias.
fn check_prepared_params(params: ConvParams, seed: u64) {
    let conv = Conv2d::new(params).unwrap();
    check_prepared(&ConvProblem::new(conv, DataKind::Real, seed, true));
}

#[test]
fn prepared_passes_equal_unprepared() {
    for p in testing::sample_problems(120, 21, DataKind::Real) {
        check_prepared(&p);
    }
}

#[test]
fn pointwise_prepared_passes_equal_unprepared() {
    // The direct kernel's pointwise form (1x1, unpadded, >= 256 output pixels, >= 196 on
    // backward-data), which the random samples do not reach: a partial row tile, a partial
    // vector column, groups, a strided layer (its subsampled planes), a reduction of several chunks (bias and ReLU
    // on the last one's in-place store), a 14x14 plane (pointwise on backward-data only).
    for (n, c, hw, k, groups, s) in [
        (1, 20, 16, 30, 1, 1),
        (1, 300, 16, 20, 1, 1),
        (1, 24, 14, 300, 1, 1),
        (2, 8, 20, 14, 2, 1),
        (1, 6, 32, 10, 1, 2),
    ] {
        let params = ConvParams {
            groups,
            stride: [s, s],
            ..ConvParams::new(n, c, hw, hw, k, [1, 1])
        };
        check_prepared_params(params, 31);
    }
}

#[test]
fn column_form_prepared_passes_equal_unprepared() {
    // Few pixels, more channels (ResNet-50's 7x7 layers in small): unprepared, the direct
    // kernel runs these in column form on the raw weights (the 36- and 49-pixel layers'
    // forward passes only on 8 lanes); prepared, the forward pass keeps that form and
    // backward-data runs the pixel form on packed weights, which must sum in the same
    // order. Stride 1 and 2 (phases of 4 and 16 pixels), 1x1 and 3x3, reductions of one
    // and of several chunks.
    for (c, hw, k, r, s, pad) in [
        (64, 4, 96, 3, 1, 1),
        (96, 8, 64, 3, 2, 1),
        (300, 6, 40, 1, 1, 0),
        (40, 7, 300, 3, 1, 1),
    ] {
        let params = ConvParams {
            stride: [s, s],
            padding: [pad; 4],
            ..ConvParams::new(1, c, hw, hw, k, [r, r])
        };
        check_prepared_params(params, 34);
    }
}

#[test]
fn paired_phases_prepared_equal_unprepared() {
    // The direct kernel's paired column phases of backward-data (stride 2 across an even
    // width): on packed weights prepared, packed per call unprepared (all of a phase pair's
    // blocks at once, or block by block where the weights outweigh grad_y).
    for (n, c, hw, k) in [(2, 40, 30, 24), (1, 128, 24, 256)] {
        let params = ConvParams {
            stride: [2, 2],
            padding: [1; 4],
            ..ConvParams::new(n, c, hw, hw, k, [3, 3])
        };
        check_prepared_params(params, 35);
    }
}

#[test]
fn depthwise_prepared_passes_equal_unprepared() {
    // The depthwise kernel's "same" 3x3 paths (AVX2: strips of whole vectors, planes
    // narrower than a vector in pairs and one left over), which the random samples seldom
    // reach: the fused ReLU on each path's stores.
    for (n, c, [h, w]) in [
        (1, 3, [5, 20]),
        (1, 4, [3, 8]),
        (3, 8, [7, 7]),
        (1, 2, [2, 5]),
    ] {
        let params = ConvParams {
            groups: c,
            padding: [1, 1, 1, 1],
            ..ConvParams::new(n, c, h, w, c, [3, 3])
        };
        assert!(Conv2d::new(params).unwrap().geom().is_depthwise());
        check_prepared_params(params, 33);
    }
}

#[test]
fn dense_prepared_passes_equal_unprepared() {
    // The direct kernel's dense form (the window covers the whole input), normal and
    // transposed: the transposed forward is the dense backward-data with a bias.
    for (transposed, [h, w]) in [(false, [4, 5]), (true, [1, 1])] {
        let params = ConvParams {
            transposed,
            ..ConvParams::new(3, 7, h, w, 40, [4, 5])
        };
        assert!(Conv2d::new(params).unwrap().geom().is_dense());
        check_prepared_params(params, 32);
    }
}

#[test]
fn plans_equal_the_one_shot_api() {
    let algos = [
        Algorithm::Auto,
        Algorithm::Direct,
        Algorithm::Im2col,
        Algorithm::Reference,
        Algorithm::Winograd(WinogradTile::F2),
        Algorithm::Winograd(WinogradTile::F4),
    ];
    for p in testing::sample_problems(60, 22, DataKind::Real) {
        let conv = &p.conv;
        for algo in algos {
            let plan = conv.plan(algo, &p.weight).unwrap();
            let mut y1 = vec![0.0; conv.output_len()];
            let mut y2 = vec![0.0; conv.output_len()];
            match (
                plan.forward(&p.x, p.bias.as_deref(), &mut y1),
                conv.forward(algo, &p.x, &p.weight, p.bias.as_deref(), &mut y2),
            ) {
                (Ok(()), Ok(())) => assert_eq!(
                    bits(&y1),
                    bits(&y2),
                    "{algo:?} forward {}",
                    conv.params().id()
                ),
                (Err(ConvError::Unsupported { .. }), Err(ConvError::Unsupported { .. })) => {}
                other => panic!("{algo:?}: plan and one-shot disagree: {other:?}"),
            }
            let mut d1 = vec![0.0; conv.input_len()];
            let mut d2 = vec![0.0; conv.input_len()];
            match (
                plan.backward_data(&p.grad_y, &mut d1),
                conv.backward_data(algo, &p.grad_y, &p.weight, &mut d2),
            ) {
                (Ok(()), Ok(())) => assert_eq!(
                    bits(&d1),
                    bits(&d2),
                    "{algo:?} backward_data {}",
                    conv.params().id()
                ),
                (Err(ConvError::Unsupported { .. }), Err(ConvError::Unsupported { .. })) => {}
                other => panic!("{algo:?}: plan and one-shot disagree: {other:?}"),
            }
        }
    }
}

#[test]
fn plan_checks_buffers() {
    let p = &testing::sample_problems(1, 23, DataKind::Real)[0];
    let plan = p.conv.plan(Algorithm::Direct, &p.weight).unwrap();
    let mut y = vec![0.0; p.conv.output_len() + 1];
    assert!(matches!(
        plan.forward(&p.x, None, &mut y),
        Err(ConvError::BufferLength { buffer: "y", .. })
    ));
    assert!(matches!(
        p.conv.plan(Algorithm::Direct, &[1.0]),
        Err(ConvError::BufferLength {
            buffer: "weight",
            ..
        })
    ));
}
