//! Runtime ISA detection, capped by `CONVNET_MAX_ISA`, resolved once.

use std::fmt;
use std::sync::OnceLock;

/// Instruction-set tiers, ordered from slowest to fastest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, no explicit SIMD.
    Scalar,
    /// The `wide` crate as compiled for the target's baseline (SSE2 on x86_64, NEON on aarch64).
    Portable,
    /// x86_64 AVX2 + FMA intrinsics (8 f32 lanes).
    Avx2Fma,
    /// x86_64 AVX-512F intrinsics (16 f32 lanes).
    Avx512F,
}

/// Every tier, slowest first.
pub const ALL_ISAS: [Isa; 4] = [Isa::Scalar, Isa::Portable, Isa::Avx2Fma, Isa::Avx512F];

impl Isa {
    /// The spelling used by `CONVNET_MAX_ISA` and in kernel names.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Portable => "portable",
            Isa::Avx2Fma => "avx2",
            Isa::Avx512F => "avx512",
        }
    }

    /// Parses `scalar`, `portable`, `avx2` or `avx512`.
    pub fn parse(s: &str) -> Option<Isa> {
        ALL_ISAS
            .into_iter()
            .find(|isa| isa.name() == s.trim().to_ascii_lowercase())
    }

    /// The best tier this CPU has, ignoring `CONVNET_MAX_ISA`.
    pub fn hardware() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Isa::Avx512F;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }

    /// The cap requested by `CONVNET_MAX_ISA`: `Ok(None)` when unset, `Err` with the bad value
    /// when it is not one of `scalar|portable|avx2|avx512`.
    pub fn env_cap() -> Result<Option<Isa>, String> {
        match std::env::var("CONVNET_MAX_ISA") {
            Err(_) => Ok(None),
            Ok(v) => Isa::parse(&v).map(Some).ok_or(v),
        }
    }

    /// The tier kernels may use: the hardware's best, capped by `CONVNET_MAX_ISA`.
    /// Read once per process. An unparsable cap is reported on stderr and caps at `scalar`,
    /// the safe side (tests assert the variable parses, see `testing::require_isa`).
    pub fn detect() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let hw = Isa::hardware();
            match Isa::env_cap() {
                Ok(None) => hw,
                Ok(Some(cap)) => hw.min(cap),
                Err(bad) => {
                    eprintln!("convnet: CONVNET_MAX_ISA={bad:?} is not scalar|portable|avx2|avx512; using scalar");
                    Isa::Scalar
                }
            }
        })
    }

    /// Whether kernels of this tier may run here.
    pub fn is_available(self) -> bool {
        self <= Isa::detect()
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
