//! The subset of JSON Schema that chains check values against: `type` (one or a list), `properties`,
//! `required`, `items`, `enum`, `additionalProperties: false`. Errors name the path (`$.answer.score`).

use serde_json::Value;

const TYPES: [&str; 7] = ["string", "number", "integer", "boolean", "object", "array", "null"];

/// Whether `schema` is one this module can check.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    let Value::Object(o) = schema else { return Err("a schema is a JSON object".into()) };
    match o.get("type") {
        None => {}
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {}
        Some(Value::Array(ts)) if ts.iter().all(|t| t.as_str().is_some_and(|t| TYPES.contains(&t))) => {}
        Some(other) => return Err(format!("type {other} is not one of {TYPES:?}")),
    }
    if let Some(props) = o.get("properties") {
        let Value::Object(props) = props else { return Err("properties is an object".into()) };
        for (k, s) in props {
            check_schema(s).map_err(|e| format!("properties.{k}: {e}"))?;
        }
    }
    if let Some(items) = o.get("items") {
        check_schema(items).map_err(|e| format!("items: {e}"))?;
    }
    if let Some(required) = o.get("required")
        && !required.as_array().is_some_and(|r| r.iter().all(Value::is_string))
    {
        return Err("required is a list of names".into());
    }
    Ok(())
}

/// Checks `value` against `schema` (one [`check_schema`] accepts).
pub fn validate(value: &Value, schema: &Value) -> Result<(), String> {
    validate_at(value, schema, "$")
}

fn validate_at(value: &Value, schema: &Value, at: &str) -> Result<(), String> {
    let Value::Object(s) = schema else { return Ok(()) };
    if let Some(t) = s.get("type") {
        let allowed: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.iter().any(|t| has_type(value, t)) {
            return Err(format!("{at} should be {}, got {value}", allowed.join(" or ")));
        }
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(value)
    {
        return Err(format!("{at} should be one of {}, got {value}", Value::Array(options.clone())));
    }
    if let Value::Object(o) = value {
        if let Some(Value::Array(required)) = s.get("required") {
            for r in required.iter().filter_map(Value::as_str) {
                if !o.contains_key(r) {
                    return Err(format!("{at}.{r} is missing"));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, v) in o {
            match props.and_then(|p| p.get(k)) {
                Some(sub) => validate_at(v, sub, &format!("{at}.{k}"))?,
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}.{k} is not allowed"));
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, s.get("items")) {
        for (i, v) in items.iter().enumerate() {
            validate_at(v, item_schema, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.as_f64().is_some_and(|x| x.fract() == 0.0),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_checked_with_paths() {
        let schema = json!({"type": "object", "required": ["answer"], "properties": {
            "answer": {"type": "string"}, "score": {"type": "integer"},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}}}});
        check_schema(&schema).unwrap();
        validate(&json!({"answer": "x", "score": 3, "tags": ["a"]}), &schema).unwrap();
        for (value, fragment) in [
            (json!({"score": 3}), "$.answer is missing"),
            (json!({"answer": 1}), "$.answer should be string"),
            (json!({"answer": "x", "score": 1.5}), "$.score should be integer"),
            (json!({"answer": "x", "tags": ["c"]}), "$.tags[0] should be one of"),
            (json!([1]), "$ should be object"),
        ] {
            assert!(validate(&value, &schema).unwrap_err().contains(fragment), "{fragment}");
        }
        assert!(check_schema(&json!({"type": "thing"})).is_err());
        assert!(check_schema(&json!({"properties": {"a": {"type": 3}}})).unwrap_err().contains("properties.a"));
    }
}
