//! The one request extractor of the REST routes: a JSON body whose rejection (malformed JSON, a wrong
//! field, a missing content type, a body over the limit) is answered in the route's dialect — OpenAI's
//! error object or TEI's — through that dialect's one mapping (`error`). And the response side: a
//! response's [`ResponseMeta`] as headers.

use std::marker::PhantomData;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, IntoResponseParts, ResponseParts};
use serde::de::DeserializeOwned;

use crate::engine::ResponseMeta;

/// A JSON body of `T`; a body that is not one is refused as `E` says (`OpenAiError`, `TeiError`).
pub struct JsonBody<T, E>(pub T, pub PhantomData<fn() -> E>);

impl<S, T, E> FromRequest<S> for JsonBody<T, E>
where
    S: Send + Sync,
    T: DeserializeOwned,
    E: From<JsonRejection> + IntoResponse,
{
    type Rejection = E;

    async fn from_request(request: Request, state: &S) -> Result<Self, E> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(JsonBody(value, PhantomData))
    }
}

/// A response's [`ResponseMeta`] as headers.
pub struct MetaHeaders(pub ResponseMeta);

impl IntoResponseParts for MetaHeaders {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut parts: ResponseParts) -> Result<ResponseParts, Self::Error> {
        for (name, value) in self.0.pairs() {
            if let Ok(value) = HeaderValue::from_str(&value) {
                parts.headers_mut().insert(HeaderName::from_static(name), value);
            }
        }
        Ok(parts)
    }
}
