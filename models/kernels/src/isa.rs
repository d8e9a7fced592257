//! The instruction sets the kernels are written for, detected at run time.

/// The most rows any family's tile holds ([`Isa::tile_rows`]).
pub(crate) const MAX_TILE_ROWS: usize = 8;

/// A kernel family. Every machine runs [`Isa::Scalar`]; the others need their CPU features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust; the reference the others are tested against.
    Scalar,
    /// AVX2 and FMA: 8-bit products through `vpmaddubsw` / `vpmaddwd`.
    Avx2,
    /// AVX-512 VNNI on 256-bit registers (`vpdpbusd`): one instruction per 32 products.
    Avx512Vnni,
}

impl Isa {
    /// The fastest family this CPU runs.
    pub fn detect() -> Isa {
        Self::available().last().copied().unwrap_or(Isa::Scalar)
    }

    /// Every family this CPU runs, slowest first (the scalar one always).
    pub fn available() -> &'static [Isa] {
        static FOUND: std::sync::OnceLock<Vec<Isa>> = std::sync::OnceLock::new();
        FOUND.get_or_init(Self::probe)
    }

    fn probe() -> Vec<Isa> {
        let mut found = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                found.push(Isa::Avx2);
                if std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    found.push(Isa::Avx512Vnni);
                }
            }
        }
        found
    }

    /// Whether this CPU runs the family.
    pub fn is_available(self) -> bool {
        Self::available().contains(&self)
    }

    /// `Err` with a message when this CPU cannot run the family (every kernel entry point checks this
    /// before any SIMD code runs).
    pub(crate) fn require(self) -> Result<(), String> {
        if self.is_available() { Ok(()) } else { Err(format!("this CPU cannot run {} kernels", self.name())) }
    }

    /// A short name for logs and benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512-vnni",
        }
    }

    /// Rows one tile of the kernel computes at once (what the registers hold), at most [`MAX_TILE_ROWS`].
    pub(crate) fn tile_rows(self) -> usize {
        match self {
            Isa::Scalar => 1,
            Isa::Avx2 => 4,
            Isa::Avx512Vnni => MAX_TILE_ROWS,
        }
    }
}
