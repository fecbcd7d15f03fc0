//! Every layer's input and parameter gradients against central finite differences.
//!
//! For each layer on a tiny input, the scalar loss is `L = sum_i r_i * y_i` with fixed random
//! weights `r`, computed in f64 from the layer's f32 output. Its analytic gradients come from
//! `backward(r)`. Each input element and each trained parameter is perturbed in turn, and
//! the derivative is estimated by the central difference `D(h) = (L(+h) - L(-h)) / 2h`,
//! Richardson-extrapolated: `R = (4 D(h/2) - D(h)) / 3`, whose truncation error is O(h^4).
//!
//! Tolerance, stated once (see `tolerance`): each output the perturbation changes carries
//! the f32 rounding of the forward pass, at most `NOISE_ULPS * eps_f32 * (1 + |y_i|)`, so a
//! difference `L(+t) - L(-t)` is off by at most `2 delta`, with
//! `delta = NOISE_ULPS * eps_f32 * sum over changed outputs of |r_i| (1 + |y_i|)` (outputs the
//! perturbation does not reach are recomputed bit for bit and cancel exactly). That is at most
//! `delta / h` in `D(h)` and `2 delta / h` in `D(h/2)`, so at most `3 delta / h` in `R`. The
//! analytic gradient's own f32 rounding and the O(h^4) truncation are covered by a relative
//! term `REL * |g|`. The test prints the worst ratio of error to tolerance for each layer.
//!
//! Inputs keep every kink out of reach of a step: values are at least `KINK_GAP` away from
//! zero (ReLU family) and distinct by more than that (max pooling), `KINK_GAP > h`.

use convnet::kernels::pool::PoolParams;
use convnet::layers::*;
use convnet::param::ParamKind;
use convnet::rng::Rng;
use convnet::{Error, Tensor};

/// Step of the central difference (exact in binary).
const H: f64 = 1.0 / 32.0;
/// Ulps of `1 + |y|` that one output of these tiny layers may be off in f32.
const NOISE_ULPS: f64 = 16.0;
/// Relative tolerance for truncation and the analytic gradient's f32 rounding.
const REL: f64 = 1e-4;
/// Smallest distance of an input from a kink.
const KINK_GAP: f32 = 0.08;

struct Case {
    name: &'static str,
    layer: Box<dyn Layer>,
    input: [usize; 4],
    train: bool,
    /// Inputs distinct by more than KINK_GAP (for max pooling) instead of away from zero.
    distinct: bool,
}

fn case(name: &'static str, layer: impl Layer + 'static, input: [usize; 4]) -> Case {
    Case {
        name,
        layer: Box::new(layer),
        input,
        train: false,
        distinct: false,
    }
}

fn cases() -> Result<Vec<Case>, Error> {
    let pool = |k, s, p, ceil_mode| PoolParams {
        kernel: [k, k],
        stride: [s, s],
        padding: [p, p],
        ceil_mode,
    };
    let conv = Conv2d::builder(4, 4, [3, 2])
        .stride([2, 1])
        .padding(Padding::Explicit([1, 0, 2, 1]))
        .dilation([1, 2])
        .groups(2)
        .build()?;
    let conv_same = Conv2d::builder(3, 2, [3, 3])
        .padding(Padding::Same)
        .bias(false)
        .build()?;
    let conv_t = ConvTranspose2d::builder(4, 2, [3, 3])
        .stride([2, 2])
        .padding(Padding::Symmetric([1, 1]))
        .output_padding([1, 0])
        .groups(2)
        .build()?;
    let conv_t_dilated = ConvTranspose2d::builder(2, 3, [2, 2])
        .dilation([2, 1])
        .build()?;
    let body = Sequential::new()
        .with(
            Conv2d::builder(2, 2, [3, 3])
                .padding(Padding::Symmetric([1, 1]))
                .build()?,
        )
        .with(BatchNorm2d::new(2)?)
        .with(Tanh::new());
    let projection = Sequential::new()
        .with(Conv2d::builder(2, 3, [1, 1]).stride([2, 2]).build()?)
        .with(Sigmoid::new());
    let projected_body = Conv2d::builder(2, 3, [3, 3])
        .stride([2, 2])
        .padding(Padding::Symmetric([1, 1]))
        .build()?;
    let inception = Concat::new()
        .with_named("branch1", Conv2d::builder(2, 2, [1, 1]).build()?)
        .with_named(
            "branch2",
            Sequential::new()
                .with(
                    Conv2d::builder(2, 3, [3, 3])
                        .padding(Padding::Same)
                        .build()?,
                )
                .with(Tanh::new()),
        )
        .with_named(
            "branch3",
            AvgPool2d::new(
                PoolParams {
                    stride: [1, 1],
                    ..pool(3, 1, 1, false)
                },
                false,
            ),
        );
    let chain = Sequential::new()
        .with(Conv2d::builder(1, 2, [3, 3]).build()?)
        .with(Tanh::new())
        .with(Subsample2d::new(2))
        .with(Flatten::new())
        .with(Linear::new(2 * 2 * 2, 3, true)?)
        .with(Softmax::new());
    let train = |mut c: Case| {
        c.train = true;
        c
    };
    let mut max_overlap = case(
        "MaxPool2d 3x3 s2 p1 ceil",
        MaxPool2d::new(pool(3, 2, 1, true)),
        [2, 2, 6, 5],
    );
    max_overlap.distinct = true;
    let mut max_plain = case(
        "MaxPool2d 2x2",
        MaxPool2d::new(PoolParams::new([2, 2])),
        [1, 2, 4, 4],
    );
    max_plain.distinct = true;
    Ok(vec![
        case("ReLU", Relu::new(), [2, 3, 2, 2]),
        case("LeakyReLU", LeakyRelu::new(0.1), [2, 3, 2, 2]),
        case("PReLU per channel", PRelu::new(3)?, [2, 3, 2, 2]),
        case("PReLU shared", PRelu::new(1)?, [2, 3, 2, 2]),
        case("RReLU (eval)", RRelu::new(0.125, 1.0 / 3.0)?, [2, 3, 2, 2]),
        // Training mode draws slopes and masks from the pass's seed, the same in every pass.
        train(case(
            "RReLU (train)",
            RRelu::new(0.125, 1.0 / 3.0)?,
            [2, 3, 2, 2],
        )),
        case("ELU", Elu::new(1.0), [2, 3, 2, 2]),
        case("Sigmoid", Sigmoid::new(), [2, 3, 2, 2]),
        case("Tanh", Tanh::new(), [2, 3, 2, 2]),
        case("Softmax", Softmax::new(), [2, 4, 2, 2]),
        case("Linear", Linear::new(12, 5, true)?, [2, 3, 2, 2]),
        case("Conv2d s2x1 pad(1,0,2,1) d1x2 g2", conv, [2, 4, 6, 5]),
        case("Conv2d same, no bias", conv_same, [1, 3, 4, 5]),
        case("ConvTranspose2d s2 p1 op(1,0) g2", conv_t, [2, 4, 3, 3]),
        case("ConvTranspose2d d2x1", conv_t_dilated, [1, 2, 3, 2]),
        max_overlap,
        max_plain,
        case(
            "AvgPool2d 3x3 s2 p1 ceil, pad counted",
            AvgPool2d::new(pool(3, 2, 1, true), true),
            [2, 2, 6, 5],
        ),
        case(
            "AvgPool2d 3x3 s2 p1 ceil, pad excluded",
            AvgPool2d::new(pool(3, 2, 1, true), false),
            [2, 2, 6, 5],
        ),
        case(
            "AdaptiveAvgPool2d 5x7 -> 3x2",
            AdaptiveAvgPool2d::new([3, 2]),
            [2, 2, 5, 7],
        ),
        case(
            "AdaptiveAvgPool2d global",
            AdaptiveAvgPool2d::global(),
            [2, 3, 3, 3],
        ),
        case("Subsample2d (LeNet S2)", Subsample2d::new(3), [2, 3, 4, 6]),
        train(case(
            "BatchNorm2d (train)",
            BatchNorm2d::new(3)?,
            [3, 3, 2, 2],
        )),
        case("BatchNorm2d (eval)", BatchNorm2d::new(3)?, [2, 3, 2, 2]),
        case(
            "LocalResponseNorm size 3",
            LocalResponseNorm::new(3, 0.5, 0.75, 1.0)?,
            [2, 5, 2, 2],
        ),
        case(
            "LocalResponseNorm size 4",
            LocalResponseNorm::new(4, 0.3, 0.75, 2.0)?,
            [1, 6, 2, 1],
        ),
        case(
            "LocalResponseNorm size 5, beta 0.6",
            LocalResponseNorm::new(5, 0.4, 0.6, 1.5)?,
            [2, 7, 1, 2],
        ),
        case("Dropout (eval)", Dropout::new(0.5)?, [2, 3, 2, 2]),
        train(case("Dropout (train)", Dropout::new(0.5)?, [2, 3, 2, 2])),
        case("Flatten", Flatten::new(), [2, 3, 2, 2]),
        case(
            "Sequential conv-tanh-S2-flatten-linear-softmax",
            chain,
            [2, 1, 6, 6],
        ),
        case(
            "Residual identity (conv-bn-tanh)",
            Residual::new(body),
            [2, 2, 3, 3],
        ),
        case(
            "Residual projection",
            Residual::new(projected_body).with_shortcut(projection),
            [2, 2, 4, 5],
        ),
        case("Concat (inception-style)", inception, [2, 2, 3, 4]),
    ])
}

/// Input values: away from zero by KINK_GAP, or pairwise distinct by more than KINK_GAP.
fn input(shape: [usize; 4], distinct: bool, rng: &mut Rng) -> Tensor {
    let len = shape.iter().product();
    let data = if distinct {
        let mut v: Vec<f32> = (0..len).map(|i| i as f32 * 1.5 * KINK_GAP - 1.0).collect();
        rng.shuffle(&mut v);
        v
    } else {
        (0..len)
            .map(|_| {
                let mag = KINK_GAP + (1.0 - KINK_GAP) * rng.uniform();
                if rng.below(2) == 0 { mag } else { -mag }
            })
            .collect()
    };
    Tensor::new(shape, data).unwrap()
}

/// Random trained parameters in [-1, 1]; running statistics in sensible ranges.
fn randomize_params(layer: &mut dyn Layer, rng: &mut Rng) {
    for (name, p) in layer.named_params_mut() {
        let (lo, hi) = match p.kind {
            ParamKind::Buffer if name.ends_with("running_var") => (0.5, 1.5),
            ParamKind::Buffer if name.ends_with("running_mean") => (-0.5, 0.5),
            ParamKind::Buffer => continue,
            _ => (-1.0, 1.0),
        };
        for v in &mut p.value {
            *v = lo + (hi - lo) * rng.uniform();
        }
    }
}

/// The layer's output for input `x`. Training passes all draw from the same seed, so dropout
/// masks and RReLU slopes repeat.
fn output(layer: &mut dyn Layer, x: &Tensor, train: bool) -> Vec<f32> {
    let mut ctx = if train {
        Ctx::train(Rng::new(0))
    } else {
        Ctx::eval()
    };
    layer.forward(x.clone(), &mut ctx).unwrap().into_data()
}

/// Richardson-extrapolated central difference of `L = sum r_i y_i(t)` at `t = 0`, where
/// `f(t)` is the layer output with the variable moved by `t`; and the noise scale
/// `sum |r_i| (1 + |y_i|)` over the outputs that the move changed (the others are recomputed
/// bit for bit, so their rounding cancels in the difference).
fn derivative(r: &[f32], mut f: impl FnMut(f64) -> Vec<f32>) -> (f64, f64) {
    let mut scale: f64 = 0.0;
    let mut d = |h: f64| {
        let (plus, minus) = (f(h), f(-h));
        let mut diff = 0.0;
        let mut s = 0.0;
        for ((&p, &m), &r) in plus.iter().zip(&minus).zip(r) {
            diff += r as f64 * (p as f64 - m as f64);
            if p != m {
                s += (r as f64).abs() * (1.0 + (p as f64).abs().max((m as f64).abs()));
            }
        }
        scale = scale.max(s);
        diff / (2.0 * h)
    };
    let (d1, d2) = (d(H), d(H / 2.0));
    ((4.0 * d2 - d1) / 3.0, scale)
}

/// The tolerance of one comparison (see the file header).
fn tolerance(noise_scale: f64, analytic: f64, numeric: f64) -> f64 {
    let delta = NOISE_ULPS * f32::EPSILON as f64 * noise_scale;
    3.0 * delta / H + REL * analytic.abs().max(numeric.abs())
}

struct Report {
    checked: usize,
    worst_ratio: f64,
    failures: Vec<String>,
}

impl Report {
    fn compare(&mut self, what: String, analytic: f64, (numeric, scale): (f64, f64)) {
        let tol = tolerance(scale, analytic, numeric);
        let err = (analytic - numeric).abs();
        self.checked += 1;
        self.worst_ratio = self.worst_ratio.max(err / tol);
        // Written so that a NaN on either side fails.
        if err.is_nan() || err > tol {
            self.failures.push(format!(
                "{what}: analytic {analytic:.6e}, numeric {numeric:.6e}, |diff| {err:.3e} > tol {tol:.3e}"
            ));
        }
    }
}

fn check(case: &mut Case, rng: &mut Rng) -> Report {
    let layer = case.layer.as_mut();
    randomize_params(layer, rng);
    let x = input(case.input, case.distinct, rng);
    let out_shape = layer.output_shape(case.input).unwrap();
    let r: Vec<f32> = (0..out_shape.iter().product::<usize>())
        .map(|_| 2.0 * rng.uniform() - 1.0)
        .collect();
    let train = case.train;

    // Analytic gradients.
    output(layer, &x, train);
    let grad_x = layer
        .backward(Tensor::new(out_shape, r.clone()).unwrap())
        .unwrap();
    assert_eq!(
        grad_x.shape(),
        x.shape(),
        "{}: input gradient shape",
        case.name
    );
    let grads: Vec<(String, Vec<f32>)> = layer
        .named_params()
        .into_iter()
        .filter(|(_, p)| p.is_trainable())
        .map(|(n, p)| (n, p.grad.clone()))
        .collect();

    let mut report = Report {
        checked: 0,
        worst_ratio: 0.0,
        failures: Vec::new(),
    };
    for i in 0..x.len() {
        let numeric = derivative(&r, |h| {
            let mut xp = x.clone();
            xp.data_mut()[i] += h as f32;
            output(layer, &xp, train)
        });
        report.compare(format!("dx[{i}]"), grad_x.data()[i] as f64, numeric);
    }
    for (name, grad) in &grads {
        for (k, &g) in grad.iter().enumerate() {
            let numeric = derivative(&r, |h| {
                let set = |layer: &mut dyn Layer, delta: f32| {
                    for (n, p) in layer.named_params_mut() {
                        if &n == name {
                            p.value[k] += delta;
                        }
                    }
                };
                set(layer, h as f32);
                let out = output(layer, &x, train);
                set(layer, -h as f32);
                out
            });
            report.compare(format!("d{name}[{k}]"), g as f64, numeric);
        }
    }
    report
}

#[test]
fn every_layer_matches_finite_differences() {
    let mut rng = Rng::new(2024);
    let mut cases = cases().unwrap();
    let mut failed = Vec::new();
    for case in &mut cases {
        let report = check(case, &mut rng);
        println!(
            "{:<52} {:>4} derivatives, worst |diff|/tol {:.3}",
            case.name, report.checked, report.worst_ratio
        );
        assert!(report.checked > 0, "{}: nothing checked", case.name);
        if !report.failures.is_empty() {
            failed.push(format!(
                "{}:\n  {}",
                case.name,
                report.failures.join("\n  ")
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "gradient mismatches:\n{}",
        failed.join("\n")
    );
}
