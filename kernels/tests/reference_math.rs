//! Pins the reference to mathematics rather than to itself: adjointness of the passes,
//! central finite differences, the transposed/backward-data identity, and hand-checked
//! values (each cross-checked with PyTorch 1.13, `torch.nn.functional.conv2d` /
//! `conv_transpose2d` in float64, as the comments say).

use convnet_kernels::reference::{
    backward_data_f64, backward_weight_f64, bias_grad_f64, forward_f64,
};
use convnet_kernels::testing::{self, SplitMix64};
use convnet_kernels::{Algorithm, Conv2d, ConvGeom, ConvParams, Padding};
use proptest::prelude::*;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn random_f64(seed: u64, len: usize) -> Vec<f64> {
    let mut rng = SplitMix64(seed);
    (0..len)
        .map(|_| rng.range(-1_000_000, 1_000_000) as f64 / 1e6)
        .collect()
}

fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 1e-10 * scale.max(1.0)
}

fn abs_dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x * y).abs()).sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// <conv(x, w), r> = <x, conv_transpose(r, w)> = <w, grad_weight(x, r)>.
    #[test]
    fn passes_are_adjoint(params in testing::params_strategy(), seed in any::<u64>()) {
        let g = params.validate().unwrap();
        let x = random_f64(seed, g.x_len());
        let w = random_f64(seed ^ 1, g.w_len());
        let r = random_f64(seed ^ 2, g.y_len());
        let y = forward_f64(&g, &x, &w, None);
        let dx = backward_data_f64(&g, &r, &w, None);
        let dw = backward_weight_f64(&g, &x, &r);
        let lhs = dot(&y, &r);
        let scale = abs_dot(&y, &r) + abs_dot(&x, &dx);
        prop_assert!(close(lhs, dot(&x, &dx), scale), "<y,r> {} vs <x,dx> {}", lhs, dot(&x, &dx));
        prop_assert!(close(lhs, dot(&w, &dw), scale), "<y,r> {} vs <w,dw> {}", lhs, dot(&w, &dw));
    }

    /// The gradients of L = <conv(x, w) + b, r> by central differences, at a few coordinates.
    #[test]
    fn gradients_match_finite_differences(params in testing::params_strategy(), seed in any::<u64>()) {
        let g = params.validate().unwrap();
        prop_assume!(g.n() > 0);
        let x = random_f64(seed, g.x_len());
        let w = random_f64(seed ^ 1, g.w_len());
        let b = random_f64(seed ^ 2, g.c_out());
        let r = random_f64(seed ^ 3, g.y_len());
        let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&forward_f64(&g, x, w, Some(b)), &r);
        let dx = backward_data_f64(&g, &r, &w, None);
        let dw = backward_weight_f64(&g, &x, &r);
        let [oh, ow] = g.output_hw();
        let db = bias_grad_f64(&r, g.n(), g.c_out(), oh * ow);
        let eps = 1e-3;
        let mut rng = SplitMix64(seed ^ 4);
        for _ in 0..4 {
            let i = rng.next_u64() as usize % x.len();
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += eps;
            xm[i] -= eps;
            let fd = (loss(&xp, &w, &b) - loss(&xm, &w, &b)) / (2.0 * eps);
            prop_assert!((fd - dx[i]).abs() < 1e-6, "dx[{}] {} vs fd {}", i, dx[i], fd);
            let j = rng.next_u64() as usize % w.len();
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[j] += eps;
            wm[j] -= eps;
            let fd = (loss(&x, &wp, &b) - loss(&x, &wm, &b)) / (2.0 * eps);
            prop_assert!((fd - dw[j]).abs() < 1e-6, "dw[{}] {} vs fd {}", j, dw[j], fd);
            let k = rng.next_u64() as usize % b.len();
            let (mut bp, mut bm) = (b.clone(), b.clone());
            bp[k] += eps;
            bm[k] -= eps;
            let fd = (loss(&x, &w, &bp) - loss(&x, &w, &bm)) / (2.0 * eps);
            prop_assert!((fd - db[k]).abs() < 1e-6, "db[{}] {} vs fd {}", k, db[k], fd);
        }
    }

    /// A transposed conv is the backward-data pass of the conv with the same geometry, built
    /// independently here from the transposed conv's output size.
    #[test]
    fn transposed_forward_is_conv_backward_data(params in testing::params_strategy(), seed in any::<u64>()) {
        let t = Conv2d::new(ConvParams { transposed: true, output_padding: [0, 0], ..params });
        prop_assume!(t.is_ok());
        let t = t.unwrap();
        let [n, c_out_t, oh_t, ow_t] = t.output_shape();
        let p = t.params();
        let c = Conv2d::new(ConvParams {
            transposed: false,
            ..ConvParams { n, c_in: c_out_t, h: oh_t, w: ow_t, c_out: p.c_in, ..*p }
        }).unwrap();
        prop_assert_eq!(c.output_shape(), t.input_shape());
        let data = |s, len| testing::fill(s, len, testing::DataKind::Real);
        let (x, w, b) = (data(seed, t.input_len()), data(seed ^ 1, t.weight_len()), data(seed ^ 2, t.bias_len()));
        let dy = data(seed ^ 3, t.output_len());
        let r = Algorithm::Reference;
        let mut yt = vec![0.0; t.output_len()];
        let mut yc = vec![0.0; c.input_len()];
        t.forward(r, &x, &w, None, &mut yt).unwrap();
        c.backward_data(r, &x, &w, &mut yc).unwrap();
        prop_assert_eq!(&yt, &yc);
        let mut dxt = vec![0.0; t.input_len()];
        let mut dxc = vec![0.0; c.output_len()];
        t.backward_data(r, &dy, &w, &mut dxt).unwrap();
        c.forward(r, &dy, &w, None, &mut dxc).unwrap();
        prop_assert_eq!(&dxt, &dxc);
        let (mut dwt, mut dwc) = (vec![0.0; t.weight_len()], vec![0.0; c.weight_len()]);
        let mut dbt = vec![0.0; t.bias_len()];
        t.backward_weight(r, &x, &dy, &mut dwt, Some(&mut dbt)).unwrap();
        c.backward_weight(r, &dy, &x, &mut dwc, None).unwrap();
        prop_assert_eq!(&dwt, &dwc);
        // The transposed conv's bias lands on its output channels.
        let mut yb = vec![0.0; t.output_len()];
        t.forward(r, &x, &w, Some(&b), &mut yb).unwrap();
        let plane = oh_t * ow_t;
        for (i, (with, without)) in yb.iter().zip(&yt).enumerate() {
            let ch = i / plane % c_out_t;
            prop_assert!((with - (without + b[ch])).abs() <= 1e-5 * with.abs().max(1.0));
        }
    }
}

fn geom(p: ConvParams) -> ConvGeom {
    p.validate().unwrap()
}

/// LeNet-5 C1: 32x32 -> 28x28, 6 maps of 5x5. With x[i][j] = i + j and filter k all (k+1),
/// y[k][p][q] = (k+1) * sum_{a,b<5} (p+a + q+b) + b_k = (k+1) * (25(p+q) + 100) + b_k.
/// PyTorch gives y[0,0,0,0] = 100.5, y[0,5,27,27] = 8699.25, y[0,2,3,10] = 1277.0.
#[test]
fn lenet_c1_by_hand() {
    let g = geom(ConvParams::new(1, 1, 32, 32, 6, [5, 5]));
    let x: Vec<f64> = (0..32 * 32).map(|i| (i / 32 + i % 32) as f64).collect();
    let w: Vec<f64> = (0..6 * 25).map(|i| (i / 25 + 1) as f64).collect();
    let b = [0.5, -1.0, 2.0, 0.0, 0.25, -0.75];
    let y = forward_f64(&g, &x, &w, Some(&b));
    assert_eq!(y.len(), 6 * 28 * 28);
    for k in 0..6 {
        for p in 0..28 {
            for q in 0..28 {
                let want = (k + 1) as f64 * (25.0 * (p + q) as f64 + 100.0) + b[k];
                assert_eq!(y[(k * 28 + p) * 28 + q], want, "y[{k}][{p}][{q}]");
            }
        }
    }
    assert_eq!(
        [y[0], y[(5 * 28 + 27) * 28 + 27], y[(2 * 28 + 3) * 28 + 10]],
        [100.5, 8699.25, 1277.0]
    );
}

/// x = 1..=25 in a 5x5, a 3x3 box filter, stride 2, padding 1: each output is the sum of a
/// clipped 3x3 window, e.g. y[0][0] = 1+2+6+7 = 16, y[1][1] = 7+8+9+12+13+14+17+18+19 = 117.
/// PyTorch agrees on all nine.
#[test]
fn stride2_padded_by_hand() {
    let g = geom(ConvParams {
        stride: [2, 2],
        padding: [1; 4],
        ..ConvParams::new(1, 1, 5, 5, 1, [3, 3])
    });
    let x: Vec<f64> = (1..=25).map(f64::from).collect();
    let y = forward_f64(&g, &x, &[1.0; 9], None);
    assert_eq!(y, [16.0, 33.0, 28.0, 69.0, 117.0, 87.0, 76.0, 123.0, 88.0]);
}

/// x[i][j] = 7i + j + 1 on 7x7, a 3x3 box filter with dilation 2 (receptive field 5x5):
/// y[p][q] = sum_{a,b<3} x[p+2a][q+2b] = 9(7p + q + 1) + 144 = 63p + 9q + 153. PyTorch agrees.
#[test]
fn dilated_3x3_by_hand() {
    let p = ConvParams {
        dilation: [2, 2],
        ..ConvParams::new(1, 1, 7, 7, 1, [3, 3])
    };
    assert_eq!(p.receptive_field().unwrap(), [5, 5]);
    let x: Vec<f64> = (1..=49).map(f64::from).collect();
    let y = forward_f64(&geom(p), &x, &[1.0; 9], None);
    let want: Vec<f64> = (0..9)
        .map(|i| (63 * (i / 3) + 9 * (i % 3) + 153) as f64)
        .collect();
    assert_eq!(y, want);
}

/// conv_transpose2d of [[1,2],[3,4]] with w = 1..=9 (3x3), stride 2, padding 1,
/// output_padding 1: H_out = (2-1)*2 - 2 + 2 + 1 + 1 = 4. By hand, out[r][c] is the full
/// scatter full[2i+a][2j+b] += x[i][j] w[a][b] cropped by one: out[0][0] = x00 w11 = 5,
/// out[1][1] = x00 w22 + x01 w20 + x10 w02 + x11 w00 = 9 + 14 + 9 + 4 = 36,
/// out[3][3] = x11 w22 = 36. PyTorch gives the whole 4x4 below.
#[test]
fn transposed_output_padding_by_hand() {
    let conv = Conv2d::builder(1, 1, 2, 2, 1, [3, 3])
        .stride([2, 2])
        .padding(Padding::Symmetric([1, 1]))
        .transposed([1, 1])
        .build()
        .unwrap();
    assert_eq!(conv.output_shape(), [1, 1, 4, 4]);
    let w: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let mut y = vec![0.0; 16];
    conv.forward(
        Algorithm::Reference,
        &[1.0, 2.0, 3.0, 4.0],
        &w,
        None,
        &mut y,
    )
    .unwrap();
    #[rustfmt::skip]
    let want = [
        5.0, 14.0, 10.0, 12.0,
        14.0, 36.0, 24.0, 30.0,
        15.0, 34.0, 20.0, 24.0,
        24.0, 55.0, 32.0, 36.0,
    ];
    assert_eq!(y, want);
}

/// `Padding::Same` matches PyTorch's `padding='same'` (extra row/column at the bottom/right).
#[test]
fn same_padding() {
    assert_eq!(
        ConvParams::same_padding(8, 8, [3, 3], [1, 1], [1, 1]).unwrap(),
        [1, 1, 1, 1]
    );
    assert_eq!(
        ConvParams::same_padding(8, 8, [4, 2], [1, 1], [1, 1]).unwrap(),
        [1, 2, 0, 1]
    );
    assert_eq!(
        ConvParams::same_padding(8, 8, [3, 3], [1, 1], [2, 3]).unwrap(),
        [2, 2, 3, 3]
    );
    // Stride 2 (TensorFlow's SAME): output ceil(7/2) = 4 needs (4-1)*2 + 3 - 7 = 2 rows.
    assert_eq!(
        ConvParams::same_padding(7, 7, [3, 3], [2, 2], [1, 1]).unwrap(),
        [1, 1, 1, 1]
    );
    let conv = Conv2d::builder(1, 1, 7, 9, 1, [5, 5])
        .padding(Padding::Same)
        .build()
        .unwrap();
    assert_eq!(conv.output_shape(), [1, 1, 7, 9]);
}
