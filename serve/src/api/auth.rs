//! API keys, shared by both transports: which key a request presents, whether it is one of ours, and what
//! its holder may do. Keys are kept only as SHA-256 digests and compared in constant time against every
//! configured key (no early exit that would tell which one nearly matched).
//!
//! A key's scopes: the models it may call (`models`, `"*"` for all) and `admin`, which opens `/admin`,
//! repository control, chain definitions and collection writes. Health, readiness and (by default) metrics
//! need no key. Without any key configured every request is let in as [`Principal::anonymous`].

use std::sync::Arc;

use anyhow::Context;
use axum::http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ratelimit::RateLimits;

/// The environment variable that may hold one key with every scope (like the `--api-key` of peers).
pub const ENV_API_KEY: &str = "FERROSERVE_API_KEY";

/// The `[auth]` table of the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub keys: Vec<KeyConfig>,
    /// `GET /metrics` without a key (Prometheus scrapers usually carry none).
    pub open_metrics: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { keys: Vec::new(), open_metrics: true }
    }
}

/// One `[[auth.keys]]` entry: a name (logs, metrics, rate limits), the key as a digest or read from the
/// environment at start, and its scopes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub name: String,
    /// Hex SHA-256 of the key (`ferroserve hash-key` prints it).
    #[serde(default)]
    pub sha256: Option<String>,
    /// An environment variable holding the key itself; it is hashed at start and not kept.
    #[serde(default)]
    pub env: Option<String>,
    /// Models this key may call by name; `"*"` (the default) for all.
    #[serde(default = "all_models")]
    pub models: Vec<String>,
    #[serde(default)]
    pub admin: bool,
    /// Requests per second (token bucket); none: no limit.
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Requests that may come at once; default: one second's worth.
    #[serde(default)]
    pub burst: Option<f64>,
    /// Estimated tokens per minute; none: no limit.
    #[serde(default)]
    pub tokens_per_minute: Option<f64>,
}

impl KeyConfig {
    fn limits(&self) -> RateLimits {
        RateLimits {
            requests_per_second: self.requests_per_second,
            burst: self.burst,
            tokens_per_minute: self.tokens_per_minute,
        }
    }
}

fn all_models() -> Vec<String> {
    vec!["*".to_string()]
}

/// What a route needs of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No key at all (health, readiness).
    Open,
    /// Any valid key.
    Any,
    /// A key with the `admin` scope.
    Admin,
    /// A key that may call this model.
    Model(String),
}

/// Who a request comes from: the name of the key it presented, and that key's scopes.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: Arc<str>,
    /// `None`: every model.
    models: Option<Arc<[String]>>,
    admin: bool,
    /// The key's request and token limits.
    pub limits: RateLimits,
    /// Whether a configured key identified the caller (not the anonymous caller of a server without keys).
    keyed: bool,
}

impl Principal {
    /// The caller when no keys are configured: every scope.
    pub fn anonymous() -> Self {
        Principal {
            name: Arc::from("anonymous"),
            models: None,
            admin: true,
            limits: RateLimits::default(),
            keyed: false,
        }
    }

    /// What keeps a caller on one variant of a routed alias: the name of its key (`None` without keys).
    pub fn route_key(&self) -> Option<&str> {
        self.keyed.then_some(&*self.name)
    }

    pub fn may_use(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|models| models.iter().any(|m| m == model))
    }

    /// Whether every model is allowed (no need to find out which one a request names).
    pub fn all_models(&self) -> bool {
        self.models.is_none()
    }

    /// Checks `access` against this key's scopes.
    pub fn allow(&self, access: &Access) -> Result<(), AuthError> {
        match access {
            Access::Open | Access::Any => Ok(()),
            Access::Admin if self.admin => Ok(()),
            Access::Admin => {
                Err(AuthError::Forbidden(format!("API key '{}' lacks the admin scope this route needs", self.name)))
            }
            Access::Model(model) if self.may_use(model) => Ok(()),
            Access::Model(model) => {
                Err(AuthError::Forbidden(format!("API key '{}' may not use model '{model}'", self.name)))
            }
        }
    }
}

/// Why a request was refused: 401 (no or unknown key) or 403 (a known key without the scope).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("an API key is required: send it as 'Authorization: Bearer <key>' (or an 'api-key' header)")]
    Missing,
    #[error("the API key is not valid")]
    Invalid,
    #[error("{0}")]
    Forbidden(String),
}

impl AuthError {
    /// A stable code for error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_api_key",
            AuthError::Invalid => "invalid_api_key",
            AuthError::Forbidden(_) => "forbidden",
        }
    }
}

struct Key {
    digest: [u8; 32],
    principal: Principal,
}

/// The configured keys; `None` from [`Keys::from_config`] means authentication is off.
pub struct Keys {
    keys: Vec<Key>,
    open_metrics: bool,
}

impl Keys {
    /// Builds the key set from `[auth]` plus `env_key` (the value of [`ENV_API_KEY`], a key with every
    /// scope). `None` when neither names a key.
    pub fn from_config(config: &AuthConfig, env_key: Option<&str>) -> anyhow::Result<Option<Keys>> {
        let mut keys = Vec::new();
        for entry in &config.keys {
            let digest = match (&entry.sha256, &entry.env) {
                (Some(hex), None) => parse_digest(hex).with_context(|| format!("auth key '{}'", entry.name))?,
                (None, Some(var)) => {
                    let key = std::env::var(var)
                        .with_context(|| format!("auth key '{}': environment variable {var} is not set", entry.name))?;
                    anyhow::ensure!(!key.trim().is_empty(), "auth key '{}': {var} is empty", entry.name);
                    digest_of(key.trim())
                }
                _ => anyhow::bail!("auth key '{}' needs exactly one of `sha256` and `env`", entry.name),
            };
            anyhow::ensure!(!entry.models.is_empty(), "auth key '{}': `models` is empty", entry.name);
            let models = (!entry.models.iter().any(|m| m == "*")).then(|| entry.models.clone().into());
            let limits = entry.limits();
            limits.check().with_context(|| format!("auth key '{}'", entry.name))?;
            let principal =
                Principal { name: Arc::from(entry.name.as_str()), models, admin: entry.admin, limits, keyed: true };
            keys.push(Key { digest, principal });
        }
        if let Some(key) = env_key.map(str::trim).filter(|k| !k.is_empty()) {
            let principal = Principal {
                name: Arc::from("env"),
                models: None,
                admin: true,
                limits: RateLimits::default(),
                keyed: true,
            };
            keys.push(Key { digest: digest_of(key), principal });
        }
        let mut names: Vec<&str> = keys.iter().map(|k| &*k.principal.name).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            anyhow::bail!("two auth keys are named '{}'", pair[0]);
        }
        Ok((!keys.is_empty()).then_some(Keys { keys, open_metrics: config.open_metrics }))
    }

    /// Whether `/metrics` needs no key.
    pub fn open_metrics(&self) -> bool {
        self.open_metrics
    }

    /// The principal whose key `headers` carry.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let presented = presented_key(headers).ok_or(AuthError::Missing)?;
        let digest = digest_of(presented);
        // Every key is compared, whatever matched earlier: the time taken does not depend on which.
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&digest)) {
                found = Some(&key.principal);
            }
        }
        found.cloned().ok_or(AuthError::Invalid)
    }

    /// Authenticates `headers` and checks `access`: the principal, or why not.
    pub fn authorize(&self, headers: &HeaderMap, access: &Access) -> Result<Principal, AuthError> {
        if *access == Access::Open {
            return Ok(self.authenticate(headers).unwrap_or_else(|_| Principal::anonymous_open()));
        }
        let principal = self.authenticate(headers)?;
        principal.allow(access)?;
        Ok(principal)
    }
}

impl Principal {
    /// The caller of an open route that presented no valid key: no scopes.
    fn anonymous_open() -> Self {
        Principal {
            name: Arc::from("anonymous"),
            models: Some(Arc::from([])),
            admin: false,
            limits: RateLimits::default(),
            keyed: false,
        }
    }
}

/// The key a request presents: `Authorization: Bearer <key>` (OpenAI clients) or `api-key: <key>`
/// (Qdrant clients). Both transports carry it the same way (gRPC metadata are HTTP/2 headers).
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    bearer.or_else(|| headers.get("api-key").and_then(|v| v.to_str().ok())).map(str::trim).filter(|k| !k.is_empty())
}

/// SHA-256 of a key, as stored.
pub fn digest_of(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Lowercase hex of [`digest_of`], as the config file takes it.
pub fn hex_digest(key: &str) -> String {
    digest_of(key).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_digest(hex: &str) -> anyhow::Result<[u8; 32]> {
    let hex = hex.trim();
    anyhow::ensure!(hex.len() == 64, "sha256 must be 64 hex digits, got {}", hex.len());
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).context("sha256 is not hexadecimal")?;
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, value.parse().unwrap());
        }
        h
    }

    fn keys() -> Keys {
        let config = AuthConfig {
            keys: vec![
                KeyConfig {
                    name: "app".into(),
                    sha256: Some(hex_digest("app-secret")),
                    env: None,
                    models: vec!["m1".into()],
                    admin: false,
                    requests_per_second: None,
                    burst: None,
                    tokens_per_minute: None,
                },
                KeyConfig {
                    name: "ops".into(),
                    sha256: Some(hex_digest("ops-secret").to_uppercase()),
                    env: None,
                    models: all_models(),
                    admin: true,
                    requests_per_second: Some(5.0),
                    burst: None,
                    tokens_per_minute: None,
                },
            ],
            open_metrics: false,
        };
        Keys::from_config(&config, Some("root-secret")).unwrap().unwrap()
    }

    #[test]
    fn keys_are_found_by_bearer_or_api_key_header() {
        let k = keys();
        assert_eq!(&*k.authenticate(&headers(&[("authorization", "Bearer app-secret")])).unwrap().name, "app");
        assert_eq!(&*k.authenticate(&headers(&[("api-key", "ops-secret")])).unwrap().name, "ops");
        assert_eq!(&*k.authenticate(&headers(&[("authorization", "Bearer root-secret")])).unwrap().name, "env");
        assert_eq!(k.authenticate(&headers(&[])).unwrap_err(), AuthError::Missing);
        assert_eq!(k.authenticate(&headers(&[("authorization", "Basic app-secret")])).unwrap_err(), AuthError::Missing);
        assert_eq!(
            k.authenticate(&headers(&[("authorization", "Bearer app-secreT")])).unwrap_err(),
            AuthError::Invalid
        );
        assert!(!k.open_metrics());
    }

    #[test]
    fn scopes_decide_models_and_admin() {
        let k = keys();
        let app = headers(&[("authorization", "Bearer app-secret")]);
        assert!(k.authorize(&app, &Access::Model("m1".into())).is_ok());
        let err = k.authorize(&app, &Access::Model("m2".into())).unwrap_err();
        assert_eq!(err, AuthError::Forbidden("API key 'app' may not use model 'm2'".into()));
        assert!(matches!(k.authorize(&app, &Access::Admin), Err(AuthError::Forbidden(_))));
        assert!(k.authorize(&app, &Access::Any).is_ok());
        let ops = headers(&[("api-key", "ops-secret")]);
        assert!(k.authorize(&ops, &Access::Admin).is_ok());
        assert!(k.authorize(&ops, &Access::Model("anything".into())).is_ok());
        // Open routes let anyone in, with no scopes unless a valid key came along.
        let nobody = k.authorize(&headers(&[]), &Access::Open).unwrap();
        assert!(!nobody.may_use("m1") && nobody.allow(&Access::Admin).is_err());
        assert_eq!(k.authorize(&headers(&[]), &Access::Any).unwrap_err(), AuthError::Missing);
    }

    #[test]
    fn bad_key_configs_are_refused() {
        let entry = |sha256: Option<&str>, env: Option<&str>| KeyConfig {
            name: "k".into(),
            sha256: sha256.map(String::from),
            env: env.map(String::from),
            models: all_models(),
            admin: false,
            requests_per_second: None,
            burst: None,
            tokens_per_minute: None,
        };
        let build = |keys: Vec<KeyConfig>| {
            Keys::from_config(&AuthConfig { keys, open_metrics: true }, None).map(|k| k.is_some())
        };
        assert!(!build(vec![]).unwrap(), "no keys: authentication off");
        assert!(build(vec![entry(None, None)]).unwrap_err().to_string().contains("exactly one"));
        assert!(format!("{:#}", build(vec![entry(Some("abc"), None)]).unwrap_err()).contains("64 hex digits"));
        let not_hex = "z".repeat(64);
        assert!(format!("{:#}", build(vec![entry(Some(&not_hex), None)]).unwrap_err()).contains("hexadecimal"));
        let unset = build(vec![entry(None, Some("FERROSERVE_TEST_UNSET_KEY_VAR"))]).unwrap_err();
        assert!(format!("{unset:#}").contains("is not set"));
        let negative = KeyConfig { requests_per_second: Some(-1.0), ..entry(Some(&hex_digest("a")), None) };
        assert!(format!("{:#}", build(vec![negative]).unwrap_err()).contains("requests_per_second must be above 0"));
        let twice = build(vec![entry(Some(&hex_digest("a")), None), entry(Some(&hex_digest("b")), None)]);
        assert!(twice.unwrap_err().to_string().contains("two auth keys"));
    }

    #[test]
    fn digests_are_sha256() {
        assert_eq!(hex_digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
