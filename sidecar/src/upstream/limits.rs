//! Per-sidecar provider limits: requests per minute, tokens per minute and requests in flight.
//!
//! Rates are token buckets that refill continuously. The token bucket is charged after the fact
//! with what the provider reports, so it may go below zero; the provider is skipped until it has
//! refilled. `governor`'s GCRA cannot take such after-the-fact charges, hence this small type.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_crds::table::Limits;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// When every concurrency slot is taken there is no telling when one frees: callers are told to
/// look again after this, short next to any request.
const SLOT_RECHECK: Duration = Duration::from_millis(10);

/// The limits of one upstream.
#[derive(Debug)]
pub struct UpstreamLimits {
    concurrency: Option<Arc<Semaphore>>,
    requests: Option<Mutex<Bucket>>,
    tokens: Option<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    capacity: f64,
    level: f64,
    per_second: f64,
    last: Instant,
}

impl Bucket {
    fn per_minute(capacity: f64, now: Instant) -> Self {
        Self {
            capacity,
            level: capacity,
            per_second: capacity / 60.0,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level + elapsed * self.per_second).min(self.capacity);
        self.last = now;
    }

    /// When the level will reach `needed`.
    fn ready_at(&self, needed: f64, now: Instant) -> Instant {
        now + Duration::from_secs_f64(((needed - self.level) / self.per_second).max(0.0))
    }
}

/// Permission to send one request; holds a concurrency slot until dropped.
#[derive(Debug)]
pub struct LimitPermit {
    _slot: Option<OwnedSemaphorePermit>,
}

impl UpstreamLimits {
    /// Limits as configured; `None` fields are unlimited.
    pub fn new(limits: &Limits, now: Instant) -> Self {
        Self {
            concurrency: limits
                .max_concurrent
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            requests: limits
                .requests_per_minute
                .map(|n| Mutex::new(Bucket::per_minute(n as f64, now))),
            tokens: limits
                .tokens_per_minute
                .map(|n| Mutex::new(Bucket::per_minute(n as f64, now))),
        }
    }

    /// When the next request could go, if not now. Takes nothing.
    pub fn blocked_until(&self, now: Instant) -> Option<Instant> {
        let mut until: Option<Instant> = None;
        let mut later = |t: Instant| until = Some(until.map_or(t, |u| u.max(t)));
        if let Some(b) = &self.requests {
            let mut b = lock(b);
            b.refill(now);
            if b.level < 1.0 {
                later(b.ready_at(1.0, now));
            }
        }
        if let Some(b) = &self.tokens {
            let mut b = lock(b);
            b.refill(now);
            if b.level <= 0.0 {
                later(b.ready_at(f64::MIN_POSITIVE, now));
            }
        }
        if self
            .concurrency
            .as_ref()
            .is_some_and(|s| s.available_permits() == 0)
        {
            // No way to know when a slot frees; look again shortly.
            later(now + SLOT_RECHECK);
        }
        until
    }

    /// Takes a request token and a concurrency slot, or says when to try again.
    pub fn try_acquire(&self, now: Instant) -> Result<LimitPermit, Instant> {
        if let Some(until) = self.blocked_until(now) {
            return Err(until);
        }
        let slot = match &self.concurrency {
            Some(s) => Some(
                s.clone()
                    .try_acquire_owned()
                    .map_err(|_| now + SLOT_RECHECK)?,
            ),
            None => None,
        };
        if let Some(b) = &self.requests {
            lock(b).level -= 1.0;
        }
        Ok(LimitPermit { _slot: slot })
    }

    /// Takes what is needed regardless of rates, waiting only for a concurrency slot: used when
    /// every target is blocked and this one's block ends first.
    pub async fn acquire_anyway(&self) -> LimitPermit {
        if let Some(b) = &self.requests {
            lock(b).level -= 1.0;
        }
        let slot = match &self.concurrency {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        };
        LimitPermit { _slot: slot }
    }

    /// Charges the tokens a provider reported.
    pub fn charge_tokens(&self, tokens: u64, now: Instant) {
        if let Some(b) = &self.tokens {
            let mut b = lock(b);
            b.refill(now);
            b.level -= tokens as f64;
        }
    }
}

fn lock(b: &Mutex<Bucket>) -> std::sync::MutexGuard<'_, Bucket> {
    b.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_per_minute_refill_continuously() {
        let t0 = Instant::now();
        let l = UpstreamLimits::new(
            &Limits {
                requests_per_minute: Some(2),
                ..Default::default()
            },
            t0,
        );
        assert!(l.try_acquire(t0).is_ok());
        assert!(l.try_acquire(t0).is_ok());
        let until = l.try_acquire(t0).unwrap_err();
        assert_eq!(
            until,
            t0 + Duration::from_secs(30),
            "one request refills in 60/2 s"
        );
        assert!(l.try_acquire(t0 + Duration::from_secs(30)).is_ok());
    }

    #[test]
    fn tokens_are_charged_after_the_fact() {
        let t0 = Instant::now();
        let l = UpstreamLimits::new(
            &Limits {
                tokens_per_minute: Some(600),
                ..Default::default()
            },
            t0,
        );
        assert!(l.try_acquire(t0).is_ok());
        l.charge_tokens(900, t0);
        let until = l.blocked_until(t0).unwrap();
        assert!(
            until > t0 + Duration::from_secs(29) && until <= t0 + Duration::from_secs(31),
            "{until:?}"
        );
    }

    #[test]
    fn concurrency_slots_are_held_by_permits() {
        let t0 = Instant::now();
        let l = UpstreamLimits::new(
            &Limits {
                max_concurrent: Some(1),
                ..Default::default()
            },
            t0,
        );
        let permit = l.try_acquire(t0).unwrap();
        assert!(l.try_acquire(t0).is_err());
        drop(permit);
        assert!(l.try_acquire(t0).is_ok());
    }

    #[test]
    fn no_limits_never_block() {
        let t0 = Instant::now();
        let l = UpstreamLimits::new(&Limits::default(), t0);
        for _ in 0..1000 {
            assert!(l.try_acquire(t0).is_ok());
        }
    }
}
