//! INT8 embedding tables: a constant 2-D float table that only `Gather` nodes read along its rows (a word
//! embedding: MiniLM's is 30,522 × 384, 47 MB in float) is stored as one int8 row per token with a float scale
//! per row, symmetric around zero, and each lookup becomes
//!
//! ```text
//! Gather(Tq, ids) -> rows (int8) ; Cast -> float ; Mul by Gather(scales, ids) -> Y
//! ```
//!
//! The scales are a `[rows, 1]` table, so the gathered scale broadcasts over its row without a reshape. Only
//! the looked-up rows are ever turned back into floats, so the table takes a quarter of the memory at run time
//! too. Small tables (positions, token types: under [`MIN_ROWS`] rows) stay in float: they save little.

use std::collections::HashMap;

use super::QuantizeReport;
use super::int8::{cast_to_float, op, tensor};
use super::tensors::{data_bytes, f32_values};
use crate::error::ModelError;
use crate::onnx::proto::{ModelProto, TensorProto, tensor_proto::DataType};

/// Tables with fewer rows stay in float.
pub const MIN_ROWS: i64 = 1024;

/// Rewrites every lookup into a large constant float table; adds what it stored to `report`.
pub fn quantize_embedding_tables(model: &mut ModelProto, report: &mut QuantizeReport) -> Result<(), ModelError> {
    let Some(graph) = model.graph.as_mut() else { return Ok(()) };
    let by_name: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name(), t)).collect();
    let is_row_lookup = |n: &crate::onnx::proto::NodeProto| {
        n.op_type() == "Gather" && n.attribute.iter().all(|a| a.name() != "axis" || a.i() == 0)
    };
    // Tables that only row lookups read.
    let mut tables: Vec<String> = by_name
        .iter()
        .filter(|(_, t)| t.dims.len() == 2 && t.dims[0] >= MIN_ROWS && t.data_type == Some(DataType::Float as i32))
        .map(|(name, _)| name.to_string())
        .filter(|name| {
            let readers: Vec<_> = graph.node.iter().filter(|n| n.input.iter().any(|i| i == name)).collect();
            !readers.is_empty()
                && readers.iter().all(|n| is_row_lookup(n) && n.input[0] == *name && n.input[1] != *name)
        })
        .collect();
    tables.sort();
    for name in &tables {
        let Some(position) = graph.initializer.iter().position(|t| t.name() == name) else { continue };
        let table = graph.initializer.remove(position);
        let (rows, width) = (table.dims[0] as usize, table.dims[1] as usize);
        let values = f32_values(&table)?;
        let (codes, scales) = quantize_rows(&values, width);
        report.bytes_before += data_bytes(&table);
        report.bytes_after += codes.len() + scales.len() * 4;
        report.matmuls += 1;
        let (tq, ts) = (format!("{name}_int8"), format!("{name}_row_scale"));
        graph.initializer.push(tensor(&tq, vec![rows as i64, width as i64], DataType::Int8, codes));
        let scale_bytes = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
        graph.initializer.push(tensor(&ts, vec![rows as i64, 1], DataType::Float, scale_bytes));
        let mut nodes = Vec::with_capacity(graph.node.len() + 3);
        for (i, node) in std::mem::take(&mut graph.node).into_iter().enumerate() {
            if node.input.first() != Some(name) {
                nodes.push(node);
                continue;
            }
            let ids = node.input[1].as_str();
            let y = node.output.first().cloned().unwrap_or_default();
            let t = |s: &str| format!("{name}_{i}_{s}");
            nodes.push(op("Gather", &[&tq, ids], &[&t("codes")], vec![]));
            nodes.push(cast_to_float(&t("codes"), &t("float")));
            nodes.push(op("Gather", &[&ts, ids], &[&t("scale")], vec![]));
            nodes.push(op("Mul", &[&t("float"), &t("scale")], &[&y], vec![]));
        }
        graph.node = nodes;
    }
    if !tables.is_empty() {
        graph.value_info.clear();
    }
    Ok(())
}

/// Each row as int8 codes with its own scale (largest magnitude / 127; an all-zero row gets scale 1).
fn quantize_rows(values: &[f32], width: usize) -> (Vec<u8>, Vec<f32>) {
    let mut codes = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len() / width.max(1));
    for row in values.chunks(width.max(1)) {
        let largest = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
        codes.extend(row.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8 as u8));
        scales.push(scale);
    }
    (codes, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_within_half_a_step_of_their_own_scale() {
        let values = [0.5, -1.0, 0.25, 0.0, 0.0, 0.0, 100.0, 3.0, -7.0];
        let (codes, scales) = quantize_rows(&values, 3);
        assert_eq!(scales.len(), 3);
        assert_eq!(scales[1], 1.0, "an all-zero row");
        for (r, row) in values.chunks(3).enumerate() {
            for (c, v) in row.iter().enumerate() {
                let back = (codes[r * 3 + c] as i8) as f32 * scales[r];
                assert!((back - v).abs() <= scales[r] / 2.0 + 1e-6, "row {r}: {v} came back as {back}");
            }
        }
        assert_eq!(codes[1] as i8, -127, "the largest magnitude maps to ±127");
    }
}
