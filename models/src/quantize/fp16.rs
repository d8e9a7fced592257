//! FP16: float32 weights and compute in half precision, the model's inputs and outputs kept as they were
//! (casts at the edges), so clients see no difference but the precision.

use std::collections::HashMap;

use super::QuantizeReport;
use super::tensors::{data_bytes, f32_values};
use crate::error::ModelError;
use crate::onnx::proto::{
    AttributeProto, ModelProto, NodeProto, TensorProto, attribute_proto::AttributeType, tensor_proto::DataType,
    type_proto,
};

const FLOAT: i32 = DataType::Float as i32;
const FLOAT16: i32 = DataType::Float16 as i32;

/// Converts every float32 initializer to float16, makes internal casts to float produce float16, and casts
/// float32 graph inputs down and float32 graph outputs back up.
pub fn convert_fp16(model: &mut ModelProto) -> Result<QuantizeReport, ModelError> {
    let Some(graph) = model.graph.as_mut() else {
        return Err(ModelError::Unsupported("the model has no graph".into()));
    };
    let mut report = QuantizeReport::default();
    for t in graph.initializer.iter_mut().filter(|t| t.data_type == Some(FLOAT)) {
        report.bytes_before += data_bytes(t);
        *t = to_fp16(t)?;
        report.bytes_after += data_bytes(t);
        report.matmuls += 1;
    }
    for node in &mut graph.node {
        for a in node.attribute.iter_mut() {
            if node.op_type.as_deref() == Some("Cast") && a.name() == "to" && a.i == Some(i64::from(FLOAT)) {
                a.i = Some(i64::from(FLOAT16));
            }
            if let Some(t) = a.t.as_mut().filter(|t| t.data_type == Some(FLOAT)) {
                *t = to_fp16(t)?;
            }
        }
    }
    let is_float = |v: &crate::onnx::proto::ValueInfoProto| matches!(v.r#type.as_ref().and_then(|t| t.value.as_ref()), Some(type_proto::Value::TensorType(t)) if t.elem_type == Some(FLOAT));
    let initializers: Vec<String> = graph.initializer.iter().map(|t| t.name().to_string()).collect();
    let mut renames: HashMap<String, String> = HashMap::new();
    let mut edge_casts = Vec::new();
    for input in graph.input.iter().filter(|v| is_float(v) && !initializers.contains(&v.name().to_string())) {
        let half = format!("{}_fp16", input.name());
        edge_casts.push(cast(input.name(), &half, FLOAT16));
        renames.insert(input.name().to_string(), half);
    }
    for node in &mut graph.node {
        for i in node.input.iter_mut() {
            if let Some(r) = renames.get(i) {
                *i = r.clone();
            }
        }
    }
    for output in graph.output.iter().filter(|v| is_float(v)) {
        let half = format!("{}_fp16", output.name());
        for node in &mut graph.node {
            for o in node.output.iter_mut().filter(|o| o.as_str() == output.name()) {
                *o = half.clone();
            }
        }
        graph.node.push(cast(&half, output.name(), FLOAT));
    }
    edge_casts.append(&mut graph.node);
    graph.node = edge_casts;
    graph.value_info.clear();
    Ok(report)
}

fn to_fp16(t: &TensorProto) -> Result<TensorProto, ModelError> {
    let raw = f32_values(t)?.into_iter().flat_map(|x| half::f16::from_f32(x).to_le_bytes()).collect();
    Ok(TensorProto {
        name: t.name.clone(),
        dims: t.dims.clone(),
        data_type: Some(FLOAT16),
        raw_data: Some(raw),
        ..Default::default()
    })
}

fn cast(input: &str, output: &str, to: i32) -> NodeProto {
    NodeProto {
        op_type: Some("Cast".into()),
        name: Some(format!("Cast_{output}")),
        input: vec![input.into()],
        output: vec![output.into()],
        attribute: vec![AttributeProto {
            name: Some("to".into()),
            i: Some(i64::from(to)),
            r#type: Some(AttributeType::Int as i32),
            ..Default::default()
        }],
        ..Default::default()
    }
}
