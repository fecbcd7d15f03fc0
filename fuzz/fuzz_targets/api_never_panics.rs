//! Arbitrary, possibly invalid geometries, algorithms, storage types and buffer lengths into
//! the public kernel API: every call returns `Ok` or a named `Err`; nothing panics, aborts
//! or touches memory out of bounds (AddressSanitizer). Buffers are at most `CAP` floats, so a
//! request that reaches a kernel is small.
#![no_main]

use arbitrary::Arbitrary;
use convnet_kernels::{Algorithm, Conv2d, ConvParams, Element, WinogradTile};
use half::{bf16, f16};
use libfuzzer_sys::fuzz_target;

const CAP: usize = 1 << 12;

#[derive(Arbitrary, Debug)]
struct Case {
    dims: [u16; 16],
    huge: u16,
    transposed: bool,
    output_padding: [u8; 2],
    /// Use the geometry's own buffer lengths (when small) instead of `lens`.
    exact_lens: bool,
    lens: [u16; 4],
    algo: u8,
    storage: u8,
    bias: bool,
    plan: bool,
}

/// Small values mostly; the bits of `huge` turn some into values near overflow.
fn dim(c: &Case, i: usize) -> usize {
    let v = c.dims[i] as usize % 9;
    if c.huge & (1 << i) != 0 {
        usize::MAX / (v + 1)
    } else {
        v
    }
}

fn params(c: &Case) -> ConvParams {
    ConvParams {
        n: dim(c, 0),
        c_in: dim(c, 1),
        h: dim(c, 2).saturating_mul(2),
        w: dim(c, 3).saturating_mul(2),
        c_out: dim(c, 4),
        kh: dim(c, 5),
        kw: dim(c, 6),
        stride: [dim(c, 7), dim(c, 8)],
        padding: [dim(c, 9), dim(c, 10), dim(c, 11), dim(c, 12)],
        dilation: [dim(c, 13), dim(c, 14)],
        groups: dim(c, 15),
        transposed: c.transposed,
        output_padding: c.output_padding.map(|o| o as usize % 4),
    }
}

fn run<T: Element>(c: &Case, conv: &Conv2d, zero: T) {
    let algo = [
        Algorithm::Auto,
        Algorithm::Direct,
        Algorithm::Im2col,
        Algorithm::Reference,
        Algorithm::Winograd(WinogradTile::F2),
        Algorithm::Winograd(WinogradTile::F4),
        Algorithm::Winograd(WinogradTile::F6),
    ][c.algo as usize % 7];
    let lens = if c.exact_lens {
        [
            conv.input_len(),
            conv.weight_len(),
            conv.output_len(),
            conv.bias_len(),
        ]
    } else {
        c.lens.map(|l| l as usize)
    };
    if lens.iter().any(|&l| l > CAP) {
        return;
    }
    let x = vec![zero; lens[0]];
    let w = vec![zero; lens[1]];
    let mut y = vec![zero; lens[2]];
    let b = vec![zero; lens[3]];
    let bias = c.bias.then_some(&b[..]);
    let _ = conv.forward(algo, &x, &w, bias, &mut y);
    let mut dx = vec![zero; lens[0]];
    let _ = conv.backward_data(algo, &y, &w, &mut dx);
    let mut dw = vec![zero; lens[1]];
    let mut db = vec![zero; lens[3]];
    let _ = conv.backward_weight(algo, &x, &y, &mut dw, c.bias.then_some(&mut db[..]));
    if c.plan
        && let Ok(plan) = conv.plan(algo, &w)
    {
        let _ = plan.forward_relu(&x, bias, &mut y);
        let _ = plan.backward_data(&y, &mut dx);
    }
}

fuzz_target!(|c: Case| {
    let p = params(&c);
    let _ = p.id();
    let _ = p.receptive_field();
    let _ = p.output_shape();
    let _ = ConvParams::same_padding(p.h, p.w, [p.kh, p.kw], p.stride, p.dilation);
    let Ok(conv) = Conv2d::new(p) else { return };
    match c.storage % 3 {
        0 => run(&c, &conv, 0.0f32),
        1 => run(&c, &conv, f16::ZERO),
        _ => run(&c, &conv, bf16::ZERO),
    }
});
