//! Dynamic batching seen from outside: overload answered at once, deadlines, timing headers, and several
//! lanes sharing one model's queue.

use std::time::{Duration, Instant};

use ferroserve_e2e::{MODEL, Server, metric, repository_with, wait_for_metric};
use ferroserve_proto::ferroserve::v1::{EmbedRequest, inference_client::InferenceClient};
use serde_json::{Value, json};

fn sentences(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("sentence {i} keeps the lane busy for a little while, padded with several words")).collect()
}

async fn embed(client: &reqwest::Client, server: &Server, body: Value) -> reqwest::Response {
    client.post(format!("{}/v1/embeddings", server.http)).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn full_queue_gets_429_at_once_while_admitted_requests_complete() {
    let repo = repository_with("overload", "max_batch_size = 8\nmax_queue_size = 16", "");
    let server = Server::start_with_repository(&repo, &[]).await;
    let client = reqwest::Client::new();
    // A request larger than the queue is admitted into the empty queue and keeps it full for a while.
    let big = tokio::spawn({
        let (client, url) = (client.clone(), format!("{}/v1/embeddings", server.http));
        async move { client.post(url).json(&json!({"model": MODEL, "input": sentences(400)})).send().await.unwrap() }
    });
    // The queue is full once the lane has taken its first batch of 8 from the 400.
    let depth = format!("ferroserve_queue_depth{{model=\"{MODEL}\"}}");
    wait_for_metric(&server, &depth, |d| d >= 16.0).await;
    let started = Instant::now();
    let refused = embed(&client, &server, json!({"model": MODEL, "input": "one more"})).await;
    let waited = started.elapsed();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("queue is full"), "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error");

    let mut grpc = InferenceClient::connect(server.grpc.clone()).await.unwrap();
    let status = grpc
        .embed(EmbedRequest { model: MODEL.into(), inputs: vec!["x".into()], ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.metadata().get("retry-after-ms").is_some());

    let big = big.await.unwrap();
    assert_eq!(big.status(), 200, "the admitted request completes");
    assert!(!big.headers().contains_key("retry-after"));
    let big: Value = big.json().await.unwrap();
    assert_eq!(big["data"].as_array().unwrap().len(), 400);
    assert!(waited < Duration::from_secs(2), "refused at once, not queued ({waited:?})");

    let text = reqwest::get(format!("{}/metrics", server.http)).await.unwrap().text().await.unwrap();
    let rejected = metric(&text, &format!("ferroserve_rejected_total{{model=\"{MODEL}\",reason=\"queue_full\"}}"));
    assert_eq!(rejected, Some(2.0), "{text}");
}

#[tokio::test]
async fn deadlines_and_timing_headers() {
    let server = Server::start(&[]).await;
    let client = reqwest::Client::new();
    // Timing headers on every embedding response.
    let ok = embed(&client, &server, json!({"model": MODEL, "input": "timed"})).await;
    assert_eq!(ok.status(), 200);
    let ms = |h: &str| -> f64 { ok.headers()[h].to_str().unwrap().parse().unwrap() };
    // The only request on an idle server: it waited far less than it computed (a forward pass of MiniLM).
    assert!(ms("x-inference-time") > 0.0, "a forward pass takes time");
    assert!(ms("x-queue-time") < ms("x-inference-time") + 50.0, "{} ms queued", ms("x-queue-time"));
    assert_eq!(ok.headers()["x-ferroserve-model"], MODEL);
    // Keep the lane busy, then ask for answers within 30 ms: body field, header, and gRPC deadline.
    let big = tokio::spawn({
        let (client, url) = (client.clone(), format!("{}/v1/embeddings", server.http));
        async move { client.post(url).json(&json!({"model": MODEL, "input": sentences(400)})).send().await.unwrap() }
    });
    // The lane is busy and sequences wait behind it.
    wait_for_metric(&server, &format!("ferroserve_queue_depth{{model=\"{MODEL}\"}}"), |d| d > 0.0).await;
    let late = embed(&client, &server, json!({"model": MODEL, "input": "late", "timeout_ms": 30})).await;
    assert_eq!(late.status(), 504);
    let body: Value = late.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("deadline"), "{body}");
    let late = client
        .post(format!("{}/embed", server.http))
        .header("x-ferroserve-timeout-ms", "30")
        .json(&json!({"inputs": "late too"}))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 504);
    let bad = client
        .post(format!("{}/embed", server.http))
        .header("x-ferroserve-priority", "urgent")
        .json(&json!({"inputs": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let bad = embed(&client, &server, json!({"model": MODEL, "input": "x", "priority": 7})).await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("levels 0 (first) to 2"));

    let mut grpc = InferenceClient::connect(server.grpc.clone()).await.unwrap();
    let mut request = tonic::Request::new(EmbedRequest {
        model: MODEL.into(),
        inputs: vec!["late over grpc".into()],
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(30));
    let status = grpc.embed(request).await.unwrap_err();
    assert!(matches!(status.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled), "{status:?}");

    assert_eq!(big.await.unwrap().status(), 200);
    // The expired sequences never reached the lane: dropped before compute, and the lane computed only
    // the admitted ones (1 + 400 + 3 + 1 below).
    let after = embed(&client, &server, json!({"model": MODEL, "input": "after"})).await;
    assert_eq!(after.status(), 200);
    let text = reqwest::get(format!("{}/metrics", server.http)).await.unwrap().text().await.unwrap();
    let dropped = metric(&text, &format!("ferroserve_dropped_total{{model=\"{MODEL}\",reason=\"expired\"}}"))
        .unwrap_or(0.0)
        + metric(&text, &format!("ferroserve_dropped_total{{model=\"{MODEL}\",reason=\"cancelled\"}}")).unwrap_or(0.0);
    assert_eq!(dropped, 3.0, "{text}");
    let computed = metric(&text, &format!("ferroserve_lane_sequences_total{{model=\"{MODEL}\",lane=\"cpu-0\"}}"));
    assert_eq!(computed, Some(402.0), "{text}");
}

#[tokio::test]
async fn two_lanes_of_one_model_both_take_work() {
    let lanes = "[[lanes]]\ndevice = \"cpu\"\nthreads = 1\n\n[[lanes]]\ndevice = \"cpu\"\nthreads = 1\n";
    let repo = repository_with("two-lanes", "max_batch_size = 4", lanes);
    let server = Server::start_with_repository(&repo, &[]).await;
    let client = reqwest::Client::new();
    let requests = (0..16).map(|i| {
        let (client, url) = (client.clone(), format!("{}/v1/embeddings", server.http));
        async move {
            let r = client
                .post(url)
                // Skip the embedding cache: identical texts would be computed once, and this test counts lanes.
                .json(&json!({"model": MODEL, "input": sentences(8)[..].to_vec(), "user": i.to_string(), "cache": "skip"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    });
    futures::future::join_all(requests).await;
    let text = reqwest::get(format!("{}/metrics", server.http)).await.unwrap().text().await.unwrap();
    let lane = |i| {
        metric(&text, &format!("ferroserve_lane_sequences_total{{model=\"{MODEL}\",lane=\"cpu-{i}\"}}")).unwrap_or(0.0)
    };
    assert!(lane(0) > 0.0 && lane(1) > 0.0, "both lanes computed: {} and {}", lane(0), lane(1));
    assert_eq!(lane(0) + lane(1), 128.0);
    assert!(server.log_text().contains("compute_threads=2"), "the thread budget is logged");
}
