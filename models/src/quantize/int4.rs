//! 4-bit weight-only quantization for ONNX Runtime's CPU kernel: each `MatMul(X, W)` with a constant 2-D float
//! `W` (K × N) becomes ONNX Runtime's contrib operator `com.microsoft.MatMulNBits(X, B, scales)`.
//!
//! `W` is quantized per block of `block_size` values along K for each output column: a float scale per block
//! (the block's largest magnitude over 7) and codes `round(w / scale) + 8` in 1..=15 (no zero-point input: the
//! operator's default for 4 bits is 8, so the codes are symmetric around zero). `B` holds the codes as
//! `[N, blocks, block_size / 2]` bytes, two per byte with the lower K index in the low nibble; a last block
//! shorter than `block_size` is padded with code 8 (zero). Activations stay float; with `accuracy_level` 4
//! ONNX Runtime quantizes them to INT8 per block on the fly and multiplies with integer kernels (AVX2,
//! AVX-512 VNNI), otherwise it dequantizes to float.

use super::QuantizeReport;
use super::int8::{Rewritten, rewrite_matmuls};
use super::tensors::{data_bytes, f32_values};
use crate::error::ModelError;
use crate::onnx::proto::{
    AttributeProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, attribute_proto::AttributeType,
    tensor_proto::DataType,
};

/// ONNX Runtime's contrib operator domain.
const DOMAIN: &str = "com.microsoft";

/// How the weights are blocked and how ONNX Runtime multiplies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int4Options {
    /// Values per block along K: a power of two, at least 16.
    pub block_size: usize,
    /// 0: the most accurate kernel (float activations); 4: INT8 activations (faster).
    pub accuracy_level: i64,
}

impl Default for Int4Options {
    fn default() -> Self {
        Int4Options { block_size: 32, accuracy_level: 4 }
    }
}

/// Rewrites every MatMul with a constant 2-D float32 weight; calls `progress(done, total)` per MatMul.
pub fn quantize_int4(
    model: &mut ModelProto,
    options: Int4Options,
    progress: impl FnMut(usize, usize),
) -> Result<QuantizeReport, ModelError> {
    if options.block_size < 16 || !options.block_size.is_power_of_two() {
        return Err(ModelError::Unsupported(format!(
            "block size {} is not a power of two of at least 16",
            options.block_size
        )));
    }
    let report = rewrite_matmuls(model, progress, |node, weight, report| {
        let mut out = Rewritten::default();
        let (k, n) = (weight.dims[0] as usize, weight.dims[1] as usize);
        let blocks = quantize_blocks(&f32_values(weight)?, k, n, options.block_size);
        report.bytes_before += data_bytes(weight);
        report.bytes_after += blocks.codes.len() + blocks.scales.len() * 4;

        let base = format!("{}_{}", node.input[1], report.matmuls);
        let (b, scales) = (format!("{base}_q4"), format!("{base}_q4_scales"));
        let per_column = k.div_ceil(options.block_size) as i64;
        out.initializers.push(TensorProto {
            name: Some(b.clone()),
            dims: vec![n as i64, per_column, (options.block_size / 2) as i64],
            data_type: Some(DataType::Uint8 as i32),
            raw_data: Some(blocks.codes),
            ..Default::default()
        });
        out.initializers.push(TensorProto {
            name: Some(scales.clone()),
            dims: vec![n as i64, per_column],
            data_type: Some(DataType::Float as i32),
            raw_data: Some(blocks.scales.iter().flat_map(|s| s.to_le_bytes()).collect()),
            ..Default::default()
        });
        let int = |name: &str, value: i64| AttributeProto {
            name: Some(name.into()),
            i: Some(value),
            r#type: Some(AttributeType::Int as i32),
            ..Default::default()
        };
        let y = node.output.first().cloned().unwrap_or_default();
        out.nodes.push(NodeProto {
            op_type: Some("MatMulNBits".into()),
            domain: Some(DOMAIN.into()),
            name: Some(format!("MatMulNBits_{y}")),
            input: vec![node.input[0].clone(), b, scales],
            output: vec![y],
            attribute: vec![
                int("K", k as i64),
                int("N", n as i64),
                int("bits", 4),
                int("block_size", options.block_size as i64),
                int("accuracy_level", options.accuracy_level),
            ],
            ..Default::default()
        });
        Ok(out)
    })?;
    if !model.opset_import.iter().any(|o| o.domain() == DOMAIN) {
        model.opset_import.push(OperatorSetIdProto { domain: Some(DOMAIN.into()), version: Some(1) });
    }
    Ok(report)
}

/// A weight's 4-bit codes in MatMulNBits' layout and one scale per (column, block).
struct Blocks {
    codes: Vec<u8>,
    scales: Vec<f32>,
}

/// Quantizes a row-major K × N weight column by column, `block_size` values of K per block.
fn quantize_blocks(w: &[f32], k: usize, n: usize, block_size: usize) -> Blocks {
    let per_column = k.div_ceil(block_size);
    let mut codes = Vec::with_capacity(n * per_column * block_size / 2);
    let mut scales = Vec::with_capacity(n * per_column);
    for col in 0..n {
        for block in 0..per_column {
            let rows = block * block_size..((block + 1) * block_size).min(k);
            let max = rows.clone().fold(0.0f32, |m, row| m.max(w[row * n + col].abs()));
            let scale = if max > 0.0 { max / 7.0 } else { 1.0 };
            scales.push(scale);
            let code = |i: usize| {
                let row = block * block_size + i;
                if row < k { ((w[row * n + col] / scale).round().clamp(-7.0, 7.0) as i8 + 8) as u8 } else { 8 }
            };
            codes.extend((0..block_size / 2).map(|pair| code(2 * pair) | (code(2 * pair + 1) << 4)));
        }
    }
    Blocks { codes, scales }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weight MatMulNBits computes with: (code - 8) × scale, unpacked from the layout.
    fn dequantize(b: &Blocks, k: usize, n: usize, block_size: usize) -> Vec<f32> {
        let per_column = k.div_ceil(block_size);
        let mut w = vec![0.0; k * n];
        for col in 0..n {
            for row in 0..k {
                let (block, within) = (row / block_size, row % block_size);
                let byte = b.codes[(col * per_column + block) * block_size / 2 + within / 2];
                let code = if within % 2 == 0 { byte & 0x0f } else { byte >> 4 };
                w[row * n + col] = (f32::from(code) - 8.0) * b.scales[col * per_column + block];
            }
        }
        w
    }

    #[test]
    fn codes_round_trip_within_half_a_step_per_block() {
        // K = 40 with blocks of 16: two full blocks and a padded one of 8.
        let (k, n, block) = (40, 3, 16);
        let w: Vec<f32> = (0..k * n).map(|i| ((i * 7919 % 101) as f32 - 50.0) * 0.01 * (1 + i % 3) as f32).collect();
        let b = quantize_blocks(&w, k, n, block);
        assert_eq!((b.codes.len(), b.scales.len()), (n * 3 * block / 2, n * 3));
        let back = dequantize(&b, k, n, block);
        for (i, (x, y)) in w.iter().zip(&back).enumerate() {
            let scale = b.scales[(i % n) * 3 + (i / n) / block];
            assert!((x - y).abs() <= scale / 2.0 + 1e-6, "{i}: {x} vs {y} (scale {scale})");
        }
        // The padding decodes to zero, and a block's largest magnitude is exact (code 1 or 15).
        assert!(b.codes[2 * block / 2 + 4..3 * block / 2].iter().all(|&c| c == 0x88), "column 0, block 2, rows 40..48");
        let column0_block0_max = (0..16).map(|r| w[r * n].abs()).fold(0.0f32, f32::max);
        assert!((b.scales[0] * 7.0 - column0_block0_max).abs() < 1e-6);
    }
}
