//! End-to-end embedding-cache tests against the real binary: cached vectors equal computed ones bit for bit,
//! only the missing texts of a batch are computed, concurrent identical misses compute once, the `cache`
//! modes (`skip`, `refresh`, `only`) and invalidation behave, and every key field matters.

use ferroserve_e2e::{MODEL, Server, metric, repository_with};
use serde_json::{Value, json};

/// Sequences the model's lane has computed so far.
async fn computed(server: &Server) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.http)).await.unwrap().text().await.unwrap();
    metric(&text, "ferroserve_lane_sequences_total{").unwrap_or(0.0)
}

/// Posts an embeddings request; returns the status, the `x-cache` / `x-cache-hits` headers and the body.
async fn embed(server: &Server, body: Value) -> (u16, String, usize, Value) {
    let r = reqwest::Client::new().post(format!("{}/v1/embeddings", server.http)).json(&body).send().await.unwrap();
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (cache, hits) = (header("x-cache"), header("x-cache-hits").parse().unwrap_or(0));
    (r.status().as_u16(), cache, hits, r.json().await.unwrap())
}

fn vectors(body: &Value) -> Vec<Value> {
    body["data"].as_array().unwrap().iter().map(|d| d["embedding"].clone()).collect()
}

#[tokio::test]
async fn embedding_cache_end_to_end() {
    let server = Server::start_with_repository(&repository_with("cache", "", "[[lanes]]\ndevice = \"cpu\""), &[]).await;

    // A miss, then a hit with the same vector, bit for bit (JSON floats print the f32's shortest form).
    let (status, cache, _, first) = embed(&server, json!({"model": MODEL, "input": "a cached sentence"})).await;
    assert_eq!((status, cache.as_str()), (200, "MISS"));
    let before = computed(&server).await;
    let (_, cache, hits, again) = embed(&server, json!({"model": MODEL, "input": "a cached sentence"})).await;
    assert_eq!((cache.as_str(), hits), ("HIT", 1));
    assert_eq!(vectors(&again), vectors(&first));
    assert_eq!(again["usage"], first["usage"], "usage counts the cached text's tokens");
    assert_eq!(computed(&server).await, before, "a hit computes nothing");
    // Options applied after the cache (dimensions) give the same answer as computing without the cache.
    let cut = json!({"model": MODEL, "input": "a cached sentence", "dimensions": 64});
    let (_, cache, _, from_cache) = embed(&server, cut.clone()).await;
    assert_eq!(cache, "HIT");
    let mut skip = cut.clone();
    skip["cache"] = json!("skip");
    let (_, cache, _, computed_now) = embed(&server, skip).await;
    assert_eq!(cache, "MISS");
    assert_eq!(vectors(&from_cache), vectors(&computed_now));

    // Granularity: 20 of 32 texts cached -> only 12 computed.
    let texts: Vec<String> = (0..32).map(|i| format!("granular sentence number {i}")).collect();
    embed(&server, json!({"model": MODEL, "input": texts[..20]})).await;
    let before = computed(&server).await;
    let (_, cache, hits, body) = embed(&server, json!({"model": MODEL, "input": texts})).await;
    assert_eq!((cache.as_str(), hits), ("MISS", 20));
    assert_eq!(vectors(&body).len(), 32);
    assert_eq!(computed(&server).await - before, 12.0);
    // Duplicates inside one request are computed once too.
    let before = computed(&server).await;
    embed(&server, json!({"model": MODEL, "input": ["twice in one request", "twice in one request"]})).await;
    assert_eq!(computed(&server).await - before, 1.0);

    // Single-flight: 16 concurrent requests for one new text -> one computation.
    let before = computed(&server).await;
    let same = (0..16).map(|_| embed(&server, json!({"model": MODEL, "input": "everyone asks this at once"})));
    let answers = futures::future::join_all(same).await;
    assert!(answers.iter().all(|a| a.0 == 200 && vectors(&a.3) == vectors(&answers[0].3)));
    assert_eq!(computed(&server).await - before, 1.0, "16 identical concurrent misses computed once");

    // Modes: only (never computes), skip (never writes), refresh (computes and writes), via body or header.
    let (status, _, _, body) = embed(&server, json!({"model": MODEL, "input": "never seen", "cache": "only"})).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("cache=only"));
    embed(&server, json!({"model": MODEL, "input": "never seen", "cache": "skip"})).await;
    let (status, ..) = embed(&server, json!({"model": MODEL, "input": "never seen", "cache": "only"})).await;
    assert_eq!(status, 404, "skip does not write");
    let before = computed(&server).await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/embeddings", server.http))
        .header("x-ferroserve-cache", "refresh")
        .json(&json!({"model": MODEL, "input": "a cached sentence"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(computed(&server).await - before, 1.0, "refresh recomputes a cached text");
    let (status, ..) = embed(&server, json!({"model": MODEL, "input": "never seen", "cache": "sometimes"})).await;
    assert_eq!(status, 400);

    // Every key field: the truncate flag and the model (variant) miss.
    let (_, cache, ..) = embed(&server, json!({"model": MODEL, "input": "a cached sentence"})).await;
    assert_eq!(cache, "HIT");
    let r = reqwest::Client::new()
        .post(format!("{}/embed", server.http))
        .json(&json!({"inputs": "a cached sentence", "truncate": true, "cache": "only"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "truncate=true is another key");

    // Invalidation: one entry, then everything.
    let admin = |body: Value| {
        let url = format!("{}/admin/cache/invalidate", server.http);
        async move { reqwest::Client::new().post(url).json(&body).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(admin(json!({"model": MODEL, "input": "a cached sentence"})).await, 200);
    let (status, ..) = embed(&server, json!({"model": MODEL, "input": "a cached sentence", "cache": "only"})).await;
    assert_eq!(status, 404);
    let (status, ..) = embed(&server, json!({"model": MODEL, "input": texts[0], "cache": "only"})).await;
    assert_eq!(status, 200, "other entries stay");
    assert_eq!(admin(json!({"model": MODEL})).await, 200);
    let (status, ..) = embed(&server, json!({"model": MODEL, "input": texts[0], "cache": "only"})).await;
    assert_eq!(status, 404, "the model's entries are gone");
    assert_eq!(admin(json!({"input": "x"})).await, 400, "an input needs its model");
    let usage: Value = reqwest::get(format!("{}/admin/cache", server.http)).await.unwrap().json().await.unwrap();
    assert!(usage["embedding"]["bytes"].is_u64(), "{usage}");
    let metrics = reqwest::get(format!("{}/metrics", server.http)).await.unwrap().text().await.unwrap();
    assert!(metric(&metrics, "ferroserve_cache_hits_total{").unwrap_or(0.0) >= 20.0);
    assert!(metric(&metrics, "ferroserve_cache_misses_total{").unwrap_or(0.0) >= 12.0);
}
