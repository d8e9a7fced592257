//! INT8 quantization of MatMul weights, dynamic or static: each `MatMul(X, W)` with a constant 2-D float `W`
//! becomes
//!
//! ```text
//! dynamic: DynamicQuantizeLinear(X) -> Xq (uint8), Xs, Xz
//!          MatMulInteger(Xq, Wq, Xz, Wz) -> int32 ; Cast -> float ; Mul by Xs * Ws -> Y
//! static:  QuantizeLinear(X, Xs, Xz) -> Xq          (Xs, Xz constants from a calibration run)
//!          MatMulInteger(Xq, Wq, Xz, Wz) -> int32 ; Cast -> float ; Mul by the constant Xs * Ws -> Y
//! ```
//!
//! with `Wq` symmetric around zero, one scale for the whole weight or one per output column. Dynamic: the
//! activations are quantized per call from their actual range, so no calibration data is needed. Static: from
//! the range each activation took over calibration data (`calibrate.rs`), which saves finding the range per
//! call but clips values beyond what calibration saw.
//!
//! Weights are stored as uint8 with zero point 128 rather than int8 with zero point 0: the same 255 levels,
//! but ONNX Runtime then multiplies uint8 by uint8, whereas its uint8 × int8 kernel on AVX2 CPUs without VNNI
//! sums pairs of products in saturating 16-bit registers (255 · 127 · 2 > 32767). Measured on MiniLM: int8
//! weights gave mean cosine 0.965 (min 0.921) against F32; uint8 weights are in the test's table. Where the CPU
//! has VNNI, whose uint8 × int8 dot product accumulates in 32 bits, loading turns them into int8 (the fast
//! kernel there, at no cost in accuracy): `integer_weights.rs`.

use std::collections::HashMap;

use super::QuantizeReport;
use super::tensors::{data_bytes, f32_values};
use crate::error::ModelError;
use crate::onnx::proto::{
    AttributeProto, ModelProto, NodeProto, TensorProto, attribute_proto::AttributeType, tensor_proto::DataType,
};

/// One scale for the whole weight, or one per output channel (column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    PerTensor,
    PerChannel,
}

/// The range an activation took in calibration: `(min, max)`.
pub type ActivationRanges = HashMap<String, (f32, f32)>;

/// Rewrites every MatMul with a constant 2-D float32 weight, activations quantized per call; calls
/// `progress(done, total)` per MatMul.
pub fn quantize_int8(
    model: &mut ModelProto,
    granularity: Granularity,
    progress: impl FnMut(usize, usize),
) -> Result<QuantizeReport, ModelError> {
    rewrite(model, granularity, None, progress)
}

/// As [`quantize_int8`], with each MatMul's activation quantized with the fixed scale and zero point its
/// calibration range gives (`ranges`, keyed by the activation's name; an activation without a range stays
/// dynamic).
pub fn quantize_int8_static(
    model: &mut ModelProto,
    granularity: Granularity,
    ranges: &ActivationRanges,
    progress: impl FnMut(usize, usize),
) -> Result<QuantizeReport, ModelError> {
    rewrite(model, granularity, Some(ranges), progress)
}

/// Whether `node` multiplies by a constant 2-D float32 weight among `initializers` (by name).
pub(super) fn has_constant_weight(node: &NodeProto, initializers: &HashMap<&str, &TensorProto>) -> bool {
    node.op_type() == "MatMul"
        && node.input.len() == 2
        && initializers
            .get(node.input[1].as_str())
            .is_some_and(|t| t.dims.len() == 2 && t.data_type == Some(DataType::Float as i32))
}

/// Replaces every MatMul by a constant 2-D float32 weight with what `replace` returns for it (the nodes that
/// take its place and the initializers they need; it also counts bytes in the report it is given), keeps every
/// other node, and drops the float weights no node reads any more. Calls `progress(done, total)` per MatMul.
pub(super) fn rewrite_matmuls(
    model: &mut ModelProto,
    mut progress: impl FnMut(usize, usize),
    mut replace: impl FnMut(&NodeProto, &TensorProto, &mut QuantizeReport) -> Result<Rewritten, ModelError>,
) -> Result<QuantizeReport, ModelError> {
    let Some(graph) = model.graph.as_mut() else {
        return Err(ModelError::Unsupported("the model has no graph".into()));
    };
    let index: HashMap<String, usize> =
        graph.initializer.iter().enumerate().map(|(i, t)| (t.name().to_string(), i)).collect();
    let by_name: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name(), t)).collect();
    let flags: Vec<bool> = graph.node.iter().map(|n| has_constant_weight(n, &by_name)).collect();
    let total = flags.iter().filter(|f| **f).count();
    let mut report = QuantizeReport::default();
    let (mut nodes, mut added, mut replaced) = (Vec::with_capacity(graph.node.len()), Vec::new(), Vec::new());
    for (node, quantizable) in std::mem::take(&mut graph.node).into_iter().zip(flags) {
        if !quantizable {
            nodes.push(node);
            continue;
        }
        let rewritten = replace(&node, &graph.initializer[index[&node.input[1]]], &mut report)?;
        nodes.extend(rewritten.nodes);
        added.extend(rewritten.initializers);
        replaced.push(node.input[1].clone());
        report.matmuls += 1;
        progress(report.matmuls, total);
    }
    graph.node = nodes;
    graph.initializer.retain(|t| {
        !replaced.iter().any(|r| r == t.name()) || graph.node.iter().any(|n| n.input.iter().any(|i| i == t.name()))
    });
    graph.initializer.extend(added);
    // Intermediate shapes were inferred for the float graph; the runtime infers them again.
    graph.value_info.clear();
    Ok(report)
}

/// What takes the place of one MatMul.
#[derive(Default)]
pub(super) struct Rewritten {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
}

fn rewrite(
    model: &mut ModelProto,
    granularity: Granularity,
    ranges: Option<&ActivationRanges>,
    progress: impl FnMut(usize, usize),
) -> Result<QuantizeReport, ModelError> {
    rewrite_matmuls(model, progress, |node, weight, report| {
        let mut out = Rewritten::default();
        let (nodes, new_initializers) = (&mut out.nodes, &mut out.initializers);
        let (k, n) = (weight.dims[0] as usize, weight.dims[1] as usize);
        let values = f32_values(weight)?;
        let (q, scales) = quantize_weight(&values, k, n, granularity);
        let fixed = ranges.and_then(|r| r.get(&node.input[0])).map(|&(low, high)| activation_scale(low, high));
        report.bytes_before += data_bytes(weight);
        report.bytes_after += q.len() + scales.len() * 5;

        let base = format!("{}_{}", node.input[1], report.matmuls);
        let (wq, ws, wz) = (format!("{base}_quantized"), format!("{base}_scale"), format!("{base}_zero_point"));
        let scale_dims: Vec<i64> = if scales.len() == 1 { vec![] } else { vec![n as i64] };
        let shifted = q.iter().map(|&v| (i16::from(v) + i16::from(ZERO_POINT)) as u8).collect();
        new_initializers.push(tensor(&wq, vec![k as i64, n as i64], DataType::Uint8, shifted));
        new_initializers.push(tensor(
            &ws,
            scale_dims.clone(),
            DataType::Float,
            scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
        ));
        new_initializers.push(tensor(&wz, scale_dims, DataType::Uint8, vec![ZERO_POINT; scales.len()]));

        let x = &node.input[0];
        let y = node.output.first().cloned().unwrap_or_default();
        let t = |s: &str| format!("{base}_dq_{s}");
        match fixed {
            None => nodes.push(op("DynamicQuantizeLinear", &[x], &[&t("xq"), &t("xs"), &t("xz")], vec![])),
            Some((xs, xz)) => {
                new_initializers.push(tensor(&t("xs"), vec![], DataType::Float, xs.to_le_bytes().to_vec()));
                new_initializers.push(tensor(&t("xz"), vec![], DataType::Uint8, vec![xz]));
                nodes.push(op("QuantizeLinear", &[x, &t("xs"), &t("xz")], &[&t("xq")], vec![]));
            }
        }
        nodes.push(op("MatMulInteger", &[&t("xq"), &wq, &t("xz"), &wz], &[&t("int32")], vec![]));
        nodes.push(cast_to_float(&t("int32"), &t("float")));
        match fixed {
            // The product of the two scales is a constant too.
            Some((xs, _)) => {
                let product: Vec<u8> = scales.iter().flat_map(|s| (s * xs).to_le_bytes()).collect();
                let dims = if scales.len() == 1 { vec![] } else { vec![n as i64] };
                new_initializers.push(tensor(&t("scale"), dims, DataType::Float, product));
            }
            None => nodes.push(op("Mul", &[&t("xs"), &ws], &[&t("scale")], vec![])),
        }
        nodes.push(op("Mul", &[&t("float"), &t("scale")], &[&y], vec![]));
        Ok(out)
    })
}

/// The uint8 scale and zero point that cover `low..=high` (widened to hold 0, which must stay exact).
fn activation_scale(low: f32, high: f32) -> (f32, u8) {
    let (low, high) = (low.min(0.0), high.max(0.0));
    let scale = if high > low { (high - low) / 255.0 } else { 1.0 };
    (scale, (-low / scale).round().clamp(0.0, 255.0) as u8)
}

/// Zero point of the stored uint8 weights.
const ZERO_POINT: u8 = 128;

/// Symmetric quantization of a row-major k × n weight to -127..=127: values and scale(s).
fn quantize_weight(w: &[f32], k: usize, n: usize, granularity: Granularity) -> (Vec<i8>, Vec<f32>) {
    let scale_of = |max: f32| if max > 0.0 { max / 127.0 } else { 1.0 };
    let scales: Vec<f32> = match granularity {
        Granularity::PerTensor => vec![scale_of(w.iter().fold(0.0f32, |m, x| m.max(x.abs())))],
        Granularity::PerChannel => {
            (0..n).map(|col| scale_of((0..k).fold(0.0f32, |m, row| m.max(w[row * n + col].abs())))).collect()
        }
    };
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let s = if scales.len() == 1 { scales[0] } else { scales[i % n] };
            (x / s).round().clamp(-127.0, 127.0) as i8
        })
        .collect();
    (q, scales)
}

pub(super) fn tensor(name: &str, dims: Vec<i64>, data_type: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims,
        data_type: Some(data_type as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// `Cast(input) -> output` to float32.
pub(super) fn cast_to_float(input: &str, output: &str) -> NodeProto {
    let to = AttributeProto {
        name: Some("to".into()),
        i: Some(DataType::Float as i64),
        r#type: Some(AttributeType::Int as i32),
        ..Default::default()
    };
    op("Cast", &[input], &[output], vec![to])
}

pub(super) fn op(op_type: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op_type.into()),
        name: Some(format!("{op_type}_{}", outputs.first().copied().unwrap_or_default())),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_round_trip_within_half_a_step() {
        let (k, n) = (3, 2);
        let w = [0.5, -10.0, -0.25, 2.0, 1.0, 0.0];
        for granularity in [Granularity::PerTensor, Granularity::PerChannel] {
            let (q, scales) = quantize_weight(&w, k, n, granularity);
            for (i, (&x, &v)) in w.iter().zip(&q).enumerate() {
                let s = if scales.len() == 1 { scales[0] } else { scales[i % n] };
                assert!((x - v as f32 * s).abs() <= s / 2.0 + 1e-6, "{granularity:?}: {x} vs {v} x {s}");
            }
        }
        let (_, per_channel) = quantize_weight(&w, k, n, Granularity::PerChannel);
        assert_eq!(per_channel, vec![1.0 / 127.0, 10.0 / 127.0], "column maxima 1 and 10");
    }

    #[test]
    fn activation_ranges_map_onto_uint8_with_an_exact_zero() {
        // -1..=3 over 255 steps: zero at 63.75 steps rounds to 64.
        let (scale, zero) = activation_scale(-1.0, 3.0);
        assert!((scale - 4.0 / 255.0).abs() < 1e-9 && zero == 64);
        assert_eq!(activation_scale(0.5, 2.0), (2.0 / 255.0, 0), "widened down to 0");
        assert_eq!(activation_scale(-2.0, -0.5), (2.0 / 255.0, 255), "widened up to 0");
        assert_eq!(activation_scale(0.0, 0.0), (1.0, 0));
    }
}
