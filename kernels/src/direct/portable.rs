//! The direct kernel on `wide::f32x4` (SSE2 / NEON): 4 x 8 wide tile (8 accumulators of 4
//! lanes), 8 x 4 narrow tile.

use super::tile::{Out, run_block};
use super::{Block, DirectIsa, SimdJob};
use crate::Isa;
use crate::simd::Portable;

// SAFETY: Portable needs no special instructions; run_to runs run_block with TILES[wide].
unsafe impl DirectIsa for Portable {
    const NAME: &'static str = "direct_f32_any_4x8_portable";
    const ISA: Isa = Isa::Portable;
    const ROWS_NAME: &'static str = "direct_f32_rows_6x8_portable";
    const DW_NAME: &'static str = "direct_f32_dw_4x2_portable";
    const WINOGRAD_NAMES: [&'static str; 3] = [
        "winograd_f32_f23_4x8_portable",
        "winograd_f32_f43_4x8_portable",
        "winograd_f32_f63_4x8_portable",
    ];
    const TILES: [(usize, usize); 2] = [(8, 1), (4, 2)];
    fn detect() -> Option<Self> {
        Isa::Portable.is_available().then_some(Portable)
    }
    fn dispatch<J: SimdJob>(self, job: &mut J) {
        job.run(self)
    }
    fn run_to(self, b: &Block<'_>, out: Out<'_>, wide: bool) {
        if wide {
            run_block::<Portable, 4, 2>(self, b, out)
        } else {
            run_block::<Portable, 8, 1>(self, b, out)
        }
    }
}
