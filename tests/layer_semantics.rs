//! Forward passes equal their definitions (PyTorch's), written out naively here: the
//! finite-difference test checks that gradients match the forward pass, this file that the
//! forward pass is the right function.

use convnet::kernels::pool::PoolParams;
use convnet::layers::*;
use convnet::rng::Rng;
use convnet::{Error, Tensor};

fn ramp(shape: [usize; 4], scale: f32) -> Tensor {
    let len = shape.iter().product::<usize>();
    let data = (0..len)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) * scale)
        .collect();
    Tensor::new(shape, data).unwrap()
}

fn eval(layer: &mut dyn Layer, x: &Tensor) -> Tensor {
    layer.forward(x.clone(), &mut Ctx::eval()).unwrap()
}

fn close(a: f32, b: f64, what: &str) {
    assert!(
        (a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs()),
        "{what}: {a} vs {b}"
    );
}

#[test]
fn local_response_norm_matches_pytorch_formula() {
    // beta = 0.75 (AlexNet's) takes a square-root path, any other beta `powf`.
    for (size, beta) in [
        (1, 0.75),
        (2, 0.75),
        (3, 0.75),
        (4, 0.75),
        (5, 0.75),
        (3, 0.6),
    ] {
        let (alpha, k) = (0.3, 2.0);
        let mut lrn = LocalResponseNorm::new(size, alpha, beta, k).unwrap();
        let x = ramp([2, 6, 2, 3], 0.2);
        let y = eval(&mut lrn, &x);
        let [n, c, h, w] = x.shape();
        let at = |t: &Tensor, b, ch, s| t.data()[(b * c + ch) * h * w + s];
        for b in 0..n {
            for ch in 0..c {
                for s in 0..h * w {
                    // PyTorch: pad the squared input by (size/2, (size-1)/2) channels, average
                    // `size` of them, scale by alpha, add k, raise to beta.
                    let lo = ch as isize - (size / 2) as isize;
                    let sum: f64 = (lo..lo + size as isize)
                        .filter(|&cc| (0..c as isize).contains(&cc))
                        .map(|cc| (at(&x, b, cc as usize, s) as f64).powi(2))
                        .sum();
                    let d = k as f64 + alpha as f64 * sum / size as f64;
                    let want = at(&x, b, ch, s) as f64 / d.powf(beta as f64);
                    close(at(&y, b, ch, s), want, &format!("size {size}"));
                }
            }
        }
    }
}

#[test]
fn batch_norm_normalizes_and_tracks_running_stats() -> Result<(), Error> {
    let mut bn = BatchNorm2d::new(2)?;
    let x = ramp([3, 2, 2, 2], 0.5);
    let y = bn.forward(x.clone(), &mut Ctx::train(Rng::new(0)))?;
    let plane = 4;
    for ch in 0..2 {
        let vals = |t: &Tensor| -> Vec<f64> {
            (0..3)
                .flat_map(|b| t.data()[(b * 2 + ch) * plane..][..plane].to_vec())
                .map(|v| v as f64)
                .collect()
        };
        let (xs, ys) = (vals(&x), vals(&y));
        let m = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / m;
        let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m;
        for (xv, yv) in xs.iter().zip(&ys) {
            close(*yv as f32, (xv - mean) / (var + 1e-5).sqrt(), "normalized");
        }
        let params = bn.named_params();
        let running = |name: &str| params.iter().find(|(n, _)| n == name).unwrap().1.value[ch];
        close(running("running_mean"), 0.1 * mean, "running mean");
        close(
            running("running_var"),
            0.9 + 0.1 * var * m / (m - 1.0),
            "running var (unbiased)",
        );
    }
    // Evaluation uses the running statistics.
    let y_eval = eval(&mut bn, &x);
    let params = bn.named_params();
    let rm = params
        .iter()
        .find(|(n, _)| n == "running_mean")
        .unwrap()
        .1
        .value
        .clone();
    let rv = params
        .iter()
        .find(|(n, _)| n == "running_var")
        .unwrap()
        .1
        .value
        .clone();
    let want = (x.data()[0] as f64 - rm[0] as f64) / (rv[0] as f64 + 1e-5).sqrt();
    close(y_eval.data()[0], want, "eval");
    Ok(())
}

#[test]
fn dropout_masks_and_rescales_in_training_only() -> Result<(), Error> {
    let mut d = Dropout::new(0.25)?;
    let x = Tensor::new([1, 1, 100, 100], vec![1.0; 10_000])?;
    let y = d.forward(x.clone(), &mut Ctx::train(Rng::new(3)))?;
    let kept = y.data().iter().filter(|&&v| v != 0.0).count();
    assert!(y.data().iter().all(|&v| v == 0.0 || v == 1.0 / 0.75));
    // Binomial(10000, 0.75): sd 43; allow 5 sd.
    assert!((kept as f64 - 7500.0).abs() < 5.0 * 43.3, "kept {kept}");
    assert_eq!(eval(&mut d, &x), x);
    assert!(Dropout::new(1.5).is_err());
    Ok(())
}

#[test]
fn activations_match_their_definitions() -> Result<(), Error> {
    let x = ramp([2, 3, 1, 2], 0.3);
    let check = |layer: &mut dyn Layer, f: &dyn Fn(f64, usize) -> f64, name: &str| {
        let y = eval(layer, &x);
        for (i, (&xv, &yv)) in x.data().iter().zip(y.data()).enumerate() {
            let ch = (i / 2) % 3;
            close(yv, f(xv as f64, ch), name);
        }
    };
    check(&mut Relu::new(), &|v, _| v.max(0.0), "relu");
    check(
        &mut LeakyRelu::new(0.2),
        &|v, _| if v >= 0.0 { v } else { 0.2 * v },
        "leaky",
    );
    check(
        &mut Elu::new(0.5),
        &|v, _| if v > 0.0 { v } else { 0.5 * v.exp_m1() },
        "elu",
    );
    check(
        &mut Sigmoid::new(),
        &|v, _| 1.0 / (1.0 + (-v).exp()),
        "sigmoid",
    );
    check(&mut Tanh::new(), &|v, _| v.tanh(), "tanh");
    let mean_slope = (0.125 + 1.0 / 3.0) / 2.0;
    check(
        &mut RRelu::new(0.125, 1.0 / 3.0)?,
        &|v, _| if v >= 0.0 { v } else { mean_slope * v },
        "rrelu eval",
    );
    let mut prelu = PRelu::new(3)?;
    for (_, p) in prelu.named_params_mut() {
        p.value = vec![0.1, 0.2, 0.3];
    }
    check(
        &mut prelu,
        &|v, ch| {
            if v >= 0.0 {
                v
            } else {
                [0.1, 0.2, 0.3][ch] as f32 as f64 * v
            }
        },
        "prelu",
    );
    // RReLU in training: each negative element's slope lies in [lower, upper].
    let mut rrelu = RRelu::new(0.125, 1.0 / 3.0)?;
    let neg = Tensor::new([1, 1, 1, 1000], vec![-1.0; 1000])?;
    let y = rrelu.forward(neg, &mut Ctx::train(Rng::new(1)))?;
    assert!(y.data().iter().all(|&v| (-1.0 / 3.0..=-0.125).contains(&v)));
    assert!(y.data().iter().any(|&v| v != y.data()[0]), "slopes vary");
    // Softmax over channels: each pixel's channels sum to 1.
    let y = eval(&mut Softmax::new(), &x);
    for b in 0..2 {
        for s in 0..2 {
            let sum: f32 = (0..3).map(|ch| y.data()[(b * 3 + ch) * 2 + s]).sum();
            close(sum, 1.0, "softmax sum");
        }
    }
    Ok(())
}

#[test]
fn linear_subsample_and_containers_compute_what_they_say() -> Result<(), Error> {
    let x = ramp([2, 2, 2, 2], 0.25);
    // Linear: y = x W^T + b.
    let mut lin = Linear::new(8, 3, true)?;
    for (name, p) in lin.named_params_mut() {
        let scale = if name == "weight" { 0.1 } else { 1.0 };
        p.value = (0..p.len()).map(|i| i as f32 * scale).collect();
    }
    let y = eval(&mut lin, &x);
    assert_eq!(y.shape(), [2, 3, 1, 1]);
    for b in 0..2 {
        for o in 0..3 {
            let want: f64 = o as f64
                + (0..8)
                    .map(|i| (o * 8 + i) as f64 * 0.1 * x.data()[b * 8 + i] as f64)
                    .sum::<f64>();
            close(y.data()[b * 3 + o], want, "linear");
        }
    }
    // Subsample2d: avg of each 2x2 block times weight[c] plus bias[c].
    let mut s2 = Subsample2d::new(2);
    for (name, p) in s2.named_params_mut() {
        p.value = if name == "weight" {
            vec![2.0, -1.0]
        } else {
            vec![0.5, 0.25]
        };
    }
    let y = eval(&mut s2, &x);
    assert_eq!(y.shape(), [2, 2, 1, 1]);
    for (i, &v) in y.data().iter().enumerate() {
        let ch = i % 2;
        let avg = x.data()[i * 4..][..4]
            .iter()
            .map(|&v| v as f64)
            .sum::<f64>()
            / 4.0;
        close(v, [2.0, -1.0][ch] * avg + [0.5, 0.25][ch], "subsample");
    }
    // Residual with the identity: body(x) + x. Concat: branch outputs in channel order.
    let mut res = Residual::new(Relu::new());
    let y = eval(&mut res, &x);
    for (&xv, &yv) in x.data().iter().zip(y.data()) {
        assert_eq!(yv, xv.max(0.0) + xv);
    }
    let mut cat = Concat::new()
        .with(Relu::new())
        .with(MaxPool2d::new(PoolParams {
            stride: [1, 1],
            ..PoolParams::new([1, 1])
        }));
    let y = eval(&mut cat, &x);
    assert_eq!(y.shape(), [2, 4, 2, 2]);
    for b in 0..2 {
        let (xs, ys) = (&x.data()[b * 8..][..8], &y.data()[b * 16..][..16]);
        for i in 0..8 {
            assert_eq!(ys[i], xs[i].max(0.0));
            assert_eq!(ys[8 + i], xs[i]);
        }
    }
    // Mismatched shapes are named errors, not panics.
    let mut bad = Residual::new(Conv2d::builder(2, 3, [1, 1]).build()?);
    assert!(matches!(
        bad.forward(x.clone(), &mut Ctx::eval()),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        lin.forward(ramp([1, 3, 1, 1], 1.0), &mut Ctx::eval()),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        Relu::new().backward(x.clone()),
        Err(Error::BackwardBeforeForward { .. })
    ));
    Ok(())
}

#[test]
fn conv_layers_name_params_as_pytorch_and_report_shapes() -> Result<(), Error> {
    let conv = Conv2d::builder(4, 6, [3, 3])
        .stride([2, 2])
        .padding(Padding::Same)
        .groups(2)
        .build()?;
    let names: Vec<(String, Vec<usize>)> = conv
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, p.shape.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("weight".into(), vec![6, 2, 3, 3]),
            ("bias".into(), vec![6])
        ]
    );
    assert_eq!(conv.output_shape([1, 4, 7, 7])?, [1, 6, 4, 4]);
    let convt = ConvTranspose2d::builder(4, 6, [3, 3])
        .stride([2, 2])
        .padding(Padding::Symmetric([1, 1]))
        .output_padding([1, 1])
        .groups(2)
        .build()?;
    assert_eq!(convt.named_params()[0].1.shape, vec![4, 3, 3, 3]);
    // PyTorch: (7-1)*2 - 2 + 2 + 1 + 1 = 14.
    assert_eq!(convt.output_shape([1, 4, 7, 7])?, [1, 6, 14, 14]);
    assert!(Conv2d::builder(4, 6, [3, 3]).groups(4).build().is_err());
    assert!(
        ConvTranspose2d::builder(4, 6, [3, 3])
            .output_padding([1, 0])
            .build()
            .is_err()
    );
    assert!(matches!(
        conv.output_shape([1, 3, 7, 7]),
        Err(Error::Shape { .. })
    ));
    Ok(())
}

/// In bf16 storage a convolution layer runs the kernels on bf16 buffers: its output and
/// input gradient are what the kernel crate's bf16 passes give on the bf16-rounded operands
/// (whose accuracy the kernel harness checks), bit for bit, and differ from f32's.
#[test]
fn conv_layer_in_bf16_storage_is_the_bf16_kernel() -> Result<(), Error> {
    use convnet::kernels::{Algorithm, Conv2d as KernelConv};
    use half::bf16;
    let to16 = |v: &[f32]| v.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>();
    let to32 = |v: &[bf16]| v.iter().map(|x| x.to_f32()).collect::<Vec<_>>();
    let mut layer = Conv2d::builder(3, 5, [3, 3])
        .padding(Padding::Same)
        .build()?;
    for (i, (_, p)) in layer.named_params_mut().into_iter().enumerate() {
        for (j, v) in p.value.iter_mut().enumerate() {
            *v = ((i * 7 + j * 13) % 17) as f32 * 0.0137 - 0.1;
        }
    }
    let x = ramp([2, 3, 6, 7], 0.0731);
    let gy = ramp([2, 5, 6, 7], 0.0517);
    let mut ctx = Ctx::eval().with_storage(Storage::Bf16);
    let y = layer.forward(x.clone(), &mut ctx)?;
    let gx = layer.backward(gy.clone())?;
    let grads: Vec<Vec<f32>> = layer
        .named_params()
        .iter()
        .map(|(_, p)| p.grad.clone())
        .collect();
    let values: Vec<Vec<f32>> = layer
        .named_params()
        .iter()
        .map(|(_, p)| p.value.clone())
        .collect();

    let k = KernelConv::builder(2, 3, 6, 7, 5, [3, 3])
        .padding(Padding::Same)
        .build()?;
    let (x16, w16, b16, gy16) = (
        to16(x.data()),
        to16(&values[0]),
        to16(&values[1]),
        to16(gy.data()),
    );
    let mut y16 = vec![bf16::ZERO; y.len()];
    k.forward(Algorithm::Auto, &x16, &w16, Some(&b16), &mut y16)?;
    let mut gx16 = vec![bf16::ZERO; x.len()];
    k.backward_data(Algorithm::Auto, &gy16, &w16, &mut gx16)?;
    let mut gw16 = vec![bf16::ZERO; w16.len()];
    let mut gb16 = vec![bf16::ZERO; b16.len()];
    k.backward_weight(Algorithm::Auto, &x16, &gy16, &mut gw16, Some(&mut gb16))?;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(y.data()), bits(&to32(&y16)), "forward");
    assert_eq!(bits(gx.data()), bits(&to32(&gx16)), "input gradient");
    assert_eq!(bits(&grads[0]), bits(&to32(&gw16)), "weight gradient");
    assert_eq!(bits(&grads[1]), bits(&to32(&gb16)), "bias gradient");

    let y32 = layer.forward(x, &mut Ctx::eval())?;
    assert_ne!(
        bits(y.data()),
        bits(y32.data()),
        "bf16 storage computed as f32"
    );
    Ok(())
}

/// A linear layer in bf16 storage rounds its operands and results to bf16.
#[test]
fn linear_layer_in_bf16_storage_rounds_to_bf16() -> Result<(), Error> {
    let mut layer = Linear::new(12, 4, true)?;
    for (i, (_, p)) in layer.named_params_mut().into_iter().enumerate() {
        for (j, v) in p.value.iter_mut().enumerate() {
            *v = ((i * 5 + j * 11) % 19) as f32 * 0.0211 - 0.2;
        }
    }
    let x = ramp([3, 12, 1, 1], 0.0917);
    let round = |v: f32| half::bf16::from_f32(v).to_f32();
    let y = layer.forward(x.clone(), &mut Ctx::eval().with_storage(Storage::Bf16))?;
    let params = layer.named_params();
    let (w, b) = (&params[0].1.value, &params[1].1.value);
    for n in 0..3 {
        for o in 0..4 {
            let dot: f32 = (0..12)
                .map(|i| round(x.data()[n * 12 + i]) * round(w[o * 12 + i]))
                .sum();
            let want = round(dot + round(b[o])) as f64;
            let got = y.data()[n * 4 + o];
            assert_eq!(got, round(got), "y[{n},{o}] = {got} is not a bf16 value");
            // The sums may round to neighbouring bf16 values (GEMM's order is not ours).
            let one_rounding = half::bf16::EPSILON.to_f64() * want.abs();
            assert!(
                (got as f64 - want).abs() <= one_rounding,
                "y[{n},{o}] = {got}, want {want}"
            );
        }
    }
    let gx = layer.backward(ramp([3, 4, 1, 1], 0.0611))?;
    assert!(gx.data().iter().all(|&v| v == round(v)), "dx not in bf16");
    assert!(
        layer
            .named_params()
            .iter()
            .all(|(_, p)| p.grad.iter().all(|&v| v == round(v))),
        "parameter gradients not in bf16"
    );
    Ok(())
}
