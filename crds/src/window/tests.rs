use std::time::Duration;

use super::*;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The window of `period` (as written in a Budget) holding the instant `t`, as two RFC 3339 texts.
fn window(period: &str, t: &str) -> (String, String) {
    let period = Period::parse(period).expect("a valid period");
    let w = period.window(at(t)).expect("a window in range");
    assert!(w.contains(at(t)), "{t} must fall in its own window");
    (w.start.to_string(), w.end.to_string())
}

fn pair(start: &str, end: &str) -> (String, String) {
    (start.to_string(), end.to_string())
}

#[test]
fn periods_are_calendar_names_or_durations_of_at_least_a_second() {
    assert_eq!(Period::parse("Day"), Some(Period::Day));
    assert_eq!(Period::parse("Week"), Some(Period::Week));
    assert_eq!(Period::parse("Month"), Some(Period::Month));
    assert_eq!(
        Period::parse("1m"),
        Some(Period::Fixed(Duration::from_secs(60)))
    );
    assert_eq!(
        Period::parse("1h30m"),
        Some(Period::Fixed(Duration::from_secs(5400)))
    );
    assert_eq!(
        Period::parse("1500ms"),
        Some(Period::Fixed(Duration::from_millis(1500)))
    );
    for bad in [
        "",
        "day",
        "MONTH",
        "Year",
        "Fortnight",
        "0s",
        "999ms",
        "1d",
        "-1m",
        "1.5h",
        " 1m",
    ] {
        assert_eq!(Period::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn periods_are_written_back_in_a_form_that_parses_to_the_same_period() {
    for text in ["Day", "Week", "Month", "1m", "90s", "7h", "1500ms"] {
        let period = Period::parse(text).unwrap();
        assert_eq!(Period::parse(&period.to_string()), Some(period), "{text}");
    }
}

#[test]
fn a_day_runs_from_midnight_to_midnight_utc() {
    assert_eq!(
        window("Day", "2026-12-06T19:41:37.25Z"),
        pair("2026-12-06T00:00:00Z", "2026-12-07T00:00:00Z")
    );
}

#[test]
fn months_end_after_their_last_day_whatever_its_number() {
    assert_eq!(
        window("Month", "2026-01-31T23:59:59.999999999Z"),
        pair("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
    );
    assert_eq!(
        window("Month", "2026-04-15T12:00:00Z"),
        pair("2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z")
    );
    assert_eq!(
        window("Month", "2026-02-28T12:00:00Z"),
        pair("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")
    );
}

#[test]
fn february_has_a_29th_day_in_leap_years_only() {
    let february = |year: i32| {
        let t = format!("{year}-02-10T00:00:00Z");
        Period::Month.window(at(&t)).unwrap().length().as_secs() / 86_400
    };
    assert_eq!(february(2024), 29);
    assert_eq!(february(2000), 29, "divisible by 400");
    assert_eq!(february(1900), 28, "divisible by 100");
    assert_eq!(february(2100), 28, "divisible by 100");
    assert_eq!(february(2026), 28);
    assert_eq!(
        window("Month", "2028-02-29T08:00:00Z"),
        pair("2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z")
    );
}

#[test]
fn december_ends_at_the_next_new_year() {
    assert_eq!(
        window("Month", "2026-12-31T23:59:59Z"),
        pair("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z")
    );
    assert_eq!(
        window("Day", "2026-12-31T23:59:59Z"),
        pair("2026-12-31T00:00:00Z", "2027-01-01T00:00:00Z")
    );
}

#[test]
fn a_week_starts_on_monday_even_when_that_is_in_the_previous_year() {
    // 2027-01-01 is a Friday; its ISO week began on Monday 2026-12-28.
    assert_eq!(
        window("Week", "2027-01-01T10:00:00Z"),
        pair("2026-12-28T00:00:00Z", "2027-01-04T00:00:00Z")
    );
    // 2026-12-06 is a Sunday: the last day of the week that began on Monday the 1st.
    assert_eq!(
        window("Week", "2026-12-06T23:00:00Z"),
        pair("2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z")
    );
    assert_eq!(
        window("Week", "2026-12-07T00:00:00Z"),
        pair("2026-12-07T00:00:00Z", "2026-12-14T00:00:00Z")
    );
}

#[test]
fn fixed_windows_are_aligned_to_the_unix_epoch() {
    assert_eq!(
        window("1m", "2026-12-06T19:41:37.5Z"),
        pair("2026-12-06T19:41:00Z", "2026-12-06T19:42:00Z")
    );
    // 90 s windows start at 0, 90, 180 ... seconds after the epoch.
    assert_eq!(
        window("90s", "1970-01-01T00:02:00Z"),
        pair("1970-01-01T00:01:30Z", "1970-01-01T00:03:00Z")
    );
    // 7 h does not divide a day: windows drift across midnights (86,400 s = 3 × 25,200 s + 10,800 s).
    assert_eq!(
        window("7h", "1970-01-02T00:00:00Z"),
        pair("1970-01-01T21:00:00Z", "1970-01-02T04:00:00Z")
    );
    let seven_hours = Period::parse("7h").unwrap();
    let w = seven_hours.window(at("2026-12-06T19:41:37Z")).unwrap();
    assert_eq!(w.start.as_second() % 25_200, 0);
    assert_eq!(w.length(), Duration::from_secs(25_200));
}

#[test]
fn instants_before_1970_fall_in_windows_aligned_to_the_epoch_too() {
    assert_eq!(
        window("1m", "1969-12-31T23:59:59Z"),
        pair("1969-12-31T23:59:00Z", "1970-01-01T00:00:00Z")
    );
    assert_eq!(
        window("Month", "1969-12-31T23:59:59Z"),
        pair("1969-12-01T00:00:00Z", "1970-01-01T00:00:00Z")
    );
}

#[test]
fn an_instant_exactly_on_a_boundary_belongs_to_the_new_window() {
    assert_eq!(
        window("Month", "2027-01-01T00:00:00Z"),
        pair("2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z")
    );
    assert_eq!(
        window("Day", "2026-12-07T00:00:00Z"),
        pair("2026-12-07T00:00:00Z", "2026-12-08T00:00:00Z")
    );
    assert_eq!(
        window("90s", "1970-01-01T00:03:00Z"),
        pair("1970-01-01T00:03:00Z", "1970-01-01T00:04:30Z")
    );
    let w = Period::Day.window(at("2026-12-07T00:00:00Z")).unwrap();
    assert!(!w.contains(w.end));
}

#[test]
fn the_wait_for_room_runs_to_the_start_of_the_next_window() {
    let t = at("2026-12-31T23:59:59.2Z");
    assert_eq!(
        Period::Month.until_next(t),
        Some(Duration::from_millis(800))
    );
    assert_eq!(
        Period::Day.until_next(at("2026-12-07T00:00:00Z")),
        Some(Duration::from_secs(86_400)),
        "on a boundary, the whole new window is ahead"
    );
    let w = Period::Day.window(t).unwrap();
    assert_eq!(w.until_end(w.end), Duration::ZERO);
    assert_eq!(
        w.until_end(at("2027-01-02T00:00:00Z")),
        Duration::ZERO,
        "past the end"
    );
}

#[test]
fn retry_after_rounds_up_to_a_whole_second_and_never_says_zero() {
    assert_eq!(retry_after_seconds(Duration::from_millis(800)), 1);
    assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
    assert_eq!(retry_after_seconds(Duration::from_secs(60)), 60);
    assert_eq!(retry_after_seconds(Duration::ZERO), 1);
}

#[test]
fn windows_past_the_year_9999_are_refused_rather_than_wrapped() {
    assert_eq!(Period::Month.window(Timestamp::MAX), None);
    assert_eq!(Period::Month.until_next(Timestamp::MAX), None);
    assert!(Period::Month.window(at("9999-11-30T00:00:00Z")).is_some());
}
