//! Payload filters, as Qdrant writes them: `must` (all), `should` (at least one), `must_not` (none), over
//! conditions `match` (`value`, `any`, `except`, `text`), `range` (`gt`, `gte`, `lt`, `lte`), `is_empty`,
//! `is_null`, `has_id`, and nested filters. A key is a dotted path into the payload; where the path meets an
//! array, each element counts (a condition holds when any value at the path satisfies it).
//!
//! Filters are parsed from JSON with messages that name the part that is wrong.

use std::collections::HashSet;

use serde_json::Value;

use super::point::{Payload, PointId};

/// A boolean combination of conditions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub must: Vec<Condition>,
    pub should: Vec<Condition>,
    pub must_not: Vec<Condition>,
}

/// A dotted payload key, split once when the filter is parsed (`a.b[]` → `["a", "b"]`), and as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    parts: Vec<String>,
    written: String,
}

impl Key {
    pub fn parse(key: &str) -> Self {
        Key { parts: key.split('.').map(|p| p.trim_end_matches("[]").to_string()).collect(), written: key.to_string() }
    }

    /// The key as the filter wrote it.
    pub fn written(&self) -> &str {
        &self.written
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Match { key: Key, rule: MatchRule },
    Range { key: Key, range: Range },
    IsEmpty(Key),
    IsNull(Key),
    HasId(HashSet<PointId>),
    Nested(Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum MatchRule {
    /// Equal to this string, integer or boolean.
    Value(Value),
    /// Equal to one of these.
    Any(Vec<Value>),
    /// Equal to none of these.
    Except(Vec<Value>),
    /// A string containing this text.
    Text(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Range {
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

impl Range {
    fn contains(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }
}

impl Filter {
    /// Parses a Qdrant filter object; `null` is no filter.
    pub fn parse(v: &Value) -> Result<Option<Filter>, String> {
        match v {
            Value::Null => Ok(None),
            v => parse_filter(v, "filter").map(Some),
        }
    }

    /// Whether the point `id` with `payload` passes.
    pub fn matches(&self, id: &PointId, payload: &Payload) -> bool {
        self.must.iter().all(|c| c.holds(id, payload))
            && (self.should.is_empty() || self.should.iter().any(|c| c.holds(id, payload)))
            && !self.must_not.iter().any(|c| c.holds(id, payload))
    }
}

impl Condition {
    fn holds(&self, id: &PointId, payload: &Payload) -> bool {
        match self {
            Condition::Match { key, rule } => match rule {
                MatchRule::Value(want) => any_value(payload, key, &mut |v| same(v, want)),
                MatchRule::Any(set) => any_value(payload, key, &mut |v| set.iter().any(|w| same(v, w))),
                // Qdrant: a point without the key matches `except`.
                MatchRule::Except(set) => !any_value(payload, key, &mut |v| set.iter().any(|w| same(v, w))),
                MatchRule::Text(t) => {
                    any_value(payload, key, &mut |v| v.as_str().is_some_and(|s| s.contains(t.as_str())))
                }
            },
            Condition::Range { key, range } => {
                any_value(payload, key, &mut |v| v.as_f64().is_some_and(|x| range.contains(x)))
            }
            Condition::IsEmpty(key) => !any_value(payload, key, &mut |v| !v.is_null()),
            Condition::IsNull(key) => {
                let (mut seen, mut all_null) = (false, true);
                reached(payload, key, &mut |v| {
                    if !v.is_array() {
                        seen = true;
                        all_null &= v.is_null();
                    }
                    false
                });
                seen && all_null
            }
            Condition::HasId(ids) => ids.contains(id),
            Condition::Nested(filter) => filter.matches(id, payload),
        }
    }
}

/// Strings equal strings, numbers compare as numbers (1 equals 1.0), booleans equal booleans.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Whether `test` holds for any value at `key`, array elements counted one by one (stops at the first).
fn any_value(payload: &Payload, key: &Key, test: &mut dyn FnMut(&Value) -> bool) -> bool {
    reached(payload, key, &mut |v| match v {
        Value::Array(items) => items.iter().any(&mut *test),
        v => test(v),
    })
}

/// Calls `visit` on each value the path reaches, walking into arrays of objects on the way (arrays at the end
/// are passed whole), until it returns true; returns whether it did.
fn reached(payload: &Payload, key: &Key, visit: &mut dyn FnMut(&Value) -> bool) -> bool {
    let Some((first, rest)) = key.parts.split_first() else { return false };
    payload.get(first).is_some_and(|v| walk(v, rest, visit))
}

fn walk(value: &Value, rest: &[String], visit: &mut dyn FnMut(&Value) -> bool) -> bool {
    let Some((part, rest)) = rest.split_first() else { return visit(value) };
    match value {
        Value::Object(o) => o.get(part).is_some_and(|v| walk(v, rest, visit)),
        Value::Array(items) => items.iter().filter_map(|i| i.get(part)).any(|v| walk(v, rest, visit)),
        _ => false,
    }
}

fn parse_filter(v: &Value, at: &str) -> Result<Filter, String> {
    let Value::Object(o) = v else { return Err(format!("{at} must be an object, got {v}")) };
    let mut filter = Filter::default();
    for (k, v) in o {
        let list = match k.as_str() {
            "must" => &mut filter.must,
            "should" => &mut filter.should,
            "must_not" => &mut filter.must_not,
            "min_should" => return Err(format!("{at}.min_should is not supported")),
            other => return Err(format!("{at} has an unknown field {other:?} (must, should, must_not)")),
        };
        let here = format!("{at}.{k}");
        match v {
            Value::Null => {}
            Value::Array(items) => {
                for (i, c) in items.iter().enumerate() {
                    list.push(parse_condition(c, &format!("{here}[{i}]"))?);
                }
            }
            single => list.push(parse_condition(single, &here)?),
        }
    }
    Ok(filter)
}

fn parse_condition(v: &Value, at: &str) -> Result<Condition, String> {
    let Value::Object(o) = v else { return Err(format!("{at} must be a condition object, got {v}")) };
    let key = |o: &serde_json::Map<String, Value>, at: &str| -> Result<Key, String> {
        match o.get("key") {
            Some(Value::String(k)) if !k.is_empty() => Ok(Key::parse(k)),
            _ => Err(format!("{at} needs a \"key\" string")),
        }
    };
    if o.is_empty() || o.contains_key("must") || o.contains_key("should") || o.contains_key("must_not") {
        return Ok(Condition::Nested(Box::new(parse_filter(v, at)?)));
    }
    if let Some(f) = o.get("filter") {
        return Ok(Condition::Nested(Box::new(parse_filter(f, &format!("{at}.filter"))?)));
    }
    if let Some(ids) = o.get("has_id") {
        let Value::Array(ids) = ids else { return Err(format!("{at}.has_id must be a list of point ids")) };
        let ids =
            ids.iter().map(PointId::from_json).collect::<Result<_, _>>().map_err(|e| format!("{at}.has_id: {e}"))?;
        return Ok(Condition::HasId(ids));
    }
    for (name, empty) in [("is_empty", true), ("is_null", false)] {
        if let Some(inner) = o.get(name) {
            let Value::Object(inner) = inner else { return Err(format!("{at}.{name} must be {{\"key\": ...}}")) };
            let key = key(inner, &format!("{at}.{name}"))?;
            return Ok(if empty { Condition::IsEmpty(key) } else { Condition::IsNull(key) });
        }
    }
    if let Some(m) = o.get("match") {
        let key = key(o, at)?;
        let Value::Object(m) = m else { return Err(format!("{at}.match must be an object")) };
        let scalar = |v: &Value, where_: &str| -> Result<Value, String> {
            match v {
                Value::String(_) | Value::Bool(_) => Ok(v.clone()),
                Value::Number(n) if n.is_i64() || n.is_u64() => Ok(v.clone()),
                other => Err(format!("{where_}: {other} is not a string, integer or boolean")),
            }
        };
        let list = |v: &Value, where_: &str| -> Result<Vec<Value>, String> {
            let Value::Array(items) = v else { return Err(format!("{where_} must be a list")) };
            items.iter().map(|i| scalar(i, where_)).collect()
        };
        let rule = if let Some(v) = m.get("value") {
            MatchRule::Value(scalar(v, &format!("{at}.match.value"))?)
        } else if let Some(v) = m.get("any") {
            MatchRule::Any(list(v, &format!("{at}.match.any"))?)
        } else if let Some(v) = m.get("except") {
            MatchRule::Except(list(v, &format!("{at}.match.except"))?)
        } else if let Some(Value::String(t)) = m.get("text") {
            MatchRule::Text(t.clone())
        } else {
            return Err(format!("{at}.match needs one of value, any, except, text"));
        };
        return Ok(Condition::Match { key, rule });
    }
    if let Some(r) = o.get("range") {
        let key = key(o, at)?;
        let Value::Object(r) = r else { return Err(format!("{at}.range must be an object")) };
        let mut range = Range::default();
        for (k, v) in r {
            let bound = match v {
                Value::Null => None,
                v => Some(v.as_f64().ok_or_else(|| format!("{at}.range.{k} must be a number, got {v}"))?),
            };
            match k.as_str() {
                "gt" => range.gt = bound,
                "gte" => range.gte = bound,
                "lt" => range.lt = bound,
                "lte" => range.lte = bound,
                other => return Err(format!("{at}.range has an unknown bound {other:?} (gt, gte, lt, lte)")),
            }
        }
        return Ok(Condition::Range { key, range });
    }
    Err(format!("{at} is not a condition: expected match, range, is_empty, is_null, has_id or a nested filter"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: Value) -> Payload {
        v.as_object().unwrap().clone()
    }

    fn passes(filter: Value, p: Value) -> bool {
        Filter::parse(&filter).unwrap().unwrap().matches(&PointId::Num(1), &payload(p))
    }

    #[test]
    fn conditions_follow_qdrant() {
        let p = json!({"city": "London", "price": 11.5, "tags": ["a", "b"], "meta": {"year": 2020}, "none": null, "list": []});
        assert!(passes(json!({"must": [{"key": "city", "match": {"value": "London"}}]}), p.clone()));
        assert!(!passes(json!({"must": {"key": "city", "match": {"value": "Paris"}}}), p.clone()));
        assert!(passes(json!({"must": [{"key": "tags", "match": {"value": "b"}}]}), p.clone()), "any array element");
        assert!(passes(json!({"must": [{"key": "city", "match": {"any": ["Paris", "London"]}}]}), p.clone()));
        assert!(!passes(json!({"must": [{"key": "city", "match": {"except": ["London"]}}]}), p.clone()));
        assert!(passes(json!({"must": [{"key": "missing", "match": {"except": ["x"]}}]}), p.clone()));
        assert!(passes(json!({"must": [{"key": "city", "match": {"text": "ond"}}]}), p.clone()));
        assert!(passes(json!({"must": [{"key": "price", "range": {"gte": 11.5, "lt": 12}}]}), p.clone()));
        assert!(!passes(json!({"must": [{"key": "price", "range": {"gt": 11.5}}]}), p.clone()));
        assert!(passes(json!({"must": [{"key": "meta.year", "match": {"value": 2020}}]}), p.clone()), "dotted path");
        assert!(passes(json!({"must": [{"is_empty": {"key": "list"}}, {"is_empty": {"key": "missing"}}]}), p.clone()));
        assert!(passes(json!({"must": [{"is_empty": {"key": "none"}}, {"is_null": {"key": "none"}}]}), p.clone()));
        assert!(!passes(json!({"must": [{"is_empty": {"key": "tags"}}]}), p.clone()));
        assert!(!passes(json!({"must": [{"is_null": {"key": "missing"}}]}), p.clone()));
        assert!(passes(json!({"must": [{"has_id": [3, 1]}]}), p.clone()));
        assert!(!passes(json!({"must_not": [{"has_id": [1]}]}), p.clone()));
        assert!(passes(
            json!({"should": [{"key": "city", "match": {"value": "Paris"}}, {"key": "price", "range": {"lt": 20}}]}),
            p.clone()
        ));
        assert!(!passes(json!({"should": [{"key": "city", "match": {"value": "Paris"}}]}), p.clone()));
        assert!(
            passes(json!({"must": [{"must_not": [{"key": "city", "match": {"value": "Paris"}}]}]}), p.clone()),
            "nested"
        );
        assert!(passes(
            json!({"must": [{"key": "price", "match": {"value": 11}}], "should": []}),
            json!({"price": 11.0})
        ));
    }

    #[test]
    fn malformed_filters_say_what_is_wrong() {
        for (bad, says) in [
            (json!({"must": [{"key": "a"}]}), "filter.must[0] is not a condition"),
            (json!({"must": [{"match": {"value": 1}}]}), "needs a \"key\""),
            (json!({"must": [{"key": "a", "match": {"value": 1.5}}]}), "not a string, integer or boolean"),
            (json!({"must": [{"key": "a", "range": {"gte": "x"}}]}), "range.gte must be a number"),
            (json!({"must": [{"key": "a", "range": {"above": 1}}]}), "unknown bound"),
            (json!({"shall": []}), "unknown field \"shall\""),
            (json!({"must": [{"has_id": [-1]}]}), "has_id"),
            (json!([1]), "must be an object"),
        ] {
            let e = Filter::parse(&bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(Filter::parse(&Value::Null).unwrap(), None);
    }
}
