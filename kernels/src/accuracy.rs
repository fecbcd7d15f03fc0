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
//! tiles carry measured constants. On small-integer data the exact algorithms must match the
//! reference bit for bit ([`exact_on_integers`]).

use crate::params::ConvGeom;
use crate::{Algorithm, Pass};

/// The `rho` of each algorithm. `Auto` has no rho of its own: it is that of the kernel it picks.
pub fn rho(algo: Algorithm) -> f64 {
    match algo {
        Algorithm::Reference | Algorithm::Direct | Algorithm::Im2col | Algorithm::Auto => 1.0,
        Algorithm::Winograd(_) => f64::INFINITY,
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
