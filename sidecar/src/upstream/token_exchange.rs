//! What the two token exchanges share (AWS STS web identity for Bedrock, the OAuth2 JWT bearer
//! grant for Vertex AI): credentials kept until their refresh instant and refreshed by one caller
//! at a time, and a bounded form POST to the exchange's endpoint.

use std::future::Future;
use std::sync::Mutex;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use switchyard_crds::v1alpha1::FailureClass;
use tokio::time::Instant;

use super::HttpClient;
use crate::failure::AttemptError;

/// An exchange's answer is a few kilobytes at most; more is not one.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Credentials with the instants that bound their use.
#[derive(Clone)]
pub struct Lease<T> {
    pub value: T,
    /// Past this, new credentials are fetched.
    pub refresh_at: Instant,
    /// Past this, these are no longer used at all.
    pub expires_at: Instant,
}

/// The current [`Lease`], refreshed by one caller at a time.
pub struct Refreshing<T> {
    current: Mutex<Option<Lease<T>>>,
    /// Held by the one caller fetching.
    flight: tokio::sync::Mutex<()>,
}

impl<T: Clone> Default for Refreshing<T> {
    fn default() -> Self {
        Self {
            current: Mutex::new(None),
            flight: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T: Clone> Refreshing<T> {
    fn current(&self) -> Option<Lease<T>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The current credentials, fetched with `fetch` once they are due for a refresh. While one
    /// caller fetches, the others keep using credentials that have not expired yet (or wait when
    /// there are none), and a refresh that fails before expiry costs nothing: the next call
    /// tries again.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<T, AttemptError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Lease<T>, AttemptError>>,
    {
        let now = Instant::now();
        let still_valid = match self.current() {
            Some(lease) if now < lease.refresh_at => return Ok(lease.value),
            Some(lease) if now < lease.expires_at => Some(lease.value),
            _ => None,
        };
        let _flight = match (self.flight.try_lock(), &still_valid) {
            (Ok(guard), _) => guard,
            (Err(_), Some(value)) => return Ok(value.clone()),
            (Err(_), None) => self.flight.lock().await,
        };
        // The fetch we waited for may have brought fresh credentials.
        if let Some(lease) = self.current().filter(|l| Instant::now() < l.refresh_at) {
            return Ok(lease.value);
        }
        let fresh = match (fetch().await, still_valid) {
            (Ok(fresh), _) => fresh,
            (Err(error), Some(value)) => {
                tracing::warn!(error = %error.message, "refreshing credentials failed; the current ones are still valid");
                return Ok(value);
            }
            (Err(error), None) => return Err(error),
        };
        let value = fresh.value.clone();
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fresh);
        Ok(value)
    }
}

/// POSTs `form` (already `application/x-www-form-urlencoded`) to `url` and reads the answer,
/// bounded. `endpoint` names the exchange in errors, which never quote the form.
pub async fn post_form(
    client: &HttpClient,
    url: &str,
    form: String,
    endpoint: &str,
) -> Result<(StatusCode, Bytes), AttemptError> {
    let mut request = http::Request::post(url)
        .body(Full::new(Bytes::from(form)))
        .map_err(|_| {
            AttemptError::new(
                FailureClass::AuthError,
                format!("{endpoint}: not a valid URL"),
            )
        })?;
    let headers = request.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("switchyard-sidecar/", env!("CARGO_PKG_VERSION"))),
    );
    let answer = client.request(request).await.map_err(|e| {
        let what = if e.is_connect() {
            "connection failed"
        } else {
            "the connection broke"
        };
        AttemptError::new(
            FailureClass::ConnectError,
            format!("{endpoint} unreachable: {what}"),
        )
    })?;
    let (parts, body) = answer.into_parts();
    let body = Limited::new(body, MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|_| {
            AttemptError::new(
                FailureClass::ServerError,
                format!("{endpoint}'s answer broke off or is too large"),
            )
        })?
        .to_bytes();
    Ok((parts.status, body))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    fn lease(value: u32, refresh_in: Duration, expires_in: Duration) -> Lease<u32> {
        let now = Instant::now();
        Lease {
            value,
            refresh_at: now + refresh_in,
            expires_at: now + expires_in,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fetches_once_until_the_refresh_instant_then_again() {
        let cache = Refreshing::default();
        let fetches = AtomicU32::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(lease(n, Duration::from_secs(8), Duration::from_secs(10)))
        };
        assert_eq!(cache.get(fetch).await.unwrap(), 1);
        assert_eq!(cache.get(fetch).await.unwrap(), 1);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(cache.get(fetch).await.unwrap(), 2);
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_early_refresh_keeps_the_valid_credentials_and_a_late_one_fails() {
        let cache = Refreshing::default();
        let first = || async { Ok(lease(1, Duration::from_secs(8), Duration::from_secs(10))) };
        cache.get(first).await.unwrap();
        let refused = || async { Err(AttemptError::new(FailureClass::AuthError, "refused")) };
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(cache.get(refused).await.unwrap(), 1, "still valid");
        tokio::time::advance(Duration::from_secs(2)).await;
        let error = cache.get(refused).await.unwrap_err();
        assert_eq!(error.class, FailureClass::AuthError);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Refreshing::default();
        let fetches = AtomicU32::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(lease(7, Duration::from_secs(8), Duration::from_secs(10)))
        };
        let (a, b, c) = tokio::join!(cache.get(fetch), cache.get(fetch), cache.get(fetch));
        assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (7, 7, 7));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }
}
