//! Compiling a route's `complexity`: the scorer, its model file (from a ConfigMap, or a file read
//! by the standalone loader) and its classifier route (docs/reference/complexity.md).
//!
//! A model that does not resolve (a missing ConfigMap or key, a corrupt, wrong-version or
//! oversized file) is a reference problem: the route is still served and scores with `onError`.
//! A classifier route that would score itself, or that scores with a classifier route of its
//! own, is a spec problem: the route is refused, since such a chain could recurse.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;

use super::{Inputs, ObjectKey, Problem, RouteOutcome, reasons};
use crate::complexity::Model;
use crate::table::{self, ClassifierRoute};
use crate::v1alpha1::{ModelRoute, ModelSource, RouteScorer, ScorerKind};

/// How long a `Route` scorer waits for its classifier unless `route.timeout` says otherwise:
/// a classification is a few output tokens on a small model, and a request must not wait long
/// for its routing decision.
const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// How long a classifier's score is reused unless `route.cacheTtl` says otherwise: the same
/// prompt text scores the same, and an hour bounds what a changed classifier leaves behind.
const DEFAULT_CACHE_TTL_MS: u64 = 3_600_000;

/// Model files read for `file:` sources (standalone only), by the route that names them: the
/// text, or why it could not be read.
pub type ModelFiles = BTreeMap<ObjectKey, Result<String, String>>;

/// Compiles `route`'s `complexity` into `compiled` (when the route compiled), adding problems to
/// `outcome` (a spec problem drops the route) and the model file it uses to `models`, by checksum.
pub(super) fn apply(
    route: &ModelRoute,
    key: &ObjectKey,
    inputs: &Inputs<'_>,
    outcome: &mut RouteOutcome,
    compiled: &mut Option<table::Route>,
    models: &mut BTreeMap<String, String>,
) {
    let Some(spec) = &route.spec.complexity else {
        return;
    };
    let mut check = Check {
        key,
        outcome,
        refused: false,
    };
    let mut complexity = table::Complexity {
        scorer: spec.scorer,
        model: None,
        route: None,
        on_error: spec.on_error,
    };
    match (spec.scorer, &spec.model, &spec.route) {
        (ScorerKind::Model, Some(source), None) => {
            if let Some((checksum, text)) = check.model(source, inputs) {
                models.insert(checksum.clone(), text);
                complexity.model = Some(checksum);
            }
        }
        (ScorerKind::Route, None, Some(scorer)) => {
            complexity.route = check.classifier(route, scorer, inputs.routes);
        }
        (ScorerKind::Heuristic, None, None) => {}
        (kind, model, scorer) => {
            let (field, message) = match (model.is_some(), scorer.is_some()) {
                (false, _) if kind == ScorerKind::Model => {
                    ("model", "model is required with scorer Model")
                }
                (_, false) if kind == ScorerKind::Route => {
                    ("route", "route is required with scorer Route")
                }
                (true, _) => ("model", "model is only for scorer Model"),
                _ => ("route", "route is only for scorer Route"),
            };
            check.invalid(format!("spec.complexity.{field}"), message.into());
        }
    }
    if check.refused {
        *compiled = None;
    } else if let Some(compiled) = compiled {
        compiled.complexity = Some(complexity);
    }
}

/// The problems of one route's `complexity`.
struct Check<'o> {
    key: &'o ObjectKey,
    outcome: &'o mut RouteOutcome,
    /// A spec problem was found: the route is not served.
    refused: bool,
}

impl Check<'_> {
    fn problem(&self, field: String, reason: &'static str, message: String) -> Problem {
        Problem {
            object: self.key.clone(),
            field,
            reason,
            message,
        }
    }

    fn invalid(&mut self, field: String, message: String) {
        let problem = self.problem(field, reasons::INVALID, message);
        self.outcome.accepted.push(problem);
        self.refused = true;
    }

    fn unresolved(&mut self, field: &str, reason: &'static str, message: String) {
        let problem = self.problem(field.into(), reason, message);
        self.outcome.resolved_refs.push(problem);
    }

    /// The model file `source` names, checked: its checksum and text.
    fn model(&mut self, source: &ModelSource, inputs: &Inputs<'_>) -> Option<(String, String)> {
        let (field, text) = match (&source.config_map_ref, &source.file) {
            (Some(r), None) => {
                let field = "spec.complexity.model.configMapRef";
                let namespace = &self.key.namespace;
                let found = inputs
                    .config_maps
                    .iter()
                    .find(|c| c.name_any() == r.name && c.namespace().as_ref() == Some(namespace));
                let Some(config_map) = found else {
                    let message = format!("ConfigMap {namespace}/{} not found", r.name);
                    self.unresolved(field, reasons::CONFIG_MAP_NOT_FOUND, message);
                    return None;
                };
                let Some(text) = config_map_text(config_map, &r.key) else {
                    let message =
                        format!("ConfigMap {namespace}/{} has no key {:?}", r.name, r.key);
                    self.unresolved(field, reasons::CONFIG_MAP_KEY_NOT_FOUND, message);
                    return None;
                };
                (field, text)
            }
            (None, Some(path)) => {
                let field = "spec.complexity.model.file";
                let Some(files) = inputs.model_files else {
                    let message = "file is for standalone manifests only; in a cluster put the \
                                   model in a ConfigMap and use configMapRef"
                        .into();
                    self.invalid(field.into(), message);
                    return None;
                };
                match files.get(self.key) {
                    Some(Ok(text)) => (field, text.clone()),
                    Some(Err(why)) => {
                        self.unresolved(field, reasons::INVALID_MODEL, why.clone());
                        return None;
                    }
                    None => {
                        let message = format!("model file {path:?} was not read");
                        self.unresolved(field, reasons::INVALID_MODEL, message);
                        return None;
                    }
                }
            }
            _ => {
                let message = "set exactly one of configMapRef and file".into();
                self.invalid("spec.complexity.model".into(), message);
                return None;
            }
        };
        match Model::load(text.as_bytes()) {
            Ok(model) => Some((model.checksum().to_string(), text)),
            Err(e) => {
                self.unresolved(field, reasons::INVALID_MODEL, e.to_string());
                None
            }
        }
    }

    /// The classifier route, when it is another route that scores without a classifier.
    fn classifier(
        &mut self,
        route: &ModelRoute,
        scorer: &RouteScorer,
        routes: &[ModelRoute],
    ) -> Option<ClassifierRoute> {
        let field = "spec.complexity.route.model";
        if scorer.model == route.spec.model {
            let message = format!(
                "the classifier route is this route ({:?}): a route cannot score its own prompts",
                scorer.model
            );
            self.invalid(field.into(), message);
            return None;
        }
        let namespace = &self.key.namespace;
        let mut classifiers = routes
            .iter()
            .filter(|r| r.spec.model == scorer.model && r.namespace().as_ref() == Some(namespace));
        let Some(first) = classifiers.next() else {
            let message = format!(
                "no ModelRoute in {namespace} serves model {:?}",
                scorer.model
            );
            self.unresolved(field, reasons::CLASSIFIER_NOT_FOUND, message);
            return None;
        };
        for classifier in std::iter::once(first).chain(classifiers) {
            let chained = classifier
                .spec
                .complexity
                .as_ref()
                .is_some_and(|c| c.scorer == ScorerKind::Route);
            if chained {
                let message = format!(
                    "the classifier route {} ({:?}) uses scorer Route itself; a classifier must \
                     score with Heuristic or Model (no chains)",
                    classifier.name_any(),
                    scorer.model
                );
                self.invalid(field.into(), message);
                return None;
            }
        }
        let millis = |value: &Option<crate::v1alpha1::Duration>, at: &str, default: u64| match value
        {
            None => Ok(default),
            Some(d) => d.parse().map(|d| d.as_millis() as u64).ok_or_else(|| {
                (
                    at.to_string(),
                    format!("{:?} is not a duration like 2s", d.0),
                )
            }),
        };
        let timeout = millis(
            &scorer.timeout,
            "spec.complexity.route.timeout",
            DEFAULT_TIMEOUT_MS,
        );
        let ttl = millis(
            &scorer.cache_ttl,
            "spec.complexity.route.cacheTtl",
            DEFAULT_CACHE_TTL_MS,
        );
        match (timeout, ttl) {
            (Ok(0), _) => {
                let message = "timeout must be above 0".into();
                self.invalid("spec.complexity.route.timeout".into(), message);
                None
            }
            (Ok(timeout_ms), Ok(cache_ttl_ms)) => Some(ClassifierRoute {
                model: scorer.model.clone(),
                timeout_ms,
                cache_ttl_ms,
            }),
            (Err((at, message)), _) | (_, Err((at, message))) => {
                self.invalid(at, message);
                None
            }
        }
    }
}

/// The text under `key` of a ConfigMap's `data`, or its `binaryData` if UTF-8.
fn config_map_text(config_map: &ConfigMap, key: &str) -> Option<String> {
    if let Some(text) = config_map.data.as_ref().and_then(|d| d.get(key)) {
        return Some(text.clone());
    }
    let bytes = config_map.binary_data.as_ref()?.get(key)?;
    Some(String::from_utf8_lossy(&bytes.0).into_owned())
}

#[cfg(test)]
mod tests;
