//! Calibration for static INT8: the range each quantizable MatMul's activation takes when the model runs on
//! representative inputs. The activations are made outputs of a copy of the graph, which ONNX Runtime runs
//! batch by batch; the ranges are the minimum and maximum seen.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use prost::Message;

use super::int8::{ActivationRanges, has_constant_weight};
use crate::checkpoint::Checkpoint;
use crate::embedder::{Padded, pad_batch};
use crate::error::ModelError;
use crate::onnx::proto::{ModelProto, TensorProto, TypeProto, ValueInfoProto, tensor_proto::DataType, type_proto};
use crate::onnx::{NamedTensor, OnnxModel, TensorData};
use crate::tokenizer::TextTokenizer;

/// The ranges of the activations of `model` over `feeds` (each one run's inputs), run with `threads`.
pub fn activation_ranges(
    model: &ModelProto,
    feeds: &[Vec<NamedTensor>],
    threads: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<ActivationRanges, ModelError> {
    let mut probe = model.clone();
    let graph = probe.graph.as_mut().ok_or_else(|| ModelError::Unsupported("the model has no graph".into()))?;
    let by_name: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name(), t)).collect();
    let mut seen = HashSet::new();
    let activations: Vec<String> = graph
        .node
        .iter()
        .filter(|n| has_constant_weight(n, &by_name))
        .map(|n| n.input[0].clone())
        .filter(|x| seen.insert(x.clone()))
        .collect();
    let declared: HashSet<String> = graph.output.iter().map(|o| o.name().to_string()).collect();
    for x in activations.iter().filter(|x| !declared.contains(*x)) {
        graph.output.push(ValueInfoProto {
            name: Some(x.clone()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(DataType::Float as i32),
                    shape: None,
                })),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let path = std::env::temp_dir().join(format!("ferroserve-calibration-{}.onnx", std::process::id()));
    std::fs::write(&path, probe.encode_to_vec()).map_err(|e| ModelError::io(&path, e))?;
    let session = OnnxModel::load(&path, threads, 0);
    let _ = std::fs::remove_file(&path);
    let mut session = session?;
    let mut ranges = ActivationRanges::new();
    for (done, feed) in feeds.iter().enumerate() {
        for out in session.run(feed.clone())? {
            if let (true, TensorData::F32(values)) = (activations.contains(&out.name), &out.data) {
                let range = ranges.entry(out.name.clone()).or_insert((f32::INFINITY, f32::NEG_INFINITY));
                for &v in values.iter().filter(|v| v.is_finite()) {
                    *range = (range.0.min(v), range.1.max(v));
                }
            }
        }
        progress(done + 1, feeds.len());
    }
    ranges.retain(|_, (low, high)| low <= high);
    Ok(ranges)
}

/// The inputs of a text encoder (`input_ids`, `attention_mask`, and `token_type_ids` when the graph has it)
/// for `texts`, `batch` texts per run, tokenized with the model folder's `tokenizer.json` and cut to the
/// checkpoint's length.
pub fn text_feeds(
    model: &ModelProto,
    folder: &Path,
    texts: &[String],
    batch: usize,
) -> Result<Vec<Vec<NamedTensor>>, ModelError> {
    let checkpoint = Checkpoint::read(folder)?;
    let limit = checkpoint.max_seq_length.unwrap_or(checkpoint.max_position_embeddings);
    let tokenizer = TextTokenizer::from_file(&folder.join("tokenizer.json"), limit)?;
    // Truncating: every text fits.
    let ids = tokenizer.encode(texts, true)?.unwrap_or_default();
    let token_types = model.graph.as_ref().is_some_and(|g| g.input.iter().any(|i| i.name() == "token_type_ids"));
    Ok(ids
        .chunks(batch.max(1))
        .map(|chunk| {
            let seqs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
            let Padded { ids, mask, longest } = pad_batch::<i64>(&seqs, checkpoint.pad_token_id);
            let shape = vec![seqs.len() as i64, longest as i64];
            let mut feed = vec![
                NamedTensor { name: "input_ids".into(), shape: shape.clone(), data: TensorData::I64(ids) },
                NamedTensor { name: "attention_mask".into(), shape: shape.clone(), data: TensorData::I64(mask) },
            ];
            if token_types {
                let zeros = vec![0i64; seqs.len() * longest];
                feed.push(NamedTensor { name: "token_type_ids".into(), shape, data: TensorData::I64(zeros) });
            }
            feed
        })
        .collect())
}
