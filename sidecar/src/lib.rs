//! `switchyard-sidecar`: the data plane. It serves an OpenAI-compatible API on localhost, picks
//! a provider for each request from the compiled route table, fails over, breaks circuits,
//! enforces limits and accounts tokens and cost, all inside the application's pod
//! (docs/architecture.md).
//!
//! The layout follows a request and a table:
//! - [`app`]: flags ([`app::args`]) into a configuration, start and stop;
//! - [`listen`]: the listeners, bounded connections, the admin and debug ports;
//! - [`proxy`]: the request path in its phases, from the request to everything the client sees;
//! - [`convert`] and [`providers`]: client and provider wire formats, and the translation
//!   between them;
//! - [`upstream`]: per-provider clients and limits, per-target health (the circuit breaker);
//! - [`budget`]: the budgets this sidecar enforces, counted without locks;
//! - [`failure`]: what a failed attempt was, and whether it fails over or counts for the breaker;
//! - [`table`]: the route table being served, swapped whole; standalone mode's files;
//! - [`pod`]: pod mode's subscription to the operator, reports back, and the table kept on disk;
//! - [`telemetry`]: logs and metrics;
//! - `demo` (cargo feature `demo`): the sidecar against simulated providers.

pub mod app;
pub mod budget;
pub mod convert;
#[cfg(feature = "demo")]
pub mod demo;
pub mod failure;
pub mod listen;
pub mod pod;
pub mod providers;
pub mod proxy;
pub mod table;
pub mod telemetry;
pub mod upstream;

mod error;

pub use error::{Error, Result};
