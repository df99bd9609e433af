//! The names the operator shares with the cluster: labels, annotations, and the objects, Services
//! and field manager it owns. The chart and injected pods know the same strings (see
//! docs/reference/operator.md), so each is spelled once, here, and every module imports it
//! from here rather than from another module that happens to use it.

/// Who writes: the field manager of every server-side apply, the reporter of events, the
/// `app.kubernetes.io/managed-by` value of the objects the operator creates.
pub const FIELD_MANAGER: &str = "switchyard-operator";
/// What `generatedBy` says in the empty table served to pods no route selects.
pub const GENERATED_BY: &str = "switchyard-operator";

/// The Lease every replica competes for, in the operator's namespace.
pub const LEASE_NAME: &str = "switchyard-operator";
/// The label the leader puts on its own Pod; the config Service selects [`ROLE_LEADER`].
pub const ROLE_LABEL: &str = "switchyard.dev/role";
/// The value of [`ROLE_LABEL`] on the leader's Pod.
pub const ROLE_LEADER: &str = "leader";

/// Pod or namespace label that opts in (`"true"`) or, on a pod, out (`"false"`, which wins
/// over a namespace label).
pub const INJECT_LABEL: &str = "switchyard.dev/inject";
/// Label set on injected pods; the controller watches pods by it.
pub const INJECTED_LABEL: &str = "switchyard.dev/injected";
/// Annotation recording the operator version that injected the pod.
pub const VERSION_ANNOTATION: &str = "switchyard.dev/sidecar-version";
/// Annotation overriding the injection mode: `native` or `container`.
pub const MODE_ANNOTATION: &str = "switchyard.dev/sidecar-mode";
/// Annotation explaining why a selected pod was not injected.
pub const SKIPPED_ANNOTATION: &str = "switchyard.dev/skipped";
/// Annotation `kubectl logs`/`exec` read to pick a container when none is named.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
/// The well-known label naming the tool that manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// The Secret holding the certificate material in a cluster.
pub const CERTS_SECRET: &str = "switchyard-certs";
/// The ConfigMap carrying the CA bundle into every namespace with injected pods.
pub const CA_CONFIG_MAP: &str = "switchyard-ca-root";
/// Its key, mounted by injected sidecars as their `--ca-file`.
pub const CA_BUNDLE_KEY: &str = "ca.crt";

/// The Service sidecars reach the config server through (it selects the leader).
pub const CONFIG_SERVICE: &str = "switchyard-config";
/// The MutatingWebhookConfiguration whose `caBundle` the operator keeps current, by default.
pub const WEBHOOK_CONFIGURATION: &str = "switchyard";
/// The Service the apiserver calls the injection webhook through.
pub const WEBHOOK_SERVICE: &str = "switchyard-webhook";
/// The audience sidecar tokens are projected for and the config server's TokenReview asks for.
pub const TOKEN_AUDIENCE: &str = "switchyard";
