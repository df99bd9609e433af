//! Prompt templates on the request path (DESIGN §7, docs/reference/templates.md).
//!
//! Three steps. [`vars`] reads `x-switchyard-template-vars` once the route is known (a bad
//! header is a 400 before anything else happens). [`prepare`] renders, for every target the
//! request may be sent to, the variant of that target's template that matches it, before the
//! first attempt: a variable the template does not declare, one it needs and nobody gave, or
//! an output over the cap is the request's fault and gets a 400 whichever target would have
//! been tried. [`shape`] then edits the request of each attempt with the text rendered for
//! the target being tried, so a failover from OpenAI to Anthropic sends Anthropic its own
//! variant. The templates themselves are parsed once per table ([`crate::table::Snapshot`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};
use switchyard_crds::template::{self, Rendered, Renderer, TEMPLATE_HEADER, VARS_HEADER};

use super::ctx::RequestCtx;
use super::respond::ClientError;
use super::route::ParsedRequest;
use crate::upstream::TargetRt;

/// What the templates add to each target's attempts, rendered before the first.
#[derive(Debug, Default)]
pub struct Prepared {
    /// By (`pool/provider`, model): the text for that target; absent when it gets none.
    rendered: HashMap<(String, String), Rendered>,
}

fn bad(message: impl Into<String>) -> ClientError {
    ClientError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

/// The request's template variables: none without the header; a 400 when it is not a JSON
/// object of strings within 4 KiB. Read whether or not a template applies, so that a client's
/// mistake shows at once rather than when a template is first attached to its route.
pub fn vars(headers: &HeaderMap) -> Result<BTreeMap<String, String>, ClientError> {
    match headers.get(VARS_HEADER) {
        None => Ok(BTreeMap::new()),
        Some(value) => template::parse_vars(value.as_bytes()).map_err(bad),
    }
}

/// Renders the template of each of `targets` that has one, with `vars` over its defaults.
pub fn prepare(
    renderer: &Renderer,
    targets: &[TargetRt],
    vars: &BTreeMap<String, String>,
) -> Result<Prepared, ClientError> {
    let mut prepared = Prepared::default();
    if renderer.is_empty() {
        return Ok(prepared);
    }
    for target in targets {
        let Some(name) = target.target.prompt_template.as_deref() else {
            continue;
        };
        // Checked apart from the render so that an unknown variable is refused even when no
        // variant matches this target.
        renderer
            .check_vars(name, vars)
            .map_err(|e| bad(e.to_string()))?;
        let api = target.upstream.def.api;
        let (upstream, model) = (&target.upstream.id, &target.target.model);
        if let Some(rendered) = renderer
            .render(name, api, upstream, model, vars)
            .map_err(|e| bad(e.to_string()))?
        {
            prepared
                .rendered
                .insert((upstream.clone(), model.clone()), rendered);
        }
    }
    Ok(prepared)
}

/// The hub request as the response cache keys it: with the variables and the `name@hash8` of
/// the templates `targets` use, since they change the prompt the providers are sent. (A route's
/// cache outlives a table swap that leaves the route as it was, an edited template's text
/// included: its new hash keeps the old answers from being served.)
pub fn cache_view<'a>(
    hub: &'a Map<String, Value>,
    vars: &BTreeMap<String, String>,
    renderer: &Renderer,
    targets: &[TargetRt],
) -> Cow<'a, Map<String, Value>> {
    let labels: BTreeSet<&str> = targets
        .iter()
        .filter_map(|t| renderer.get(t.target.prompt_template.as_deref()?))
        .map(|t| t.label.as_str())
        .collect();
    if vars.is_empty() && labels.is_empty() {
        return Cow::Borrowed(hub);
    }
    let mut keyed = hub.clone();
    let vars = vars
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())));
    keyed.insert(VARS_HEADER.into(), Value::Object(vars.collect()));
    let labels = labels.into_iter().map(|l| Value::String(l.into()));
    keyed.insert(TEMPLATE_HEADER.into(), Value::Array(labels.collect()));
    Cow::Owned(keyed)
}

/// A request edited for one target: the hub form and the client's own body, when it has one.
pub struct Shaped {
    pub hub: Map<String, Value>,
    pub original: Option<Map<String, Value>>,
}

/// The request as `target` gets it: `None` when no template text is for it (the request goes
/// as it came). Notes the template applied, for the `x-switchyard-template` header and the log.
pub fn shape(ctx: &mut RequestCtx, target: &TargetRt, request: &ParsedRequest) -> Option<Shaped> {
    let key = (target.upstream.id.clone(), target.target.model.clone());
    let Some(rendered) = ctx.prompts.rendered.get(&key) else {
        ctx.template = None;
        return None;
    };
    ctx.template = Some(rendered.label.clone());
    let mut hub = request.hub.clone();
    edit_hub(&mut hub, rendered);
    let original = request.original.clone().map(|mut original| {
        edit_original(&mut original, rendered);
        original
    });
    Some(Shaped { hub, original })
}

/// `prepend`, the text and `append`, separated by blank lines, the empty ones left out.
fn joined(rendered: &Rendered, text: &str) -> String {
    [
        rendered.prepend.as_deref(),
        Some(text),
        rendered.append.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join("\n\n")
}

/// Text parts as the OpenAI and Anthropic content arrays write them.
fn text_part(text: &str) -> Value {
    serde_json::json!({"type": "text", "text": text})
}

/// Edits a content that is a string or an array of text parts (OpenAI's system message,
/// Anthropic's `system`): a string is joined with the template text; an array gets a text part
/// in front and one at the end, so that parts with cache markers stay as they are.
fn edit_content(content: &mut Value, rendered: &Rendered) {
    match content {
        Value::Array(parts) => {
            if let Some(prepend) = rendered.prepend.as_deref().filter(|s| !s.is_empty()) {
                parts.insert(0, text_part(prepend));
            }
            if let Some(append) = rendered.append.as_deref().filter(|s| !s.is_empty()) {
                parts.push(text_part(append));
            }
        }
        Value::String(text) => *text = joined(rendered, text),
        // Null or a shape the provider will judge: the template text alone.
        other => *other = Value::String(joined(rendered, "")),
    }
}

/// The hub (OpenAI Chat Completions) request: the first `system` or `developer` message gets
/// the text; without one, a system message is put first.
fn edit_hub(hub: &mut Map<String, Value>, rendered: &Rendered) {
    let Some(Value::Array(messages)) = hub.get_mut("messages") else {
        return;
    };
    let system = messages.iter_mut().find(|m| {
        matches!(
            m.get("role").and_then(Value::as_str),
            Some("system" | "developer")
        )
    });
    match system.and_then(Value::as_object_mut) {
        Some(message) => {
            let content = message.entry("content").or_insert(Value::Null);
            edit_content(content, rendered);
        }
        None => messages.insert(
            0,
            serde_json::json!({"role": "system", "content": joined(rendered, "")}),
        ),
    }
}

/// The client's own body, sent as it is to a provider of the client's protocol: Anthropic's
/// `system`, or the Responses API's `instructions`.
fn edit_original(original: &mut Map<String, Value>, rendered: &Rendered) {
    if original.contains_key("messages") {
        // Anthropic Messages.
        let system = original.entry("system").or_insert(Value::Null);
        edit_content(system, rendered);
    } else {
        // Responses API.
        let instructions = original.entry("instructions").or_insert(Value::Null);
        edit_content(instructions, rendered);
    }
}

#[cfg(test)]
mod tests;
