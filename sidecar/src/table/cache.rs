//! The per-sidecar exact-match response cache (`ModelRoute.spec.cache`).
//!
//! Only deterministic requests are cached: `temperature` 0 or a `seed`, `n` 1 and not streamed
//! (docs/reference/sidecar.md#cache). The key is the SHA-256 of the route name and the whole
//! request body, so a hit can only ever answer the very same request; a 64-bit hash would make a
//! collision that hands one caller another's answer merely unlikely. Entries expire after the
//! route's `ttl` and the least recently used go first when `maxEntries` is reached.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use lru::LruCache;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use switchyard_crds::table::CachePolicy;
use tokio::time::Instant;

use crate::convert::ClientApi;

/// A cache key.
pub type Key = [u8; 32];

/// A cached answer and who gave it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub body: Bytes,
    /// `pool/provider`.
    pub provider: String,
    pub model: String,
    expires: Instant,
}

/// One route's cache.
#[derive(Debug)]
pub struct ResponseCache {
    ttl: Duration,
    entries: Mutex<LruCache<Key, Entry>>,
}

impl ResponseCache {
    pub fn new(policy: &CachePolicy) -> Self {
        let capacity = NonZeroUsize::new(policy.max_entries as usize).unwrap_or(NonZeroUsize::MIN);
        Self {
            ttl: Duration::from_millis(policy.ttl_ms),
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The key for a request on `route`, when it may be cached at all. Determinism is judged on
    /// the hub form; the key covers the client's own body and format, since the cached answer is
    /// in that format.
    pub fn key(
        route: &str,
        rule: Option<&str>,
        client: ClientApi,
        hub: &Map<String, Value>,
        original: Option<&Map<String, Value>>,
    ) -> Option<Key> {
        let deterministic = hub.get("temperature").and_then(Value::as_f64) == Some(0.0)
            || hub.get("seed").is_some_and(|s| !s.is_null());
        let single = hub
            .get("n")
            .is_none_or(|n| n.is_null() || n.as_u64() == Some(1));
        let streamed = hub.get("stream").and_then(Value::as_bool).unwrap_or(false);
        if !deterministic || !single || streamed {
            return None;
        }
        let mut hasher = Sha256::new();
        hasher.update(route.as_bytes());
        hasher.update([0]);
        hasher.update(rule.unwrap_or_default().as_bytes());
        hasher.update([0, client as u8]);
        hasher.update(serde_json::to_vec(original.unwrap_or(hub)).ok()?);
        Some(hasher.finalize().into())
    }

    /// A live entry for `key`.
    pub fn get(&self, key: &Key, now: Instant) -> Option<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(key) {
            Some(entry) if entry.expires > now => Some(entry.clone()),
            Some(_) => {
                entries.pop(key);
                None
            }
            None => None,
        }
    }

    /// Stores an answer.
    pub fn put(&self, key: Key, body: Bytes, provider: &str, model: &str, now: Instant) {
        let entry = Entry {
            body,
            provider: provider.to_string(),
            model: model.to_string(),
            expires: now + self.ttl,
        };
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(key, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn only_deterministic_single_unstreamed_requests_have_keys() {
        let base = serde_json::json!({"messages": [{"role": "user", "content": "x"}]});
        let with = |k: &str, v: Value| {
            let mut b = body(base.clone());
            b.insert(k.into(), v);
            b
        };
        assert!(
            ResponseCache::key("r", None, ClientApi::OpenAI, &body(base.clone()), None).is_none(),
            "sampling is not deterministic"
        );
        assert!(
            ResponseCache::key(
                "r",
                None,
                ClientApi::OpenAI,
                &with("temperature", 0.into()),
                None
            )
            .is_some()
        );
        assert!(
            ResponseCache::key(
                "r",
                None,
                ClientApi::OpenAI,
                &with("temperature", 0.7.into()),
                None
            )
            .is_none()
        );
        assert!(
            ResponseCache::key("r", None, ClientApi::OpenAI, &with("seed", 42.into()), None)
                .is_some()
        );
        let mut streamed = with("seed", 42.into());
        streamed.insert("stream".into(), true.into());
        assert!(ResponseCache::key("r", None, ClientApi::OpenAI, &streamed, None).is_none());
        let mut many = with("seed", 42.into());
        many.insert("n".into(), 2.into());
        assert!(ResponseCache::key("r", None, ClientApi::OpenAI, &many, None).is_none());
        let b = with("seed", 1.into());
        assert_ne!(
            ResponseCache::key("a", None, ClientApi::OpenAI, &b, None),
            ResponseCache::key("b", None, ClientApi::OpenAI, &b, None),
            "routes do not share entries"
        );
        assert_ne!(
            ResponseCache::key("a", Some("premium"), ClientApi::OpenAI, &b, None),
            ResponseCache::key("a", None, ClientApi::OpenAI, &b, None),
            "a request a rule sent elsewhere does not share entries"
        );
    }

    #[test]
    fn entries_expire_and_the_least_recent_go_first() {
        let cache = ResponseCache::new(&CachePolicy {
            ttl_ms: 1000,
            max_entries: 2,
        });
        let t0 = Instant::now();
        let (a, b, c) = ([1; 32], [2; 32], [3; 32]);
        cache.put(a, Bytes::from_static(b"A"), "p/x", "m", t0);
        cache.put(b, Bytes::from_static(b"B"), "p/x", "m", t0);
        assert!(cache.get(&a, t0).is_some()); // a is now the most recent
        cache.put(c, Bytes::from_static(b"C"), "p/x", "m", t0);
        assert!(cache.get(&b, t0).is_none(), "b was least recently used");
        assert_eq!(cache.get(&a, t0).unwrap().body, "A");
        assert!(
            cache.get(&a, t0 + Duration::from_millis(1001)).is_none(),
            "expired"
        );
    }
}
