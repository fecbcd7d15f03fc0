//! The test harness shared by this crate's tests, the `convnet check` command, the benches
//! and the fuzz targets (feature `testing`).
//!
//! - [`params_strategy`] builds valid geometries constructively (STYLE.md ranges: groups in
//!   {1, 2, depthwise}, kernels up to 5x5, stride and dilation up to 3, asymmetric padding,
//!   transposed mode with output padding), kept under [`MAC_BUDGET`] per pass.
//! - [`ConvProblem`] holds the geometry and its data, real (`i/1000` in [-1, 1]) or small
//!   integers (-4..=4, for which exact algorithms must match the reference bit for bit).
//! - [`check`] runs one kernel on one public pass with NaN-filled outputs followed by a guard
//!   region, and compares every output with the f64 reference under the accuracy contract.

use std::fmt;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::accuracy;
use crate::params::ConvParams;
use crate::reference;
use crate::registry::ConvKernel;
use crate::{Conv2d, ConvError, Isa, Pass};

/// Largest multiply-accumulate count of one pass in a generated problem.
pub const MAC_BUDGET: u64 = 100_000;

/// Guard elements after every output buffer.
pub const GUARD: usize = 16;

/// The NaN every output and guard element holds before a kernel runs.
pub const CANARY: u32 = 0x7fc0_dead;

/// The data a problem is filled with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// `i/1000` for `i` in -1000..=1000.
    Real,
    /// Integers in -4..=4: every partial sum is exact in f32.
    Integer,
}

/// SplitMix64: a tiny deterministic generator for the problem data.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }
}

/// `len` values of `kind` from `seed`.
pub fn fill(seed: u64, len: usize, kind: DataKind) -> Vec<f32> {
    let mut rng = SplitMix64(seed);
    (0..len)
        .map(|_| match kind {
            DataKind::Real => rng.range(-1000, 1000) as f32 / 1000.0,
            DataKind::Integer => rng.range(-4, 4) as f32,
        })
        .collect()
}

/// Smallest input size along one axis for which the geometry is valid.
fn min_size(transposed: bool, k: usize, s: usize, d: usize, pads: usize, op: usize) -> usize {
    let extent = d * (k - 1) + 1;
    if transposed {
        // (size-1)*s + extent + op > pads
        let need = (pads + 1).saturating_sub(extent + op);
        1 + need.div_ceil(s)
    } else {
        extent.saturating_sub(pads).max(1)
    }
}

/// Valid geometries, built constructively, each pass under [`MAC_BUDGET`] MACs: three in
/// four from the full ranges, one in four a 3x3 stride-1 undilated conv (the most common
/// layer, and the only one Winograd takes), with more input channels.
pub fn params_strategy() -> impl Strategy<Value = ConvParams> {
    prop_oneof![
        3 => geometry_strategy(1usize..=5, 1usize..=5, 1usize..=5, 1usize..=3, 1usize..=3),
        1 => geometry_strategy(1usize..=12, 3usize..=3, 3usize..=3, 1usize..=1, 1usize..=1),
    ]
}

/// Geometries with `c_in/g`, kernel sizes, strides and dilations drawn from the given ranges.
fn geometry_strategy(
    c_in_g: std::ops::RangeInclusive<usize>,
    kh: std::ops::RangeInclusive<usize>,
    kw: std::ops::RangeInclusive<usize>,
    stride: std::ops::RangeInclusive<usize>,
    dilation: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = ConvParams> {
    // 1 group, 2 groups, 1 input channel per group, depthwise (1 in and 1 out per group).
    let groups_kind = prop_oneof![Just(0u8), Just(1u8), Just(2u8), Just(3u8)];
    (
        1usize..=2,
        groups_kind,
        c_in_g,
        1usize..=34,
        kh,
        kw,
        [stride.clone(), stride],
        [dilation.clone(), dilation],
        any::<bool>(),
    )
        .prop_flat_map(
            |(n, groups_kind, c_in_g, c_out_g, kh, kw, stride, dilation, transposed)| {
                let (groups, c_in_g, c_out_g) = match groups_kind {
                    0 => (Just(1usize).boxed(), c_in_g, c_out_g),
                    1 => (Just(2usize).boxed(), c_in_g, c_out_g),
                    2 => ((1usize..=6).boxed(), 1, c_out_g),
                    _ => ((1usize..=12).boxed(), 1, 1),
                };
                let op_h = if transposed {
                    0..stride[0].max(dilation[0])
                } else {
                    0..1
                };
                let op_w = if transposed {
                    0..stride[1].max(dilation[1])
                } else {
                    0..1
                };
                (
                    Just((n, c_in_g, c_out_g, kh, kw, stride, dilation, transposed)),
                    groups,
                    [0..kh, 0..kh, 0..kw, 0..kw],
                    [op_h, op_w],
                    [0usize..=9, 0usize..=9],
                )
            },
        )
        .prop_map(
            |(
                (n, c_in_g, c_out_g, kh, kw, stride, dilation, transposed),
                groups,
                padding,
                op,
                extra,
            )| {
                let [t, b, l, r] = padding;
                let h = min_size(transposed, kh, stride[0], dilation[0], t + b, op[0]) + extra[0];
                let w = min_size(transposed, kw, stride[1], dilation[1], l + r, op[1]) + extra[1];
                ConvParams {
                    n,
                    c_in: c_in_g * groups,
                    h,
                    w,
                    c_out: c_out_g * groups,
                    kh,
                    kw,
                    stride,
                    padding,
                    dilation,
                    groups,
                    transposed,
                    output_padding: op,
                }
            },
        )
        .prop_filter("pass under the MAC budget", |p| {
            p.validate().is_ok_and(|g| g.macs() <= MAC_BUDGET)
        })
}

/// A geometry with its data: every input any pass needs.
#[derive(Clone)]
pub struct ConvProblem {
    /// The validated geometry.
    pub conv: Conv2d,
    /// What the data is.
    pub kind: DataKind,
    /// The seed the data came from.
    pub seed: u64,
    /// Input of the public forward pass.
    pub x: Vec<f32>,
    /// Weight (PyTorch's layout for the mode).
    pub weight: Vec<f32>,
    /// Optional bias.
    pub bias: Option<Vec<f32>>,
    /// Gradient of the public output, input of both backward passes.
    pub grad_y: Vec<f32>,
}

impl ConvProblem {
    /// Fills a problem for `conv` from `seed`.
    pub fn new(conv: Conv2d, kind: DataKind, seed: u64, with_bias: bool) -> ConvProblem {
        let mut seeds = SplitMix64(seed);
        ConvProblem {
            x: fill(seeds.next_u64(), conv.input_len(), kind),
            weight: fill(seeds.next_u64(), conv.weight_len(), kind),
            bias: with_bias.then(|| fill(seeds.next_u64(), conv.bias_len(), kind)),
            grad_y: fill(seeds.next_u64(), conv.output_len(), kind),
            conv,
            kind,
            seed,
        }
    }
}

impl fmt::Debug for ConvProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ConvProblem {{ {:?}, data {:?} seed {:#x}, bias {} }}",
            self.conv.params(),
            self.kind,
            self.seed,
            self.bias.is_some()
        )
    }
}

/// Problems over [`params_strategy`] with data of `kind`, with and without bias.
pub fn problem_strategy(kind: DataKind) -> impl Strategy<Value = ConvProblem> {
    (params_strategy(), any::<u64>(), any::<bool>()).prop_map(move |(params, seed, with_bias)| {
        let conv = Conv2d::new(params).expect("params_strategy yields valid geometries");
        ConvProblem::new(conv, kind, seed, with_bias)
    })
}

/// `cases` problems drawn deterministically from `seed` (for `convnet check`).
pub fn sample_problems(cases: usize, seed: u64, kind: DataKind) -> Vec<ConvProblem> {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &key),
    );
    let strategy = problem_strategy(kind);
    (0..cases)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("strategy rejects rarely")
                .current()
        })
        .collect()
}

/// One output buffer of a pass, with what the reference says it must hold.
struct Expected {
    buffer: &'static str,
    want: Vec<f64>,
    magnitude: Vec<f64>,
    len: usize,
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// The reference outputs of public `pass`, with `A` per output and `L`.
fn expected(p: &ConvProblem, pass: Pass) -> Vec<Expected> {
    let conv = &p.conv;
    let g = conv.geom();
    let cpass = conv.canonical_pass(pass);
    let bias = p.bias.as_deref();
    let abs_bias = bias.map(abs);
    let (x, w, dy) = (&p.x[..], &p.weight[..], &p.grad_y[..]);
    let (ax, aw, ady) = (abs(x), abs(w), abs(dy));
    let main = |buffer| {
        let (want, magnitude, has_bias) = match (pass, conv.is_transposed()) {
            (Pass::Forward, false) => (
                reference::forward_f64(g, x, w, bias),
                reference::forward_f64(g, &ax, &aw, abs_bias.as_deref()),
                bias.is_some(),
            ),
            (Pass::Forward, true) => (
                reference::backward_data_f64(g, x, w, bias),
                reference::backward_data_f64(g, &ax, &aw, abs_bias.as_deref()),
                bias.is_some(),
            ),
            (Pass::BackwardData, false) => (
                reference::backward_data_f64(g, dy, w, None),
                reference::backward_data_f64(g, &ady, &aw, None),
                false,
            ),
            (Pass::BackwardData, true) => (
                reference::forward_f64(g, dy, w, None),
                reference::forward_f64(g, &ady, &aw, None),
                false,
            ),
            (Pass::BackwardWeight, false) => (
                reference::backward_weight_f64(g, x, dy),
                reference::backward_weight_f64(g, &ax, &ady),
                false,
            ),
            (Pass::BackwardWeight, true) => (
                reference::backward_weight_f64(g, dy, x),
                reference::backward_weight_f64(g, &ady, &ax),
                false,
            ),
        };
        Expected {
            buffer,
            want,
            magnitude,
            len: accuracy::reduction_len(g, cpass, has_bias),
        }
    };
    match pass {
        Pass::Forward => vec![main("y")],
        Pass::BackwardData => vec![main("grad_x")],
        Pass::BackwardWeight => {
            let mut out = vec![main("grad_weight")];
            if p.bias.is_some() {
                let [n, c, oh, ow] = conv.output_shape();
                out.push(Expected {
                    buffer: "grad_bias",
                    want: reference::bias_grad_f64(dy, n, c, oh * ow),
                    magnitude: reference::bias_grad_f64(&ady, n, c, oh * ow),
                    len: n * oh * ow,
                });
            }
            out
        }
    }
}

fn canary_buffer(len: usize) -> Vec<f32> {
    vec![f32::from_bits(CANARY); len + GUARD]
}

/// Runs `kernel` on public `pass`; returns each output buffer including its guard tail.
pub fn run_pass(
    kernel: &dyn ConvKernel,
    p: &ConvProblem,
    pass: Pass,
) -> Result<Vec<Vec<f32>>, ConvError> {
    let conv = &p.conv;
    match pass {
        Pass::Forward => {
            let mut y = canary_buffer(conv.output_len());
            let len = conv.output_len();
            conv.forward_with(kernel, &p.x, &p.weight, p.bias.as_deref(), &mut y[..len])?;
            Ok(vec![y])
        }
        Pass::BackwardData => {
            let mut dx = canary_buffer(conv.input_len());
            let len = conv.input_len();
            conv.backward_data_with(kernel, &p.grad_y, &p.weight, &mut dx[..len])?;
            Ok(vec![dx])
        }
        Pass::BackwardWeight => {
            let mut dw = canary_buffer(conv.weight_len());
            let mut db = canary_buffer(conv.bias_len());
            let (wl, bl) = (conv.weight_len(), conv.bias_len());
            let grad_bias = p.bias.is_some().then_some(&mut db[..bl]);
            conv.backward_weight_with(kernel, &p.x, &p.grad_y, &mut dw[..wl], grad_bias)?;
            Ok(if p.bias.is_some() {
                vec![dw, db]
            } else {
                vec![dw]
            })
        }
    }
}

/// How a kernel did on one pass of one problem.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PassReport {
    /// The worst `|got - want| / (L * eps * A)` over all outputs.
    pub worst_scaled_error: f64,
    /// Outputs compared.
    pub outputs: usize,
}

/// Why a kernel failed a check; `Display` names kernel, geometry, pass, index, got, want.
#[derive(Clone, Debug)]
pub struct CheckFailure {
    /// The kernel.
    pub kernel: &'static str,
    /// The public pass.
    pub pass: Pass,
    /// The problem's geometry.
    pub params: ConvParams,
    /// What went wrong, with the index and values.
    pub what: String,
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}): {}\n  params: {:?}",
            self.kernel,
            self.pass.name(),
            self.params.id(),
            self.what,
            self.params
        )
    }
}

impl std::error::Error for CheckFailure {}

/// Checks `kernel` on public `pass` of `p`: every output written, nothing past the end, and
/// every value within the accuracy contract (bit-exact on integer data for exact algorithms).
/// A kernel that does not support the geometry is not a failure: `Ok(None)`.
pub fn check(
    kernel: &dyn ConvKernel,
    p: &ConvProblem,
    pass: Pass,
) -> Result<Option<PassReport>, Box<CheckFailure>> {
    let conv = &p.conv;
    if kernel
        .supports(conv.geom(), conv.canonical_pass(pass))
        .is_err()
    {
        return Ok(None);
    }
    let fail = |what: String| {
        Box::new(CheckFailure {
            kernel: kernel.name(),
            pass,
            params: *conv.params(),
            what,
        })
    };
    let outputs = run_pass(kernel, p, pass).map_err(|e| fail(format!("returned Err: {e}")))?;
    let algo = kernel.algorithm();
    let exact = p.kind == DataKind::Integer && accuracy::exact_on_integers(algo);
    let rho = accuracy::rho(algo);
    let mut report = PassReport::default();
    let mut expected = expected(p, pass);
    if let crate::Algorithm::Winograd(tile) = algo {
        // Winograd's error scales with the input tile, not the output's own terms.
        let src = if pass == Pass::Forward {
            &p.x
        } else {
            &p.grad_y
        };
        let bias = if pass == Pass::Forward {
            p.bias.as_deref()
        } else {
            None
        };
        let cpass = conv.canonical_pass(pass);
        expected[0].magnitude =
            accuracy::winograd_magnitude(conv.geom(), cpass, tile.m(), src, &p.weight, bias);
    }
    for (got, exp) in outputs.iter().zip(expected) {
        let n = exp.want.len();
        if let Some(i) = got[n..].iter().position(|v| v.to_bits() != CANARY) {
            return Err(fail(format!(
                "wrote past the end of {}: guard element {i} is {}",
                exp.buffer,
                got[n + i]
            )));
        }
        for (i, (&g, (&want, &mag))) in got[..n]
            .iter()
            .zip(exp.want.iter().zip(&exp.magnitude))
            .enumerate()
        {
            if g.to_bits() == CANARY {
                return Err(fail(format!(
                    "left {}[{i}] unwritten (want {want})",
                    exp.buffer
                )));
            }
            let err = (g as f64 - want).abs();
            let tol = if exact {
                0.0
            } else {
                accuracy::bound(rho, exp.len, mag)
            };
            if err > tol || g.is_nan() {
                return Err(fail(format!(
                    "{}[{i}] = {g:e}, want {want:e} (error {err:e} > tolerance {tol:e}{}; L = {}, A = {mag:e})",
                    exp.buffer,
                    if exact { ", exact on integer data" } else { "" },
                    exp.len
                )));
            }
            let scaled = accuracy::scaled_error(g, want, exp.len, mag);
            report.worst_scaled_error = report.worst_scaled_error.max(scaled);
        }
        report.outputs += n;
    }
    Ok(Some(report))
}

/// Reads `CONVNET_REQUIRE_ISA` and fails (panics, in a test) when this process cannot run
/// that tier, instead of silently skipping its kernels. Also fails on an unparsable
/// `CONVNET_MAX_ISA`. Returns the detected tier.
pub fn require_isa() -> Isa {
    if let Err(bad) = Isa::env_cap() {
        panic!("CONVNET_MAX_ISA={bad:?} is not one of scalar|portable|avx2|avx512");
    }
    let detected = Isa::detect();
    if let Ok(req) = std::env::var("CONVNET_REQUIRE_ISA") {
        let req =
            Isa::parse(&req).unwrap_or_else(|| panic!("CONVNET_REQUIRE_ISA={req:?} is not an ISA"));
        assert!(
            detected >= req,
            "CONVNET_REQUIRE_ISA={req} but this process runs at {detected} (hardware {})",
            Isa::hardware()
        );
    }
    detected
}

/// One row of the accuracy measurement: a kernel on one channel count.
#[derive(Clone, Debug)]
pub struct AccuracyRow {
    /// The kernel.
    pub kernel: &'static str,
    /// Its algorithm.
    pub algo: crate::Algorithm,
    /// Input channels (the reduction is `9 * c`).
    pub c: usize,
    /// Worst `|y - ref| / (L * eps * A)` over forward and backward-data.
    pub max_scaled_error: f64,
    /// `||y - ref||_2 / ||ref||_2` over forward and backward-data.
    pub rel_l2_error: f64,
}

/// Measures each available Direct and Winograd kernel on zero-mean data (uniform in
/// [-1, 1]): a 16x16 image, 3x3 padding 1, 32 output channels, `c` in {16, 64, 256, 512},
/// forward and backward-data, against the f64 reference. This is how the Winograd `rho`
/// constants in `accuracy.rs` were set.
pub fn accuracy_table(seed: u64) -> Vec<AccuracyRow> {
    let mut rows = Vec::new();
    for c in [16, 64, 256, 512] {
        let params = ConvParams {
            padding: [1; 4],
            ..ConvParams::new(1, c, 16, 16, 32, [3, 3])
        };
        let conv = Conv2d::new(params).expect("valid");
        let p = ConvProblem::new(conv, DataKind::Real, seed ^ c as u64, false);
        for kernel in crate::registry::available() {
            let algo = kernel.algorithm();
            if !matches!(
                algo,
                crate::Algorithm::Direct | crate::Algorithm::Winograd(_)
            ) {
                continue;
            }
            let (mut worst, mut err2, mut ref2) = (0.0f64, 0.0f64, 0.0f64);
            let mut ran = false;
            for pass in [Pass::Forward, Pass::BackwardData] {
                let Ok(out) = run_pass(kernel.as_ref(), &p, pass) else {
                    continue;
                };
                ran = true;
                let mut exp = expected(&p, pass).swap_remove(0);
                if let crate::Algorithm::Winograd(tile) = algo {
                    let src = if pass == Pass::Forward {
                        &p.x
                    } else {
                        &p.grad_y
                    };
                    exp.magnitude = accuracy::winograd_magnitude(
                        conv.geom(),
                        conv.canonical_pass(pass),
                        tile.m(),
                        src,
                        &p.weight,
                        None,
                    );
                }
                for ((got, want), mag) in out[0].iter().zip(&exp.want).zip(&exp.magnitude) {
                    worst = worst.max(accuracy::scaled_error(*got, *want, exp.len, *mag));
                    err2 += (*got as f64 - want).powi(2);
                    ref2 += want * want;
                }
            }
            if !ran {
                continue;
            }
            rows.push(AccuracyRow {
                kernel: kernel.name(),
                algo,
                c,
                max_scaled_error: worst,
                rel_l2_error: (err2 / ref2.max(f64::MIN_POSITIVE)).sqrt(),
            });
        }
    }
    rows
}

/// The values of `v` rounded to storage type `T` (as f32, exactly representable in `T`).
pub fn round_to<T: crate::Element>(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| T::from_f32(x).to_f32()).collect()
}

/// Checks `kernel` on public `pass` of `p` with `T` storage (f16 or bf16): inputs are rounded
/// to `T`, the reference is computed from the rounded inputs, and each output may differ by
/// the f32 contract plus one rounding to `T` (`eps_T/2 * |y|`, and half a subnormal step).
pub fn check_storage<T: crate::Element>(
    kernel: &dyn ConvKernel,
    p: &ConvProblem,
    pass: Pass,
) -> Result<Option<f64>, Box<CheckFailure>> {
    let conv = &p.conv;
    if kernel
        .supports(conv.geom(), conv.canonical_pass(pass))
        .is_err()
    {
        return Ok(None);
    }
    let rounded = ConvProblem {
        x: round_to::<T>(&p.x),
        weight: round_to::<T>(&p.weight),
        bias: p.bias.as_deref().map(round_to::<T>),
        grad_y: round_to::<T>(&p.grad_y),
        ..p.clone()
    };
    let to_t = |v: &[f32]| v.iter().map(|&x| T::from_f32(x)).collect::<Vec<T>>();
    let (x, w, dy) = (
        to_t(&rounded.x),
        to_t(&rounded.weight),
        to_t(&rounded.grad_y),
    );
    let b = rounded.bias.as_deref().map(to_t);
    let fail = |what: String| {
        Box::new(CheckFailure {
            kernel: kernel.name(),
            pass,
            params: *conv.params(),
            what,
        })
    };
    let zero = T::from_f32(0.0);
    let outputs: Vec<Vec<T>> = match pass {
        Pass::Forward => {
            let mut y = vec![zero; conv.output_len()];
            conv.forward_with(kernel, &x, &w, b.as_deref(), &mut y)
                .map_err(|e| fail(e.to_string()))?;
            vec![y]
        }
        Pass::BackwardData => {
            let mut dx = vec![zero; conv.input_len()];
            conv.backward_data_with(kernel, &dy, &w, &mut dx)
                .map_err(|e| fail(e.to_string()))?;
            vec![dx]
        }
        Pass::BackwardWeight => {
            let mut dw = vec![zero; conv.weight_len()];
            let mut db = vec![zero; conv.bias_len()];
            let grad_bias = b.is_some().then_some(&mut db[..]);
            conv.backward_weight_with(kernel, &x, &dy, &mut dw, grad_bias)
                .map_err(|e| fail(e.to_string()))?;
            if b.is_some() { vec![dw, db] } else { vec![dw] }
        }
    };
    let mut expected = expected(&rounded, pass);
    if let crate::Algorithm::Winograd(tile) = kernel.algorithm() {
        let src = if pass == Pass::Forward {
            &rounded.x
        } else {
            &rounded.grad_y
        };
        let bias = if pass == Pass::Forward {
            rounded.bias.as_deref()
        } else {
            None
        };
        expected[0].magnitude = accuracy::winograd_magnitude(
            conv.geom(),
            conv.canonical_pass(pass),
            tile.m(),
            src,
            &rounded.weight,
            bias,
        );
    }
    let rho = accuracy::rho(kernel.algorithm());
    let mut worst = 0.0f64;
    for (got, exp) in outputs.iter().zip(expected) {
        for (i, (g, (&want, &mag))) in got
            .iter()
            .zip(exp.want.iter().zip(&exp.magnitude))
            .enumerate()
        {
            let g = g.to_f32() as f64;
            let f32_tol = accuracy::bound(rho, exp.len, mag);
            let tol = accuracy::bound_storage(f32_tol, want, T::EPSILON, T::MIN_SUBNORMAL);
            let err = (g - want).abs();
            if err > tol || g.is_nan() {
                return Err(fail(format!(
                    "{} storage: {}[{i}] = {g:e}, want {want:e} (error {err:e} > tolerance {tol:e})",
                    T::NAME,
                    exp.buffer
                )));
            }
            worst = worst.max(err / tol.max(f64::MIN_POSITIVE));
        }
    }
    Ok(Some(worst))
}
