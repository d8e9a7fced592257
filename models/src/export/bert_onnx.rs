//! BERT-family encoder (Hugging Face `BertModel` safetensors) to an ONNX graph with the names Optimum's
//! `feature-extraction` export uses: inputs `input_ids`, `attention_mask`, `token_type_ids` (int64, batch ×
//! sequence, both dynamic), output `last_hidden_state` (float32, batch × sequence × hidden).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{Config, HiddenAct};
use prost::Message;

use super::graph::{Graph, float, int, ints, value_info};
use crate::checkpoint::read_json;
use crate::error::ModelError;
use crate::onnx::proto::{GraphProto, ModelProto, OperatorSetIdProto, tensor_proto};

/// The ONNX opset the exported graphs use (LayerNormalization needs 17).
pub const ONNX_OPSET: i64 = 17;

/// Reads `checkpoint_dir` (config.json + model.safetensors) and writes an ONNX model to `output`. Calls
/// `progress(done, total)` once per encoder layer.
pub fn export_bert_onnx(
    checkpoint_dir: &Path,
    output: &Path,
    mut progress: impl FnMut(usize, usize),
) -> Result<(), ModelError> {
    let config: Config = read_json(&checkpoint_dir.join("config.json"))?;
    if !matches!(config.hidden_act, HiddenAct::Gelu) {
        return Err(ModelError::Unsupported(format!("hidden_act {:?}: only \"gelu\" is exported", config.hidden_act)));
    }
    let weights_path = checkpoint_dir.join("model.safetensors");
    let weights = Weights::load(&weights_path)?;
    let mut g = Graph::default();
    let (hidden, heads) = (config.hidden_size as i64, config.num_attention_heads as i64);
    let eps = config.layer_norm_eps as f32;

    // Constants.
    let zero = g.i64("const_zero", &[], &[0]);
    let one = g.i64("const_one", &[], &[1]);
    let one_f = g.f32("const_one_f", &[], &[1.0]);
    let neg = g.f32("const_mask_value", &[], &[-10_000.0]);
    let axes_12 = g.i64("const_axes_1_2", &[2], &[1, 2]);
    let split_heads = g.i64("const_split_heads", &[4], &[0, 0, heads, hidden / heads]);
    let merge_heads = g.i64("const_merge_heads", &[3], &[0, 0, hidden]);
    let scale = g.f32("const_scale", &[], &[1.0 / ((hidden / heads) as f32).sqrt()]);
    let half = g.f32("const_half", &[], &[0.5]);
    let inv_sqrt2 = g.f32("const_inv_sqrt2", &[], &[std::f32::consts::FRAC_1_SQRT_2]);

    // Embeddings: words + token types + positions, then LayerNorm.
    let e = "embeddings";
    let word_table = weights.param(&mut g, &format!("{e}.word_embeddings.weight"), false)?;
    let type_table = weights.param(&mut g, &format!("{e}.token_type_embeddings.weight"), false)?;
    let pos_table = weights.param(&mut g, &format!("{e}.position_embeddings.weight"), false)?;
    let words = g.op("Gather", &[&word_table, "input_ids"], vec![]);
    let types = g.op("Gather", &[&type_table, "token_type_ids"], vec![]);
    let shape = g.op("Shape", &["input_ids"], vec![]);
    let seq_len = g.op("Gather", &[&shape, &one], vec![int("axis", 0)]);
    let positions = g.op("Range", &[&zero, &seq_len, &one], vec![]);
    let pos = g.op("Gather", &[&pos_table, &positions], vec![]);
    let sum = g.op("Add", &[&words, &types], vec![]);
    let sum = g.op("Add", &[&sum, &pos], vec![]);
    let mut x = layer_norm(&mut g, &weights, &format!("{e}.LayerNorm"), &sum, eps)?;

    // Additive attention mask: (1 - mask) * -10000, shaped batch × 1 × 1 × sequence.
    let mask = g.op("Cast", &["attention_mask"], vec![int("to", tensor_proto::DataType::Float as i64)]);
    let mask = g.op("Unsqueeze", &[&mask, &axes_12], vec![]);
    let inverted = g.op("Sub", &[&one_f, &mask], vec![]);
    let additive = g.op("Mul", &[&inverted, &neg], vec![]);

    for layer in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{layer}");
        let heads_of = |g: &mut Graph, name: &str, perm: &[i64]| -> Result<String, ModelError> {
            let y = linear(g, &weights, &format!("{p}.attention.self.{name}"), &x)?;
            let y = g.op("Reshape", &[&y, &split_heads], vec![]);
            Ok(g.op("Transpose", &[&y], vec![ints("perm", perm)]))
        };
        let q = heads_of(&mut g, "query", &[0, 2, 1, 3])?;
        let k = heads_of(&mut g, "key", &[0, 2, 3, 1])?;
        let v = heads_of(&mut g, "value", &[0, 2, 1, 3])?;
        let scores = g.op("MatMul", &[&q, &k], vec![]);
        let scores = g.op("Mul", &[&scores, &scale], vec![]);
        let scores = g.op("Add", &[&scores, &additive], vec![]);
        let probs = g.op("Softmax", &[&scores], vec![int("axis", -1)]);
        let context = g.op("MatMul", &[&probs, &v], vec![]);
        let context = g.op("Transpose", &[&context], vec![ints("perm", &[0, 2, 1, 3])]);
        let context = g.op("Reshape", &[&context, &merge_heads], vec![]);
        let attended = linear(&mut g, &weights, &format!("{p}.attention.output.dense"), &context)?;
        let residual = g.op("Add", &[&attended, &x], vec![]);
        let x1 = layer_norm(&mut g, &weights, &format!("{p}.attention.output.LayerNorm"), &residual, eps)?;

        // GELU (erf form): 0.5 · y · (1 + erf(y / √2)).
        let y = linear(&mut g, &weights, &format!("{p}.intermediate.dense"), &x1)?;
        let scaled = g.op("Mul", &[&y, &inv_sqrt2], vec![]);
        let erf = g.op("Erf", &[&scaled], vec![]);
        let erf1 = g.op("Add", &[&erf, &one_f], vec![]);
        let gated = g.op("Mul", &[&y, &erf1], vec![]);
        let gelu = g.op("Mul", &[&gated, &half], vec![]);
        let out = linear(&mut g, &weights, &format!("{p}.output.dense"), &gelu)?;
        let residual = g.op("Add", &[&out, &x1], vec![]);
        x = layer_norm(&mut g, &weights, &format!("{p}.output.LayerNorm"), &residual, eps)?;
        progress(layer + 1, config.num_hidden_layers);
    }
    g.op_into("Identity", &[&x], "last_hidden_state", vec![]);

    let int64 = tensor_proto::DataType::Int64 as i32;
    let graph = GraphProto {
        name: Some("bert".into()),
        node: g.nodes,
        initializer: g.initializers,
        input: ["input_ids", "attention_mask", "token_type_ids"]
            .iter()
            .map(|n| value_info(n, int64, &["batch_size", "sequence_length"]))
            .collect(),
        output: vec![value_info(
            "last_hidden_state",
            tensor_proto::DataType::Float as i32,
            &["batch_size", "sequence_length", &hidden.to_string()],
        )],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(ONNX_OPSET) }],
        producer_name: Some("ferroserve".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(graph),
        ..Default::default()
    };
    std::fs::write(output, model.encode_to_vec()).map_err(|e| ModelError::Io { path: output.to_path_buf(), source: e })
}

/// The checkpoint's tensors, under an optional `bert.` prefix.
struct Weights {
    tensors: HashMap<String, Tensor>,
    prefix: &'static str,
    path: std::path::PathBuf,
}

impl Weights {
    fn load(path: &Path) -> Result<Self, ModelError> {
        if !path.exists() {
            return Err(ModelError::Io { path: path.to_path_buf(), source: std::io::ErrorKind::NotFound.into() });
        }
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)?;
        let prefix = if tensors.contains_key("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        Ok(Weights { tensors, prefix, path: path.to_path_buf() })
    }

    /// Adds tensor `name` as a float32 initializer, transposed when `transpose` (Linear weights are stored
    /// out × in; MatMul wants in × out). Returns the initializer's name.
    fn param(&self, g: &mut Graph, name: &str, transpose: bool) -> Result<String, ModelError> {
        let full = format!("{}{name}", self.prefix);
        let Some(t) = self.tensors.get(&full) else {
            return Err(ModelError::config(&self.path, format!("tensor {full:?} is missing: not a BERT checkpoint?")));
        };
        let t = t.to_dtype(DType::F32)?;
        let t = if transpose { t.t()?.contiguous()? } else { t };
        let dims: Vec<i64> = t.dims().iter().map(|&d| d as i64).collect();
        let data = t.flatten_all()?.to_vec1::<f32>()?;
        Ok(g.f32(name, &dims, &data))
    }
}

fn linear(g: &mut Graph, w: &Weights, prefix: &str, x: &str) -> Result<String, ModelError> {
    let weight = w.param(g, &format!("{prefix}.weight"), true)?;
    let bias = w.param(g, &format!("{prefix}.bias"), false)?;
    let y = g.op("MatMul", &[x, &weight], vec![]);
    Ok(g.op("Add", &[&y, &bias], vec![]))
}

fn layer_norm(g: &mut Graph, w: &Weights, prefix: &str, x: &str, eps: f32) -> Result<String, ModelError> {
    let scale = w.param(g, &format!("{prefix}.weight"), false)?;
    let bias = w.param(g, &format!("{prefix}.bias"), false)?;
    Ok(g.op("LayerNormalization", &[x, &scale, &bias], vec![int("axis", -1), float("epsilon", eps)]))
}
