//! BERT-family encoders on Candle, read from a Hugging Face checkpoint (config.json + safetensors).

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

use crate::config::{DType, DeviceSpec, ModelConfig};
use crate::embedder::{Embedder, read_json};
use crate::error::ModelError;
use crate::pooling::Pooling;

/// A BERT encoder with its pooling, owned by one lane.
pub struct CandleBert {
    model: BertModel,
    pooling: Pooling,
    pad_id: u32,
    device: Device,
}

impl CandleBert {
    /// Loads the checkpoint named by `config` onto `device`.
    pub fn load(config: &ModelConfig, pooling: Pooling, device: &DeviceSpec) -> Result<Self, ModelError> {
        let bert_config: Config = read_json(&config.path.join("config.json"))?;
        let device = candle_device(device)?;
        let dtype = match config.dtype {
            DType::F32 => candle_core::DType::F32,
        };
        let weights = config.weights_path();
        if !weights.exists() {
            return Err(ModelError::io(&weights, std::io::ErrorKind::NotFound.into()));
        }
        // SAFETY: the weight file is memory-mapped read-only; ferroserve never writes model files while
        // serving them, and the mapping lives as long as the tensors built from it.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], dtype, &device)? };
        let model = BertModel::load(vb, &bert_config)?;
        Ok(Self::from_model(model, pooling, bert_config.pad_token_id as u32))
    }

    /// Wraps a model that is already built (tests build tiny random ones).
    pub fn from_model(model: BertModel, pooling: Pooling, pad_id: u32) -> Self {
        let device = model.device.clone();
        CandleBert { model, pooling, pad_id, device }
    }
}

fn candle_device(spec: &DeviceSpec) -> Result<Device, ModelError> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => {
            if candle_core::utils::cuda_is_available() {
                Ok(Device::new_cuda(*n)?)
            } else {
                Err(ModelError::Unsupported(format!("device cuda:{n} needs a binary built with the `cuda` feature")))
            }
        }
    }
}

impl Embedder for CandleBert {
    fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let longest = batch.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(batch.len() * longest);
        let mut mask = Vec::with_capacity(batch.len() * longest);
        for seq in batch {
            ids.extend_from_slice(seq);
            ids.extend(std::iter::repeat_n(self.pad_id, longest - seq.len()));
            mask.extend(std::iter::repeat_n(1u32, seq.len()));
            mask.extend(std::iter::repeat_n(0u32, longest - seq.len()));
        }
        let shape = (batch.len(), longest);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;
        Ok(self.pooling.apply(&hidden, &mask)?.to_vec2::<f32>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn tiny_bert() -> CandleBert {
        let config = Config {
            vocab_size: 50,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 32,
            ..Config::default()
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
        let model = BertModel::load(vb, &config).unwrap();
        CandleBert::from_model(model, Pooling::Mean, 0)
    }

    #[test]
    fn padding_does_not_change_a_sequence_vector() {
        let mut bert = tiny_bert();
        let short: &[u32] = &[1, 5, 7, 2];
        let long: &[u32] = &[1, 9, 8, 7, 6, 5, 4, 3, 2];
        let alone = bert.embed(&[short]).unwrap();
        let together = bert.embed(&[long, short]).unwrap();
        assert_eq!(together.len(), 2);
        assert_eq!(alone[0].len(), 16);
        for (a, b) in alone[0].iter().zip(&together[1]) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert!(bert.embed(&[]).unwrap().is_empty());
    }
}
