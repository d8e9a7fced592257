//! REST and gRPC serve the same vectors, in every shape the APIs offer.

use base64::Engine as _;
use ferroserve_e2e::{MODEL, Server, cosine, floats, post_ok};
use ferroserve_proto::ferroserve::v1::{EmbedRequest, ListModelsRequest, inference_client::InferenceClient};
use serde_json::{Value, json};

const TEXTS: [&str; 3] = [
    "The quick brown fox jumps over the lazy dog.",
    "A fast auburn fox leaped over a sleepy hound.",
    "Rust is a systems programming language.",
];

#[tokio::test]
async fn rest_and_grpc_return_the_same_vectors() {
    let server = Server::start(&[]).await;

    // OpenAI, floats.
    let openai = post_ok(&server, "/v1/embeddings", json!({"model": MODEL, "input": TEXTS})).await;
    assert_eq!(openai["object"], "list");
    assert_eq!(openai["model"], MODEL);
    let data = openai["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let rest: Vec<Vec<f32>> = data.iter().map(|d| floats(&d["embedding"])).collect();
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["index"], i);
        assert_eq!(rest[i].len(), 384);
    }
    let first5 = [0.0439335, 0.0589344, 0.0481784, 0.0775481, 0.0267444];
    for (got, want) in rest[0].iter().zip(first5) {
        assert!((got - want).abs() <= 1e-5, "{got} vs {want}");
    }
    let tokens = openai["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens > 20, "usage counts tokens: {tokens}");
    assert_eq!(openai["usage"]["total_tokens"], tokens);

    // The two paraphrases are closer to each other than to the unrelated sentence.
    assert!(cosine(&rest[0], &rest[1]) > cosine(&rest[0], &rest[2]) + 0.2);

    // OpenAI, base64 (what the official clients request by default): same vector.
    let b64 =
        post_ok(&server, "/v1/embeddings", json!({"model": MODEL, "input": TEXTS[0], "encoding_format": "base64"}))
            .await;
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(b64["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let decoded: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert!(cosine(&decoded, &rest[0]) > 0.99999, "alone or in a batch: the same vector");

    // dimensions: truncated and renormalized.
    let short = post_ok(&server, "/v1/embeddings", json!({"model": MODEL, "input": TEXTS[0], "dimensions": 64})).await;
    let short = floats(&short["data"][0]["embedding"]);
    assert_eq!(short.len(), 64);
    let norm: f32 = short.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    assert!(cosine(&short, &rest[0][..64]) > 0.99999);

    // TEI /embed, normalized and not.
    let tei = post_ok(&server, "/embed", json!({"inputs": TEXTS})).await;
    let tei: Vec<Vec<f32>> = tei.as_array().unwrap().iter().map(floats).collect();
    assert_eq!(tei, rest);
    let raw = post_ok(&server, "/embed", json!({"inputs": TEXTS[0], "normalize": false})).await;
    let raw = floats(&raw[0]);
    let norm: f32 = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(norm > 1.5, "unnormalized mean-pooled MiniLM vectors are longer than 1: {norm}");
    assert!(cosine(&raw, &rest[0]) > 0.99999);

    // gRPC unary.
    let mut client = InferenceClient::connect(server.grpc.clone()).await.unwrap();
    let resp = client
        .embed(EmbedRequest { model: MODEL.into(), inputs: TEXTS.map(String::from).to_vec(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let grpc: Vec<Vec<f32>> = resp.embeddings.into_iter().map(|e| e.values).collect();
    assert_eq!(grpc, rest, "REST and gRPC give the same bits");
    assert_eq!(resp.prompt_tokens as u64, tokens);

    // gRPC bidirectional stream: responses in order, errors in-band, stream goes on.
    let requests: Vec<EmbedRequest> = vec![
        EmbedRequest {
            model: MODEL.into(),
            inputs: vec![TEXTS[0].into()],
            request_id: "a".into(),
            ..Default::default()
        },
        EmbedRequest { model: "nope".into(), inputs: vec!["x".into()], request_id: "b".into(), ..Default::default() },
        EmbedRequest {
            model: MODEL.into(),
            inputs: vec![TEXTS[2].into()],
            request_id: "c".into(),
            ..Default::default()
        },
    ];
    let mut stream = client.embed_stream(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let mut got = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        got.push(r);
    }
    assert_eq!(got.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    assert!(cosine(&got[0].embeddings[0].values, &rest[0]) > 0.99999);
    assert_eq!(got[1].error.as_ref().unwrap().code, tonic::Code::NotFound as i32);
    assert!(cosine(&got[2].embeddings[0].values, &rest[2]) > 0.99999);

    let models = client.list_models(ListModelsRequest {}).await.unwrap().into_inner().models;
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "SmolLM2-135M-Instruct",
            MODEL,
            "all-MiniLM-L6-v2:onnx",
            "all-MiniLM-L6-v2:onnx-fp16",
            "all-MiniLM-L6-v2:onnx-int8"
        ]
    );
    assert_eq!(
        (models[1].backend.as_str(), models[1].dimensions, models[1].max_input_tokens, models[1].ready),
        ("onnx", 384, 256, true)
    );
    assert_eq!(models[4].backend, "onnx");
    // The language model: no dimensions, its context as the input limit.
    assert_eq!((models[0].task.as_str(), models[0].dimensions, models[0].max_input_tokens), ("generation", 0, 4096));
}

#[tokio::test]
async fn concurrent_requests_keep_their_own_results() {
    let server = Server::start(&[]).await;
    let client = reqwest::Client::new();
    let sentences: Vec<String> = std::fs::read_to_string(ferroserve_e2e::repo_root().join("tests/data/sentences.txt"))
        .unwrap()
        .lines()
        .take(40)
        .map(String::from)
        .collect();
    // Alone first, then all at once (batched together by the lane): each result must be its own.
    let mut alone = Vec::new();
    for s in &sentences {
        alone.push(floats(&post_ok(&server, "/embed", json!({"inputs": s})).await[0]));
    }
    let together = futures::future::join_all(sentences.iter().map(|s| {
        let client = client.clone();
        let url = format!("{}/embed", server.http);
        async move {
            let r: Value = client.post(url).json(&json!({"inputs": s})).send().await.unwrap().json().await.unwrap();
            floats(&r[0])
        }
    }))
    .await;
    for (a, t) in alone.iter().zip(&together) {
        assert!(cosine(a, t) > 0.99999);
    }
    // One request larger than max_batch_size is split across batches and reassembled in order.
    let big: Vec<&String> = sentences.iter().cycle().take(100).collect();
    let r: Value = client
        .post(format!("{}/embed", server.http))
        .json(&json!({"inputs": big}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = r.as_array().unwrap();
    assert_eq!(r.len(), 100);
    for (i, v) in r.iter().enumerate() {
        assert!(cosine(&floats(v), &alone[i % 40]) > 0.99999, "item {i}");
    }
}

#[tokio::test]
async fn health_ready_models_and_metrics() {
    let server = Server::start(&[]).await;
    let client = reqwest::Client::new();
    let health: Value = client.get(format!("{}/health", server.http)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let ready: Value = client.get(format!("{}/ready", server.http)).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["ready"], true);
    let models: Value = client.get(format!("{}/v1/models", server.http)).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "SmolLM2-135M-Instruct");
    assert_eq!(models["data"][1]["id"], MODEL);

    post_ok(&server, "/v1/embeddings", json!({"model": MODEL, "input": "hello"})).await;
    let _ = client
        .post(format!("{}/v1/embeddings", server.http))
        .json(&json!({"model": MODEL, "input": ""}))
        .send()
        .await
        .unwrap();
    let _ = client
        .post(format!("{}/v1/embeddings", server.http))
        .json(&json!({"model": "random-name", "input": "x"}))
        .send()
        .await
        .unwrap();
    let mut grpc = InferenceClient::connect(server.grpc.clone()).await.unwrap();
    grpc.embed(EmbedRequest { model: MODEL.into(), inputs: vec!["hi".into()], ..Default::default() }).await.unwrap();

    let text = client.get(format!("{}/metrics", server.http)).send().await.unwrap().text().await.unwrap();
    let has = |needle: &str| text.lines().any(|l| l.starts_with(needle));
    assert!(
        has(&format!("ferroserve_http_requests_total{{route=\"/v1/embeddings\",model=\"{MODEL}\",status=\"200\"}}")),
        "{text}"
    );
    assert!(
        has(&format!("ferroserve_http_errors_total{{route=\"/v1/embeddings\",model=\"{MODEL}\",status=\"400\"}}")),
        "{text}"
    );
    assert!(has("ferroserve_http_request_duration_seconds_bucket{route=\"/v1/embeddings\""), "{text}");
    assert!(has(&format!("ferroserve_input_tokens_total{{model=\"{MODEL}\"}}")), "{text}");
    assert!(
        has(&format!("ferroserve_grpc_requests_total{{method=\"Embed\",model=\"{MODEL}\",code=\"OK\"}}")),
        "{text}"
    );
    assert!(has(&format!("ferroserve_batch_size_bucket{{model=\"{MODEL}\"")), "{text}");
    assert!(!text.contains("random-name"), "unknown model names never become labels");
}

#[tokio::test]
async fn default_repository_variants_agree_with_candle() {
    let server = Server::start(&[]).await;
    let texts: Vec<&str> = TEXTS.to_vec();
    let candle = post_ok(&server, "/v1/embeddings", json!({"model": MODEL, "input": texts})).await;
    let variants = [
        ("all-MiniLM-L6-v2:onnx", 0.99999),
        ("all-MiniLM-L6-v2:onnx-fp16", 0.999),
        ("all-MiniLM-L6-v2:onnx-int8", 0.97),
    ];
    for (variant, bound) in variants {
        let other = post_ok(&server, "/v1/embeddings", json!({"model": variant, "input": texts})).await;
        assert_eq!(other["model"], variant);
        for (a, b) in candle["data"].as_array().unwrap().iter().zip(other["data"].as_array().unwrap()) {
            let c = cosine(&floats(&a["embedding"]), &floats(&b["embedding"]));
            assert!(c >= bound, "{variant}: cosine {c}");
        }
        assert_eq!(other["usage"], candle["usage"], "same tokenizer, same token counts");
    }
}
