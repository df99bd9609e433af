//! How a scorer is judged on labelled prompts, with RouteLLM's definitions
//! (docs/reference/complexity.md, "Evaluation"): APGR, CPT(50 %), CPT(80 %), and the
//! `minComplexity` threshold that sends a given share to the strong side.

use super::dataset::Row;
use super::{MAX_SCORE, Scorer};

/// Points on the routing curve: thresholds at the 0, 10 %, …, 100 % quantiles of the scores.
const BINS: usize = 10;

/// A scorer's routing quality on a sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub prompts: usize,
    /// Accuracy of the strong and of the weak model alone.
    pub strong_accuracy: f64,
    pub weak_accuracy: f64,
    /// Area under the performance-gap-recovered curve: random routing ≈ 0.5.
    pub apgr: f64,
    /// Share of strong calls (0–1) needed to recover 50 % and 80 % of the gap; lower is better.
    pub cpt50: f64,
    pub cpt80: f64,
    /// (share of strong calls, accuracy), sorted by share.
    pub curve: Vec<(f64, f64)>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "prompts {}  strong {:.3}  weak {:.3}  APGR {:.3}  CPT(50%) {:.1}%  CPT(80%) {:.1}%",
            self.prompts,
            self.strong_accuracy,
            self.weak_accuracy,
            self.apgr,
            self.cpt50 * 100.0,
            self.cpt80 * 100.0
        )
    }
}

/// Linear-interpolated quantile of sorted values (numpy's default, which pandas' `qcut` uses).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (position - lo as f64)
}

/// Judges `scores` (one per row; higher means "send to the strong model").
///
/// As RouteLLM does: thresholds are the 11 quantile edges of the scores; at each, prompts scoring
/// at least the threshold (above it, for the last) go to the strong model. The points, sorted by
/// share of strong calls, give the accuracy curve; APGR is its trapezoid area between the weak
/// and the strong accuracy lines, as a fraction of the area between them; CPT(p) is the share of
/// strong calls where the curve first reaches `weak + p · (strong − weak)`.
pub fn evaluate(scores: &[f64], rows: &[Row]) -> Report {
    assert_eq!(scores.len(), rows.len(), "one score per row");
    assert!(!rows.is_empty(), "an empty sample has no curve");
    let n = rows.len() as f64;
    let strong_accuracy = rows.iter().filter(|r| r.strong).count() as f64 / n;
    let weak_accuracy = rows.iter().filter(|r| r.weak).count() as f64 / n;
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut curve: Vec<(f64, f64)> = (0..=BINS)
        .map(|i| {
            let threshold = quantile(&sorted, i as f64 / BINS as f64);
            let (mut strong_calls, mut correct) = (0usize, 0usize);
            for (&s, row) in scores.iter().zip(rows) {
                let to_strong = if i < BINS {
                    s >= threshold
                } else {
                    s > threshold
                };
                strong_calls += usize::from(to_strong);
                correct += usize::from(if to_strong { row.strong } else { row.weak });
            }
            (strong_calls as f64 / n, correct as f64 / n)
        })
        .collect();
    curve.sort_by(|a, b| a.0.total_cmp(&b.0));
    let area: f64 = curve
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum();
    let span = curve[curve.len() - 1].0 - curve[0].0;
    let gap = strong_accuracy - weak_accuracy;
    let apgr = (area - weak_accuracy * span) / (gap * span);
    let cpt = |p: f64| cost_to_reach(&curve, weak_accuracy + p * gap);
    Report {
        prompts: rows.len(),
        strong_accuracy,
        weak_accuracy,
        apgr,
        cpt50: cpt(0.5),
        cpt80: cpt(0.8),
        curve,
    }
}

/// The share of strong calls where the curve first reaches `target`, interpolated linearly
/// (numpy's `interp` on a rising curve); the last point's share if it never does.
fn cost_to_reach(curve: &[(f64, f64)], target: f64) -> f64 {
    if target <= curve[0].1 {
        return curve[0].0;
    }
    for w in curve.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if y0 < target && target <= y1 {
            return x0 + (x1 - x0) * (target - y0) / (y1 - y0);
        }
    }
    curve[curve.len() - 1].0
}

/// Scores every row with `scorer`, as `f64` for [`evaluate`].
pub fn scores(scorer: &dyn Scorer, rows: &[Row]) -> Vec<f64> {
    rows.iter()
        .map(|r| f64::from(scorer.score(&r.prompt)))
        .collect()
}

/// The baseline "prompt length alone": its length in characters.
pub fn length_scores(rows: &[Row]) -> Vec<f64> {
    rows.iter()
        .map(|r| r.prompt.chars().count() as f64)
        .collect()
}

/// The `minComplexity` threshold whose share of `scores` at or above it is closest to `share`
/// (ties to the higher threshold, the cheaper side), and that share.
pub fn calibrate(scores: &[u8], share: f64) -> (u8, f64) {
    let n = scores.len().max(1) as f64;
    let share_at = |t: u8| scores.iter().filter(|&&s| s >= t).count() as f64 / n;
    (0..=MAX_SCORE)
        .rev()
        .map(|t| (t, share_at(t)))
        .min_by(|a, b| (a.1 - share).abs().total_cmp(&(b.1 - share).abs()))
        .expect("0..=100 is not empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(labels: &[(bool, bool)]) -> Vec<Row> {
        labels
            .iter()
            .enumerate()
            .map(|(i, &(strong, weak))| Row {
                prompt: i.to_string(),
                strong,
                weak,
                subject: None,
            })
            .collect()
    }

    #[test]
    fn an_oracle_beats_random_and_a_reversed_oracle_loses() {
        // Ten prompts only the strong model gets right, ten both get, ten neither.
        let mut labels = vec![(true, false); 10];
        labels.extend([(true, true); 10]);
        labels.extend([(false, false); 10]);
        let rows = rows(&labels);
        let oracle: Vec<f64> = (0..30).map(|i| if i < 10 { 1.0 } else { 0.0 }).collect();
        let reversed: Vec<f64> = oracle.iter().map(|s| 1.0 - s).collect();
        let good = evaluate(&oracle, &rows);
        let bad = evaluate(&reversed, &rows);
        assert!(good.apgr > 0.8, "{good}");
        assert!(bad.apgr < 0.5, "{bad}");
        assert!(good.cpt50 < bad.cpt50);
        assert_eq!(good.curve.first().unwrap().0, 0.0);
        assert_eq!(good.curve.last().unwrap().0, 1.0);
    }

    #[test]
    fn a_constant_score_is_a_straight_line_with_apgr_one_half() {
        let rows = rows(&[(true, false), (true, true), (false, false), (true, false)]);
        let report = evaluate(&[3.0; 4], &rows);
        assert!((report.apgr - 0.5).abs() < 1e-12, "{report}");
        assert!((report.cpt50 - 0.5).abs() < 1e-12, "{report}");
    }

    #[test]
    fn calibrate_finds_the_threshold_closest_to_the_share() {
        let scores: Vec<u8> = (0..100).collect();
        assert_eq!(calibrate(&scores, 0.3), (70, 0.3));
        assert_eq!(calibrate(&scores, 0.0), (100, 0.0));
        assert_eq!(calibrate(&[50; 10], 0.3), (100, 0.0));
    }
}
