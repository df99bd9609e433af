use super::*;
use crate::v1alpha1::PromptTemplateSpec;

fn spec(yaml: &str) -> PromptTemplateSpec {
    serde_yaml::from_str(yaml).expect("a valid spec")
}

/// The DESIGN §7 example, with a provider and a model variant in front.
const SUPPORT: &str = r#"
variables: [{name: product, default: Acme}, {name: tier}]
variants:
  - match: {model: special-model}
    system: {prepend: "model variant for {{ product }}"}
  - match: {provider: {pool: frontier, provider: backup}}
    system: {append: "provider variant, tier {{ tier }}"}
  - match: {api: Anthropic}
    system: {prepend: "<role>You support {{ product }} customers.</role>"}
  - match: {}
    system: {prepend: "You support {{ product }} customers.", append: "Answer in under 200 words."}
"#;

fn renderer(name: &str, yaml: &str) -> Renderer {
    let spec = spec(yaml);
    assert_eq!(check(&spec), vec![], "the spec checks");
    let templates = BTreeMap::from([(name.to_string(), compile(name, &spec))]);
    let (renderer, errors) = Renderer::new(&templates);
    assert!(errors.is_empty(), "{errors:?}");
    renderer
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_first_variant_matching_the_target_is_rendered() {
    let r = renderer("support", SUPPORT);
    let v = vars(&[("tier", "gold")]);
    let render = |api, upstream, model| r.render("support", api, upstream, model, &v).unwrap();

    let openai = render(Api::OpenAI, "frontier/openai", "gpt-4o").unwrap();
    assert_eq!(
        openai.prepend.as_deref(),
        Some("You support Acme customers.")
    );
    assert_eq!(openai.append.as_deref(), Some("Answer in under 200 words."));

    let anthropic = render(Api::Anthropic, "frontier/anthropic", "claude").unwrap();
    assert_eq!(
        anthropic.prepend.as_deref(),
        Some("<role>You support Acme customers.</role>")
    );
    assert_eq!(anthropic.append, None);

    // A provider match beats the API match below it, whatever the provider speaks.
    let backup = render(Api::Anthropic, "frontier/backup", "claude").unwrap();
    assert_eq!(backup.prepend, None);
    assert_eq!(
        backup.append.as_deref(),
        Some("provider variant, tier gold")
    );

    let model = render(Api::Gemini, "frontier/backup", "special-model").unwrap();
    assert_eq!(model.prepend.as_deref(), Some("model variant for Acme"));
    assert_eq!(model.label, openai.label);
    assert!(openai.label.starts_with("support@"));
}

#[test]
fn a_target_no_variant_matches_gets_nothing() {
    let r = renderer(
        "only-anthropic",
        "variants: [{match: {api: Anthropic}, system: {prepend: hi}}]",
    );
    let none = r.render("only-anthropic", Api::OpenAI, "p/o", "m", &BTreeMap::new());
    assert_eq!(none, Ok(None));
    assert_eq!(
        r.render("missing", Api::OpenAI, "p/o", "m", &BTreeMap::new()),
        Ok(None)
    );
}

#[test]
fn request_variables_override_defaults_and_must_be_declared() {
    let r = renderer("support", SUPPORT);
    let given = vars(&[("product", "Widgets Inc"), ("tier", "gold")]);
    let out = r
        .render("support", Api::OpenAI, "p/o", "m", &given)
        .unwrap()
        .unwrap();
    assert_eq!(
        out.prepend.as_deref(),
        Some("You support Widgets Inc customers.")
    );

    let unknown = vars(&[("tier", "gold"), ("colour", "red")]);
    assert_eq!(
        r.check_vars("support", &unknown),
        Err(RenderError::UnknownVariable {
            template: out.label.clone(),
            name: "colour".into()
        })
    );
    assert!(matches!(
        r.render("support", Api::OpenAI, "p/o", "m", &unknown),
        Err(RenderError::UnknownVariable { .. })
    ));

    // `tier` has no default: a request must give it.
    let missing = r.render("support", Api::OpenAI, "p/o", "m", &BTreeMap::new());
    assert_eq!(
        missing,
        Err(RenderError::MissingVariable {
            template: out.label.clone(),
            name: "tier".into()
        })
    );
    assert!(
        missing.unwrap_err().to_string().contains(VARS_HEADER),
        "the message says where to give it"
    );
}

#[test]
fn undeclared_variables_and_syntax_errors_are_caught_by_the_check() {
    let errors = check(&spec(
        "variables: [{name: product}]\nvariants:\n  - system: {prepend: '{{ product }} {{ nope }} {{ range(3) | length }}'}\n  - system: {append: '{% if product %}unclosed'}\n",
    ));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].field, "spec.variants[0].system.prepend");
    assert!(
        errors[0].message.contains("undeclared variable nope"),
        "{}",
        errors[0].message
    );
    assert!(
        !errors[0].message.contains("range"),
        "globals are not variables"
    );
    assert_eq!(errors[1].field, "spec.variants[1].system.append");
    assert!(
        errors[1].message.starts_with("template syntax error"),
        "{}",
        errors[1].message
    );
}

#[test]
fn templates_cannot_include_import_or_extend() {
    for text in [
        "{% include 'support/0/prepend' %}",
        "{% import 'x' as y %}",
        "{% extends 'x' %}",
        "{% macro m() %}x{% endmacro %}",
    ] {
        let errors = check(&spec(&format!(
            "variants: [{{system: {{prepend: \"{text}\"}}}}]"
        )));
        assert_eq!(errors.len(), 1, "{text}: {errors:?}");
    }
}

#[test]
fn undefined_values_fail_at_render_time_too() {
    // A table written by hand can skip the compiler's check: strict undefined still refuses.
    let templates = BTreeMap::from([(
        "t".to_string(),
        Template {
            label: "t@00000000".into(),
            variables: BTreeMap::new(),
            variants: vec![Variant {
                api: None,
                upstream: None,
                model: None,
                prepend: Some("{{ secret_thing }}".into()),
                append: None,
            }],
        },
    )]);
    let (r, errors) = Renderer::new(&templates);
    assert!(errors.is_empty());
    let err = r
        .render("t", Api::OpenAI, "p/o", "m", &BTreeMap::new())
        .unwrap_err();
    assert!(matches!(err, RenderError::Engine { .. }), "{err:?}");
    assert!(err.to_string().contains("undefined"), "{err}");
}

#[test]
fn output_is_capped() {
    let r = renderer(
        "big",
        "variables: [{name: chunk}]\nvariants: [{system: {prepend: '{% for i in range(17) %}{{ chunk }}{% endfor %}'}}]",
    );
    let chunk = "x".repeat(4000);
    let small = r.render("big", Api::OpenAI, "p/o", "m", &vars(&[("chunk", "x")]));
    assert_eq!(small.unwrap().unwrap().prepend.unwrap().len(), 17);
    let large = r.render("big", Api::OpenAI, "p/o", "m", &vars(&[("chunk", &chunk)]));
    assert!(
        matches!(large, Err(RenderError::TooLarge { bytes: 68_000, .. })),
        "{large:?}"
    );
}

#[test]
fn runaway_templates_run_out_of_fuel() {
    let r = renderer(
        "loop",
        "variants: [{system: {prepend: '{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}'}}]",
    );
    let err = r
        .render("loop", Api::OpenAI, "p/o", "m", &BTreeMap::new())
        .unwrap_err();
    assert!(err.to_string().contains("fuel"), "{err}");
}

#[test]
fn the_label_is_a_stable_hash_of_the_spec() {
    let a = label("support", &spec(SUPPORT));
    // Golden: a change to how specs hash changes every header and log line users see.
    assert_eq!(a, "support@f73b1f92");
    assert_eq!(a, label("support", &spec(SUPPORT)));
    let edited = SUPPORT.replace("200 words", "150 words");
    assert_ne!(a, label("support", &spec(&edited)));
}

#[test]
fn vars_header_is_a_small_json_object_of_strings() {
    assert_eq!(
        parse_vars(br#"{"product": "Widgets", "tier": "gold"}"#),
        Ok(vars(&[("product", "Widgets"), ("tier", "gold")]))
    );
    let err = parse_vars(b"{not json").unwrap_err();
    assert!(err.contains("JSON object of strings"), "{err}");
    let err = parse_vars(b"[\"a\"]").unwrap_err();
    assert!(err.contains("JSON object"), "{err}");
    let err = parse_vars(br#"{"n": 3}"#).unwrap_err();
    assert!(
        err.contains("\"n\" must be a string, not a number"),
        "{err}"
    );
    let big = format!(r#"{{"a": "{}"}}"#, "x".repeat(MAX_VARS_HEADER_BYTES));
    let err = parse_vars(big.as_bytes()).unwrap_err();
    assert!(err.contains("at most 4096"), "{err}");
}
