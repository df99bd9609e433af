//! Durations in the Gateway API format (`^([0-9]{1,5}(h|m|s|ms)){1,4}$`), e.g. `1m30s`, `250ms`.

use std::time::Duration;

/// The pattern the CRD schema enforces; [`parse`] accepts exactly the strings it matches.
pub const PATTERN: &str = "^([0-9]{1,5}(h|m|s|ms)){1,4}$";

/// Parses a Gateway API duration. Returns `None` for anything the pattern would reject.
pub fn parse(text: &str) -> Option<Duration> {
    let bytes = text.as_bytes();
    let (mut at, mut parts, mut total) = (0, 0, Duration::ZERO);
    while at < bytes.len() {
        let digits = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || digits > 5 {
            return None;
        }
        let value: u64 = text[at..at + digits].parse().ok()?;
        at += digits;
        let (unit, len) = match &bytes[at..] {
            [b'm', b's', ..] => (Duration::from_millis(1), 2),
            [b'h', ..] => (Duration::from_secs(3600), 1),
            [b'm', ..] => (Duration::from_secs(60), 1),
            [b's', ..] => (Duration::from_secs(1), 1),
            _ => return None,
        };
        at += len;
        parts += 1;
        total += unit * u32::try_from(value).ok()?;
    }
    (parts > 0 && parts <= 4).then_some(total)
}

/// Formats a duration the way the pattern accepts, for messages and defaults.
pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else {
        format!("{}s", ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_gateway_api_forms() {
        assert_eq!(parse("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("1m1s1ms"), Some(Duration::from_millis(61_001)));
        assert_eq!(parse("10m"), Some(Duration::from_secs(600)));
    }

    #[test]
    fn rejects_what_the_pattern_rejects() {
        for bad in [
            "",
            "s",
            "1",
            "1.5s",
            "-1s",
            "1d",
            "123456s",
            "1s1s1s1s1s",
            " 1s",
            "1S",
        ] {
            assert_eq!(parse(bad), None, "{bad:?} must be rejected");
        }
    }

    #[test]
    fn format_round_trips() {
        for d in [Duration::from_millis(1500), Duration::from_secs(30)] {
            assert_eq!(parse(&format(d)), Some(d));
        }
    }
}
