//! Reading float initializers out of ONNX tensors.

use crate::error::ModelError;
use crate::onnx::proto::{TensorProto, tensor_proto::DataType};

/// The values of a float32 tensor (from `float_data` or little-endian `raw_data`).
pub(super) fn f32_values(t: &TensorProto) -> Result<Vec<f32>, ModelError> {
    if t.data_type != Some(DataType::Float as i32) {
        return Err(ModelError::Unsupported(format!("tensor {:?} is not float32", t.name())));
    }
    if !t.float_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    if t.data_location == Some(1) {
        return Err(ModelError::Unsupported(format!("tensor {:?} is stored outside the model file", t.name())));
    }
    let raw = t.raw_data.as_deref().unwrap_or_default();
    Ok(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// Bytes a tensor's data takes in the file.
pub(super) fn data_bytes(t: &TensorProto) -> usize {
    t.raw_data.as_ref().map_or(0, Vec::len) + t.float_data.len() * 4 + t.int64_data.len() * 8 + t.int32_data.len() * 4
}
