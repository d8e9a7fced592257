//! The portable kernel, and the reference the SIMD kernels must match bit for bit: per block, the exact
//! integer dot product of a row and a column, converted, scaled and added to the column's sum with one fused
//! multiply-add; for 4-bit weights a second one adds the block's minimum times the row's sum of values.

use crate::pack::interleaved;
use crate::{BLOCK, GROUP, WeightBits};

/// One group of eight columns against a few rows, as every kernel receives it.
pub(crate) struct Tile<'a> {
    pub bits: WeightBits,
    /// The group's weights: `[block][run][column][4 bytes]` (see `PackedWeights::qs`).
    pub w_qs: &'a [u8],
    /// `[block][column]`.
    pub w_scales: &'a [f32],
    /// 4-bit weights: `[block][column]`; empty otherwise.
    pub w_mins: &'a [f32],
    /// The rows' values: `[row][block][BLOCK]`.
    pub a_qs: &'a [i8],
    /// `[row][block]`.
    pub a_scales: &'a [f32],
    /// `[row][block]`: each block's sum of values.
    pub a_sums: &'a [i32],
    /// Blocks per row.
    pub blocks: usize,
}

/// Computes `out[row][column]` for every row of the tile.
pub(crate) fn tile(t: &Tile<'_>, out: &mut [[f32; GROUP]]) {
    let kb = t.blocks;
    let bytes = GROUP * t.bits.block_bytes();
    let four = t.bits == WeightBits::Four;
    for (r, row_out) in out.iter_mut().enumerate() {
        for (c, value) in row_out.iter_mut().enumerate() {
            let mut acc = 0.0f32;
            for b in 0..kb {
                let w = &t.w_qs[b * bytes..][..bytes];
                let a = &t.a_qs[(r * kb + b) * BLOCK..][..BLOCK];
                let sa = t.a_scales[r * kb + b];
                let dot: i32 = (0..BLOCK).map(|i| weight(t.bits, w, c, i) * a[i] as i32).sum();
                acc = (dot as f32).mul_add(sa * t.w_scales[b * GROUP + c], acc);
                if four {
                    acc = (t.w_mins[b * GROUP + c] * sa).mul_add(t.a_sums[r * kb + b] as f32, acc);
                }
            }
            *value = acc;
        }
    }
}

/// Value `i` of column `c` in a block's interleaved weight bytes.
fn weight(bits: WeightBits, w: &[u8], c: usize, i: usize) -> i32 {
    match bits {
        WeightBits::Eight => (w[interleaved(c, i)] as i8) as i32,
        WeightBits::Four if i < BLOCK / 2 => (w[interleaved(c, i)] & 0x0f) as i32,
        WeightBits::Four => (w[interleaved(c, i - BLOCK / 2)] >> 4) as i32,
    }
}
