//! Weights repacked once at load into the layout the kernels read: for every group of eight output
//! columns, block by block, the columns' values interleaved four bytes at a time (so that one 32-byte load
//! holds four consecutive values of every column, one column per 32-bit lane), and their scales as `f32`.

use crate::{BLOCK, GROUP, Isa};

/// Consecutive bytes of one column in the interleaved layout (the width of a `vpdpbusd` lane).
pub(crate) const RUN: usize = 4;

/// Where byte `j` of column `c`'s block lies within the group's bytes of that block: runs of four bytes,
/// the group's columns side by side for each run.
pub(crate) fn interleaved(c: usize, j: usize) -> usize {
    (j / RUN) * GROUP * RUN + c * RUN + j % RUN
}

/// Bytes of one GGML Q8_0 block: an `f16` scale and 32 `i8` values.
const Q8_0_BLOCK_BYTES: usize = 2 + BLOCK;
/// Bytes of one GGML Q4_0 block: an `f16` scale and 32 nibbles.
const Q4_0_BLOCK_BYTES: usize = 2 + BLOCK / 2;
/// Bytes of one GGML Q4_1 block: an `f16` scale, an `f16` minimum and 32 nibbles.
const Q4_1_BLOCK_BYTES: usize = 4 + BLOCK / 2;

/// Values per GGML K-quant super-block.
const K_SUPER: usize = 256;
/// Bytes of one GGML Q4_K super-block: `f16` scale and minimum scale, 12 bytes of 6-bit sub-block scales and
/// minimums, 128 nibble bytes.
const Q4_K_BLOCK_BYTES: usize = 4 + 12 + K_SUPER / 2;

/// How wide the packed weight values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightBits {
    /// `i8` values, value = scale × q (Q8_0).
    Eight,
    /// Nibbles 0..15 as GGML stores them (byte `j`: value `j` low, value `j + 16` high),
    /// value = scale × q + min (Q4_1; Q4_0 is min = −8 × scale).
    Four,
}

impl WeightBits {
    /// Bytes of one block's values.
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            WeightBits::Eight => BLOCK,
            WeightBits::Four => BLOCK / 2,
        }
    }
}

/// Why weights or rows do not fit a kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackError {
    /// The inner dimension is not a whole number of blocks.
    NotBlocks { k: usize },
    /// The data holds a different number of values or bytes than the shape needs.
    Length { expected: usize, got: usize },
    /// The operands were prepared for different shapes or instruction sets.
    Mismatch(String),
}

impl std::fmt::Display for PackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PackError::NotBlocks { k } => write!(f, "inner dimension {k} is not a multiple of {BLOCK}"),
            PackError::Length { expected, got } => write!(f, "expected {expected} values or bytes, got {got}"),
            PackError::Mismatch(what) => write!(f, "operands do not match: {what}"),
        }
    }
}

impl std::error::Error for PackError {}

/// An `[n, k]` weight matrix (one row per output column) in 8- or 4-bit blocks, repacked for one [`Isa`].
#[derive(Debug, Clone)]
pub struct PackedWeights {
    pub(crate) isa: Isa,
    pub(crate) bits: WeightBits,
    pub(crate) n: usize,
    pub(crate) k: usize,
    /// `[group][block][run][column in group][4 bytes]` (see [`interleaved`]). Eight bits: `i8` values, or
    /// `i8 + 128` as `u8` for [`Isa::Avx512Vnni`] (whose instruction multiplies unsigned by signed bytes).
    /// Four bits: GGML's nibble bytes (byte `j`: value `j` low, value `j + 16` high), so a run's low nibbles
    /// are four values of the block's first half and its high nibbles the same four of the second half.
    /// Columns past `n` are zero.
    pub(crate) qs: Vec<u8>,
    /// `[group][block][column in group]`.
    pub(crate) scales: Vec<f32>,
    /// Four bits only, `[group][block][column in group]`: the value of nibble 0.
    pub(crate) mins: Vec<f32>,
}

impl PackedWeights {
    /// Repacks GGML Q8_0 data: `n` rows of `k / 32` blocks of 34 bytes (an `f16` scale, 32 `i8` values).
    pub fn from_q8_0(data: &[u8], n: usize, k: usize, isa: Isa) -> Result<Self, PackError> {
        let kb = blocks(k)?;
        let expected = n * kb * Q8_0_BLOCK_BYTES;
        if data.len() != expected {
            return Err(PackError::Length { expected, got: data.len() });
        }
        Ok(Self::build(n, k, isa, |col, b| {
            let block = &data[(col * kb + b) * Q8_0_BLOCK_BYTES..][..Q8_0_BLOCK_BYTES];
            let scale = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            let mut values = [0i8; BLOCK];
            for (v, &byte) in values.iter_mut().zip(&block[2..]) {
                *v = byte as i8;
            }
            (scale, values)
        }))
    }

    /// Repacks GGML Q4_0 data: `n` rows of `k / 32` blocks of 18 bytes (an `f16` scale, 16 nibble bytes;
    /// value = scale × (q − 8)).
    pub fn from_q4_0(data: &[u8], n: usize, k: usize, isa: Isa) -> Result<Self, PackError> {
        Self::nibbles(data, n, k, isa, Q4_0_BLOCK_BYTES, |block| {
            let scale = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            (scale, -8.0 * scale, &block[2..])
        })
    }

    /// Repacks GGML Q4_1 data: `n` rows of `k / 32` blocks of 20 bytes (an `f16` scale, an `f16` minimum,
    /// 16 nibble bytes; value = scale × q + minimum).
    pub fn from_q4_1(data: &[u8], n: usize, k: usize, isa: Isa) -> Result<Self, PackError> {
        Self::nibbles(data, n, k, isa, Q4_1_BLOCK_BYTES, |block| {
            let scale = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            let min = half::f16::from_le_bytes([block[2], block[3]]).to_f32();
            (scale, min, &block[4..])
        })
    }

    /// Repacks GGML Q4_K data: `n` rows of `k / 256` super-blocks of 144 bytes. Each super-block's eight
    /// sub-blocks of 32 become blocks of this packing exactly (scale = d × sub-scale, min = −dmin × sub-min,
    /// both exact in `f32`), so the products are those of the file's weights.
    pub fn from_q4_k(data: &[u8], n: usize, k: usize, isa: Isa) -> Result<Self, PackError> {
        if k == 0 || !k.is_multiple_of(K_SUPER) {
            return Err(PackError::NotBlocks { k });
        }
        let supers = k / K_SUPER;
        let expected = n * supers * Q4_K_BLOCK_BYTES;
        if data.len() != expected {
            return Err(PackError::Length { expected, got: data.len() });
        }
        // Re-lay each sub-block as a 4-bit block of its own: the parser below sees one 32-value block at a time.
        const RE_LAID: usize = 8 + BLOCK / 2; // f32 scale, f32 min, 16 nibble bytes
        let mut blocks4 = Vec::with_capacity(n * (k / BLOCK) * RE_LAID);
        for sb in data.chunks_exact(Q4_K_BLOCK_BYTES) {
            let d = half::f16::from_le_bytes([sb[0], sb[1]]).to_f32();
            let dmin = half::f16::from_le_bytes([sb[2], sb[3]]).to_f32();
            let (scales, qs) = (&sb[4..16], &sb[16..]);
            for j in 0..K_SUPER / BLOCK {
                let (sc, m) = k_scale_min(j, scales);
                // Sub-block j: the low (even j) or high (odd j) nibbles of bytes 32·(j/2) .. 32·(j/2) + 32.
                let bytes = &qs[32 * (j / 2)..][..32];
                let nibble = |i: usize| if j % 2 == 0 { bytes[i] & 0x0f } else { bytes[i] >> 4 };
                blocks4.extend_from_slice(&(d * sc as f32).to_le_bytes());
                blocks4.extend_from_slice(&(-(dmin * m as f32)).to_le_bytes());
                blocks4.extend((0..BLOCK / 2).map(|i| nibble(i) | (nibble(i + BLOCK / 2) << 4)));
            }
        }
        Self::nibbles(&blocks4, n, k, isa, RE_LAID, |block| {
            let scale = f32::from_le_bytes([block[0], block[1], block[2], block[3]]);
            let min = f32::from_le_bytes([block[4], block[5], block[6], block[7]]);
            (scale, min, &block[8..])
        })
    }

    /// Lays out 4-bit blocks of `block_bytes` each, read by `parse` into (scale, min, nibble bytes).
    fn nibbles(
        data: &[u8],
        n: usize,
        k: usize,
        isa: Isa,
        block_bytes: usize,
        parse: impl Fn(&[u8]) -> (f32, f32, &[u8]),
    ) -> Result<Self, PackError> {
        let kb = blocks(k)?;
        let expected = n * kb * block_bytes;
        if data.len() != expected {
            return Err(PackError::Length { expected, got: data.len() });
        }
        let groups = n.div_ceil(GROUP);
        let bytes = WeightBits::Four.block_bytes();
        let mut packed = PackedWeights {
            isa,
            bits: WeightBits::Four,
            n,
            k,
            qs: vec![0; groups * kb * GROUP * bytes],
            scales: vec![0.0; groups * kb * GROUP],
            mins: vec![0.0; groups * kb * GROUP],
        };
        for col in 0..n {
            for b in 0..kb {
                let (scale, min, nibbles) = parse(&data[(col * kb + b) * block_bytes..][..block_bytes]);
                let (g, c) = (col / GROUP, col % GROUP);
                let slot = (g * kb + b) * GROUP + c;
                packed.scales[slot] = scale;
                packed.mins[slot] = min;
                let block = &mut packed.qs[(g * kb + b) * GROUP * bytes..][..GROUP * bytes];
                for (j, &byte) in nibbles.iter().enumerate() {
                    block[interleaved(c, j)] = byte;
                }
            }
        }
        Ok(packed)
    }

    /// Quantizes an `[n, k]` row-major `f32` matrix block by block (scale = largest magnitude / 127, values
    /// rounded to nearest, as GGML's Q8_0).
    pub fn quantize(w: &[f32], n: usize, k: usize, isa: Isa) -> Result<Self, PackError> {
        blocks(k)?;
        if w.len() != n * k {
            return Err(PackError::Length { expected: n * k, got: w.len() });
        }
        Ok(Self::build(n, k, isa, |col, b| {
            let mut values = [0i8; BLOCK];
            let scale = quantize_block(&w[col * k + b * BLOCK..][..BLOCK], &mut values);
            (scale, values)
        }))
    }

    /// Lays out every block that `block(column, block index)` gives.
    fn build(n: usize, k: usize, isa: Isa, block: impl Fn(usize, usize) -> (f32, [i8; BLOCK])) -> Self {
        let kb = k / BLOCK;
        let groups = n.div_ceil(GROUP);
        let offset = if isa == Isa::Avx512Vnni { 0x80 } else { 0 };
        let mut qs = vec![offset; groups * kb * GROUP * BLOCK];
        let mut scales = vec![0.0; groups * kb * GROUP];
        for col in 0..n {
            let (g, c) = (col / GROUP, col % GROUP);
            for b in 0..kb {
                let (scale, values) = block(col, b);
                scales[(g * kb + b) * GROUP + c] = scale;
                let block = &mut qs[(g * kb + b) * GROUP * BLOCK..][..GROUP * BLOCK];
                for (j, v) in values.into_iter().enumerate() {
                    block[interleaved(c, j)] = (v as u8) ^ offset;
                }
            }
        }
        PackedWeights { isa, bits: WeightBits::Eight, n, k, qs, scales, mins: Vec::new() }
    }

    /// The columns of `parts` side by side, in order: one product then gives what each part's would (the
    /// same bits, since every output column is computed on its own). The parts share the instruction set,
    /// the width of their values and the inner dimension, and all but the last fill whole groups of columns.
    pub fn concat(parts: &[&PackedWeights]) -> Result<Self, PackError> {
        let Some((first, rest)) = parts.split_first() else {
            return Err(PackError::Mismatch("nothing to concatenate".into()));
        };
        for (i, p) in parts.iter().enumerate() {
            if (p.isa, p.bits, p.k) != (first.isa, first.bits, first.k) {
                return Err(PackError::Mismatch(format!(
                    "part {i} is {:?} {:?} of width {}, part 0 {:?} {:?} of width {}",
                    p.isa, p.bits, p.k, first.isa, first.bits, first.k
                )));
            }
            if i + 1 < parts.len() && !p.n.is_multiple_of(GROUP) {
                return Err(PackError::Mismatch(format!("part {i} has {} columns, not whole groups of {GROUP}", p.n)));
            }
        }
        let mut all = (*first).clone();
        for p in rest {
            all.n += p.n;
            all.qs.extend_from_slice(&p.qs);
            all.scales.extend_from_slice(&p.scales);
            all.mins.extend_from_slice(&p.mins);
        }
        Ok(all)
    }

    /// Output columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Inner dimension (values per column).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The instruction set this packing is for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Memory held.
    pub fn bytes(&self) -> usize {
        self.qs.len() + (self.scales.len() + self.mins.len()) * 4
    }

    /// How wide the values are.
    pub fn bits(&self) -> WeightBits {
        self.bits
    }
}

/// GGML's `get_scale_min_k4`: sub-block `j`'s 6-bit scale and minimum from a Q4_K super-block's 12 bytes.
fn k_scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Blocks in an inner dimension of `k` values.
pub(crate) fn blocks(k: usize) -> Result<usize, PackError> {
    if k == 0 || !k.is_multiple_of(BLOCK) {
        return Err(PackError::NotBlocks { k });
    }
    Ok(k / BLOCK)
}

/// GGML's Q8_0 rounding of one block: returns the scale, writes the values. Written so that it vectorizes
/// on baseline x86-64 (no libm calls): the largest magnitude by comparisons, rounding half away from zero as
/// truncation plus a correction (equal to `f32::round` for the magnitudes here, at most 127.5).
pub(crate) fn quantize_block(x: &[f32], out: &mut [i8; BLOCK]) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| if v.abs() > m { v.abs() } else { m });
    let scale = amax / 127.0;
    let inverse = if scale != 0.0 { 1.0 / scale } else { 0.0 };
    for (q, v) in out.iter_mut().zip(x) {
        let y = v * inverse;
        let t = y as i32 as f32;
        let r = if (y - t).abs() >= 0.5 { t + 1.0f32.copysign(y) } else { t };
        *q = r as i8;
    }
    scale
}
