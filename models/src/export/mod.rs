//! Exporters: checkpoints written out in other formats (ONNX today), so variants need no Python.

mod bert_onnx;
pub(crate) mod graph;
mod table_encoder;

pub use bert_onnx::{ONNX_OPSET, export_bert_onnx};
pub use graph::value_info;
pub use table_encoder::table_encoder;
