//! Qdrant's protobuf forms of what collections hold and take — payload values, point ids and filters —
//! converted both ways: the gRPC adapter reads requests and writes answers with them, and the chains'
//! remote retrieval sends filters to another Qdrant over gRPC. Errors are messages naming the field (`at`).

use std::collections::HashMap;

use ferroserve_proto::qdrant as pb;
use serde_json::Value;

use super::filter::{Condition, Filter, Key, MatchRule, Range};
use super::point::{Payload, PointId};

pub fn to_json(v: pb::Value, at: &str) -> Result<Value, String> {
    use pb::value::Kind;
    Ok(match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::IntegerValue(n)) => Value::from(n),
        Some(Kind::DoubleValue(x)) => serde_json::Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| format!("{at}: {x} is not a finite number"))?,
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(list)) => Value::Array(
            list.values
                .into_iter()
                .enumerate()
                .map(|(i, v)| to_json(v, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => Value::Object(to_payload(s.fields, at)?),
    })
}

pub fn to_payload(fields: HashMap<String, pb::Value>, at: &str) -> Result<Payload, String> {
    fields.into_iter().map(|(k, v)| to_json(v, &format!("{at}.{k}")).map(|v| (k, v))).collect()
}

pub fn from_json(v: Value) -> pb::Value {
    use pb::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(pb::NullValue::NullValue as i32),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntegerValue(i),
            None => Kind::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(pb::ListValue { values: items.into_iter().map(from_json).collect() }),
        Value::Object(o) => Kind::StructValue(pb::Struct { fields: from_payload(o) }),
    };
    pb::Value { kind: Some(kind) }
}

pub fn from_payload(payload: Payload) -> HashMap<String, pb::Value> {
    payload.into_iter().map(|(k, v)| (k, from_json(v))).collect()
}

pub fn point_id(id: Option<pb::PointId>, at: &str) -> Result<PointId, String> {
    use pb::point_id::PointIdOptions;
    match id.and_then(|id| id.point_id_options) {
        Some(PointIdOptions::Num(n)) => Ok(PointId::Num(n)),
        Some(PointIdOptions::Uuid(u)) => PointId::uuid(&u).map_err(|e| format!("{at}: {e}")),
        None => Err(format!("{at} is missing")),
    }
}

pub fn point_ids(ids: Vec<pb::PointId>, at: &str) -> Result<Vec<PointId>, String> {
    ids.into_iter().enumerate().map(|(i, id)| point_id(Some(id), &format!("{at}[{i}]"))).collect()
}

pub fn to_pb_id(id: PointId) -> pb::PointId {
    use pb::point_id::PointIdOptions;
    let options = match id {
        PointId::Num(n) => PointIdOptions::Num(n),
        PointId::Uuid(u) => PointIdOptions::Uuid(u),
    };
    pb::PointId { point_id_options: Some(options) }
}

/// A Qdrant protobuf filter as the collections' filter; `at` names it in errors.
pub fn filter(f: Option<pb::Filter>, at: &str) -> Result<Option<Filter>, String> {
    f.map(|f| filter_of(f, at)).transpose()
}

fn filter_of(f: pb::Filter, at: &str) -> Result<Filter, String> {
    if f.min_should.is_some() {
        return Err(format!("{at}.min_should is not supported"));
    }
    let conditions = |list: Vec<pb::Condition>, name: &str| -> Result<Vec<Condition>, String> {
        list.into_iter().enumerate().map(|(i, c)| condition(c, &format!("{at}.{name}[{i}]"))).collect()
    };
    Ok(Filter {
        must: conditions(f.must, "must")?,
        should: conditions(f.should, "should")?,
        must_not: conditions(f.must_not, "must_not")?,
    })
}

fn condition(c: pb::Condition, at: &str) -> Result<Condition, String> {
    use pb::condition::ConditionOneOf;
    match c.condition_one_of {
        Some(ConditionOneOf::Field(field)) => field_condition(field, at),
        Some(ConditionOneOf::IsEmpty(c)) => Ok(Condition::IsEmpty(key(&c.key, at)?)),
        Some(ConditionOneOf::IsNull(c)) => Ok(Condition::IsNull(key(&c.key, at)?)),
        Some(ConditionOneOf::HasId(c)) => {
            Ok(Condition::HasId(point_ids(c.has_id, &format!("{at}.has_id"))?.into_iter().collect()))
        }
        Some(ConditionOneOf::Filter(f)) => Ok(Condition::Nested(Box::new(filter_of(f, &format!("{at}.filter"))?))),
        Some(ConditionOneOf::Nested(_)) => Err(format!("{at}: nested (array of objects) conditions are not supported")),
        Some(ConditionOneOf::HasVector(_)) => Err(format!("{at}: has_vector is not supported")),
        Some(ConditionOneOf::Slice(_)) => Err(format!("{at}: slice is not supported")),
        None => Err(format!("{at} is an empty condition")),
    }
}

fn key(k: &str, at: &str) -> Result<Key, String> {
    if k.is_empty() {
        return Err(format!("{at} needs a key"));
    }
    Ok(Key::parse(k))
}

fn field_condition(field: pb::FieldCondition, at: &str) -> Result<Condition, String> {
    use pb::r#match::MatchValue;
    let k = key(&field.key, at)?;
    let unsupported = [
        (field.geo_bounding_box.is_some(), "geo_bounding_box"),
        (field.geo_radius.is_some(), "geo_radius"),
        (field.geo_polygon.is_some(), "geo_polygon"),
        (field.values_count.is_some(), "values_count"),
        (field.datetime_range.is_some(), "datetime_range"),
    ];
    if let Some((_, name)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(format!("{at}: {name} conditions are not supported"));
    }
    let given = [field.r#match.is_some(), field.range.is_some(), field.is_empty.is_some(), field.is_null.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(format!("{at}: a field condition needs exactly one of match, range, is_empty, is_null"));
    }
    if let Some(m) = field.r#match {
        let strings = |s: Vec<String>| s.into_iter().map(Value::String).collect::<Vec<_>>();
        let integers = |n: Vec<i64>| n.into_iter().map(Value::from).collect::<Vec<_>>();
        let rule = match m.match_value {
            Some(MatchValue::Keyword(s)) => MatchRule::Value(Value::String(s)),
            Some(MatchValue::Integer(n)) => MatchRule::Value(Value::from(n)),
            Some(MatchValue::Boolean(b)) => MatchRule::Value(Value::Bool(b)),
            Some(MatchValue::Keywords(s)) => MatchRule::Any(strings(s.strings)),
            Some(MatchValue::Integers(n)) => MatchRule::Any(integers(n.integers)),
            Some(MatchValue::ExceptKeywords(s)) => MatchRule::Except(strings(s.strings)),
            Some(MatchValue::ExceptIntegers(n)) => MatchRule::Except(integers(n.integers)),
            Some(MatchValue::Text(t)) => MatchRule::Text(t),
            Some(_) => {
                return Err(format!(
                    "{at}.match: only keyword, integer, boolean, keywords, integers, except and text are supported"
                ));
            }
            None => return Err(format!("{at}.match is empty")),
        };
        return Ok(Condition::Match { key: k, rule });
    }
    if let Some(r) = field.range {
        let range = Range { gt: r.gt, gte: r.gte, lt: r.lt, lte: r.lte };
        return Ok(Condition::Range { key: k, range });
    }
    // `is_empty: true` / `is_null: true`; `false` is the negation.
    let (holds, test) = match (field.is_empty, field.is_null) {
        (Some(empty), _) => (empty, Condition::IsEmpty(k)),
        (_, Some(null)) => (null, Condition::IsNull(k)),
        _ => return Err(format!("{at} is an empty field condition")),
    };
    Ok(if holds { test } else { Condition::Nested(Box::new(Filter { must_not: vec![test], ..Default::default() })) })
}

/// The collections' filter as Qdrant's protobuf filter (for a Qdrant reached over gRPC). Matches on values
/// other than strings, integers and booleans, and `any` / `except` lists mixing strings and integers, have no
/// protobuf form and are refused.
pub fn to_pb_filter(f: &Filter) -> Result<pb::Filter, String> {
    let conditions = |list: &[Condition]| list.iter().map(to_pb_condition).collect::<Result<Vec<_>, String>>();
    Ok(pb::Filter {
        must: conditions(&f.must)?,
        should: conditions(&f.should)?,
        must_not: conditions(&f.must_not)?,
        ..Default::default()
    })
}

fn to_pb_condition(c: &Condition) -> Result<pb::Condition, String> {
    use pb::condition::ConditionOneOf;
    let field = |key: &Key, f: pb::FieldCondition| {
        ConditionOneOf::Field(pb::FieldCondition { key: key.written().to_string(), ..f })
    };
    let one_of = match c {
        Condition::Match { key, rule } => {
            field(key, pb::FieldCondition { r#match: Some(to_pb_match(rule)?), ..Default::default() })
        }
        Condition::Range { key, range } => {
            let Range { gt, gte, lt, lte } = *range;
            field(key, pb::FieldCondition { range: Some(pb::Range { gt, gte, lt, lte }), ..Default::default() })
        }
        Condition::IsEmpty(key) => ConditionOneOf::IsEmpty(pb::IsEmptyCondition { key: key.written().to_string() }),
        Condition::IsNull(key) => ConditionOneOf::IsNull(pb::IsNullCondition { key: key.written().to_string() }),
        Condition::HasId(ids) => {
            let mut ids: Vec<PointId> = ids.iter().cloned().collect();
            ids.sort();
            ConditionOneOf::HasId(pb::HasIdCondition { has_id: ids.into_iter().map(to_pb_id).collect() })
        }
        Condition::Nested(f) => ConditionOneOf::Filter(to_pb_filter(f)?),
    };
    Ok(pb::Condition { condition_one_of: Some(one_of) })
}

fn to_pb_match(rule: &MatchRule) -> Result<pb::Match, String> {
    use pb::r#match::MatchValue;
    let strings = |values: &[Value]| values.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<Vec<_>>>();
    let integers = |values: &[Value]| values.iter().map(Value::as_i64).collect::<Option<Vec<_>>>();
    let list = |values: &[Value], except: bool| -> Result<MatchValue, String> {
        match (strings(values), integers(values), except) {
            (Some(strings), _, false) => Ok(MatchValue::Keywords(pb::RepeatedStrings { strings })),
            (Some(strings), _, true) => Ok(MatchValue::ExceptKeywords(pb::RepeatedStrings { strings })),
            (_, Some(integers), false) => Ok(MatchValue::Integers(pb::RepeatedIntegers { integers })),
            (_, Some(integers), true) => Ok(MatchValue::ExceptIntegers(pb::RepeatedIntegers { integers })),
            _ => Err(format!("match lists of {values:?}: only all strings or all integers go over gRPC")),
        }
    };
    let value = match rule {
        MatchRule::Value(Value::String(s)) => MatchValue::Keyword(s.clone()),
        MatchRule::Value(Value::Bool(b)) => MatchValue::Boolean(*b),
        MatchRule::Value(v) => match v.as_i64() {
            Some(n) => MatchValue::Integer(n),
            None => return Err(format!("match value {v}: only strings, integers and booleans go over gRPC")),
        },
        MatchRule::Any(values) => list(values, false)?,
        MatchRule::Except(values) => list(values, true)?,
        MatchRule::Text(t) => MatchValue::Text(t.clone()),
    };
    Ok(pb::Match { match_value: Some(value) })
}
