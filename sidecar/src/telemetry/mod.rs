//! What the sidecar shows about itself: logging (JSON lines through `tracing`, filtered by
//! `RUST_LOG`, default `info`), the Prometheus [`metrics`] (docs/reference/metrics.md) and, when
//! configured, OpenTelemetry export ([`otel`], docs/reference/observability.md).

pub mod json;
pub mod metrics;
pub mod otel;

use std::io::{self, BufWriter, Stderr, Write};
use std::time::Duration;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Log lines queued for the writer thread. When it is full, the thread that logs waits: no line
/// is dropped (`lossy(false)`), so a stalled stderr slows requests down rather than losing their
/// log lines. 4,096 lines (about 2 MiB at most) ride out a stall of a tenth of a second at 30k
/// requests/s; the queue's slots are allocated up front, so a larger one costs idle memory.
const LOG_QUEUE_LINES: usize = 4096;

/// Bytes of log lines the writer thread gathers before a write: it writes when its queue is
/// empty or this is full, so a busy sidecar pays one `write` for many lines.
const LOG_WRITE_BUFFER: usize = 64 * 1024;

/// How long the writer thread pauses after each write. Lines logged meanwhile wait in the queue
/// and go out together in the next write; and a thread that logs wakes the writer only when it
/// found nothing to do and went to sleep. Without the pause a busy sidecar woke the writer for
/// nearly every line (a futex call on the request's thread, the writer's spin and `write`
/// each time). A line reaches stderr at most this much later.
const LOG_WRITE_PAUSE: Duration = Duration::from_millis(2);

/// Keeps the log writer thread running; dropping it writes every queued line and stops the
/// thread. Hold it until the end of `main`.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] WorkerGuard); // held for its Drop

/// Installs the global subscriber. `filter` is the `RUST_LOG` value, if set; `json` picks JSON
/// lines (services) or compact text (the demo, a person at a terminal).
///
/// Lines are formatted on the thread that logs and written to stderr by a writer thread, so a
/// request never waits for a `write` system call (one per line cost about 20 µs per request
/// before: bench/RESULTS.md, issue 15).
pub fn init(filter: Option<&str>, default: &str, json: bool) -> LogGuard {
    let filter = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let (writer, guard) = non_blocking_stderr();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    // Another subscriber (a test harness) may already be installed; keeping it is fine.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .event_format(json::JsonLines::new())
            .try_init()
    } else {
        builder.compact().try_init()
    };
    LogGuard(guard)
}

/// A writer that queues whole lines for a thread writing them to stderr, buffered and paced.
fn non_blocking_stderr() -> (tracing_appender::non_blocking::NonBlocking, WorkerGuard) {
    let stderr: BufWriter<Stderr> = BufWriter::with_capacity(LOG_WRITE_BUFFER, std::io::stderr());
    NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("switchyard-log")
        .finish(Paced(stderr))
}

/// The writer thread's output: `flush` ends each batch of lines (tracing-appender's worker
/// writes what the queue holds, then flushes), so the pause goes there, after the write.
struct Paced<W>(W);

impl<W: Write> Write for Paced<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        let written = self.0.flush();
        std::thread::sleep(LOG_WRITE_PAUSE);
        written
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    /// Records when its bytes were flushed.
    #[derive(Default)]
    struct Recorder {
        pending: Vec<u8>,
        flushed: Vec<(Instant, Vec<u8>)>,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.pending.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            let bytes = std::mem::take(&mut self.pending);
            self.flushed.push((Instant::now(), bytes));
            Ok(())
        }
    }

    #[test]
    fn a_batch_is_written_at_once_then_the_writer_pauses() {
        let mut paced = Paced(Recorder::default());
        paced.write_all(b"one\n").unwrap();
        paced.write_all(b"two\n").unwrap();
        paced.flush().unwrap();
        let returned = Instant::now();
        let [(written, bytes)] = &paced.0.flushed[..] else {
            panic!("one flush, got {}", paced.0.flushed.len());
        };
        assert_eq!(bytes, b"one\ntwo\n");
        assert!(
            returned - *written >= LOG_WRITE_PAUSE,
            "the bytes go out first, then the writer pauses"
        );
    }
}
