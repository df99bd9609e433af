//! Prompt templates (DESIGN §7): the compiled form a route table carries, the check the compiler
//! runs on a `PromptTemplate`, and the renderer the sidecar builds once per table.
//!
//! The text is Jinja, rendered by `minijinja` built without its loader, `include`/`import`/
//! `extends` and macros (the `multi_template` and `macros` features are off), so a template can
//! read nothing but its own variables. Undefined variables are errors, rendering is bounded by
//! fuel (instructions and the memory they allocate) and a recursion limit, and the output is
//! capped at [`MAX_OUTPUT_BYTES`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::v1alpha1::{Api, PromptTemplateSpec};

/// Most bytes of template text one attempt may add to a request (prepend and append together).
/// A system prompt is a few KiB; more is a template gone wrong, refused with 400.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// Most bytes of the `x-switchyard-template-vars` header.
pub const MAX_VARS_HEADER_BYTES: usize = 4 * 1024;
/// The request header that overrides a template's variable defaults.
pub const VARS_HEADER: &str = "x-switchyard-template-vars";
/// The response header naming the template applied, as `name@hash8`.
pub const TEMPLATE_HEADER: &str = "x-switchyard-template";
/// Fuel per render: minijinja charges about one unit per instruction and per 64 bytes allocated,
/// so this bounds a render to roughly 20,000 instructions or 1.3 MB, far above any system
/// prompt and far below what would hurt a sidecar.
const FUEL: u64 = 20_000;
/// Nesting of `if`/`for` blocks a render may reach.
const RECURSION_LIMIT: usize = 32;

/// A compiled `PromptTemplate`, as the table carries it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// `<name>@<first 8 hex digits of the SHA-256 of the spec>`: the response header and the
    /// request log show it, so a change of text is visible in both.
    pub label: String,
    /// Declared variables and their defaults (`None`: the request must give it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, Option<String>>,
    /// The variants in order; the first whose match holds for a target is rendered for it.
    pub variants: Vec<Variant>,
}

/// One variant of a compiled template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    /// The target's provider speaks this API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
    /// The target's upstream, `pool/provider`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The target's model, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Jinja text put before the system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepend: Option<String>,
    /// Jinja text put after the system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<String>,
}

impl Variant {
    /// Whether this variant is for a target of `upstream` (`pool/provider`, speaking `api`)
    /// and `model`.
    pub fn matches(&self, api: Api, upstream: &str, model: &str) -> bool {
        self.api.is_none_or(|a| a == api)
            && self.upstream.as_deref().is_none_or(|u| u == upstream)
            && self.model.as_deref().is_none_or(|m| m == model)
    }
}

/// `<name>@<hash8>` for a template's spec: the hash of its canonical JSON, so that equal specs
/// give equal labels on every replica.
pub fn label(name: &str, spec: &PromptTemplateSpec) -> String {
    let bytes = serde_json::to_vec(spec).expect("a template spec always serializes");
    let digest = Sha256::digest(&bytes);
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}@{hash}")
}

/// A template text that cannot be used, and where it is (`spec.variants[1].system.prepend`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextError {
    pub field: String,
    pub message: String,
}

/// The environment every template is parsed and rendered in: no loader, strict undefined, fuel
/// and a recursion limit.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    // Plain text, never HTML: no auto-escaping whatever a name looks like.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// Checks every text of a template: it parses, and uses only declared variables (and the
/// engine's own globals such as `range`). Each problem names its field.
pub fn check(spec: &PromptTemplateSpec) -> Vec<TextError> {
    let env = environment();
    let globals: BTreeSet<String> = env.globals().map(|(name, _)| name.to_string()).collect();
    let declared: BTreeSet<&str> = spec.variables.iter().map(|v| v.name.as_str()).collect();
    let mut errors = Vec::new();
    for (i, variant) in spec.variants.iter().enumerate() {
        let parts = [
            ("prepend", &variant.system.prepend),
            ("append", &variant.system.append),
        ];
        for (part, text) in parts {
            let Some(text) = text else { continue };
            let field = format!("spec.variants[{i}].system.{part}");
            match env.template_from_str(text) {
                Err(e) => errors.push(TextError {
                    field,
                    message: format!("template syntax error: {}", describe(&e)),
                }),
                Ok(template) => {
                    let mut unknown: Vec<String> = template
                        .undeclared_variables(false)
                        .into_iter()
                        .filter(|v| !declared.contains(v.as_str()) && !globals.contains(v))
                        .collect();
                    unknown.sort();
                    if !unknown.is_empty() {
                        errors.push(TextError {
                            field,
                            message: format!(
                                "uses undeclared variable{} {}; declare {} in spec.variables",
                                if unknown.len() == 1 { "" } else { "s" },
                                unknown.join(", "),
                                if unknown.len() == 1 { "it" } else { "them" },
                            ),
                        });
                    }
                }
            }
        }
    }
    errors
}

/// A minijinja error as one line: its kind, detail and line number.
fn describe(error: &minijinja::Error) -> String {
    let mut out = error.kind().to_string();
    if let Some(detail) = error.detail() {
        out.push_str(": ");
        out.push_str(detail);
    }
    if let Some(line) = error.line() {
        out.push_str(&format!(" (line {line})"));
    }
    out
}

/// Why a render failed; always the request's (or the template's) fault, shown to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenderError {
    /// The vars header names a variable the template does not declare.
    UnknownVariable { template: String, name: String },
    /// A variable without a default that the request did not give.
    MissingVariable { template: String, name: String },
    /// The engine refused (undefined value, out of fuel, a filter's error).
    Engine { template: String, message: String },
    /// The output is larger than [`MAX_OUTPUT_BYTES`].
    TooLarge { template: String, bytes: usize },
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownVariable { template, name } => write!(
                f,
                "{VARS_HEADER} names variable {name:?}, which prompt template {template} does not declare"
            ),
            Self::MissingVariable { template, name } => write!(
                f,
                "prompt template {template} needs variable {name:?}: give it in {VARS_HEADER}"
            ),
            Self::Engine { template, message } => {
                write!(
                    f,
                    "prompt template {template} cannot be rendered: {message}"
                )
            }
            Self::TooLarge { template, bytes } => write!(
                f,
                "prompt template {template} rendered {bytes} bytes, more than the {MAX_OUTPUT_BYTES} allowed"
            ),
        }
    }
}

/// What a template adds to one request for one target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    /// The template's `name@hash8`.
    pub label: String,
    pub prepend: Option<String>,
    pub append: Option<String>,
}

/// Every template of a table, parsed once (when the table is swapped in) and rendered per
/// attempt.
pub struct Renderer {
    env: Environment<'static>,
    templates: HashMap<String, Template>,
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renderer")
            .field("templates", &self.templates.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The name a variant's text is registered under in the environment.
fn part_name(template: &str, variant: usize, part: &str) -> String {
    format!("{template}/{variant}/{part}")
}

impl Renderer {
    /// Parses every text of `templates` (by name). A text that does not parse is left out with
    /// its template, and named in the error list: the compiler already refused such templates,
    /// so this only happens to a table written by hand.
    pub fn new(templates: &BTreeMap<String, Template>) -> (Self, Vec<String>) {
        let mut env = environment();
        let mut kept = HashMap::new();
        let mut errors = Vec::new();
        'templates: for (name, template) in templates {
            for (i, variant) in template.variants.iter().enumerate() {
                for (part, text) in [("prepend", &variant.prepend), ("append", &variant.append)] {
                    if let Some(text) = text
                        && let Err(e) =
                            env.add_template_owned(part_name(name, i, part), text.clone())
                    {
                        errors.push(format!("prompt template {name}: {}", describe(&e)));
                        continue 'templates;
                    }
                }
            }
            kept.insert(name.clone(), template.clone());
        }
        (
            Self {
                env,
                templates: kept,
            },
            errors,
        )
    }

    /// Whether the renderer holds no template (most tables): nothing to do per request.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// The template called `name`, if the table has it.
    pub fn get(&self, name: &str) -> Option<&Template> {
        self.templates.get(name)
    }

    /// Checks the variables a request gives against template `name`: each must be declared.
    pub fn check_vars(
        &self,
        name: &str,
        vars: &BTreeMap<String, String>,
    ) -> Result<(), RenderError> {
        let Some(template) = self.templates.get(name) else {
            return Ok(());
        };
        match vars
            .keys()
            .find(|k| !template.variables.contains_key(k.as_str()))
        {
            Some(unknown) => Err(RenderError::UnknownVariable {
                template: template.label.clone(),
                name: unknown.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Renders template `name` for a target of `upstream` (speaking `api`) and `model`, with
    /// the request's `vars` over the defaults. `Ok(None)`: no such template, or no variant
    /// for this target.
    pub fn render(
        &self,
        name: &str,
        api: Api,
        upstream: &str,
        model: &str,
        vars: &BTreeMap<String, String>,
    ) -> Result<Option<Rendered>, RenderError> {
        let Some(template) = self.templates.get(name) else {
            return Ok(None);
        };
        let Some((index, variant)) = template
            .variants
            .iter()
            .enumerate()
            .find(|(_, v)| v.matches(api, upstream, model))
        else {
            return Ok(None);
        };
        let label = &template.label;
        let mut context = BTreeMap::new();
        for (var, default) in &template.variables {
            match vars.get(var).or(default.as_ref()) {
                Some(value) => {
                    context.insert(var.as_str(), value.as_str());
                }
                None => {
                    return Err(RenderError::MissingVariable {
                        template: label.clone(),
                        name: var.clone(),
                    });
                }
            }
        }
        if let Some(unknown) = vars.keys().find(|k| !template.variables.contains_key(*k)) {
            return Err(RenderError::UnknownVariable {
                template: label.clone(),
                name: unknown.clone(),
            });
        }
        let context = minijinja::Value::from_object(Context(
            context
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        let mut total = 0;
        let mut part = |which: &str, present: bool| -> Result<Option<String>, RenderError> {
            if !present {
                return Ok(None);
            }
            let engine = |e: minijinja::Error| RenderError::Engine {
                template: label.clone(),
                message: describe(&e),
            };
            let text = self
                .env
                .get_template(&part_name(name, index, which))
                .map_err(engine)?
                .render(context.clone())
                .map_err(engine)?;
            total += text.len();
            if total > MAX_OUTPUT_BYTES {
                return Err(RenderError::TooLarge {
                    template: label.clone(),
                    bytes: total,
                });
            }
            Ok(Some(text))
        };
        let prepend = part("prepend", variant.prepend.is_some())?;
        let append = part("append", variant.append.is_some())?;
        Ok(Some(Rendered {
            label: label.clone(),
            prepend,
            append,
        }))
    }
}

/// A render's variables as a minijinja map. minijinja is built without `std_collections`
/// (which would bring conversions for every std collection), and `Value::from_iter` makes a
/// sequence, so the map is this small object.
#[derive(Debug)]
struct Context(BTreeMap<String, String>);

impl minijinja::value::Object for Context {
    fn get_value(self: &std::sync::Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        self.0
            .get(key.as_str()?)
            .map(|v| minijinja::Value::from(v.as_str()))
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        use minijinja::value::ObjectExt;
        self.mapped_enumerator(|this| {
            Box::new(this.0.keys().map(|k| minijinja::Value::from(k.as_str())))
        })
    }
}

/// The variables of an `x-switchyard-template-vars` header: a JSON object of strings, at most
/// [`MAX_VARS_HEADER_BYTES`]. The error says what is wrong, for a 400.
pub fn parse_vars(value: &[u8]) -> Result<BTreeMap<String, String>, String> {
    if value.len() > MAX_VARS_HEADER_BYTES {
        return Err(format!(
            "{VARS_HEADER} is {} bytes; at most {MAX_VARS_HEADER_BYTES} are allowed",
            value.len()
        ));
    }
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(value)
        .map_err(|e| format!("{VARS_HEADER} must be a JSON object of strings: {e}"))?;
    object
        .into_iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(s) => Ok((name, s)),
            other => Err(format!(
                "{VARS_HEADER}: variable {name:?} must be a string, not {}",
                json_type(&other)
            )),
        })
        .collect()
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Compiles a spec into the table's form; `upstream` ids are `pool/provider`.
pub fn compile(name: &str, spec: &PromptTemplateSpec) -> Template {
    Template {
        label: label(name, spec),
        variables: spec
            .variables
            .iter()
            .map(|v| (v.name.clone(), v.default.clone()))
            .collect(),
        variants: spec
            .variants
            .iter()
            .map(|v| Variant {
                api: v.match_.api,
                upstream: v
                    .match_
                    .provider
                    .as_ref()
                    .map(|p| format!("{}/{}", p.pool, p.provider)),
                model: v.match_.model.clone(),
                prepend: v.system.prepend.clone(),
                append: v.system.append.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
