//! The accuracy contract, in one place (DESIGN.md, "Accuracy contract").
//!
//! For each output `y` with `A = sum over its terms of |x * w|` (f64) and `L` the length of
//! the reduction that produced it:
//!
//! ```text
//!   |y - y_ref| <= rho * L * eps_f32 * A + f32::MIN_POSITIVE
//! ```
//!
//! This is the classic worst-case bound for f32 summation in any order, so it never flakes.
//! `rho` is 1 for the reference (one rounding of an f64 sum), Direct and Im2col; Winograd
//! tiles carry measured constants, with `A` taken over the input tile the output's Winograd
//! tile reads ([`winograd_magnitude`]). On small-integer data the exact algorithms (and
//! F(2x2, 3x3)) must match the reference bit for bit ([`exact_on_integers`]).

use crate::params::ConvGeom;
use crate::{Algorithm, Pass, WinogradTile};

/// `rho` for Winograd F(2x2, 3x3). Measured worst scaled error (with the tile magnitude of
/// [`winograd_magnitude`]) over 18,000 generated problems (`convnet check --cases 5000`,
/// seeds 11, 12, 13, plus 3000 with seed 5), every ISA: 0.17. Bound: 4x that, rounded up to
/// a power of two.
pub const RHO_WINOGRAD_F2: f64 = 1.0;
/// `rho` for Winograd F(4x4, 3x3): measured worst 4.2 over the same corpus; 4x margin.
pub const RHO_WINOGRAD_F4: f64 = 16.0;
/// `rho` for Winograd F(6x6, 3x3): measured worst 8.0 over the same corpus; 4x margin.
pub const RHO_WINOGRAD_F6: f64 = 32.0;

/// The `rho` of each algorithm. `Auto` has no rho of its own: it is that of the kernel it picks.
pub fn rho(algo: Algorithm) -> f64 {
    match algo {
        Algorithm::Reference | Algorithm::Direct | Algorithm::Im2col | Algorithm::Auto => 1.0,
        Algorithm::Winograd(WinogradTile::F2) => RHO_WINOGRAD_F2,
        Algorithm::Winograd(WinogradTile::F4) => RHO_WINOGRAD_F4,
        Algorithm::Winograd(WinogradTile::F6) => RHO_WINOGRAD_F6,
    }
}

/// Whether the algorithm must match the reference bit for bit when every partial sum is
/// representable (small-integer data).
pub fn exact_on_integers(algo: Algorithm) -> bool {
    matches!(
        algo,
        Algorithm::Reference | Algorithm::Direct | Algorithm::Im2col
    )
}

/// `L`: the number of products summed into one output of a canonical pass (plus one for the
/// bias term when there is one).
pub fn reduction_len(g: &ConvGeom, pass: Pass, has_bias: bool) -> usize {
    let terms = match pass {
        Pass::Forward => g.c_in_g() * g.kh * g.kw,
        Pass::BackwardData => g.c_out_g() * g.kh * g.kw,
        Pass::BackwardWeight => g.n * g.oh * g.ow,
    };
    terms + usize::from(has_bias)
}

/// The error an output may have: `rho * L * eps * A + f32::MIN_POSITIVE`.
pub fn bound(rho: f64, len: usize, magnitude: f64) -> f64 {
    rho * scale(len, magnitude) + f32::MIN_POSITIVE as f64
}

/// The error unit `L * eps * A`; an error divided by it (plus `f32::MIN_POSITIVE`) is the
/// "scaled error" `convnet check` prints, to be compared with `rho`.
pub fn scale(len: usize, magnitude: f64) -> f64 {
    len as f64 * f32::EPSILON as f64 * magnitude
}

/// `|got - want| / (L * eps * A + f32::MIN_POSITIVE)`.
pub fn scaled_error(got: f32, want: f64, len: usize, magnitude: f64) -> f64 {
    (got as f64 - want).abs() / (scale(len, magnitude) + f32::MIN_POSITIVE as f64)
}

/// The magnitude `A` for a Winograd F(m x m, 3 x 3) output. Winograd computes a whole m x m
/// output tile from one `(m+2) x (m+2)` input patch per channel, so its rounding error in an
/// output scales with that patch, not with the output's own terms (an output that reads
/// only padding still carries the transform's rounding of its neighbours' data):
///
/// ```text
///   A_wino(b, k, y, x) = |bias[k]| + sum_c max_{patch of (y, x)} |src[b][c]| * sum_taps |w[k][c]|
/// ```
///
/// `src` is the canonical pass's input (`x` for forward, `grad_y` for backward-data), the
/// patch is the one the kernel reads for the tile holding `(y, x)`. `A_wino >= A`.
pub fn winograd_magnitude(
    g: &ConvGeom,
    pass: Pass,
    m: usize,
    src: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f64> {
    let a = m + 2;
    let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
    // (source channels per group, destination channels, source hw, destination hw, origin)
    let (sc, dc, [sh, sw], [dh, dw], pad) = match pass {
        Pass::Forward => (
            c_in_g,
            c_out_g,
            [g.h, g.w],
            [g.oh, g.ow],
            [g.pad_t as isize, g.pad_l as isize],
        ),
        _ => (
            c_out_g,
            c_in_g,
            [g.oh, g.ow],
            [g.h, g.w],
            [2 - g.pad_t as isize, 2 - g.pad_l as isize],
        ),
    };
    // sum_taps |w| for (destination channel k, source channel c) of group grp.
    let wsum = |grp: usize, k: usize, c: usize| -> f64 {
        let (oc, ic) = if pass == Pass::Forward {
            (k, c)
        } else {
            (c, k)
        };
        let base = ((grp * c_out_g + oc) * c_in_g + ic) * g.kh * g.kw;
        weight[base..base + g.kh * g.kw]
            .iter()
            .map(|v| v.abs() as f64)
            .sum()
    };
    let (ty_n, tx_n) = (dh.div_ceil(m), dw.div_ceil(m));
    let mut out = vec![0.0f64; g.n * g.g * dc * dh * dw];
    for b in 0..g.n {
        for grp in 0..g.g {
            // max |src| over each tile's patch, per source channel.
            let mut pmax = vec![0.0f64; sc * ty_n * tx_n];
            for c in 0..sc {
                let plane = &src[((b * g.g + grp) * sc + c) * sh * sw..][..sh * sw];
                for ty in 0..ty_n {
                    for tx in 0..tx_n {
                        let mut mx = 0.0f64;
                        for i in 0..a {
                            for j in 0..a {
                                let y = (ty * m + i) as isize - pad[0];
                                let x = (tx * m + j) as isize - pad[1];
                                if y >= 0 && x >= 0 && (y as usize) < sh && (x as usize) < sw {
                                    mx = mx.max(plane[y as usize * sw + x as usize].abs() as f64);
                                }
                            }
                        }
                        pmax[(c * ty_n + ty) * tx_n + tx] = mx;
                    }
                }
            }
            for k in 0..dc {
                let bk = bias.map_or(0.0, |bias| bias[grp * dc + k].abs() as f64);
                let ws: Vec<f64> = (0..sc).map(|c| wsum(grp, k, c)).collect();
                for y in 0..dh {
                    for x in 0..dw {
                        let t = (y / m) * tx_n + x / m;
                        let mag: f64 = (0..sc).map(|c| pmax[c * ty_n * tx_n + t] * ws[c]).sum();
                        out[((b * g.g + grp) * dc + k) * dh * dw + y * dw + x] = bk + mag;
                    }
                }
            }
        }
    }
    out
}

/// The tolerance of an f16/bf16-storage output: the f32 contract's `f32_tol` for the
/// computation on the already-rounded inputs, plus one rounding of the result to the storage
/// type (`eps_T / 2` relative, and half the smallest subnormal step near zero).
pub fn bound_storage(f32_tol: f64, want: f64, eps: f64, min_subnormal: f64) -> f64 {
    f32_tol + 0.5 * eps * (want.abs() + f32_tol) + 0.5 * min_subnormal
}
