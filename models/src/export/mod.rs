//! Exporters: checkpoints written out in other formats (ONNX today), so variants need no Python.

mod bert_onnx;
mod graph;

pub use bert_onnx::{ONNX_OPSET, export_bert_onnx};
