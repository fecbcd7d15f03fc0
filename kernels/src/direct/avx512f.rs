//! The direct kernel on AVX-512F: 32 zmm registers.
//!
//! Wide tile 12 pixels x 32 channels: 24 accumulators + 2 weight vectors + 1 broadcast = 27
//! registers; per reduction step 2 loads + 12 broadcasts feed 24 FMAs. Narrow tile 24 x 16
//! for layers with <= 16 channels in the vectorised dimension. A wide block's last 1-4 rows
//! run in a 4 x 32 tile (`run_block_tail`).

use super::tile::{Out, run_block, run_block_tail};
use super::{Block, DirectIsa, SimdJob};
use crate::Isa;
use crate::simd::Avx512F;

// SAFETY: a value of Avx512F exists only on a CPU with AVX-512F; run_to runs run_block
// with the tile of TILES[wide] (the wide one through run_block_tail).
unsafe impl DirectIsa for Avx512F {
    const NAME: &'static str = "direct_f32_any_12x32_avx512f";
    const ISA: Isa = Isa::Avx512F;
    const ROWS_NAME: &'static str = "direct_f32_rows_6x32_avx512f";
    const DW_NAME: &'static str = "direct_f32_dw_4x2_avx512f";
    const WINOGRAD_NAMES: [&'static str; 3] = [
        "winograd_f32_f23_12x32_avx512f",
        "winograd_f32_f43_12x32_avx512f",
        "winograd_f32_f63_12x32_avx512f",
    ];
    const TILES: [(usize, usize); 2] = [(24, 1), (12, 2)];
    /// 1024 steps, not the default 128: a wide task's buffer (192 rows x 32 channels, 24
    /// KiB) and a 128-step chunk of its vector operand (16 KiB) do not both fit beside its
    /// input rows in Zen 4's 32 KiB L1, so each chunk's reload and store of every tile's
    /// partial sums cost more than streaming the operand from L2 does. 1024 steps (128 KiB,
    /// an eighth of Zen 4's 1 MiB L2) leave one chunk for any reduction up to 1535 steps.
    /// Zen 4, per call, medians over 5 alternating runs of `convnet bench --suite direct`
    /// against 128, 1 thread: forward 1.02-1.04x on every 3x3 layer (56x56x64 1.038,
    /// 14x14x256 1.029, CIFAR 1.044, stride 2 1.023), AlexNet's 11x11 1.03x and DCGAN's
    /// transposed layer 1.03x; backward-data 1.01-1.04x; backward-weight 1.02-1.04x; the
    /// stem, 1x1, depthwise and LeNet layers within 1%. 2 threads (6 runs): 1.02-1.04x on
    /// the 3x3 layers. The column form (`columns.rs`) chunks by it too: ResNet-50's 7x7
    /// layers at batch 1 (3x3, 3x3 stride 2 from 14x14, both 1x1) ran forward 1.03-1.04x
    /// and backward-data 1.02-1.05x, on 1 thread and 2 (3 and 4 alternating runs), when
    /// they still ran in that form (now only the 1x1 layers' backward-data does). AVX2
    /// keeps 128: its 16-channel rows fit both in L1, and 1024 ran its backward-data 0.90x.
    const RED_CHUNK: usize = 1024;
    fn detect() -> Option<Self> {
        Avx512F::new()
    }
    fn run_to(self, b: &Block<'_>, out: Out<'_>, wide: bool) {
        // SAFETY: self proves AVX-512F, the feature run_avx512f is compiled for.
        unsafe { run_avx512f(self, b, out, wide) }
    }
    fn dispatch<J: SimdJob>(self, job: &mut J) {
        // SAFETY: self proves the features dispatch_avx512f is compiled for.
        unsafe { dispatch_avx512f(self, job) }
    }
}

#[target_feature(enable = "avx512f")]
fn run_avx512f(s: Avx512F, b: &Block<'_>, out: Out<'_>, wide: bool) {
    if wide {
        run_block_tail::<Avx512F, 12, 2, 4>(s, b, out)
    } else {
        run_block::<Avx512F, 24, 1>(s, b, out)
    }
}

#[target_feature(enable = "avx512f")]
fn dispatch_avx512f<J: SimdJob>(s: Avx512F, job: &mut J) {
    job.run(s)
}
