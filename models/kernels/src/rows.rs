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
    /// `[row][block]`: the sum of the block's values (for 4-bit weights' minimums).
    pub(crate) sums: Vec<i32>,
    /// For [`Isa::Avx512Vnni`] only, `[row][block][8]`: −128 × the sum of each run of four values, which
    /// cancels the +128 the unsigned weights carry, lane by lane.
    pub(crate) corrections: Vec<i32>,
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
        self.isa = Some(isa);
        self.m = m;
        self.k = k;
        self.qs.resize(m * k, 0);
        self.scales.resize(m * kb, 0.0);
        let mut values = [0i8; BLOCK];
        for (i, (chunk, scale)) in x.chunks_exact(BLOCK).zip(self.scales.iter_mut()).enumerate() {
            *scale = quantize_block(chunk, &mut values);
            self.qs[i * BLOCK..][..BLOCK].copy_from_slice(&values);
        }
        self.sums.clear();
        self.sums.extend(self.qs.chunks_exact(BLOCK).map(|q| q.iter().map(|&v| v as i32).sum::<i32>()));
        self.corrections.clear();
        if isa == Isa::Avx512Vnni {
            self.corrections.extend(self.qs.chunks_exact(4).map(|q| -128 * q.iter().map(|&v| v as i32).sum::<i32>()));
        }
        Ok(())
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.m
    }
}
