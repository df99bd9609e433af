//! Budget windows: which stretch of time a spend or request count belongs to.
//!
//! A budget limit counts within a window and starts from zero in the next. `Day`, `Week` (ISO,
//! from Monday) and `Month` are UTC calendar windows, so "500 dollars a month" means the calendar
//! month users see on their invoice, leap years included; a duration such as `1m` or `7h` is a
//! fixed window aligned to the Unix epoch, so every process that reads the same clock puts an
//! instant in the same window without talking to another. Windows are half-open `[start, end)`:
//! an instant exactly on a boundary belongs to the window that begins there.
//!
//! Everything here is pure arithmetic on instants the caller supplies; which clock decides is the
//! caller's business (docs/reference/crds.md, Budget).

use std::fmt;

use k8s_openapi::jiff::Span;
use k8s_openapi::jiff::civil::{Date, Time};
use k8s_openapi::jiff::tz::Offset;

/// An instant in UTC, re-exported so that callers name the same time type as the API's
/// `metav1.Time` without depending on its crate themselves.
pub use k8s_openapi::jiff::Timestamp;

/// The shortest fixed window. `Retry-After` is written in whole seconds, and the leases that
/// coordinate a fleet renew every few seconds; a shorter window could be neither announced to a
/// client nor shared among sidecars.
pub const MIN_FIXED: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a budget limit counts before it starts again from zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    /// A UTC calendar day, from 00:00.
    Day,
    /// An ISO week, from Monday 00:00 UTC.
    Week,
    /// A UTC calendar month, from the 1st at 00:00.
    Month,
    /// A fixed length, windows aligned to the Unix epoch (1970-01-01T00:00:00Z).
    Fixed(std::time::Duration),
}

/// The half-open stretch of time `[start, end)` a count belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// The first instant of the window.
    pub start: Timestamp,
    /// The first instant of the next window.
    pub end: Timestamp,
}

// === impl Period ===

impl Period {
    /// Reads `Day`, `Week`, `Month` or a Gateway API duration of at least [`MIN_FIXED`] (`1m`,
    /// `90s`, `7h`); `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "Day" => Some(Self::Day),
            "Week" => Some(Self::Week),
            "Month" => Some(Self::Month),
            _ => crate::duration::parse(text)
                .filter(|d| *d >= MIN_FIXED)
                .map(Self::Fixed),
        }
    }

    /// The window containing `t`. `None` only when that window reaches past the instants a
    /// [`Timestamp`] can hold (the years -9999 and 9999).
    pub fn window(self, t: Timestamp) -> Option<Window> {
        let date = Offset::UTC.to_datetime(t).date();
        let (first, length) = match self {
            Self::Fixed(length) => return fixed(t, length),
            Self::Day => (date, Span::new().days(1)),
            Self::Week => {
                let since_monday = date.weekday().to_monday_zero_offset();
                let monday = date.checked_sub(Span::new().days(since_monday)).ok()?;
                (monday, Span::new().weeks(1))
            }
            Self::Month => (date.first_of_month(), Span::new().months(1)),
        };
        let next = first.checked_add(length).ok()?;
        Some(Window {
            start: midnight(first)?,
            end: midnight(next)?,
        })
    }

    /// How long from `t` until a new window begins: what a refused client should wait.
    pub fn until_next(self, t: Timestamp) -> Option<std::time::Duration> {
        Some(self.window(t)?.until_end(t))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Day => f.write_str("Day"),
            Self::Week => f.write_str("Week"),
            Self::Month => f.write_str("Month"),
            Self::Fixed(length) => f.write_str(&crate::duration::format(*length)),
        }
    }
}

/// 00:00 UTC of `date`.
fn midnight(date: Date) -> Option<Timestamp> {
    Offset::UTC
        .to_timestamp(date.to_datetime(Time::midnight()))
        .ok()
}

/// The epoch-aligned window of `length` holding `t`. Euclidean division, so instants before
/// 1970 fall in windows that still start on a multiple of `length`.
fn fixed(t: Timestamp, length: std::time::Duration) -> Option<Window> {
    let length = i128::try_from(length.as_nanos()).ok().filter(|n| *n > 0)?;
    let start = t.as_nanosecond().div_euclid(length) * length;
    Some(Window {
        start: Timestamp::from_nanosecond(start).ok()?,
        end: Timestamp::from_nanosecond(start + length).ok()?,
    })
}

// === impl Window ===

impl Window {
    /// Whether `t` falls in the window.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }

    /// How long the window lasts.
    pub fn length(&self) -> std::time::Duration {
        self.end.duration_since(self.start).unsigned_abs()
    }

    /// How long from `t` until the window ends; zero once it has.
    pub fn until_end(&self, t: Timestamp) -> std::time::Duration {
        let left = self.end.duration_since(t);
        if left.is_negative() {
            std::time::Duration::ZERO
        } else {
            left.unsigned_abs()
        }
    }
}

/// `Retry-After` in whole seconds for a wait of `wait`: rounded up, so a client that obeys never
/// comes back before the new window, and at least 1 (a `0` invites an immediate retry).
pub fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests;
