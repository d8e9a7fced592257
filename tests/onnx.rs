//! `ferroserve export onnx`, then one server with the Candle and the ONNX Runtime variant of MiniLM side by
//! side: the same texts give the same vectors (cosine >= 0.99999) over REST.

use std::process::Command;

use ferroserve_e2e::{MODEL, Server, cosine, floats, post_ok, repo_root, repository_with};
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
    let texts: Vec<String> = std::fs::read_to_string(repo_root().join("tests/data/sentences.txt"))
        .unwrap()
        .lines()
        .skip(800)
        .take(64)
        .map(String::from)
        .collect();
    let mut vectors = Vec::new();
    for model in [MODEL, "minilm-onnx"] {
        let r = post_ok(&server, "/v1/embeddings", json!({"model": model, "input": texts})).await;
        vectors.push(r["data"].as_array().unwrap().iter().map(|d| floats(&d["embedding"])).collect::<Vec<_>>());
    }
    assert_eq!(vectors[1].len(), 64);
    for (c, o) in vectors[0].iter().zip(&vectors[1]) {
        assert!(cosine(c, o) >= 0.99999, "cosine {}", cosine(c, o));
    }
    let models: Value = reqwest::get(format!("{}/v1/models", server.http)).await.unwrap().json().await.unwrap();
    assert_eq!(models["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn missing_onnx_runtime_fails_its_models_clearly_and_the_rest_serve() {
    let server = Server::spawn_with_env(&[], &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")]);
    let client = reqwest::Client::new();
    // Not ready: the ONNX variants failed to load; /ready says which.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let ready = loop {
        let r: Value = match client.get(format!("{}/ready", server.http)).send().await {
            Ok(r) => r.json().await.unwrap(),
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let settled = r["models"].as_array().unwrap().iter().all(|m| m["state"] != "loading");
        if settled || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(ready["ready"], false, "{ready}");
    for m in ready["models"].as_array().unwrap() {
        if m["name"] == MODEL || m["name"] == "SmolLM2-135M-Instruct" {
            assert_eq!(m["state"], "ready", "{m}");
        } else {
            assert_eq!(m["state"], "failed", "{m}");
            assert!(m["error"].as_str().unwrap().contains("ORT_DYLIB_PATH"), "{m}");
        }
    }
    let r = client
        .post(format!("{}/v1/embeddings", server.http))
        .json(&json!({"model": "all-MiniLM-L6-v2:onnx", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    // It names the library and the variable to set, not the server's folders.
    assert!(message.contains("libonnxruntime.so") && message.contains("ORT_DYLIB_PATH"), "{message}");
    assert!(!message.contains("/nonexistent/"), "{message}");
    let ok = client
        .post(format!("{}/v1/embeddings", server.http))
        .json(&json!({"model": MODEL, "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "the Candle model still serves");
}
