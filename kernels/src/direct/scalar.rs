//! The direct kernel in plain scalar code: 4 pixels x 4 channels (wide), 8 x 1 (narrow).

use super::tile::{Out, run_block};
use super::{Block, DirectIsa, SimdJob};
use crate::Isa;
use crate::simd::Scalar;

// SAFETY: Scalar needs no special instructions; run_to runs run_block with TILES[wide].
unsafe impl DirectIsa for Scalar {
    const NAME: &'static str = "direct_f32_any_4x4_scalar";
    const ISA: Isa = Isa::Scalar;
    const ROWS_NAME: &'static str = "direct_f32_rows_6x2_scalar";
    const DW_NAME: &'static str = "direct_f32_dw_4x2_scalar";
    const WINOGRAD_NAMES: [&'static str; 3] = [
        "winograd_f32_f23_4x4_scalar",
        "winograd_f32_f43_4x4_scalar",
        "winograd_f32_f63_4x4_scalar",
    ];
    const TILES: [(usize, usize); 2] = [(8, 1), (4, 4)];
    fn detect() -> Option<Self> {
        Some(Scalar)
    }
    fn dispatch<J: SimdJob>(self, job: &mut J) {
        job.run(self)
    }
    fn run_to(self, b: &Block<'_>, out: Out<'_>, wide: bool) {
        if wide {
            run_block::<Scalar, 4, 4>(self, b, out)
        } else {
            run_block::<Scalar, 8, 1>(self, b, out)
        }
    }
}
