//! Every available kernel, on every pass and mode, against the f64 reference: random
//! geometries (real data within the accuracy contract, integer data bit for bit) and the
//! named boundary cases. Kernels come from the one registry list; nothing here names one.

use convnet_kernels::testing::{self, ConvProblem, DataKind};
use convnet_kernels::{Algorithm, Conv2d, ConvParams, Pass, registry};
use proptest::prelude::*;

fn check_all(p: &ConvProblem) -> Result<(), String> {
    for kernel in registry::available() {
        for pass in Pass::ALL {
            testing::check(kernel.as_ref(), p, pass).map_err(|f| f.to_string())?;
        }
    }
    Ok(())
}

#[test]
fn required_isa_is_available() {
    let isa = testing::require_isa();
    eprintln!(
        "running at {isa} (hardware {})",
        convnet_kernels::Isa::hardware()
    );
    for (name, needs) in registry::skipped() {
        eprintln!("skipped: {name} needs {needs}");
    }
    assert!(!registry::available().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_kernel_within_contract_on_real_data(p in testing::problem_strategy(DataKind::Real)) {
        check_all(&p).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn every_kernel_exact_on_integer_data(p in testing::problem_strategy(DataKind::Integer)) {
        check_all(&p).map_err(TestCaseError::fail)?;
    }
}

/// A conv with the given geometry; the rest PyTorch's defaults.
#[allow(clippy::too_many_arguments)]
fn conv(
    n: usize,
    c_in: usize,
    hw: [usize; 2],
    c_out: usize,
    k: [usize; 2],
    s: usize,
    pad: usize,
    d: usize,
    groups: usize,
) -> ConvParams {
    ConvParams {
        stride: [s, s],
        padding: [pad; 4],
        dilation: [d, d],
        groups,
        ..ConvParams::new(n, c_in, hw[0], hw[1], c_out, k)
    }
}

/// Runs a boundary case in normal mode and, where the geometry is valid, transposed mode,
/// on both data kinds, every pass, every kernel.
fn boundary_case(params: ConvParams) {
    let transposed = ConvParams {
        transposed: true,
        ..params
    };
    let mut ran = 0;
    for p in [params, transposed] {
        let Ok(conv) = Conv2d::new(p) else { continue };
        for (kind, seed) in [(DataKind::Real, 1), (DataKind::Integer, 2)] {
            for with_bias in [false, true] {
                let problem = ConvProblem::new(conv, kind, seed, with_bias);
                if let Err(e) = check_all(&problem) {
                    panic!("{e}");
                }
            }
        }
        ran += 1;
    }
    assert!(ran > 0, "boundary case {params:?} is valid in neither mode");
}

macro_rules! boundary_cases {
    ($($name:ident: $params:expr;)*) => {$(
        #[test]
        fn $name() {
            for p in $params {
                boundary_case(p);
            }
        }
    )*};
}

// XNNPACK's boundary taxonomy. NR is the output-channel tile (8 or 16 lanes, 1-4 registers
// of them), the pixel tile is 4 to 14 wide.
boundary_cases! {
    c_out_lt_nr: [1, 7, 15].map(|k| conv(1, 3, [6, 7], k, [3, 3], 1, 1, 1, 1));
    c_out_eq_nr: [8, 16, 32].map(|k| conv(1, 3, [6, 7], k, [3, 3], 1, 1, 1, 1));
    c_out_gt_nr: [9, 17, 33].map(|k| conv(1, 3, [6, 7], k, [3, 3], 1, 1, 1, 1));
    c_out_div_nr: [48, 64].map(|k| conv(1, 2, [5, 5], k, [3, 3], 1, 1, 1, 1));
    w_lt_tile: [1, 2, 3].map(|w| conv(1, 4, [5, w], 16, [3, 3], 1, 1, 1, 1));
    w_subtile: [13, 15, 17, 29].map(|w| conv(1, 4, [3, w], 16, [3, 3], 1, 1, 1, 1));
    pad_only_window: [conv(1, 2, [2, 2], 5, [3, 3], 1, 3, 1, 1), conv(2, 3, [1, 1], 4, [2, 2], 2, 2, 1, 1)];
    // Found by fuzz/api_never_panics: the only output column reads the left padding, which
    // is wider than the padded copy the direct kernel needs, so the copy sliced past its row.
    // Found by fuzz/api_never_panics: a stride above isize::MAX (one output column) wrapped
    // to -1 in the backward-data phase arithmetic.
    stride_above_isize_max: [
        ConvParams { stride: [3, usize::MAX], padding: [2, 1, 3, 2], dilation: [1, 2], ..ConvParams::new(1, 2, 7, 5, 3, [2, 3]) },
        // Found by fuzz/api_never_panics: im2col's strided 1x1 path gave its one-column
        // GEMM view the unused stride, which failed the view's isize bound (a panic).
        ConvParams { stride: [1, usize::MAX], dilation: [7, 2], ..ConvParams::new(1, 5, 4, 4, 3, [1, 1]) },
        ConvParams { stride: [usize::MAX, usize::MAX], ..ConvParams::new(2, 4, 6, 6, 3, [1, 1]) },
        // Found by fuzz/api_never_panics: the direct forward pass formed pixel offsets past
        // a row's last pixel (a column stride near usize::MAX) and the row stride times the
        // row pitch (a row stride near usize::MAX): overflow panics where overflow is
        // checked, as in the fuzz build; both inputs are in its corpus.
        ConvParams {
            stride: [4, usize::MAX / 7],
            padding: [0, 4, 3, 2],
            dilation: [1, 2],
            ..ConvParams::new(1, 7, 14, 10, 4, [7, 2])
        },
        ConvParams {
            stride: [usize::MAX / 7, 3],
            padding: [2, 1, 6, 5],
            dilation: [6, 8],
            ..ConvParams::new(1, 6, 14, 2, 1, [2, 2])
        },
        // Found by fuzz/api_never_panics: the pixel-vectorised kernel formed its row step
        // (stride times padded row) for a single output row (in the corpus).
        ConvParams {
            stride: [usize::MAX / 7, 1],
            padding: [2, 1, 6, 5],
            dilation: [6, 8],
            ..ConvParams::new(1, 6, 16, 2, 1, [2, 2])
        },
    ];
    pad_wider_than_padded_copy: [
        ConvParams { stride: [1, 9], padding: [0, 0, 5, 0], ..ConvParams::new(1, 1, 4, 4, 1, [1, 1]) },
        ConvParams { stride: [9, 1], padding: [5, 0, 0, 0], ..ConvParams::new(1, 2, 4, 4, 3, [1, 2]) },
    ];
    // Winograd's input transform with padding wider than a 16-lane vector on every side:
    // patch rows wholly left or right of the plane (a masked load of no lanes), and, for
    // backward-data, a source origin inside the plane (negative padding 2 - pad).
    winograd_wide_padding: [
        ConvParams { padding: [17, 2, 18, 3], ..ConvParams::new(1, 2, 5, 6, 3, [3, 3]) },
        ConvParams { padding: [1, 19, 0, 20], ..ConvParams::new(2, 3, 4, 9, 17, [3, 3]) },
    ];
    stride_gt_kernel: [conv(1, 3, [11, 10], 8, [2, 2], 3, 0, 1, 1), conv(1, 3, [9, 9], 8, [1, 1], 3, 1, 1, 1)];
    dilation_gt_input: [conv(1, 2, [4, 4], 8, [2, 2], 1, 1, 5, 1), conv(1, 2, [3, 5], 3, [2, 3], 1, 2, 4, 1)];
    // One output channel per group, the pixel-vectorised kernel's one-channel tile of
    // several rows: whole planes (9 rows) and bands (20 rows), dense and grouped, rows
    // narrower than and over a tile; transposed, one input channel per group. The last two:
    // banded backward-data phases of a stride-2 7x7 into one channel (stored every second
    // column, in chunks of the reduction), and a banded forward pass from 128 channels in
    // chunks, whose staged sums reload into the shifted last tile of each row.
    one_channel_per_group: [
        conv(2, 5, [9, 21], 1, [3, 3], 1, 1, 1, 1),
        conv(1, 5, [20, 37], 1, [3, 3], 1, 1, 1, 1),
        conv(1, 8, [7, 13], 4, [3, 3], 1, 1, 1, 4),
        conv(1, 6, [20, 9], 2, [5, 3], 1, 2, 1, 2),
        conv(1, 1, [23, 37], 128, [7, 7], 2, 3, 1, 1),
        conv(1, 128, [40, 37], 1, [3, 3], 1, 1, 1, 1),
    ];
    groups_depthwise: [conv(2, 8, [7, 7], 8, [3, 3], 1, 1, 1, 8), conv(1, 6, [6, 6], 12, [3, 3], 2, 1, 1, 6), conv(1, 16, [5, 5], 16, [5, 5], 1, 2, 1, 16)];
    // The depthwise kernel: rows narrower than, equal to and just over a vector (1, 8, 16
    // lanes), the shifted last vector, stride-2 phase splits, dilation, asymmetric padding,
    // padding wider than the kernel, a batch.
    depthwise_widths: [1, 5, 8, 9, 16, 17, 23, 33].map(|w| conv(1, 3, [4, w], 3, [3, 3], 1, 1, 1, 3));
    // The streaming 3x3 rows (AVX2): one and two rows, wide and narrow; planes of two and
    // three bands (BAND_FLOATS) of rows, so a band starts and ends inside the plane; narrow
    // planes in pairs with one left over (3 planes per task).
    depthwise_rows: [
        conv(1, 2, [1, 20], 2, [3, 3], 1, 1, 1, 2),
        conv(2, 2, [2, 9], 2, [3, 3], 1, 1, 1, 2),
        conv(1, 2, [75, 64], 2, [3, 3], 1, 1, 1, 2),
        conv(1, 2, [130, 64], 2, [3, 3], 1, 1, 1, 2),
        conv(2, 3, [1, 5], 3, [3, 3], 1, 1, 1, 3),
        conv(1, 2, [2, 7], 2, [3, 3], 1, 1, 1, 2),
        conv(3, 8, [7, 7], 8, [3, 3], 1, 1, 1, 8),
    ];
    depthwise_strided: [conv(2, 4, [9, 13], 4, [3, 3], 2, 1, 1, 4), conv(1, 2, [11, 20], 2, [5, 5], 3, 2, 1, 2), conv(1, 2, [8, 19], 2, [3, 3], 2, 0, 1, 2)];
    // Enough planes that a forward task runs several: each reuses the zeros of its first
    // plane's padded copy.
    depthwise_many_planes: [conv(2, 40, [5, 11], 40, [3, 3], 1, 1, 1, 40), conv(3, 24, [9, 9], 24, [3, 3], 2, 1, 1, 24)];
    depthwise_dilated: [conv(1, 3, [9, 21], 3, [3, 3], 1, 2, 2, 3), conv(1, 2, [10, 10], 2, [3, 3], 2, 1, 3, 2)];
    depthwise_padding: [
        ConvParams { padding: [0, 2, 1, 0], stride: [1, 2], groups: 5, ..ConvParams::new(1, 5, 7, 18, 5, [3, 3]) },
        ConvParams { padding: [3, 1, 4, 2], groups: 2, ..ConvParams::new(1, 2, 5, 6, 2, [3, 2]) },
        // 3x3 stride 1 (backward-weight reads x in place): padding on one side wider than
        // the kernel, so whole taps fall outside x for some rows and vectors.
        ConvParams { padding: [3, 0, 1, 4], groups: 4, ..ConvParams::new(2, 4, 6, 20, 4, [3, 3]) },
        ConvParams { padding: [0, 0, 0, 0], stride: [2, 4], groups: 3, ..ConvParams::new(2, 3, 12, 30, 3, [1, 1]) },
    ];
    groups_grouped: [conv(1, 8, [6, 6], 12, [3, 3], 1, 1, 1, 4), conv(1, 6, [7, 5], 9, [3, 1], 1, 0, 2, 3)];
    k_1x1: [conv(1, 16, [7, 7], 24, [1, 1], 1, 0, 1, 1), conv(2, 5, [6, 9], 3, [1, 1], 2, 0, 1, 1), conv(1, 4, [5, 5], 8, [1, 1], 1, 1, 1, 1)];
    // The direct kernel's column form (more channels per group than pixels, at most 128
    // pixels): rows past a whole tile, a partial last column of pixels, reductions longer
    // than a chunk, groups, stride-2 phases, dilation, a batch spanning a column.
    column_form: [
        conv(1, 5, [3, 4], 40, [3, 3], 1, 1, 1, 1),
        conv(2, 6, [5, 5], 64, [3, 3], 2, 1, 1, 2),
        conv(1, 48, [4, 4], 8, [3, 3], 2, 1, 1, 1),
        conv(1, 4, [6, 7], 50, [1, 1], 1, 0, 1, 1),
        conv(1, 20, [4, 5], 30, [3, 3], 1, 1, 1, 1),
        conv(1, 8, [5, 6], 32, [3, 3], 1, 2, 2, 1),
        conv(3, 40, [3, 4], 40, [3, 3], 1, 1, 1, 1),
        // A last column of one vector (the narrow tile): 24 pixels at 16 lanes a column
        // (8-lane ISAs), 40 at 32 (16-lane, whose forward pass keeps the column form only
        // below 48 pixels that fill more than 3/4 of its lanes), over reductions of several
        // chunks.
        conv(1, 300, [4, 6], 64, [3, 3], 1, 1, 1, 1),
        conv(1, 120, [5, 8], 64, [3, 3], 1, 1, 1, 1),
        // Backward-data in column form on 16 lanes too (3x3 layers only where the pixels
        // fill every lane): 32 pixels in a wide column; 16 in a narrow one, over two
        // chunks of 1024 steps.
        conv(1, 40, [4, 8], 32, [3, 3], 1, 1, 1, 1),
        conv(1, 64, [4, 4], 120, [3, 3], 1, 1, 1, 1),
        // Groups and stride-2 phases in column form on 16 lanes: 2 groups of 32 channels
        // over 32 pixels both ways; backward-data's 16-pixel phases of an 8x8 input (and a
        // forward pass of 16 pixels) in a narrow column.
        conv(2, 64, [4, 4], 64, [3, 3], 1, 1, 1, 2),
        conv(1, 48, [8, 8], 16, [3, 3], 2, 1, 1, 1),
    ];
    // The direct kernel's column form on 1x1 backward-data, whose weights it copies in
    // reduction chunks: reductions of one and several chunks, a partial last slice of
    // rows, whole slices before one (48 rows a slice), a stride (one phase with the tap),
    // groups, a last column of 4 pixels (in a wide tile: the gathered weights' rows, one
    // float apart, share L1 sets, see `narrow_tail` in `columns.rs`).
    columns_1x1_backward: [
        conv(1, 64, [5, 6], 300, [1, 1], 1, 0, 1, 1),
        conv(1, 110, [3, 4], 150, [1, 1], 1, 0, 1, 1),
        conv(1, 40, [9, 11], 200, [1, 1], 2, 0, 1, 1),
        conv(1, 64, [4, 5], 260, [1, 1], 1, 0, 1, 2),
        conv(1, 30, [3, 4], 20, [1, 1], 1, 0, 1, 1),
        conv(1, 64, [5, 4], 300, [1, 1], 1, 0, 1, 1),
        // Two chunks where a chunk is 1024 steps (AVX-512): 1100 output channels.
        conv(1, 64, [5, 6], 1100, [1, 1], 1, 0, 1, 1),
    ];
    // The direct kernel's pointwise form (1x1, stride 1, unpadded, planes of >= 256 pixels
    // that fill whole vector columns up to 1/16; on backward-data at stride 1 on 16-lane
    // ISAs, and on both passes on 8-lane ones, >= 196 pixels):
    // whole and partial columns of pixels (the
    // last column of 16x17 is partial at 32 lanes, of 18x18 at 16), rows past a tile and
    // past a task's tiles, a reduction longer than a chunk, groups, a batch, planes spanning
    // several tasks.
    pointwise_form: [
        conv(1, 16, [16, 16], 26, [1, 1], 1, 0, 1, 1),
        conv(1, 5, [16, 17], 13, [1, 1], 1, 0, 1, 1),
        conv(2, 8, [18, 18], 26, [1, 1], 1, 0, 1, 2),
        conv(1, 1100, [16, 16], 3, [1, 1], 1, 0, 1, 1),
        conv(1, 3, [20, 20], 100, [1, 1], 1, 0, 1, 1),
        // 300 rows (output channels forward, input channels backward-data): 25 tiles of 12,
        // more than one task's 24, so two row slices of a task's pixels on every ISA.
        conv(1, 8, [16, 16], 300, [1, 1], 1, 0, 1, 1),
        conv(1, 300, [16, 16], 8, [1, 1], 1, 0, 1, 1),
        // 64 rows on 16-lane ISAs: 5 tiles of 12 and the last 4 rows in a tile of their own
        // (`run_block_tail`), stored in place after reduction chunks over 600 channels (26
        // and 100 rows above: tails of 2 and 4).
        conv(1, 600, [16, 16], 64, [1, 1], 1, 0, 1, 1),
        ConvParams { transposed: true, ..ConvParams::new(1, 64, 16, 16, 600, [1, 1]) },
        // 14x14: pointwise on backward-data on 16-lane ISAs (on both passes on 8-lane
        // ones), whose reduction (the output channels) spans several chunks in the second.
        conv(1, 40, [14, 14], 20, [1, 1], 1, 0, 1, 1),
        conv(1, 24, [14, 14], 300, [1, 1], 1, 0, 1, 1),
        // Transposed, so backward-data (several chunks) runs with a bias.
        ConvParams { transposed: true, ..ConvParams::new(1, 300, 14, 14, 24, [1, 1]) },
        // Strided: the subsampled planes (per-axis strides; in transposed mode the scatter
        // with the bias everywhere), and bottom/right padding, which leaves the last
        // output row and column outside the input (so not the pointwise form).
        conv(1, 6, [32, 34], 14, [1, 1], 2, 0, 1, 1),
        // A height that is not a multiple of the stride: the last input row gets no pixel.
        conv(1, 6, [35, 32], 14, [1, 1], 2, 0, 1, 1),
        // 28x28 -> 14x14 (pointwise on 8-lane ISAs), backward-data reducing over chunks.
        conv(1, 24, [28, 28], 300, [1, 1], 2, 0, 1, 1),
        ConvParams { stride: [2, 3], ..ConvParams::new(2, 5, 32, 51, 13, [1, 1]) },
        ConvParams { stride: [2, 2], padding: [0, 1, 0, 1], ..ConvParams::new(1, 4, 32, 32, 9, [1, 1]) },
    ];
    // The direct kernel's dense form (the window covers the whole unpadded input, one
    // output pixel: LeNet-5's C5; in transposed mode a conv from 1x1, DCGAN's first layer):
    // a partial last vector column, rows past a tile and past a task's tiles, reductions
    // longer than a chunk on both backward passes (output channels, the batch), a 1x1 input,
    // a stride with trailing padding that keeps one output pixel, and an empty batch.
    dense_form: [
        conv(3, 16, [5, 5], 120, [5, 5], 1, 0, 1, 1),
        conv(100, 2, [3, 3], 5, [3, 3], 1, 0, 1, 1),
        conv(300, 3, [2, 3], 290, [2, 3], 1, 0, 1, 1),
        conv(2, 6, [4, 4], 10, [4, 4], 1, 0, 1, 1),
        conv(5, 20, [1, 1], 30, [1, 1], 1, 0, 1, 1),
        ConvParams { stride: [2, 2], padding: [0, 1, 0, 1], ..ConvParams::new(2, 3, 3, 3, 7, [3, 3]) },
        conv(0, 16, [5, 5], 120, [5, 5], 1, 0, 1, 1),
    ];
    // The direct kernel's swapped backward-weight (1x1, unpadded, fewer input than output
    // channels per group, at least two vectors of inputs: the input is the vector operand):
    // whole and partial input-channel blocks, output channels past a task's rows, a
    // reduction over pixels longer than a chunk, a batch, a stride, groups.
    weight_swapped: [
        conv(1, 32, [5, 7], 80, [1, 1], 1, 0, 1, 1),
        conv(2, 40, [12, 13], 200, [1, 1], 1, 0, 1, 1),
        conv(2, 34, [9, 11], 100, [1, 1], 2, 0, 1, 1),
        conv(1, 64, [4, 6], 130, [1, 1], 1, 0, 1, 2),
    ];
    // The pixel-vectorised kernel's banded form (rows_banded.rs): backward-data with few
    // input channels per group, one stride phase at a time (7x7 stride 2 and 11x11 stride 4
    // stems, phases without taps, padding wider than the kernel, per-axis strides, groups);
    // forward with few output channels over planes past a band's bytes (a vertical stride,
    // dilation, asymmetric padding). Every banded pass splits into two or more bands; the
    // 64-channel sources span several reduction chunks at 8 and 16 lanes (emu16 on any
    // host). At 16 lanes, bands of 4 rows or more run the 3- and 6-channel tiles two rows
    // at a time (the 6-channel one: the 5-channel forward pass below), the 3-channel one
    // loading each source row once for both where the tap rows step a source row at a
    // time (backward-data's phases upwards, the forward passes downwards, also the one with
    // stride 2 and dilation 2; a band's single last row alone): batches of 4 whose phases' 13 rows make bands of 6, 6 and 1 (the stem, in two
    // reduction chunks) and whose 7 rows make bands of 4 and 3 (11x11 stride 4, one chunk),
    // and the 3-channel forward pass below (bands of 4); and over phases at most 32 pixels
    // wide, bands of 8 rows or more four rows at a time: 21-row phases 20 wide in bands of
    // 8, 8 and 5 (backward-data, 4x4 stride 2), and a forward pass 24 wide in bands of 8.
    // Phases 100 pixels wide end in a narrower tile (64 + 48 pixels at 16 lanes, 96 + 24 at
    // 8), its partial sums staged between reduction chunks.
    banded_form: [
        conv(4, 3, [26, 200], 24, [7, 7], 2, 3, 1, 1),
        conv(1, 3, [23, 21], 64, [7, 7], 2, 3, 1, 1),
        conv(4, 3, [25, 21], 24, [7, 7], 2, 3, 1, 1),
        conv(4, 3, [27, 29], 8, [11, 11], 4, 2, 1, 1),
        conv(4, 3, [42, 40], 16, [4, 4], 2, 1, 1, 1),
        conv(1, 32, [64, 24], 3, [3, 3], 1, 1, 1, 1),
        conv(1, 3, [27, 29], 8, [11, 11], 4, 2, 1, 1),
        ConvParams { padding: [4, 0, 5, 1], stride: [3, 2], ..ConvParams::new(1, 2, 13, 14, 12, [3, 4]) },
        ConvParams { groups: 2, stride: [2, 2], padding: [1; 4], ..ConvParams::new(2, 4, 19, 17, 40, [4, 4]) },
        conv(1, 64, [32, 32], 3, [3, 3], 1, 1, 1, 1),
        ConvParams { stride: [2, 1], padding: [1, 2, 0, 1], dilation: [2, 1], ..ConvParams::new(1, 80, 33, 30, 5, [3, 3]) },
        // Taps reaching further than the output gradient plus a kernel (a dilation past the
        // input, kept valid by padding): not banded, so its buffer stays bounded.
        ConvParams { dilation: [7, 6], padding: [8; 4], stride: [2, 2], ..ConvParams::new(1, 3, 4, 5, 8, [3, 3]) },
    ];
    // The banded form's forward pass with a horizontal stride over at most 4 input channels
    // (each buffer row split into its column phases), at up to 8 lanes: the 7x7 stride-2
    // stem with a partial 6-channel block in bands, 11x11 stride 4, per-axis strides with a
    // dilation, asymmetric padding and groups, a 31x31 kernel whose reduction spans two
    // chunks at 8 lanes, a batch of short reductions; the 3-channel and 1-channel tiles; a
    // row's last tile shifted left (30 columns) and a row narrower than a tile (15); a
    // 3x1 kernel at stride 4, whose taps read one column phase of four.
    strided_rows: [
        conv(1, 3, [12, 64], 64, [7, 7], 2, 3, 1, 1),
        conv(1, 3, [20, 67], 8, [11, 11], 4, 2, 1, 1),
        ConvParams { stride: [1, 3], dilation: [1, 2], padding: [1, 2, 2, 1], groups: 2, ..ConvParams::new(1, 4, 9, 99, 10, [3, 5]) },
        conv(1, 4, [8, 31], 8, [31, 31], 2, 15, 1, 1),
        conv(2, 3, [17, 32], 12, [3, 3], 2, 1, 1, 1),
        conv(1, 3, [10, 64], 3, [3, 3], 2, 1, 1, 1),
        conv(1, 3, [10, 32], 1, [5, 5], 2, 2, 1, 1),
        conv(1, 3, [9, 60], 8, [3, 3], 2, 1, 1, 1),
        conv(1, 2, [9, 29], 7, [3, 3], 2, 1, 1, 1),
        ConvParams { stride: [1, 4], ..ConvParams::new(1, 3, 6, 64, 8, [3, 1]) },
    ];
    // The pixel-vectorised kernel on fewer than 32 weights per output channel (the VGG
    // stem's 27) with more than 8 output channels: forward in whole and partial 6-channel
    // blocks (3 -> 13: 6, 6, 1), flat over small planes and a batch, in the banded form
    // over one image (a vertical stride, dilation, asymmetric padding), groups;
    // backward-data at stride 1 into more than 8 input channels per group over planes of
    // >= 112x112 (13 <- 3 channels; 20 <- 1 per group); backward-weight into more than 8
    // output channels.
    short_reduction: [
        conv(1, 3, [20, 19], 13, [3, 3], 1, 1, 1, 1),
        conv(2, 1, [12, 11], 20, [5, 5], 1, 2, 1, 1),
        ConvParams { stride: [2, 1], dilation: [1, 2], padding: [1, 0, 2, 1], ..ConvParams::new(1, 3, 41, 37, 40, [3, 3]) },
        conv(1, 6, [17, 16], 26, [3, 3], 1, 1, 1, 2),
        conv(1, 13, [112, 113], 3, [3, 3], 1, 1, 1, 1),
        conv(1, 40, [115, 112], 2, [3, 3], 1, 1, 1, 2),
        // A 1x1 layer as short (the pixel-vectorised kernel leaves it to the pointwise form).
        conv(1, 16, [20, 20], 24, [1, 1], 1, 0, 1, 1),
        // Backward-weight over images of more than 8192 flat pixels, in parts (a batch, a
        // dilation with asymmetric padding).
        conv(2, 2, [96, 100], 4, [3, 3], 1, 1, 1, 1),
        ConvParams { dilation: [2, 1], padding: [2, 1, 0, 3], ..ConvParams::new(1, 3, 150, 60, 24, [3, 3]) },
    ];
    // The direct kernel's tiles of pixels a stride of 2 or 4 apart (addressed from one base
    // register): the narrow tile (12 pixels) and the wide one (6), whole and partial tiles
    // along an output row, and a per-axis stride whose horizontal step is 2.
    stepped_rows: [
        conv(1, 3, [30, 61], 8, [3, 3], 2, 1, 1, 1),
        conv(1, 2, [9, 100], 5, [3, 3], 4, 1, 1, 1),
        conv(1, 4, [9, 60], 24, [3, 3], 4, 1, 1, 1),
        conv(2, 5, [11, 29], 40, [3, 3], 2, 1, 1, 1),
        ConvParams { stride: [3, 2], padding: [1; 4], ..ConvParams::new(1, 3, 14, 40, 20, [3, 3]) },
    ];
    // Backward-data whose weights outweigh the output gradient, so the direct kernel packs
    // each input-channel block in the task that uses it (4 blocks or more at NR = 16 and
    // 32): stride 1; stride 2, whose phases with 4 taps pack per block and those with 1
    // pack together; groups.
    backward_data_packs_per_block: [
        conv(1, 128, [12, 11], 8, [3, 3], 1, 1, 1, 1),
        conv(1, 128, [24, 23], 8, [3, 3], 2, 1, 1, 1),
        conv(1, 256, [12, 11], 16, [3, 3], 1, 1, 1, 2),
    ];
    // Reductions of two chunks where a chunk is about 1024 steps (the direct kernel on
    // AVX-512; 128 elsewhere, where the groups above cover several): forward over 200
    // channels' 3x3 taps (1800 steps), backward-data over 200 output channels' 9 taps, and
    // backward-weight over 1680 pixels.
    long_reductions: [
        conv(1, 200, [6, 5], 40, [3, 3], 1, 1, 1, 1),
        conv(1, 40, [6, 5], 200, [3, 3], 1, 1, 1, 1),
        conv(1, 3, [42, 40], 24, [3, 3], 1, 1, 1, 1),
    ];
    batch_2: [conv(2, 3, [8, 8], 16, [3, 3], 1, 1, 1, 1), conv(2, 1, [12, 12], 6, [5, 5], 1, 0, 1, 1)];
    asymmetric: [ConvParams { padding: [0, 2, 1, 0], stride: [2, 1], dilation: [1, 2], ..ConvParams::new(1, 3, 7, 8, 5, [3, 3]) }];
    empty: [conv(0, 3, [5, 5], 4, [3, 3], 1, 1, 1, 1)];
    // Found by fuzz/api_never_panics: an empty batch with several groups made the direct
    // backward-weight pass slice past its (empty) padded input.
    // Found by review: the swapped 1x1 backward-weight sliced an empty grad_y by group.
    empty_grouped: [
        conv(0, 4, [5, 5], 4, [3, 3], 1, 1, 1, 2),
        conv(0, 6, [4, 4], 6, [3, 3], 1, 1, 1, 6),
        conv(0, 64, [4, 6], 130, [1, 1], 1, 0, 1, 2),
    ];
}

/// Winograd with transformed filters of at least 1 Mi floats per group (F(2,3) from 256 x
/// 256 channels), which run in large chunks with the GEMMs' e outermost, in a pool of 3
/// threads whatever the host: 28 F(2,3) tiles in chunks of 9 and 10 (partial register
/// tiles), a batch with a chunk across its images, groups, a bias. Only the Winograd
/// kernels (found by algorithm), on their passes, on real data: every kernel on every pass
/// at these channel counts takes minutes.
#[test]
fn winograd_large_filters() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .expect("a pool")
        .install(winograd_large_filters_in_pool);
}

fn winograd_large_filters_in_pool() {
    for params in [
        conv(1, 256, [8, 14], 256, [3, 3], 1, 1, 1, 1),
        conv(2, 512, [4, 3], 512, [3, 3], 1, 1, 1, 2),
    ] {
        let conv = Conv2d::new(params).expect("valid");
        let problem = ConvProblem::new(conv, DataKind::Real, 1, true);
        let mut ran = 0;
        for kernel in registry::available() {
            if !matches!(kernel.algorithm(), Algorithm::Winograd(_)) {
                continue;
            }
            for pass in [Pass::Forward, Pass::BackwardData] {
                if let Err(e) = testing::check(kernel.as_ref(), &problem, pass) {
                    panic!("{e}");
                }
            }
            ran += 1;
        }
        assert!(
            ran >= 3,
            "the portable level's three Winograd kernels at least"
        );
    }
}

/// Checks the direct kernels (found by algorithm) at this level on `pass` of `params`, with
/// a bias (where the pass has one), on real and on integer data (`seeds`); at least one
/// must support the geometry.
fn check_direct(params: ConvParams, pass: Pass, seeds: [u64; 2]) {
    let conv = Conv2d::new(params).expect("valid");
    let mut ran = 0;
    for kernel in registry::available() {
        if kernel.algorithm() != Algorithm::Direct {
            continue;
        }
        for (kind, seed) in [(DataKind::Real, seeds[0]), (DataKind::Integer, seeds[1])] {
            let problem = ConvProblem::new(conv, kind, seed, true);
            match testing::check(kernel.as_ref(), &problem, pass) {
                Ok(Some(_)) => ran += 1,
                Ok(None) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(ran >= 1, "no direct kernel at this level took it");
}

/// Backward-weight over few taps and many pixels, `grad_y` packed chunk by chunk inside
/// each task (more than 2048 pixels at 32 channels a block, 4096 at 16): a partial block
/// (40 channels), a batch whose reduction chunks and the next chunk's prefetch cross
/// images, the stem's 7x7 stride 2 with padding, groups; in pools of 1 and 2 threads (with
/// 2, only where every thread gets a block). Only the direct kernels (found by algorithm),
/// on that pass: every kernel on every pass at these sizes takes a minute.
#[test]
fn direct_backward_weight_packed_in_tasks() {
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
        pool.expect("a pool").install(direct_backward_weight_cases);
    }
}

fn direct_backward_weight_cases() {
    for params in [
        conv(1, 3, [66, 64], 40, [3, 3], 1, 1, 1, 1),
        conv(2, 3, [33, 64], 40, [3, 3], 1, 1, 1, 1),
        conv(1, 3, [140, 132], 40, [7, 7], 2, 3, 1, 1),
        conv(2, 4, [33, 64], 64, [3, 3], 1, 1, 1, 2),
    ] {
        check_direct(params, Pass::BackwardWeight, [1, 2]);
    }
}

/// The pixel form's paired column phases (`paired_phases` in `direct/mod.rs`): a horizontal
/// stride of 2 over an even width runs both column phases of a phase row in one task and
/// stores them interleaved. Phase rows of odd length (runs that end short of a vector), a
/// batch of 2 (chunks across images), a partial channel block, 4x4 taps (two per phase), a
/// vertical stride of 1 with dilation and groups, the per-task packing of weights that
/// outweigh grad_y, both phases' in one sweep (3x3 taps, 128 -> 256 at 24x24; 4x4 taps,
/// 128 -> 32 at 12x12); and an odd width, which stays unpaired. Then a transposed conv's
/// forward pass (the same path, with a bias: 24 -> 20 channels, 9x11 -> 18x22).
#[test]
fn direct_backward_data_paired_phases() {
    let s12 = ConvParams {
        stride: [1, 2],
        dilation: [2, 1],
        padding: [2, 1, 0, 1],
        groups: 2,
        ..ConvParams::new(1, 36, 10, 26, 20, [3, 3])
    };
    for params in [
        conv(2, 40, [30, 30], 24, [3, 3], 2, 1, 1, 1),
        conv(1, 20, [14, 22], 12, [4, 4], 2, 1, 1, 1),
        s12,
        conv(1, 128, [24, 24], 256, [3, 3], 2, 1, 1, 1),
        conv(1, 128, [12, 12], 32, [4, 4], 2, 1, 1, 1),
        conv(1, 20, [14, 15], 12, [3, 3], 2, 1, 1, 1),
    ] {
        check_direct(params, Pass::BackwardData, [5, 6]);
    }
    let transposed = ConvParams {
        stride: [2, 2],
        padding: [1; 4],
        ..ConvParams::new(2, 24, 9, 11, 20, [3, 3])
    };
    check_direct(transposed.with_op([1, 1]), Pass::Forward, [7, 8]);
}

/// The banded backward-data's paired row ends (`rows.rs`, `tile_paired`): at 16 lanes,
/// phases 49 to 56 pixels wide (11x11 stride 4 over 196 columns: 49 in every phase; over
/// 217: 55, then 54) run two rows at a time, each row's last half-used vector paired with
/// the next row's in one. Batches of 4 whose 7-row phases make bands of 4 and 3 rows (the
/// third row of the second alone), over two reduction chunks of 24 channels (partial sums
/// staged between them); backward-data only (the transposed mode of these geometries is a
/// large upsampling the reference takes minutes over).
#[test]
fn direct_backward_data_paired_row_ends() {
    for params in [
        conv(4, 3, [28, 217], 24, [11, 11], 4, 2, 1, 1),
        conv(4, 3, [28, 196], 24, [11, 11], 4, 2, 1, 1),
    ] {
        check_direct(params, Pass::BackwardData, [3, 4]);
    }
}

#[test]
fn transposed_with_output_padding() {
    // 4x4 s2 (the DCGAN / U-Net upsampler) and, where dilation exceeds stride, output
    // padding up to dilation - 1.
    let s2 = |op| {
        ConvParams {
            stride: [2, 2],
            padding: [1; 4],
            ..ConvParams::new(1, 4, 5, 6, 3, [4, 4])
        }
        .with_op(op)
    };
    let d2 = |op| {
        ConvParams {
            dilation: [2, 3],
            ..ConvParams::new(2, 2, 4, 3, 5, [3, 2])
        }
        .with_op(op)
    };
    let cases = [
        s2([0, 0]),
        s2([1, 0]),
        s2([0, 1]),
        s2([1, 1]),
        d2([1, 2]),
        d2([0, 1]),
    ];
    for p in cases {
        let conv = Conv2d::new(p).unwrap();
        for kind in [DataKind::Real, DataKind::Integer] {
            check_all(&ConvProblem::new(conv, kind, 7, true)).unwrap();
        }
    }
}

#[test]
fn non_finite_inputs_propagate_like_the_reference() {
    // An infinite input pixel reaches exactly the outputs and weight gradients whose true
    // sums multiply it (in the first case at its row's first column, of a 5-wide window
    // only the taps with kx = 0), and a NaN the same: every kernel's outputs are NaN, infinite or finite where
    // the reference's are. Flat-plane kernels must not let it into other sums through the
    // lanes past a row.
    // Also where the pixel-vectorised backward-weight splits the pass into tasks and only
    // some meet the bad pixel: a batch in chunks of images (the pixel in a later image),
    // and a large image in parts (the pixel in the last part's rows).
    let cases = [
        (ConvParams::new(2, 2, 9, 12, 3, [3, 5]), 3 * 12),
        (
            ConvParams::new(20, 1, 28, 28, 6, [5, 5]),
            13 * 28 * 28 + 5 * 28,
        ),
        (
            ConvParams::new(1, 2, 112, 112, 3, [3, 5]),
            112 * 112 + 100 * 112,
        ),
    ];
    for bad in [f32::INFINITY, f32::NAN] {
        for (params, at) in cases {
            non_finite_case(params, at, bad);
        }
    }
}

fn non_finite_case(params: ConvParams, at: usize, bad: f32) {
    let conv = Conv2d::new(params).unwrap();
    let mut p = ConvProblem::new(conv, DataKind::Real, 5, true);
    p.x[at] = bad;
    let reference = registry::by_name("reference_f32").unwrap();
    for pass in [Pass::Forward, Pass::BackwardWeight] {
        let want = testing::run_pass(reference, &p, pass).unwrap();
        // The output, or the weight gradient and the bias gradient (finite: it sums
        // grad_y alone, also where a kernel falls back to another for such inputs).
        let lens = match pass {
            Pass::Forward => vec![conv.output_len()],
            _ => vec![conv.weight_len(), conv.bias_len()],
        };
        let class = |v: f32| (v.is_nan(), v.is_infinite());
        for kernel in registry::available() {
            let Ok(got) = testing::run_pass(kernel.as_ref(), &p, pass) else {
                continue;
            };
            for (b, &n) in lens.iter().enumerate() {
                for i in 0..n {
                    assert_eq!(
                        class(got[b][i]),
                        class(want[b][i]),
                        "{} {} buffer {b} at {i}: {} vs reference {}",
                        kernel.name(),
                        pass.name(),
                        got[b][i],
                        want[b][i]
                    );
                }
            }
        }
    }
}

trait WithOutputPadding {
    fn with_op(self, op: [usize; 2]) -> ConvParams;
}

impl WithOutputPadding for ConvParams {
    fn with_op(self, op: [usize; 2]) -> ConvParams {
        ConvParams {
            transposed: true,
            output_padding: op,
            ..self
        }
    }
}
