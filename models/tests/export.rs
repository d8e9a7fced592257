//! Variants of the real MiniLM checkpoint against Candle F32 over the 1,000 sentences of
//! tests/data/sentences.txt: the ONNX export (min cosine >= 0.99999), its FP16 conversion (>= 0.999), its
//! INT8 dynamic quantizations, static INT8 calibrated on the first 200 sentences, 4-bit MatMulNBits; and
//! Candle with Q8_0 linear layers.
//! Per channel, dynamic or static, meets mean >= 0.99, min >= 0.97 (measured: dynamic 0.9940 / 0.984, static
//! 0.9938 / 0.985), also with the word-embedding table stored as int8 rows. Per tensor does not on MiniLM (one scale per weight matrix is too coarse: measured mean
//! 0.965, min 0.921), nor does 4-bit (mean 0.964, min 0.919), so they are held to a regression floor and
//! documented as the less accurate choices. Also reports top-10 neighbour overlap with the F32 neighbours.

use std::path::{Path, PathBuf};

use ferroserve_models::config::ModelConfig;
use ferroserve_models::export::export_bert_onnx;
use ferroserve_models::onnx::OnnxEmbedder;
use ferroserve_models::onnx::proto::ModelProto;
use ferroserve_models::pooling::l2_normalize;
use ferroserve_models::quantize::{
    Granularity, Int4Options, activation_ranges, convert_fp16, quantize_embedding_tables, quantize_int4, quantize_int8,
    quantize_int8_static, text_feeds,
};
use ferroserve_models::{DeviceSpec, Embedder, EmbedderInfo, Pooling, load_embedder};
use prost::Message;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Normalized vectors of every sequence, 32 at a time.
fn embed_all(model: &mut dyn Embedder, ids: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(32) {
        let seqs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        out.extend(model.embed(&seqs).unwrap().into_iter().map(|mut v| {
            l2_normalize(&mut v);
            v
        }));
    }
    out
}

/// Indices of the 10 nearest other sentences.
fn top10(vectors: &[Vec<f32>], i: usize) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> =
        vectors.iter().enumerate().filter(|&(j, _)| j != i).map(|(j, v)| (dot(&vectors[i], v), j)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(10).map(|(_, j)| j).collect()
}

struct Agreement {
    min: f32,
    mean: f32,
    top10_overlap: f32,
}

fn agreement(reference: &[Vec<f32>], other: &[Vec<f32>]) -> Agreement {
    let cosines: Vec<f32> = reference.iter().zip(other).map(|(a, b)| dot(a, b)).collect();
    let overlap: usize = (0..reference.len())
        .map(|i| {
            let (a, b) = (top10(reference, i), top10(other, i));
            a.iter().filter(|j| b.contains(j)).count()
        })
        .sum();
    Agreement {
        min: cosines.iter().copied().fold(1.0, f32::min),
        mean: cosines.iter().sum::<f32>() / cosines.len() as f32,
        top10_overlap: overlap as f32 / (10 * reference.len()) as f32,
    }
}

fn quantized(fp32: &Path, granularity: Granularity, out: &Path) {
    let mut model = ModelProto::decode(std::fs::read(fp32).unwrap().as_slice()).unwrap();
    let report = quantize_int8(&mut model, granularity, |_, _| {}).unwrap();
    assert_eq!(report.matmuls, 36, "6 layers x (Q, K, V, attention output, intermediate, output)");
    assert!(report.bytes_after * 3 < report.bytes_before, "{report:?}");
    std::fs::write(out, model.encode_to_vec()).unwrap();
}

#[test]
fn onnx_and_int8_variants_agree_with_candle_f32() {
    let config = ModelConfig::from_file(&repo_root().join("deploy/model-repository/all-MiniLM-L6-v2.toml")).unwrap();
    let dir = std::env::temp_dir().join(format!("ferroserve-variants-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fp32 = dir.join("fp32.onnx");
    let mut layers = Vec::new();
    export_bert_onnx(&config.path, &fp32, |done, total| layers.push((done, total))).unwrap();
    assert_eq!(layers.last(), Some(&(6, 6)), "progress reported per layer");
    quantized(&fp32, Granularity::PerTensor, &dir.join("int8.onnx"));
    let mut half = ModelProto::decode(std::fs::read(&fp32).unwrap().as_slice()).unwrap();
    let report = convert_fp16(&mut half).unwrap();
    assert_eq!(report.bytes_after * 2, report.bytes_before, "{report:?}");
    std::fs::write(dir.join("fp16.onnx"), half.encode_to_vec()).unwrap();
    quantized(&fp32, Granularity::PerChannel, &dir.join("int8-pc.onnx"));
    let text = std::fs::read_to_string(repo_root().join("tests/data/sentences.txt")).unwrap();
    let sentences: Vec<String> = text.lines().filter(|l| !l.is_empty()).map(String::from).collect();
    assert_eq!(sentences.len(), 1000);

    // Static INT8: the activation ranges of the 36 MatMuls (24 distinct activations: Q, K and V share one)
    // over 200 sentences.
    let mut calibrated = ModelProto::decode(std::fs::read(&fp32).unwrap().as_slice()).unwrap();
    let feeds = text_feeds(&calibrated, &config.path, &sentences[..200], 16).unwrap();
    let mut batches = 0;
    let ranges = activation_ranges(&calibrated, &feeds, 2, |done, _| batches = done).unwrap();
    assert_eq!((ranges.len(), batches), (24, 13), "{:?}", ranges.keys().collect::<Vec<_>>());
    assert!(ranges.values().all(|(low, high)| low < high), "{ranges:?}");
    let report = quantize_int8_static(&mut calibrated, Granularity::PerChannel, &ranges, |_, _| {}).unwrap();
    assert_eq!(report.matmuls, 36);
    let ops = |m: &ModelProto, op: &str| m.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type() == op).count();
    assert_eq!((ops(&calibrated, "QuantizeLinear"), ops(&calibrated, "DynamicQuantizeLinear")), (36, 0));
    std::fs::write(dir.join("int8-static.onnx"), calibrated.encode_to_vec()).unwrap();

    let mut int4 = ModelProto::decode(std::fs::read(&fp32).unwrap().as_slice()).unwrap();
    let report = quantize_int4(&mut int4, Int4Options::default(), |_, _| {}).unwrap();
    assert_eq!((report.matmuls, ops(&int4, "MatMulNBits"), ops(&int4, "MatMul")), (36, 36, 12), "{report:?}");
    assert!(report.bytes_after * 6 < report.bytes_before, "4 bits and a scale per 32 values: {report:?}");
    std::fs::write(dir.join("int4.onnx"), int4.encode_to_vec()).unwrap();

    // INT8 with the word-embedding table as int8 rows too (30,522 x 384: 47 MB of float down to 12 MB).
    let mut table = ModelProto::decode(std::fs::read(dir.join("int8-pc.onnx")).unwrap().as_slice()).unwrap();
    let mut report = ferroserve_models::quantize::QuantizeReport::default();
    quantize_embedding_tables(&mut table, &mut report).unwrap();
    assert_eq!((report.matmuls, report.bytes_before), (1, 30522 * 384 * 4), "only the word embeddings: {report:?}");
    assert_eq!(report.bytes_after, 30522 * 384 + 30522 * 4);
    std::fs::write(dir.join("int8-table.onnx"), table.encode_to_vec()).unwrap();

    let info = EmbedderInfo::load(&config).unwrap();
    let ids = info.tokenizer.encode(&sentences, true).unwrap().unwrap();
    let reference = embed_all(load_embedder(&config, &info, &DeviceSpec::Cpu, 2, 0).unwrap().as_mut(), &ids);

    let mut report = String::new();
    let mut failures = Vec::new();
    let mut q8 = config.clone();
    q8.dtype = ferroserve_models::DType::Q8_0;
    for (file, min_bound, mean_bound) in [
        ("fp32.onnx", 0.99999, 0.99999),
        ("fp16.onnx", 0.999, 0.999),
        ("int8-pc.onnx", 0.97, 0.99),
        ("int8-table.onnx", 0.97, 0.99),
        ("int8.onnx", 0.90, 0.95),
        ("int8-static.onnx", 0.97, 0.99),
        ("int4.onnx", 0.90, 0.95),
        ("candle-q8_0", 0.99, 0.999),
    ] {
        let mut model: Box<dyn Embedder> = match file {
            "candle-q8_0" => load_embedder(&q8, &info, &DeviceSpec::Cpu, 2, 0).unwrap(),
            _ => Box::new(OnnxEmbedder::load(&dir.join(file), Pooling::Mean, 0, 2, 0).unwrap()),
        };
        let a = agreement(&reference, &embed_all(model.as_mut(), &ids));
        report +=
            &format!("{file}: min cosine {:.6}, mean {:.6}, top-10 overlap {:.3}\n", a.min, a.mean, a.top10_overlap);
        if a.min < min_bound || a.mean < mean_bound {
            failures.push(file);
        }
    }
    eprintln!("agreement with Candle F32 over 1000 sentences:\n{report}");
    assert!(failures.is_empty(), "below bounds: {failures:?}\n{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}
