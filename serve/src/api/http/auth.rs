//! API keys on the REST routes: what each route needs ([`access_of`]), and the middleware that checks the
//! presented key against it, answering 401 or 403 with an OpenAI-style error body, or lets the request
//! through with its [`Principal`] in the request's extensions (and, for a key with a token limit, the
//! request's [`EstimatedTokens`], from the one read of its body).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, OpenAiError};
use super::ratelimit::{EstimatedTokens, buffered};
use crate::api::auth::{Access, AuthError, Keys, Principal};
use crate::engine::Engine;

/// What the middleware needs: the keys (`None`: authentication off), the engine (the default model of
/// `/embed`) and the body limit (a body read to find its model is read within it).
#[derive(Clone)]
pub struct AuthState {
    pub keys: Option<Arc<Keys>>,
    pub engine: Arc<Engine>,
    pub max_body_bytes: usize,
}

/// Routes whose model is named in the JSON body.
const MODEL_IN_BODY: [&str; 4] = ["/v1/embeddings", "/v1/chat/completions", "/v1/completions", "/embed"];

/// Routes anyone may call: health, and the web console's page and files (the page asks for a key).
const OPEN: [&str; 8] = ["/health", "/ready", "/v2/health/live", "/v2/health/ready", "/", "/ui", "/ui/", "/ui/{file}"];

/// What a route needs of the caller, from its pattern and method (a model named in the body is found
/// later, only for keys restricted to some models).
fn access_of(method: &Method, route: &str, path: &str, open_metrics: bool) -> Access {
    let writes = *method == Method::PUT || *method == Method::DELETE;
    let collection_write = route.starts_with("/collections/{name}")
        && (writes
            || matches!(
                route,
                "/collections/{name}/snapshots"
                    | "/collections/{name}/points/delete"
                    | "/collections/{name}/points/payload"
            ));
    if OPEN.contains(&route) || (route == "/metrics" && open_metrics) {
        Access::Open
    } else if route.starts_with("/admin/")
        || route.starts_with("/v2/repository/")
        || collection_write
        || (route == "/chains/{name}" && writes)
    {
        Access::Admin
    } else if route.starts_with("/v2/models/{model}") {
        // /v2/models/{model}/...: the third segment, as the router matched it.
        let model = path.split('/').nth(3).unwrap_or_default();
        Access::Model(percent_decoded(model))
    } else {
        Access::Any
    }
}

/// Checks the caller's key against what the route needs.
pub async fn authorize(State(state): State<AuthState>, request: Request, next: Next) -> Response {
    let Some(keys) = state.keys.clone() else {
        let mut request = request;
        request.extensions_mut().insert(Principal::anonymous());
        return next.run(request).await;
    };
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_default();
    let access = access_of(request.method(), &route, request.uri().path(), keys.open_metrics());
    let principal = match keys.authorize(request.headers(), &access) {
        Ok(principal) => principal,
        Err(e) => return refusal(&e),
    };
    let mut request = request;
    // The body is read (once) when the key's model scope or token limit needs what it says.
    let check_model = MODEL_IN_BODY.contains(&route.as_str()) && !principal.all_models();
    let count_tokens = principal.limits.limits_tokens() && access != Access::Open;
    if check_model || count_tokens {
        let bytes;
        (request, bytes) = match buffered(request, state.max_body_bytes).await {
            Ok(buffered) => buffered,
            Err(response) => return response,
        };
        // A body that does not parse is let through: its handler refuses it with the right message.
        let fields = serde_json::from_slice::<BodyFields>(&bytes).unwrap_or_default();
        if check_model {
            let model =
                fields.model.or_else(|| (route == "/embed").then(|| state.engine.default_embedding_model()).flatten());
            if let Some(model) = model
                && let Err(e) = principal.allow(&Access::Model(model))
            {
                return refusal(&e);
            }
        }
        if count_tokens {
            let asked = fields.max_completion_tokens.or(fields.max_tokens).unwrap_or(0);
            request.extensions_mut().insert(EstimatedTokens::of(&bytes, asked));
        }
    }
    request.extensions_mut().insert(principal);
    request.extensions_mut().insert(access);
    next.run(request).await
}

/// What the middlewares read of a JSON body: the model, and the completion tokens asked for.
#[derive(Default, Deserialize)]
struct BodyFields {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
}

/// 401 (with `WWW-Authenticate: Bearer`) or 403, in OpenAI's error shape, which every client here reads.
fn refusal(e: &AuthError) -> Response {
    let status = match e {
        AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut response = OpenAiError(ApiError::new(status, e.code(), e.to_string())).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// A path segment with its `%XX` escapes decoded (model names may hold characters a URL escapes).
fn percent_decoded(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_what_they_change() {
        let a = |m: Method, route: &str, path: &str| access_of(&m, route, path, true);
        assert_eq!(a(Method::GET, "/health", "/health"), Access::Open);
        assert_eq!(a(Method::GET, "/metrics", "/metrics"), Access::Open);
        assert_eq!(access_of(&Method::GET, "/metrics", "/metrics", false), Access::Any);
        assert_eq!(a(Method::POST, "/admin/cache/invalidate", "/admin/cache/invalidate"), Access::Admin);
        assert_eq!(
            a(Method::POST, "/v2/repository/models/{model}/load", "/v2/repository/models/m/load"),
            Access::Admin
        );
        assert_eq!(a(Method::PUT, "/collections/{name}", "/collections/c"), Access::Admin);
        assert_eq!(a(Method::GET, "/collections/{name}", "/collections/c"), Access::Any);
        assert_eq!(a(Method::PUT, "/collections/{name}/points", "/collections/c/points"), Access::Admin);
        assert_eq!(a(Method::POST, "/collections/{name}/points", "/collections/c/points"), Access::Any);
        assert_eq!(a(Method::POST, "/collections/{name}/points/delete", "/collections/c/points/delete"), Access::Admin);
        assert_eq!(a(Method::POST, "/collections/{name}/points/query", "/collections/c/points/query"), Access::Any);
        assert_eq!(a(Method::PUT, "/chains/{name}", "/chains/rag"), Access::Admin);
        assert_eq!(a(Method::POST, "/chains/{name}/invoke", "/chains/rag/invoke"), Access::Any);
        assert_eq!(
            a(Method::POST, "/v2/models/{model}/versions/{version}/infer", "/v2/models/a%2Fb/versions/1/infer"),
            Access::Model("a/b".into())
        );
        assert_eq!(a(Method::GET, "/v2/models/stats", "/v2/models/stats"), Access::Any);
        assert_eq!(a(Method::GET, "", "/nowhere"), Access::Any);
    }

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decoded("all-MiniLM-L6-v2%3Aonnx"), "all-MiniLM-L6-v2:onnx");
        assert_eq!(percent_decoded("100%"), "100%");
        assert_eq!(percent_decoded("%zz"), "%zz");
    }
}
