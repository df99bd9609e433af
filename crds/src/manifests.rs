//! Loads the YAML a user would `kubectl apply` (ProviderPools, ModelRoutes, Budgets, Secrets) for
//! the standalone sidecar.
//!
//! The rules follow kubectl where it has one: directories are read one level deep, files may hold
//! several documents, objects without a namespace are in `default`, and kinds that are not ours
//! (the demo app's Deployment, say) are skipped. Unlike the apiserver we cannot prune unknown
//! fields silently without hiding typos, so an unknown field is an error naming its path; and
//! since no apiserver checks a Budget's schema rules here, an invalid Budget is refused on load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use serde::de::DeserializeOwned;

use crate::compile::{self, Audience, Inputs, Kind, ModelFiles, ObjectKey, reasons};
use crate::table::RouteTable;
use crate::v1alpha1::{API_VERSION, Budget, ModelRoute, PromptTemplate, ProviderPool};
use crate::{Error, Result};

/// The objects found in a set of files, and where each came from.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    pub pools: Vec<ProviderPool>,
    pub routes: Vec<ModelRoute>,
    /// Compiled into the table; the standalone sidecar is the whole fleet and enforces them.
    pub budgets: Vec<Budget>,
    pub secrets: Vec<Secret>,
    /// Prompt templates, for the routes that name them.
    pub templates: Vec<PromptTemplate>,
    /// ConfigMaps, for routes' complexity models (`configMapRef`).
    pub config_maps: Vec<ConfigMap>,
    /// The model files routes name with `complexity.model.file`, read relative to the route's
    /// manifest file when it was loaded (or why they could not be read).
    pub model_files: ModelFiles,
    /// The paths of those model files, for the standalone sidecar to watch with the manifests.
    pub model_paths: Vec<PathBuf>,
    /// The file each object was read from, for error messages.
    pub origins: BTreeMap<ObjectKey, PathBuf>,
    /// `Kind name (file)` of every document skipped because it is not ours.
    pub skipped: Vec<String>,
}

/// Expands paths into the YAML files they name, sorted, as `kubectl apply -f` does.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_yaml(p))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Whether `path` names a YAML file, by its extension, as kubectl decides.
pub fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Reads and parses every file the paths name.
pub fn load(paths: &[PathBuf]) -> Result<Manifests> {
    let mut manifests = Manifests::default();
    for file in files(paths)? {
        let text = std::fs::read_to_string(&file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        manifests.add_str(&file, &text)?;
    }
    Ok(manifests)
}

// === impl Manifests ===

impl Manifests {
    /// Parses one file's text (possibly several documents) into the set.
    pub fn add_str(&mut self, path: &Path, text: &str) -> Result<()> {
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let document_no = index + 1;
            let parse_error = |message: String| Error::Parse {
                path: path.to_path_buf(),
                document: document_no,
                message,
            };
            let yaml = <serde_yaml::Value as serde::Deserialize>::deserialize(document)
                .map_err(|e| parse_error(e.to_string()))?;
            if yaml.is_null() {
                continue; // an empty document, e.g. after a trailing `---`
            }
            let value: serde_json::Value =
                serde_json::to_value(&yaml).map_err(|e| parse_error(e.to_string()))?;
            // Name the object in schema errors, as `kubectl apply` does.
            let meta = |k: &str| {
                value
                    .pointer(&format!("/metadata/{k}"))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            let object = format!(
                "{}/{}",
                meta("namespace").unwrap_or_else(|| "default".into()),
                meta("name").unwrap_or_default()
            );
            let typed_error = |kind: &str| {
                let object = format!("{kind} {object}");
                move |message: String| parse_error(format!("{object}: {message}"))
            };
            let api_version = value
                .get("apiVersion")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let kind = value
                .get("kind")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            match (api_version, kind) {
                (API_VERSION, "ProviderPool") => {
                    let pool: ProviderPool = typed(value).map_err(typed_error("ProviderPool"))?;
                    self.insert(path, Kind::ProviderPool, pool, |m| &mut m.pools)?;
                }
                (API_VERSION, "ModelRoute") => {
                    let route: ModelRoute = typed(value).map_err(typed_error("ModelRoute"))?;
                    let file = model_file(&route, path);
                    let key = self.insert(path, Kind::ModelRoute, route, |m| &mut m.routes)?;
                    if let Some((model_path, read)) = file {
                        self.model_paths.push(model_path);
                        self.model_files.insert(key, read);
                    }
                }
                (API_VERSION, "Budget") => {
                    let budget: Budget = typed(value).map_err(typed_error("Budget"))?;
                    let problems: Vec<String> = budget
                        .spec
                        .validate()
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    if !problems.is_empty() {
                        return Err(typed_error("Budget")(problems.join("; ")));
                    }
                    self.insert(path, Kind::Budget, budget, |m| &mut m.budgets)?;
                }
                (API_VERSION, "PromptTemplate") => {
                    let template: PromptTemplate =
                        typed(value).map_err(typed_error("PromptTemplate"))?;
                    self.insert(path, Kind::PromptTemplate, template, |m| &mut m.templates)?;
                }
                ("v1", "Secret") => {
                    let secret: Secret = typed(value).map_err(typed_error("Secret"))?;
                    self.insert(path, Kind::Secret, secret, |m| &mut m.secrets)?;
                }
                ("v1", "ConfigMap") => {
                    let map: ConfigMap = typed(value).map_err(typed_error("ConfigMap"))?;
                    self.insert(path, Kind::ConfigMap, map, |m| &mut m.config_maps)?;
                }
                ("", _) | (_, "") => {
                    return Err(parse_error(
                        "a Kubernetes object needs apiVersion and kind".into(),
                    ));
                }
                (v, k) if v.starts_with("switchyard.dev/") => {
                    return Err(parse_error(format!(
                        "unknown Switchyard kind {k} in {v}; this version knows {API_VERSION} ProviderPool, ModelRoute, Budget and PromptTemplate"
                    )));
                }
                (_, k) => {
                    let name = value
                        .pointer("/metadata/name")
                        .and_then(|v| v.as_str())
                        .unwrap_or("?");
                    self.skipped
                        .push(format!("{k} {name} ({})", path.display()));
                }
            }
        }
        Ok(())
    }

    fn insert<T: ResourceExt>(
        &mut self,
        path: &Path,
        kind: Kind,
        mut obj: T,
        list: impl Fn(&mut Self) -> &mut Vec<T>,
    ) -> Result<ObjectKey> {
        if obj.namespace().is_none() {
            obj.meta_mut().namespace = Some("default".into());
        }
        let key = ObjectKey {
            kind,
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
        };
        if key.name.is_empty() {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                document: 0,
                message: format!("a {kind:?} needs metadata.name"),
            });
        }
        if let Some(first) = self.origins.get(&key) {
            return Err(Error::Duplicate {
                path: path.to_path_buf(),
                first: first.clone(),
                object: key,
            });
        }
        self.origins.insert(key.clone(), path.to_path_buf());
        list(self).push(obj);
        Ok(key)
    }

    /// Every object as one multi-document YAML text, pools first, that loads back to the same set.
    pub fn to_yaml(&self) -> String {
        let pools = self.pools.iter().map(serde_yaml::to_string);
        let routes = self.routes.iter().map(serde_yaml::to_string);
        let budgets = self.budgets.iter().map(serde_yaml::to_string);
        let secrets = self.secrets.iter().map(serde_yaml::to_string);
        let templates = self.templates.iter().map(serde_yaml::to_string);
        let config_maps = self.config_maps.iter().map(serde_yaml::to_string);
        let docs: Vec<String> = pools
            .chain(routes)
            .chain(budgets)
            .chain(secrets)
            .chain(templates)
            .chain(config_maps)
            .map(|d| d.expect("API objects serialize"))
            .collect();
        docs.join("---\n")
    }

    /// The namespace a standalone sidecar serves when not told: the one all routes share, or
    /// `default`.
    pub fn default_namespace(&self) -> String {
        let mut namespaces = self.routes.iter().filter_map(|r| r.namespace());
        match namespaces.next() {
            Some(first) if namespaces.all(|n| n == first) => first,
            _ => "default".to_string(),
        }
    }

    /// Compiles the table a pod of `audience` would get. Any problem but a conflict between
    /// routes or a missing prompt template fails the whole load, naming the file, object and
    /// field; conflicts resolve as in a cluster, a route naming a missing template is served
    /// without it (as in a cluster, where it is `ResolvedRefs=False`), and both are returned as
    /// warnings.
    pub fn compile(
        &self,
        audience: &Audience,
        generated_by: &str,
    ) -> Result<(RouteTable, Vec<String>)> {
        let audiences = [audience.clone()];
        let mut compiled = compile::compile(&Inputs {
            pools: &self.pools,
            routes: &self.routes,
            budgets: &self.budgets,
            secrets: &self.secrets,
            config_maps: &self.config_maps,
            model_files: Some(&self.model_files),
            audiences: &audiences,
            require_secret_opt_in: false,
            generated_by,
        });
        compile::apply_templates(&mut compiled, &self.routes, &self.templates);
        let (conflicts, errors): (Vec<_>, Vec<_>) = compiled
            .problems()
            .partition(|p| matches!(p.reason, reasons::CONFLICTED | reasons::TEMPLATE_NOT_FOUND));
        let render = |p: &compile::Problem| match self.origins.get(&p.object) {
            Some(file) => format!("{}: {p}", file.display()),
            None => p.to_string(),
        };
        if !errors.is_empty() {
            return Err(Error::Invalid(errors.into_iter().map(render).collect()));
        }
        let warnings = conflicts.into_iter().map(render).collect();
        let table = compiled
            .tables
            .into_values()
            .next()
            .expect("one audience gives one table");
        Ok((table, warnings))
    }
}

/// The model file `route` names with `complexity.model.file`, read relative to `manifest` (the
/// file the route is in): its path and its text, or why it cannot be read; `None` when it names
/// none.
fn model_file(
    route: &ModelRoute,
    manifest: &Path,
) -> Option<(PathBuf, std::result::Result<String, String>)> {
    let file = route
        .spec
        .complexity
        .as_ref()?
        .model
        .as_ref()?
        .file
        .as_ref()?;
    let path = manifest.parent().unwrap_or(Path::new(".")).join(file);
    let max = crate::complexity::MAX_MODEL_BYTES as u64;
    let read = match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > max => Err(format!(
            "model file {} is {} bytes; the limit is {max}",
            path.display(),
            meta.len()
        )),
        Ok(_) => std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read model file {}: {e}", path.display())),
        Err(e) => Err(format!("cannot read model file {}: {e}", path.display())),
    };
    Some((path, read))
}

/// Deserializes into `T`, naming the path of a wrongly typed or unknown field.
fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| {
        let path = path.to_string();
        // `status` is the server's to write; kubectl ignores it on apply, and so do we. The
        // typed structs take `apiVersion` and `kind` from their type, not from the document.
        let top = path.split('.').next().unwrap_or_default();
        if !matches!(top, "status" | "apiVersion" | "kind") {
            unknown.push(json_path(&path))
        }
    };
    let ignored = serde_ignored::Deserializer::new(value, &mut note);
    let typed: T = serde_path_to_error::deserialize(ignored).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })?;
    match unknown.first() {
        Some(path) => Err(format!("{path}: unknown field")),
        None => Ok(typed),
    }
}

/// `spec.providers.0.baseURL` → `spec.providers[0].baseURL`, the form used everywhere else.
fn json_path(dotted: &str) -> String {
    let mut out = String::with_capacity(dotted.len() + 4);
    for segment in dotted.split('.') {
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

#[cfg(test)]
mod tests;
