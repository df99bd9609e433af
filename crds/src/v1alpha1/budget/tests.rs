use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::*;

/// The example of docs/reference/crds.md.
const EXAMPLE: &str = r#"
apiVersion: switchyard.dev/v1alpha1
kind: Budget
metadata: {name: support-monthly, namespace: support}
spec:
  selector:
    routes: [support-chat]
    podSelector: {matchLabels: {app: support-bot}}
    providers: [{pool: frontier, provider: openai}]
  limits:
    - {period: Month, usd: "500.00"}
    - {period: 1m, requests: 600, tokens: 200000}
  mode: Enforce
  whenUnreachable: LastShare
"#;

fn example() -> Budget {
    serde_yaml::from_str(EXAMPLE).expect("the example parses")
}

fn limit(period: &str) -> BudgetLimit {
    BudgetLimit {
        period: period.into(),
        usd: None,
        requests: Some(10),
        tokens: None,
    }
}

fn spec(limits: Vec<BudgetLimit>) -> BudgetSpec {
    BudgetSpec {
        selector: BudgetSelector::default(),
        limits,
        mode: BudgetMode::default(),
        when_unreachable: WhenUnreachable::default(),
    }
}

/// The messages `validate` gives for `spec`, as `field: message`.
fn problems(spec: &BudgetSpec) -> Vec<String> {
    spec.validate().iter().map(ToString::to_string).collect()
}

/// The CRD's `openAPIV3Schema` for `spec`, as JSON.
fn spec_schema() -> Value {
    let crd = serde_json::to_value(Budget::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

fn rules(schema: &Value) -> Vec<&str> {
    schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["rule"].as_str())
        .collect()
}

#[test]
fn the_documented_example_round_trips_unchanged() {
    let budget = example();
    assert_eq!(budget.spec.limits.len(), 2);
    assert_eq!(
        budget.spec.limits[0].usd.as_ref().unwrap().micros(),
        Some(500_000_000)
    );
    assert_eq!(budget.spec.limits[1].period(), Period::parse("1m"));
    assert!(
        budget.spec.validate().is_empty(),
        "{:?}",
        budget.spec.validate()
    );
    let written = serde_json::to_value(&budget).unwrap();
    let original: Value = serde_yaml::from_str(EXAMPLE).unwrap();
    assert_eq!(written, original);
}

#[test]
fn an_unset_mode_enforces_an_empty_selector_selects_all_and_an_expired_lease_keeps_its_share() {
    let budget: Budget = serde_yaml::from_str(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Budget\nmetadata: {name: b}\nspec:\n  limits: [{period: Day, usd: \"10\"}]\n",
    )
    .unwrap();
    assert_eq!(budget.spec.mode, BudgetMode::Enforce);
    assert_eq!(budget.spec.when_unreachable, WhenUnreachable::LastShare);
    assert!(budget.spec.selector.is_empty());
    let written = serde_json::to_value(&budget.spec).unwrap();
    assert_eq!(
        written,
        json!({"limits": [{"period": "Day", "usd": "10"}], "mode": "Enforce", "whenUnreachable": "LastShare"}),
        "an empty selector is left out, the enumerations are written"
    );
    let schema = spec_schema();
    assert_eq!(schema["properties"]["mode"]["default"], "Enforce");
    assert_eq!(
        schema["properties"]["whenUnreachable"]["default"],
        "LastShare"
    );
}

#[test]
fn the_schema_refuses_budgets_without_limits_or_with_malformed_amounts() {
    let schema = spec_schema();
    let limits = &schema["properties"]["limits"];
    assert_eq!(limits["minItems"], 1);
    assert_eq!(limits["maxItems"], 8);
    let limit = &limits["items"];
    assert_eq!(
        rules(limit),
        ["has(self.usd) || has(self.requests) || has(self.tokens)"]
    );
    let period = &limit["properties"]["period"];
    assert_eq!(
        period["pattern"],
        "^(Day|Week|Month|([0-9]{1,5}(h|m|s|ms)){1,4})$"
    );
    assert_eq!(
        rules(period),
        ["!self.matches('^([0-9]{1,5}(h|m|s|ms)){1,4}$') || duration(self) >= duration('1s')"]
    );
    assert_eq!(
        limit["properties"]["usd"]["pattern"],
        r"^[0-9]+(\.[0-9]{1,6})?$"
    );
    assert_eq!(limit["properties"]["requests"]["minimum"], 1.0);
    assert_eq!(limit["properties"]["tokens"]["minimum"], 1.0);
    let providers = &schema["properties"]["selector"]["properties"]["providers"];
    assert_eq!(
        providers["x-kubernetes-list-map-keys"],
        json!(["pool", "provider"])
    );
}

#[test]
fn the_cel_rules_refuse_a_limit_without_amounts_and_a_period_under_a_second() {
    let with_limits = |limits: Value| {
        let mut budget = serde_json::to_value(example()).unwrap();
        budget["spec"]["limits"] = limits;
        let budget: Budget = serde_json::from_value(budget).unwrap();
        kube::core::cel::validate_cel(&budget).map_err(|e| e.to_string())
    };
    assert_eq!(
        with_limits(json!([{"period": "Month", "usd": "1"}])),
        Ok(())
    );
    assert_eq!(with_limits(json!([{"period": "90s", "tokens": 5}])), Ok(()));
    assert_eq!(
        with_limits(json!([{"period": "1h30m", "requests": 5}])),
        Ok(())
    );
    let no_amount = with_limits(json!([{"period": "Day"}])).unwrap_err();
    assert!(
        no_amount.contains("at least one of usd, requests or tokens"),
        "{no_amount}"
    );
    let too_short = with_limits(json!([{"period": "500ms", "requests": 5}])).unwrap_err();
    assert!(too_short.contains("at least 1s"), "{too_short}");
    let zero = with_limits(json!([{"period": "0s", "requests": 5}])).unwrap_err();
    assert!(zero.contains("at least 1s"), "{zero}");
    // The pattern refuses these; the rule must not fail on them as well, with a CEL error.
    for malformed in ["1d", "Fortnight", "1.5h"] {
        assert_eq!(
            with_limits(json!([{"period": malformed, "requests": 5}])),
            Ok(()),
            "{malformed}"
        );
    }
}

#[test]
fn kubectl_get_shows_mode_period_used_limit_ready_and_age() {
    let crd = Budget::crd();
    let version = &crd.spec.versions[0];
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["MODE", "PERIOD", "USED", "LIMIT", "READY", "AGE"]);
    assert_eq!(crd.spec.names.short_names, Some(vec!["bgt".to_string()]));
    assert!(version.subresources.as_ref().unwrap().status.is_some());
}

#[test]
fn a_written_status_reads_back_the_same() {
    let status = json!({
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": "2026-12-06T19:00:00Z"}],
        "observedGeneration": 2,
        "summary": {"period": "Month", "used": "412.10 USD", "limit": "500.00 USD"},
        "windows": [{
            "period": "Month",
            "start": "2026-12-01T00:00:00Z",
            "end": "2027-01-01T00:00:00Z",
            "used": {"usd": "412.10"},
            "limit": {"usd": "500.00"},
            "remaining": {"usd": "87.90"}
        }],
        "topWorkloads": [{"workload": "support/Deployment/support-bot", "usd": "400.00", "requests": 1200}],
        "sidecars": {"reporting": 12, "leased": 11},
        "refusedRequests": 3
    });
    let typed: BudgetStatus = serde_json::from_value(status.clone()).unwrap();
    assert_eq!(typed.windows[0].start.0.as_second(), 1_796_083_200);
    assert_eq!(serde_json::to_value(&typed).unwrap(), status);
}

#[test]
fn a_budget_without_limits_is_refused_naming_the_field() {
    assert_eq!(
        problems(&spec(vec![])),
        ["spec.limits: a budget needs at least one limit"]
    );
}

#[test]
fn negative_and_non_decimal_dollars_are_refused_naming_the_limit() {
    for bad in ["-5", "abc", "1e3", "5.", "0.1234567", "5,00", ""] {
        let mut dollars = limit("Month");
        dollars.usd = Some(bad.into());
        let problems = problems(&spec(vec![limit("Day"), dollars]));
        assert_eq!(problems.len(), 1, "{bad:?}: {problems:?}");
        assert!(
            problems[0].starts_with("spec.limits[1].usd: ")
                && problems[0].contains("is not an amount of dollars"),
            "{bad:?}: {problems:?}"
        );
    }
    let mut huge = limit("Month");
    huge.usd = Some("99999999999999999999".into());
    assert_eq!(
        problems(&spec(vec![huge])),
        ["spec.limits[0].usd: \"99999999999999999999\" is more dollars than a budget can count"]
    );
    let mut zero = limit("Month");
    zero.usd = Some("0".into());
    assert!(
        problems(&spec(vec![zero])).is_empty(),
        "a zero budget stops all spend"
    );
}

#[test]
fn unknown_and_too_short_periods_are_refused_naming_the_limit() {
    for bad in ["Fortnight", "month", "1d", "0s", "500ms", "-1m", ""] {
        let problems = problems(&spec(vec![limit("Week"), limit(bad)]));
        assert_eq!(
            problems,
            [format!(
                "spec.limits[1].period: {bad:?} is not Day, Week, Month or a duration of at least 1s such as 1m or 7h"
            )]
        );
    }
    for good in ["Day", "Week", "Month", "1s", "90s", "7h", "1h30m"] {
        assert!(problems(&spec(vec![limit(good)])).is_empty(), "{good}");
    }
}

#[test]
fn a_limit_needs_an_amount_and_counts_of_at_least_one() {
    let mut empty = limit("Day");
    empty.requests = None;
    let mut zeros = limit("Day");
    zeros.requests = Some(0);
    zeros.tokens = Some(0);
    assert_eq!(
        problems(&spec(vec![empty, zeros])),
        [
            "spec.limits[0]: a limit needs at least one of usd, requests or tokens",
            "spec.limits[1].requests: requests must be at least 1",
            "spec.limits[1].tokens: tokens must be at least 1",
        ]
    );
}

#[test]
fn selectors_may_not_repeat_themselves_or_hold_broken_label_expressions() {
    let mut spec = spec(vec![limit("Day")]);
    spec.selector = serde_json::from_value(json!({
        "routes": ["chat", "", "chat"],
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]},
        "providers": [{"pool": "p", "provider": "a"}, {"pool": "p", "provider": "a"}]
    }))
    .unwrap();
    let problems = problems(&spec);
    let fields: Vec<_> = problems
        .iter()
        .map(|p| p.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.selector.routes[1]",
            "spec.selector.routes[2]",
            "spec.selector.podSelector",
            "spec.selector.providers[1]",
        ],
        "{problems:?}"
    );
    assert!(problems[1].contains("\"chat\" is listed twice"));
    assert!(problems[3].contains("p/a is listed twice"));
}
