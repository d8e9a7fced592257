//! Point ids and payloads: an id is an unsigned integer or a UUID (Qdrant's `ExtendedPointId`); a payload
//! is a JSON object.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A JSON object attached to a point.
pub type Payload = serde_json::Map<String, Value>;

/// A point's id: an unsigned integer, or a UUID kept in its canonical form (lower-case, hyphenated).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum PointId {
    Num(u64),
    Uuid(String),
}

impl PointId {
    /// Reads an id from JSON: a non-negative integer or a UUID string.
    pub fn from_json(v: &Value) -> Result<Self, String> {
        match v {
            Value::Number(n) => {
                n.as_u64().map(PointId::Num).ok_or_else(|| format!("point id {n} is not an unsigned integer"))
            }
            Value::String(s) => PointId::uuid(s),
            other => Err(format!("point id {other} must be an unsigned integer or a UUID")),
        }
    }

    /// A UUID in any of its usual spellings (hyphenated or not, any case, in braces), canonicalized.
    pub fn uuid(s: &str) -> Result<Self, String> {
        let hex: String = s.trim_matches(|c| c == '{' || c == '}').chars().filter(|&c| c != '-').collect();
        if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("point id {s:?} is not a UUID (nor an unsigned integer)"));
        }
        let h = hex.to_ascii_lowercase();
        Ok(PointId::Uuid(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])))
    }
}

/// Which payload keys an answer shows (Qdrant's `with_payload`: a boolean, or keys to include or exclude).
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadSelector {
    None,
    All,
    Include(Vec<String>),
    Exclude(Vec<String>),
}

impl PayloadSelector {
    pub fn from_bool(all: bool) -> Self {
        if all { PayloadSelector::All } else { PayloadSelector::None }
    }

    /// Whether any payload is shown (so whether to read payloads at all).
    pub fn wants(&self) -> bool {
        !matches!(self, PayloadSelector::None)
    }

    /// The part of `payload` to show; `None` when nothing is.
    pub fn apply(&self, payload: Option<Payload>) -> Option<Payload> {
        let mut payload = payload?;
        match self {
            PayloadSelector::None => return None,
            PayloadSelector::All => {}
            PayloadSelector::Include(keys) => payload.retain(|k, _| keys.contains(k)),
            PayloadSelector::Exclude(keys) => payload.retain(|k, _| !keys.contains(k)),
        }
        Some(payload)
    }
}

impl<'de> Deserialize<'de> for PointId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PointId::from_json(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Uuid(u) => f.write_str(u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_integers_or_canonical_uuids() {
        assert_eq!(PointId::from_json(&json!(7)).unwrap(), PointId::Num(7));
        let canonical = PointId::Uuid("5c56c793-69f3-4fbf-87e6-c4bf54c28c26".into());
        for spelling in [
            "5c56c793-69f3-4fbf-87e6-c4bf54c28c26",
            "5C56C79369F34FBF87E6C4BF54C28C26",
            "{5c56c793-69f3-4fbf-87e6-c4bf54c28c26}",
        ] {
            assert_eq!(PointId::from_json(&json!(spelling)).unwrap(), canonical, "{spelling}");
        }
        for bad in [json!(-1), json!(1.5), json!("abc"), json!(null), json!([1])] {
            assert!(PointId::from_json(&bad).is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_value(&canonical).unwrap(), json!("5c56c793-69f3-4fbf-87e6-c4bf54c28c26"));
    }
}
