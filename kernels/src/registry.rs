//! The kernel contract ([`ConvKernel`]) and the one list of kernels ([`KERNELS`]) that
//! tests, benches, `convnet check` and the fuzz targets iterate.

use std::sync::OnceLock;

use crate::direct::{Direct, DirectDepthwise, DirectRows};
use crate::params::ConvGeom;
use crate::simd;
use crate::winograd::Winograd;
use crate::{Algorithm, ConvError, Isa, Pass};

/// A convolution implementation for one algorithm on one ISA, over the canonical
/// forward-conv geometry (see [`crate::params`]).
///
/// Every pass overwrites its whole output and never reads it first (the output may hold
/// NaN on entry). A kernel is only called with a geometry for which [`ConvKernel::supports`]
/// returned `Ok` and with slices whose lengths match the geometry (the public API checks
/// both; kernels re-check lengths with `ConvGeom::assert_*`).
///
/// # Safety
/// For implementors: a value of the implementing type may exist only if every instruction its passes use
/// exists on this CPU (construction is the proof, as in rten's `Kernel::new`), and no pass
/// may read or write outside the slices it is given for any geometry it `supports`.
pub unsafe trait ConvKernel: Send + Sync {
    /// Equals the Rust identifier of the kernel, e.g. `direct_f32_any_4x16_avx512`.
    fn name(&self) -> &'static str;
    /// The algorithm this kernel implements (never `Auto`).
    fn algorithm(&self) -> Algorithm;
    /// The instruction set it needs.
    fn isa(&self) -> Isa;
    /// `Ok` when this kernel implements `pass` for `g`, else what it cannot do.
    fn supports(&self, g: &ConvGeom, pass: Pass) -> Result<(), &'static str>;
    /// `y := conv(x, weight) + bias` (bias indexed by output channel).
    fn forward(&self, g: &ConvGeom, x: &[f32], weight: &[f32], bias: Option<&[f32]>, y: &mut [f32]);
    /// `grad_x := conv_transpose(grad_y, weight) + bias` (bias indexed by input channel; it is
    /// only present when this pass serves a transposed conv's forward).
    fn backward_data(
        &self,
        g: &ConvGeom,
        grad_y: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        grad_x: &mut [f32],
    );
    /// `grad_weight := sum over batch and pixels of x * grad_y`.
    fn backward_weight(&self, g: &ConvGeom, x: &[f32], grad_y: &[f32], grad_weight: &mut [f32]);
    /// Weights prepared once (packed, transformed) for repeated runs of canonical `pass`, or
    /// `None` when this kernel reads the raw weight (then [`crate::ConvPlan`] keeps a copy).
    fn prepare(&self, _g: &ConvGeom, _pass: Pass, _weight: &[f32]) -> Option<Vec<f32>> {
        None
    }
    /// Forward with weights from [`ConvKernel::prepare`] for the same geometry and pass;
    /// `relu` fuses a ReLU into the store. Only called when `prepare` returned `Some`.
    fn forward_prepared(
        &self,
        _g: &ConvGeom,
        _x: &[f32],
        _prepared: &[f32],
        _bias: Option<&[f32]>,
        _relu: bool,
        _y: &mut [f32],
    ) {
        panic!("{} prepares no forward weights", self.name());
    }
    /// Backward-data with weights from [`ConvKernel::prepare`] (see `forward_prepared`).
    fn backward_data_prepared(
        &self,
        _g: &ConvGeom,
        _grad_y: &[f32],
        _prepared: &[f32],
        _bias: Option<&[f32]>,
        _grad_x: &mut [f32],
    ) {
        panic!("{} prepares no backward-data weights", self.name());
    }
    /// `grad_bias[ch] := sum over batch and pixels of grad_y[.., ch, ..]`, `grad_y` being
    /// `[n, c, spatial]`. The default is the shared f32 reduction in [`crate::bias`].
    fn bias_grad(&self, grad_y: &[f32], n: usize, c: usize, spatial: usize, grad_bias: &mut [f32]) {
        crate::bias::bias_grad(grad_y, n, c, spatial, grad_bias);
    }
    /// [`ConvKernel::backward_weight`] and, when `grad_bias` is given, the bias gradient of
    /// `g`'s output (`[g.n, g.c_out, g.oh * g.ow]`, `grad_y`) in one call, for kernels that
    /// sum the bias while they read `grad_y` anyway. The default runs the two in turn.
    fn backward_weight_bias(
        &self,
        g: &ConvGeom,
        x: &[f32],
        grad_y: &[f32],
        grad_weight: &mut [f32],
        grad_bias: Option<&mut [f32]>,
    ) {
        self.backward_weight(g, x, grad_y, grad_weight);
        if let Some(gb) = grad_bias {
            self.bias_grad(grad_y, g.n, g.c_out, g.oh * g.ow, gb);
        }
    }
}

/// One registered kernel: its name and how to make it (`None` when this CPU, or the
/// `CONVNET_MAX_ISA` cap, does not allow it).
pub struct KernelEntry {
    /// The kernel's name (equal to `ConvKernel::name`).
    pub name: &'static str,
    /// The ISA it needs, for "skipped: NAME needs ISA" messages.
    pub isa: Isa,
    /// Constructs the kernel if its ISA is available.
    pub make: fn() -> Option<Box<dyn ConvKernel>>,
}

fn make_reference() -> Option<Box<dyn ConvKernel>> {
    Some(Box::new(crate::reference::ReferenceF32))
}

fn make_im2col() -> Option<Box<dyn ConvKernel>> {
    Some(Box::new(crate::im2col::Im2colF32Matrixmultiply))
}

/// Every kernel, the reference first, then best-first within each algorithm. Adding a
/// kernel here gives it its tests, benches, `convnet check` coverage and fuzz coverage.
pub static KERNELS: &[KernelEntry] = &[
    KernelEntry {
        name: "reference_f32",
        isa: Isa::Scalar,
        make: make_reference,
    },
    #[cfg(target_arch = "x86_64")]
    KernelEntry {
        name: "direct_f32_dw_4x2_avx512f",
        isa: Isa::Avx512F,
        make: DirectDepthwise::<simd::Avx512F>::make,
    },
    #[cfg(target_arch = "x86_64")]
    KernelEntry {
        name: "direct_f32_rows_6x32_avx512f",
        isa: Isa::Avx512F,
        make: DirectRows::<simd::Avx512F>::make,
    },
    #[cfg(target_arch = "x86_64")]
    KernelEntry {
        name: "direct_f32_any_12x32_avx512f",
        isa: Isa::Avx512F,
        make: Direct::<simd::Avx512F>::make,
    },
    #[cfg(target_arch = "x86_64")]
    KernelEntry {
        name: "direct_f32_dw_4x2_avx2fma",
        isa: Isa::Avx2Fma,
        make: DirectDepthwise::<simd::Avx2Fma>::make,
    },
    #[cfg(target_arch = "x86_64")]
    KernelEntry {
        name: "direct_f32_rows_6x16_avx2fma",
        isa: Isa::Avx2Fma,
        make: DirectRows::<simd::Avx2Fma>::make,
    },
    #[cfg(target_arch = "x86_64")]
    KernelEntry {
        name: "direct_f32_any_6x16_avx2fma",
        isa: Isa::Avx2Fma,
        make: Direct::<simd::Avx2Fma>::make,
    },
    KernelEntry {
        name: "direct_f32_dw_4x2_portable",
        isa: Isa::Portable,
        make: DirectDepthwise::<simd::Portable>::make,
    },
    KernelEntry {
        name: "direct_f32_rows_6x8_portable",
        isa: Isa::Portable,
        make: DirectRows::<simd::Portable>::make,
    },
    KernelEntry {
        name: "direct_f32_any_4x8_portable",
        isa: Isa::Portable,
        make: Direct::<simd::Portable>::make,
    },
    KernelEntry {
        name: "direct_f32_dw_4x2_scalar",
        isa: Isa::Scalar,
        make: DirectDepthwise::<simd::Scalar>::make,
    },
    KernelEntry {
        name: "direct_f32_rows_6x2_scalar",
        isa: Isa::Scalar,
        make: DirectRows::<simd::Scalar>::make,
    },
    KernelEntry {
        name: "direct_f32_any_4x4_scalar",
        isa: Isa::Scalar,
        make: Direct::<simd::Scalar>::make,
    },
    #[cfg(feature = "testing")]
    KernelEntry {
        name: "direct_f32_dw_4x2_emu16",
        isa: Isa::Scalar,
        make: DirectDepthwise::<crate::direct::Emu16>::make,
    },
    #[cfg(feature = "testing")]
    KernelEntry {
        name: "direct_f32_dw_4x2_emu16m",
        isa: Isa::Scalar,
        make: DirectDepthwise::<crate::direct::Emu16Masked>::make,
    },
    #[cfg(feature = "testing")]
    KernelEntry {
        name: "direct_f32_rows_6x32_emu16",
        isa: Isa::Scalar,
        make: DirectRows::<crate::direct::Emu16>::make,
    },
    #[cfg(feature = "testing")]
    KernelEntry {
        name: "direct_f32_any_12x32_emu16",
        isa: Isa::Scalar,
        make: Direct::<crate::direct::Emu16>::make,
    },
    #[cfg(feature = "testing")]
    KernelEntry {
        name: "direct_f32_rows_6x1_oddtile",
        isa: Isa::Scalar,
        make: DirectRows::<crate::direct::OddScalar>::make,
    },
    #[cfg(feature = "testing")]
    KernelEntry {
        name: "direct_f32_any_3x3_oddtile",
        isa: Isa::Scalar,
        make: Direct::<crate::direct::OddScalar>::make,
    },
    #[cfg(target_arch = "x86_64")]
    KernelEntry {
        name: "winograd_f32_f23_12x32_avx512f",
        isa: Isa::Avx512F,
        make: Winograd::<simd::Avx512F, 2>::make,
    },
    #[cfg(target_arch = "x86_64")]
    KernelEntry {
        name: "winograd_f32_f23_6x16_avx2fma",
        isa: Isa::Avx2Fma,
        make: Winograd::<simd::Avx2Fma, 2>::make,
    },
    KernelEntry {
        name: "winograd_f32_f23_4x8_portable",
        isa: Isa::Portable,
        make: Winograd::<simd::Portable, 2>::make,
    },
    KernelEntry {
        name: "winograd_f32_f23_4x4_scalar",
        isa: Isa::Scalar,
        make: Winograd::<simd::Scalar, 2>::make,
    },
    #[cfg(feature = "testing")]
    KernelEntry {
        name: "winograd_f32_f23_12x32_emu16m",
        isa: Isa::Scalar,
        make: Winograd::<crate::direct::Emu16Masked, 2>::make,
    },
    #[cfg(feature = "testing")]
    KernelEntry {
        name: "winograd_f32_f23_3x3_oddtile",
        isa: Isa::Scalar,
        make: Winograd::<crate::direct::OddScalar, 2>::make,
    },
    #[cfg(target_arch = "x86_64")]
    KernelEntry {
        name: "winograd_f32_f43_12x32_avx512f",
        isa: Isa::Avx512F,
        make: Winograd::<simd::Avx512F, 4>::make,
    },
    #[cfg(target_arch = "x86_64")]
    KernelEntry {
        name: "winograd_f32_f43_6x16_avx2fma",
        isa: Isa::Avx2Fma,
        make: Winograd::<simd::Avx2Fma, 4>::make,
    },
    KernelEntry {
        name: "winograd_f32_f43_4x8_portable",
        isa: Isa::Portable,
        make: Winograd::<simd::Portable, 4>::make,
    },
    KernelEntry {
        name: "winograd_f32_f43_4x4_scalar",
        isa: Isa::Scalar,
        make: Winograd::<simd::Scalar, 4>::make,
    },
    #[cfg(feature = "testing")]
    KernelEntry {
        name: "winograd_f32_f43_12x32_emu16m",
        isa: Isa::Scalar,
        make: Winograd::<crate::direct::Emu16Masked, 4>::make,
    },
    #[cfg(feature = "testing")]
    KernelEntry {
        name: "winograd_f32_f43_3x3_oddtile",
        isa: Isa::Scalar,
        make: Winograd::<crate::direct::OddScalar, 4>::make,
    },
    #[cfg(target_arch = "x86_64")]
    KernelEntry {
        name: "winograd_f32_f63_12x32_avx512f",
        isa: Isa::Avx512F,
        make: Winograd::<simd::Avx512F, 6>::make,
    },
    #[cfg(target_arch = "x86_64")]
    KernelEntry {
        name: "winograd_f32_f63_6x16_avx2fma",
        isa: Isa::Avx2Fma,
        make: Winograd::<simd::Avx2Fma, 6>::make,
    },
    KernelEntry {
        name: "winograd_f32_f63_4x8_portable",
        isa: Isa::Portable,
        make: Winograd::<simd::Portable, 6>::make,
    },
    KernelEntry {
        name: "winograd_f32_f63_4x4_scalar",
        isa: Isa::Scalar,
        make: Winograd::<simd::Scalar, 6>::make,
    },
    #[cfg(feature = "testing")]
    KernelEntry {
        name: "winograd_f32_f63_12x32_emu16m",
        isa: Isa::Scalar,
        make: Winograd::<crate::direct::Emu16Masked, 6>::make,
    },
    #[cfg(feature = "testing")]
    KernelEntry {
        name: "winograd_f32_f63_3x3_oddtile",
        isa: Isa::Scalar,
        make: Winograd::<crate::direct::OddScalar, 6>::make,
    },
    KernelEntry {
        name: "im2col_f32_matrixmultiply",
        isa: Isa::Scalar,
        make: make_im2col,
    },
];

/// The kernels this process may run (built once).
pub fn available() -> &'static [Box<dyn ConvKernel>] {
    static AVAILABLE: OnceLock<Vec<Box<dyn ConvKernel>>> = OnceLock::new();
    AVAILABLE.get_or_init(|| KERNELS.iter().filter_map(|e| (e.make)()).collect())
}

/// The registered kernels this process may not run, with the ISA each needs.
pub fn skipped() -> Vec<(&'static str, Isa)> {
    KERNELS
        .iter()
        .filter(|e| !available().iter().any(|k| k.name() == e.name))
        .map(|e| (e.name, e.isa))
        .collect()
}

/// The kernel that runs `algo` for `pass` on `g`: the best-ISA available kernel of that
/// algorithm that supports it. `Auto` takes the fastest supported algorithm.
pub fn select(
    algo: Algorithm,
    g: &ConvGeom,
    pass: Pass,
) -> Result<&'static dyn ConvKernel, ConvError> {
    if algo == Algorithm::Auto {
        return select_auto(g, pass);
    }
    let mut reason = "this algorithm on this CPU";
    let mut best: Option<&'static dyn ConvKernel> = None;
    for k in available().iter().filter(|k| k.algorithm() == algo) {
        match k.supports(g, pass) {
            Ok(()) if best.is_none_or(|b| k.isa() > b.isa()) => best = Some(k.as_ref()),
            Ok(()) => {}
            Err(why) => reason = why,
        }
    }
    best.ok_or(ConvError::Unsupported {
        kernel: algo.name(),
        reason,
    })
}

/// `Auto` (see [`crate::auto`]).
fn select_auto(g: &ConvGeom, pass: Pass) -> Result<&'static dyn ConvKernel, ConvError> {
    crate::auto::select_auto(g, pass, false)
}

/// Looks a kernel up by name among the available ones.
pub fn by_name(name: &str) -> Option<&'static dyn ConvKernel> {
    available()
        .iter()
        .find(|k| k.name() == name)
        .map(|k| k.as_ref())
}
