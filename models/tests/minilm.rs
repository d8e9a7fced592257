//! Model tests with the real all-MiniLM-L6-v2 checkpoint (fetched by `deploy/fetch-assets.sh`, which
//! `make test` runs first): our vectors must match sentence-transformers' reference vectors.

use std::path::PathBuf;

use ferroserve_models::config::ModelConfig;
use ferroserve_models::pooling::l2_normalize;
use ferroserve_models::{DeviceSpec, EmbedderInfo, load_embedder};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn minilm_config() -> ModelConfig {
    let file = repo_root().join("deploy/model-repository/all-MiniLM-L6-v2.toml");
    let config = ModelConfig::from_file(&file).expect("default model config");
    assert!(
        config.weights_path().exists(),
        "{} is missing: run deploy/fetch-assets.sh (make test does)",
        config.weights_path().display()
    );
    config
}

fn embed(texts: &[String]) -> Vec<Vec<f32>> {
    let config = minilm_config();
    let info = EmbedderInfo::load(&config).unwrap();
    let mut model = load_embedder(&config, &info, &DeviceSpec::Cpu, 2, 0).unwrap();
    let ids = info.tokenizer.encode(texts, false).unwrap().unwrap();
    let seqs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    let mut out = model.embed(&seqs).unwrap();
    assert!(info.normalize, "MiniLM's modules.json ends in Normalize");
    out.iter_mut().for_each(|v| l2_normalize(v));
    out
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn quick_brown_fox_matches_known_values() {
    let v = &embed(&["The quick brown fox jumps over the lazy dog.".to_string()])[0];
    assert_eq!(v.len(), 384);
    let expected = [0.0439335, 0.0589344, 0.0481784, 0.0775481, 0.0267444];
    for (i, (got, want)) in v.iter().zip(expected).enumerate() {
        assert!((got - want).abs() <= 1e-5, "dim {i}: got {got}, want {want}");
    }
}

#[test]
fn reference_vectors_match_sentence_transformers() {
    let text = std::fs::read_to_string(repo_root().join("tests/data/minilm_reference.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let items = reference["items"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    let texts: Vec<String> = items.iter().map(|i| i["text"].as_str().unwrap().to_string()).collect();
    // All at once: padding to the longest in the batch must not change any vector.
    let ours = embed(&texts);
    for (item, got) in items.iter().zip(&ours) {
        let want: Vec<f32> = item["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let c = cosine(got, &want);
        assert!(c >= 0.9999, "cosine {c} for {:?}", item["text"]);
    }
}

#[test]
fn input_limit_is_enforced_or_applied() {
    let config = minilm_config();
    let info = EmbedderInfo::load(&config).unwrap();
    assert_eq!(info.tokenizer.limit(), 256, "from sentence_bert_config.json");
    let long = vec!["word ".repeat(400)];
    let err = info.tokenizer.encode(&long, false).unwrap().unwrap_err();
    assert_eq!((err.index, err.limit), (0, 256));
    assert!(err.to_string().contains("256"));
    let ids = info.tokenizer.encode(&long, true).unwrap().unwrap();
    assert_eq!(ids[0].len(), 256);
    assert_eq!(ids[0].last(), Some(&102), "truncation keeps [SEP]");
}

#[test]
fn f16_matches_the_reference_without_nan() {
    let mut config = minilm_config();
    config.dtype = ferroserve_models::DType::F16;
    let info = EmbedderInfo::load(&config).unwrap();
    let mut model = load_embedder(&config, &info, &DeviceSpec::Cpu, 2, 0).unwrap();
    let text = std::fs::read_to_string(repo_root().join("tests/data/minilm_reference.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let items = reference["items"].as_array().unwrap();
    let texts: Vec<String> = items.iter().map(|i| i["text"].as_str().unwrap().to_string()).collect();
    let ids = info.tokenizer.encode(&texts, false).unwrap().unwrap();
    let seqs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    let ours = model.embed(&seqs).unwrap();
    for (item, got) in items.iter().zip(&ours) {
        assert!(got.iter().all(|x| x.is_finite()), "NaN for {:?}", item["text"]);
        let want: Vec<f32> = item["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let c = cosine(got, &want);
        assert!(c >= 0.999, "F16 cosine {c} for {:?}", item["text"]);
    }
}
