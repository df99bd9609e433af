//! The sidecar's listeners: [`server`] accepts and bounds connections for any handler; [`admin`]
//! answers the admin and debug ports (health, readiness, metrics, state). The data plane's
//! handler is [`crate::proxy::Proxy`].

pub mod admin;
pub mod server;
