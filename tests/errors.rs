//! Every kind of bad input gets its status and a message that says what is wrong, over REST and gRPC,
//! and the server stays up.

use ferroserve_e2e::{MODEL, Server};
use ferroserve_proto::ferroserve::v1::{EmbedRequest, inference_client::InferenceClient};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn send(server: &Server, path: &str, body: reqwest::Body, content_type: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", server.http))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// OpenAI-shaped error: status and a message containing `needle`.
async fn openai_error(server: &Server, body: &str, status: StatusCode, needle: &str) {
    let (got, v) = send(server, "/v1/embeddings", body.to_string().into(), "application/json").await;
    assert_eq!(got, status, "{body} -> {v}");
    let message = v["error"]["message"].as_str().unwrap_or_else(|| panic!("OpenAI error shape: {v}"));
    assert!(message.contains(needle), "{body}: {message:?} should mention {needle:?}");
    assert!(v["error"]["type"].is_string());
}

#[tokio::test]
async fn bad_rest_requests_get_clear_errors() {
    let server = Server::start(&["--max-body-bytes", "65536", "--max-client-batch-size", "64"]).await;
    let m = MODEL;
    openai_error(&server, r#"{"model":"nope","input":"x"}"#, StatusCode::NOT_FOUND, "\"nope\"").await;
    openai_error(&server, &format!(r#"{{"model":"{m}","input":[]}}"#), StatusCode::BAD_REQUEST, "at least one").await;
    openai_error(&server, &format!(r#"{{"model":"{m}","input":""}}"#), StatusCode::BAD_REQUEST, "empty").await;
    openai_error(&server, &format!(r#"{{"model":"{m}","input":["a",""]}}"#), StatusCode::BAD_REQUEST, "input 1").await;
    let long = "word ".repeat(400);
    openai_error(
        &server,
        &format!(r#"{{"model":"{m}","input":["ok","{long}"],"truncate":false}}"#),
        StatusCode::BAD_REQUEST,
        "limit of 256",
    )
    .await;
    openai_error(
        &server,
        &format!(r#"{{"model":"{m}","input":"{long}","truncate_prompt_tokens":100}}"#),
        StatusCode::BAD_REQUEST,
        "send -1",
    )
    .await;
    openai_error(&server, &format!(r#"{{"model":"{m}","input":"x""#), StatusCode::BAD_REQUEST, "EOF").await;
    openai_error(&server, r#"{"model":5,"input":"x"}"#, StatusCode::BAD_REQUEST, "model: invalid type").await;
    openai_error(&server, &format!(r#"{{"model":"{m}"}}"#), StatusCode::BAD_REQUEST, "missing field `input`").await;
    openai_error(&server, &format!(r#"{{"model":"{m}","input":5}}"#), StatusCode::BAD_REQUEST, "string or an array")
        .await;
    openai_error(&server, &format!(r#"{{"model":"{m}","input":[[1,2]]}}"#), StatusCode::BAD_REQUEST, "token-id").await;
    openai_error(
        &server,
        &format!(r#"{{"model":"{m}","input":"x","encoding_format":"hex"}}"#),
        StatusCode::BAD_REQUEST,
        "base64",
    )
    .await;
    openai_error(
        &server,
        &format!(r#"{{"model":"{m}","input":"x","dimensions":385}}"#),
        StatusCode::BAD_REQUEST,
        "between 1 and 384",
    )
    .await;
    let many: Vec<&str> = vec!["x"; 65];
    openai_error(&server, &json!({"model": m, "input": many}).to_string(), StatusCode::BAD_REQUEST, "limit is 64")
        .await;

    // Oversized body: 413 with a message, not a dropped connection.
    let huge = json!({"model": m, "input": "a".repeat(70_000)}).to_string();
    openai_error(&server, &huge, StatusCode::PAYLOAD_TOO_LARGE, "max_body_bytes").await;

    // Wrong content type.
    let (status, _) = send(&server, "/v1/embeddings", "{}".into(), "text/plain").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // TEI shape: {"error", "error_type"} and 422 for validation.
    let (status, v) =
        send(&server, "/embed", json!({"inputs": long, "truncate": false}).to_string().into(), "application/json")
            .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error_type"], "Validation");
    assert!(v["error"].as_str().unwrap().contains("256"));
    let (status, v) =
        send(&server, "/embed", json!({"inputs": long, "truncate": true}).to_string().into(), "application/json").await;
    assert_eq!(status, StatusCode::OK, "truncate=true accepts it: {v}");
    let (status, v) =
        send(&server, "/embed", json!({"inputs": "x", "model": "nope"}).to_string().into(), "application/json").await;
    assert_eq!((status, v["error_type"].as_str()), (StatusCode::NOT_FOUND, Some("NotFound")));

    // Unknown route.
    let r = reqwest::get(format!("{}/v1/nothing", server.http)).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Still serving after all that.
    let (status, _) =
        send(&server, "/embed", json!({"inputs": "still up"}).to_string().into(), "application/json").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bad_grpc_requests_get_clear_statuses() {
    let server = Server::start(&["--max-client-batch-size", "64", "--max-body-bytes", "65536"]).await;
    let mut client = InferenceClient::connect(server.grpc.clone()).await.unwrap();
    let req = |model: &str, inputs: Vec<String>| EmbedRequest { model: model.into(), inputs, ..Default::default() };
    let cases = [
        (req("nope", vec!["x".into()]), tonic::Code::NotFound, "\"nope\""),
        (req(MODEL, vec![]), tonic::Code::InvalidArgument, "at least one"),
        (req(MODEL, vec!["".into()]), tonic::Code::InvalidArgument, "empty"),
        (
            EmbedRequest { truncate: Some(false), ..req(MODEL, vec!["word ".repeat(400)]) },
            tonic::Code::InvalidArgument,
            "limit of 256",
        ),
        (req(MODEL, vec!["x".into(); 65]), tonic::Code::InvalidArgument, "limit is 64"),
        (
            EmbedRequest { dimensions: Some(0), ..req(MODEL, vec!["x".into()]) },
            tonic::Code::InvalidArgument,
            "between 1 and 384",
        ),
    ];
    for (request, code, needle) in cases {
        let status = client.embed(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(needle), "{:?} should mention {needle:?}", status.message());
    }
    let ok = client.embed(req(MODEL, vec!["still up".into()])).await.unwrap().into_inner();
    assert_eq!(ok.embeddings.len(), 1);
}
