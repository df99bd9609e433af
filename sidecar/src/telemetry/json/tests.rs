use std::io;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

use super::*;

/// A fixed instant, so that both formats print the same timestamp.
#[derive(Clone)]
struct Fixed;

impl FormatTime for Fixed {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        w.write_str("2026-12-07T01:02:03.456789Z")
    }
}

/// Collects what a subscriber writes.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

/// What `emit` logs through the stock JSON format and through [`JsonLines`].
fn both(emit: impl Fn()) -> (String, String) {
    let builder = || {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_timer(Fixed)
    };
    let stock = Buffer::default();
    let subscriber = builder().with_writer(stock.clone()).finish();
    tracing::subscriber::with_default(subscriber, &emit);
    let ours = Buffer::default();
    let subscriber = builder()
        .with_writer(ours.clone())
        .event_format(JsonLines::with_timer(Fixed))
        .finish();
    tracing::subscriber::with_default(subscriber, &emit);
    (stock.text(), ours.text())
}

/// Every kind of field the request line has, with text that needs escaping.
fn request_line(model: &str, rule: Option<&str>, detail: Option<&str>, cost: f64) {
    tracing::info!(
        target: "switchyard::request",
        route = "chat",
        rule,
        model = %model,
        provider = "pool/lean",
        attempts = 2u32,
        status = 200u16,
        outcome = "Success",
        stream = false,
        input_tokens = 9u64,
        offset = -3i64,
        cost_usd = cost,
        usage_estimated = Some(true),
        detail,
        "request"
    );
}

#[test]
fn the_request_line_is_the_stock_formats_byte_for_byte() {
    let nasty = "quote \" backslash \\ newline \n tab \t cr \r bell \u{7} nul \u{0} esc \u{1b} del \u{7f} é 日本 🚀 \u{8} \u{c}";
    let cases: [(&str, Option<&str>, Option<&str>, f64); 5] = [
        ("chat", None, None, 0.0),
        ("chat", Some("long-prompts"), Some("cache hit"), 0.000_019),
        (nasty, Some(nasty), Some(nasty), 1e-9),
        ("", None, Some(""), 12345.678),
        ("x", None, None, f64::NAN),
    ];
    for (model, rule, detail, cost) in cases {
        let (stock, ours) = both(|| request_line(model, rule, detail, cost));
        assert!(
            stock.ends_with('\n') && stock.matches('\n').count() == 1,
            "{stock}"
        );
        assert_eq!(ours, stock);
    }
}

#[test]
fn the_request_line_is_json_with_every_field() {
    let (_, ours) = both(|| request_line("a\"b", Some("r"), None, 0.5));
    let line: serde_json::Value = serde_json::from_str(&ours).expect("one JSON object");
    assert_eq!(line["message"], "request");
    assert_eq!(line["model"], "a\"b");
    assert_eq!(line["rule"], "r");
    assert_eq!(line["attempts"], 2);
    assert_eq!(line["offset"], -3);
    assert_eq!(line["cost_usd"], 0.5);
    assert_eq!(line["stream"], false);
    assert_eq!(line["usage_estimated"], true);
    assert_eq!(line["target"], REQUEST_TARGET);
    assert_eq!(line["level"], "INFO");
    assert!(line.get("detail").is_none(), "None fields are left out");
}

#[test]
fn other_events_and_events_in_spans_keep_the_stock_format() {
    let (stock, ours) = both(|| {
        tracing::warn!(error = "disk \"full\"", code = 7u64, "cannot persist");
        let span = tracing::info_span!("reload", version = "v1");
        let _entered = span.enter();
        request_line("chat", None, None, 0.25);
    });
    assert_eq!(stock.lines().count(), 2, "{stock}");
    assert!(
        stock.contains("\"spans\""),
        "the stock format lists spans: {stock}"
    );
    assert_eq!(ours, stock);
}
