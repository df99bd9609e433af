//! Switchyard's API: the `ModelRoute`, `ProviderPool` and `Budget` custom resources, the compiled
//! [`RouteTable`](table::RouteTable) that sidecars consume, the pure [`compile`](compile::compile)
//! function between them, and the [`window`] arithmetic budgets count in.
//!
//! Both binaries link this crate and nothing else of each other: the operator compiles tables for
//! pods, the standalone sidecar compiles the same tables from files with [`manifests`]. Because this
//! crate links no Kubernetes client, it stays cheap to build and easy to test.

pub mod compile;
pub mod complexity;
pub mod duration;
pub mod manifests;
pub mod report;
pub mod secret;
pub mod table;
pub mod template;
pub mod v1alpha1;
pub mod window;

mod error;

pub use error::{Error, Result};
