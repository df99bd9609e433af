//! Phase 1: check the request's shape ([`check`]), bring it into the hub format ([`to_hub`]) and
//! find its route by `model` ([`find`]).
//!
//! The sidecar checks only what it needs to route (docs/reference/api.md): a JSON object with a
//! `model` and a non-empty `messages` array of known roles (for the Responses API an `input`
//! instead). Everything else is the provider's to judge.

use std::sync::Arc;

use http::StatusCode;
use serde_json::{Map, Value};
use switchyard_crds::v1alpha1::{Api, ModelType};

use super::respond::{ClientApi, ClientError};
use crate::convert::{anthropic_openai, responses};
use crate::table::{RouteRt, Snapshot};

/// Roles each client format may use.
fn known_roles(api: ClientApi) -> &'static [&'static str] {
    match api {
        ClientApi::OpenAI => &[
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
            "function",
        ],
        ClientApi::Anthropic => &["user", "assistant"],
        // Checked item by item when the request is converted.
        ClientApi::Responses => &[],
    }
}

/// A parsed request that passed the shape check.
pub struct ParsedRequest {
    /// The request in the hub (OpenAI) format.
    pub hub: Map<String, Value>,
    /// The client's own body when it is not in the hub format.
    pub original: Option<Map<String, Value>>,
    pub model: String,
    pub stream: bool,
    pub wants_usage: bool,
    /// A Responses API request that goes to the providers' own `/responses` unchanged but for
    /// `model` ([`responses_path`]).
    pub passthrough: bool,
    /// What a translated Responses answer echoes of the request (empty for other formats).
    pub echo: responses::Echo,
}

fn bad(message: impl Into<String>) -> ClientError {
    ClientError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

/// A request that passed the shape check, still in the client's format.
pub struct Checked {
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
}

/// Parses the body and checks what routing needs: a `model`, `messages` of known roles, and a
/// boolean `stream` if any.
pub fn check(api: ClientApi, bytes: &[u8]) -> Result<Checked, ClientError> {
    let value: Value = crate::convert::parse_json(bytes)
        .map_err(|e| bad(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(bad("request body must be a JSON object"));
    };
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => return Err(bad("`model` must be a non-empty string")),
        None => return Err(bad("`model` is required")),
    };
    if api == ClientApi::Responses {
        match body.get("input") {
            Some(Value::String(_)) => {}
            Some(Value::Array(items)) if !items.is_empty() => {}
            Some(Value::Array(_)) => return Err(bad("`input` must not be empty")),
            Some(_) => return Err(bad("`input` must be a string or an array of input items")),
            // A stateful request may have none; translation refuses it if it has not.
            None => {}
        }
        return checked(body, model);
    }
    let messages = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err(bad("`messages` must not be empty")),
        Some(_) => return Err(bad("`messages` must be an array")),
        None => return Err(bad("`messages` is required")),
    };
    let roles = known_roles(api);
    for (i, message) in messages.iter().enumerate() {
        match message.get("role") {
            Some(Value::String(role)) if roles.contains(&role.as_str()) => {}
            Some(Value::String(role)) => {
                return Err(bad(format!(
                    "messages[{i}].role {role:?} is not one of {}",
                    roles.join(", ")
                )));
            }
            _ => return Err(bad(format!("messages[{i}] needs a string `role`"))),
        }
    }
    checked(body, model)
}

/// The checked request, once its `stream` is a boolean if given.
fn checked(body: Map<String, Value>, model: String) -> Result<Checked, ClientError> {
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("`stream` must be a boolean")),
    };
    Ok(Checked {
        body,
        model,
        stream,
    })
}

/// How a Responses API request to a route is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponsesPath {
    /// Translated into Chat Completions, statelessly (every other client format too).
    Translate,
    /// Passed through to the providers' own `/responses`.
    PassThrough {
        /// The upstreams (`pool/provider`) the route may use, when more than one: a request
        /// naming stored state could land in an account that does not hold it.
        several: Option<String>,
    },
}

/// How a request of `api` to `route` is served. A Responses request passes through when every
/// target the route may use (its rules' included) is an `api: OpenAI` provider that declares
/// `responsesApi: true`, so that built-in tools and the provider's own events work and nothing
/// is translated. A route that mixes them translates every request, since a failover could not
/// carry a passed-through request to a provider that does not speak the API. Stored state
/// (`previous_response_id`, `store: true`, ...) lives in one provider account, so it is passed
/// through only when all those targets are one upstream ([`to_hub`] refuses it otherwise).
pub fn responses_path(api: ClientApi, route: Option<&Arc<RouteRt>>) -> ResponsesPath {
    let Some(route) = route.filter(|_| api == ClientApi::Responses) else {
        return ResponsesPath::Translate;
    };
    let targets: Vec<_> = route
        .targets
        .iter()
        .chain(route.rules.iter().flat_map(|(_, targets)| targets))
        .collect();
    let through = !targets.is_empty()
        && targets
            .iter()
            .all(|t| t.upstream.def.api == Api::OpenAI && t.upstream.def.responses_api);
    if !through {
        return ResponsesPath::Translate;
    }
    let mut upstreams: Vec<&str> = targets.iter().map(|t| t.upstream.id.as_str()).collect();
    upstreams.sort_unstable();
    upstreams.dedup();
    let several = (upstreams.len() > 1).then(|| upstreams.join(", "));
    ResponsesPath::PassThrough { several }
}

/// Brings a checked request into the hub (OpenAI) format: an Anthropic body is converted and
/// kept as the original, for providers that speak Anthropic themselves.
pub fn to_hub(
    api: ClientApi,
    checked: Checked,
    path: ResponsesPath,
) -> Result<ParsedRequest, ClientError> {
    let Checked {
        body,
        model,
        stream,
    } = checked;
    match api {
        ClientApi::OpenAI => {
            let wants_usage = body
                .get("stream_options")
                .and_then(|o| o.get("include_usage"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Ok(ParsedRequest {
                hub: body,
                original: None,
                model,
                stream,
                wants_usage,
                passthrough: false,
                echo: responses::Echo::default(),
            })
        }
        ClientApi::Anthropic => {
            let hub = anthropic_openai::request(&body).map_err(bad)?;
            // Anthropic streams always carry usage: the encoder needs every usage chunk.
            Ok(ParsedRequest {
                hub,
                original: Some(body),
                model,
                stream,
                wants_usage: true,
                passthrough: false,
                echo: responses::Echo::default(),
            })
        }
        ClientApi::Responses => {
            let passthrough = matches!(path, ResponsesPath::PassThrough { .. });
            if body.get("background") == Some(&Value::Bool(true)) {
                return Err(bad(responses::BACKGROUND));
            }
            if !passthrough && let Some(why) = responses::stateful(&body) {
                return Err(bad(why));
            }
            if let ResponsesPath::PassThrough {
                several: Some(upstreams),
            } = &path
                && let Some(field) = responses::stored_state(&body)
            {
                return Err(bad(format!(
                    "{field} needs state stored in one provider account, and model {:?} is served by several upstreams ({upstreams}), where a failover or the load balancing would lose it: route stateful Responses requests to a model whose targets are one upstream provider, or send the whole conversation as `input` items with `store: false`",
                    shown_model(&model)
                )));
            }
            let hub = match responses::request(&body) {
                Ok(hub) => hub,
                Err(why) if !passthrough => return Err(bad(why)),
                // The provider judges what it is sent; the hub form only feeds rules, the
                // strategy and the cache key, which then see the request as empty.
                Err(_) => {
                    let mut hub = Map::new();
                    hub.insert("model".into(), Value::String(model.clone()));
                    hub.insert("messages".into(), Value::Array(Vec::new()));
                    hub.insert("stream".into(), Value::Bool(stream));
                    hub
                }
            };
            // A passed-through answer is the provider's own, echo and all.
            let echo = if passthrough {
                responses::Echo::default()
            } else {
                responses::Echo::new(&body)
            };
            // The encoder needs every usage chunk for the final `usage`.
            Ok(ParsedRequest {
                hub,
                original: Some(body),
                model,
                stream,
                wants_usage: true,
                passthrough,
                echo,
            })
        }
    }
}

/// The longest model name echoed back in an error or a log line; the lookup itself uses the
/// whole name. A client can send megabytes as `model`, and each echo would copy them.
pub const SHOWN_MODEL_BYTES: usize = 256;

/// `model` as errors and logs show it: cut at [`SHOWN_MODEL_BYTES`] (on a character boundary),
/// saying how long it really was.
pub fn shown_model(model: &str) -> String {
    if model.len() <= SHOWN_MODEL_BYTES {
        return model.to_owned();
    }
    let cut = (0..=SHOWN_MODEL_BYTES)
        .rev()
        .find(|&i| model.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}… ({} bytes)", &model[..cut], model.len())
}

/// The route for `model`, or a 404 that lists what exists.
pub fn find(snapshot: &Snapshot, model: &str) -> Result<Arc<RouteRt>, ClientError> {
    snapshot.routes.get(model).cloned().ok_or_else(|| {
        let known: Vec<&str> = snapshot
            .routes
            .keys()
            .map(String::as_str)
            .take(20)
            .collect();
        ClientError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "no route for model {:?}; this sidecar serves: {}",
                shown_model(model),
                known.join(", ")
            ),
        )
    })
}

/// A route's model type: its targets' (compile keeps them all alike, rules included).
pub fn kind_of(route: &RouteRt) -> ModelType {
    route
        .route
        .targets
        .first()
        .map_or(ModelType::Chat, |t| t.kind)
}

/// A 400 naming the route when it serves the other kind of model than the endpoint called:
/// a chat route cannot embed, nor an embedding route chat.
pub fn check_kind(route: &RouteRt, wanted: ModelType) -> Result<(), ClientError> {
    let kind = kind_of(route);
    if kind == wanted {
        return Ok(());
    }
    let (serves, endpoint) = match kind {
        ModelType::Chat => (
            "chat",
            "POST /v1/chat/completions, /v1/messages or /v1/responses",
        ),
        ModelType::Embedding => ("embeddings", "POST /v1/embeddings"),
    };
    Err(bad(format!(
        "model {:?} is route {} which serves {serves} ({} models); call {endpoint}",
        shown_model(&route.route.model),
        route.route.name,
        kind.as_str()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_model_names_are_cut_for_display_on_a_char_boundary() {
        assert_eq!(shown_model("chat"), "chat");
        let long = "é".repeat(1_000_000);
        let shown = shown_model(&long);
        assert!(shown.len() < SHOWN_MODEL_BYTES + 32, "{}", shown.len());
        assert!(shown.ends_with("… (2000000 bytes)"), "{shown}");
    }

    fn err(body: &str) -> String {
        check(ClientApi::OpenAI, body.as_bytes())
            .and_then(|c| to_hub(ClientApi::OpenAI, c, ResponsesPath::Translate))
            .err()
            .unwrap()
            .message
    }

    #[test]
    fn shape_errors_say_what_is_wrong() {
        assert!(err("{").contains("not valid JSON"));
        assert!(err("[]").contains("JSON object"));
        assert!(
            err(r#"{"messages":[{"role":"user","content":"x"}]}"#).contains("`model` is required")
        );
        assert!(err(r#"{"model":7,"messages":[]}"#).contains("non-empty string"));
        assert!(err(r#"{"model":"m"}"#).contains("`messages` is required"));
        assert!(err(r#"{"model":"m","messages":[]}"#).contains("must not be empty"));
        assert!(err(r#"{"model":"m","messages":{}}"#).contains("must be an array"));
        assert!(err(r#"{"model":"m","messages":[{"role":"wizard"}]}"#).contains("\"wizard\""));
        assert!(err(r#"{"model":"m","messages":[{}]}"#).contains("messages[0]"));
        assert!(
            err(r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#).contains("boolean")
        );
    }

    #[test]
    fn valid_requests_parse() {
        let body = r#"{"model":"chat","messages":[{"role":"developer","content":"x"},{"role":"user","content":"y"}],
            "stream":true,"stream_options":{"include_usage":true}}"#;
        let p = check(ClientApi::OpenAI, body.as_bytes())
            .and_then(|c| to_hub(ClientApi::OpenAI, c, ResponsesPath::Translate))
            .unwrap();
        assert_eq!(p.model, "chat");
        assert!(p.stream && p.wants_usage);
    }

    fn responses(body: serde_json::Value, path: ResponsesPath) -> Result<ParsedRequest, String> {
        check(ClientApi::Responses, body.to_string().as_bytes())
            .and_then(|c| to_hub(ClientApi::Responses, c, path))
            .map_err(|e| e.message)
    }

    #[test]
    fn stored_state_passes_through_only_to_one_upstream() {
        let one = || ResponsesPath::PassThrough { several: None };
        let several = || ResponsesPath::PassThrough {
            several: Some("p/a, p/b".into()),
        };
        let followup =
            serde_json::json!({"model": "m", "input": "more", "previous_response_id": "resp_1"});
        assert!(responses(followup.clone(), one()).unwrap().passthrough);
        let why = responses(followup.clone(), several()).err().unwrap();
        assert!(why.contains("`previous_response_id`"), "{why}");
        assert!(why.contains("several upstreams (p/a, p/b)"), "{why}");
        assert!(
            responses(followup, ResponsesPath::Translate)
                .err()
                .unwrap()
                .contains("statelessly")
        );
        for stateful in [
            serde_json::json!({"model": "m", "input": "x", "store": true}),
            serde_json::json!({"model": "m", "input": "x", "conversation": "conv_1"}),
            serde_json::json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
        ] {
            assert!(responses(stateful.clone(), one()).is_ok(), "{stateful}");
            assert!(
                responses(stateful.clone(), several()).is_err(),
                "{stateful}"
            );
        }
        // Stateless requests, built-in tools included, pass through to several upstreams.
        let stateless = serde_json::json!({"model": "m", "input": "x", "store": false,
            "tools": [{"type": "web_search"}]});
        assert!(responses(stateless, several()).unwrap().passthrough);
    }

    #[test]
    fn background_is_refused_even_when_passed_through() {
        let body = serde_json::json!({"model": "m", "input": "x", "background": true});
        for path in [
            ResponsesPath::Translate,
            ResponsesPath::PassThrough { several: None },
        ] {
            let why = responses(body.clone(), path).err().unwrap();
            assert!(why.contains("`background: true`"), "{why}");
            assert!(why.contains("does not proxy"), "{why}");
        }
    }
}
