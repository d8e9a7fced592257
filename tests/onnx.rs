//! `ferroserve export onnx`, then one server with the Candle and the ONNX Runtime variant of MiniLM side by
//! side: the same texts give the same vectors (cosine >= 0.99999) over REST.

use std::process::Command;

use ferroserve_e2e::{MODEL, Server, cosine, floats, repo_root, repository_with};
use serde_json::{Value, json};

#[tokio::test]
async fn exported_onnx_model_serves_the_same_vectors_as_candle() {
    let repo = repository_with("onnx", "max_batch_size = 16", "");
    let onnx_dir = repo.join("minilm-onnx");
    let bin = std::env::var_os("FERROSERVE_BIN")
        .map(Into::into)
        .unwrap_or_else(|| repo_root().join("target/debug/ferroserve"));
    let status = Command::new(bin)
        .args(["export", "onnx", "--checkpoint"])
        .arg(repo_root().join("assets/all-MiniLM-L6-v2"))
        .arg("--output")
        .arg(&onnx_dir)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(onnx_dir.join("model.onnx").exists() && onnx_dir.join("tokenizer.json").exists());
    std::fs::write(
        repo.join("onnx.toml"),
        format!(
            "name = \"minilm-onnx\"\ntask = \"embedding\"\nbackend = \"onnx\"\npath = {:?}\n",
            onnx_dir.display().to_string()
        ),
    )
    .unwrap();

    let server = Server::start_with_repository(&repo, &[]).await;
    let client = reqwest::Client::new();
    let texts: Vec<String> = std::fs::read_to_string(repo_root().join("tests/data/sentences.txt"))
        .unwrap()
        .lines()
        .skip(800)
        .take(64)
        .map(String::from)
        .collect();
    let mut vectors = Vec::new();
    for model in [MODEL, "minilm-onnx"] {
        let r: Value = client
            .post(format!("{}/v1/embeddings", server.http))
            .json(&json!({"model": model, "input": texts}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        vectors.push(r["data"].as_array().unwrap().iter().map(|d| floats(&d["embedding"])).collect::<Vec<_>>());
    }
    assert_eq!(vectors[1].len(), 64);
    for (c, o) in vectors[0].iter().zip(&vectors[1]) {
        assert!(cosine(c, o) >= 0.99999, "cosine {}", cosine(c, o));
    }
    let models: Value = reqwest::get(format!("{}/v1/models", server.http)).await.unwrap().json().await.unwrap();
    assert_eq!(models["data"].as_array().unwrap().len(), 2);
}
