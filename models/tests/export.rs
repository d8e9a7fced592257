//! `export_bert_onnx` on the real MiniLM checkpoint: the ONNX graph run by ONNX Runtime must agree with
//! Candle F32 on every sentence of tests/data/sentences.txt (cosine >= 0.99999).

use std::path::PathBuf;

use ferroserve_models::config::ModelConfig;
use ferroserve_models::export::export_bert_onnx;
use ferroserve_models::onnx::OnnxEmbedder;
use ferroserve_models::{DeviceSpec, Embedder, EmbedderInfo, Pooling, load_embedder};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
}

#[test]
fn exported_minilm_agrees_with_candle_on_1000_sentences() {
    let config = ModelConfig::from_file(&repo_root().join("deploy/model-repository/all-MiniLM-L6-v2.toml")).unwrap();
    let out = std::env::temp_dir().join(format!("ferroserve-minilm-{}.onnx", std::process::id()));
    let mut layers = Vec::new();
    export_bert_onnx(&config.path, &out, |done, total| layers.push((done, total))).unwrap();
    assert_eq!(layers.last(), Some(&(6, 6)), "progress reported per layer");

    let info = EmbedderInfo::load(&config).unwrap();
    let mut candle = load_embedder(&config, &info, &DeviceSpec::Cpu, 2).unwrap();
    let mut onnx = OnnxEmbedder::load(&out, Pooling::Mean, 0, 2).unwrap();
    let text = std::fs::read_to_string(repo_root().join("tests/data/sentences.txt")).unwrap();
    let sentences: Vec<String> = text.lines().filter(|l| !l.is_empty()).map(String::from).collect();
    assert_eq!(sentences.len(), 1000);
    let ids = info.tokenizer.encode(&sentences, true).unwrap().unwrap();
    let mut worst = 1.0f32;
    for chunk in ids.chunks(32) {
        let seqs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        let (a, b) = (candle.embed(&seqs).unwrap(), onnx.embed(&seqs).unwrap());
        for (x, y) in a.iter().zip(&b) {
            worst = worst.min(cosine(x, y));
        }
    }
    std::fs::remove_file(&out).unwrap();
    assert!(worst >= 0.99999, "min cosine ONNX export vs Candle F32: {worst}");
    eprintln!("min cosine ONNX export vs Candle F32 over 1000 sentences: {worst}");
}
