//! Switchyard's control plane: the controller that compiles route tables and writes status, the
//! config server sidecars poll for their tables (fed by the controller through
//! [`config_server::tables::Tables`]) and report to, the certificates it serves with, and the admin
//! endpoints. The injection webhook follows.

pub mod admin;
pub mod args;
pub mod certs;
pub mod config_server;
pub mod controller;
pub mod metrics;

mod error;

pub use error::{Error, Result};
