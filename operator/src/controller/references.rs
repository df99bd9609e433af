//! Objects that pools and routes name but the label-filtered reflectors do not hold: Secrets
//! without the opt-in label (looked up by name, metadata only, to say why they are not used),
//! and the ConfigMaps holding complexity models (a metadata-only watch; the data read by name,
//! only for those referenced).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt};
use switchyard_crds::v1alpha1::ModelRoute;
use tokio::sync::Notify;

use super::{World, record};
use crate::Error;
use crate::metrics::ControllerMetrics;

/// The Secrets pools reference that the label-filtered watch does not hold, as `(namespace,
/// name)`: missing, or present without the opt-in label.
pub fn unseen_secret_refs(world: &World) -> BTreeSet<(String, String)> {
    let seen: BTreeSet<(String, String)> = world
        .secrets
        .iter()
        .map(|s| (s.namespace().unwrap_or_default(), s.name_any()))
        .collect();
    world
        .pools
        .iter()
        .flat_map(|pool| {
            let namespace = pool.namespace().unwrap_or_default();
            pool.spec
                .providers
                .iter()
                .flat_map(|p| {
                    let aws = p
                        .aws
                        .as_ref()
                        .and_then(|a| a.credentials_secret_ref.as_ref());
                    let gcp = p
                        .gcp
                        .as_ref()
                        .map(|g| &g.service_account_key_secret_ref.name);
                    (p.api_key
                        .as_ref()
                        .map(|k| &k.secret_key_ref.name)
                        .into_iter())
                    .chain(aws.map(|r| &r.name))
                    .chain(gcp)
                })
                .map(move |name| (namespace.clone(), name.clone()))
        })
        .filter(|key| !seen.contains(key))
        .collect()
}

/// Looks up [`unseen_secret_refs`] by name, metadata only (no key material is ever fetched), so
/// that a Secret lacking the opt-in label is reported `SecretNotOptedIn` rather than missing. A
/// field-selected list needs only the `list` permission the watch already has.
pub(super) async fn unlabelled_secrets(client: &Client, world: &World) -> Vec<Secret> {
    let mut found = Vec::new();
    for (namespace, name) in unseen_secret_refs(world) {
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
        match api.list_metadata(&by_name).await {
            Ok(list) => found.extend(list.items.into_iter().map(|meta| Secret {
                metadata: meta.metadata,
                ..Secret::default()
            })),
            Err(error) => tracing::debug!(%error, %namespace, %name, "cannot look up a Secret"),
        }
    }
    found
}

/// The ConfigMaps routes name for their complexity model, as `(namespace, name)`.
pub fn config_map_refs(routes: &[ModelRoute]) -> BTreeSet<(String, String)> {
    routes.iter().filter_map(config_map_ref).collect()
}

/// The ConfigMap `route` names for its complexity model, as `(namespace, name)`.
fn config_map_ref(route: &ModelRoute) -> Option<(String, String)> {
    let source = route.spec.complexity.as_ref()?.model.as_ref()?;
    let name = &source.config_map_ref.as_ref()?.name;
    Some((route.namespace().unwrap_or_default(), name.clone()))
}

/// The referenced ConfigMaps read so far, by `(namespace, name)`.
pub type ConfigMapCache = HashMap<(String, String), ConfigMap>;

/// The ConfigMaps of [`config_map_refs`]. Only those are ever read: the operator does not cache
/// the data of the cluster's ConfigMaps, whose size it does not control. `version` says what the
/// metadata watch holds: `None` for a ConfigMap that does not exist (left out, no read: the
/// route is `ResolvedRefs=False`), else its `resourceVersion`. A ConfigMap is read by name only
/// when `cache` lacks that version, so steps (one per pod event) do not re-read unchanged ones.
/// A read that fails keeps the copy cached, if any, and is logged.
pub async fn referenced_config_maps(
    client: &Client,
    world: &World,
    version: impl Fn(&str, &str) -> Option<String>,
    cache: &mut ConfigMapCache,
) -> Vec<ConfigMap> {
    let refs = config_map_refs(&world.routes);
    cache.retain(|key, _| refs.contains(key));
    let mut found = Vec::new();
    for key in refs {
        let (namespace, name) = &key;
        let Some(version) = version(namespace, name) else {
            cache.remove(&key);
            continue;
        };
        let cached = cache.get(&key);
        if let Some(map) = cached.filter(|m| m.resource_version().as_ref() == Some(&version)) {
            found.push(map.clone());
            continue;
        }
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(Some(map)) => {
                found.push(map.clone());
                cache.insert(key, map);
            }
            Ok(None) => {
                cache.remove(&key);
            }
            Err(error) => {
                tracing::warn!(%error, %namespace, %name, "cannot read a ConfigMap");
                found.extend(cache.get(&key).cloned());
            }
        }
    }
    found
}

/// Watches ConfigMaps' metadata, all namespaces, and triggers a step when one that a route in
/// `routes` references is created, changed or deleted (any other ConfigMap triggers nothing).
pub(super) fn spawn_config_map_watch(
    client: &Client,
    routes: Store<ModelRoute>,
    changed: &Arc<Notify>,
    metrics: &ControllerMetrics,
) -> Store<PartialObjectMeta<ConfigMap>> {
    let (reader, writer) = reflector::store();
    let changed = changed.clone();
    let metrics = metrics.clone();
    // An `Api` of `PartialObjectMeta` lists and watches metadata only.
    let api: Api<PartialObjectMeta<ConfigMap>> = Api::all(client.clone());
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(meta) => {
                    let key = (meta.namespace().unwrap_or_default(), meta.name_any());
                    let referenced = routes
                        .state()
                        .iter()
                        .any(|r| config_map_ref(r).as_ref() == Some(&key));
                    if referenced {
                        changed.notify_one();
                    }
                }
                Err(source) => record(
                    &metrics,
                    &Error::Watch {
                        resource: "configmaps",
                        source,
                    },
                ),
            }
        }
    });
    reader
}
