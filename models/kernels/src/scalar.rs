//! The portable kernel, and the reference the SIMD kernels must match bit for bit: per block, eight lanes
//! of four exact integer products each, converted, scaled and accumulated with one fused multiply-add per
//! lane; then the lanes summed in the order the SIMD horizontal sum uses.

use crate::{BLOCK, GROUP, WeightBits};

/// One group of four columns against a few rows, as every kernel receives it.
pub(crate) struct Tile<'a> {
    pub bits: WeightBits,
    /// The group's weights: `[block][column][block bytes]` (see `PackedWeights::qs`).
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
    /// `[row][block][8]` for the VNNI kernel, empty otherwise.
    pub a_corrections: &'a [i32],
    /// Blocks per row.
    pub blocks: usize,
}

/// Computes `out[row][column]` for every row of the tile. For 4-bit weights the minimums add, per block,
/// `min × row scale × sum of the row's values` to a separate scalar sum, added after the lanes.
pub(crate) fn tile(t: &Tile<'_>, out: &mut [[f32; GROUP]]) {
    let kb = t.blocks;
    let bytes = t.bits.block_bytes();
    for (r, row_out) in out.iter_mut().enumerate() {
        for (c, value) in row_out.iter_mut().enumerate() {
            let mut acc = [0.0f32; 8];
            let mut mins = 0.0f32;
            for b in 0..kb {
                let w = &t.w_qs[(b * GROUP + c) * bytes..][..bytes];
                let a = &t.a_qs[(r * kb + b) * BLOCK..][..BLOCK];
                let sa = t.a_scales[r * kb + b];
                let scale = sa * t.w_scales[b * GROUP + c];
                for (lane, acc) in acc.iter_mut().enumerate() {
                    let dot: i32 = (4 * lane..4 * lane + 4).map(|i| weight(t.bits, w, i) * a[i] as i32).sum();
                    *acc = (dot as f32).mul_add(scale, *acc);
                }
                if t.bits == WeightBits::Four {
                    mins = (t.w_mins[b * GROUP + c] * sa).mul_add(t.a_sums[r * kb + b] as f32, mins);
                }
            }
            *value = if t.bits == WeightBits::Four { hsum8(acc) + mins } else { hsum8(acc) };
        }
    }
}

/// Value `i` of a block's weight bytes.
fn weight(bits: WeightBits, w: &[u8], i: usize) -> i32 {
    match bits {
        WeightBits::Eight => (w[i] as i8) as i32,
        WeightBits::Four if i < BLOCK / 2 => (w[i] & 0x0f) as i32,
        WeightBits::Four => (w[i - BLOCK / 2] >> 4) as i32,
    }
}

/// The eight lanes summed as `_mm256` code does it: halves added, then pairs, then the last two.
pub(crate) fn hsum8(v: [f32; 8]) -> f32 {
    let s = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}
