//! A/B routing of model aliases: an alias names variants with weights (90% `all-MiniLM-L6-v2:onnx`, 10%
//! `:onnx-int8`); each request to the alias is served by one variant, always the same one for the same caller
//! key (sticky: a hash of the key picks the variant, so a key moves only when the weights change). A shadow
//! candidate may also receive a share of the requests, off the request path, to measure its drift from the
//! variant that answered (the engine runs it; see `engine/routes.rs`).
//!
//! Routes come from the `[[routes]]` tables of the config file and change at run time through the admin API.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// One alias: its variants and their weights, and an optional shadow candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The name clients ask for.
    pub alias: String,
    pub variants: Vec<Variant>,
    #[serde(default)]
    pub shadow: Option<Shadow>,
}

/// A model and its share of the alias's traffic (weights are relative: 90 and 10, or 0.9 and 0.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub model: String,
    pub weight: f64,
}

/// A candidate that also receives `share` of the alias's requests; its answers are compared, never returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    pub model: String,
    /// 0 to 1.
    pub share: f64,
}

impl RouteSpec {
    /// Checks what does not need the models: names, weights, the share. `is_model` says whether a name is a
    /// model of the server (variants and the candidate must be; the alias must not be).
    pub fn check(&self, is_model: impl Fn(&str) -> bool) -> Result<(), String> {
        let alias = &self.alias;
        if alias.trim().is_empty() {
            return Err("a route needs an alias".into());
        }
        if is_model(alias) {
            return Err(format!("alias {alias:?} is already a model's name"));
        }
        if self.variants.is_empty() {
            return Err(format!("route {alias:?} has no variants"));
        }
        for v in &self.variants {
            if !v.weight.is_finite() || v.weight < 0.0 {
                return Err(format!("route {alias:?}: weight of {:?} must be a number ≥ 0, got {}", v.model, v.weight));
            }
            if !is_model(&v.model) {
                return Err(format!("route {alias:?}: variant {:?} is not a model of this server", v.model));
            }
        }
        if self.variants.iter().map(|v| v.weight).sum::<f64>() <= 0.0 {
            return Err(format!("route {alias:?}: the weights add up to 0"));
        }
        if let Some(shadow) = &self.shadow {
            if !(0.0..=1.0).contains(&shadow.share) {
                return Err(format!("route {alias:?}: shadow share must be between 0 and 1, got {}", shadow.share));
            }
            if !is_model(&shadow.model) {
                return Err(format!("route {alias:?}: shadow {:?} is not a model of this server", shadow.model));
            }
        }
        Ok(())
    }

    /// The variant for a point in [0, 1): the variants laid end to end by weight.
    fn variant_at(&self, point: f64) -> &Variant {
        let total: f64 = self.variants.iter().map(|v| v.weight).sum();
        let mut at = point * total;
        for v in &self.variants {
            if at < v.weight {
                return v;
            }
            at -= v.weight;
        }
        // Rounding at the very end: the last variant with weight.
        self.variants.iter().rev().find(|v| v.weight > 0.0).unwrap_or(&self.variants[0])
    }
}

/// Where one request to an alias goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Picked {
    pub alias: String,
    pub model: String,
    /// The shadow candidate, when this request was drawn for it.
    pub shadow: Option<String>,
}

/// The routes in force.
#[derive(Default)]
pub struct Routes {
    table: RwLock<BTreeMap<String, Arc<RouteSpec>>>,
}

impl Routes {
    /// Routes a request for `name`: `None` when `name` is not an alias. `key` (the caller's) makes the choice
    /// sticky; without one the variant is drawn at random.
    pub fn pick(&self, name: &str, key: Option<&str>) -> Option<Picked> {
        let route = self.table.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()?;
        let point = match key {
            Some(key) => unit(xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), 0x5eed)),
            None => rand::random::<f64>(),
        };
        let shadow = route.shadow.as_ref().filter(|s| rand::random::<f64>() < s.share).map(|s| s.model.clone());
        Some(Picked { alias: route.alias.clone(), model: route.variant_at(point).model.clone(), shadow })
    }

    /// Adds or replaces a route (checked by the caller).
    pub fn set(&self, spec: RouteSpec) {
        self.table.write().unwrap_or_else(|p| p.into_inner()).insert(spec.alias.clone(), Arc::new(spec));
    }

    /// Removes a route; false when there was none.
    pub fn remove(&self, alias: &str) -> bool {
        self.table.write().unwrap_or_else(|p| p.into_inner()).remove(alias).is_some()
    }

    pub fn list(&self) -> Vec<RouteSpec> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).values().map(|r| (**r).clone()).collect()
    }

    pub fn is_alias(&self, name: &str) -> bool {
        self.table.read().unwrap_or_else(|p| p.into_inner()).contains_key(name)
    }
}

/// A hash as a point in [0, 1).
fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(weights: &[(&str, f64)], shadow: Option<f64>) -> RouteSpec {
        RouteSpec {
            alias: "minilm".into(),
            variants: weights.iter().map(|(m, w)| Variant { model: m.to_string(), weight: *w }).collect(),
            shadow: shadow.map(|share| Shadow { model: "c".into(), share }),
        }
    }

    fn routes(spec: RouteSpec) -> Routes {
        let routes = Routes::default();
        routes.set(spec);
        routes
    }

    #[test]
    fn ten_thousand_requests_split_by_weight() {
        let routes = routes(route(&[("a", 90.0), ("b", 10.0)], None));
        // By caller key (10,000 different callers) and at random (no key): both within 1.5 points of 90/10
        // (the binomial standard deviation at n = 10,000 is 0.3 points).
        for keyed in [true, false] {
            let b = (0..10_000)
                .filter(|i| {
                    let key = format!("caller-{i}");
                    routes.pick("minilm", keyed.then_some(key.as_str())).unwrap().model == "b"
                })
                .count();
            let share = b as f64 / 10_000.0;
            assert!((share - 0.10).abs() < 0.015, "keyed {keyed}: {share}");
        }
        let routes = routes_with(&[("a", 1.0), ("b", 1.0), ("c", 2.0)]);
        let mut counts = BTreeMap::new();
        for i in 0..10_000 {
            *counts.entry(routes.pick("minilm", Some(&format!("k{i}"))).unwrap().model).or_insert(0) += 1;
        }
        for (model, expected) in [("a", 2_500.0), ("b", 2_500.0), ("c", 5_000.0)] {
            let got = counts[model] as f64;
            assert!((got - expected).abs() < 250.0, "{model}: {got} of 10,000, expected {expected}");
        }
    }

    fn routes_with(weights: &[(&str, f64)]) -> Routes {
        routes(route(weights, None))
    }

    #[test]
    fn a_caller_key_always_gets_the_same_variant() {
        let routes = routes(route(&[("a", 50.0), ("b", 50.0)], None));
        for i in 0..200 {
            let key = format!("caller-{i}");
            let first = routes.pick("minilm", Some(&key)).unwrap().model;
            assert!((0..20).all(|_| routes.pick("minilm", Some(&key)).unwrap().model == first));
        }
        // A weight of zero takes no traffic, keyed or not.
        let routes = routes_with(&[("a", 1.0), ("b", 0.0)]);
        assert!((0..1_000).all(|i| routes.pick("minilm", Some(&i.to_string())).unwrap().model == "a"));
        assert!(routes.pick("all-MiniLM-L6-v2", None).is_none(), "not an alias");
    }

    #[test]
    fn the_shadow_takes_its_share() {
        let routes = routes(route(&[("a", 1.0)], Some(0.25)));
        let shadowed = (0..10_000).filter(|_| routes.pick("minilm", None).unwrap().shadow.is_some()).count();
        assert!((shadowed as f64 / 10_000.0 - 0.25).abs() < 0.02, "{shadowed}");
        let all = routes_with(&[("a", 1.0)]);
        all.set(route(&[("a", 1.0)], Some(1.0)));
        assert_eq!(all.pick("minilm", None).unwrap().shadow.as_deref(), Some("c"));
    }

    #[test]
    fn bad_routes_are_refused_with_the_reason() {
        let models = |m: &str| ["a", "b", "c"].contains(&m);
        assert!(route(&[("a", 9.0), ("b", 1.0)], Some(0.1)).check(models).is_ok());
        let cases = [
            (route(&[], None), "no variants"),
            (route(&[("a", 0.0)], None), "add up to 0"),
            (route(&[("a", -1.0)], None), "≥ 0"),
            (route(&[("zzz", 1.0)], None), "not a model"),
            (route(&[("a", 1.0)], Some(1.5)), "between 0 and 1"),
            (RouteSpec { alias: "a".into(), ..route(&[("b", 1.0)], None) }, "already a model"),
        ];
        for (spec, reason) in cases {
            let e = spec.check(models).unwrap_err();
            assert!(e.contains(reason), "{e}");
        }
    }
}
