//! `switchyard.dev/v1alpha1`: the custom resources users write.
//!
//! Field docs here become `kubectl explain` text, so they are written for users: units, defaults
//! and what each field is for.

mod budget;
mod common;
mod pool;
mod route;
mod scoring;
mod template;

pub use budget::*;
pub use common::*;
pub use pool::*;
pub use route::*;
pub use scoring::*;
pub use template::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

/// The API group of every Switchyard resource.
pub const GROUP: &str = "switchyard.dev";
/// The API version this module describes.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "switchyard.dev/v1alpha1";

/// The CRD manifests, as `(file name, YAML)`, in the order they are applied.
pub fn crd_manifests() -> Vec<(&'static str, String)> {
    use kube::CustomResourceExt;
    let yaml = |mut crd: CustomResourceDefinition| {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                kubernetes_integer_formats(schema);
            }
        }
        serde_yaml::to_string(&crd).expect("CRDs always serialize")
    };
    vec![
        ("providerpools.yaml", yaml(ProviderPool::crd())),
        ("modelroutes.yaml", yaml(ModelRoute::crd())),
        ("budgets.yaml", yaml(Budget::crd())),
        ("prompttemplates.yaml", yaml(PromptTemplate::crd())),
    ]
}

/// Rewrites schemars' unsigned integer formats (`uint8` … `uint64`), which the apiserver does not
/// know and warns about on every apply, as the Kubernetes formats that hold them; the `minimum: 0`
/// schemars also emits keeps them unsigned.
fn kubernetes_integer_formats(schema: &mut JSONSchemaProps) {
    schema.format = match schema.format.take().as_deref() {
        Some("uint8" | "uint16") => Some("int32".to_string()),
        Some("uint32" | "uint64" | "uint") => Some("int64".to_string()),
        other => other.map(str::to_string),
    };
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(schema.items.iter_mut().flat_map(|items| match items {
            JSONSchemaPropsOrArray::Schema(one) => std::slice::from_mut(one.as_mut()),
            JSONSchemaPropsOrArray::Schemas(many) => many.as_mut_slice(),
        }))
        .chain(
            schema
                .additional_properties
                .iter_mut()
                .filter_map(|a| match a {
                    JSONSchemaPropsOrBool::Schema(one) => Some(one.as_mut()),
                    JSONSchemaPropsOrBool::Bool(_) => None,
                }),
        )
        .chain(
            [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of]
                .into_iter()
                .flatten()
                .flatten(),
        );
    for child in children {
        kubernetes_integer_formats(child);
    }
}

#[cfg(test)]
mod tests {
    /// Stale generated manifests must fail the build (`scripts/test`).
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

    /// The apiserver warns on every apply about formats it does not know.
    #[test]
    fn only_kubernetes_integer_formats_are_generated() {
        for (file, yaml) in super::crd_manifests() {
            assert!(!yaml.contains("format: uint"), "{file}");
            assert!(
                yaml.contains("format: int64"),
                "{file}: u32 fields keep a format"
            );
        }
    }
}
