use super::*;
use crate::compile::Audience;

const POOL: &str = r#"
apiVersion: switchyard.dev/v1alpha1
kind: ProviderPool
metadata: {name: frontier}
spec:
  providers:
    - name: openai
      api: openai
      baseUrl: https://api.openai.com/v1/
      apiKey: {secretKeyRef: {name: llm-keys, key: openai}}
      timeouts: {connect: 2s, firstToken: 20s}
      models:
        - {name: gpt-4o, inputPerMillion: "2.50", cachedInputPerMillion: "1.25", outputPerMillion: "10.00", contextWindow: 128000}
---
apiVersion: v1
kind: Secret
metadata: {name: llm-keys}
stringData: {openai: "sk-test\n"}
---
apiVersion: switchyard.dev/v1alpha1
kind: ModelRoute
metadata: {name: chat}
spec:
  model: chat
  targets: [{pool: frontier, provider: openai, model: gpt-4o}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
"#;

fn load_str(text: &str) -> Result<Manifests> {
    let mut m = Manifests::default();
    m.add_str(Path::new("test.yaml"), text)?;
    Ok(m)
}

fn audience() -> Audience {
    Audience {
        namespace: "default".into(),
        ..Default::default()
    }
}

#[test]
fn loads_pools_routes_and_secrets_and_skips_other_kinds() {
    let m = load_str(POOL).unwrap();
    assert_eq!((m.pools.len(), m.routes.len(), m.secrets.len()), (1, 1, 1));
    assert_eq!(m.skipped, vec!["Deployment app (test.yaml)".to_string()]);
    assert_eq!(m.pools[0].namespace().as_deref(), Some("default"));

    let (table, warnings) = m.compile(&audience(), "test").unwrap();
    assert!(warnings.is_empty());
    let upstream = &table.upstreams["frontier/openai"];
    assert_eq!(
        upstream.base_url, "https://api.openai.com/v1",
        "trailing slash trimmed"
    );
    assert_eq!(
        upstream.api_key.as_ref().unwrap().expose(),
        "sk-test",
        "newline trimmed"
    );
    assert_eq!(upstream.timeouts.connect, 2000);
    assert_eq!(
        table.routes["chat"].targets[0]
            .pricing
            .cached_input_per_million,
        1.25
    );
}

#[test]
fn unknown_fields_are_named() {
    let text = POOL.replace("baseUrl:", "baseURL:");
    let err = load_str(&text).unwrap_err().to_string();
    assert!(
        err.contains("spec.providers[0].baseURL: unknown field"),
        "{err}"
    );
    assert!(err.contains("test.yaml: document 1"), "{err}");
}

#[test]
fn wrong_types_are_named() {
    let text = POOL.replace("contextWindow: 128000", "contextWindow: lots");
    let err = load_str(&text).unwrap_err().to_string();
    assert!(
        err.contains("spec.providers[0].models[0].contextWindow"),
        "{err}"
    );
}

#[test]
fn invalid_references_name_file_object_and_field() {
    let text = POOL.replace(
        "provider: openai, model: gpt-4o",
        "provider: openai, model: gpt-5",
    );
    let err = load_str(&text)
        .unwrap()
        .compile(&audience(), "t")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test.yaml: ModelRoute default/chat: spec.targets[0].model"),
        "{err}"
    );
    assert!(err.contains("gpt-5"), "{err}");
}

#[test]
fn duplicates_and_unknown_switchyard_kinds_are_errors() {
    let twice = format!("{POOL}\n---\n{}", POOL.split("---").next().unwrap());
    assert!(matches!(load_str(&twice), Err(Error::Duplicate { .. })));
    let unknown = "apiVersion: switchyard.dev/v1alpha1\nkind: ModelRouter\nmetadata: {name: x}\n";
    assert!(
        load_str(unknown)
            .unwrap_err()
            .to_string()
            .contains("unknown Switchyard kind")
    );
    assert!(
        load_str("kind: Secret\n").is_err(),
        "apiVersion is required"
    );
    assert!(load_str("{ not: yaml: at all").is_err());
}

const BUDGET: &str = r#"
apiVersion: switchyard.dev/v1alpha1
kind: Budget
metadata: {name: monthly}
spec:
  selector: {routes: [chat]}
  limits:
    - {period: Month, usd: "500.00"}
    - {period: 1m, requests: 600}
"#;

#[test]
fn budgets_load_and_round_trip_with_the_rest() {
    let m = load_str(&format!("{POOL}\n---\n{BUDGET}")).unwrap();
    assert_eq!(m.budgets.len(), 1);
    assert_eq!(m.budgets[0].namespace().as_deref(), Some("default"));
    assert!(m.origins.keys().any(|k| k.kind == Kind::Budget));
    let again = load_str(&m.to_yaml()).unwrap();
    assert_eq!(again.budgets, m.budgets);
    assert!(m.compile(&audience(), "test").is_ok());
}

#[test]
fn an_invalid_budget_is_refused_on_load_naming_the_file_object_and_fields() {
    let text = BUDGET
        .replace("usd: \"500.00\"", "usd: \"-500\"")
        .replace("period: 1m", "period: Fortnight");
    let err = load_str(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("test.yaml: document 1: Budget default/monthly: "),
        "{err}"
    );
    assert!(
        err.contains("spec.limits[0].usd: \"-500\" is not an amount of dollars"),
        "{err}"
    );
    assert!(
        err.contains("spec.limits[1].period: \"Fortnight\" is not Day, Week, Month"),
        "{err}"
    );
    let no_limits = BUDGET.split("  limits:").next().unwrap().to_string() + "  limits: []\n";
    let err = load_str(&no_limits).unwrap_err().to_string();
    assert!(
        err.contains("spec.limits: a budget needs at least one limit"),
        "{err}"
    );
}

#[test]
fn default_namespace_follows_the_routes() {
    let text = POOL.replace(
        "metadata: {name: chat}",
        "metadata: {name: chat, namespace: support}",
    );
    assert_eq!(load_str(&text).unwrap().default_namespace(), "support");
    assert_eq!(load_str(POOL).unwrap().default_namespace(), "default");
}

#[test]
fn directories_are_read_one_level_deep_in_order() {
    let dir = std::env::temp_dir().join(format!("switchyard-manifests-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    std::fs::write(dir.join("b.yaml"), "").unwrap();
    std::fs::write(dir.join("a.yml"), "").unwrap();
    std::fs::write(dir.join("notes.txt"), "").unwrap();
    std::fs::write(dir.join("nested/c.yaml"), "").unwrap();
    let found = files(std::slice::from_ref(&dir)).unwrap();
    assert_eq!(found, vec![dir.join("a.yml"), dir.join("b.yaml")]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(files(&[dir]).is_err(), "a missing path is an error");
}

#[test]
fn to_yaml_loads_back_to_the_same_objects() {
    let m = load_str(POOL).unwrap();
    let again = load_str(&m.to_yaml()).unwrap();
    assert_eq!(again.pools, m.pools);
    assert_eq!(again.routes, m.routes);
    assert_eq!(again.secrets, m.secrets);
}
