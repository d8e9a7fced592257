//! BERT-family encoders on Candle, read from a Hugging Face checkpoint (config.json + safetensors).
//!
//! The encoder layers are Candle's; the embeddings and the attention mask are ours: upstream builds the
//! mask from `f32::MIN`, which becomes −inf in F16/BF16 and turns padded rows into NaN (0 · −inf). A
//! finite −10000, as the original BERT used, gives the same F32 results and works in half precision.

use candle_core::{Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder, embedding, layer_norm};
use candle_transformers::models::bert::{BertEncoder, Config};

use crate::quantized_bert::QuantizedEncoder;

use crate::checkpoint::read_json;
use crate::config::{DType, DeviceSpec, ModelConfig};
use crate::embedder::{CPU_PASS_COST_TOKENS, Embedder, Padded, embed_by_length, pad_batch};
use crate::error::ModelError;
use crate::pooling::Pooling;

/// A BERT encoder with its pooling, owned by one lane.
pub struct CandleBert {
    embeddings: Embeddings,
    encoder: Encoder,
    dtype: candle_core::DType,
    pooling: Pooling,
    pad_id: u32,
    device: Device,
}

/// Candle's float encoder, or ours on Q8_0 weights.
enum Encoder {
    Float(BertEncoder),
    Quantized(QuantizedEncoder),
}

/// Word + position + token-type embeddings, then LayerNorm.
struct Embeddings {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, c: &Config) -> candle_core::Result<Self> {
        Ok(Embeddings {
            words: embedding(c.vocab_size, c.hidden_size, vb.pp("word_embeddings"))?,
            positions: embedding(c.max_position_embeddings, c.hidden_size, vb.pp("position_embeddings"))?,
            token_types: embedding(c.type_vocab_size, c.hidden_size, vb.pp("token_type_embeddings"))?,
            norm: layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, ids: &Tensor, token_types: &Tensor) -> candle_core::Result<Tensor> {
        let seq_len = ids.dim(1)?;
        let positions = Tensor::arange(0u32, seq_len as u32, ids.device())?;
        let x = (self.words.forward(ids)? + self.token_types.forward(token_types)?)?;
        self.norm.forward(&x.broadcast_add(&self.positions.forward(&positions)?)?)
    }
}

impl CandleBert {
    /// Loads the checkpoint named by `config` onto `device`.
    pub fn load(config: &ModelConfig, pooling: Pooling, device: &DeviceSpec) -> Result<Self, ModelError> {
        let bert_config: Config = read_json(&config.path.join("config.json"))?;
        let device = device.candle()?;
        let dtype = match config.dtype {
            DType::F32 => candle_core::DType::F32,
            DType::F16 => candle_core::DType::F16,
            DType::Bf16 => candle_core::DType::BF16,
            DType::Q8_0 => candle_core::DType::F32,
            DType::Q4_1 | DType::Stored => {
                return Err(ModelError::Unsupported("dtypes q4_1 and stored are for GGUF language models".into()));
            }
        };
        let weights = config.weights_path();
        if !weights.exists() {
            return Err(ModelError::io(&weights, std::io::ErrorKind::NotFound.into()));
        }
        // SAFETY: the weight file is memory-mapped read-only; ferroserve never writes model files while
        // serving them, and the mapping lives as long as the tensors built from it.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], dtype, &device)? };
        Ok(Self::from_var_builder(vb, &bert_config, pooling, config.dtype == DType::Q8_0)?)
    }

    /// Builds the model from weights (under an optional `bert.` prefix, as in BertModel checkpoints), with
    /// the encoder's linear layers on Q8_0 weights when `q8_0`.
    pub fn from_var_builder(
        vb: VarBuilder,
        config: &Config,
        pooling: Pooling,
        q8_0: bool,
    ) -> candle_core::Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        let encoder = if q8_0 {
            Encoder::Quantized(QuantizedEncoder::load(vb.pp("encoder"), config)?)
        } else {
            Encoder::Float(BertEncoder::load(vb.pp("encoder"), config)?)
        };
        Ok(CandleBert {
            embeddings: Embeddings::load(vb.pp("embeddings"), config)?,
            encoder,
            dtype: vb.dtype(),
            pooling,
            pad_id: config.pad_token_id as u32,
            device: vb.device().clone(),
        })
    }
}

impl Embedder for CandleBert {
    /// On a CPU, in passes grouped by length; a GPU's pass costs about the same for any padding that fits,
    /// so there the batch is one pass.
    fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        if self.device.is_cpu() {
            embed_by_length(batch, CPU_PASS_COST_TOKENS, |group| self.embed_padded(group))
        } else {
            self.embed_padded(batch)
        }
    }
}

impl CandleBert {
    /// One pass over `batch` padded to its longest sequence.
    fn embed_padded(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let Padded { ids, mask, longest } = pad_batch::<u32>(batch, self.pad_id);
        let shape = (batch.len(), longest);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.embeddings.forward(&ids, &token_types)?;
        // (1 − mask) · −10000, shaped batch × 1 × 1 × seq to broadcast over heads and query positions.
        let additive = ((mask.to_dtype(self.dtype)?.affine(-1.0, 1.0)? * -10_000.0)?).unsqueeze(1)?.unsqueeze(1)?;
        let hidden = match &self.encoder {
            Encoder::Float(e) => e.forward(&hidden, &additive)?,
            Encoder::Quantized(e) => e.forward(&hidden, &additive)?,
        };
        let pooled = self.pooling.apply(&hidden, &mask)?;
        Ok(pooled.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    /// One tiny random BERT, in each of `dtypes` (the same weights, converted).
    fn tiny_berts(dtypes: &[candle_core::DType]) -> Vec<CandleBert> {
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
        CandleBert::from_var_builder(vb, &config, Pooling::Mean, false).unwrap();
        let data = varmap.data().lock().unwrap();
        dtypes
            .iter()
            .map(|&dtype| {
                let tensors = data.iter().map(|(k, v)| (k.clone(), v.as_tensor().to_dtype(dtype).unwrap())).collect();
                let vb = VarBuilder::from_tensors(tensors, dtype, &Device::Cpu);
                CandleBert::from_var_builder(vb, &config, Pooling::Mean, false).unwrap()
            })
            .collect()
    }

    #[test]
    fn padding_does_not_change_a_sequence_vector() {
        let mut bert = tiny_berts(&[candle_core::DType::F32]).remove(0);
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

    #[test]
    fn half_precision_with_padding_has_no_nan_and_matches_f32() {
        let short: &[u32] = &[1, 5, 7, 2];
        let long: &[u32] = &[1, 9, 8, 7, 6, 5, 4, 3, 2];
        let dtypes = [candle_core::DType::F32, candle_core::DType::F16, candle_core::DType::BF16];
        let mut models = tiny_berts(&dtypes);
        let f32s = models[0].embed(&[long, short]).unwrap();
        for (model, dtype) in models.iter_mut().zip(dtypes).skip(1) {
            let halves = model.embed(&[long, short]).unwrap();
            for (h, f) in halves.iter().zip(&f32s) {
                assert!(h.iter().all(|x| x.is_finite()), "{dtype:?}: {h:?}");
                let dot: f32 = h.iter().zip(f).map(|(a, b)| a * b).sum();
                let norms = h.iter().map(|x| x * x).sum::<f32>().sqrt() * f.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!(dot / norms > 0.99, "{dtype:?} cosine {}", dot / norms);
            }
        }
    }
}
