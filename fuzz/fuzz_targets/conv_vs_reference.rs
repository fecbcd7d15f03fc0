//! A registered kernel x pass x mode against the f64 reference on an arbitrary (bounded)
//! geometry: bit-exact on integer data for exact algorithms, within the accuracy contract on
//! real data, and in f16/bf16 storage within the storage contract. The input picks the
//! kernel and the pass, so every kernel and pass is covered across executions while each
//! execution stays fast. Under AddressSanitizer this also catches any out-of-bounds access.
#![no_main]

use arbitrary::Arbitrary;
use convnet_kernels::testing::{self, ConvProblem, DataKind};
use convnet_kernels::{Conv2d, ConvParams, Pass, registry};
use half::{bf16, f16};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Case {
    n: u8,
    groups: u8,
    c_in_g: u8,
    c_out_g: u8,
    h: u8,
    w: u8,
    kh: u8,
    kw: u8,
    stride: [u8; 2],
    dilation: [u8; 2],
    padding: [u8; 4],
    transposed: bool,
    output_padding: [u8; 2],
    integer: bool,
    bias: bool,
    seed: u64,
    kernel: u8,
    pass: u8,
    storage: u8,
    /// 1 (mod 8): a 1x1 unpadded layer over 16-48 pixels a side, which reaches the direct
    /// kernel's pointwise form (planes of >= 256 pixels) that the general sizes do not. Last
    /// and nonzero, so inputs written before it existed keep their meaning.
    shape: u8,
}

fn params(c: &Case) -> ConvParams {
    let r = |v: u8, lo: u8, hi: u8| (lo + v % (hi - lo + 1)) as usize;
    let groups = r(c.groups, 1, 6);
    ConvParams {
        n: r(c.n, 0, 2),
        c_in: r(c.c_in_g, 1, 6) * groups,
        h: r(c.h, 1, 24),
        w: r(c.w, 1, 24),
        c_out: r(c.c_out_g, 1, 40) * groups,
        kh: r(c.kh, 1, 7),
        kw: r(c.kw, 1, 7),
        stride: c.stride.map(|s| r(s, 1, 4)),
        padding: c.padding.map(|p| r(p, 0, 7)),
        dilation: c.dilation.map(|d| r(d, 1, 4)),
        groups,
        transposed: c.transposed,
        output_padding: if c.transposed {
            c.output_padding.map(|o| r(o, 0, 3))
        } else {
            [0, 0]
        },
    }
}

/// [`params`], or the 1x1 shape that `case.shape` asks for.
fn shaped(c: &Case) -> ConvParams {
    let p = params(c);
    if c.shape % 8 != 1 {
        return p;
    }
    let side = |v: u8| 16 + v as usize % 33;
    ConvParams {
        h: side(c.h),
        w: side(c.w),
        kh: 1,
        kw: 1,
        padding: [0; 4],
        ..p
    }
}

fuzz_target!(|case: Case| {
    let Ok(conv) = Conv2d::new(shaped(&case)) else {
        return;
    };
    if conv.geom().macs() > testing::MAC_BUDGET / 4 {
        return;
    }
    let kind = if case.integer {
        DataKind::Integer
    } else {
        DataKind::Real
    };
    let kernels = registry::available();
    let kernel = kernels[case.kernel as usize % kernels.len()].as_ref();
    let pass = Pass::ALL[case.pass as usize % Pass::ALL.len()];
    let problem = ConvProblem::new(conv, kind, case.seed, case.bias);
    let failure = match case.storage % 3 {
        0 => testing::check(kernel, &problem, pass).err(),
        1 => testing::check_storage::<f16>(kernel, &problem, pass).err(),
        _ => testing::check_storage::<bf16>(kernel, &problem, pass).err(),
    };
    if let Some(failure) = failure {
        panic!("{failure}");
    }
});
