//! Placeholder: the proxy benchmark is being written.
fn main() {}
