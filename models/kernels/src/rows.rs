//! Activation rows quantized for the kernels: 8-bit blocks with an `f32` scale each, in buffers kept
//! between calls.

use crate::pack::{blocks, quantize_block};
use crate::{BLOCK, Isa, PackError};

/// `m` rows of `k` activations in 8-bit blocks (GGML's Q8_0 rounding, with `f32` scales).
#[derive(Debug, Default, Clone)]
pub struct QuantizedRows {
    pub(crate) isa: Option<Isa>,
    pub(crate) m: usize,
    pub(crate) k: usize,
    /// `[row][block][BLOCK]`.
    pub(crate) qs: Vec<i8>,
    /// `[row][block]`.
    pub(crate) scales: Vec<f32>,
    /// `[row][block]`: the sum of the block's values (for 4-bit weights' minimums, and to cancel the +128
    /// that [`Isa::Avx512Vnni`]'s unsigned 8-bit weights carry).
    pub(crate) sums: Vec<i32>,
}

impl QuantizedRows {
    /// Empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Quantizes `x` (`m` rows of `k`, row-major) for kernels of `isa`, reusing the buffers.
    pub fn quantize(&mut self, x: &[f32], m: usize, k: usize, isa: Isa) -> Result<(), PackError> {
        let kb = blocks(k)?;
        if x.len() != m * k {
            return Err(PackError::Length { expected: m * k, got: x.len() });
        }
        isa.require().map_err(PackError::Mismatch)?;
        self.isa = Some(isa);
        self.m = m;
        self.k = k;
        self.qs.resize(m * k, 0);
        self.scales.resize(m * kb, 0.0);
        self.sums.resize(m * kb, 0);
        let mut values = [0i8; BLOCK];
        for (i, chunk) in x.chunks_exact(BLOCK).enumerate() {
            self.scales[i] = quantize(isa, chunk, &mut values);
            self.qs[i * BLOCK..][..BLOCK].copy_from_slice(&values);
            self.sums[i] = values.iter().map(|&v| v as i32).sum();
        }
        Ok(())
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.m
    }
}

/// One block on `isa`'s code (every path gives the same bits; see `x86::quantize_block_avx2`).
fn quantize(isa: Isa, chunk: &[f32], values: &mut [i8; BLOCK]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        // SAFETY: non-scalar families are only used where AVX2 exists (`Isa::available`, checked again by
        // `matmul` before any product).
        return unsafe { crate::x86::quantize_block_avx2(chunk, values) };
    }
    let _ = isa;
    quantize_block(chunk, values)
}
