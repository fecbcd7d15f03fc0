//! f16 and bf16 storage (f32 accumulation): every kernel, every pass and mode, against the
//! reference computed from the rounded inputs, within the contract plus one output rounding.

use convnet_kernels::testing::{self, DataKind};
use convnet_kernels::{Algorithm, Conv2d, ConvParams, Pass, registry};
use half::{bf16, f16};

#[test]
fn every_kernel_within_contract_in_f16_and_bf16() {
    for p in testing::sample_problems(60, 31, DataKind::Real) {
        for kernel in registry::available() {
            for pass in Pass::ALL {
                if let Err(f) = testing::check_storage::<f16>(kernel.as_ref(), &p, pass) {
                    panic!("{f}");
                }
                if let Err(f) = testing::check_storage::<bf16>(kernel.as_ref(), &p, pass) {
                    panic!("{f}");
                }
            }
        }
    }
}

/// The storage paths are exact where the arithmetic is: small integers survive f16/bf16
/// rounding and f32 accumulation bit for bit.
#[test]
fn integer_data_is_exact_in_bf16() {
    let conv = Conv2d::new(ConvParams {
        padding: [1; 4],
        ..ConvParams::new(2, 3, 6, 6, 4, [3, 3])
    })
    .unwrap();
    let p = testing::ConvProblem::new(conv, DataKind::Integer, 5, true);
    let to = |v: &[f32]| v.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>();
    let (x, w, b) = (to(&p.x), to(&p.weight), to(p.bias.as_deref().unwrap()));
    let mut y16 = vec![bf16::ZERO; conv.output_len()];
    let mut y32 = vec![0.0f32; conv.output_len()];
    conv.forward(Algorithm::Direct, &x, &w, Some(&b), &mut y16)
        .unwrap();
    conv.forward(
        Algorithm::Direct,
        &p.x,
        &p.weight,
        p.bias.as_deref(),
        &mut y32,
    )
    .unwrap();
    // |y| <= 4*4*27 + 4 = 436 < 2^9: integers up to 256 are exact in bf16, larger ones round.
    for (a, b) in y16.iter().zip(&y32) {
        assert_eq!(a.to_bits(), bf16::from_f32(*b).to_bits());
    }
}

#[test]
fn storage_buffers_are_checked() {
    let conv = Conv2d::builder(1, 2, 4, 4, 2, [3, 3]).build().unwrap();
    let x = vec![f16::ZERO; conv.input_len() - 1];
    let w = vec![f16::ZERO; conv.weight_len()];
    let mut y = vec![f16::ZERO; conv.output_len()];
    assert!(conv.forward(Algorithm::Auto, &x, &w, None, &mut y).is_err());
}
