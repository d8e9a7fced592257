//! Regression tests for request validation and protocol edges: a request is checked completely before any
//! cache answers it (HTTP and gRPC, embeddings and generation); undecodable gRPC messages are the caller's
//! fault and every gRPC outcome is counted; gRPC carries the same response metadata as HTTP; generation
//! has a default waiting deadline; `logit_bias` works and unsupported OpenAI features are refused, not
//! ignored; truncation follows the request or the model's default.

use std::time::Duration;

use bytes::{Buf, BufMut};
use ferroserve_e2e::{LLM, MODEL, Server, llm_and_minilm_repository, llm_repository, metric, post_ok, wait_for_metric};
use ferroserve_proto::ferroserve::v1::inference_client::InferenceClient;
use ferroserve_proto::ferroserve::v1::{ChatMessage, EmbedRequest, GenerateRequest};
use serde_json::{Value, json};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

async fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(format!("{}{path}", server.http)).json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn metrics(server: &Server) -> String {
    reqwest::get(format!("{}/metrics", server.http)).await.unwrap().text().await.unwrap()
}

fn greedy_chat(question: &str) -> Value {
    json!({"model": LLM, "messages": [{"role": "user", "content": question}], "temperature": 0, "max_tokens": 8})
}

#[tokio::test]
async fn requests_are_validated_before_any_cache_answers() {
    let server = Server::start_with_repository(&llm_and_minilm_repository("validate-first"), &[]).await;
    let mut grpc = InferenceClient::connect(server.grpc.clone()).await.unwrap();

    // Embeddings: every text cached, then an out-of-range priority is still refused.
    let texts = json!({"model": MODEL, "input": ["cached one", "cached two"]});
    assert_eq!(post(&server, "/v1/embeddings", &texts).await.0, 200);
    let (status, body) = post(&server, "/v1/embeddings", &json!({"priority": 7}).merge(&texts)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("levels 0 (first) to 2"), "{body}");
    let cached = EmbedRequest { model: MODEL.into(), inputs: vec!["cached one".into()], ..Default::default() };
    let status = grpc.embed(EmbedRequest { priority: Some(7), ..cached.clone() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // Generation: a deterministic answer is cached, then the same request with a bad priority, bad
    // sampling or a bad stop string is refused rather than replayed.
    let chat = greedy_chat("Name a color.");
    let (status, first) = post(&server, "/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{first}");
    let r = reqwest::Client::new().post(format!("{}/v1/chat/completions", server.http)).json(&chat).send().await;
    assert_eq!(r.unwrap().headers()["x-cache"], "HIT", "the answer is cached");
    for (extra, needle) in [
        (json!({"priority": 9}), "levels 0 (first) to 2"),
        (json!({"temperature": 5}), "temperature"),
        (json!({"stop": [""]}), "stop strings"),
        (json!({"logit_bias": {"999999": 5}}), "not in the vocabulary"),
    ] {
        let (status, body) = post(&server, "/v1/chat/completions", &extra.clone().merge(&chat)).await;
        assert_eq!(status, 400, "{extra}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{extra}: {body}");
    }
    let message = ChatMessage { role: "user".into(), content: "Name a color.".into() };
    let generate = GenerateRequest {
        model: LLM.into(),
        messages: vec![message],
        temperature: Some(0.0),
        max_tokens: Some(8),
        ..Default::default()
    };
    let status = grpc.generate(GenerateRequest { priority: Some(9), ..generate.clone() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    // The wrong kind of model is refused before the caches are asked.
    let status = grpc.generate(GenerateRequest { model: MODEL.into(), ..generate.clone() }).await.unwrap_err();
    assert!(status.message().contains("cannot generate"), "{status:?}");
    let (status, _) = post(&server, "/v1/embeddings", &json!({"model": LLM, "input": "x"})).await;
    assert_eq!(status, 400);

    // gRPC sends the cache status and the serving model as metadata, as HTTP sends headers.
    let miss = grpc.embed(EmbedRequest { inputs: vec!["never seen before".into()], ..cached.clone() }).await.unwrap();
    assert_eq!(miss.metadata().get("x-cache").unwrap(), "MISS");
    let hit = grpc.embed(EmbedRequest { inputs: vec!["never seen before".into()], ..cached }).await.unwrap();
    assert_eq!(hit.metadata().get("x-cache").unwrap(), "HIT");
    assert_eq!(hit.metadata().get("x-cache-hits").unwrap(), "1");
    assert_eq!(hit.metadata().get("x-ferroserve-model").unwrap(), MODEL);
    assert!(hit.metadata().get("x-inference-time").is_some());
    let streamed = grpc.generate(generate).await.unwrap();
    assert_eq!(streamed.metadata().get("x-cache").unwrap(), "HIT");

    // Generation requests are counted with their outcome, "ok" included.
    let m = metrics(&server).await;
    let ok = metric(&m, &format!("ferroserve_model_requests_total{{model=\"{LLM}\",outcome=\"ok\"}}"));
    assert!(ok.unwrap_or(0.0) >= 3.0, "{m}");
    let bad = metric(&m, &format!("ferroserve_model_requests_total{{model=\"{LLM}\",outcome=\"invalid_input\"}}"));
    assert!(bad.unwrap_or(0.0) >= 5.0, "{m}");
}

/// A JSON object with `self`'s fields added to (or replacing) `base`'s.
trait Merge {
    fn merge(self, base: &Value) -> Value;
}

impl Merge for Value {
    fn merge(self, base: &Value) -> Value {
        let mut out = base.clone();
        if let (Some(out), Some(extra)) = (out.as_object_mut(), self.as_object()) {
            out.extend(extra.clone());
        }
        out
    }
}

/// Sends and receives raw message bytes, to put bytes on the wire that no generated client would.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

async fn raw_call(server: &Server, path: &'static str, bytes: Vec<u8>) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(server.grpc.clone()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let call = grpc.unary(tonic::Request::new(bytes), PathAndQuery::from_static(path), Raw).await;
    call.expect_err("the call fails")
}

#[tokio::test]
async fn undecodable_grpc_messages_are_invalid_arguments_and_every_outcome_is_counted() {
    let server = Server::start(&["--max-body-bytes", "4096"]).await;
    // A field tag whose varint never ends.
    let status = raw_call(&server, "/ferroserve.v1.Inference/Embed", vec![0xff, 0xff, 0xff]).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("does not decode"), "{status:?}");
    let status = raw_call(&server, "/ferroserve.v1.Inference/Nothing", vec![]).await;
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    let mut grpc = InferenceClient::connect(server.grpc.clone()).await.unwrap();
    let huge = EmbedRequest { model: MODEL.into(), inputs: vec!["x".repeat(5000)], ..Default::default() };
    assert_eq!(grpc.embed(huge).await.unwrap_err().code(), tonic::Code::OutOfRange);
    let ok = EmbedRequest { model: MODEL.into(), inputs: vec!["counted".into()], ..Default::default() };
    grpc.embed(ok).await.unwrap();

    let m = metrics(&server).await;
    for (method, model, code) in [
        ("Embed", "", "INVALID_ARGUMENT"),
        ("unknown", "", "UNIMPLEMENTED"),
        ("Embed", "", "OUT_OF_RANGE"),
        ("Embed", MODEL, "OK"),
    ] {
        let sample = format!("ferroserve_grpc_requests_total{{method=\"{method}\",model=\"{model}\",code=\"{code}\"}}");
        assert_eq!(metric(&m, &sample), Some(1.0), "{sample} in\n{m}");
    }
}

#[tokio::test]
async fn generation_waits_no_longer_than_the_default_deadline() {
    let repo = llm_repository("gen-deadline", "max_num_seqs = 1");
    let config = repo.join("model.toml");
    let toml = std::fs::read_to_string(&config).unwrap() + "\n[batching]\ndefault_timeout_ms = 500\n";
    std::fs::write(&config, toml).unwrap();
    let server = Server::start_with_repository(&repo, &[]).await;
    let long = json!({"model": LLM, "prompt": "Count: 1, 2, 3,", "max_tokens": 400, "ignore_eos": true,
                      "temperature": 0, "stream": true, "cache": "skip"});
    let client = reqwest::Client::new();
    let mut busy = client.post(format!("{}/v1/completions", server.http)).json(&long).send().await.unwrap();
    assert!(busy.chunk().await.unwrap().is_some(), "the one slot is generating");
    let started = std::time::Instant::now();
    let (status, body) =
        post(&server, "/v1/completions", &json!({"model": LLM, "prompt": "Hi", "max_tokens": 2})).await;
    assert_eq!(status, 504, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("deadline"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "gave up after the default 500 ms");
    drop(busy);
    wait_for_metric(&server, "ferroserve_generation_running", |r| r == 0.0).await;
}

#[tokio::test]
async fn logit_bias_changes_the_answer_and_unsupported_features_are_refused() {
    let server = Server::start_with_repository(&llm_repository("gen-bias", ""), &[]).await;
    let chat = greedy_chat("What is the capital of France?").merge(&json!({"cache": "skip", "logprobs": true}));
    let plain = post_ok(&server, "/v1/chat/completions", chat.clone()).await;
    let first = plain["choices"][0]["logprobs"]["content"][0]["token"].as_str().unwrap().to_string();
    // Ban the greedy first token: the answer starts differently.
    let banned_id = first_token_id(&server, &chat).await;
    let biased = json!({"logit_bias": {banned_id.to_string(): -100}}).merge(&chat);
    let other = post_ok(&server, "/v1/chat/completions", biased).await;
    let other_first = other["choices"][0]["logprobs"]["content"][0]["token"].as_str().unwrap();
    assert_ne!(other_first, first, "the banned token is not chosen");
    // Forcing a token: every generated token is it.
    let forced = json!({"logit_bias": {banned_id.to_string(): 100}, "max_tokens": 3}).merge(&chat);
    let forced = post_ok(&server, "/v1/chat/completions", forced).await;
    let tokens: Vec<&str> = forced["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, [first.as_str(); 3]);

    for (extra, needle) in [
        (json!({"response_format": {"type": "json_object"}}), "response_format json_object is not supported"),
        (json!({"tools": [{"type": "function", "function": {"name": "f"}}]}), "tools is not supported"),
        (json!({"tool_choice": "auto"}), "tool_choice is not supported"),
        (json!({"logit_bias": {"hello": 1}}), "not a token id"),
        (json!({"logit_bias": {"1": 101}}), "between -100 and 100"),
    ] {
        let (status, body) = post(&server, "/v1/chat/completions", &extra.clone().merge(&chat)).await;
        assert_eq!(status, 400, "{extra}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{extra}: {body}");
    }
    let text = json!({"response_format": {"type": "text"}}).merge(&chat);
    assert_eq!(post(&server, "/v1/chat/completions", &text).await.0, 200, "text is what is served anyway");
}

/// The id of the greedy first token of `chat`, from gRPC Generate (which streams token ids).
async fn first_token_id(server: &Server, chat: &Value) -> u32 {
    let mut grpc = InferenceClient::connect(server.grpc.clone()).await.unwrap();
    let content = chat["messages"][0]["content"].as_str().unwrap().to_string();
    let request = GenerateRequest {
        model: LLM.into(),
        messages: vec![ChatMessage { role: "user".into(), content }],
        temperature: Some(0.0),
        max_tokens: Some(1),
        ..Default::default()
    };
    let mut stream = grpc.generate(request).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    first.token_ids[0]
}
