//! `switchyard.dev/v1alpha1`: the custom resources users write.
//!
//! Field docs here become `kubectl explain` text, so they are written for users: units, defaults
//! and what each field is for.

mod common;
mod pool;
mod route;

pub use common::*;
pub use pool::*;
pub use route::*;

/// The API group of every Switchyard resource.
pub const GROUP: &str = "switchyard.dev";
/// The API version this module describes.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "switchyard.dev/v1alpha1";

/// The CRD manifests, as `(file name, YAML)`, in the order they are applied.
pub fn crd_manifests() -> Vec<(&'static str, String)> {
    use kube::CustomResourceExt;
    let yaml = |crd| serde_yaml::to_string(&crd).expect("CRDs always serialize");
    vec![
        ("providerpools.yaml", yaml(ProviderPool::crd())),
        ("modelroutes.yaml", yaml(ModelRoute::crd())),
    ]
}

#[cfg(test)]
mod tests {
    /// DESIGN.md requires that stale generated manifests fail the build.
    #[test]
    fn committed_crd_manifests_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
        for (file, generated) in super::crd_manifests() {
            let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            assert!(
                committed == generated,
                "crds/manifests/{file} is stale: run `scripts/generate` and commit the result"
            );
        }
    }
}
