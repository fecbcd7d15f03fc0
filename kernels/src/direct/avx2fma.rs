//! The direct kernel on AVX2 + FMA: 16 ymm registers.
//!
//! Wide tile 6 pixels x 16 channels: 12 accumulators + 2 weight vectors + 1 broadcast = 15
//! registers; per reduction step 2 loads + 6 broadcasts feed 12 FMAs, so the two FMA ports,
//! not the load ports, set the pace. Narrow tile 12 x 8 for layers with <= 8 channels in
//! the vectorised dimension: still 12 independent accumulators to cover FMA latency.

use super::tile::{Out, run_block};
use super::{Block, DirectIsa, SimdJob};
use crate::Isa;
use crate::simd::Avx2Fma;

// SAFETY: a value of Avx2Fma exists only on a CPU with AVX2 and FMA; run_to runs run_block
// with the tile of TILES[wide].
unsafe impl DirectIsa for Avx2Fma {
    const NAME: &'static str = "direct_f32_any_6x16_avx2fma";
    const ISA: Isa = Isa::Avx2Fma;
    const ROWS_NAME: &'static str = "direct_f32_rows_6x16_avx2fma";
    const DW_NAME: &'static str = "direct_f32_dw_4x2_avx2fma";
    const WINOGRAD_NAMES: [&'static str; 3] = [
        "winograd_f32_f23_6x16_avx2fma",
        "winograd_f32_f43_6x16_avx2fma",
        "winograd_f32_f63_6x16_avx2fma",
    ];
    const TILES: [(usize, usize); 2] = [(12, 1), (6, 2)];
    fn detect() -> Option<Self> {
        Avx2Fma::new()
    }
    fn run_to(self, b: &Block<'_>, out: Out<'_>, wide: bool) {
        // SAFETY: self proves AVX2 and FMA, the features run_avx2fma is compiled for.
        unsafe { run_avx2fma(self, b, out, wide) }
    }
    fn dispatch<J: SimdJob>(self, job: &mut J) {
        // SAFETY: self proves the features dispatch_avx2fma is compiled for.
        unsafe { dispatch_avx2fma(self, job) }
    }
}

#[target_feature(enable = "avx2,fma")]
fn run_avx2fma(s: Avx2Fma, b: &Block<'_>, out: Out<'_>, wide: bool) {
    if wide {
        run_block::<Avx2Fma, 6, 2>(s, b, out)
    } else {
        run_block::<Avx2Fma, 12, 1>(s, b, out)
    }
}

#[target_feature(enable = "avx2,fma")]
fn dispatch_avx2fma<J: SimdJob>(s: Avx2Fma, job: &mut J) {
    job.run(s)
}
