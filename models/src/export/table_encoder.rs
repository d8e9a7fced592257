//! The smallest encoder in Optimum's `feature-extraction` layout: `last_hidden_state` is each token's row of a
//! table, zeroed where `attention_mask` is 0. Its pooled vectors can be computed by hand (the mean or first of
//! the rows), which makes it the model tests and benchmark checks generate instead of downloading one.

use super::graph::{Graph, int, value_info};
use crate::onnx::proto::{GraphProto, ModelProto, OperatorSetIdProto, tensor_proto::DataType};

/// The encoder of a row-major `vocab` × `hidden` table (`table.len() == vocab * hidden`).
pub fn table_encoder(table: &[f32], vocab: usize, hidden: usize) -> ModelProto {
    let mut g = Graph::default();
    let table = g.f32("table", &[vocab as i64, hidden as i64], table);
    let axes = g.i64("axes", &[1], &[2]);
    let embedded = g.op("Gather", &[&table, "input_ids"], vec![]);
    let mask = g.op("Cast", &["attention_mask"], vec![int("to", DataType::Float as i64)]);
    let mask = g.op("Unsqueeze", &[&mask, &axes], vec![]);
    g.op_into("Mul", &[&embedded, &mask], "last_hidden_state", vec![]);
    let (float, int64) = (DataType::Float as i32, DataType::Int64 as i32);
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        producer_name: Some("ferroserve".into()),
        graph: Some(GraphProto {
            name: Some("table-encoder".into()),
            node: g.nodes,
            initializer: g.initializers,
            input: vec![
                value_info("input_ids", int64, &["batch", "sequence"]),
                value_info("attention_mask", int64, &["batch", "sequence"]),
            ],
            output: vec![value_info("last_hidden_state", float, &["batch", "sequence", "hidden"])],
            ..Default::default()
        }),
        ..Default::default()
    }
}
