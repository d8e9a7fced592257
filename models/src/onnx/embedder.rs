//! Encoders exported to ONNX (Hugging Face Optimum's `feature-extraction` layout): inputs `input_ids`,
//! `attention_mask` and optionally `token_type_ids` (int64, batch × sequence); output `last_hidden_state`
//! (pooled here) or a ready `sentence_embedding`.

use std::path::Path;

use candle_core::{Device, Tensor};

use super::session::OnnxModel;
use super::tensor::{NamedTensor, TensorData};
use crate::embedder::{CPU_PASS_COST_TOKENS, Embedder, Padded, embed_by_length, pad_batch};
use crate::error::ModelError;
use crate::pooling::Pooling;

pub struct OnnxEmbedder {
    model: OnnxModel,
    pooling: Pooling,
    pad_id: u32,
    token_types: bool,
    /// `sentence_embedding` when the model pools itself, else `last_hidden_state`.
    output: &'static str,
}

impl OnnxEmbedder {
    /// Loads the export at `path` (threads and nice as [`OnnxModel::load`] takes them).
    pub fn load(path: &Path, pooling: Pooling, pad_id: u32, threads: usize, nice: i32) -> Result<Self, ModelError> {
        let model = OnnxModel::load(path, threads, nice)?;
        let has_input = |n: &str| model.inputs().iter().any(|s| s.name == n);
        for required in ["input_ids", "attention_mask"] {
            if !has_input(required) {
                let names: Vec<&str> = model.inputs().iter().map(|s| s.name.as_str()).collect();
                return Err(ModelError::Unsupported(format!(
                    "{}: an embedding model needs input {required:?}; it has {names:?}",
                    path.display()
                )));
            }
        }
        let has_output = |n: &str| model.outputs().iter().any(|s| s.name == n);
        let output = if has_output("last_hidden_state") {
            "last_hidden_state"
        } else if has_output("sentence_embedding") {
            "sentence_embedding"
        } else {
            let names: Vec<&str> = model.outputs().iter().map(|s| s.name.as_str()).collect();
            return Err(ModelError::Unsupported(format!(
                "{}: expected output \"last_hidden_state\" or \"sentence_embedding\"; it has {names:?}",
                path.display()
            )));
        };
        let token_types = has_input("token_type_ids");
        Ok(OnnxEmbedder { model, pooling, pad_id, token_types, output })
    }
}

impl Embedder for OnnxEmbedder {
    fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        embed_by_length(batch, CPU_PASS_COST_TOKENS, |group| self.embed_padded(group))
    }
}

impl OnnxEmbedder {
    /// One pass over `batch` padded to its longest sequence.
    fn embed_padded(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let Padded { ids, mask, longest } = pad_batch::<i64>(batch, self.pad_id);
        let shape = vec![batch.len() as i64, longest as i64];
        let mut inputs = vec![
            NamedTensor { name: "input_ids".into(), shape: shape.clone(), data: TensorData::I64(ids) },
            NamedTensor { name: "attention_mask".into(), shape: shape.clone(), data: TensorData::I64(mask.clone()) },
        ];
        if self.token_types {
            let zeros = vec![0i64; batch.len() * longest];
            inputs.push(NamedTensor { name: "token_type_ids".into(), shape, data: TensorData::I64(zeros) });
        }
        let outputs = self.model.run(inputs)?;
        let Some(out) = outputs.into_iter().find(|t| t.name == self.output) else {
            return Err(ModelError::Backend(format!("the model returned no {:?}", self.output)));
        };
        let TensorData::F32(values) = out.data else {
            return Err(ModelError::Unsupported(format!("output {:?} must be float32", self.output)));
        };
        let dims: Vec<usize> = out.shape.iter().map(|&d| d.max(0) as usize).collect();
        if self.output == "sentence_embedding" {
            let width = dims.last().copied().unwrap_or(0).max(1);
            return Ok(values.chunks(width).map(<[f32]>::to_vec).collect());
        }
        let hidden = Tensor::from_vec(values, dims.as_slice(), &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, (batch.len(), longest), &Device::Cpu)?;
        Ok(self.pooling.apply(&hidden, &mask)?.to_vec2::<f32>()?)
    }
}
