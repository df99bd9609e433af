//! Compiling PromptTemplates and the routes' references to them, after [`super::compile`].
//!
//! A template is checked on its own (its text parses and uses only declared variables:
//! `Accepted`). A route, rule or target naming a template that does not exist, or one that is
//! not accepted, makes the route `ResolvedRefs=False`; the route is still served, without that
//! template, as a route with an unresolved target still serves its other targets: the condition
//! says so, and a template that does not apply changes no prompt. Each table carries the
//! templates its routes use and each target the one it gets (target, then rule, then route).

use std::collections::BTreeMap;

use super::{Compiled, Kind, ObjectKey, Problem, reasons};
use crate::table;
use crate::template::{self, Template};
use crate::v1alpha1::{ModelRoute, PromptTemplate, PromptTemplateRef, Target};

/// The verdict on one template.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TemplateOutcome {
    /// Text that does not parse or uses undeclared variables: the template is not served.
    pub accepted: Vec<Problem>,
    /// ModelRoutes of the namespace that name it (spec, rule or target), sorted.
    pub used_by: Vec<String>,
    /// `name@hash8`, as headers and logs show it.
    pub label: String,
    /// The template's `metadata.generation`, for `observedGeneration`.
    pub generation: Option<i64>,
}

/// Compiles `templates`, resolves the references of `routes` to them, and puts the templates
/// each table's routes use into that table (its version stamped anew). Route problems join the
/// routes' `ResolvedRefs`; template verdicts go to `compiled.templates`.
pub fn apply(compiled: &mut Compiled, routes: &[ModelRoute], templates: &[PromptTemplate]) {
    let mut usable: BTreeMap<(String, String), Template> = BTreeMap::new();
    for t in templates {
        let key = ObjectKey::of(Kind::PromptTemplate, t);
        let mut outcome = TemplateOutcome {
            label: template::label(&key.name, &t.spec),
            generation: t.metadata.generation,
            ..TemplateOutcome::default()
        };
        for error in template::check(&t.spec) {
            outcome.accepted.push(Problem {
                object: key.clone(),
                field: error.field,
                reason: reasons::INVALID_TEMPLATE,
                message: error.message,
            });
        }
        if outcome.accepted.is_empty() {
            usable.insert(
                (key.namespace.clone(), key.name.clone()),
                template::compile(&key.name, &t.spec),
            );
        }
        compiled.templates.insert(key, outcome);
    }

    let by_key: BTreeMap<(String, String), &ModelRoute> = routes
        .iter()
        .map(|r| {
            let key = ObjectKey::of(Kind::ModelRoute, r);
            ((key.namespace, key.name), r)
        })
        .collect();
    for ((namespace, name), route) in &by_key {
        let refs = references(route);
        if refs.is_empty() {
            continue;
        }
        let route_key = ObjectKey::of(Kind::ModelRoute, *route);
        for (field, template_name) in refs {
            let template_key = ObjectKey {
                kind: Kind::PromptTemplate,
                namespace: namespace.clone(),
                name: template_name.to_string(),
            };
            let problem = match compiled.templates.get_mut(&template_key) {
                Some(outcome) => {
                    if !outcome.used_by.contains(name) {
                        outcome.used_by.push(name.clone());
                        outcome.used_by.sort();
                    }
                    (!outcome.accepted.is_empty()).then(|| {
                        (
                            reasons::TEMPLATE_NOT_READY,
                            format!(
                                "PromptTemplate {namespace}/{template_name} is not accepted; requests are served without it"
                            ),
                        )
                    })
                }
                None => Some((
                    reasons::TEMPLATE_NOT_FOUND,
                    format!(
                        "PromptTemplate {namespace}/{template_name} not found; requests are served without it"
                    ),
                )),
            };
            if let Some((reason, message)) = problem
                && let Some(outcome) = compiled.routes.get_mut(&route_key)
            {
                outcome.resolved_refs.push(Problem {
                    object: route_key.clone(),
                    field,
                    reason,
                    message,
                });
            }
        }
    }

    for table in compiled.tables.values_mut() {
        let mut used = BTreeMap::new();
        for route in table.routes.values_mut() {
            let Some(spec) = by_key.get(&(route.namespace.clone(), route.name.clone())) else {
                continue;
            };
            let namespace = route.namespace.clone();
            let mut assign = |targets: &mut [table::Target],
                              written: &[Target],
                              inherited: Option<&PromptTemplateRef>| {
                for target in targets {
                    let own = written
                        .iter()
                        .find(|w| {
                            format!("{}/{}", w.pool, w.provider) == target.upstream
                                && w.model == target.model
                        })
                        .and_then(|w| w.prompt_template.as_ref());
                    target.prompt_template = own.or(inherited).and_then(|r| {
                        let found = usable.get(&(namespace.clone(), r.name.clone()))?;
                        used.insert(r.name.clone(), found.clone());
                        Some(r.name.clone())
                    });
                }
            };
            let route_ref = spec.spec.prompt_template.as_ref();
            assign(&mut route.targets, &spec.spec.targets, route_ref);
            for rule in &mut route.rules {
                let written = spec.spec.rules.iter().find(|r| r.name == rule.name);
                let (targets, rule_ref) = match written {
                    Some(w) => (w.targets.as_slice(), w.prompt_template.as_ref()),
                    None => (&[][..], None),
                };
                assign(&mut rule.targets, targets, rule_ref.or(route_ref));
            }
        }
        if !used.is_empty() || !table.templates.is_empty() {
            table.templates = used;
            table.version = table.content_hash();
        }
    }
}

/// Every template reference of a route, as (field, template name).
fn references<'r>(route: &'r ModelRoute) -> Vec<(String, &'r str)> {
    let spec = &route.spec;
    let mut refs = Vec::new();
    let mut add = |field: String, r: &'r Option<PromptTemplateRef>| {
        if let Some(r) = r {
            refs.push((field, r.name.as_str()));
        }
    };
    add("spec.promptTemplate".into(), &spec.prompt_template);
    for (i, t) in spec.targets.iter().enumerate() {
        add(
            format!("spec.targets[{i}].promptTemplate"),
            &t.prompt_template,
        );
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        add(
            format!("spec.rules[{i}].promptTemplate"),
            &rule.prompt_template,
        );
        for (j, t) in rule.targets.iter().enumerate() {
            add(
                format!("spec.rules[{i}].targets[{j}].promptTemplate"),
                &t.prompt_template,
            );
        }
    }
    refs
}

#[cfg(test)]
mod tests;
