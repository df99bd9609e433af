//! Where the certificates live and who learns to trust them (docs/reference/operator.md);
//! [`crate::certs`] decides what the material must be, this module stores and publishes it:
//!
//! - **storage:** `--cert-dir` out of a cluster, else the Secret [`CERTS_SECRET`] in the
//!   operator's namespace, created with create-only semantics and updated with optimistic
//!   concurrency, so that two replicas starting together end up serving the same certificate;
//! - **publication** (leader only): the CA bundle as ConfigMap [`CA_CONFIG_MAP`] (key
//!   [`CA_BUNDLE_KEY`]) in every namespace that has or may get injected pods, and as the
//!   `caBundle` of every webhook of the MutatingWebhookConfiguration, both by server-side apply
//!   and restored when changed;
//! - **renewal:** every replica re-plans the material now and then and hot-swaps the serving
//!   certificate of its running servers ([`ServingCert`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::certs::{self, CertAction, CertBundle, Material, ServingCert};
use crate::leader::Leadership;
use crate::names::{CA_BUNDLE_KEY, CA_CONFIG_MAP, CERTS_SECRET, FIELD_MANAGER, MANAGED_BY_LABEL};
use crate::{Error, Result};

/// How often a replica re-plans its certificates (renewal is due months ahead).
const RENEW_EVERY: Duration = Duration::from_secs(3600);
/// How often the leader checks the webhook's `caBundle` (someone may have reset it, or the
/// configuration may have been installed after the operator started).
const WEBHOOK_EVERY: Duration = Duration::from_secs(30);
/// How often every ConfigMap is applied again, restoring deleted or edited ones.
const CONFIGMAPS_EVERY: Duration = Duration::from_secs(600);
/// Attempts at a Secret write before giving up this round (another replica keeps winning).
const SECRET_ATTEMPTS: usize = 3;

/// Where the certificate material is kept.
#[derive(Clone)]
pub enum Store {
    Dir(PathBuf),
    Secret { client: Client, namespace: String },
}

/// Publishes trust while this replica leads; see the module docs.
pub struct Publisher {
    pub client: Client,
    pub store: Store,
    /// The operator's namespace (its Service names are in the certificate).
    pub namespace: String,
    pub webhook_config_name: String,
    pub serving: Arc<ServingCert>,
    pub leadership: Leadership,
    /// The namespaces that need the bundle, from the controller.
    pub namespaces: watch::Receiver<BTreeSet<String>>,
}

// === impl Store ===

impl Store {
    /// Loads the material, generating, renewing or rotating what is due at `now`, and stores
    /// what changed.
    pub async fn ensure(
        &self,
        namespace: &str,
        now: SystemTime,
    ) -> Result<(CertBundle, CertAction)> {
        match self {
            Store::Dir(dir) => certs::ensure(dir, namespace, now),
            Store::Secret {
                client,
                namespace: secret_namespace,
            } => ensure_secret(client, secret_namespace, namespace, now).await,
        }
    }
}

async fn ensure_secret(
    client: &Client,
    secret_namespace: &str,
    namespace: &str,
    now: SystemTime,
) -> Result<(CertBundle, CertAction)> {
    let api: Api<Secret> = Api::namespaced(client.clone(), secret_namespace);
    let names = certs::serving_names(namespace);
    for _ in 0..SECRET_ATTEMPTS {
        let existing = api.get_opt(CERTS_SECRET).await?;
        let current = existing.as_ref().map(material_of).unwrap_or_default();
        let (next, action) = certs::plan(&current, &names, now)?;
        if existing.is_some() && next == current {
            return Ok((next.bundle()?, action));
        }
        let written = match existing {
            // Create-only: when two replicas race, one create fails and that replica reads
            // and uses what the other wrote.
            None => api.create(&PostParams::default(), &secret_of(&next)).await,
            // The read's resourceVersion makes the replace fail if anyone wrote in between.
            Some(mut secret) => {
                secret.data = secret_of(&next).data;
                secret.string_data = None;
                api.replace(CERTS_SECRET, &PostParams::default(), &secret)
                    .await
            }
        };
        match written {
            Ok(_) => {
                tracing::info!(?action, secret = CERTS_SECRET, "certificates stored");
                return Ok((next.bundle()?, action));
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!("another replica wrote the certificates first; reading theirs");
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(Error::CertificateStore(format!(
        "Secret {CERTS_SECRET} kept changing under {SECRET_ATTEMPTS} attempts to update it"
    )))
}

/// The material in a Secret; entries that are not UTF-8 are left out (and so regenerated).
pub fn material_of(secret: &Secret) -> Material {
    let mut material = Material::default();
    for (name, value) in secret.data.iter().flatten() {
        if let Ok(text) = String::from_utf8(value.0.clone()) {
            material.set(name, text);
        }
    }
    material
}

/// A Secret holding `material`.
pub fn secret_of(material: &Material) -> Secret {
    let data: BTreeMap<String, ByteString> = material
        .0
        .iter()
        .map(|(name, pem)| (name.clone(), ByteString(pem.as_bytes().to_vec())))
        .collect();
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(CERTS_SECRET.to_string()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                FIELD_MANAGER.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(data),
        type_: Some("Opaque".to_string()),
        ..Default::default()
    }
}

/// The server-side apply body of the CA bundle ConfigMap.
pub fn ca_root_apply(bundle: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CA_CONFIG_MAP,
            "labels": {MANAGED_BY_LABEL: FIELD_MANAGER},
        },
        "data": {CA_BUNDLE_KEY: bundle},
    })
}

/// The server-side apply body setting `caBundle` on each named webhook, or `None` when every
/// webhook already carries it. Only `caBundle` is in the body, so the chart keeps owning
/// everything else.
pub fn webhook_apply(
    config: &MutatingWebhookConfiguration,
    bundle: &str,
) -> Option<serde_json::Value> {
    let wanted = base64::engine::general_purpose::STANDARD.encode(bundle);
    let webhooks = config.webhooks.as_deref().unwrap_or_default();
    let stale = webhooks.iter().any(|w| {
        w.client_config
            .ca_bundle
            .as_ref()
            .is_none_or(|b| b.0 != bundle.as_bytes())
    });
    if !stale {
        return None;
    }
    let entries: Vec<serde_json::Value> = webhooks
        .iter()
        .map(|w| serde_json::json!({"name": w.name, "clientConfig": {"caBundle": wanted}}))
        .collect();
    Some(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": config.metadata.name},
        "webhooks": entries,
    }))
}

// === impl Publisher ===

impl Publisher {
    /// Runs until the process ends; every failure is logged and retried on the next tick.
    pub async fn run(mut self, mut bundle: CertBundle) {
        // The bundle each namespace was last given, so a tick applies only what is missing.
        let mut applied: HashMap<String, String> = HashMap::new();
        let mut renew = tokio::time::interval(RENEW_EVERY);
        let mut webhook = tokio::time::interval(WEBHOOK_EVERY);
        let mut refresh = tokio::time::interval(CONFIGMAPS_EVERY);
        renew.tick().await;
        refresh.tick().await;
        loop {
            tokio::select! {
                _ = renew.tick() => {
                    match self.store.ensure(&self.namespace, SystemTime::now()).await {
                        Ok((next, action)) => {
                            if next.cert_pem != bundle.cert_pem {
                                tracing::info!(?action, "serving certificate replaced");
                                if let Err(error) = self.serving.replace(&next) {
                                    tracing::error!(%error, "cannot load the new serving certificate");
                                }
                            }
                            bundle = next;
                        }
                        Err(error) => tracing::warn!(%error, "cannot renew certificates; retrying later"),
                    }
                }
                _ = refresh.tick() => applied.clear(),
                _ = webhook.tick() => {}
                () = changed(&mut self.namespaces) => {}
                _ = self.leadership.changed() => applied.clear(),
            }
            if !self.leadership.is_leader() {
                continue;
            }
            self.publish_configmaps(&bundle.ca_pem, &mut applied).await;
            if let Err(error) = self.publish_webhook(&bundle.ca_pem).await {
                tracing::warn!(%error, config = %self.webhook_config_name, "cannot set the webhook caBundle; retrying");
            }
        }
    }

    async fn publish_configmaps(&self, bundle: &str, applied: &mut HashMap<String, String>) {
        let namespaces = self.namespaces.borrow().clone();
        applied.retain(|ns, _| namespaces.contains(ns));
        for ns in namespaces {
            if applied.get(&ns).is_some_and(|b| b == bundle) {
                continue;
            }
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
            let params = PatchParams::apply(FIELD_MANAGER).force();
            match api
                .patch(CA_CONFIG_MAP, &params, &Patch::Apply(ca_root_apply(bundle)))
                .await
            {
                Ok(_) => {
                    applied.insert(ns, bundle.to_string());
                }
                Err(error) if crate::is_gone(&error) => {
                    tracing::debug!(%error, namespace = %ns, "namespace going away: no CA bundle");
                }
                Err(error) => {
                    tracing::warn!(%error, namespace = %ns, "cannot publish the CA bundle; retrying");
                }
            }
        }
    }

    async fn publish_webhook(&self, bundle: &str) -> kube::Result<()> {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let Some(config) = api.get_opt(&self.webhook_config_name).await? else {
            tracing::debug!(config = %self.webhook_config_name, "no webhook configuration yet");
            return Ok(());
        };
        if let Some(body) = webhook_apply(&config, bundle) {
            let params = PatchParams::apply(FIELD_MANAGER).force();
            api.patch(&self.webhook_config_name, &params, &Patch::Apply(body))
                .await?;
            tracing::info!(config = %self.webhook_config_name, "webhook caBundle set");
        }
        Ok(())
    }
}

/// Waits for the next change; never returns once the sender is gone (the controller ended), so
/// that a closed channel cannot spin the publisher's loop.
async fn changed<T>(rx: &mut watch::Receiver<T>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests;
