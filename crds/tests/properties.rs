//! Property tests for the parsers of user input and of the config wire format: whatever bytes
//! arrive, the manifest loader and the route-table decoder answer with a value or an error, never
//! a panic, and what they accept survives a round trip unchanged. And for budget windows: every
//! instant falls in exactly one window of each period, and windows follow one another without
//! gaps or overlaps.
//!
//! Each property runs a bounded number of cases by default (CI). `FUZZ_SECONDS=600 cargo test
//! -p switchyard-crds --test properties --release` keeps generating new cases for that long per
//! property (the long run whose figures `bench/RESULTS.md` records).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use switchyard_crds::compile::Audience;
use switchyard_crds::manifests::Manifests;
use switchyard_crds::table::RouteTable;
use switchyard_crds::window::{Period, Timestamp};

/// Cases per property in a bounded run.
const CASES: u32 = 256;

/// Runs `check` on values of `strategy`: `CASES` of them, or new batches until `FUZZ_SECONDS`
/// have passed. Returns how many cases ran, so a long run can report it.
fn fuzz<S: Strategy>(strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>) -> u64 {
    let budget = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let started = SystemTime::now();
    let mut ran = 0;
    loop {
        // A fresh seed per batch, so a long run keeps exploring.
        let mut runner = TestRunner::new(Config {
            cases: CASES,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(failure) = runner.run(&strategy, &check) {
            panic!("{failure}");
        }
        ran += u64::from(CASES);
        let elapsed = started.elapsed().unwrap_or_default();
        match budget {
            Some(budget) if elapsed < budget => continue,
            Some(_) => {
                eprintln!("{ran} cases in {elapsed:?}");
                return ran;
            }
            None => return ran,
        }
    }
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/demo")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The demo's three files as one multi-document text: a realistic starting point to mutate.
fn demo_text() -> String {
    ["secret.yaml", "pool.yaml", "routes.yaml"]
        .map(example)
        .join("\n---\n")
}

/// One edit a careless hand or a half-written file makes.
#[derive(Clone, Debug)]
enum Edit {
    /// Cut the text at a byte (a truncated write).
    Truncate(usize),
    /// Remove a line.
    DropLine(usize),
    /// Repeat a line (a duplicated key or list item).
    DuplicateLine(usize),
    /// Put a token where a line's value was.
    ReplaceValue(usize, String),
    /// Change a line's indentation.
    Indent(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let token = prop_oneof![
        Just(String::new()),
        Just("~".to_string()),
        Just("[]".to_string()),
        Just("{".to_string()),
        Just("-1".to_string()),
        Just("1e309".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("*alias".to_string()),
        Just("&anchor x".to_string()),
        Just("!!binary AAAA".to_string()),
        "[a-zA-Z0-9 :/.-]{0,40}",
    ];
    prop_oneof![
        any::<usize>().prop_map(Edit::Truncate),
        any::<usize>().prop_map(Edit::DropLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), token).prop_map(|(l, t)| Edit::ReplaceValue(l, t)),
        (any::<usize>(), 0usize..12).prop_map(|(l, n)| Edit::Indent(l, n)),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len();
    if n == 0 {
        return text.to_string(); // nothing left to edit by line
    }
    match edit {
        Edit::Truncate(at) => {
            // Byte-wise, possibly mid-line: what a reader sees while a writer is not done.
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            return text[..at].to_string();
        }
        Edit::DropLine(l) => {
            lines.remove(l % n);
        }
        Edit::DuplicateLine(l) => {
            let line = lines[l % n].clone();
            lines.insert(l % n, line);
        }
        Edit::ReplaceValue(l, token) => {
            let line = &mut lines[l % n];
            if let Some((key, _)) = line.split_once(": ") {
                *line = format!("{key}: {token}");
            } else {
                line.push_str(token);
            }
        }
        Edit::Indent(l, spaces) => {
            let line = &mut lines[l % n];
            *line = format!("{}{}", " ".repeat(*spaces), line.trim_start());
        }
    }
    lines.join("\n")
}

/// Loads `text` as one file and compiles it for the demo's namespace; a table on success.
fn load_and_compile(text: &str) -> Result<Option<RouteTable>, TestCaseError> {
    // Beside the demo's own files: route `smart` reads its complexity model relative to them.
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/demo/edited.yaml"
    ));
    let mut manifests = Manifests::default();
    if let Err(error) = manifests.add_str(&path, text) {
        let message = error.to_string();
        prop_assert!(
            message.contains("edited.yaml"),
            "a parse error must name its file: {message}"
        );
        return Ok(None);
    }
    let audience = Audience {
        namespace: manifests.default_namespace(),
        labels: Default::default(),
        workload: None,
    };
    Ok(manifests
        .compile(&audience, "properties")
        .ok()
        .map(|(t, _)| t))
}

/// A table must decode to itself, with the same content version.
fn round_trips(table: &RouteTable) -> Result<(), TestCaseError> {
    let bytes = serde_json::to_vec(table).expect("a table serializes");
    let back: RouteTable = serde_json::from_slice(&bytes).expect("a table decodes");
    prop_assert_eq!(back.content_hash(), table.content_hash());
    prop_assert_eq!(serde_json::to_vec(&back).expect("serializes"), bytes);
    Ok(())
}

#[test]
fn any_text_is_loaded_or_refused_naming_the_file() {
    fuzz(".{0,400}", |text: String| load_and_compile(&text).map(drop));
}

#[test]
fn edited_manifests_load_or_are_refused_and_what_loads_round_trips() {
    let demo = demo_text();
    assert!(
        load_and_compile(&demo).expect("the demo loads").is_some(),
        "the unedited demo compiles, or the property below tests nothing"
    );
    fuzz(prop::collection::vec(edit(), 1..4), |edits| {
        let text = edits.iter().fold(demo.clone(), |t, e| apply(&t, e));
        match load_and_compile(&text)? {
            Some(table) => round_trips(&table),
            None => Ok(()),
        }
    });
}

#[test]
fn the_wire_format_refuses_damaged_tables_or_decodes_them_stably() {
    let table = load_and_compile(&demo_text())
        .expect("the demo loads")
        .expect("the demo compiles");
    let wire = serde_json::to_vec(&table).expect("serializes");
    let damage = prop::collection::vec((any::<usize>(), any::<u8>()), 1..8);
    fuzz((damage, any::<usize>()), |(flips, cut)| {
        let mut bytes = wire.clone();
        for (at, byte) in flips {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        bytes.truncate(cut % (bytes.len() + 1) + bytes.len() / 2);
        if let Ok(decoded) = serde_json::from_slice::<RouteTable>(&bytes) {
            round_trips(&decoded)?;
        }
        Ok(())
    });
}

/// Any instant from the year 1 to 9900, to the nanosecond: far enough from the ends of what a
/// timestamp holds that the longest fixed window (4 × 99999h, about 45 years) still fits.
fn instant() -> impl Strategy<Value = Timestamp> {
    (-62_135_596_800i64..250_246_627_200, 0i32..1_000_000_000)
        .prop_map(|(second, nano)| Timestamp::new(second, nano).expect("in range"))
}

/// Calendar periods, and fixed ones from 1 s to the longest a Gateway API duration can write,
/// with round lengths (minutes, hours) as likely as odd ones.
fn period() -> impl Strategy<Value = Period> {
    let longest_ms = 4 * 99_999 * 3_600_000u64;
    prop_oneof![
        Just(Period::Day),
        Just(Period::Week),
        Just(Period::Month),
        (1u64..=99_999).prop_map(|m| Period::Fixed(Duration::from_secs(m * 60))),
        (1u64..=99_999).prop_map(|h| Period::Fixed(Duration::from_secs(h * 3600))),
        (1_000u64..=longest_ms).prop_map(|ms| Period::Fixed(Duration::from_millis(ms))),
    ]
}

#[test]
fn every_instant_falls_in_one_window_that_meets_its_neighbours() {
    fuzz((period(), instant()), |(period, t)| {
        let window = period.window(t).expect("in range");
        prop_assert!(window.start <= t && t < window.end, "{window:?} holds {t}");
        let next = period.window(window.end).expect("in range");
        prop_assert_eq!(
            next.start,
            window.end,
            "the next window starts at this one's end"
        );
        let before_start = window.start - Duration::from_nanos(1);
        let previous = period.window(before_start).expect("in range");
        prop_assert_eq!(
            previous.end,
            window.start,
            "the previous window ends at this one's start"
        );
        let wait = period.until_next(t).expect("in range");
        prop_assert!(!wait.is_zero() && wait <= window.length());
        prop_assert_eq!(t + wait, window.end);
        Ok(())
    });
}

#[test]
fn windows_have_the_length_of_their_period_and_start_where_it_aligns() {
    fuzz((period(), instant()), |(period, t)| {
        let window = period.window(t).expect("in range");
        let days = window.length().as_secs() / 86_400;
        match period {
            Period::Fixed(length) => {
                prop_assert_eq!(window.length(), length);
                prop_assert_eq!(window.start.as_nanosecond() % length.as_nanos() as i128, 0);
            }
            Period::Day => prop_assert_eq!(window.length(), Duration::from_secs(86_400)),
            Period::Week => {
                prop_assert_eq!(days, 7);
                prop_assert_eq!(
                    window.start.as_second().div_euclid(86_400).rem_euclid(7),
                    4,
                    "1970-01-01 was a Thursday, 4 days after a Monday"
                );
            }
            Period::Month => {
                prop_assert!((28..=31).contains(&days), "{days} days");
                let start = window.start.to_string();
                prop_assert_eq!(start.get(8..), Some("01T00:00:00Z"), "starts on the 1st");
            }
        }
        Ok(())
    });
}
