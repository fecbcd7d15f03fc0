//! Test-only instantiations (feature `testing`) that run the direct kernel's tiling driver
//! through shapes this host's real ISAs do not exercise:
//!
//! - `direct_f32_any_12x32_emu16`: a plain-array 16-lane vector with the AVX-512 tiles
//!   (12 x 32 and 24 x 16), so the AVX-512 driver paths are tested on hosts without AVX-512;
//! - `direct_f32_any_3x3_oddtile`: an odd 3 x 3 (and 5 x 1) scalar tile, so every edge
//!   of the tiling (partial tiles, channel remainders) is hit on small problems;
//! - `direct_f32_dw_4x2_emu16m`: the 16-lane vector with masks that count as hoisted (as
//!   AVX2's do), so the depthwise kernel's in-place paths (streaming 3x3 rows, in-place
//!   backward-weight) run at AVX-512's width, where MobileNet's 14x14 planes are narrower
//!   than a vector; and the Winograd kernels (`winograd_f32_f*3_12x32_emu16m`), whose input
//!   transform then stages edge rows with masked loads as on AVX2 and AVX-512.

use super::tile::{Out, run_block, run_block_tail};
use super::{Block, DirectIsa, SimdJob};
use crate::Isa;
use crate::simd::F32Simd;

/// Sixteen f32 lanes as a plain array (no special instructions). With `HOISTED` its masked
/// loads (the trait's default, lane by lane) count as hoisted, as AVX2's do
/// ([`Emu16Masked`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Emu16<const HOISTED: bool = false>;

/// [`Emu16`] whose masked loads count as hoisted (`HOISTED_MASK_LOADS`).
pub(crate) type Emu16Masked = Emu16<true>;

// SAFETY: [f32; 16] is sixteen contiguous f32; plain Rust only.
unsafe impl<const HOISTED: bool> F32Simd for Emu16<HOISTED> {
    const LANES: usize = 16;
    const HOISTED_MASK_LOADS: bool = HOISTED;
    type V = [f32; 16];
    fn zero(self) -> [f32; 16] {
        [0.0; 16]
    }
    fn add(self, a: [f32; 16], b: [f32; 16]) -> [f32; 16] {
        std::array::from_fn(|i| a[i] + b[i])
    }
    fn max(self, a: [f32; 16], b: [f32; 16]) -> [f32; 16] {
        std::array::from_fn(|i| a[i].max(b[i]))
    }
    fn splat(self, v: f32) -> [f32; 16] {
        [v; 16]
    }
    fn mul_add(self, a: [f32; 16], b: [f32; 16], c: [f32; 16]) -> [f32; 16] {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    unsafe fn broadcast(self, p: *const f32) -> [f32; 16] {
        // SAFETY: the caller guarantees p is readable.
        [unsafe { *p }; 16]
    }
    unsafe fn load(self, p: *const f32) -> [f32; 16] {
        // SAFETY: the caller guarantees 16 readable floats.
        unsafe { p.cast::<[f32; 16]>().read_unaligned() }
    }
    unsafe fn store(self, p: *mut f32, v: [f32; 16]) {
        // SAFETY: the caller guarantees 16 writable floats.
        unsafe { p.cast::<[f32; 16]>().write_unaligned(v) }
    }
}

// SAFETY: no special instructions; run_to runs run_block with TILES[wide] (the wide one
// through run_block_tail, as on AVX-512).
unsafe impl<const HOISTED: bool> DirectIsa for Emu16<HOISTED> {
    // The depthwise and Winograd kernels are registered with HOISTED (the others do not
    // look at it): Winograd's input transform then stages a patch row crossing the plane's
    // edge with a masked load, as on AVX2 and AVX-512.
    const NAME: &'static str = "direct_f32_any_12x32_emu16";
    const ROWS_NAME: &'static str = "direct_f32_rows_6x32_emu16";
    const DW_NAME: &'static str = if HOISTED {
        "direct_f32_dw_4x2_emu16m"
    } else {
        "direct_f32_dw_4x2_emu16"
    };
    const WINOGRAD_NAMES: [&'static str; 3] = if HOISTED {
        [
            "winograd_f32_f23_12x32_emu16m",
            "winograd_f32_f43_12x32_emu16m",
            "winograd_f32_f63_12x32_emu16m",
        ]
    } else {
        [
            "winograd_f32_f23_12x32_emu16",
            "winograd_f32_f43_12x32_emu16",
            "winograd_f32_f63_12x32_emu16",
        ]
    };
    const ISA: Isa = Isa::Scalar;
    const TILES: [(usize, usize); 2] = [(24, 1), (12, 2)];
    fn detect() -> Option<Self> {
        Some(Emu16)
    }
    fn dispatch<J: SimdJob>(self, job: &mut J) {
        job.run(self)
    }
    fn run_to(self, b: &Block<'_>, out: Out<'_>, wide: bool) {
        if wide {
            run_block_tail::<Self, 12, 2, 4>(self, b, out)
        } else {
            run_block::<Self, 24, 1>(self, b, out)
        }
    }
}

/// One scalar lane with odd tiles.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OddScalar;

// SAFETY: V = f32; plain Rust only.
unsafe impl F32Simd for OddScalar {
    const LANES: usize = 1;
    type V = f32;
    fn zero(self) -> f32 {
        0.0
    }
    fn add(self, a: f32, b: f32) -> f32 {
        a + b
    }
    fn max(self, a: f32, b: f32) -> f32 {
        a.max(b)
    }
    fn splat(self, v: f32) -> f32 {
        v
    }
    fn mul_add(self, a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
    unsafe fn broadcast(self, p: *const f32) -> f32 {
        // SAFETY: the caller guarantees p is readable.
        unsafe { *p }
    }
    unsafe fn load(self, p: *const f32) -> f32 {
        // SAFETY: the caller guarantees p is readable.
        unsafe { *p }
    }
    unsafe fn store(self, p: *mut f32, v: f32) {
        // SAFETY: the caller guarantees p is writable.
        unsafe { *p = v }
    }
}

// SAFETY: no special instructions; run_to runs run_block with TILES[wide].
unsafe impl DirectIsa for OddScalar {
    const NAME: &'static str = "direct_f32_any_3x3_oddtile";
    const ROWS_NAME: &'static str = "direct_f32_rows_6x1_oddtile";
    const DW_NAME: &'static str = "direct_f32_dw_4x2_oddtile";
    const WINOGRAD_NAMES: [&'static str; 3] = [
        "winograd_f32_f23_3x3_oddtile",
        "winograd_f32_f43_3x3_oddtile",
        "winograd_f32_f63_3x3_oddtile",
    ];
    const ISA: Isa = Isa::Scalar;
    const TILES: [(usize, usize); 2] = [(5, 1), (3, 3)];
    fn detect() -> Option<Self> {
        Some(OddScalar)
    }
    fn dispatch<J: SimdJob>(self, job: &mut J) {
        job.run(self)
    }
    fn run_to(self, b: &Block<'_>, out: Out<'_>, wide: bool) {
        if wide {
            run_block::<OddScalar, 3, 3>(self, b, out)
        } else {
            run_block::<OddScalar, 5, 1>(self, b, out)
        }
    }
}
