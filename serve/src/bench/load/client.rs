//! One request of `bench load` in each protocol it speaks, and what came back: the latency, and for streamed
//! chat the time to first token, the gaps between tokens and the token count.

use std::time::Instant;

use anyhow::Context;
use ferroserve_proto::ferroserve::v1::{EmbedRequest, inference_client::InferenceClient};
use serde_json::{Value, json};

/// The API a load run calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    /// OpenAI `POST /v1/embeddings` (ferroserve, vLLM, TEI's OpenAI route, ...).
    OpenaiEmbeddings,
    /// OpenAI `POST /v1/chat/completions`, streamed: time to first token and inter-token latency.
    OpenaiChat,
    /// Text Embeddings Inference `POST /embed`.
    Tei,
    /// KServe v2 / Open Inference Protocol `POST /v2/models/{model}/infer`, texts as a BYTES input.
    Kserve,
    /// ferroserve's native gRPC `Inference/Embed`.
    Grpc,
}

impl Api {
    /// The name `--api` takes.
    pub fn name(self) -> &'static str {
        match self {
            Api::OpenaiEmbeddings => "openai-embeddings",
            Api::OpenaiChat => "openai-chat",
            Api::Tei => "tei",
            Api::Kserve => "kserve",
            Api::Grpc => "grpc",
        }
    }

    /// What the run's throughput counts.
    pub fn unit(self) -> &'static str {
        if self == Api::OpenaiChat { "tokens" } else { "texts" }
    }
}

/// What one request is asked to do beyond its texts.
#[derive(Debug, Clone)]
pub struct RequestShape {
    pub model: String,
    pub max_tokens: usize,
    pub ignore_eos: bool,
    /// A system message sent before each chat prompt (a prefix every request shares).
    pub system: Option<String>,
    /// The BYTES input's name for `kserve`.
    pub kserve_input: String,
    /// Sent with every request (API key, cache mode).
    pub headers: Vec<(String, String)>,
}

/// One successful request.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub itl_ms: Vec<f64>,
    /// Texts embedded, or tokens generated.
    pub items: usize,
}

/// How one request ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Ok(Sample),
    /// 429 / RESOURCE_EXHAUSTED: the server shed the load, as it should when full.
    Rejected,
    Error(String),
}

/// A connection pool to one server in one protocol.
#[derive(Clone)]
pub enum Client {
    Http { http: reqwest::Client, url: String, api: Api },
    Grpc(InferenceClient<tonic::transport::Channel>),
}

impl Client {
    pub async fn connect(url: &str, api: Api) -> anyhow::Result<Self> {
        let url = url.trim_end_matches('/').to_string();
        Ok(match api {
            Api::Grpc => Client::Grpc(
                InferenceClient::connect(url.clone()).await.with_context(|| format!("connecting to {url} (gRPC)"))?,
            ),
            _ => Client::Http { http: reqwest::Client::builder().pool_max_idle_per_host(1024).build()?, url, api },
        })
    }

    /// Sends one request with `texts` (one prompt for chat) and times it.
    pub async fn send(&mut self, shape: &RequestShape, texts: Vec<String>) -> Outcome {
        let started = Instant::now();
        let result = match self {
            Client::Grpc(client) => grpc_embed(client, shape, texts).await,
            Client::Http { http, url, api } => match api {
                Api::OpenaiChat => chat(http, url, shape, texts, started).await,
                _ => embed(http, url, *api, shape, texts).await,
            },
        };
        match result {
            Ok(Some(mut sample)) => {
                sample.latency_ms = ms(started);
                Outcome::Ok(sample)
            }
            Ok(None) => Outcome::Rejected,
            Err(e) => Outcome::Error(format!("{e:#}")),
        }
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn with_headers(mut request: reqwest::RequestBuilder, shape: &RequestShape) -> reqwest::RequestBuilder {
    for (name, value) in &shape.headers {
        request = request.header(name, value);
    }
    request
}

/// `Ok(None)` for a 429; an error naming the status and body for any other failure.
async fn check(response: reqwest::Response) -> anyhow::Result<Option<reqwest::Response>> {
    let status = response.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Ok(None);
    }
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("HTTP {status}: {}", body.chars().take(200).collect::<String>());
    }
    Ok(Some(response))
}

async fn embed(
    http: &reqwest::Client,
    url: &str,
    api: Api,
    shape: &RequestShape,
    texts: Vec<String>,
) -> anyhow::Result<Option<Sample>> {
    let n = texts.len();
    let (path, body) = match api {
        Api::Tei => ("/embed".to_string(), json!({ "inputs": texts })),
        Api::Kserve => (
            format!("/v2/models/{}/infer", shape.model),
            json!({ "inputs": [{ "name": shape.kserve_input, "shape": [n], "datatype": "BYTES", "data": texts }] }),
        ),
        _ => ("/v1/embeddings".to_string(), json!({ "model": shape.model, "input": texts })),
    };
    let Some(response) =
        check(with_headers(http.post(format!("{url}{path}")).json(&body), shape).send().await?).await?
    else {
        return Ok(None);
    };
    response.bytes().await?;
    Ok(Some(Sample { items: n, ..Sample::default() }))
}

async fn grpc_embed(
    client: &mut InferenceClient<tonic::transport::Channel>,
    shape: &RequestShape,
    texts: Vec<String>,
) -> anyhow::Result<Option<Sample>> {
    let n = texts.len();
    let mut request =
        tonic::Request::new(EmbedRequest { model: shape.model.clone(), inputs: texts, ..Default::default() });
    for (name, value) in &shape.headers {
        if let (Ok(name), Ok(value)) = (name.parse::<tonic::metadata::MetadataKey<_>>(), value.parse()) {
            request.metadata_mut().insert(name, value);
        }
    }
    match client.embed(request).await {
        Ok(_) => Ok(Some(Sample { items: n, ..Sample::default() })),
        Err(s) if s.code() == tonic::Code::ResourceExhausted => Ok(None),
        Err(s) => anyhow::bail!("gRPC {:?}: {}", s.code(), s.message()),
    }
}

/// A streamed chat completion: the arrival of each content chunk gives the time to first token and the
/// gaps between tokens; the count is the usage's `completion_tokens` when the server reports it.
async fn chat(
    http: &reqwest::Client,
    url: &str,
    shape: &RequestShape,
    texts: Vec<String>,
    started: Instant,
) -> anyhow::Result<Option<Sample>> {
    let mut messages = Vec::new();
    if let Some(system) = &shape.system {
        messages.push(json!({ "role": "system", "content": system }));
    }
    messages.push(json!({ "role": "user", "content": texts.join("\n") }));
    let mut body = json!({
        "model": shape.model, "messages": messages, "max_tokens": shape.max_tokens, "temperature": 0,
        "stream": true, "stream_options": { "include_usage": true },
    });
    if shape.ignore_eos {
        body["ignore_eos"] = json!(true);
    }
    let request = http.post(format!("{url}/v1/chat/completions")).json(&body);
    let Some(mut response) = check(with_headers(request, shape).send().await?).await? else {
        return Ok(None);
    };
    let (mut sample, mut last, mut chunks, mut usage) = (Sample::default(), None::<Instant>, 0, None);
    let mut buffer = String::new();
    while let Some(bytes) = response.chunk().await? {
        buffer.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.trim().strip_prefix("data:").map(str::trim) else { continue };
            if data == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(data).context("a stream chunk that is not JSON")?;
            if let Some(error) = v.get("error") {
                anyhow::bail!("error in the stream: {error}");
            }
            if v["choices"][0]["delta"]["content"].as_str().is_some_and(|c| !c.is_empty()) {
                let now = Instant::now();
                match last {
                    None => sample.ttft_ms = Some(ms(started)),
                    Some(previous) => sample.itl_ms.push(now.duration_since(previous).as_secs_f64() * 1000.0),
                }
                last = Some(now);
                chunks += 1;
            }
            if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                usage = Some(n as usize);
            }
        }
    }
    sample.items = usage.unwrap_or(chunks);
    Ok(Some(sample))
}
