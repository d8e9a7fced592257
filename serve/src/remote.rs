//! Services elsewhere that chain steps call: an OpenAI-compatible endpoint over HTTP (`/chat/completions`,
//! `/completions`) and a Qdrant over its REST API (`/collections/{name}/points/query`) or its gRPC API
//! (`qdrant.Points/Query`, with `grpc = true`). Every call has a timeout, retries with exponential backoff
//! on connection failures, timeouts, 429 and 5xx or gRPC's UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED,
//! DEADLINE_EXCEEDED, INTERNAL and UNKNOWN (honouring `Retry-After`), and a circuit breaker per endpoint:
//! after `breaker_failures` failed attempts in a row, calls fail at once for `breaker_cooldown_ms`, then one
//! trial call decides whether it closes again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferroserve_proto::qdrant as pb;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::vectors::Filter;
use crate::vectors::qdrant_proto;

/// Where a service is and how to call it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `http(s)://host:port/v1` for OpenAI-compatible servers; `http(s)://host:6333` for Qdrant's REST API,
    /// `http(s)://host:6334` for its gRPC API.
    pub url: String,
    /// Call Qdrant over gRPC (its `Points` service) instead of REST.
    #[serde(default)]
    pub grpc: bool,
    /// Environment variable holding the API key (sent as `Authorization: Bearer` and Qdrant's `api-key`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts after the first.
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    #[serde(default = "default_breaker_cooldown_ms")]
    pub breaker_cooldown_ms: u64,
}

fn default_timeout_ms() -> u64 {
    30_000
}
fn default_retries() -> u32 {
    2
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown_ms() -> u64 {
    30_000
}

impl Endpoint {
    pub fn check(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!("url {:?} must start with http:// or https://", self.url));
        }
        if self.timeout_ms == 0 || self.breaker_failures == 0 {
            return Err("timeout_ms and breaker_failures must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// The service answered with a status that retrying will not change (HTTP 4xx other than 429, gRPC
    /// INVALID_ARGUMENT, NOT_FOUND, ...).
    #[error("{url} answered {status}: {message}")]
    Refused { url: String, status: String, message: String },
    /// No usable answer after the retries, or the breaker is open.
    #[error("{0}")]
    Unavailable(String),
    /// What the step asks cannot be sent (a filter with no protobuf form, a malformed URL).
    #[error("{0}")]
    Invalid(String),
    /// An answer that is not what the protocol says.
    #[error("{url}: unexpected answer: {message}")]
    Malformed { url: String, message: String },
}

#[derive(Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

/// How one attempt failed.
enum Failure {
    /// Retrying will not change the answer, and the service is up.
    Refused { status: String, message: String },
    /// Worth another try (after `retry_after` where the service said).
    Transient { retry_after: Option<Duration>, message: String },
}

/// One HTTP client, a gRPC channel per endpoint URL (connections kept), and a breaker per endpoint URL.
pub struct Remote {
    client: reqwest::Client,
    channels: Mutex<HashMap<String, tonic::transport::Channel>>,
    breakers: Mutex<HashMap<String, Breaker>>,
}

impl Default for Remote {
    fn default() -> Self {
        Remote { client: reqwest::Client::new(), channels: Mutex::default(), breakers: Mutex::default() }
    }
}

/// What an OpenAI-compatible endpoint generated.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish_reason: String,
}

impl Remote {
    fn breakers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Breaker>> {
        self.breakers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails fast while the endpoint's breaker is open.
    fn admit(&self, ep: &Endpoint) -> Result<(), RemoteError> {
        let mut breakers = self.breakers();
        let b = breakers.entry(ep.url.clone()).or_default();
        if let Some(until) = b.open_until {
            let now = Instant::now();
            if now < until {
                return Err(RemoteError::Unavailable(format!(
                    "{} is unavailable: the circuit breaker opened after {} failures in a row; next try in {:.1}s",
                    ep.url,
                    b.failures,
                    (until - now).as_secs_f64()
                )));
            }
            // Half-open: this call is the trial; a failure reopens at once.
            b.open_until = None;
            b.failures = ep.breaker_failures.saturating_sub(1);
        }
        Ok(())
    }

    fn record(&self, ep: &Endpoint, ok: bool) {
        let mut breakers = self.breakers();
        let b = breakers.entry(ep.url.clone()).or_default();
        if ok {
            *b = Breaker::default();
            return;
        }
        b.failures += 1;
        if b.failures >= ep.breaker_failures {
            b.open_until = Some(Instant::now() + Duration::from_millis(ep.breaker_cooldown_ms));
            tracing::warn!(endpoint = %ep.url, failures = b.failures, "circuit breaker open");
            metrics::counter!("ferroserve_remote_breaker_opened_total").increment(1);
        }
    }

    /// Runs `attempt` with the endpoint's retries, backoff and breaker.
    async fn with_retries<T, F, Fut>(&self, ep: &Endpoint, mut attempt: F) -> Result<T, RemoteError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut last = String::new();
        for n in 0..=ep.retries {
            self.admit(ep)?;
            let started = Instant::now();
            let (retry_after, failure) = match attempt().await {
                Ok(answer) => {
                    self.record(ep, true);
                    metrics::histogram!("ferroserve_remote_call_seconds").record(started.elapsed().as_secs_f64());
                    return Ok(answer);
                }
                Err(Failure::Refused { status, message }) => {
                    // The request is wrong: retrying will not help, and the service is up.
                    self.record(ep, true);
                    return Err(RemoteError::Refused { url: ep.url.clone(), status, message });
                }
                Err(Failure::Transient { retry_after, message }) => (retry_after, message),
            };
            self.record(ep, false);
            metrics::counter!("ferroserve_remote_failures_total").increment(1);
            last = failure;
            if n < ep.retries {
                let backoff = Duration::from_millis(100 << n.min(6));
                tokio::time::sleep(retry_after.unwrap_or(backoff).min(Duration::from_secs(5))).await;
            }
        }
        Err(RemoteError::Unavailable(format!("{} failed after {} attempts: {last}", ep.url, ep.retries + 1)))
    }

    /// POSTs `body` to `ep.url` + `path`, with retries and the breaker; the JSON answer.
    pub async fn post(&self, ep: &Endpoint, path: &str, body: &Value) -> Result<Value, RemoteError> {
        let url = format!("{}{path}", ep.url.trim_end_matches('/'));
        let key = ep.api_key_env.as_ref().and_then(|k| std::env::var(k).ok());
        let answer = self
            .with_retries(ep, || async {
                let mut request = self.client.post(&url).timeout(Duration::from_millis(ep.timeout_ms)).json(body);
                if let Some(key) = &key {
                    request = request.bearer_auth(key).header("api-key", key);
                }
                let r = request
                    .send()
                    .await
                    .map_err(|e| Failure::Transient { retry_after: None, message: e.to_string() })?;
                let status = r.status();
                if status.is_success() {
                    return Ok(r.json::<Value>().await);
                }
                let retry_after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .map(Duration::from_secs);
                let message = r.text().await.unwrap_or_default();
                if status.as_u16() != 429 && !status.is_server_error() {
                    return Err(Failure::Refused { status: status.as_u16().to_string(), message });
                }
                let message = format!("{}: {}", status.as_u16(), message.chars().take(300).collect::<String>());
                Err(Failure::Transient { retry_after, message })
            })
            .await?;
        answer.map_err(|e| RemoteError::Malformed { url, message: e.to_string() })
    }

    /// A chat completion (`messages`: role and content) or, with `prompt`, a text completion.
    pub async fn complete(
        &self,
        ep: &Endpoint,
        model: &str,
        prompt: Result<&str, &[(String, String)]>,
        max_tokens: Option<usize>,
        temperature: f32,
        stop: &[String],
    ) -> Result<Completion, RemoteError> {
        let mut body = json!({"model": model, "temperature": temperature, "stream": false});
        if let Some(m) = max_tokens {
            body["max_tokens"] = json!(m);
        }
        if !stop.is_empty() {
            body["stop"] = json!(stop);
        }
        let (path, chat) = match prompt {
            Ok(text) => {
                body["prompt"] = json!(text);
                ("/completions", false)
            }
            Err(messages) => {
                body["messages"] =
                    messages.iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
                ("/chat/completions", true)
            }
        };
        let answer = self.post(ep, path, &body).await?;
        let choice = &answer["choices"][0];
        let text = if chat { &choice["message"]["content"] } else { &choice["text"] };
        let text = text.as_str().ok_or_else(|| RemoteError::Malformed {
            url: ep.url.clone(),
            message: format!("no text in {}", answer.to_string().chars().take(200).collect::<String>()),
        })?;
        let usage = |k: &str| answer["usage"][k].as_u64().unwrap_or(0) as usize;
        Ok(Completion {
            text: text.to_string(),
            prompt_tokens: usage("prompt_tokens"),
            completion_tokens: usage("completion_tokens"),
            finish_reason: choice["finish_reason"].as_str().unwrap_or("stop").to_string(),
        })
    }

    /// The nearest points of a Qdrant collection to `vector`: `(id, score, payload)`, over REST or gRPC.
    pub async fn qdrant_query(
        &self,
        ep: &Endpoint,
        collection: &str,
        vector: &[f32],
        k: usize,
        filter: Option<&Value>,
        score_threshold: Option<f32>,
    ) -> Result<Vec<Hit>, RemoteError> {
        if ep.grpc {
            return self.qdrant_query_grpc(ep, collection, vector, k, filter, score_threshold).await;
        }
        let mut body = json!({"query": vector, "limit": k, "with_payload": true});
        if let Some(f) = filter {
            body["filter"] = f.clone();
        }
        if let Some(t) = score_threshold {
            body["score_threshold"] = json!(t);
        }
        let answer = self.post(ep, &format!("/collections/{collection}/points/query"), &body).await?;
        let points = answer["result"]["points"]
            .as_array()
            .ok_or_else(|| RemoteError::Malformed { url: ep.url.clone(), message: "no result.points".into() })?;
        Ok(points
            .iter()
            .map(|p| {
                let payload = p["payload"].as_object().cloned().unwrap_or_default();
                (p["id"].clone(), p["score"].as_f64().unwrap_or(0.0) as f32, payload)
            })
            .collect())
    }

    /// `qdrant_query` through Qdrant's `Points/Query` over gRPC.
    async fn qdrant_query_grpc(
        &self,
        ep: &Endpoint,
        collection: &str,
        vector: &[f32],
        k: usize,
        filter: Option<&Value>,
        score_threshold: Option<f32>,
    ) -> Result<Vec<Hit>, RemoteError> {
        use pb::query::Variant;
        use pb::vector_input::Variant as Input;
        use pb::with_payload_selector::SelectorOptions;
        let invalid = |e: String| RemoteError::Invalid(format!("filter for {}: {e}", ep.url));
        let filter = match filter.map(Filter::parse).transpose().map_err(invalid)?.flatten() {
            Some(f) => Some(qdrant_proto::to_pb_filter(&f).map_err(invalid)?),
            None => None,
        };
        let query = pb::QueryPoints {
            collection_name: collection.to_string(),
            query: Some(pb::Query {
                variant: Some(Variant::Nearest(pb::VectorInput {
                    variant: Some(Input::Dense(pb::DenseVector { data: vector.to_vec() })),
                })),
            }),
            filter,
            limit: Some(k as u64),
            score_threshold,
            with_payload: Some(pb::WithPayloadSelector { selector_options: Some(SelectorOptions::Enable(true)) }),
            timeout: Some(ep.timeout_ms.div_ceil(1000)),
            ..Default::default()
        };
        let channel = self.channel(ep)?;
        let key = ep.api_key_env.as_ref().and_then(|k| std::env::var(k).ok());
        let answer = self
            .with_retries(ep, || async {
                let mut request = tonic::Request::new(query.clone());
                request.set_timeout(Duration::from_millis(ep.timeout_ms));
                if let Some(key) = key.as_deref().and_then(|k| k.parse().ok()) {
                    request.metadata_mut().insert("api-key", key);
                }
                let mut client = pb::points_client::PointsClient::new(channel.clone());
                client.query(request).await.map(tonic::Response::into_inner).map_err(grpc_failure)
            })
            .await?;
        answer
            .result
            .into_iter()
            .map(|p| {
                let malformed = |message| RemoteError::Malformed { url: ep.url.clone(), message };
                let id = qdrant_proto::point_id(p.id, "id").map_err(malformed)?;
                let payload = qdrant_proto::to_payload(p.payload, "payload").map_err(malformed)?;
                Ok((serde_json::to_value(&id).unwrap_or(Value::Null), p.score, payload))
            })
            .collect()
    }

    /// The endpoint's gRPC channel: made once (connecting on first use, reconnecting as needed), then shared.
    fn channel(&self, ep: &Endpoint) -> Result<tonic::transport::Channel, RemoteError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(&ep.url) {
            return Ok(c.clone());
        }
        let bad = |e: tonic::transport::Error| RemoteError::Invalid(format!("endpoint {}: {e}", ep.url));
        let mut endpoint = tonic::transport::Endpoint::from_shared(ep.url.clone())
            .map_err(bad)?
            .connect_timeout(Duration::from_millis(ep.timeout_ms));
        if ep.url.starts_with("https://") {
            endpoint =
                endpoint.tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots()).map_err(bad)?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(ep.url.clone(), channel.clone());
        Ok(channel)
    }
}

/// A point another Qdrant found: id, score and payload.
pub type Hit = (Value, f32, serde_json::Map<String, Value>);

/// Whether a gRPC status is worth another try (as Qdrant's clients retry).
fn grpc_failure(s: tonic::Status) -> Failure {
    use tonic::Code;
    let message = s.message().to_string();
    match s.code() {
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::DeadlineExceeded
        | Code::Internal
        | Code::Unknown
        | Code::Cancelled => Failure::Transient { retry_after: None, message: format!("{:?}: {message}", s.code()) },
        code => Failure::Refused { status: format!("{code:?}"), message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        Endpoint {
            url: url.into(),
            grpc: false,
            api_key_env: None,
            timeout_ms: 500,
            retries: 1,
            breaker_failures: 2,
            breaker_cooldown_ms: 60_000,
        }
    }

    #[tokio::test]
    async fn the_breaker_opens_after_failures_and_fails_fast() {
        // Nothing listens on port 9 (discard) of loopback in the test environment.
        let remote = Remote::default();
        let ep = endpoint("http://127.0.0.1:9");
        let e = remote.post(&ep, "/x", &json!({})).await.unwrap_err().to_string();
        assert!(e.contains("failed after 2 attempts"), "{e}");
        // Open now: refused without an attempt.
        let e = remote.post(&ep, "/x", &json!({})).await.unwrap_err().to_string();
        assert!(e.contains("circuit breaker opened after 2 failures"), "{e}");
        assert!(endpoint("ftp://x").check().is_err());
    }
}
