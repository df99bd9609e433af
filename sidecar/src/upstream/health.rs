//! Per-target health: the circuit breaker, `Retry-After` blocks, silence and observed latency.
//!
//! Silence catches a provider that accepts connections and then answers nothing: while at least
//! one attempt waits for a response head and the target has answered none for its `firstToken`
//! timeout, new requests skip it (as if blocked) and go to the next target. Every request streams
//! upstream, so a head comes as soon as the provider starts generating, and each attempt waits for
//! it at most its own `firstToken`: a long generation does not look like silence, and the attempts
//! that wait in vain time out and count towards the breaker as usual. One answer of any kind ends
//! the silence. When every target is blocked or silent, the soonest to recover is still tried.
//!
//! One [`TargetHealth`] exists per (pool, provider, model) and outlives table reloads, so that a
//! reload does not forget that a provider is down. All state sits behind one short-held mutex:
//! every operation is a few comparisons, far cheaper than the request it guards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntGauge;
use switchyard_crds::report::LATENCY_BUCKETS_MS;
use switchyard_crds::table::Breaker;
use tokio::time::Instant;

use crate::failure::{AttemptError, BreakerEffect};

/// Weight of the newest sample in the latency average.
const EWMA_ALPHA: f64 = 0.3;
/// A 429 without a hint blocks the target this long.
const DEFAULT_RATE_LIMIT_BLOCK: Duration = Duration::from_secs(1);
/// While a half-open circuit's probe is out, how long others are told to wait before asking
/// again: short, because the probe's verdict can come any moment, but not a busy loop.
const PROBE_RECHECK: Duration = Duration::from_millis(100);
/// A silent target counts as blocked this much longer, when targets are ranked by the end of
/// their blocks: silence ends only with an answer, so this is a guess, and a short one.
const SILENCE_RECHECK: Duration = Duration::from_secs(1);

/// Health of one (pool, provider, model).
#[derive(Debug)]
pub struct TargetHealth {
    inner: Mutex<Inner>,
    /// `switchyard_circuit_open{provider,model}`, kept in step with the state.
    gauge: IntGauge,
    /// Latency of successful attempts, for reports to the operator.
    pub latencies: LatencyBuckets,
}

/// Cumulative counts of attempt latencies per bucket of [`LATENCY_BUCKETS_MS`], plus one for
/// slower ones: what the operator needs for a p50 across sidecars, without a histogram library.
#[derive(Debug, Default)]
pub struct LatencyBuckets([AtomicU64; LATENCY_BUCKETS_MS.len() + 1]);

#[derive(Debug)]
struct Inner {
    consecutive_failures: u32,
    circuit: Circuit,
    blocked_until: Option<Instant>,
    ewma_ms: Option<f64>,
    last_sample: Option<Instant>,
    /// Attempts sent and waiting for a response head.
    waiting: u32,
    /// Since when attempts have waited with no answer from the target.
    silent_since: Option<Instant>,
    /// How long that may last: the `firstToken` timeout of the latest attempt.
    silence_limit: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Circuit {
    Closed,
    Open {
        until: Instant,
    },
    /// The cooldown has passed; one probe request decides.
    HalfOpen {
        probing: bool,
    },
}

/// Whether a request may go to the target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send it. `probe` is true for the one request that tests a half-open circuit.
    Go { probe: bool },
    /// Not before `until`.
    Blocked { until: Instant },
}

impl TargetHealth {
    /// Fresh, closed health reporting through `gauge`.
    pub fn new(gauge: IntGauge) -> Arc<Self> {
        gauge.set(0);
        Arc::new(Self {
            inner: Mutex::new(Inner {
                consecutive_failures: 0,
                circuit: Circuit::Closed,
                blocked_until: None,
                ewma_ms: None,
                last_sample: None,
                waiting: 0,
                silent_since: None,
                silence_limit: Duration::MAX,
            }),
            gauge,
            latencies: LatencyBuckets::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the plain-data state inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Eligibility without side effects, for ordering targets.
    pub fn peek(&self, now: Instant) -> Admission {
        let inner = self.lock();
        Self::evaluate(&inner, now)
    }

    fn evaluate(inner: &Inner, now: Instant) -> Admission {
        if let Some(until) = inner.blocked_until.filter(|u| *u > now) {
            return Admission::Blocked { until };
        }
        if inner
            .silent_since
            .is_some_and(|since| now.saturating_duration_since(since) >= inner.silence_limit)
        {
            return Admission::Blocked {
                until: now + SILENCE_RECHECK,
            };
        }
        match inner.circuit {
            Circuit::Closed => Admission::Go { probe: false },
            Circuit::Open { until } if until > now => Admission::Blocked { until },
            Circuit::Open { .. } | Circuit::HalfOpen { probing: false } => {
                Admission::Go { probe: true }
            }
            // While the probe is out, others wait; its answer comes within the request timeout.
            Circuit::HalfOpen { probing: true } => Admission::Blocked {
                until: now + PROBE_RECHECK,
            },
        }
    }

    /// Claims the right to send: takes the probe of a half-open circuit.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut inner = self.lock();
        let admission = Self::evaluate(&inner, now);
        if admission == (Admission::Go { probe: true }) {
            inner.circuit = Circuit::HalfOpen { probing: true };
        }
        admission
    }

    /// Sends anyway, for when every target is blocked and this one's block ends first.
    pub fn force(&self) -> bool {
        let mut inner = self.lock();
        let probe = inner.circuit != Circuit::Closed;
        if probe {
            inner.circuit = Circuit::HalfOpen { probing: true };
        }
        probe
    }

    /// A probe that ended without an answer (the client left) frees the half-open slot.
    pub fn release_probe(&self) {
        let mut inner = self.lock();
        if inner.circuit == (Circuit::HalfOpen { probing: true }) {
            inner.circuit = Circuit::HalfOpen { probing: false };
        }
    }

    /// An attempt sent to the target starts waiting for its response head; `limit` is how long
    /// the target may leave every waiting attempt unanswered before new ones skip it.
    pub fn waiting(self: &Arc<Self>, limit: Duration, now: Instant) -> Waiting {
        let mut inner = self.lock();
        inner.waiting += 1;
        inner.silence_limit = limit;
        inner.silent_since.get_or_insert(now);
        Waiting(Some(self.clone()))
    }

    fn stop_waiting(&self, answered: Option<Instant>) {
        let mut inner = self.lock();
        inner.waiting = inner.waiting.saturating_sub(1);
        if inner.waiting == 0 {
            inner.silent_since = None;
        } else if let Some(now) = answered {
            // The others still wait, but the target is alive: their silence starts now.
            inner.silent_since = Some(now);
        }
    }

    /// A successful answer: closes the circuit and feeds the latency average.
    pub fn record_success(&self, latency: Duration, now: Instant) {
        self.record_latency(latency, now);
        self.record_recovery();
    }

    /// The target answered in full: its failures are forgotten and its circuit closes. A stream
    /// records this only when it ends cleanly, so that one that breaks after its first tokens
    /// still counts towards opening the circuit.
    pub fn record_recovery(&self) {
        let mut inner = self.lock();
        inner.consecutive_failures = 0;
        inner.circuit = Circuit::Closed;
        self.gauge.set(0);
    }

    /// How long the target took to answer (a stream: to its first token), for the latency
    /// average and the reported buckets.
    pub fn record_latency(&self, latency: Duration, now: Instant) {
        let mut inner = self.lock();
        let sample = latency.as_secs_f64() * 1000.0;
        inner.ewma_ms = Some(match inner.ewma_ms {
            Some(avg) => avg + EWMA_ALPHA * (sample - avg),
            None => sample,
        });
        inner.last_sample = Some(now);
        drop(inner);
        self.latencies.record(latency);
    }

    /// A failed attempt. Returns true when this failure opened the circuit.
    pub fn record_failure(&self, error: &AttemptError, breaker: &Breaker, now: Instant) -> bool {
        let mut inner = self.lock();
        let max_block = Duration::from_millis(breaker.max_retry_after_ms);
        let hinted = error.retry_after.map(|d| d.min(max_block));
        if let Some(block) = hinted.or((error.class
            == switchyard_crds::v1alpha1::FailureClass::RateLimited)
            .then_some(DEFAULT_RATE_LIMIT_BLOCK))
        {
            inner.blocked_until = Some(now + block);
        }
        let cooldown = Duration::from_millis(breaker.cooldown_ms);
        let was_open = !matches!(inner.circuit, Circuit::Closed);
        let opens = match error.breaker_effect() {
            BreakerEffect::None => {
                self.release_locked(&mut inner);
                return false;
            }
            BreakerEffect::OpenLong => Some(cooldown * 10),
            // NB: a provider that says when to come back is blocked until then (above) without
            // counting towards the circuit: it told us exactly what it needs.
            BreakerEffect::Count if hinted.is_some() => {
                self.release_locked(&mut inner);
                return false;
            }
            BreakerEffect::Count => {
                inner.consecutive_failures += 1;
                let half_open = matches!(inner.circuit, Circuit::HalfOpen { .. });
                (half_open || inner.consecutive_failures >= breaker.consecutive_failures)
                    .then_some(cooldown)
            }
        };
        match opens {
            Some(duration) => {
                inner.circuit = Circuit::Open {
                    until: now + duration,
                };
                self.gauge.set(1);
                !was_open
            }
            None => false,
        }
    }

    fn release_locked(&self, inner: &mut Inner) {
        if inner.circuit == (Circuit::HalfOpen { probing: true }) {
            inner.circuit = Circuit::HalfOpen { probing: false };
        }
    }

    /// Whether the circuit is open or half-open.
    pub fn is_open(&self) -> bool {
        !matches!(self.lock().circuit, Circuit::Closed)
    }

    /// The latency average in milliseconds and when it was last fed.
    pub fn latency(&self) -> (Option<f64>, Option<Instant>) {
        let inner = self.lock();
        (inner.ewma_ms, inner.last_sample)
    }
}

// === impl LatencyBuckets ===

impl LatencyBuckets {
    /// Counts one attempt that took `latency`.
    pub fn record(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_MS
            .iter()
            .position(|upper| ms <= *upper)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.0[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far, one per bucket plus the overflow.
    pub fn snapshot(&self) -> Vec<u64> {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }
}

/// One attempt waiting for a response head; see [`TargetHealth::waiting`]. Dropped without
/// [`Waiting::answered`] (a timeout, a refused connection, a client that left), it stops
/// waiting without ending the target's silence.
pub struct Waiting(Option<Arc<TargetHealth>>);

impl Waiting {
    /// The target answered (any status): it is not silent.
    pub fn answered(mut self, now: Instant) {
        if let Some(health) = self.0.take() {
            health.stop_waiting(Some(now));
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(health) = self.0.take() {
            health.stop_waiting(None);
        }
    }
}

/// Frees a half-open probe slot if the attempt that took it ends without recording an outcome.
pub struct ProbeGuard(pub Option<Arc<TargetHealth>>);

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if let Some(health) = self.0.take() {
            health.release_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_crds::v1alpha1::FailureClass;

    fn breaker() -> Breaker {
        Breaker {
            consecutive_failures: 3,
            cooldown_ms: 1_000,
            max_retry_after_ms: 5_000,
        }
    }

    fn health() -> Arc<TargetHealth> {
        TargetHealth::new(IntGauge::new("g", "g").unwrap())
    }

    fn err(class: FailureClass) -> AttemptError {
        AttemptError::new(class, "x")
    }

    const SILENCE: Duration = Duration::from_secs(30);

    #[test]
    fn a_target_that_answers_nothing_while_attempts_wait_is_skipped_until_it_answers() {
        let (h, t0) = (health(), Instant::now());
        let hung = h.waiting(SILENCE, t0);
        assert_eq!(h.peek(t0 + SILENCE / 2), Admission::Go { probe: false });
        assert!(
            matches!(h.peek(t0 + SILENCE), Admission::Blocked { .. }),
            "silent for its firstToken timeout"
        );

        let later = h.waiting(SILENCE, t0 + SILENCE);
        later.answered(t0 + SILENCE);
        assert_eq!(
            h.peek(t0 + SILENCE),
            Admission::Go { probe: false },
            "one answer ends the silence"
        );
        assert!(
            matches!(h.peek(t0 + SILENCE * 2), Admission::Blocked { .. }),
            "the hung attempt still waits, unanswered since that answer"
        );
        drop(hung);
        assert_eq!(h.peek(t0 + SILENCE * 3), Admission::Go { probe: false });
    }

    #[test]
    fn a_slow_target_that_keeps_answering_overlapping_attempts_is_not_silent() {
        let (h, t0) = (health(), Instant::now());
        let step = SILENCE / 2;
        let mut previous = h.waiting(SILENCE, t0);
        for i in 1..10 {
            let now = t0 + step * i;
            let next = h.waiting(SILENCE, now);
            previous.answered(now);
            assert_eq!(h.peek(now + step / 2), Admission::Go { probe: false });
            previous = next;
        }
    }

    #[test]
    fn attempts_that_end_unanswered_leave_no_silence_behind() {
        let (h, t0) = (health(), Instant::now());
        drop(h.waiting(SILENCE, t0));
        assert_eq!(h.peek(t0 + SILENCE * 2), Admission::Go { probe: false });
    }

    #[test]
    fn a_latency_sample_alone_does_not_forgive_failures() {
        // A committed stream feeds the average; only its clean end may reset the count.
        let (h, t0) = (health(), Instant::now());
        for _ in 0..2 {
            h.record_failure(&err(FailureClass::ServerError), &breaker(), t0);
            h.record_latency(Duration::from_millis(5), t0);
        }
        assert!(h.record_failure(&err(FailureClass::ServerError), &breaker(), t0));
        assert_eq!(h.latency().0, Some(5.0));
        h.record_recovery();
        assert_eq!(h.peek(t0), Admission::Go { probe: false });
    }

    #[test]
    fn opens_after_consecutive_failures_then_probes_once() {
        let (h, t0) = (health(), Instant::now());
        assert!(!h.record_failure(&err(FailureClass::ServerError), &breaker(), t0));
        assert!(!h.record_failure(&err(FailureClass::Timeout), &breaker(), t0));
        assert_eq!(h.peek(t0), Admission::Go { probe: false });
        assert!(
            h.record_failure(&err(FailureClass::ConnectError), &breaker(), t0),
            "third failure opens"
        );
        assert_eq!(h.gauge.get(), 1);
        assert!(matches!(h.admit(t0), Admission::Blocked { .. }));

        let later = t0 + Duration::from_millis(1_001);
        assert_eq!(h.admit(later), Admission::Go { probe: true });
        assert!(
            matches!(h.admit(later), Admission::Blocked { .. }),
            "only one probe at a time"
        );
        h.record_success(Duration::from_millis(5), later);
        assert_eq!(h.admit(later), Admission::Go { probe: false });
        assert_eq!(h.gauge.get(), 0);
    }

    #[test]
    fn a_failed_probe_reopens_at_once() {
        let (h, t0) = (health(), Instant::now());
        for _ in 0..3 {
            h.record_failure(&err(FailureClass::ServerError), &breaker(), t0);
        }
        let later = t0 + Duration::from_secs(2);
        assert_eq!(h.admit(later), Admission::Go { probe: true });
        h.record_failure(&err(FailureClass::ServerError), &breaker(), later);
        assert!(
            matches!(h.admit(later), Admission::Blocked { until } if until == later + Duration::from_secs(1))
        );
    }

    #[test]
    fn a_cancelled_probe_frees_the_slot() {
        let (h, t0) = (health(), Instant::now());
        for _ in 0..3 {
            h.record_failure(&err(FailureClass::ServerError), &breaker(), t0);
        }
        let later = t0 + Duration::from_secs(2);
        assert_eq!(h.admit(later), Admission::Go { probe: true });
        drop(ProbeGuard(Some(h.clone())));
        assert_eq!(h.admit(later), Admission::Go { probe: true });
    }

    #[test]
    fn auth_errors_open_for_ten_cooldowns() {
        let (h, t0) = (health(), Instant::now());
        assert!(h.record_failure(&err(FailureClass::AuthError), &breaker(), t0));
        assert!(matches!(
            h.peek(t0 + Duration::from_secs(9)),
            Admission::Blocked { .. }
        ));
        assert_eq!(
            h.peek(t0 + Duration::from_secs(10)),
            Admission::Go { probe: true }
        );
    }

    #[test]
    fn retry_after_blocks_without_opening_and_is_capped() {
        let (h, t0) = (health(), Instant::now());
        let mut e = err(FailureClass::RateLimited);
        e.retry_after = Some(Duration::from_secs(3600));
        for _ in 0..5 {
            assert!(!h.record_failure(&e, &breaker(), t0));
        }
        assert!(!h.is_open());
        assert_eq!(
            h.peek(t0),
            Admission::Blocked {
                until: t0 + Duration::from_secs(5)
            },
            "capped at maxRetryAfter"
        );
        assert_eq!(
            h.peek(t0 + Duration::from_secs(5)),
            Admission::Go { probe: false }
        );

        let h = health();
        h.record_failure(&err(FailureClass::RateLimited), &breaker(), t0);
        assert_eq!(
            h.peek(t0),
            Admission::Blocked {
                until: t0 + Duration::from_secs(1)
            },
            "429 without hint: 1 s"
        );
    }

    #[test]
    fn context_and_content_errors_do_not_count() {
        let (h, t0) = (health(), Instant::now());
        for _ in 0..10 {
            h.record_failure(&err(FailureClass::ContextLengthExceeded), &breaker(), t0);
            h.record_failure(&err(FailureClass::ContentFiltered), &breaker(), t0);
            h.record_failure(&err(FailureClass::ClientError), &breaker(), t0);
        }
        assert_eq!(h.peek(t0), Admission::Go { probe: false });
    }

    #[test]
    fn successes_land_in_latency_buckets() {
        let (h, t0) = (health(), Instant::now());
        h.record_success(Duration::from_millis(50), t0);
        h.record_success(Duration::from_millis(51), t0);
        h.record_success(Duration::from_secs(3600), t0);
        let counts = h.latencies.snapshot();
        assert_eq!(counts.len(), LATENCY_BUCKETS_MS.len() + 1);
        assert_eq!(
            (counts[0], counts[1], counts[LATENCY_BUCKETS_MS.len()]),
            (1, 1, 1)
        );
        assert_eq!(counts.iter().sum::<u64>(), 3);
    }

    #[test]
    fn latency_is_an_ewma() {
        let (h, t0) = (health(), Instant::now());
        h.record_success(Duration::from_millis(100), t0);
        h.record_success(Duration::from_millis(200), t0);
        let (avg, _) = h.latency();
        assert!((avg.unwrap() - 130.0).abs() < 1e-6);
    }
}
