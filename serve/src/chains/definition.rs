//! Chain definitions: a named list of steps, read from TOML (a file in the chains folder, or the body of
//! `PUT /chains/{name}`), each step's output available to the later ones by its name, the chain's input as
//! `input`. Checked when loaded: unknown step types and fields, duplicate names, a template variable nothing
//! before it provides (a reference to a later step — a cycle — is one), a step input that names no earlier
//! step, malformed regexes and schemas. Models and collections are checked by the engine, which knows them.

use std::collections::{BTreeMap, HashSet};

use minijinja::Environment;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ChainError;
use crate::remote::Endpoint;

/// A chain as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainDef {
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the input (derived from the templates when absent: an object of the fields they use).
    #[serde(default)]
    pub input_schema: Option<Value>,
    pub steps: Vec<Step>,
    /// The step whose output is the chain's (default: the last), or named outputs `{key = "step"}`.
    #[serde(default)]
    pub output: Option<Output>,
    /// Fields `config.configurable` may override: `model`, `k`, `temperature`, `max_tokens`.
    #[serde(default)]
    pub configurable: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Output {
    Step(String),
    Named(BTreeMap<String, String>),
}

/// (Unknown fields are refused by the step kind: serde cannot deny them beside a flattened field.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    #[serde(flatten)]
    pub kind: StepKind,
}

/// A chat message template.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepKind {
    /// A text (`template`) or a chat message list (`messages`), rendered with minijinja.
    Prompt {
        #[serde(default)]
        template: Option<String>,
        #[serde(default)]
        messages: Vec<MessageTemplate>,
    },
    /// The embedding of a rendered text.
    Embed {
        model: String,
        text: String,
    },
    /// Documents from a collection: the nearest to the rendered `query`, optionally filtered (a Qdrant filter
    /// whose string values are templates). The collection is this server's, or one in the Qdrant at
    /// `qdrant` (then `embedding_model`, a model of this server, embeds the query).
    Retrieve {
        collection: String,
        #[serde(default)]
        qdrant: Option<Endpoint>,
        #[serde(default)]
        embedding_model: Option<String>,
        query: String,
        #[serde(default = "default_k")]
        k: usize,
        #[serde(default)]
        filter: Option<Value>,
        #[serde(default)]
        score_threshold: Option<f32>,
        /// The payload key holding the document text (default `text`).
        #[serde(default = "default_content_key")]
        content_key: String,
    },
    /// A model's answer to the prompt made by step `prompt` (a text or a message list): a model of this
    /// server, or of the OpenAI-compatible `endpoint`.
    Generate {
        model: String,
        #[serde(default)]
        endpoint: Option<Endpoint>,
        prompt: String,
        #[serde(default)]
        max_tokens: Option<usize>,
        #[serde(default)]
        temperature: Option<f32>,
        #[serde(default)]
        stop: Vec<String>,
    },
    /// Step `from`'s text as a string, as JSON (checked against `schema`), or as a regex's named captures.
    Parse {
        from: String,
        format: ParseFormat,
        #[serde(default)]
        schema: Option<Value>,
        #[serde(default)]
        pattern: Option<String>,
    },
    /// Chain `chain` run on each item of the list step `over` makes (or `input`), `concurrency` at a time;
    /// the outputs in the items' order.
    Map {
        over: String,
        chain: String,
        #[serde(default = "default_concurrency")]
        concurrency: usize,
    },
    /// Named chains run on the same input at once: `{branch: chain}` → `{branch: output}`.
    Parallel {
        branches: BTreeMap<String, String>,
    },
    /// Named values rendered from templates (`assign`), or the input unchanged (`passthrough`).
    Assign {
        values: BTreeMap<String, String>,
    },
    Passthrough {},
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParseFormat {
    String,
    Json,
    Regex,
}

fn default_concurrency() -> usize {
    4
}

fn default_k() -> usize {
    4
}

fn default_content_key() -> String {
    "text".into()
}

/// A checked chain.
#[derive(Debug, Clone)]
pub struct Chain {
    pub name: String,
    pub def: ChainDef,
    /// The input fields the templates read (`input.x`), for the derived schema.
    pub input_fields: Vec<String>,
}

impl Chain {
    /// Parses and checks a TOML definition.
    pub fn from_toml(name: &str, text: &str) -> Result<Self, ChainError> {
        let def: ChainDef = toml::from_str(text).map_err(|e| ChainError::Invalid(format!("chain {name:?}: {e}")))?;
        Self::check(name, def)
    }

    pub fn check(name: &str, def: ChainDef) -> Result<Self, ChainError> {
        let bad = |m: String| ChainError::Invalid(format!("chain {name:?}: {m}"));
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || name.is_empty() {
            return Err(bad("names are letters, digits, '-', '_' and '.'".into()));
        }
        if def.steps.is_empty() {
            return Err(bad("it has no steps".into()));
        }
        let mut known: HashSet<String> = HashSet::from(["input".to_string()]);
        let mut input_fields = Vec::new();
        for step in &def.steps {
            let at = |m: String| bad(format!("step {:?}: {m}", step.name));
            if known.contains(&step.name) {
                return Err(at("the name is taken (by `input` or an earlier step)".into()));
            }
            let mut templates: Vec<&str> = Vec::new();
            let mut refs: Vec<&str> = Vec::new();
            match &step.kind {
                StepKind::Prompt { template, messages } => match (template, messages.is_empty()) {
                    (Some(t), true) => templates.push(t),
                    (None, false) => {
                        for m in messages {
                            if !["system", "user", "assistant"].contains(&m.role.as_str()) {
                                return Err(at(format!("message role {:?}: system, user or assistant", m.role)));
                            }
                            templates.push(&m.content);
                        }
                    }
                    _ => return Err(at("give a `template` or `messages`, one of them".into())),
                },
                StepKind::Embed { text, .. } => templates.push(text),
                StepKind::Retrieve { query, filter, k, qdrant, embedding_model, .. } => {
                    if *k == 0 {
                        return Err(at("k must be at least 1".into()));
                    }
                    if let Some(ep) = qdrant {
                        ep.check().map_err(|e| at(format!("qdrant: {e}")))?;
                        if embedding_model.is_none() {
                            return Err(at(
                                "a collection in another Qdrant needs `embedding_model` for the query".into()
                            ));
                        }
                    }
                    templates.push(query);
                    if let Some(f) = filter {
                        collect_strings(f, &mut templates);
                    }
                }
                StepKind::Generate { prompt, endpoint, .. } => {
                    if let Some(ep) = endpoint {
                        ep.check().map_err(|e| at(format!("endpoint: {e}")))?;
                        if ep.grpc {
                            return Err(at(
                                "endpoint: OpenAI-compatible endpoints are called over HTTP; drop `grpc`".into()
                            ));
                        }
                    }
                    refs.push(prompt)
                }
                StepKind::Parse { from, format, schema, pattern } => {
                    refs.push(from);
                    match format {
                        ParseFormat::Regex => {
                            let p = pattern.as_deref().ok_or_else(|| at("a regex parse needs `pattern`".into()))?;
                            regex::Regex::new(p).map_err(|e| at(format!("pattern: {e}")))?;
                        }
                        ParseFormat::Json => {
                            if let Some(s) = schema {
                                super::schema::check_schema(s).map_err(|e| at(format!("schema: {e}")))?;
                            }
                        }
                        ParseFormat::String => {}
                    }
                }
                StepKind::Map { over, concurrency, .. } => {
                    if *concurrency == 0 {
                        return Err(at("concurrency must be at least 1".into()));
                    }
                    refs.push(over)
                }
                StepKind::Parallel { branches } => {
                    if branches.is_empty() {
                        return Err(at("parallel needs branches".into()));
                    }
                }
                StepKind::Assign { values } => templates.extend(values.values().map(String::as_str)),
                StepKind::Passthrough {} => {}
            }
            for r in refs {
                if !known.contains(r) {
                    return Err(at(format!("{r:?} is not an earlier step")));
                }
            }
            for t in templates {
                for var in template_variables(t).map_err(|e| at(format!("template {t:?}: {e}")))? {
                    if !known.contains(&var) {
                        return Err(at(format!("template {t:?} uses {var:?}, which no earlier step provides")));
                    }
                }
                input_fields.extend(input_paths(t));
            }
            known.insert(step.name.clone());
        }
        match &def.output {
            Some(Output::Step(s)) if !known.contains(s) => return Err(bad(format!("output {s:?} is not a step"))),
            Some(Output::Named(map)) => {
                if let Some((k, s)) = map.iter().find(|(_, s)| !known.contains(*s)) {
                    return Err(bad(format!("output {k:?}: {s:?} is not a step")));
                }
            }
            _ => {}
        }
        for c in &def.configurable {
            if !["model", "k", "temperature", "max_tokens"].contains(&c.as_str()) {
                return Err(bad(format!("configurable {c:?}: model, k, temperature or max_tokens")));
            }
        }
        if let Some(s) = &def.input_schema {
            super::schema::check_schema(s).map_err(|e| bad(format!("input_schema: {e}")))?;
        }
        input_fields.sort();
        input_fields.dedup();
        Ok(Chain { name: name.to_string(), def, input_fields })
    }

    /// The chains this one runs as steps (`map`, `parallel`).
    pub fn sub_chains(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for step in &self.def.steps {
            match &step.kind {
                StepKind::Map { chain, .. } => out.push(chain.as_str()),
                StepKind::Parallel { branches } => out.extend(branches.values().map(String::as_str)),
                _ => {}
            }
        }
        out
    }

    /// The generation step whose text streams (one the output is, or the first a named output key is), and
    /// that key.
    pub fn streamed(&self) -> Option<(Option<&str>, &str)> {
        let is_generate =
            |name: &str| self.def.steps.iter().any(|s| s.name == name && matches!(s.kind, StepKind::Generate { .. }));
        match &self.def.output {
            None => self.def.steps.last().map(|s| s.name.as_str()).filter(|s| is_generate(s)).map(|s| (None, s)),
            Some(Output::Step(s)) => is_generate(s).then_some((None, s.as_str())),
            Some(Output::Named(map)) => {
                map.iter().find(|(_, s)| is_generate(s)).map(|(k, s)| (Some(k.as_str()), s.as_str()))
            }
        }
    }

    /// The input's JSON Schema: declared, or an object with the string fields the templates read.
    pub fn input_schema(&self) -> Value {
        if let Some(s) = &self.def.input_schema {
            return s.clone();
        }
        let properties: serde_json::Map<String, Value> =
            self.input_fields.iter().map(|f| (f.clone(), serde_json::json!({"title": f, "type": "string"}))).collect();
        serde_json::json!({
            "title": format!("{}Input", self.name), "type": "object",
            "properties": properties, "required": self.input_fields,
        })
    }

    /// The output's JSON Schema, from the steps that make it.
    pub fn output_schema(&self) -> Value {
        let of_step = |name: &str| -> Value {
            let Some(step) = self.def.steps.iter().find(|s| s.name == name) else { return serde_json::json!({}) };
            match &step.kind {
                StepKind::Generate { .. } => serde_json::json!({"title": "AIMessage", "type": "object"}),
                StepKind::Retrieve { .. } => {
                    serde_json::json!({"type": "array", "items": {"title": "Document", "type": "object"}})
                }
                StepKind::Prompt { template: Some(_), .. } | StepKind::Parse { format: ParseFormat::String, .. } => {
                    serde_json::json!({"type": "string"})
                }
                StepKind::Parse { format: ParseFormat::Json, schema: Some(s), .. } => s.clone(),
                StepKind::Embed { .. } => serde_json::json!({"type": "array", "items": {"type": "number"}}),
                _ => serde_json::json!({}),
            }
        };
        match &self.def.output {
            Some(Output::Named(map)) => {
                let properties: serde_json::Map<String, Value> =
                    map.iter().map(|(k, s)| (k.clone(), of_step(s))).collect();
                serde_json::json!({"title": format!("{}Output", self.name), "type": "object", "properties": properties})
            }
            Some(Output::Step(s)) => of_step(s),
            None => of_step(&self.def.steps.last().map(|s| s.name.clone()).unwrap_or_default()),
        }
    }
}

fn collect_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(o) => o.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

/// Top-level variables a template reads (minijinja's own globals, such as `range`, are not variables).
fn template_variables(template: &str) -> Result<HashSet<String>, String> {
    let env = Environment::new();
    let t = env.template_from_str(template).map_err(|e| e.to_string())?;
    let globals: HashSet<&str> = env.globals().map(|(name, _)| name).collect();
    Ok(t.undeclared_variables(false).into_iter().filter(|name| !globals.contains(name.as_str())).collect())
}

/// `input.x` fields a template reads.
fn input_paths(template: &str) -> Vec<String> {
    let env = Environment::new();
    let Ok(t) = env.template_from_str(template) else { return Vec::new() };
    t.undeclared_variables(true).into_iter().filter_map(|v| v.strip_prefix("input.").map(str::to_string)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minijinja_globals_are_not_variables() {
        let vars = template_variables("{% for i in range(3) %}{{ input.x }}{{ namespace() }}{% endfor %}").unwrap();
        assert_eq!(vars, HashSet::from(["input".to_string()]));
    }

    const RAG: &str = r#"
description = "answers from documents"
configurable = ["k", "model"]
[[steps]]
name = "docs"
type = "retrieve"
collection = "packages"
query = "{{ input.question }}"
k = 3
[[steps]]
name = "prompt"
type = "prompt"
messages = [{ role = "user", content = "{% for d in docs %}{{ d.page_content }}\n{% endfor %}Q: {{ input.question }}" }]
[[steps]]
name = "answer"
type = "generate"
model = "llm"
prompt = "prompt"
[output]
answer = "answer"
sources = "docs"
"#;

    #[test]
    fn a_good_chain_loads_with_its_schemas() {
        let chain = Chain::from_toml("rag", RAG).unwrap();
        assert_eq!(chain.input_fields, vec!["question".to_string()]);
        assert_eq!(chain.input_schema()["required"], serde_json::json!(["question"]));
        assert_eq!(chain.output_schema()["properties"]["sources"]["type"], "array");
    }

    #[test]
    fn bad_chains_are_refused_with_the_reason() {
        let cases = [
            (RAG.replace("type = \"retrieve\"", "type = \"teleport\""), "teleport"),
            (RAG.replace("prompt = \"prompt\"", "prompt = \"later\""), "not an earlier step"),
            (RAG.replace("Q: {{ input.question }}", "Q: {{ answer }}"), "no earlier step provides"),
            (RAG.replace("name = \"prompt\"", "name = \"docs\""), "taken"),
            (RAG.replace("k = 3", "k = 0"), "k must be"),
            (RAG.replace("sources = \"docs\"", "sources = \"nowhere\""), "not a step"),
            (RAG.replace("[\"k\", \"model\"]", "[\"colour\"]"), "configurable"),
            (RAG.replace("k = 3", "k = 3\nbogus = 1"), "bogus"),
        ];
        for (text, reason) in cases {
            let e = Chain::from_toml("rag", &text).unwrap_err().to_string();
            assert!(e.contains(reason), "{reason}: {e}");
        }
        let regex = "[[steps]]\nname = \"p\"\ntype = \"parse\"\nfrom = \"input\"\nformat = \"regex\"\npattern = \"(\"";
        assert!(Chain::from_toml("r", regex).unwrap_err().to_string().contains("pattern"));
    }
}
