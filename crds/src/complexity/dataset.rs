//! Labelled prompts: CSV with the columns `prompt,strong_correct,weak_correct` and an optional
//! `subject` (the RouteLLM shape, and what a user exports from their own traffic), and the
//! deterministic train/held-out split.

use std::path::Path;

use super::features::{FNV_OFFSET, fnv1a};
use crate::{Error, Result};

/// One labelled prompt: did the strong and the weak model answer it correctly?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub prompt: String,
    pub strong: bool,
    pub weak: bool,
    /// The group the prompt belongs to (an MMLU subject, a tenant, a task), if the file says:
    /// the split keeps a subject on one side, so held-out figures are for unseen subjects.
    pub subject: Option<String>,
}

/// Reads a labelled CSV file.
pub fn read(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Parses a labelled CSV (a header row naming the three columns and optionally `subject`, in any
/// order; other columns are ignored). `path` only names the source in errors.
pub fn parse(text: &[u8], path: &Path) -> Result<Vec<Row>> {
    let bad = |message: String| Error::Dataset {
        path: path.to_owned(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new().from_reader(text);
    let headers = reader
        .headers()
        .map_err(|e| bad(format!("header: {e}")))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| {
                bad(format!(
                    "no {name:?} column (need prompt,strong_correct,weak_correct)"
                ))
            })
    };
    let (prompt, strong, weak) = (
        column("prompt")?,
        column("strong_correct")?,
        column("weak_correct")?,
    );
    let subject = headers.iter().position(|h| h.trim() == "subject");
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| bad(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let flag = |i: usize, name: &str| match record.get(i).map(str::trim) {
            Some("1" | "true" | "True" | "TRUE") => Ok(true),
            Some("0" | "false" | "False" | "FALSE") => Ok(false),
            other => Err(bad(format!(
                "line {line}: {name} is {other:?}; expected 1 or 0"
            ))),
        };
        rows.push(Row {
            prompt: record.get(prompt).unwrap_or_default().to_owned(),
            strong: flag(strong, "strong_correct")?,
            weak: flag(weak, "weak_correct")?,
            subject: subject
                .and_then(|i| record.get(i))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        });
    }
    Ok(rows)
}

/// Whether a row belongs to the held-out split: one key in five by FNV-1a (64 bit) of its UTF-8
/// bytes, the key being the row's subject if it has one (a whole subject is held out or not, as
/// issue 12 asks of MMLU), else its prompt (GSM8K). The split depends on the row alone, never on
/// row order.
pub fn is_held_out(row: &Row) -> bool {
    group_hash(row).is_multiple_of(5)
}

/// FNV-1a (64 bit) of the row's split key: its subject if it has one, else its prompt. The
/// held-out split takes hashes ≡ 0 mod 5; cross-validation inside the train split takes fold
/// `(hash / 5) mod k`, so its folds keep subjects whole too.
pub fn group_hash(row: &Row) -> u64 {
    let key = row.subject.as_deref().unwrap_or(&row.prompt);
    fnv1a(FNV_OFFSET, key.as_bytes())
}

/// Splits rows into (train, held out) by [`is_held_out`].
pub fn split(rows: Vec<Row>) -> (Vec<Row>, Vec<Row>) {
    let (held, train) = rows.into_iter().partition(is_held_out);
    (train, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_with_quoted_multiline_prompts_parses() {
        let text = b"prompt,strong_correct,weak_correct\n\"a\nb, c\",1,0\nd,0,1\n";
        let rows = parse(text, Path::new("x.csv")).unwrap();
        assert_eq!(
            rows,
            vec![
                Row {
                    prompt: "a\nb, c".into(),
                    strong: true,
                    weak: false,
                    subject: None,
                },
                Row {
                    prompt: "d".into(),
                    strong: false,
                    weak: true,
                    subject: None,
                },
            ]
        );
    }

    #[test]
    fn a_bad_label_or_missing_column_names_what_is_wrong() {
        let e = parse(
            b"prompt,strong_correct,weak_correct\nq,2,0\n",
            Path::new("x.csv"),
        );
        let text = e.unwrap_err().to_string();
        assert!(
            text.contains("x.csv") && text.contains("strong_correct"),
            "{text}"
        );
        let e = parse(b"prompt,strong\nq,1\n", Path::new("x.csv")).unwrap_err();
        assert!(e.to_string().contains("strong_correct"), "{e}");
    }

    #[test]
    fn the_split_holds_out_about_a_fifth_and_depends_on_the_prompt_only() {
        let rows: Vec<Row> = (0..1000)
            .map(|i| Row {
                prompt: format!("prompt {i}"),
                strong: true,
                weak: false,
                subject: None,
            })
            .collect();
        let (train, held) = split(rows.clone());
        assert!((150..250).contains(&held.len()), "{}", held.len());
        assert_eq!(train.len() + held.len(), 1000);
        let (_, held_reversed) = split(rows.into_iter().rev().collect());
        assert_eq!(held_reversed.len(), held.len());
        assert!(held.iter().all(is_held_out));
    }

    #[test]
    fn rows_with_a_subject_are_split_by_subject() {
        let text = b"subject,prompt,weak_correct,strong_correct\n\
            algebra,q1,0,1\nalgebra,q2,1,1\n , q3,0,0\n";
        let rows = parse(text, Path::new("x.csv")).unwrap();
        assert_eq!(rows[0].subject.as_deref(), Some("algebra"));
        assert_eq!(rows[2].subject, None, "a blank subject is none");
        // Many prompts of one subject land on one side, whichever their own hashes say.
        let subject = |s: &str| {
            (0..100)
                .map(|i| Row {
                    prompt: format!("prompt {i}"),
                    strong: true,
                    weak: false,
                    subject: Some(s.into()),
                })
                .collect::<Vec<Row>>()
        };
        let sides: Vec<(usize, usize)> = ["algebra", "anatomy", "law", "virology", "logic"]
            .iter()
            .map(|s| {
                let (train, held) = split(subject(s));
                (train.len(), held.len())
            })
            .collect();
        assert!(sides.iter().all(|&(t, h)| t == 0 || h == 0), "{sides:?}");
        let held: Vec<bool> = ["electrical_engineering", "formal_logic", "anatomy"]
            .iter()
            .map(|s| is_held_out(&subject(s)[0]))
            .collect();
        assert_eq!(held, [true, true, false]);
    }
}
