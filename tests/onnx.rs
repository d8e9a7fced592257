//! `ferroserve export onnx`, then one server with the Candle and the ONNX Runtime variant of MiniLM side by
//! side: the same texts give the same vectors (cosine >= 0.99999) over REST.

use std::process::Command;

use ferroserve_e2e::{MODEL, Server, cosine, floats, post_ok, repo_root, repository_with};
use ferroserve_proto::ferroserve::v1::{ListModelsRequest, inference_client::InferenceClient};
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
        // The default model's CPU lane runs its ONNX export, so it fails too; the language model serves.
        if m["name"] == "SmolLM2-135M-Instruct" {
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
        .post(format!("{}/v1/completions", server.http))
        .json(&json!({"model": "SmolLM2-135M-Instruct", "prompt": "The capital of France is", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "the Candle language model still serves");
}

/// A model whose lanes run different backends: an ONNX Runtime lane and a Candle lane pull from one queue,
/// both answer, and every answer matches the Candle-only server's vector for the same text.
#[tokio::test]
async fn lanes_of_two_backends_serve_one_model_from_one_queue() {
    let onnx = repo_root().join("assets/all-MiniLM-L6-v2-onnx");
    let lanes = format!(
        "[[lanes]]\ndevice = \"cpu\"\nthreads = 1\nbackend = \"onnx\"\npath = {:?}\n\n[[lanes]]\ndevice = \"cpu\"\nthreads = 1\n",
        onnx.display().to_string()
    );
    let server =
        Server::start_with_repository(&repository_with("mixed-lanes", "max_batch_size = 2", &lanes), &[]).await;
    let candle = Server::start_with_repository(&repository_with("candle-lane", "max_batch_size = 2", ""), &[]).await;
    let texts: Vec<String> = std::fs::read_to_string(repo_root().join("tests/data/sentences.txt"))
        .unwrap()
        .lines()
        .take(48)
        .map(String::from)
        .collect();
    // One text per request, all at once: the queue hands batches to whichever lane is free.
    let client = reqwest::Client::new();
    let answers = futures::future::join_all(texts.iter().map(|t| {
        let (client, url) = (client.clone(), format!("{}/v1/embeddings", server.http));
        async move {
            let r = client.post(url).json(&json!({"model": MODEL, "input": t})).send().await.unwrap();
            assert_eq!(r.status(), 200);
            floats(&r.json::<Value>().await.unwrap()["data"][0]["embedding"])
        }
    }))
    .await;
    let reference = post_ok(&candle, "/v1/embeddings", json!({"model": MODEL, "input": texts})).await;
    for (got, want) in answers.iter().zip(reference["data"].as_array().unwrap()) {
        assert!(cosine(got, &floats(&want["embedding"])) > 0.99999);
    }
    let metrics = client.get(format!("{}/metrics", server.http)).send().await.unwrap().text().await.unwrap();
    for lane in ["cpu-0", "cpu-1"] {
        let served = metrics
            .lines()
            .find(|l| l.starts_with("ferroserve_lane_sequences_total") && l.contains(&format!("lane=\"{lane}\"")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(served > 0.0, "lane {lane} served nothing:\n{metrics}");
    }
    let mut grpc = InferenceClient::connect(server.grpc.clone()).await.unwrap();
    let models = grpc.list_models(ListModelsRequest {}).await.unwrap().into_inner().models;
    assert_eq!(models[0].backend, "onnx+candle", "the lanes' backends, in lane order");
}

/// A lane whose files are not the same model's (here the INT8 export, cosine ~0.99 < the default 0.999) keeps
/// the model from loading, with a message that says which lane and why; the server stays up.
#[tokio::test]
async fn a_lane_that_disagrees_with_the_first_keeps_the_model_from_loading() {
    let int8 = repo_root().join("assets/all-MiniLM-L6-v2-onnx-int8");
    let lanes = format!(
        "[[lanes]]\ndevice = \"cpu\"\nthreads = 1\n\n[[lanes]]\ndevice = \"cpu\"\nthreads = 1\nbackend = \"onnx\"\npath = {:?}\n",
        int8.display().to_string()
    );
    let server = Server::spawn(&["--model-repository", repository_with("bad-lane", "", &lanes).to_str().unwrap()]);
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let model = loop {
        if let Ok(r) = client.get(format!("{}/ready", server.http)).send().await {
            let r: Value = r.json().await.unwrap();
            if r["models"][0]["state"] != "loading" || std::time::Instant::now() > deadline {
                break r["models"][0].clone();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(model["state"], "failed", "{model}");
    let error = model["error"].as_str().unwrap();
    assert!(error.contains("lane 1 (cpu-1) disagrees with lane 0") && error.contains("min_cosine 0.999"), "{error}");
}
