//! A string that must never be shown: provider API keys.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An API key or other secret value. `Debug` and `Display` print `***`, so a key cannot reach a
/// log line or an error message by accident; only [`SecretString::expose`] reveals it, at the one
/// place that sets the upstream auth header. It serializes as the plain value because the route
/// table is how keys travel to sidecars (over the authenticated TLS channel only).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the code that authenticates to a provider.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The placeholder shown wherever the secret would otherwise appear.
    pub fn redacted() -> Self {
        Self("***".to_string())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let key = SecretString::new("sk-live-123");
        assert_eq!(format!("{key:?}"), "***");
        assert_eq!(format!("{key}"), "***");
        assert_eq!(format!("{:?}", Some(&key)), "Some(***)");
        assert_eq!(key.expose(), "sk-live-123");
    }
}
