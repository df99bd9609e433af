//! Switchyard's control plane. Today: the config server sidecars poll for their route tables
//! and report to, the certificates it serves with, and the admin endpoints. The controller
//! that feeds [`config_server::Tables`] and the injection webhook follow.

pub mod admin;
pub mod args;
pub mod certs;
pub mod config_server;
pub mod metrics;

mod error;

pub use error::{Error, Result};
