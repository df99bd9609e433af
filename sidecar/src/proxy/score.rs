//! Between [`super::route`] and [`super::rules`]: the request's complexity score, computed once,
//! when its route scores at all (docs/reference/complexity.md).
//!
//! A `Route` scorer asks its classifier route with a fixed instruction, as an ordinary chat
//! request of that route (its rules, strategy, failover, limits, budgets, metrics and log line,
//! its cost counted to it), bounded by the scorer's `timeout`, and remembers the score by the
//! hash of the text it sent for `cacheTtl`: a cache hit costs no upstream call.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use switchyard_crds::v1alpha1::OnError;
use switchyard_crds::window::Timestamp;
use tokio::time::Instant;

use super::attempt::{self, Work};
use super::ctx::RequestCtx;
use super::respond::ClientApi;
use super::route::ParsedRequest;
use super::{rules, strategy};
use crate::budget;
use crate::table::scorer::{self, Classifier, ScorerRt};
use crate::table::{RouteRt, Runtime, Snapshot};
use crate::upstream::tokens;

/// The instruction a `Route` scorer sends as the system message, verbatim (documented in
/// docs/reference/complexity.md, "Route scorer").
pub const INSTRUCTION: &str = "You rate how hard a request is for an AI assistant to answer \
well. Reply with a single integer from 0 to 100 and nothing else: 0 for trivial (greetings, \
lookups, rephrasing), 50 for ordinary tasks that need some care, 100 for the hardest (multi-step \
reasoning, proofs, complex code, expert knowledge). The request follows.";
/// The most user text sent to a classifier, from the end of the prompt (where the question
/// usually is): a classification needs the gist, not a whole document.
pub const MAX_CLASSIFIED_BYTES: usize = 8 * 1024;
/// Output tokens a classifier may spend: a number, with room for a label such as `Score:`.
const CLASSIFIER_MAX_TOKENS: u64 = 8;

/// The score of the request `hub` on `route`, when the route scores; recorded in
/// `switchyard_complexity_score`.
pub async fn score(
    runtime: &Arc<Runtime>,
    snapshot: &Snapshot,
    route: &RouteRt,
    hub: &Map<String, Value>,
) -> Option<u8> {
    let scorer = route.scorer.as_ref()?;
    let on_error = scorer.on_error();
    let score = match &scorer.kind {
        ScorerRt::Classifier(classifier) => {
            classify(runtime, snapshot, route, classifier, on_error, hub).await
        }
        kind => {
            let mut text = String::new();
            tokens::prompt_text(hub, &mut text);
            scorer::score_now(kind, on_error, &text)
                .unwrap_or_else(|| on_error_score(on_error, hub))
        }
    };
    runtime
        .metrics
        .complexity_score
        .with_label_values(&[route.route.name.as_str()])
        .observe(f64::from(score));
    Some(score)
}

/// The classifier's score for the request, from the cache or by asking; `onError` when asking
/// fails, times out or gets no number back.
async fn classify(
    runtime: &Arc<Runtime>,
    snapshot: &Snapshot,
    route: &RouteRt,
    classifier: &Classifier,
    on_error: OnError,
    hub: &Map<String, Value>,
) -> u8 {
    let text = user_text(hub);
    let key = Classifier::key(&text);
    if let Some(score) = classifier.cached(&key, Instant::now()) {
        return score;
    }
    let def = &classifier.def;
    let failed = |why: &str| {
        tracing::warn!(route = %route.route.name, classifier = %def.model, reason = why, "complexity classifier failed; scoring with onError");
        on_error_score(on_error, hub)
    };
    let Some(target) = snapshot.routes.get(&def.model) else {
        return failed("the classifier route is not in this table");
    };
    // The compiler refuses chains; a table from elsewhere must not recurse either.
    if target
        .scorer
        .as_ref()
        .is_some_and(|s| matches!(s.kind, ScorerRt::Classifier(_)))
    {
        return failed("the classifier route uses a Route scorer itself");
    }
    // One classification per text at a time: the others wait for its answer. A waiter whose
    // asker was cancelled (its client left) takes over the asking.
    let pending = classifier.pending(key);
    let _leave = Leave {
        classifier,
        key,
        cell: pending.clone(),
    };
    let answer = pending
        .get_or_init(|| async {
            let request = classification(&def.model, &text);
            let asked = tokio::time::timeout(
                Duration::from_millis(def.timeout_ms),
                ask(runtime, target, &request),
            );
            let why = match asked.await {
                Err(_) => "timeout".to_string(),
                Ok(Err(why)) => why,
                Ok(Ok(answer)) => match scorer::parse_answer(&answer) {
                    Some(score) => {
                        classifier.remember(key, score, Instant::now());
                        return Some(score);
                    }
                    None => "the answer is not a number from 0 to 100".to_string(),
                },
            };
            tracing::warn!(route = %route.route.name, classifier = %def.model, reason = %why, "complexity classifier failed; scoring with onError");
            None
        })
        .await;
    answer.unwrap_or_else(|| on_error_score(on_error, hub))
}

/// Leaves a pending classification when the waiter is done or dropped (its client left).
struct Leave<'a> {
    classifier: &'a Classifier,
    key: [u8; 32],
    cell: scorer::Pending,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.classifier.leave(&self.key, &self.cell);
    }
}

/// `onError`'s score for the request.
fn on_error_score(on_error: OnError, hub: &Map<String, Value>) -> u8 {
    let mut text = String::new();
    if on_error == OnError::Heuristic {
        tokens::prompt_text(hub, &mut text);
    }
    scorer::fallback(on_error, &text)
}

/// The text of the user's messages, the last [`MAX_CLASSIFIED_BYTES`] of it.
pub fn user_text(hub: &Map<String, Value>) -> String {
    let mut text = String::new();
    let messages = hub.get("messages").and_then(Value::as_array);
    for message in messages.into_iter().flatten() {
        if message.get("role").and_then(Value::as_str) != Some("user") {
            continue;
        }
        tokens::message_text(message, &mut text);
    }
    if text.len() > MAX_CLASSIFIED_BYTES {
        let mut cut = text.len() - MAX_CLASSIFIED_BYTES;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text.drain(..cut);
    }
    text
}

/// The chat request that asks classifier route `model` to score `text`.
fn classification(model: &str, text: &str) -> ParsedRequest {
    let hub = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": INSTRUCTION},
            {"role": "user", "content": text},
        ],
        "max_tokens": CLASSIFIER_MAX_TOKENS,
        "temperature": 0,
    });
    let Value::Object(hub) = hub else {
        unreachable!("a JSON object literal")
    };
    ParsedRequest {
        hub,
        original: None,
        model: model.to_string(),
        stream: false,
        wants_usage: false,
        passthrough: false,
        echo: Default::default(),
    }
}

/// Sends `request` through `route` as an ordinary chat request of its own (recorded as one),
/// and returns the answer's text.
async fn ask(
    runtime: &Arc<Runtime>,
    route: &RouteRt,
    request: &ParsedRequest,
) -> Result<String, String> {
    let mut ctx = RequestCtx::new(runtime.clone(), ClientApi::OpenAI);
    ctx.client_model = request.model.clone();
    ctx.route = Some(route.route.name.clone());
    let headers = HeaderMap::new();
    let mut facts = rules::RequestFacts::new(&request.hub, &headers);
    let (targets, rule) = rules::select(route, &mut facts);
    ctx.rule = rule.map(str::to_string);
    if !route.budgets.is_empty() {
        budget::admit(&route.budgets, Timestamp::now())
            .map_err(|e| format!("the classifier route's budget {} is exhausted", e.budget))?;
        ctx.budgets = route.budgets.clone();
    }
    let ordered = strategy::order(
        route.route.strategy,
        targets,
        &mut facts,
        &mut rand::rng(),
        Instant::now(),
    );
    let attempts = attempt::run(
        &mut ctx,
        &route.route,
        ordered,
        Work::Chat(request),
        &headers,
    )
    .await;
    // The same ending as a client's request: metrics, log line, budgets given back on failure.
    let response = super::answer(&mut ctx, attempts);
    let status = response.status();
    let Ok(collected) = response.into_body().collect().await;
    let body = collected.to_bytes();
    if !status.is_success() {
        return Err(format!("the classifier route answered {status}"));
    }
    let answer: Value =
        serde_json::from_slice(&body).map_err(|e| format!("unreadable answer: {e}"))?;
    answer
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| "the answer has no message content".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classifier_sees_the_last_8_kib_of_the_user_text_only() {
        let hub = json!({"messages": [
            {"role": "system", "content": "secret system prompt"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ]});
        assert_eq!(user_text(hub.as_object().unwrap()), "first\nsecond");
        let long = format!("é{}", "x".repeat(MAX_CLASSIFIED_BYTES));
        let hub = json!({"messages": [{"role": "user", "content": long}]});
        let text = user_text(hub.as_object().unwrap());
        assert_eq!(text.len(), MAX_CLASSIFIED_BYTES);
        assert!(text.chars().all(|c| c == 'x'));
    }
}
