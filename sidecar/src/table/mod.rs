//! The route table being served: [`Runtime`] holds the current table resolved for the request
//! path and swaps in new ones whole; [`standalone`] loads and watches manifest files (pod mode's
//! tables come from the `pod` module); [`cache`] is a route's response cache.

pub mod cache;
pub mod runtime;
pub mod scorer;
pub mod standalone;

pub use runtime::{RouteRt, Runtime, Snapshot};
