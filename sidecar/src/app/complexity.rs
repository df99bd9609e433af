//! `switchyard-sidecar complexity eval|train|calibrate`: the imperative shell (files in, text
//! out) around `switchyard_crds::complexity`'s pure cores.

use std::io::Write;
use std::path::Path;

use switchyard_crds::complexity::dataset::{self, Row};
use switchyard_crds::complexity::{Heuristic, Model, Scorer, eval, train};

use super::args::{ComplexityCommand, ScorerKind};

/// Runs one `complexity` command, writing its report to `out`; the error is a one-line message.
pub fn run(command: &ComplexityCommand, out: &mut dyn Write) -> Result<(), String> {
    match command {
        ComplexityCommand::Eval {
            data,
            held_out,
            scorer,
            model,
        } => {
            let model = model.as_deref().map(load_model).transpose()?;
            for path in data {
                let mut rows = read(path)?;
                if *held_out {
                    rows = dataset::split(rows).1;
                }
                let scores = match (scorer, &model) {
                    (ScorerKind::Length, _) => eval::length_scores(&rows),
                    (ScorerKind::Model, Some(model)) => eval::scores(model, &rows),
                    (ScorerKind::Model, None) => return Err("--scorer model needs --model".into()),
                    (ScorerKind::Heuristic, _) => eval::scores(&Heuristic, &rows),
                };
                let report = eval::evaluate(&scores, &rows);
                line(out, format!("{}  {scorer:?}  {report}", path.display()))?;
            }
            Ok(())
        }
        ComplexityCommand::Train {
            data,
            train_split,
            out: target,
            seed,
        } => {
            let mut rows = Vec::new();
            for path in data {
                let read = read(path)?;
                rows.extend(if *train_split {
                    dataset::split(read).0
                } else {
                    read
                });
            }
            let options = train::Options {
                seed: *seed,
                ..train::Options::default()
            };
            let mut file = train::train(&rows, &options);
            let text = file.to_json();
            // Refuse to write what `load` would refuse, e.g. over the size cap.
            Model::load(text.as_bytes()).map_err(|e| e.to_string())?;
            std::fs::write(target, &text)
                .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
            line(
                out,
                format!(
                    "trained on {} prompts: {} ({} bytes, {})",
                    rows.len(),
                    target.display(),
                    text.len(),
                    file.checksum
                ),
            )
        }
        ComplexityCommand::Calibrate {
            model,
            data,
            strong_share,
        } => {
            if !(0.0..=1.0).contains(strong_share) {
                return Err(format!("--strong-share {strong_share} is outside 0–1"));
            }
            let scorer: Box<dyn Scorer> = match model {
                Some(path) => Box::new(load_model(path)?),
                None => Box::new(Heuristic),
            };
            let mut scores = Vec::new();
            for path in data {
                scores.extend(read(path)?.iter().map(|r| scorer.score(&r.prompt)));
            }
            let (threshold, share) = eval::calibrate(&scores, *strong_share);
            line(
                out,
                format!(
                    "minComplexity: {threshold}  (sends {:.1}% of {} prompts to the strong targets)",
                    share * 100.0,
                    scores.len()
                ),
            )
        }
    }
}

fn read(path: &Path) -> Result<Vec<Row>, String> {
    let rows = dataset::read(path).map_err(|e| e.to_string())?;
    if rows.is_empty() {
        return Err(format!("{}: no labelled prompts", path.display()));
    }
    Ok(rows)
}

fn load_model(path: &Path) -> Result<Model, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Model::load(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn line(out: &mut dyn Write, text: String) -> Result<(), String> {
    writeln!(out, "{text}").map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn csv(dir: &Path) -> PathBuf {
        let path = dir.join("labels.csv");
        let mut text = String::from("prompt,strong_correct,weak_correct\n");
        for i in 0..40 {
            let (prompt, s, w) = if i % 2 == 0 {
                (
                    format!("\"prove theorem {i} step by step, then derive the bound\""),
                    1,
                    0,
                )
            } else {
                (format!("hello {i}"), 1, 1)
            };
            text += &format!("{prompt},{s},{w}\n");
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run_text(command: ComplexityCommand) -> Result<String, String> {
        let mut out = Vec::new();
        run(&command, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn train_then_eval_then_calibrate_work_on_a_labelled_csv() {
        let dir = std::env::temp_dir().join(format!("complexity-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = csv(&dir);
        let model = dir.join("model.json");
        let trained = run_text(ComplexityCommand::Train {
            data: vec![data.clone()],
            train_split: false,
            out: model.clone(),
            seed: 1,
        })
        .unwrap();
        assert!(
            trained.contains("trained on 40 prompts") && trained.contains("sha256:"),
            "{trained}"
        );
        let report = run_text(ComplexityCommand::Eval {
            data: vec![data.clone()],
            held_out: false,
            scorer: ScorerKind::Model,
            model: Some(model.clone()),
        })
        .unwrap();
        assert!(
            report.contains("APGR") && report.contains("CPT(80%)"),
            "{report}"
        );
        let threshold = run_text(ComplexityCommand::Calibrate {
            model: Some(model),
            data: vec![data],
            strong_share: 0.5,
        })
        .unwrap();
        assert!(threshold.starts_with("minComplexity: "), "{threshold}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_or_a_bad_share_is_a_one_line_error() {
        let e = run_text(ComplexityCommand::Calibrate {
            model: None,
            data: vec!["/nonexistent.csv".into()],
            strong_share: 0.3,
        })
        .unwrap_err();
        assert!(e.contains("/nonexistent.csv"), "{e}");
        let e = run_text(ComplexityCommand::Calibrate {
            model: None,
            data: vec!["/nonexistent.csv".into()],
            strong_share: 1.5,
        })
        .unwrap_err();
        assert!(e.contains("--strong-share"), "{e}");
    }
}
