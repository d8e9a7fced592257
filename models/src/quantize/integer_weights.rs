//! The weight format of INT8 MatMuls, fitted to the CPU at load. `MatMulInteger` multiplies uint8 activations
//! by weights stored either as uint8 around zero point 128 or as int8 around 0: the same 255 levels, one byte
//! apart (`w_u8 = w_i8 ^ 0x80`). Which runs fast depends on the CPU: with VNNI (AVX512-VNNI, AVX-VNNI) ONNX
//! Runtime's uint8 × int8 kernel uses the 32-bit dot-product instruction and is the fastest by far (MiniLM at
//! batch 1: 808 texts/s with int8 weights, 444 with uint8, 284 in FP32); without it, that kernel sums pairs of
//! products in saturating 16-bit registers (255 · 127 · 2 > 32767), which costs accuracy (mean cosine 0.965
//! against 0.994), and uint8 weights are the safe choice. `ferroserve quantize` writes uint8 weights, correct
//! everywhere; [`fit_integer_weights`] turns them into int8 where VNNI makes that pay, and back.

use std::collections::{HashMap, HashSet};

use crate::onnx::proto::{ModelProto, TensorProto, tensor_proto::DataType};

/// Whether this CPU runs uint8 × int8 products without saturation (VNNI), where int8 weights are fastest.
pub fn cpu_prefers_signed_weights() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vnni") || std::arch::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Converts the constant weights of every `MatMulInteger` to int8 around 0 (`signed`) or to uint8 around 128,
/// with their zero points; returns how many weights changed. Weights that are not plain constants with a
/// constant zero point of the other form (or that other nodes also read) are left as they are.
pub fn fit_integer_weights(model: &mut ModelProto, signed: bool) -> usize {
    let Some(graph) = model.graph.as_mut() else { return 0 };
    let (from, to, from_zero, to_zero) = if signed {
        (DataType::Uint8, DataType::Int8, 128u8, 0u8)
    } else {
        (DataType::Int8, DataType::Uint8, 0u8, 128u8)
    };
    let index: HashMap<String, usize> =
        graph.initializer.iter().enumerate().map(|(i, t)| (t.name().to_string(), i)).collect();
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for node in &graph.node {
        for input in &node.input {
            *readers.entry(input.as_str()).or_default() += 1;
        }
    }
    let is = |name: &str, data_type: DataType| {
        index.get(name).is_some_and(|&i| graph.initializer[i].data_type == Some(data_type as i32))
    };
    let zero_is = |name: &str, value: u8| {
        index
            .get(name)
            .is_some_and(|&i| graph.initializer[i].raw_data.as_deref().is_some_and(|r| r.iter().all(|&b| b == value)))
    };
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let mut seen = HashSet::new();
    for node in graph.node.iter().filter(|n| n.op_type() == "MatMulInteger" && n.input.len() == 4) {
        let (weight, zero) = (node.input[1].as_str(), node.input[3].as_str());
        let fits = is(weight, from) && is(zero, from) && zero_is(zero, from_zero);
        let only_here = readers.get(weight) == Some(&1) && readers.get(zero) == Some(&1);
        if fits && only_here && seen.insert(weight) {
            pairs.push((index[weight], index[zero]));
        }
    }
    for &(weight, zero) in &pairs {
        flip(&mut graph.initializer[weight], to);
        let zero = &mut graph.initializer[zero];
        zero.data_type = Some(to as i32);
        if let Some(raw) = zero.raw_data.as_mut() {
            raw.iter_mut().for_each(|b| *b = to_zero);
        }
    }
    pairs.len()
}

/// Re-types one weight between uint8 around 128 and int8 around 0 (the top bit flips).
fn flip(tensor: &mut TensorProto, to: DataType) {
    tensor.data_type = Some(to as i32);
    if let Some(raw) = tensor.raw_data.as_mut() {
        raw.iter_mut().for_each(|b| *b ^= 0x80);
    }
    // Packed int32_data (the other encoding of 8-bit tensors) holds one value per element.
    for v in tensor.int32_data.iter_mut() {
        *v = if to == DataType::Int8 { *v - 128 } else { *v + 128 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{GraphProto, NodeProto};

    fn tensor(name: &str, data_type: DataType, raw: Vec<u8>) -> TensorProto {
        TensorProto {
            name: Some(name.into()),
            dims: vec![raw.len() as i64],
            data_type: Some(data_type as i32),
            raw_data: Some(raw),
            ..Default::default()
        }
    }

    fn model(weight: Vec<u8>, zero: u8, extra_reader: bool) -> ModelProto {
        let matmul = NodeProto {
            op_type: Some("MatMulInteger".into()),
            input: vec!["x".into(), "w".into(), "xz".into(), "wz".into()],
            output: vec!["y".into()],
            ..Default::default()
        };
        let other = NodeProto { op_type: Some("Identity".into()), input: vec!["w".into()], ..Default::default() };
        let node = if extra_reader { vec![matmul, other] } else { vec![matmul] };
        let initializer = vec![tensor("w", DataType::Uint8, weight), tensor("wz", DataType::Uint8, vec![zero; 2])];
        ModelProto { graph: Some(GraphProto { node, initializer, ..Default::default() }), ..Default::default() }
    }

    fn initializer<'a>(m: &'a ModelProto, name: &str) -> &'a TensorProto {
        m.graph.as_ref().unwrap().initializer.iter().find(|t| t.name() == name).unwrap()
    }

    #[test]
    fn uint8_weights_become_int8_and_back_with_the_same_values() {
        // uint8 around 128: 0 -> -128, 128 -> 0, 255 -> 127.
        let mut m = model(vec![0, 128, 255, 129], 128, false);
        assert_eq!(fit_integer_weights(&mut m, true), 1);
        let w = initializer(&m, "w");
        assert_eq!(w.data_type, Some(DataType::Int8 as i32));
        let values: Vec<i8> = w.raw_data.as_ref().unwrap().iter().map(|&b| b as i8).collect();
        assert_eq!(values, [-128, 0, 127, 1]);
        assert_eq!(initializer(&m, "wz").raw_data.as_deref(), Some(&[0u8, 0][..]));
        assert_eq!(initializer(&m, "wz").data_type, Some(DataType::Int8 as i32));
        assert_eq!(fit_integer_weights(&mut m, true), 0, "already signed");
        assert_eq!(fit_integer_weights(&mut m, false), 1);
        assert_eq!(initializer(&m, "w").raw_data.as_deref(), Some(&[0u8, 128, 255, 129][..]));
        assert_eq!(initializer(&m, "wz").raw_data.as_deref(), Some(&[128u8, 128][..]));
    }

    #[test]
    fn weights_that_are_not_around_128_or_shared_stay() {
        assert_eq!(fit_integer_weights(&mut model(vec![1, 2], 100, false), true), 0, "zero point 100");
        assert_eq!(fit_integer_weights(&mut model(vec![1, 2], 128, true), true), 0, "another node reads it");
    }
}
