//! Switchyard's control plane: the controller that compiles route tables and writes status, the
//! config server sidecars poll for their tables (fed by the controller through
//! [`config_server::tables::Tables`]) and report to, the certificates it serves with, and the admin
//! endpoints, leader election, trust publication, the injection webhook, and which workload each
//! injected pod belongs to.

pub mod admin;
pub mod args;
pub mod certs;
pub mod config_server;
pub mod controller;
pub mod leader;
pub mod listener;
pub mod metrics;
pub mod names;
pub mod telemetry;
pub mod trust;
pub mod webhook;
pub mod workload;

mod error;

pub use error::{Error, Result, is_gone};
