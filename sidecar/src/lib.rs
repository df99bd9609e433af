//! `switchyard-sidecar`: the data plane. It serves an OpenAI-compatible API on localhost, picks
//! a provider for each request from the compiled route table, fails over, breaks circuits,
//! enforces limits and accounts tokens and cost, all inside the application's pod.
//!
//! The request path lives in [`proxy`], in the phases DESIGN.md §3 names. Tables come from
//! [`standalone`] (files) or [`subscribe`] (the operator, with [`persist`] keeping the last good
//! one on disk); both end in [`state::Runtime::swap`].

pub mod admin;
pub mod app;
pub mod args;
pub mod body;
pub mod cache;
pub mod convert;
#[cfg(feature = "demo")]
pub mod demo;
pub mod failure;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod persist;
pub mod providers;
pub mod proxy;
pub mod report;
pub mod server;
pub mod sse;
pub mod standalone;
pub mod state;
pub mod subscribe;
pub mod telemetry;
pub mod tokens;

mod error;

pub use error::{Error, Result};
