//! `Algorithm::Auto`: the fastest supported kernel for a geometry, within the accuracy the
//! caller allows.
//!
//! Two modes:
//! - **Heuristic** (default): rules calibrated from `convnet bench --suite all`, in
//!   [`heuristic`]: one set for AVX-512 (a 2-core Sapphire Rapids Xeon, where the direct
//!   and Winograd tiles are 16 lanes wide and im2col's GEMM is not), one for the other
//!   levels (the same machine capped at AVX2).
//! - **Autotune** (opt-in: [`set_autotune`] or `CONVNET_AUTOTUNE=1`): the first request for
//!   a (geometry, pass, tolerance) times every candidate kernel a few times on synthetic
//!   data and caches the fastest in-process; with `CONVNET_AUTOTUNE_CACHE=FILE` decisions
//!   are also loaded from and saved to that file (one `key<TAB>kernel` line per decision,
//!   written atomically).
//!
//! The tolerance decides which Winograd tiles `Auto` may use: [`Tolerance::Exact`] only the
//! algorithms within `rho = 1` (direct, im2col, F(2x2,3x3)); [`Tolerance::Standard`]
//! (default) also F(4x4,3x3); [`Tolerance::Fast`] also F(6x6,3x3). Set it with
//! [`set_tolerance`] or `CONVNET_ACCURACY=exact|standard|fast`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::params::ConvGeom;
use crate::registry::{ConvKernel, select};
use crate::{Algorithm, ConvError, Isa, Pass, WinogradTile, accuracy};

/// How much error `Auto` may trade for speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tolerance {
    /// Only algorithms with `rho = 1`: reference, direct, im2col, Winograd F(2x2,3x3).
    Exact,
    /// Also Winograd F(4x4,3x3) (`rho = 16`; about 5x direct's relative L2 error).
    Standard,
    /// Also Winograd F(6x6,3x3) (`rho = 32`; about 10x direct's relative L2 error).
    Fast,
}

impl Tolerance {
    /// `exact`, `standard`, `fast`.
    pub fn name(self) -> &'static str {
        match self {
            Tolerance::Exact => "exact",
            Tolerance::Standard => "standard",
            Tolerance::Fast => "fast",
        }
    }
    /// Parses a name from [`Tolerance::name`].
    pub fn parse(s: &str) -> Option<Tolerance> {
        [Tolerance::Exact, Tolerance::Standard, Tolerance::Fast]
            .into_iter()
            .find(|t| t.name() == s.trim())
    }
    /// Whether `algo` is within this tolerance.
    pub fn allows(self, algo: Algorithm) -> bool {
        let limit = match self {
            Tolerance::Exact => 1.0,
            Tolerance::Standard => accuracy::RHO_WINOGRAD_F4,
            Tolerance::Fast => accuracy::RHO_WINOGRAD_F6,
        };
        accuracy::rho(algo) <= limit
    }
}

static TOLERANCE: AtomicU8 = AtomicU8::new(u8::MAX);
static AUTOTUNE: OnceLock<AtomicBool> = OnceLock::new();

/// The tolerance `Auto` uses (default `Standard`, or `CONVNET_ACCURACY`).
pub fn tolerance() -> Tolerance {
    match TOLERANCE.load(Ordering::Relaxed) {
        0 => Tolerance::Exact,
        1 => Tolerance::Standard,
        2 => Tolerance::Fast,
        _ => {
            let t = std::env::var("CONVNET_ACCURACY")
                .ok()
                .and_then(|v| Tolerance::parse(&v))
                .unwrap_or(Tolerance::Standard);
            set_tolerance(t);
            t
        }
    }
}

/// Sets the tolerance `Auto` uses from now on, process-wide.
pub fn set_tolerance(t: Tolerance) {
    TOLERANCE.store(t as u8, Ordering::Relaxed);
}

fn autotune_flag() -> &'static AtomicBool {
    AUTOTUNE
        .get_or_init(|| AtomicBool::new(std::env::var("CONVNET_AUTOTUNE").is_ok_and(|v| v == "1")))
}

/// Whether `Auto` times candidates instead of using the heuristic.
pub fn autotune() -> bool {
    autotune_flag().load(Ordering::Relaxed)
}

/// Turns autotuning on or off, process-wide.
pub fn set_autotune(on: bool) {
    autotune_flag().store(on, Ordering::Relaxed);
}

/// The algorithms `Auto` may use at `t`, most preferred first.
fn candidates(t: Tolerance) -> impl Iterator<Item = Algorithm> {
    [
        Algorithm::Direct,
        Algorithm::Winograd(WinogradTile::F4),
        Algorithm::Winograd(WinogradTile::F2),
        Algorithm::Winograd(WinogradTile::F6),
        Algorithm::Im2col,
    ]
    .into_iter()
    .filter(move |a| t.allows(*a))
}

/// The heuristic's choice: on AVX-512 [`heuristic_avx512`]'s; otherwise rules calibrated
/// with `CONVNET_MAX_ISA=avx2 convnet bench --suite all --pass all` (single thread, the
/// 2-core Sapphire Rapids Xeon capped at AVX2, 107 shapes x 3 passes, two runs; the figures
/// are GFLOP/s ratios from them):
/// - depthwise convs, every pass: the depthwise direct kernel (2.5-8x im2col on MobileNet's
///   3x3 layers);
/// - forward with <= 8 output channels per group (LeNet's C1): the pixel-vectorised direct
///   kernel (3x im2col), and its backward-data (stride 1, <= 8 input channels, the gradient
///   rows of an input row in L1, >= 16 output channels: LeNet's C3, 1.45x im2col) and
///   backward-weight (stride 1: LeNet's C1, 3-3.7x im2col); other backward-data with < 8
///   input channels per group and backward-weight with < 8 output channels per group:
///   im2col (the channel-vectorised tile would leave most lanes empty: 1.2-5x);
/// - dense layers (the window covers the whole input: LeNet's C5, DCGAN's first transposed
///   layer), every pass: the direct kernel (its dense form for backward-data and
///   backward-weight: one GEMM over the batch, 10-15x im2col's GEMV per image);
/// - backward-data of a conv whose output is smaller than its kernel: im2col (1.6x on
///   LeNet's C5 before the dense form);
/// - forward with fewer than 32 weights per output channel (VGG's 3 -> 64 stem, 27): over
///   planes of >= 96x96 the pixel-vectorised direct kernel, which stores its tiles straight
///   into the NCHW planes (Zen 3, medians of 3 alternating runs, 1 and 2 threads: 3 -> 64 at
///   224x224 1.4x and 1.7x im2col, at 112x112 1.0x and 1.4x, 3 -> 16 at 224x224 and 3 -> 32
///   at 128x128 1.15-1.5x); below, im2col (3 -> 64 at 64x64 1.36x and 0.93x, at 32x32 batch
///   16 0.91-0.98x; 1.07x over the channel-vectorised kernel, whose transposing epilogue
///   is half its time here). With a horizontal stride the pixel-vectorised kernel takes
///   those over <= 4 input channels whose output rows its tiles cover (see
///   `rows_banded::strided_forward_fits`): 3 -> 16, 32 and 64 at 224x224, 3x3 stride 2,
///   1.09-1.36x im2col on 1 thread and 1.3-1.85x on 2; at batch 4 2-3x (Zen 3, medians and
///   best of 6 alternating runs);
/// - 1x1 stride-1 convs: backward-data im2col (1.05-1.6x, its GEMM over the long channel
///   reduction) except over planes of >= 28x28 with <= 256 input channels, at most twice
///   the output channels (direct's pointwise form 1.03-1.48x, ties at worst); forward
///   direct (1.05-1.1x from 7x7 to 56x56: its pointwise form from 14x14, since its buffers
///   start on a cache line; im2col had led DenseNet's 56x56 layers by 1.2-1.5x before; on
///   Zen 3 im2col leads by 0-8%), but im2col below 28x28 where a 256-bit FMA runs as two
///   halves (Zen 1: 1.0-1.14x on 1 thread, 1.02-1.45x on 2);
///   backward-weight direct (1.05-1.7x) except over <= 49 pixels (ResNet-50's last 1x1
///   layers: im2col 1.3-1.5x);
/// - strided 1x1 convs (downsampling): direct (forward and backward-weight 1.25-2x;
///   backward-data, whose stride phases but one are zeros, 1.03-1.6x over three runs);
/// - strided and dilated backward-data: im2col with >= 128 channels on both sides (Zen 3,
///   pair medians of 5 alternating runs, 1 and 2 threads: ResNet-50's stride-2 3x3 layer
///   at 56x56, 128 channels, 1.2x and 1.2x, at batch 8 1.15x and 1.25x; 3x3 dilated by 2,
///   256 channels at 28x28 1.27x and 1.29x, batch 4 1.2x, 512 at 14x14 1.4x and 1.5x), and
///   strided over stride phases below 28x28 (col2im beat the phase split by 1.05-1.2x on
///   ResNet-50's stride-2 3x3 layers at 28x28 and 14x14); else direct (64 channels: stride 2
///   at 112x112 and dilated at 56x56, 0.91-0.99x im2col's time);
/// - 3x3+ convs over <= 49 output pixels (ResNet-50's 7x7 layers, 512 channels): direct on
///   forward and backward-weight: forward 1.07-1.1x, backward-weight a tie (best of four runs
///   each), where im2col led by 1.05-1.8x before the direct kernel's column form and aligned
///   buffers (backward-data: see the im2col rule below);
/// - 3x3 stride-1 convs with >= 32 channels in and out, forward and backward-data: Winograd
///   when the batch has enough tiles to amortise the filter transform: F(4x4,3x3) from 32
///   tiles of 4x4 (16 with prepared filters) when the two channel counts multiply to at most
///   128 x 128 or, on backward-data, to more than 256 x 256 (1.3-1.6x direct on ResNet-50
///   conv2, CIFAR, VGG-16's 56x56 and 112x112 layers; ResNet-50's conv5 at batch 8 1.1x),
///   the forward pass with more channels, and backward-data up to 256 x 256, from 48 tiles
///   (VGG-16's 28x28 layers, 256 and 512 -> 512: 1.2-2x the F(2x2) or direct Auto had
///   taken; ResNet-50's conv4 backward-data at batch 2, 32 tiles: F(2x2) 1.26x F(4x4) on
///   1 thread, 1.29x on 2, Zen 3, medians of 3-4 alternating runs). These F(4x4) rules come from an AVX2-only Zen 3 EPYC
///   (best of 3 alternating pairs), where Sapphire Rapids capped at AVX2 had put F(2x2) at
///   1.4x F(4x4) on 256 x 512 channels over 49 tiles. Backward-data with >= 192 channels on
///   both sides over planes below 28x28 that Winograd passes over goes to im2col (Zen 3:
///   AlexNet's 13x13 and VGG-16's 14x14 layers 0.92-1.05x the F(4x4) or direct before in
///   quiet minutes, 1.2-1.4x while other tenants load the memory, where im2col's cache-
///   blocked GEMM holds up best; ResNet-50's 7x7 layer 1.1x direct). Else
///   F(2x2,3x3) from 32 tiles of 2x2 (16 on backward-data) when >= 64 channels are
///   vectorised, the channel counts multiply to at most 256 x 512 or there are >= 256
///   tiles (512 x 512 at 7x7, batch 8: direct 1.5x both), and the tiles cover the image
///   exactly (AlexNet's 13x13 layers: direct 1.07-1.4x);
/// - on CPUs that run a 256-bit FMA as two halves ([`crate::isa::split_256bit_fma`]: Zen 1,
///   where the 3x3 rules above left Winograd 1.1-1.7x behind on ResNet-50's, VGG-16's and
///   AlexNet's 7x7 to 14x14 layers), F(2x2) from 32 tiles whatever the channels and however
///   its tiles fit, and F(4x4) from 32 tiles above 256 x 256 channels and from 48 between
///   128 x 128 and 256 x 256 (see the arms);
/// - everything else, including dilated and 5x5+ convs (but dilated backward-data from 128
///   channels, above): direct (1.1-1.4x im2col).
pub fn heuristic(g: &ConvGeom, pass: Pass, t: Tolerance, prepared: bool) -> Algorithm {
    if Isa::detect() == Isa::Avx512F {
        let cpu = if crate::isa::amd_zen5_or_later() {
            Avx512Cpu::Zen5
        } else if crate::isa::amd_zen4() {
            Avx512Cpu::Zen4
        } else {
            Avx512Cpu::Other
        };
        return heuristic_avx512(g, pass, t, prepared, cpu);
    }
    // The split only halves AVX2's FMAs: the portable and scalar kernels (capped runs) keep
    // the rules as calibrated.
    let split = Isa::detect() == Isa::Avx2Fma && crate::isa::split_256bit_fma();
    heuristic_avx2(g, pass, t, prepared, split)
}

/// [`heuristic`] below AVX-512, `split` where a 256-bit FMA runs as two halves.
fn heuristic_avx2(
    g: &ConvGeom,
    pass: Pass,
    t: Tolerance,
    prepared: bool,
    split: bool,
) -> Algorithm {
    let (c_in_g, c_out_g) = (g.c_in_g(), g.c_out_g());
    let [kh, kw] = g.kernel_hw();
    let [sh, sw] = g.stride();
    let [oh, ow] = g.output_hw();
    let [h, w] = g.input_hw();
    let pixels = g.n() * oh * ow;
    if let Some(algo) = few_channels(g, pass) {
        return algo;
    }
    if pass == Pass::Forward && c_in_g * kh * kw < 32 {
        // (8 lanes: these rules were measured on AVX2.)
        return if oh * ow >= 96 * 96 && crate::direct::rows_forward_fits(g, 8).is_ok() {
            Algorithm::Direct
        } else {
            Algorithm::Im2col
        };
    }
    if g.is_pointwise() {
        let im2col = match pass {
            // Direct (its pointwise form) over planes of >= 28x28 where the input side is
            // at most 256 channels and at most twice the output side (medians of four
            // runs: ResNet-50's 64 -> 256 1.48x, 64 -> 64 1.09x, DenseNet's first block
            // 1.03-1.34x, 28x28 128 -> 512 1.17x, DenseNet's 28x28 layers up to 256 -> 128
            // ties at 0.97-1.02x; beyond, e.g. 256 -> 64 at 56x56 or 384 -> 128 at 28x28,
            // im2col 1.3x). Since direct's backward-data reads transposed weights the two
            // are within 0.92-1.07x of each other either side of the line (Zen 3, medians
            // of 5 alternating runs over 9 such layers), so the line stays.
            Pass::BackwardData => !(oh * ow >= 28 * 28 && c_in_g <= 256 && c_in_g <= 2 * c_out_g),
            // Where a 256-bit FMA runs as two halves, im2col below 28x28 (Zen 1, the 70
            // 1x1 layers of ResNet-50, DenseNet-121 and VGG-16: at 14x14 and 7x7 1.0-1.14x
            // direct on 1 thread, 1.02-1.45x on 2; at 28x28 and 56x56 it leads by
            // 1.02-1.07x on 1 thread but trails by up to 1.5x on 2, so direct stays there).
            Pass::Forward => split && oh * ow < 28 * 28,
            Pass::BackwardWeight => pixels <= 49,
        };
        return if im2col {
            Algorithm::Im2col
        } else {
            Algorithm::Direct
        };
    }
    if kh * kw == 1 {
        // Strided 1x1 (downsampling), every pass (a 1x1 kernel's dilation changes nothing).
        return Algorithm::Direct;
    }
    let strided = sh > 1 || sw > 1;
    if pass == Pass::BackwardData && (strided || g.dilation() != [1, 1]) {
        // Strided or dilated backward-data: im2col from 128 channels on both sides, and
        // strided over stride phases below 28x28 (see the doc comment).
        let deep = c_in_g >= 128 && c_out_g >= 128;
        if deep || (strided && h.div_ceil(sh) * w.div_ceil(sw) < 28 * 28) {
            return Algorithm::Im2col;
        }
    }
    let deep = c_in_g >= 32 && c_out_g >= 32;
    let winograd_shape = kh == 3 && kw == 3 && sh == 1 && sw == 1 && g.dilation() == [1, 1];
    if winograd_shape && pass != Pass::BackwardWeight && deep {
        let ([ph, pw], vectorised) = if pass == Pass::Forward {
            ([oh, ow], c_out_g)
        } else {
            ([h, w], c_in_g)
        };
        let enough = if prepared { 16 } else { 32 };
        let tiles = |m: usize| g.n() * ph.div_ceil(m) * pw.div_ceil(m);
        let channels = c_in_g * c_out_g;
        let f4 = Algorithm::Winograd(WinogradTile::F4);
        let f2 = Algorithm::Winograd(WinogradTile::F2);
        // From 32 tiles with <= 128 x 128 channels; with more, the forward pass from 48 (a
        // 28x28 plane), and backward-data up to 256 x 256 channels too (ResNet-50's conv4
        // at batch 2, 32 tiles: F(2x2) 1.26x F(4x4) on 1 thread, 1.29x on 2; with 512
        // channels F(4x4) ties F(2x2) at 32 tiles, and leads from 49). From 96 where the
        // 4x4 tiles overhang the plane: conv4's 14x14 in 16x16, where F(2x2)'s 7x7 tiles
        // fit, F(2x2) leads at batch 3 and 4 (48 and 64 tiles: 1.01-1.25x, forward and
        // backward-data, 1 and 2 threads, in every one of 3 sets of 5-7 alternations),
        // ties at batch 6 (0.94-0.97) and trails from batch 8 (0.91); 256 channels over an
        // exact 32x32 (64 tiles) keep F(4x4) (1.06-1.10x). Same-process alternations of
        // the algorithms, Zen 3.
        //
        // Where a 256-bit FMA runs as two halves (Zen 1: see `split_256bit_fma`), Winograd's
        // saved multiplies weigh twice as much against its transforms' memory traffic:
        // F(4x4) from 32 tiles with more than 256 x 256 channels in both passes too
        // (ResNet-50's conv5 at batch 8: 1.73x direct on 1 thread, 1.58x on 2) and from 48
        // between, overhang or not (conv4 at batch 4, 64 tiles: 1.13x F(2x2) on 1 thread,
        // 1.09x on 2; at batch 2, 32 tiles, F(2x2) 1.03-1.09x). Zen 1 EPYC, medians of 5.
        let overhang = ph % 4 != 0 || pw % 4 != 0;
        let f4_tiles = if channels <= 128 * 128
            || ((pass == Pass::BackwardData || split) && channels > 256 * 256)
        {
            enough
        } else if overhang && !split {
            enough.max(96)
        } else {
            enough.max(48)
        };
        if tiles(4) >= f4_tiles && t.allows(f4) {
            return f4;
        }
        // Backward-data's F(2x2) keeps up from fewer tiles (calibrated on DenseNet's 7x7
        // layers, where it now ties direct; their odd size sends them to direct below).
        let enough2 = if pass == Pass::BackwardData {
            16
        } else {
            enough
        };
        // Whole 2x2 tiles only: at AlexNet's 13x13 the partial last row and column of
        // tiles cost F(2x2) its margin (direct 1.07-1.4x on all three layers, two runs).
        // Where a 256-bit FMA runs as two halves, from 32 tiles F(2x2) leads whatever the
        // channels and however the tiles fit (Zen 1, 1 thread: AlexNet's 13x13 layers
        // 1.24-1.3x direct forward and 1.2x im2col backward-data, VGG-16's 14x14 layer
        // 1.54x and 1.36x, conv5 at batch 2 1.17x and 1.1x; on 2 threads 0.9-1.2x).
        let many = split && tiles(2) >= 32;
        if tiles(2) >= enough2
            && vectorised >= 64
            && (channels <= 256 * 512 || tiles(2) >= 256 || many)
            && ((ph % 2 == 0 && pw % 2 == 0) || many)
            && t.allows(f2)
        {
            return f2;
        }
        // Backward-data with >= 192 channels on both sides over planes below 28x28 that
        // Winograd passed over (too few tiles, or not allowed): im2col, whose GEMM blocks
        // the weights for the caches (AlexNet's 13x13 layers, VGG-16's and ResNet-50's 14x14
        // and 7x7 ones; against direct alone, as under `exact`, 1.0-1.25x on Zen 3).
        if pass == Pass::BackwardData && c_in_g >= 192 && c_out_g >= 192 && h * w < 28 * 28 {
            return Algorithm::Im2col;
        }
    }
    Algorithm::Direct
}

/// The rules every ISA shares, for convs with too few channels in the vectorised dimension
/// for the channel-vectorised tile: depthwise convs and forward with <= 8 output channels
/// per group to the direct kernels (depthwise, pixel-vectorised); dense layers (the window
/// covers the input: LeNet-5's C5, DCGAN's first transposed layer) to the direct kernel,
/// whose dense form runs them as one GEMM over the batch (backward-data 15-30x, backward-
/// weight and forward 10-20x im2col's GEMV per image, AVX-512 and AVX2); backward-data and
/// stride-1 backward-weight with few channels on the pixel-vectorised side to the
/// pixel-vectorised kernel where it runs them (see the arms); other backward-data with < 8
/// input channels per group or an output smaller than the kernel, and backward-weight with
/// < 8 output channels per group, to im2col. `None` for everything else.
fn few_channels(g: &ConvGeom, pass: Pass) -> Option<Algorithm> {
    let (c_in_g, c_out_g) = (g.c_in_g(), g.c_out_g());
    let [kh, kw] = g.kernel_hw();
    let [sh, sw] = g.stride();
    let [oh, ow] = g.output_hw();
    if g.is_depthwise() || g.is_dense() {
        return Some(Algorithm::Direct);
    }
    match pass {
        Pass::Forward if c_out_g <= 8 => Some(Algorithm::Direct),
        // The pixel-vectorised kernel's backward-data (<= 8 input channels, or fewer than
        // 32 weights per input channel, at stride 1 with the gradient rows of an input row
        // in L1 and planes of >= 112x112, else <= 6 in its banded form, one stride phase at
        // a time): 64 -> 3 and 32 -> 3 at 224x224 and 128x128 1.2x the channel-vectorised
        // kernel (see `rows::SHORT_REDUCTION`, `rows::backward_data_fits`); LeNet's C3 1.6x im2col (AVX-512) and 1.45x (AVX2), its C1
        // (6 -> 1) 1.07-1.1x (AVX-512, 3-channel tiles) and 1.8x (AVX2, the one-channel
        // tile of 6 rows; 1.4x with 3-channel tiles); on AVX2 (Zen 3,
        // medians of 3 runs, both kernels in one process: another binary's im2col moved
        // by up to 25% with its buffers' addresses) the ResNet-50 stem 1.1-1.5x, AlexNet's
        // conv1 1.0-1.3x, VGG's 3 -> 64 stem 2.1x, 3 -> 8 and 3 -> 12 at stride 2
        // 1.3-2.3x, DCGAN's 4x4 stride-2 layer into 3 channels 0.95-1.05x, stride 1 from
        // 8 or 12 gradient channels into 3-8 channels 1.9-3.4x. Not strided
        // convs with fewer than 4 taps per phase over >= 32 gradient channels (3x3 stride
        // 2, 4 or 6 <- 32 or 64 channels: im2col 1.1-1.2x, its GEMM deep enough and the
        // phases' reductions short).
        Pass::BackwardData
            if crate::direct::rows_backward_data_fits(g).is_ok()
                && !(sh * sw > 1 && kh * kw < 4 * sh * sw && c_out_g >= 32) =>
        {
            Some(Algorithm::Direct)
        }
        Pass::BackwardData if c_in_g < 8 || oh < kh || ow < kw => Some(Algorithm::Im2col),
        // The pixel-vectorised kernel's backward-weight (stride 1, <= 8 output channels or
        // fewer than 32 weights per output channel): LeNet's C1 5-6x im2col on AVX-512,
        // 3-3.7x on AVX2; 3 or 64 -> 8 channels and 4-channel groups 1.8-5x the channel-
        // vectorised kernel; 3 -> 16 and 3 -> 64 at 224x224 1.3x (1 thread) and 1.4-2.5x
        // (2 threads), 1.2-1.8x im2col (AVX2).
        Pass::BackwardWeight if crate::direct::rows_backward_weight_fits(g).is_ok() => {
            Some(Algorithm::Direct)
        }
        Pass::BackwardWeight if c_out_g < 8 => Some(Algorithm::Im2col),
        _ => None,
    }
}

/// The heuristic on AVX-512, where the direct and Winograd kernels run 16-lane tiles and
/// im2col's GEMM (`matrixmultiply`, AVX2 at most) does not: calibrated with `convnet bench
/// --suite all --pass all` (single thread, 2-core Sapphire Rapids Xeon, 107 shapes x 3
/// passes, two runs; GFLOP/s ratios from those runs):
/// - depthwise convs, and forward with <= 8 output channels per group: the direct kernels
///   (as on AVX2); forward with fewer than 32 weights per output channel goes to direct
///   too, which is the pixel-vectorised kernel there (measured on AVX2 only: see
///   `rows::SHORT_REDUCTION`);
/// - dense layers (the window covers the input): direct (as on AVX2);
/// - backward-data of stride-1 convs with <= 8 input channels per group whose gradient rows
///   fit L1 (LeNet's C1 and C3): the pixel-vectorised direct kernel (1.07-1.6x im2col);
///   its backward-weight at stride 1 with <= 8 output channels per group (LeNet's C1: 5-6x
///   im2col);
/// - backward-data with <= 6 input channels per group in the pixel-vectorised kernel's
///   banded form (the 3-channel stems, which went to im2col at 2-2.6x the channel-
///   vectorised kernel before that form existed): the rule and its measurements are
///   AVX2's (see `few_channels`), not yet re-measured on AVX-512; and so are the
///   pixel-vectorised kernel's short reductions (fewer than 32 weights per channel) on
///   backward-data over planes of >= 112x112 and on backward-weight;
/// - other backward-data with < 8 input channels per group or an output smaller than the
///   kernel, and strided backward-weight with < 8 output channels per group: im2col;
/// - 3x3 stride-1 convs with >= 32 channels in and out, forward and backward-data, by
///   pixels per image: at 224x224 and above direct (1.2-1.4x F(4x4): the transformed
///   input outgrows the caches); from 112x112 Winograd F(4x4) (VGG-16's 112x112 layers:
///   1.1-1.3x direct; F(2x2) where F(4x4) is not allowed: 1.0-1.15x); from 56x56
///   F(4x4) when >= 64 channels are vectorised and one side has <= 64 channels (ResNet-50's
///   conv2 1.0-1.15x, DenseNet's 128 -> 32 backward-data 1.2x) or on backward-data (VGG-16's
///   56x56 layers: 1.07-1.3x F(2x2) in three runs, ahead of direct in five of six rows),
///   and on the forward pass when both sides have >= 128 (VGG-16's 56x56 layers: within 5%
///   of direct and F(2x2) on Sapphire Rapids, where F(2x2) led in most runs, but on Zen 5
///   1.36-1.40x F(2x2) and 1.8-1.9x direct, prepared, 1 and 2 threads, medians of 3), F(2x2)
///   there where F(4x4) is not allowed; below 56x56 direct (1.2-2x Winograd at 28x28 and
///   14x14, 1.7x at 7x7 batch 8);
/// - on AMD's Zen 4 ([`crate::isa::amd_zen4`]), whose 512-bit FMAs run as two halves
///   (117 GFLOP/s a core, a 2-core EPYC 9004 guest), the same 3x3 convs: F(4x4) from 28x28
///   or on batches of 32 4x4 tiles or more (1.6-3.0x direct at 28x28 to 224x224, ResNet-50's
///   7x7 layer at batch 8 1.4x, 2.3x prepared, DenseNet-121's 128 -> 32 at 28x28 and 56x56
///   1.4-2.1x, CIFAR's 32x32 at batch 16 1.6-1.75x); else from 12x12 with >= 64 channels
///   each side (ResNet-50's and VGG-16's 14x14 and AlexNet's 13x13 layers) F(2x2) (1.1-1.5x
///   direct unprepared, where F(4x4)'s filter transform per call made it 0.8-0.95x on 2
///   threads), and F(4x4) with prepared weights (1.24-1.37x F(2x2) on 1 thread, 1.04-1.32x
///   on 2, medians of 3 runs, once the Winograd kernel split few tiles by channel blocks
///   across threads: before, F(2x2) led on 2 threads); and with prepared weights F(2x2) from
///   7x7 (ResNet-50's 7x7 layer at batch 1 1.6-2.0x, 1.25-1.36x F(4x4); DenseNet's 128 -> 32
///   at 7x7 and 14x14 1.1-1.5x; 0.7-0.9x direct unprepared). `convnet bench` over 22 such
///   layers, forward and backward-data, 1 and 2 threads, prepared and not, before the
///   prepared F(4x4) rule: these picks were the fastest or 0.69-0.81x of it (the rows below
///   0.9x were F(2x2) where F(4x4) led, on 1 thread, prepared: the rule's layers; 2 threads
///   unprepared: all but one row within 0.9x), where the rules below had taken direct at
///   0.33-0.85x of the fastest on 33 of 44 rows on 1 thread, prepared;
/// - on AMD's Zen 5 ([`crate::isa::amd_zen5_or_later`]), the same 3x3 convs with >= 64
///   channels vectorised: F(4x4) from 28x28 (ahead of direct by 1.3-2.0x at 28x28 to
///   112x112 on 1 thread, 1.4-1.8x on 2 at 28x28, by 1.0-1.2x at 224x224: VGG-16's,
///   ResNet-50's and DenseNet-121's layers, `--suite all`, and medians of 3 alternating runs
///   prepared and not); with prepared weights also F(4x4) on batches of 32 4x4 tiles or
///   more (ResNet-50's 7x7 layer at batch 8: 1.9x direct on 1 thread, 1.4x on 2), else
///   F(2x2) from 12x12 with >= 128 channels vectorised (ResNet-50's and VGG-16's 14x14
///   layers: 1.3-1.4x direct on 1 and 2 threads, where the weight transform per call cost
///   F(4x4) 0.66x direct unprepared; AlexNet's 13x13 layers 1.12-1.25x, and DenseNet's
///   14x14 backward-data 1.19x, 1 thread, `--suite all --prepared`); and with prepared
///   weights F(4x4) from 28x28 with 32 channels vectorised (DenseNet-121's 128 -> 32
///   forward at 28x28: 1.19x direct on 1 thread, 1.28x on 2; at 56x56 1.03-1.05x, F(4x4)'s
///   times varying from run to run there; its 32 -> 128 mirror's backward-data 1.2x; not at
///   14x14, 1.2x on 1 thread but 0.94x on 2; medians of 3-5 alternating runs; unprepared,
///   F(4x4) is within 7% of direct);
/// - everything else, including 1x1 and strided convs and backward-weight: direct
///   (1.2-3x im2col). That includes backward-data over small stride phases with a deep
///   reduction (ResNet-50's and DenseNet's 7x7 layers), which went to im2col (1.05-1.8x)
///   until the direct kernel's column form took them (1.1-1.5x im2col; on AVX-512 its pixel
///   form, which since leads the column form there on the 3x3 layers).
fn heuristic_avx512(
    g: &ConvGeom,
    pass: Pass,
    t: Tolerance,
    prepared: bool,
    cpu: Avx512Cpu,
) -> Algorithm {
    let zen5 = cpu == Avx512Cpu::Zen5;
    let (c_in_g, c_out_g) = (g.c_in_g(), g.c_out_g());
    let [kh, kw] = g.kernel_hw();
    let [sh, sw] = g.stride();
    let [oh, ow] = g.output_hw();
    let [h, w] = g.input_hw();
    if let Some(algo) = few_channels(g, pass) {
        return algo;
    }
    let winograd_shape = kh == 3 && kw == 3 && sh == 1 && sw == 1 && g.dilation() == [1, 1];
    if winograd_shape && pass != Pass::BackwardWeight && c_in_g >= 32 && c_out_g >= 32 {
        let ([ph, pw], vectorised) = if pass == Pass::Forward {
            ([oh, ow], c_out_g)
        } else {
            ([h, w], c_in_g)
        };
        let pixels = ph * pw;
        let f4 = Algorithm::Winograd(WinogradTile::F4);
        let f2 = Algorithm::Winograd(WinogradTile::F2);
        // 4x4 output tiles of the whole batch.
        let tiles4 = g.n() * ph.div_ceil(4) * pw.div_ceil(4);
        if cpu == Avx512Cpu::Zen4 {
            if (pixels >= 28 * 28 || tiles4 >= 32) && t.allows(f4) {
                return f4;
            }
            let deep = c_in_g.min(c_out_g) >= 64 && pixels >= 12 * 12;
            if deep && prepared && t.allows(f4) {
                return f4;
            }
            if (deep || (prepared && pixels >= 7 * 7)) && t.allows(f2) {
                return f2;
            }
            return Algorithm::Direct;
        }
        if zen5 && vectorised >= 64 {
            if (pixels >= 28 * 28 || (prepared && tiles4 >= 32)) && t.allows(f4) {
                return f4;
            }
            if prepared && pixels >= 12 * 12 && vectorised >= 128 {
                return f2;
            }
        }
        if zen5 && prepared && pixels >= 28 * 28 && t.allows(f4) {
            return f4;
        }
        if pixels >= 224 * 224 {
            return Algorithm::Direct;
        }
        if pixels >= 112 * 112 {
            return if t.allows(f4) { f4 } else { f2 };
        }
        if pixels >= 56 * 56 && vectorised >= 64 {
            if t.allows(f4) {
                return f4;
            }
            if c_in_g.min(c_out_g) > 64 && pass == Pass::Forward {
                return f2;
            }
        }
    }
    Algorithm::Direct
}

/// The CPUs [`heuristic_avx512`] has rules of its own for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Avx512Cpu {
    /// AMD's Zen 4 ([`crate::isa::amd_zen4`]): 512-bit FMAs at half width.
    Zen4,
    /// AMD's Zen 5 and later ([`crate::isa::amd_zen5_or_later`]).
    Zen5,
    /// Everything else: the rules measured on Sapphire Rapids.
    Other,
}

/// Geometry, pass, tolerance and threads: a decision timed on one thread count need not
/// hold on another.
type TuneKey = (ConvGeom, u8, Tolerance, usize);

/// In-process decisions.
fn tuned() -> &'static Mutex<HashMap<TuneKey, &'static str>> {
    static TUNED: OnceLock<Mutex<HashMap<TuneKey, &'static str>>> = OnceLock::new();
    TUNED.get_or_init(|| Mutex::new(HashMap::new()))
}

fn cache_path() -> Option<std::path::PathBuf> {
    std::env::var_os("CONVNET_AUTOTUNE_CACHE").map(Into::into)
}

fn pass_code(pass: Pass) -> u8 {
    pass as u8
}

/// A stable text key for the disk cache, ending in the thread count (`_t2`).
fn key_text(g: &ConvGeom, pass: Pass, t: Tolerance, threads: usize) -> String {
    let [h, w] = g.input_hw();
    let [oh, ow] = g.output_hw();
    let [kh, kw] = g.kernel_hw();
    let [sh, sw] = g.stride();
    let [dh, dw] = g.dilation();
    let [pt, pl] = g.pad_tl();
    format!(
        "n{}c{}k{}g{}_{h}x{w}_{oh}x{ow}_{kh}x{kw}_s{sh}x{sw}_d{dh}x{dw}_p{pt}x{pl}_{}_{}_t{threads}",
        g.n(),
        g.c_in(),
        g.c_out(),
        g.groups(),
        pass.name(),
        t.name()
    )
}

/// Decisions in the disk cache, by key text (loaded from the file on first use).
fn disk_entries() -> &'static Mutex<HashMap<String, &'static str>> {
    static ENTRIES: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    ENTRIES.get_or_init(|| {
        let mut entries = HashMap::new();
        if let Some(text) = cache_path().and_then(|p| std::fs::read_to_string(p).ok()) {
            for line in text.lines() {
                if let Some((key, kernel)) = line.split_once('\t')
                    && let Some(k) = crate::registry::by_name(kernel.trim())
                {
                    entries.insert(key.to_string(), k.name());
                }
            }
        }
        Mutex::new(entries)
    })
}

/// Writes every disk entry to the cache file: a temporary file, then a rename.
fn save_cache(path: &std::path::Path) {
    let entries = disk_entries().lock().unwrap_or_else(|e| e.into_inner());
    let mut lines: Vec<String> = entries.iter().map(|(k, v)| format!("{k}\t{v}")).collect();
    lines.sort();
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, lines.join("\n") + "\n").is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// Rounds of [`time_candidates`].
const TUNE_ROUNDS: usize = 5;

/// Times every kernel of `kernels` on `pass` of `g` with synthetic data, in seconds: one
/// warm-up run each (the first-call costs: scratch buffers, page faults), then
/// [`TUNE_ROUNDS`] rounds running each once, interleaved so the machine's load changes hit
/// them alike; the best of each kernel's rounds.
fn time_candidates(kernels: &[&dyn ConvKernel], g: &ConvGeom, pass: Pass) -> Vec<f64> {
    let data = |len: usize| {
        (0..len)
            .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
            .collect::<Vec<f32>>()
    };
    let (x, w, dy) = (data(g.x_len()), data(g.w_len()), data(g.y_len()));
    let mut out = vec![0.0f32; g.x_len().max(g.y_len()).max(g.w_len())];
    let mut run = |kernel: &dyn ConvKernel| {
        let t0 = Instant::now();
        match pass {
            Pass::Forward => kernel.forward(g, &x, &w, None, &mut out[..g.y_len()]),
            Pass::BackwardData => kernel.backward_data(g, &dy, &w, None, &mut out[..g.x_len()]),
            Pass::BackwardWeight => kernel.backward_weight(g, &x, &dy, &mut out[..g.w_len()]),
        }
        t0.elapsed().as_secs_f64()
    };
    for k in kernels {
        run(*k);
    }
    let mut best = vec![f64::INFINITY; kernels.len()];
    for _ in 0..TUNE_ROUNDS {
        for (k, b) in kernels.iter().zip(best.iter_mut()) {
            *b = b.min(run(*k));
        }
    }
    best
}

/// The autotuned kernel: cached, or timed now among the best-ISA kernel of every allowed
/// algorithm that supports the geometry.
fn tune(g: &ConvGeom, pass: Pass, t: Tolerance) -> Result<&'static dyn ConvKernel, ConvError> {
    let threads = crate::parallel::threads();
    let key = (*g, pass_code(pass), t, threads);
    let text = key_text(g, pass, t, threads);
    if let Some(name) = tuned()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .copied()
        && let Some(k) = crate::registry::by_name(name)
    {
        return Ok(k);
    }
    if let Some(name) = disk_entries()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&text)
        .copied()
        && let Some(k) = crate::registry::by_name(name)
    {
        tuned()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, k.name());
        return Ok(k);
    }
    let mut kernels: Vec<&'static dyn ConvKernel> = Vec::new();
    for algo in candidates(t) {
        if let Ok(k) = select(algo, g, pass)
            && !kernels.iter().any(|u| u.name() == k.name())
        {
            kernels.push(k);
        }
    }
    let times = time_candidates(&kernels, g, pass);
    // The first of the fastest, in candidate order (ties are rare; the order is fixed).
    let k = kernels
        .iter()
        .zip(&times)
        .fold(
            None,
            |best: Option<(&'static dyn ConvKernel, f64)>, (k, &secs)| match best {
                Some((_, b)) if b <= secs => best,
                _ => Some((*k, secs)),
            },
        )
        .map(|(k, _)| k)
        .ok_or(ConvError::Unsupported {
            kernel: "auto",
            reason: "any available kernel for this geometry",
        })?;
    tuned()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, k.name());
    if let Some(path) = cache_path() {
        disk_entries()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(text, k.name());
        save_cache(&path);
    }
    Ok(k)
}

/// The kernel `Auto` runs for canonical `pass` on `g`; `prepared` when the weights will be
/// prepared once and reused (a [`crate::ConvPlan`]).
pub fn select_auto(
    g: &ConvGeom,
    pass: Pass,
    prepared: bool,
) -> Result<&'static dyn ConvKernel, ConvError> {
    let t = tolerance();
    if autotune() {
        return tune(g, pass, t);
    }
    let first = heuristic(g, pass, t, prepared);
    // The heuristic's pick, else the remaining candidates in preference order, else the
    // reference (which supports everything).
    std::iter::once(first)
        .chain(candidates(t))
        .chain([Algorithm::Reference])
        .find_map(|algo| select(algo, g, pass).ok())
        .ok_or(ConvError::Unsupported {
            kernel: "auto",
            reason: "any available kernel for this geometry",
        })
}

#[cfg(test)]
mod tests {
    use super::{Avx512Cpu, Tolerance, heuristic_avx2, heuristic_avx512};
    use crate::params::ConvGeom;
    use crate::{Algorithm, ConvParams, Pass, WinogradTile};

    const F2: Algorithm = Algorithm::Winograd(WinogradTile::F2);
    const F4: Algorithm = Algorithm::Winograd(WinogradTile::F4);

    /// A `k x k` "same" conv (odd `k`) over `hw x hw` planes.
    fn same(k: usize, n: usize, c_in: usize, hw: usize, c_out: usize) -> ConvGeom {
        let p = ConvParams {
            padding: [k / 2; 4],
            ..ConvParams::new(n, c_in, hw, hw, c_out, [k, k])
        };
        p.validate().expect("a valid conv")
    }

    /// Auto's AVX2 pick for a `k x k` "same" conv, `split` or not.
    fn pick(
        k: usize,
        n: usize,
        c_in: usize,
        hw: usize,
        c_out: usize,
        pass: Pass,
        split: bool,
    ) -> Algorithm {
        let g = same(k, n, c_in, hw, c_out);
        heuristic_avx2(&g, pass, Tolerance::Standard, false, split)
    }

    #[test]
    fn split_fma_cpus_take_winograd_on_more_layers() {
        let (f2, f4) = (F2, F4);
        // (batch, c_in, plane, c_out, pass, pick on full-width FMAs, pick on split ones)
        let cases = [
            // ResNet-50's conv5 at batch 8: 32 tiles of 4x4 over 512 x 512 channels.
            (8, 512, 7, 512, Pass::Forward, Algorithm::Direct, f4),
            // At batch 2: 32 tiles of 2x2 (partial), 512 x 512 channels.
            (2, 512, 7, 512, Pass::Forward, Algorithm::Direct, f2),
            (2, 512, 7, 512, Pass::BackwardData, Algorithm::Im2col, f2),
            // At batch 1: 16 tiles of 2x2, too few either way.
            (
                1,
                512,
                7,
                512,
                Pass::Forward,
                Algorithm::Direct,
                Algorithm::Direct,
            ),
            (
                1,
                512,
                7,
                512,
                Pass::BackwardData,
                Algorithm::Im2col,
                Algorithm::Im2col,
            ),
            // AlexNet's 13x13 layer, 192 -> 384: 49 partial 2x2 tiles.
            (1, 192, 13, 384, Pass::Forward, Algorithm::Direct, f2),
            (1, 192, 13, 384, Pass::BackwardData, Algorithm::Im2col, f2),
            // ResNet-50's conv4 at batch 4: 64 overhanging 4x4 tiles over 256 x 256.
            (4, 256, 14, 256, Pass::Forward, f2, f4),
            (2, 256, 14, 256, Pass::Forward, f2, f2),
            // ResNet-50's conv2: F(4x4) everywhere.
            (1, 64, 56, 64, Pass::Forward, f4, f4),
        ];
        for (n, c_in, hw, c_out, pass, full, split) in cases {
            let shape = format!("{n}x{c_in}x{hw}x{hw} -> {c_out}, {pass:?}");
            assert_eq!(
                pick(3, n, c_in, hw, c_out, pass, false),
                full,
                "{shape}, full-width"
            );
            assert_eq!(
                pick(3, n, c_in, hw, c_out, pass, true),
                split,
                "{shape}, split"
            );
        }
    }

    #[test]
    fn avx512_takes_winograd_f4_on_deep_56x56_layers_where_allowed() {
        let (f2, f4) = (F2, F4);
        // (c_in, plane, c_out, pass, pick at the standard tolerance, pick when exact)
        let cases = [
            // VGG-16's conv3_1 and conv3_2: F(2x2) only where F(4x4) is not allowed.
            (128, 56, 256, Pass::Forward, f4, f2),
            (256, 56, 256, Pass::Forward, f4, f2),
            (256, 56, 256, Pass::BackwardData, f4, Algorithm::Direct),
            // ResNet-50's conv2 (64 channels): F(4x4), else direct.
            (64, 56, 64, Pass::Forward, f4, Algorithm::Direct),
            // Below 56x56, and backward-weight: direct.
            (
                256,
                28,
                256,
                Pass::Forward,
                Algorithm::Direct,
                Algorithm::Direct,
            ),
            (
                256,
                56,
                256,
                Pass::BackwardWeight,
                Algorithm::Direct,
                Algorithm::Direct,
            ),
        ];
        for (c_in, hw, c_out, pass, standard, exact) in cases {
            let g = same(3, 1, c_in, hw, c_out);
            let shape = format!("{c_in}x{hw}x{hw} -> {c_out}, {pass:?}");
            assert_eq!(
                heuristic_avx512(&g, pass, Tolerance::Standard, false, Avx512Cpu::Other),
                standard,
                "{shape}"
            );
            assert_eq!(
                heuristic_avx512(&g, pass, Tolerance::Exact, false, Avx512Cpu::Other),
                exact,
                "{shape}, exact"
            );
        }
    }

    #[test]
    fn zen5_takes_winograd_on_more_layers() {
        let (f2, f4, direct) = (F2, F4, Algorithm::Direct);
        // (c_in, plane, c_out, pass, prepared, pick on Zen 5, pick elsewhere), at the
        // standard tolerance.
        let cases = [
            // VGG-16's 224x224 and 28x28 layers, ResNet-50's 28x28 conv2.
            (64, 224, 64, Pass::Forward, false, f4, direct),
            (512, 28, 512, Pass::BackwardData, false, f4, direct),
            (128, 28, 128, Pass::Forward, true, f4, direct),
            // DenseNet-121's 128 -> 32 at 28x28: 32 channels vectorised forward, F(4x4)
            // with prepared weights only, from 28x28.
            (128, 28, 32, Pass::Forward, false, direct, direct),
            (128, 28, 32, Pass::Forward, true, f4, direct),
            (128, 56, 32, Pass::Forward, true, f4, direct),
            (128, 14, 32, Pass::Forward, true, direct, direct),
            (32, 28, 128, Pass::BackwardData, true, f4, direct),
            (128, 28, 32, Pass::BackwardData, false, f4, direct),
            // ResNet-50's 14x14 conv2 and AlexNet's 13x13 layers: F(2x2) with prepared
            // weights only, from 128 channels vectorised.
            (256, 14, 256, Pass::Forward, true, f2, direct),
            (256, 14, 256, Pass::Forward, false, direct, direct),
            (192, 13, 384, Pass::Forward, true, f2, direct),
            (128, 14, 64, Pass::Forward, true, direct, direct),
            // ResNet-50's 7x7 conv2 at batch 1 (4 tiles of 4x4): direct.
            (512, 7, 512, Pass::Forward, true, direct, direct),
            // Backward-weight stays direct.
            (512, 28, 512, Pass::BackwardWeight, true, direct, direct),
        ];
        for (c_in, hw, c_out, pass, prepared, zen5, other) in cases {
            let g = same(3, 1, c_in, hw, c_out);
            let shape = format!("{c_in}x{hw}x{hw} -> {c_out}, {pass:?}, prepared {prepared}");
            let pick = |z| heuristic_avx512(&g, pass, Tolerance::Standard, prepared, z);
            assert_eq!(pick(Avx512Cpu::Zen5), zen5, "{shape}, Zen 5");
            assert_eq!(pick(Avx512Cpu::Other), other, "{shape}");
        }
        // At batch 8 (32 tiles of 4x4), F(4x4) with prepared weights, on both passes.
        let g = same(3, 8, 512, 7, 512);
        for pass in [Pass::Forward, Pass::BackwardData] {
            let pick = |p, z| heuristic_avx512(&g, pass, Tolerance::Standard, p, z);
            let (zen5, other) = (Avx512Cpu::Zen5, Avx512Cpu::Other);
            assert_eq!(pick(true, zen5), f4, "batch 8, {pass:?}, prepared, Zen 5");
            assert_eq!(pick(false, zen5), direct, "batch 8, {pass:?}, Zen 5");
            assert_eq!(pick(true, other), direct, "batch 8, {pass:?}, prepared");
        }
    }

    #[test]
    fn zen4_takes_winograd_on_nearly_every_3x3_layer() {
        let (f2, f4, direct) = (F2, F4, Algorithm::Direct);
        // (batch, c_in, plane, c_out, pass, prepared, pick on Zen 4), standard tolerance.
        let cases = [
            // From 28x28 (VGG-16's 224x224 layers, ResNet-50's 28x28 and CIFAR's 32x32
            // ones, DenseNet-121's 128 -> 32 with 32 channels vectorised): F(4x4).
            (1, 64, 224, 64, Pass::Forward, false, f4),
            (1, 128, 28, 128, Pass::BackwardData, false, f4),
            (1, 128, 56, 32, Pass::Forward, false, f4),
            (16, 64, 32, 64, Pass::Forward, false, f4),
            // 32 tiles of 4x4 or more: F(4x4) (ResNet-50's 7x7 layer at batch 8).
            (8, 512, 7, 512, Pass::BackwardData, false, f4),
            // From 12x12 with >= 64 channels each side (ResNet-50's 14x14 and AlexNet's
            // 13x13 layers): F(2x2), or F(4x4) with prepared weights.
            (1, 256, 14, 256, Pass::Forward, false, f2),
            (1, 256, 14, 256, Pass::Forward, true, f4),
            (1, 192, 13, 384, Pass::BackwardData, false, f2),
            (1, 192, 13, 384, Pass::BackwardData, true, f4),
            // Below, or with 32 channels a side: F(2x2) with prepared weights only.
            (1, 128, 14, 32, Pass::Forward, false, direct),
            (1, 128, 14, 32, Pass::Forward, true, f2),
            (1, 512, 7, 512, Pass::Forward, false, direct),
            (1, 512, 7, 512, Pass::Forward, true, f2),
            // Backward-weight stays direct.
            (1, 512, 28, 512, Pass::BackwardWeight, true, direct),
        ];
        for (n, c_in, hw, c_out, pass, prepared, want) in cases {
            let g = same(3, n, c_in, hw, c_out);
            let shape = format!("{n}x{c_in}x{hw}x{hw} -> {c_out}, {pass:?}, prepared {prepared}");
            let pick = |t| heuristic_avx512(&g, pass, t, prepared, Avx512Cpu::Zen4);
            assert_eq!(pick(Tolerance::Standard), want, "{shape}");
            // Exact results leave F(4x4) out.
            assert_ne!(pick(Tolerance::Exact), f4, "{shape}, exact");
        }
        // A stride leaves Winograd out.
        let g = ConvParams {
            stride: [2, 2],
            padding: [1; 4],
            ..ConvParams::new(1, 128, 56, 56, 128, [3, 3])
        };
        let g = g.validate().expect("a valid conv");
        let pick = heuristic_avx512(
            &g,
            Pass::Forward,
            Tolerance::Standard,
            true,
            Avx512Cpu::Zen4,
        );
        assert_eq!(pick, direct, "stride 2");
    }

    #[test]
    fn split_fma_cpus_take_im2col_for_small_1x1_forward() {
        // (c_in, plane, c_out, pick on full-width FMAs, pick on split ones)
        let cases = [
            (512, 7, 128, Algorithm::Direct, Algorithm::Im2col), // DenseNet's block 4
            (256, 14, 1024, Algorithm::Direct, Algorithm::Im2col), // ResNet-50's layer 3
            (352, 28, 128, Algorithm::Direct, Algorithm::Direct), // DenseNet's block 2
            (64, 56, 256, Algorithm::Direct, Algorithm::Direct), // ResNet-50's layer 1
        ];
        for (c_in, hw, c_out, full, split) in cases {
            let shape = format!("{c_in}x{hw}x{hw} -> {c_out}");
            assert_eq!(
                pick(1, 1, c_in, hw, c_out, Pass::Forward, false),
                full,
                "{shape}"
            );
            assert_eq!(
                pick(1, 1, c_in, hw, c_out, Pass::Forward, true),
                split,
                "{shape}"
            );
        }
    }
}
