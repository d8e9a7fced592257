//! End-to-end generation tests against the real binary and the real SmolLM2 GGUF: greedy output is the same
//! alone, among 8 concurrent streams and after its prefix was cached; cached tokens are reported; gRPC
//! `Generate` streams the same text; a client that disconnects frees its slot; overload gets 429.

use std::time::{Duration, Instant};

use ferroserve_e2e::{LLM, Server, llm_repository, metric, post_ok, semantic_repository, sse_data, wait_for_metric};
use ferroserve_proto::ferroserve::v1::inference_client::InferenceClient;
use ferroserve_proto::ferroserve::v1::{ChatMessage, GenerateRequest};
use serde_json::{Value, json};

/// A long shared system prompt (a chain template would look like this), then different questions.
const SYSTEM: &str = "You are a careful assistant for a package archive. Answer in one short sentence, plainly, \
    without lists. If a question is about software, name the tool. If you do not know, say so. Keep answers \
    factual and avoid speculation about versions or release dates.";
const QUESTIONS: [&str; 4] = [
    "What is the capital of France?",
    "What does a compiler do?",
    "Name a tool that compresses files.",
    "What is Debian?",
];

fn chat(question: &str) -> Value {
    json!({
        "model": LLM,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        "temperature": 0,
        "max_tokens": 24,
        // The response cache would answer repeated requests without running the model this test is about.
        "cache": "skip",
    })
}

async fn answer(server: &Server, question: &str) -> (String, Value) {
    let r = post_ok(server, "/v1/chat/completions", chat(question)).await;
    (r["choices"][0]["message"]["content"].as_str().unwrap().to_string(), r["usage"].clone())
}

/// Streams a chat completion and returns the concatenated text.
async fn stream_answer(server: &Server, question: &str) -> String {
    let mut body = chat(question);
    body["stream"] = json!(true);
    let r =
        reqwest::Client::new().post(format!("{}/v1/chat/completions", server.http)).json(&body).send().await.unwrap();
    assert!(r.status().is_success());
    let data = sse_data(&r.text().await.unwrap());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn greedy_output_is_the_same_alone_concurrent_and_with_a_cached_prefix() {
    // Prefix reuse off: every request prefills its whole prompt.
    let server = Server::start_with_repository(&llm_repository("gen-nocache", "prefix_cache_mb = 0"), &[]).await;
    let mut alone = Vec::new();
    for q in QUESTIONS {
        let (text, usage) = answer(&server, q).await;
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
        assert!(!text.is_empty());
        alone.push(text);
    }
    assert!(alone[0].contains("Paris"), "{:?}", alone[0]);
    // 8 concurrent streams (each question twice), all running in the same decode steps.
    let streams: Vec<_> = (0..8).map(|i| stream_answer(&server, QUESTIONS[i % 4])).collect();
    let together = futures::future::join_all(streams).await;
    for (i, text) in together.iter().enumerate() {
        assert_eq!(text, &alone[i % 4], "stream {i} among 8 differs from the same request alone");
    }
    let metrics = reqwest::get(format!("{}/metrics", server.http)).await.unwrap().text().await.unwrap();
    let steps = metric(&metrics, "ferroserve_generation_step_tokens_count").unwrap_or(0.0);
    assert!(steps > 0.0, "step metrics are exported");
    drop(server);

    // Prefix reuse on: the first request fills the cache with the shared system prompt; the others reuse it.
    let server = Server::start_with_repository(&llm_repository("gen-cache", "prefix_cache_mb = 64"), &[]).await;
    let (first, usage) = answer(&server, QUESTIONS[0]).await;
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(first, alone[0]);
    for (i, q) in QUESTIONS.iter().enumerate().skip(1) {
        let (text, usage) = answer(&server, q).await;
        let cached = usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
        assert!(cached >= 50, "question {i}: the system prompt's tokens come from the cache, got {cached}");
        assert_eq!(text, alone[i], "question {i} after its prefix was cached");
    }
    // The same request again reuses all but its last token.
    let (again, usage) = answer(&server, QUESTIONS[0]).await;
    assert_eq!(again, alone[0]);
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap(), prompt - 1);

    // gRPC Generate streams the same text.
    let mut client = InferenceClient::connect(server.grpc.clone()).await.unwrap();
    let request = GenerateRequest {
        model: LLM.into(),
        messages: vec![
            ChatMessage { role: "system".into(), content: SYSTEM.into() },
            ChatMessage { role: "user".into(), content: QUESTIONS[1].into() },
        ],
        max_tokens: Some(24),
        temperature: Some(0.0),
        ..Default::default()
    };
    let mut stream = client.generate(request).await.unwrap().into_inner();
    let mut text = String::new();
    let mut last = None;
    while let Some(item) = stream.message().await.unwrap() {
        text.push_str(&item.text);
        last = Some(item);
    }
    let last = last.unwrap();
    assert_eq!(text, alone[1]);
    assert!(["stop", "length"].contains(&last.finish_reason.as_str()));
    assert!(last.usage.unwrap().cached_tokens > 0);
}

#[tokio::test]
async fn seeds_stop_strings_and_completions() {
    let server = Server::start_with_repository(&llm_repository("gen-sampling", ""), &[]).await;
    let sampled = |seed: u64| {
        let server = &server;
        async move {
            let body = json!({"model": LLM, "prompt": "Once upon a time", "temperature": 0.9, "top_p": 0.95,
                              "top_k": 40, "seed": seed, "max_tokens": 16, "cache": "skip"});
            post_ok(server, "/v1/completions", body).await["choices"][0]["text"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(sampled(7).await, sampled(7).await, "same seed, same text");
    let (a, b, c) = (sampled(1).await, sampled(2).await, sampled(3).await);
    assert!(a != b || b != c, "different seeds give different texts");

    // A stop string ends the text before it, with finish_reason "stop".
    let body = json!({"model": LLM, "prompt": "1, 2, 3, 4, 5, 6,", "temperature": 0, "max_tokens": 30, "stop": [" 9"]});
    let r = post_ok(&server, "/v1/completions", body).await;
    let text = r["choices"][0]["text"].as_str().unwrap();
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert!(text.starts_with(" 7, 8,") && !text.contains('9'), "{text:?}");
    assert_eq!(r["usage"]["prompt_tokens"], 17);

    // Logprobs: the chosen token and alternatives, most likely first.
    let body = json!({"model": LLM, "messages": [{"role": "user", "content": "Say hi"}], "temperature": 0,
                      "max_tokens": 3, "logprobs": true, "top_logprobs": 2});
    let r = post_ok(&server, "/v1/chat/completions", body).await;
    let content = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 3);
    let top = content[0]["top_logprobs"].as_array().unwrap();
    assert_eq!(top.len(), 2);
    assert_eq!(top[0]["token"], content[0]["token"], "greedy picks the most likely token");
}

async fn status_and_message(server: &Server, path: &str, body: Value) -> (u16, String) {
    let r = reqwest::Client::new().post(format!("{}{path}", server.http)).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    (status, v["error"]["message"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn bad_requests_get_clear_4xx() {
    let server = Server::start_with_repository(&llm_repository("gen-errors", "max_context_tokens = 512"), &[]).await;
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (json!({"model": "nope", "messages": user}), 404, "not served"),
        (json!({"model": LLM, "messages": []}), 400, "messages is empty"),
        (json!({"model": LLM, "messages": [{"role": "wizard", "content": "hi"}]}), 400, "role \"wizard\""),
        (json!({"model": LLM, "messages": user, "max_tokens": 100000}), 400, "context of 512"),
        (json!({"model": LLM, "messages": user, "temperature": -1}), 400, "temperature"),
        (json!({"model": LLM, "messages": user, "top_p": 0}), 400, "top_p"),
        (json!({"model": LLM, "messages": user, "n": 2}), 400, "n = 1"),
        (json!({"model": LLM, "messages": user, "stop": [""]}), 400, "stop"),
        (json!({"model": LLM, "messages": "hi"}), 400, "messages"),
    ];
    for (body, status, needle) in cases {
        let (got, message) = status_and_message(&server, "/v1/chat/completions", body.clone()).await;
        assert_eq!(got, status, "{body}: {message}");
        assert!(message.contains(needle), "{body}: {message:?} should mention {needle:?}");
    }
    let (got, message) = status_and_message(&server, "/v1/completions", json!({"model": LLM, "prompt": ""})).await;
    assert_eq!((got, message.as_str()), (400, "prompt is empty"));
    let long = "word ".repeat(600);
    let (got, message) = status_and_message(&server, "/v1/completions", json!({"model": LLM, "prompt": long})).await;
    assert_eq!(got, 400);
    assert!(message.contains("takes at most 512 tokens"), "{message}");
}

async fn metrics_text(server: &Server) -> String {
    reqwest::get(format!("{}/metrics", server.http)).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn a_disconnected_stream_frees_its_slot_and_overload_is_refused() {
    let repo = llm_repository("gen-slots", "max_num_seqs = 1\nmax_waiting = 1\nmax_context_tokens = 2048");
    let server = Server::start_with_repository(&repo, &[]).await;
    let long = json!({"model": LLM, "prompt": "Count: 1, 2, 3,", "max_tokens": 1500, "temperature": 0,
                      "stream": true});
    let client = reqwest::Client::new();
    let mut first = client.post(format!("{}/v1/completions", server.http)).json(&long).send().await.unwrap();
    assert!(first.chunk().await.unwrap().is_some(), "the first stream is generating");
    // The one slot is taken: a second request waits, a third is refused at once.
    let waiting = tokio::spawn({
        let (client, url, body) = (client.clone(), format!("{}/v1/completions", server.http), long.clone());
        async move { client.post(url).json(&body).send().await.unwrap().text().await.unwrap() }
    });
    wait_for_metric(&server, "ferroserve_generation_waiting", |w| w >= 1.0).await;
    let started = Instant::now();
    let refused = client.post(format!("{}/v1/completions", server.http)).json(&long).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(2), "refused at once");
    // Disconnect the first: its slot goes to the waiting one.
    drop(first);
    waiting.abort();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = metrics_text(&server).await;
        let cancelled = metric(&m, "ferroserve_generation_cancelled_total").unwrap_or(0.0);
        let running = metric(&m, "ferroserve_generation_running").unwrap_or(1.0);
        let waiting = metric(&m, "ferroserve_generation_waiting").unwrap_or(1.0);
        if cancelled >= 1.0 && running == 0.0 && waiting == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slots not freed after disconnects: cancelled {cancelled}, running {running}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The server is free again.
    let r = post_ok(&server, "/v1/completions", json!({"model": LLM, "prompt": "Hi", "max_tokens": 2})).await;
    assert_eq!(r["usage"]["completion_tokens"], 2);
}

async fn post(server: &Server, path: &str, body: &Value) -> (u16, String, Value) {
    let r = reqwest::Client::new().post(format!("{}{path}", server.http)).json(body).send().await.unwrap();
    let cache = r.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, cache, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn exact_response_cache() {
    let server = Server::start_with_repository(&llm_repository("gen-response-cache", ""), &[]).await;
    let conversation = |first: &str| {
        json!({"model": LLM, "temperature": 0, "max_tokens": 12, "messages": [
            {"role": "user", "content": first},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": "Say it again, shorter."},
        ]})
    };
    let body = conversation("Describe the sea.");
    let (status, cache, miss) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!((status, cache.as_str()), (200, "MISS"));
    let generated = metric(&metrics_text(&server).await, "ferroserve_generation_tokens_total").unwrap();
    let (_, cache, hit) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(cache, "HIT");
    assert_eq!(hit["choices"][0]["message"], miss["choices"][0]["message"]);
    assert_eq!(hit["usage"]["completion_tokens"], miss["usage"]["completion_tokens"]);
    assert_eq!(hit["usage"]["prompt_tokens_details"]["cached_tokens"], miss["usage"]["prompt_tokens"]);
    assert_eq!(metric(&metrics_text(&server).await, "ferroserve_generation_tokens_total").unwrap(), generated);
    // The streamed form of the same request replays as a stream.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = reqwest::Client::new().post(format!("{}/v1/chat/completions", server.http)).json(&streamed).send().await;
    let r = r.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT");
    let text: String = sse_data(&r.text().await.unwrap())
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"].as_str().map(String::from)
        })
        .collect();
    assert_eq!(text, miss["choices"][0]["message"]["content"].as_str().unwrap());

    // Another conversation that ends with the same message does not collide.
    let (_, cache, _) = post(&server, "/v1/chat/completions", &conversation("Describe a forest.")).await;
    assert_eq!(cache, "MISS");
    // Random sampling is never cached; a fixed seed is.
    let random = json!({"model": LLM, "prompt": "Once", "temperature": 0.8, "max_tokens": 4});
    post(&server, "/v1/completions", &random).await;
    assert_eq!(post(&server, "/v1/completions", &random).await.1, "MISS");
    let seeded = json!({"model": LLM, "prompt": "Once", "temperature": 0.8, "seed": 5, "max_tokens": 4});
    post(&server, "/v1/completions", &seeded).await;
    assert_eq!(post(&server, "/v1/completions", &seeded).await.1, "HIT");
    // Modes: only misses with 404; skip neither reads nor writes; refresh recomputes.
    let mut only = json!({"model": LLM, "prompt": "Never asked", "temperature": 0, "max_tokens": 4, "cache": "only"});
    assert_eq!(post(&server, "/v1/completions", &only).await.0, 404);
    only["cache"] = json!("skip");
    assert_eq!(post(&server, "/v1/completions", &only).await.1, "MISS");
    only["cache"] = json!("only");
    assert_eq!(post(&server, "/v1/completions", &only).await.0, 404, "skip did not write");
    let mut refresh = body.clone();
    refresh["cache"] = json!("refresh");
    assert_eq!(post(&server, "/v1/chat/completions", &refresh).await.1, "MISS");
    // Invalidation of the model's entries.
    let r = reqwest::Client::new()
        .post(format!("{}/admin/cache/invalidate", server.http))
        .json(&json!({"model": LLM}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(post(&server, "/v1/chat/completions", &body).await.1, "MISS");
}

/// A chat with one system prompt and one question, greedy.
fn ask(system: &str, question: &str, max_tokens: usize) -> Value {
    json!({"model": LLM, "temperature": 0, "max_tokens": max_tokens, "messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": question},
    ]})
}

#[tokio::test]
async fn semantic_response_cache() {
    // Default threshold (0.95). MiniLM similarities of these questions to "What is the capital of France?":
    // "What's the capital of France?" 0.99, "What is the capital city of France?" 0.96, "... of Germany?" 0.66.
    let server = Server::start_with_repository(&semantic_repository("gen-semantic", ""), &[]).await;
    let system = "You are a careful assistant. Answer in one short sentence.";
    let (status, cache, first) =
        post(&server, "/v1/chat/completions", &ask(system, "What is the capital of France?", 12)).await;
    assert_eq!((status, cache.as_str()), (200, "MISS"));
    let generated = metric(&metrics_text(&server).await, "ferroserve_generation_tokens_total").unwrap();

    // A paraphrase gets the stored answer without generating, with its similarity and its own prompt size.
    let paraphrase = ask(system, "What's the capital of France?", 12);
    let r = reqwest::Client::new().post(format!("{}/v1/chat/completions", server.http)).json(&paraphrase).send();
    let r = r.await.unwrap();
    assert_eq!(r.headers()["x-cache"], "SEMANTIC");
    let similarity: f32 = r.headers()["x-cache-similarity"].to_str().unwrap().parse().unwrap();
    assert!((0.95..=1.0001).contains(&similarity), "similarity {similarity}");
    let hit: Value = r.json().await.unwrap();
    assert_eq!(hit["choices"][0]["message"], first["choices"][0]["message"]);
    assert_eq!(hit["usage"]["prompt_tokens_details"]["cached_tokens"], hit["usage"]["prompt_tokens"]);
    assert_eq!(metric(&metrics_text(&server).await, "ferroserve_generation_tokens_total").unwrap(), generated);
    let mut streamed = ask(system, "What is the capital city of France?", 12);
    streamed["stream"] = json!(true);
    let r = reqwest::Client::new().post(format!("{}/v1/chat/completions", server.http)).json(&streamed).send();
    assert_eq!(r.await.unwrap().headers()["x-cache"], "SEMANTIC", "streamed requests replay a semantic hit");

    // Misses: another question; the same question after another system prompt; other parameters.
    for (body, why) in [
        (ask(system, "What is the capital of Germany?", 12), "another question"),
        (ask("You are a pirate. Answer like a pirate.", "What is the capital of France?", 12), "another context"),
        (ask(system, "What's the capital of France?", 13), "another max_tokens"),
    ] {
        assert_eq!(post(&server, "/v1/chat/completions", &body).await.1, "MISS", "{why}");
    }
    let mut random = ask(system, "What's the capital of France?", 12);
    random["temperature"] = json!(0.8);
    assert_eq!(post(&server, "/v1/chat/completions", &random).await.1, "MISS", "random sampling is never cached");
    // Modes: `only` answers from the semantic cache or 404s; `skip` does not look.
    let mut only = ask(system, "What's the capital of France?", 12);
    only["cache"] = json!("only");
    assert_eq!(post(&server, "/v1/chat/completions", &only).await.1, "SEMANTIC");
    only["messages"][1]["content"] = json!("How do volcanoes form?");
    assert_eq!(post(&server, "/v1/chat/completions", &only).await.0, 404);
    let mut skip = ask(system, "What's the capital of France?", 12);
    skip["cache"] = json!("skip");
    assert_eq!(post(&server, "/v1/chat/completions", &skip).await.1, "MISS");

    // A conversation longer than the embedding model takes is served without the semantic cache.
    let long = ask(system, &"Tell me about the sea and its tides. ".repeat(60), 2);
    assert_eq!(post(&server, "/v1/chat/completions", &long).await.0, 200);
    let m = metrics_text(&server).await;
    assert!(metric(&m, "ferroserve_cache_errors_total{cache=\"semantic\"").unwrap_or(0.0) >= 1.0);
    assert!(metric(&m, "ferroserve_cache_hits_total{cache=\"semantic\"").unwrap() >= 3.0);

    let usage: Value = reqwest::get(format!("{}/admin/cache", server.http)).await.unwrap().json().await.unwrap();
    assert!(usage["semantic"][LLM]["entries"].as_u64().unwrap() >= 4, "{usage}");
    // Invalidating the model's responses empties its semantic cache too.
    let r = reqwest::Client::new().post(format!("{}/admin/cache/invalidate", server.http)).json(&json!({"model": LLM}));
    assert_eq!(r.send().await.unwrap().status(), 200);
    assert_eq!(post(&server, "/v1/chat/completions", &paraphrase).await.1, "MISS");
}

/// A chain over gRPC: the final generation step's text streams, the last message has the whole output and the
/// steps; unknown chains and malformed JSON are refused with their codes.
#[tokio::test]
async fn run_chain_streams_over_grpc() {
    use ferroserve_proto::ferroserve::v1::RunChainRequest;
    use ferroserve_proto::ferroserve::v1::run_chain_response::Event;
    let repo = llm_repository("chain", "");
    let chains = repo.join("chains");
    std::fs::create_dir_all(&chains).unwrap();
    std::fs::write(
        chains.join("ask.toml"),
        format!(
            "configurable = [\"max_tokens\"]\n[[steps]]\nname = \"prompt\"\ntype = \"prompt\"\n\
             messages = [{{ role = \"user\", content = \"{{{{ input.question }}}}\" }}]\n\
             [[steps]]\nname = \"answer\"\ntype = \"generate\"\nmodel = \"{LLM}\"\nprompt = \"prompt\"\nmax_tokens = 12\n"
        ),
    )
    .unwrap();
    let server = Server::start_with_repository(&repo, &["--chains-path", chains.to_str().unwrap()]).await;
    let mut client = InferenceClient::connect(server.grpc.clone()).await.unwrap();
    let request = |chain: &str, input: &str| RunChainRequest {
        chain: chain.into(),
        input_json: input.into(),
        configurable_json: r#"{"max_tokens": 8}"#.into(),
    };
    let mut stream = client
        .run_chain(request("ask", r#"{"question": "What is the capital of France?"}"#))
        .await
        .unwrap()
        .into_inner();
    let (mut text, mut output, mut steps) = (String::new(), None, Vec::new());
    while let Some(message) = stream.message().await.unwrap() {
        match message.event {
            Some(Event::Text(piece)) => text.push_str(&piece),
            Some(Event::OutputJson(json)) => {
                output = Some(serde_json::from_str::<Value>(&json).unwrap());
                steps = message.steps;
            }
            None => panic!("an empty message"),
        }
    }
    let output = output.expect("the output comes last");
    assert_eq!(output["type"], "ai");
    assert_eq!(output["content"].as_str().unwrap(), text, "the pieces make the answer");
    assert!(output["usage_metadata"]["output_tokens"].as_u64().unwrap() <= 8, "configurable max_tokens applies");
    assert_eq!(steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["prompt", "answer"]);
    let e = client.run_chain(request("nope", "{}")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = client.run_chain(request("ask", "{not json")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // A bad input fails in the stream with the step's code.
    let mut stream = client.run_chain(request("ask", r#"{"q": 1}"#)).await.unwrap().into_inner();
    let e = stream.message().await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("input.question"), "{}", e.message());
}
