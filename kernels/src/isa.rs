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

/// Whether this CPU runs a 256-bit FMA as two 128-bit halves, so AVX2's FMA peak per cycle is
/// half that of Intel's cores or AMD's from Zen 2: AMD's Zen 1 and Zen+ (family 0x17 below
/// model 0x30), Hygon's Dhyana (family 0x18, a Zen 1) and AMD's FMA cores before them. From
/// CPUID's vendor and family, read once: a fixed property, not a timing, so `Auto`'s picks
/// (see `auto::heuristic`, where Winograd's saved multiplies weigh more on such a CPU) do
/// not change from one run to the next.
pub fn split_256bit_fma() -> bool {
    static SPLIT: OnceLock<bool> = OnceLock::new();
    *SPLIT.get_or_init(|| cpuid().is_some_and(|(vendor, sig)| split_from_cpuid(&vendor, sig)))
}

/// Whether this CPU is an AMD Zen 5 or later (family 0x1A on): full-width 512-bit FMAs at
/// about 240 GFLOP/s a core, where Winograd's saved multiplies outweigh its transforms on
/// more layers than on Sapphire Rapids (see `auto::heuristic_avx512`). From CPUID, read
/// once, like [`split_256bit_fma`].
pub fn amd_zen5_or_later() -> bool {
    static ZEN5: OnceLock<bool> = OnceLock::new();
    *ZEN5.get_or_init(|| cpuid().is_some_and(|(vendor, sig)| zen5_from_cpuid(&vendor, sig)))
}

/// Whether this CPU is an AMD Zen 4: family 0x19 with AVX-512F (Zen 3, the same family,
/// has none). Its 512-bit FMAs run as two 256-bit halves, about 117 GFLOP/s a core (as
/// many as its AVX2), where Winograd's saved multiplies outweigh its transforms on nearly
/// every 3x3 layer (see `auto::heuristic_avx512`). From CPUID, read once, like
/// [`split_256bit_fma`].
pub fn amd_zen4() -> bool {
    static ZEN4: OnceLock<bool> = OnceLock::new();
    *ZEN4.get_or_init(|| {
        cpuid().is_some_and(|(vendor, sig)| family_19h_from_cpuid(&vendor, sig)) && {
            #[cfg(target_arch = "x86_64")]
            {
                std::arch::is_x86_feature_detected!("avx512f")
            }
            #[cfg(not(target_arch = "x86_64"))]
            false
        }
    })
}

/// CPUID leaf 0's vendor string and leaf 1's signature (EAX); `None` off x86_64.
fn cpuid() -> Option<(Vec<u8>, u32)> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        // SAFETY: CPUID exists on every x86_64 CPU; leaves 0 and 1 always do. (`__cpuid`
        // is a safe function on newer toolchains, hence the allow.)
        #[allow(unused_unsafe)]
        let (vendor, sig) = unsafe {
            let v = __cpuid(0);
            (
                [
                    v.ebx.to_le_bytes(),
                    v.edx.to_le_bytes(),
                    v.ecx.to_le_bytes(),
                ]
                .concat(),
                __cpuid(1).eax,
            )
        };
        Some((vendor, sig))
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The family and model a CPUID signature (leaf 1's EAX) encodes.
fn family_model(sig: u32) -> (u32, u32) {
    let base = (sig >> 8) & 0xf;
    let family = if base == 0xf {
        base + ((sig >> 20) & 0xff)
    } else {
        base
    };
    (family, ((sig >> 12) & 0xf0) | ((sig >> 4) & 0xf))
}

/// [`split_256bit_fma`] from CPUID leaf 0's vendor string and leaf 1's signature (EAX).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn split_from_cpuid(vendor: &[u8], sig: u32) -> bool {
    let (family, model) = family_model(sig);
    match vendor {
        b"AuthenticAMD" => family < 0x17 || (family == 0x17 && model < 0x30),
        b"HygonGenuine" => family == 0x18,
        _ => false,
    }
}

/// [`amd_zen5_or_later`] from CPUID leaf 0's vendor string and leaf 1's signature (EAX).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn zen5_from_cpuid(vendor: &[u8], sig: u32) -> bool {
    vendor == b"AuthenticAMD" && family_model(sig).0 >= 0x1a
}

/// Whether CPUID leaf 0's vendor string and leaf 1's signature (EAX) are AMD family 0x19
/// (Zen 3 and Zen 4; [`amd_zen4`] tells them apart by AVX-512).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn family_19h_from_cpuid(vendor: &[u8], sig: u32) -> bool {
    vendor == b"AuthenticAMD" && family_model(sig).0 == 0x19
}

#[cfg(test)]
mod tests {
    use super::{family_19h_from_cpuid, split_from_cpuid, zen5_from_cpuid};

    #[test]
    fn split_fma_cpus_are_told_from_their_cpuid_signatures() {
        let (amd, hygon, intel) = (b"AuthenticAMD", b"HygonGenuine", b"GenuineIntel");
        // (vendor, CPUID 1 EAX, whether 256-bit FMAs run as two halves)
        let cases: [(&[u8], u32, bool); 9] = [
            (amd, 0x0080_0f12, true),    // Zen 1, EPYC 7001 (family 0x17, model 0x01)
            (amd, 0x0080_0f82, true),    // Zen+, Ryzen 2000 (model 0x08)
            (amd, 0x0083_0f10, false),   // Zen 2, EPYC 7002 (model 0x31)
            (amd, 0x0086_0f01, false),   // Zen 2, Renoir (model 0x60)
            (amd, 0x00a0_0f11, false),   // Zen 3, EPYC 7003 (family 0x19)
            (amd, 0x0066_0f01, true),    // Excavator (family 0x15)
            (hygon, 0x0090_0f22, true),  // Dhyana (family 0x18)
            (intel, 0x0008_06f8, false), // Sapphire Rapids (family 6)
            (intel, 0x0003_06c3, false), // Haswell
        ];
        for (vendor, sig, split) in cases {
            assert_eq!(split_from_cpuid(vendor, sig), split, "signature {sig:#x}");
        }
    }

    #[test]
    fn zen5_is_told_from_its_cpuid_signature() {
        let (amd, hygon, intel) = (b"AuthenticAMD", b"HygonGenuine", b"GenuineIntel");
        // (vendor, CPUID 1 EAX, whether a Zen 5 or later)
        let cases: [(&[u8], u32, bool); 6] = [
            (amd, 0x00b0_0f02, true),    // Zen 5, EPYC 9005 (family 0x1A, model 0x02)
            (amd, 0x00b2_0f40, true),    // Zen 5, Ryzen 9000 (model 0x44)
            (amd, 0x00a1_0f11, false),   // Zen 4, EPYC 9004 (family 0x19, model 0x11)
            (amd, 0x00a0_0f11, false),   // Zen 3
            (hygon, 0x0090_0f22, false), // Dhyana
            (intel, 0x0008_06f8, false), // Sapphire Rapids
        ];
        for (vendor, sig, zen5) in cases {
            assert_eq!(zen5_from_cpuid(vendor, sig), zen5, "signature {sig:#x}");
        }
    }

    #[test]
    fn family_19h_is_told_from_its_cpuid_signature() {
        let (amd, hygon, intel) = (b"AuthenticAMD", b"HygonGenuine", b"GenuineIntel");
        // (vendor, CPUID 1 EAX, whether AMD family 0x19)
        let cases: [(&[u8], u32, bool); 7] = [
            (amd, 0x00a1_0f11, true),    // Zen 4, EPYC 9004 (family 0x19, model 0x11)
            (amd, 0x00a6_0f12, true),    // Zen 4, Ryzen 7000 (model 0x61)
            (amd, 0x00a0_0f11, true),    // Zen 3, EPYC 7003 (model 0x01)
            (amd, 0x00b0_0f02, false),   // Zen 5 (family 0x1A)
            (amd, 0x0083_0f10, false),   // Zen 2 (family 0x17)
            (hygon, 0x0090_0f22, false), // Dhyana
            (intel, 0x0008_06f8, false), // Sapphire Rapids
        ];
        for (vendor, sig, family_19h) in cases {
            assert_eq!(family_19h_from_cpuid(vendor, sig), family_19h, "{sig:#x}");
        }
    }
}
