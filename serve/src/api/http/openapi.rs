//! The OpenAPI 3.1 document of every REST route and the pages that show it: `GET /openapi.json` and
//! `GET /docs` (Swagger UI, its files compiled into the binary; nothing is fetched from elsewhere).
//!
//! The document is assembled by `utoipa-axum` from the `#[utoipa::path]` attribute on each handler while the
//! router is built (`mod.rs`), so a route cannot exist without its description.

use std::sync::Arc;

use axum::Extension;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's fixed parts: title, description, tags and the API-key schemes. Paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ferroserve",
        description = "One server for embeddings, generation, tensor inference, vector collections and chains, \
                       speaking the protocols clients already use: OpenAI, TEI, KServe v2 (Open Inference \
                       Protocol), Qdrant and LangServe. gRPC (KServe, Qdrant, ferroserve's own) runs on its own \
                       port and is not described here.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "OpenAI", description = "Embeddings, chat and text completions, models"),
        (name = "TEI", description = "Text Embeddings Inference's embed route"),
        (name = "KServe v2", description = "Open Inference Protocol for every model (Triton's binary extension included)"),
        (name = "Model repository", description = "Load and unload models at run time (admin scope)"),
        (name = "Collections (Qdrant)", description = "HNSW vector collections with payload filters and server-side embedding"),
        (name = "Chains", description = "LangServe routes for the chains this server runs"),
        (name = "Admin", description = "Caches (admin scope)"),
        (name = "Operations", description = "Health, readiness, metrics and this document")
    ),
    modifiers(&ApiKeys)
)]
pub struct ApiDoc;

/// API keys (when the server has any) go as `Authorization: Bearer` or as an `api-key` header (Qdrant's
/// clients). Every operation lists both schemes and none, as a server without keys takes requests without one.
struct ApiKeys;

impl Modify for ApiKeys {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme("api-key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("api-key"))));
        use utoipa::openapi::security::SecurityRequirement;
        openapi.security = Some(vec![
            SecurityRequirement::default(),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("api-key", Vec::<String>::new()),
        ]);
    }
}

/// The document as JSON, rendered once when the router is built.
#[derive(Clone)]
pub struct Rendered(pub Arc<str>);

impl Rendered {
    pub fn new(document: &Document) -> Self {
        // Serializing a document of plain data cannot fail; an empty object keeps the route answering if it did.
        Rendered(document.to_json().unwrap_or_else(|_| "{}".into()).into())
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "Operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of the REST API", body = Object)))]
pub async fn document(Extension(rendered): Extension<Rendered>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], rendered.0.to_string()).into_response()
}

/// Swagger UI over `/openapi.json`.
#[utoipa::path(get, path = "/docs", tag = "Operations",
    responses((status = 200, description = "An HTML page", content_type = "text/html", body = String)))]
pub async fn page() -> Response {
    static_file("text/html; charset=utf-8", CACHE_AN_HOUR, PAGE.as_bytes())
}

/// Swagger UI's files (`/docs/{file}`).
pub async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match file.as_str() {
        "swagger-ui-bundle.js" => static_file("text/javascript; charset=utf-8", CACHE_AN_HOUR, SWAGGER_JS),
        "swagger-ui.css" => static_file("text/css; charset=utf-8", CACHE_AN_HOUR, SWAGGER_CSS),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

const CACHE_AN_HOUR: &str = "public, max-age=3600";

/// A file compiled into the binary, with its type and how long browsers may keep it.
pub(super) fn static_file(content_type: &'static str, cache_control: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache_control)),
        ],
        body,
    )
        .into_response()
}

const SWAGGER_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui/swagger-ui-bundle.js"));
const SWAGGER_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui/swagger-ui.css"));

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>ferroserve API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"><p style="font-family: sans-serif; margin: 2em">Loading the API description from
    <a href="openapi.json">openapi.json</a>&hellip;</p></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script>
    if (window.SwaggerUIBundle) {
      window.ui = SwaggerUIBundle({ url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true,
                                    persistAuthorization: true, tryItOutEnabled: false });
    }
  </script>
</body>
</html>
"##;
