//! The JSON log format, with a direct writer for the per-request line.
//!
//! Every request logs one event with target [`REQUEST_TARGET`] (proxy/ctx.rs). tracing-subscriber's
//! JSON format serializes each field through serde, writing each piece through an `io::Write` to
//! `fmt::Write` adaptor that re-checks it as UTF-8: about 27,000 instructions for that one line,
//! 14 % of a whole proxied request (bench/callgrind.sh, issue 15). [`JsonLines`] writes the request
//! line itself, byte for byte as the stock format would (a test holds them equal), and leaves every
//! other event, and any event inside a span, to the stock format.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent};
use tracing_subscriber::registry::LookupSpan;

/// The target of the per-request log line.
pub const REQUEST_TARGET: &str = "switchyard::request";

/// JSON lines: `{"timestamp":…,"level":…,<the event's fields>,"target":…}`, as tracing-subscriber's
/// flattened JSON format writes them.
pub struct JsonLines<T = SystemTime> {
    stock: Format<Json, T>,
    timer: T,
}

impl JsonLines {
    /// The sidecar's format: flattened events, no current span, wall-clock timestamps.
    pub fn new() -> Self {
        Self::with_timer(SystemTime)
    }
}

impl Default for JsonLines {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: FormatTime + Clone> JsonLines<T> {
    /// The format with `timer` for timestamps (tests use a fixed one).
    pub fn with_timer(timer: T) -> Self {
        let stock = tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_timer(timer.clone());
        Self { stock, timer }
    }
}

impl<S, T> FormatEvent<S, JsonFields> for JsonLines<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        // Inside a span the stock format adds the span list: not the request line's case, but
        // then the stock format writes it.
        let in_span = event.parent().is_some() || ctx.lookup_current().is_some();
        if meta.target() != REQUEST_TARGET || in_span {
            return self.stock.format_event(ctx, writer, event);
        }
        writer.write_str("{\"timestamp\":\"")?;
        // The timer's text is plain ASCII digits and punctuation: nothing to escape.
        self.timer.format_time(&mut writer)?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;
        let mut fields = Fields {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_str_escaped(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`, as serde_json would write it.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        self.out.write_char(',')?;
        write_str_escaped(self.out, field.name())?;
        self.out.write_char(':')
    }

    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.out));
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| write_str_escaped(out, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's float text (shortest round-trip), and `null` for NaN and infinities.
        self.entry(field, |out| match serde_json::Number::from_f64(value) {
            Some(number) => write!(out, "{number}"),
            None => out.write_str("null"),
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Display (`%`) fields and the message arrive here; as a JSON string, escaped on the fly.
        self.entry(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// `s` as a JSON string.
fn write_str_escaped(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(s)?;
    out.write_char('"')
}

/// Escapes what passes through it as serde_json does inside a string: `"`, `\`, and control
/// characters (`\b \t \n \f \r` short, the rest `\u00XX` in lower-case hex); nothing else.
struct Escaped<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let short = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                0x08 => "\\b",
                b'\t' => "\\t",
                b'\n' => "\\n",
                0x0c => "\\f",
                b'\r' => "\\r",
                0x00..=0x1f => "",
                _ => continue,
            };
            // Every byte matched above is ASCII, so `i` is a character boundary.
            self.0.write_str(&s[start..i])?;
            if short.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let (hi, lo) = (HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]);
                self.0.write_str("\\u00")?;
                self.0.write_char(char::from(hi))?;
                self.0.write_char(char::from(lo))?;
            } else {
                self.0.write_str(short)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

#[cfg(test)]
mod tests;
