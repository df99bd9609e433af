//! Phase 2: evaluate a route's `rules`; the first match replaces its targets.
//!
//! Token counts and complexity scores are computed at most once per request and only when a rule
//! (or the `LowestCost` strategy) asks, because tokenizing is the one costly thing here.

use http::HeaderMap;
use serde_json::{Map, Value};
use switchyard_crds::complexity;
use switchyard_crds::table::Rule;

use crate::table::RouteRt;
use crate::upstream::TargetRt;
use crate::upstream::tokens;

/// Facts about a request that rules and strategies may need, computed on first use.
pub struct RequestFacts<'a> {
    pub body: &'a Map<String, Value>,
    pub headers: &'a HeaderMap,
    prompt_tokens: Option<u32>,
    complexity: Option<u8>,
    /// Set for requests that say nothing of their output in the body (embeddings).
    expected_output: Option<u32>,
}

impl<'a> RequestFacts<'a> {
    pub fn new(body: &'a Map<String, Value>, headers: &'a HeaderMap) -> Self {
        Self {
            body,
            headers,
            prompt_tokens: None,
            complexity: None,
            expected_output: None,
        }
    }

    /// The facts of an embeddings request: `input_tokens` estimated by the caller, and no
    /// output to expect.
    pub fn embeddings(
        body: &'a Map<String, Value>,
        headers: &'a HeaderMap,
        input_tokens: u32,
    ) -> Self {
        Self {
            prompt_tokens: Some(input_tokens),
            expected_output: Some(0),
            ..Self::new(body, headers)
        }
    }

    /// Estimated prompt tokens (one tokenizer for all providers).
    pub fn prompt_tokens(&mut self) -> u32 {
        *self
            .prompt_tokens
            .get_or_insert_with(|| tokens::estimate_prompt_tokens(self.body))
    }

    /// Sets the complexity score, computed by the route's scorer before the rules run.
    pub fn set_complexity(&mut self, score: u8) {
        self.complexity = Some(score);
    }

    /// The complexity score, 0–100: the route's scorer's when set, else the heuristic's.
    pub fn complexity(&mut self) -> u8 {
        *self.complexity.get_or_insert_with(|| {
            let mut text = String::new();
            tokens::prompt_text(self.body, &mut text);
            complexity::score(&text)
        })
    }

    /// Whether the request offers tools (or legacy functions).
    pub fn has_tools(&self) -> bool {
        ["tools", "functions"].iter().any(|k| {
            self.body
                .get(*k)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        })
    }

    /// The output tokens to expect: `max_completion_tokens`, `max_tokens`, or 256.
    pub fn expected_output_tokens(&self) -> u32 {
        if let Some(n) = self.expected_output {
            return n;
        }
        ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|k| self.body.get(*k).and_then(Value::as_u64))
            .map_or(256, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }
}

fn matches(rule: &Rule, facts: &mut RequestFacts<'_>) -> bool {
    // Cheap conditions first, so the tokenizer runs only when they pass.
    if rule.has_tools.is_some_and(|want| want != facts.has_tools()) {
        return false;
    }
    if let Some((name, value)) = &rule.header
        && facts
            .headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            != Some(value.as_str())
    {
        return false;
    }
    if rule
        .min_complexity
        .is_some_and(|min| facts.complexity() < min)
    {
        return false;
    }
    if rule
        .min_prompt_tokens
        .is_some_and(|min| facts.prompt_tokens() < min)
    {
        return false;
    }
    true
}

/// The targets for this request and the name of the rule that chose them, if any.
pub fn select<'r>(
    route: &'r RouteRt,
    facts: &mut RequestFacts<'_>,
) -> (&'r [TargetRt], Option<&'r str>) {
    for (rule, targets) in &route.rules {
        if !targets.is_empty() && matches(rule, facts) {
            return (targets, Some(&rule.name));
        }
    }
    (&route.targets, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Rule {
        Rule {
            name: "r".into(),
            min_prompt_tokens: None,
            has_tools: None,
            header: None,
            min_complexity: None,
            targets: vec![],
        }
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn every_condition_must_hold() {
        let b = body(
            serde_json::json!({"messages": [{"role": "user", "content": "hello there"}], "tools": [{"type": "function"}]}),
        );
        let mut h = HeaderMap::new();
        h.insert("x-tier", "premium".parse().unwrap());
        let mut facts = RequestFacts::new(&b, &h);

        assert!(matches(&rule(), &mut facts), "an empty match always holds");
        assert!(matches(
            &Rule {
                has_tools: Some(true),
                ..rule()
            },
            &mut facts
        ));
        assert!(!matches(
            &Rule {
                has_tools: Some(false),
                ..rule()
            },
            &mut facts
        ));
        assert!(matches(
            &Rule {
                header: Some(("x-tier".into(), "premium".into())),
                ..rule()
            },
            &mut facts
        ));
        assert!(!matches(
            &Rule {
                header: Some(("x-tier".into(), "free".into())),
                ..rule()
            },
            &mut facts
        ));
        let n = facts.prompt_tokens();
        assert!(n > 6, "text, message overhead and the tools count: {n}");
        assert!(matches(
            &Rule {
                min_prompt_tokens: Some(n),
                ..rule()
            },
            &mut facts
        ));
        assert!(!matches(
            &Rule {
                min_prompt_tokens: Some(n + 1),
                ..rule()
            },
            &mut facts
        ));
        assert!(!matches(
            &Rule {
                min_complexity: Some(50),
                ..rule()
            },
            &mut facts
        ));
        assert!(!matches(
            &Rule {
                has_tools: Some(true),
                min_prompt_tokens: Some(1000),
                ..rule()
            },
            &mut facts
        ));
    }

    #[test]
    fn expected_output_prefers_max_completion_tokens() {
        let h = HeaderMap::new();
        let b = body(serde_json::json!({"max_tokens": 100, "max_completion_tokens": 50}));
        assert_eq!(RequestFacts::new(&b, &h).expected_output_tokens(), 50);
        let b = body(serde_json::json!({}));
        assert_eq!(RequestFacts::new(&b, &h).expected_output_tokens(), 256);
    }
}
