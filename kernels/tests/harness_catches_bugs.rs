//! The harness must be able to fail: deliberately wrong kernels, registered only here, are
//! each caught on a sample of generated problems, while the reference passes the same sample.

use convnet_kernels::reference::ReferenceF32;
use convnet_kernels::testing::{self, DataKind};
use convnet_kernels::{Algorithm, ConvGeom, ConvKernel, ConvParams, Isa, Pass};

/// What a wrong kernel gets wrong.
#[derive(Clone, Copy)]
enum Bug {
    /// Reads the input as if the top padding were one row larger.
    PaddingOffByOne,
    /// Ignores the bias.
    ForgetsBias,
    /// Never writes the last output element.
    SkipsLastOutput,
    /// Rounds every output to bf16: within 1% but far outside the f32 contract.
    Bf16Rounding,
    /// Adds one ulp to each output: exact algorithms must match integer data bit for bit.
    OneUlp,
    /// Accumulates the weight gradient of only the first image of the batch.
    FirstImageOnly,
}

struct Wrong(Bug, &'static str);

/// The canonical geometry with `pad_t + 1` and enough bottom padding to keep the same output
/// height (or more, cropped by the caller).
fn shifted(g: &ConvGeom) -> ConvGeom {
    let [kh, kw] = g.kernel_hw();
    let [dh, dw] = g.dilation();
    let [pad_t, pad_l] = g.pad_tl();
    let [h, w] = g.input_hw();
    ConvParams {
        stride: g.stride(),
        dilation: g.dilation(),
        groups: g.groups(),
        padding: [pad_t + 1, dh * kh + pad_t, pad_l, dw * kw + pad_l],
        ..ConvParams::new(g.n(), g.c_in(), h, w, g.c_out(), [kh, kw])
    }
    .validate()
    .unwrap()
}

fn bf16(v: f32) -> f32 {
    f32::from_bits(v.to_bits() & 0xffff_0000)
}

// SAFETY: plain safe Rust.
unsafe impl ConvKernel for Wrong {
    fn name(&self) -> &'static str {
        self.1
    }
    fn algorithm(&self) -> Algorithm {
        Algorithm::Direct
    }
    fn isa(&self) -> Isa {
        Isa::Scalar
    }
    fn supports(&self, _g: &ConvGeom, _pass: Pass) -> Result<(), &'static str> {
        Ok(())
    }
    fn forward(
        &self,
        g: &ConvGeom,
        x: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) {
        match self.0 {
            Bug::PaddingOffByOne => {
                let s = shifted(g);
                let mut big = vec![0.0; s.y_len()];
                ReferenceF32.forward(&s, x, weight, bias, &mut big);
                let ([oh, ow], [soh, sow]) = (g.output_hw(), s.output_hw());
                for (plane, big_plane) in y.chunks_mut(oh * ow).zip(big.chunks(soh * sow)) {
                    for oy in 0..oh {
                        plane[oy * ow..][..ow].copy_from_slice(&big_plane[oy * sow..][..ow]);
                    }
                }
            }
            Bug::ForgetsBias => ReferenceF32.forward(g, x, weight, None, y),
            _ => ReferenceF32.forward(g, x, weight, bias, y),
        }
        self.damage(y);
    }
    fn backward_data(
        &self,
        g: &ConvGeom,
        grad_y: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        grad_x: &mut [f32],
    ) {
        let bias = if matches!(self.0, Bug::ForgetsBias) {
            None
        } else {
            bias
        };
        ReferenceF32.backward_data(g, grad_y, weight, bias, grad_x);
        self.damage(grad_x);
    }
    fn backward_weight(&self, g: &ConvGeom, x: &[f32], grad_y: &[f32], grad_weight: &mut [f32]) {
        let one = one_image(g);
        if matches!(self.0, Bug::FirstImageOnly) && g.n() > 1 && one.output_hw() == g.output_hw() {
            ReferenceF32.backward_weight(
                &one,
                &x[..one.x_len()],
                &grad_y[..one.y_len()],
                grad_weight,
            );
        } else {
            ReferenceF32.backward_weight(g, x, grad_y, grad_weight);
        }
        self.damage(grad_weight);
    }
}

/// One image of `g`, with trailing padding re-derived to give `g`'s output size (or more,
/// when `g` serves a transposed conv with large output padding).
fn one_image(g: &ConvGeom) -> ConvGeom {
    let [h, w] = g.input_hw();
    let [oh, ow] = g.output_hw();
    let [kh, kw] = g.kernel_hw();
    let [sh, sw] = g.stride();
    let [dh, dw] = g.dilation();
    let [pad_t, pad_l] = g.pad_tl();
    // Smallest bottom/right padding that yields at least oh/ow outputs.
    let pad_b = ((oh - 1) * sh + dh * (kh - 1) + 1).saturating_sub(h + pad_t);
    let pad_r = ((ow - 1) * sw + dw * (kw - 1) + 1).saturating_sub(w + pad_l);
    ConvParams {
        stride: g.stride(),
        dilation: g.dilation(),
        groups: g.groups(),
        padding: [pad_t, pad_b, pad_l, pad_r],
        ..ConvParams::new(1, g.c_in(), h, w, g.c_out(), [kh, kw])
    }
    .validate()
    .unwrap()
}

impl Wrong {
    fn damage(&self, out: &mut [f32]) {
        match self.0 {
            Bug::SkipsLastOutput => {
                if let Some(last) = out.last_mut() {
                    *last = f32::from_bits(testing::CANARY);
                }
            }
            Bug::Bf16Rounding => out.iter_mut().for_each(|v| *v = bf16(*v)),
            Bug::OneUlp => out
                .iter_mut()
                .filter(|v| **v != 0.0)
                .for_each(|v| *v = f32::from_bits(v.to_bits() + 1)),
            _ => {}
        }
    }
}

/// Runs the sample through `kernel`; returns the first failure message.
fn first_failure(kernel: &dyn ConvKernel, kind: DataKind) -> Option<String> {
    for p in testing::sample_problems(60, 42, kind) {
        for pass in Pass::ALL {
            if let Err(f) = testing::check(kernel, &p, pass) {
                return Some(f.to_string());
            }
        }
    }
    None
}

fn assert_caught(bug: Bug, name: &'static str, kind: DataKind) {
    assert_eq!(
        first_failure(&ReferenceF32, kind),
        None,
        "the reference must pass the sample"
    );
    let msg =
        first_failure(&Wrong(bug, name), kind).unwrap_or_else(|| panic!("{name} was not caught"));
    assert!(msg.starts_with(name), "message names the kernel: {msg}");
    assert!(msg.contains("params"), "message names the geometry: {msg}");
    eprintln!("caught as expected: {msg}");
}

#[test]
fn catches_padding_off_by_one() {
    assert_caught(
        Bug::PaddingOffByOne,
        "wrong_padding_off_by_one",
        DataKind::Real,
    );
}

#[test]
fn catches_a_forgotten_bias() {
    assert_caught(Bug::ForgetsBias, "wrong_forgets_bias", DataKind::Real);
}

#[test]
fn catches_an_unwritten_output() {
    assert_caught(
        Bug::SkipsLastOutput,
        "wrong_skips_last_output",
        DataKind::Real,
    );
}

#[test]
fn catches_bf16_rounding_on_real_data() {
    assert_caught(Bug::Bf16Rounding, "wrong_bf16_rounding", DataKind::Real);
}

#[test]
fn catches_one_ulp_on_integer_data() {
    assert_caught(Bug::OneUlp, "wrong_one_ulp", DataKind::Integer);
}

#[test]
fn catches_a_weight_gradient_over_one_image() {
    assert_caught(
        Bug::FirstImageOnly,
        "wrong_first_image_only",
        DataKind::Real,
    );
}

/// A correct result one ulp off is within the contract on real data: the tolerance is not
/// zero, so the exactness test above is what pins exact algorithms.
#[test]
fn one_ulp_is_within_contract_on_real_data() {
    assert_eq!(
        first_failure(&Wrong(Bug::OneUlp, "one_ulp"), DataKind::Real),
        None
    );
}
