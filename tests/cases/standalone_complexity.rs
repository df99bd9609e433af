//! Complexity scorers (`spec.complexity`, docs/reference/complexity.md): the `Model` scorer from
//! a model file next to the manifests and from a ConfigMap manifest, the `Route` scorer asking a
//! simulated classifier through another route (its cache, its timeout and `onError`), the score
//! in the `x-switchyard-complexity` header and the `switchyard_complexity_score` histogram, and
//! classifier chains refused at load.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use switchyard_crds::complexity::{FORMAT, FeatureSpec, Model, ModelFile, Scorer as _};
use switchyard_sidecar::app::Source;
use switchyard_tests::{Behavior, Fault, Harness, MockProvider, Reply, pool, route};

const EASY: &str = "hi there";
/// A multi-step word problem, the kind the shipped model was trained to find hard.
const HARD: &str = "A train leaves at 3:40 pm and travels 210 km at 84 km/h, then waits 25 \
    minutes and travels another 150 km at 60 km/h. Prove that it cannot arrive before 8 pm, \
    derive the exact arrival time step by step, and explain how the answer changes if the \
    second leg's speed is increased by 20 percent. Then write a Python function that computes \
    the arrival time for any list of legs and analyze its complexity.";

/// The score the header carries, checked present.
fn score(reply: &Reply) -> u8 {
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply
        .header("x-switchyard-complexity")
        .parse()
        .expect("a score header")
}

fn served_by(reply: &Reply) -> &str {
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.header("x-switchyard-provider")
}

/// A pool of `base` (cheap) and `strong`, and route `chat` sending prompts scoring at least
/// `threshold` to `strong`, scored as `complexity` says (YAML at spec indentation).
fn routed(m: &[MockProvider], threshold: u8, complexity: &str) -> String {
    pool(
        &[
            ("base", &m[0].base_url(), "m"),
            ("strong", &m[1].base_url(), "m"),
        ],
        "",
        "",
    ) + &route(
        "chat",
        "chat",
        &[("base", "m")],
        &format!(
            "{complexity}\nrules:\n  - name: hard\n    match: {{minComplexity: {threshold}}}\n    targets: [{{pool: pool, provider: strong, model: m}}]"
        ),
    )
}

async fn providers(names: &[&'static str]) -> Vec<MockProvider> {
    let mut out = Vec::new();
    for name in names {
        out.push(MockProvider::start(name).await.expect("mock provider"));
    }
    out
}

/// A model file of this build's format whose every n-gram weighs the same, so that its score
/// grows with the prompt's length (numbers exact in binary: the text parses back bit for bit),
/// the model, and a threshold between its scores of [`EASY`] and [`HARD`]. The Heuristic scores
/// `EASY` 0, this model about 50: the header tells which scorer ran.
fn test_model() -> (String, Model, u8) {
    let text = ModelFile {
        format: FORMAT.into(),
        features: FeatureSpec::new(64),
        bias: 0.0,
        weights: vec![0.125; 64],
        calibration: (0..=100).map(|i| f64::from(i) / 16.0 - 3.0).collect(),
        checksum: String::new(),
    }
    .to_json();
    let model = Model::load(text.as_bytes()).expect("the test model loads");
    let (easy, hard) = (model.score(EASY), model.score(HARD));
    assert!(hard > easy + 1, "the test model scores {easy} and {hard}");
    assert_ne!(easy, switchyard_crds::complexity::score(EASY));
    (text, model, easy + (hard - easy) / 2 + 1)
}

/// Starts a sidecar on manifests in a directory of their own that also holds `files`.
async fn start_in_dir(yaml: &str, files: &[(&str, &str)]) -> (Harness, PathBuf) {
    let dir = switchyard_tests::write_manifests(yaml);
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("a directory");
        std::fs::write(path, text).expect("write a file");
    }
    let paths = vec![dir.clone()];
    let h = Harness::start_with(yaml, |config| {
        if let Source::Manifests { paths: p, .. } = &mut config.source {
            *p = paths;
        }
    })
    .await;
    (h, dir)
}

/// Easy and hard prompts on a `Model`-scored route: the header shows the model's own score,
/// the hard one goes to the strong target, and the histogram counts both.
async fn check_model_routing(h: &Harness, m: &[MockProvider], model: &Model) {
    let easy = h.chat("chat", EASY).await;
    let hard = h.chat("chat", HARD).await;
    assert_eq!(score(&easy), model.score(EASY));
    assert_eq!(score(&hard), model.score(HARD));
    assert_eq!(served_by(&easy), "pool/base");
    assert_eq!(served_by(&hard), "pool/strong");
    assert_eq!((m[0].request_count(), m[1].request_count()), (1, 1));
    let count = h
        .count("switchyard_complexity_score_count", &[("route", "chat")])
        .await;
    assert_eq!(count, 2.0);
    let top_bucket_le_100 = h
        .count(
            "switchyard_complexity_score_bucket",
            &[("route", "chat"), ("le", "100")],
        )
        .await;
    assert_eq!(top_bucket_le_100, 2.0, "buckets of 10 up to 100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_file_next_to_the_manifests_routes_hard_prompts_to_the_strong_target() {
    let (text, model, threshold) = test_model();
    let m = providers(&["base", "strong"]).await;
    let yaml = routed(
        &m,
        threshold,
        "complexity: {scorer: Model, model: {file: models/router.json}}",
    );
    // `file:` is relative to the manifest file that names it.
    let (h, dir) = start_in_dir(&yaml, &[("models/router.json", &text)]).await;
    check_model_routing(&h, &m, &model).await;

    // The model file is watched with the manifests: a new model (bias above every calibration
    // knot, so every prompt scores 100) is served without a restart.
    let mut always_hard: serde_json::Value = serde_json::from_str(&text).unwrap();
    always_hard["bias"] = json!(100.0);
    always_hard["checksum"] = json!("");
    let mut file: ModelFile = serde_json::from_value(always_hard).unwrap();
    std::fs::write(dir.join("models/router.json"), file.to_json()).expect("new model");
    let reloaded = switchyard_tests::eventually(Duration::from_secs(5), || async {
        h.chat("chat", EASY).await.header("x-switchyard-complexity") == "100"
    })
    .await;
    assert!(reloaded, "the new model file was not picked up");
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_in_a_config_map_manifest_routes_hard_prompts_to_the_strong_target() {
    let (text, model, threshold) = test_model();
    let m = providers(&["base", "strong"]).await;
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "router-model"},
        "data": {"model.json": text},
    });
    // JSON is YAML: the ConfigMap goes in as one more document.
    let yaml = routed(
        &m,
        threshold,
        "complexity:\n  scorer: Model\n  model: {configMapRef: {name: router-model, key: model.json}}",
    ) + "---\n"
        + &config_map.to_string()
        + "\n";
    let h = Harness::start(&yaml).await;
    check_model_routing(&h, &m, &model).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_missing_model_fails_the_load_with_a_clear_error() {
    let m = providers(&["base", "strong"]).await;
    let (text, _, _) = test_model();
    let mut corrupt: serde_json::Value = serde_json::from_str(&text).unwrap();
    corrupt["bias"] = json!(1.5);
    let config_map = |text: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "router-model"},
               "data": {"model.json": text}})
        .to_string()
    };
    let spec = "complexity:\n  scorer: Model\n  model: {configMapRef: {name: router-model, key: model.json}}";
    for (extra, wanted) in [
        (String::new(), "ConfigMap default/router-model not found"),
        (config_map(&corrupt.to_string()), "checksum mismatch"),
        (config_map("{"), "model"),
    ] {
        let yaml = routed(&m, 50, spec) + "---\n" + &extra + "\n";
        let error = Harness::try_start_with(&yaml, |_| {})
            .await
            .err()
            .expect("the load fails")
            .to_string();
        assert!(error.contains(wanted), "{error} lacks {wanted}");
        assert!(
            error.contains("spec.complexity.model.configMapRef"),
            "{error}"
        );
    }
}

/// `chat` scored by the classifier route `classifier` (provider `judge`, answering `85`).
fn classified(m: &[MockProvider], complexity: &str) -> String {
    pool(
        &[
            ("base", &m[0].base_url(), "m"),
            ("strong", &m[1].base_url(), "m"),
            ("judge", &m[2].base_url(), "small"),
        ],
        "",
        "",
    ) + &route(
        "chat",
        "chat",
        &[("base", "m")],
        &format!(
            "{complexity}\nrules:\n  - name: hard\n    match: {{minComplexity: 60}}\n    targets: [{{pool: pool, provider: strong, model: m}}]"
        ),
    ) + &route("classifier", "classifier", &[("judge", "small")], "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_scorer_asks_its_classifier_once_per_prompt_and_falls_back_on_timeout() {
    let m = providers(&["base", "strong", "judge"]).await;
    m[2].set_behavior(Behavior {
        reply: "85".into(),
        ..Behavior::default()
    });
    let yaml = classified(
        &m,
        "complexity:\n  scorer: Route\n  route: {model: classifier, timeout: 500ms, cacheTtl: 1h}\n  onError: Min",
    );
    let h = Harness::start(&yaml).await;

    let first = h.chat("chat", "Which is harder, chess or go?").await;
    let second = h.chat("chat", "Which is harder, chess or go?").await;
    assert_eq!((score(&first), score(&second)), (85, 85));
    assert_eq!(served_by(&first), "pool/strong");
    assert_eq!(served_by(&second), "pool/strong");
    assert_eq!(m[2].request_count(), 1, "the second prompt is a cache hit");
    let asked = m[2].last_request().unwrap().body;
    assert_eq!(asked["model"], "small");
    assert_eq!(asked["messages"][0]["role"], "system");
    assert!(
        asked["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("You rate how hard a request is"),
        "{asked}"
    );
    assert_eq!(
        asked["messages"][1]["content"],
        "Which is harder, chess or go?"
    );
    // The classification is the classifier route's own request, counted to it.
    let classifier_requests = h
        .count(
            "switchyard_requests_total",
            &[("route", "classifier"), ("outcome", "Success")],
        )
        .await;
    assert_eq!(classifier_requests, 1.0);

    // Two requests with one new text at once: one classification, both scored by it.
    m[2].set_behavior(Behavior {
        reply: "72".into(),
        latency: Duration::from_millis(200),
        ..Behavior::default()
    });
    let (a, b) = tokio::join!(
        h.chat("chat", "Design a lock-free queue"),
        h.chat("chat", "Design a lock-free queue")
    );
    assert_eq!((score(&a), score(&b)), (72, 72));
    assert_eq!(
        m[2].request_count(),
        2,
        "one more classification for the burst"
    );
    m[2].set_behavior(Behavior {
        reply: "85".into(),
        ..Behavior::default()
    });

    // A classifier that hangs: after the timeout, onError (Min) scores 0.
    m[2].push_faults([Fault::Hang]);
    let started = tokio::time::Instant::now();
    let hung = h.chat("chat", "Explain quantum field theory").await;
    let waited = started.elapsed();
    assert_eq!(score(&hung), 0);
    assert_eq!(served_by(&hung), "pool/base");
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // Garbage from the classifier: onError again, and nothing is cached.
    m[2].set_behavior(Behavior {
        reply: "This one is quite hard.".into(),
        ..Behavior::default()
    });
    let garbage = h.chat("chat", "Summarise the French revolution").await;
    assert_eq!(score(&garbage), 0);
    m[2].set_behavior(Behavior {
        reply: "Score: 40".into(),
        ..Behavior::default()
    });
    let labelled = h.chat("chat", "Summarise the French revolution").await;
    assert_eq!(score(&labelled), 40);
    assert_eq!(served_by(&labelled), "pool/base");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifier_chains_and_self_reference_are_refused_at_load() {
    let m = providers(&["base", "strong", "judge"]).await;
    let own = classified(&m, "complexity: {scorer: Route, route: {model: chat}}");
    let error = Harness::try_start_with(&own, |_| {})
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("cannot score its own prompts"), "{error}");
    assert!(error.contains("spec.complexity.route.model"), "{error}");

    let chain = classified(
        &m,
        "complexity: {scorer: Route, route: {model: classifier}}",
    )
    .replace(
        "model: classifier\n  targets:",
        "model: classifier\n  complexity: {scorer: Route, route: {model: chat}}\n  targets:",
    );
    let error = Harness::try_start_with(&chain, |_| {})
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("uses scorer Route itself"), "{error}");
}
