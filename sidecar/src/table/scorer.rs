//! A route's complexity scorer, resolved once per table swap (docs/reference/complexity.md):
//! model files are parsed here, never per request, and a classifier's cache of scores carries
//! over a swap that leaves the route's scorer unchanged.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;
use sha2::{Digest, Sha256};
use switchyard_crds::complexity::{self, MAX_SCORE, Model, Scorer};
use switchyard_crds::table::{ClassifierRoute, Complexity, Route, RouteTable};
use switchyard_crds::v1alpha1::{OnError, ScorerKind};
use tokio::time::Instant;

/// Scores a classifier's cache keeps per route: a few megabytes at most (a key and a score per
/// entry), enough for the repeated prompts that make a cache worth having.
const CLASSIFIER_CACHE_ENTRIES: usize = 10_000;

/// How one route scores its prompts.
pub struct RouteScorer {
    /// The route's `complexity`, as compiled (absent: the heuristic, for `minComplexity` rules).
    pub def: Option<Complexity>,
    pub kind: ScorerRt,
}

/// The scorer itself, ready to score.
pub enum ScorerRt {
    Heuristic,
    Model(Arc<Model>),
    Classifier(Arc<Classifier>),
    /// A `Model` whose file did not resolve, or a classifier route that does not exist:
    /// `onError` scores every prompt.
    Unavailable,
}

impl RouteScorer {
    /// The scorer of `route`, or `None` when the route needs no score: it sets no `complexity`
    /// and no rule compares one. A scorer unchanged from `previous` keeps its classifier cache.
    pub fn of(
        route: &Route,
        models: &HashMap<String, Arc<Model>>,
        previous: Option<&RouteScorer>,
    ) -> Option<RouteScorer> {
        let def = route.complexity.clone();
        let compared = route.rules.iter().any(|r| r.min_complexity.is_some());
        if def.is_none() && !compared {
            return None;
        }
        if let Some(previous) = previous.filter(|p| p.def == def) {
            return Some(RouteScorer {
                def,
                kind: previous.kind.clone(),
            });
        }
        let kind = match &def {
            None => ScorerRt::Heuristic,
            Some(c) => match c.scorer {
                ScorerKind::Heuristic => ScorerRt::Heuristic,
                ScorerKind::Model => c
                    .model
                    .as_ref()
                    .and_then(|checksum| models.get(checksum))
                    .map_or(ScorerRt::Unavailable, |m| ScorerRt::Model(m.clone())),
                ScorerKind::Route => c.route.as_ref().map_or(ScorerRt::Unavailable, |r| {
                    ScorerRt::Classifier(Arc::new(Classifier::new(r.clone())))
                }),
            },
        };
        Some(RouteScorer { def, kind })
    }

    /// What scores when the scorer fails: the route's `onError`.
    pub fn on_error(&self) -> OnError {
        self.def.as_ref().map_or(OnError::Heuristic, |c| c.on_error)
    }
}

impl Clone for ScorerRt {
    fn clone(&self) -> Self {
        match self {
            ScorerRt::Heuristic => ScorerRt::Heuristic,
            ScorerRt::Model(m) => ScorerRt::Model(m.clone()),
            ScorerRt::Classifier(c) => ScorerRt::Classifier(c.clone()),
            ScorerRt::Unavailable => ScorerRt::Unavailable,
        }
    }
}

/// The score `on_error` gives `prompt`.
pub fn fallback(on_error: OnError, prompt: &str) -> u8 {
    match on_error {
        OnError::Heuristic => complexity::score(prompt),
        OnError::Max => MAX_SCORE,
        OnError::Min => 0,
    }
}

/// The models of `table`, parsed: those `previous` already parsed are reused by checksum. A file
/// that does not parse (the operator checked it, so only a table from elsewhere) is left out,
/// which makes its routes score with `onError`.
pub fn models(
    table: &RouteTable,
    previous: Option<&HashMap<String, Arc<Model>>>,
) -> HashMap<String, Arc<Model>> {
    table
        .complexity_models
        .iter()
        .filter_map(|(checksum, text)| {
            if let Some(model) = previous.and_then(|p| p.get(checksum)) {
                return Some((checksum.clone(), model.clone()));
            }
            match Model::load(text.as_bytes()) {
                Ok(model) if model.checksum() == checksum => {
                    Some((checksum.clone(), Arc::new(model)))
                }
                Ok(_) => {
                    tracing::warn!(%checksum, "complexity model's checksum differs from its key; routes using it score with onError");
                    None
                }
                Err(e) => {
                    tracing::warn!(%checksum, error = %e, "complexity model refused; routes using it score with onError");
                    None
                }
            }
        })
        .collect()
}

/// Scores `prompt` with a synchronous scorer; `None` for a classifier, which must be asked.
pub fn score_now(kind: &ScorerRt, on_error: OnError, prompt: &str) -> Option<u8> {
    match kind {
        ScorerRt::Heuristic => Some(complexity::score(prompt)),
        ScorerRt::Model(model) => Some(model.score(prompt)),
        ScorerRt::Unavailable => Some(fallback(on_error, prompt)),
        ScorerRt::Classifier(_) => None,
    }
}

/// A classification being asked: every request with the same text waits for its answer
/// (`None`: it failed) instead of asking again.
pub type Pending = Arc<tokio::sync::OnceCell<Option<u8>>>;

/// A `Route` scorer: its classifier route and the scores it gave, by prompt hash.
pub struct Classifier {
    pub def: ClassifierRoute,
    cache: Mutex<LruCache<[u8; 32], (u8, Instant)>>,
    /// Classifications under way, by prompt hash: a burst of one prompt asks once.
    pending: Mutex<HashMap<[u8; 32], Pending>>,
}

impl Classifier {
    /// An empty cache for classifier route `def` (public for bench/classifier_cache.rs).
    pub fn new(def: ClassifierRoute) -> Self {
        let capacity = NonZeroUsize::new(CLASSIFIER_CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        Self {
            def,
            cache: Mutex::new(LruCache::new(capacity)),
            pending: Mutex::default(),
        }
    }

    /// The classification of `key` under way, or a new one to run.
    pub fn pending(&self, key: [u8; 32]) -> Pending {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.entry(key).or_default().clone()
    }

    /// Called by each waiter of `cell` as it leaves, done or cancelled: forgets the cell once it
    /// has an answer (a failed classification is asked again next time; a success is in the
    /// cache by then) or once no other waiter is left (all were cancelled), so that the map
    /// holds only classifications under way.
    pub fn leave(&self, key: &[u8; 32], cell: &Pending) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        // Under the lock no new waiter can clone the cell: the map's and this waiter's
        // references are the last when the count is 2.
        let ours = pending.get(key).is_some_and(|c| Arc::ptr_eq(c, cell));
        if ours && (cell.initialized() || Arc::strong_count(cell) <= 2) {
            pending.remove(key);
        }
    }

    /// Classifications under way (for tests).
    #[cfg(test)]
    fn pending_len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The cache key of a classified text: its SHA-256.
    pub fn key(text: &str) -> [u8; 32] {
        Sha256::digest(text.as_bytes()).into()
    }

    /// The cached score for `key`, while it is fresh.
    pub fn cached(&self, key: &[u8; 32], now: Instant) -> Option<u8> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.get(key) {
            Some(&(score, expires)) if now < expires => Some(score),
            Some(_) => {
                cache.pop(key);
                None
            }
            None => None,
        }
    }

    /// Remembers the classifier's `score` for `key` for `cacheTtl`.
    pub fn remember(&self, key: [u8; 32], score: u8, now: Instant) {
        if self.def.cache_ttl_ms == 0 {
            return;
        }
        let expires = now + Duration::from_millis(self.def.cache_ttl_ms);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.put(key, (score, expires));
    }
}

/// The score in a classifier's answer: the first integer in it, when it is 0–100 and nothing
/// but punctuation, whitespace or a short label such as `Score:` surrounds it. Anything else
/// (no number, two numbers, a number out of range, prose) is `None`.
pub fn parse_answer(answer: &str) -> Option<u8> {
    let answer = answer.trim();
    // A label, then the number, then at most trailing punctuation ("73.", "73/100" is refused).
    let start = answer.find(|c: char| c.is_ascii_digit())?;
    let label = &answer[..start];
    let digits_end = answer[start..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(answer.len(), |i| start + i);
    let rest = &answer[digits_end..];
    let label_ok = label.len() <= 16
        && label
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c.is_whitespace() || c == ':' || c == '*');
    let rest_ok = rest
        .chars()
        .all(|c| c.is_whitespace() || matches!(c, '.' | '*' | '%'));
    if !label_ok || !rest_ok || digits_end - start > 3 {
        return None;
    }
    let score: u8 = answer[start..digits_end].parse().ok()?;
    (score <= MAX_SCORE).then_some(score)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier_answers_parse_to_a_score_or_nothing() {
        for (answer, want) in [
            ("73", Some(73)),
            (" 73\n", Some(73)),
            ("Score: 73", Some(73)),
            ("score: 0", Some(0)),
            ("**100**", Some(100)),
            ("73.", Some(73)),
            ("73%", Some(73)),
            ("101", None),
            ("1000", None),
            ("", None),
            ("hard", None),
            ("I think 73, maybe 80", None),
            ("73/100", None),
            (
                "The complexity of this prompt, considering everything, is 73",
                None,
            ),
            ("-5", None),
            ("7.3", None),
        ] {
            assert_eq!(parse_answer(answer), want, "{answer:?}");
        }
    }

    #[test]
    fn on_error_maps_to_the_heuristic_the_top_or_the_bottom() {
        let prompt = "Prove that there are infinitely many primes, step by step.";
        assert_eq!(
            fallback(OnError::Heuristic, prompt),
            complexity::score(prompt)
        );
        assert_eq!(fallback(OnError::Max, prompt), 100);
        assert_eq!(fallback(OnError::Min, prompt), 0);
        let unavailable = ScorerRt::Unavailable;
        assert_eq!(score_now(&unavailable, OnError::Max, prompt), Some(100));
    }

    #[tokio::test]
    async fn a_burst_of_one_text_asks_once_and_leaves_nothing_behind() {
        let classifier = Classifier::new(ClassifierRoute {
            model: "c".into(),
            timeout_ms: 100,
            cache_ttl_ms: 0,
        });
        let key = Classifier::key("same");
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let wait = || {
            let cell = classifier.pending(key);
            let (classifier, asked) = (&classifier, &asked);
            async move {
                let answer = *cell
                    .get_or_init(|| async {
                        asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::task::yield_now().await;
                        Some(7)
                    })
                    .await;
                classifier.leave(&key, &cell);
                answer
            }
        };
        let (a, b) = tokio::join!(wait(), wait());
        assert_eq!((a, b), (Some(7), Some(7)));
        assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(classifier.pending_len(), 0);

        // A waiter cancelled before any answer leaves no entry either.
        let cell = classifier.pending(Classifier::key("cancelled"));
        classifier.leave(&Classifier::key("cancelled"), &cell);
        assert_eq!(classifier.pending_len(), 0);
    }

    #[test]
    fn the_classifier_cache_expires_and_can_be_off() {
        let def = ClassifierRoute {
            model: "c".into(),
            timeout_ms: 100,
            cache_ttl_ms: 1_000,
        };
        let classifier = Classifier::new(def.clone());
        let now = Instant::now();
        let key = Classifier::key("hello");
        assert_ne!(key, Classifier::key("hello!"));
        classifier.remember(key, 42, now);
        assert_eq!(
            classifier.cached(&key, now + Duration::from_millis(999)),
            Some(42)
        );
        assert_eq!(
            classifier.cached(&key, now + Duration::from_millis(1_000)),
            None
        );
        let off = Classifier::new(ClassifierRoute {
            cache_ttl_ms: 0,
            ..def
        });
        off.remember(key, 42, now);
        assert_eq!(off.cached(&key, now), None);
    }
}
