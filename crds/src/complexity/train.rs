//! Fits the `Model` scorer: logistic regression with L2, plain SGD over shuffled prompts, all
//! deterministic for a given seed (docs/reference/complexity.md, "Training").
//!
//! The target of a prompt is `(1 + strong_correct − weak_correct) / 2`: 1 where only the strong
//! model is right, 0 where only the weak one is, 0.5 where they agree. Sending a prompt to the
//! strong model gains `strong − weak` correct answers, so ranking by the fitted probability
//! (monotone in the expected gain) is what APGR rewards; "strong right and weak wrong" alone
//! would ignore the prompts the strong model gets wrong.

use std::collections::BTreeMap;

use super::dataset::Row;
use super::features::{CHOICES, HEURISTIC, NUMERIC_FEATURES, numeric, scan, window};
use super::model::{CALIBRATION_KNOTS, FORMAT, FeatureSpec, ModelFile};

/// The `:open` numeric features the shipped model uses, picked by greedy forward selection on
/// 4-fold cross-validation inside the train split (docs/reference/complexity.md, "Training").
const OPEN_FEATURES: [&str; 4] = [
    "heuristic:open",
    "log_words:open",
    "log_questions:open",
    "log_numbers:open",
];

/// Training knobs; [`Options::default`] made the shipped model.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// A power of two.
    pub buckets: u32,
    pub epochs: u32,
    /// Initial learning rate; epoch `e` uses `rate / (1 + e)`.
    pub rate: f64,
    /// L2 penalty per update on the n-gram weights the update touches: hashed n-grams are
    /// nearly unique per prompt, so without a strong penalty the model memorises prompts.
    pub l2: f64,
    /// L2 penalty per update on the numeric weights.
    pub l2_numeric: f64,
    /// Whether bigrams are features too (unigrams always are).
    pub bigrams: bool,
    /// Whether the n-gram term scores multiple-choice prompts only (open prompts then rest on
    /// the numeric features, and SGD skips them).
    pub ngrams_choices_only: bool,
    /// Whether multiple-choice and open prompts weigh the same in total (each example's loss
    /// scaled by `n / (2 · n_shape)`): without it the 16× more numerous MMLU questions decide
    /// the shared weights.
    pub balance: bool,
    /// The numeric features the model may use (by name; the others keep weight 0): chosen by
    /// cross-validation on the train split, since most features separate subjects rather than
    /// hard from easy prompts within one and then do worse on subjects never seen.
    pub numeric: Vec<String>,
    /// Weight added to the `heuristic` feature after fitting, in raw output per Heuristic point:
    /// how far the model is pulled towards ranking as the Heuristic does (0: not at all; 1: the
    /// Heuristic decides and the fitted part only orders prompts it scores alike). Chosen by
    /// cross-validation, like the rest.
    pub anchor: f64,
    /// Seeds the shuffle.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            buckets: 1 << 14,
            epochs: 12,
            rate: 0.2,
            l2: 0.03,
            l2_numeric: 1e-4,
            bigrams: true,
            ngrams_choices_only: true,
            balance: false,
            numeric: NUMERIC_FEATURES
                .iter()
                .filter(|f| !f.ends_with(":open") || OPEN_FEATURES.contains(f))
                .map(|&f| f.into())
                .collect(),
            anchor: 0.03,
            seed: 12,
        }
    }
}

/// A prompt's features: summed bucket values (already scaled) and raw numeric values.
struct Example {
    hashed: Vec<(u32, f64)>,
    numeric: [f64; NUMERIC_FEATURES.len()],
    target: f64,
}

fn example(row: &Row, buckets: u32, bigrams: bool) -> Example {
    let mut counts: BTreeMap<u32, f64> = BTreeMap::new();
    let c = scan(window(&row.prompt), bigrams, |key| {
        *counts
            .entry((key & u64::from(buckets - 1)) as u32)
            .or_default() += 1.0;
    });
    let scale = 1.0 / f64::from(c.ngrams.max(1)).sqrt();
    Example {
        hashed: counts.into_iter().map(|(b, n)| (b, n * scale)).collect(),
        numeric: numeric(&c, super::heuristic::score(&row.prompt)),
        target: (1.0 + f64::from(u8::from(row.strong)) - f64::from(u8::from(row.weak))) / 2.0,
    }
}

/// SplitMix64: a small, fixed PRNG so that a seed means the same shuffle everywhere.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Rounds to 6 significant digits (and flushes tiny values to 0), so that the numbers survive a
/// JSON round trip bit for bit and the checksum of a re-serialised file matches.
fn quantise(x: f64) -> f64 {
    if x.abs() < 1e-9 {
        return 0.0;
    }
    format!("{x:.5e}")
        .parse()
        .expect("a formatted float parses")
}

/// Logistic regression of `targets` on the standardised numeric features, weighted per example,
/// with an L2 penalty `ridge` on the weights (not the intercept): Newton's method, which
/// converges in a few steps on these few features and depends on no shuffle or learning rate.
// Matrix code reads best with the indices of the formulas.
#[allow(clippy::needless_range_loop)]
fn fit_numeric(
    x: &[[f64; NUMERIC_FEATURES.len()]],
    targets: &[f64],
    sample: &[f64],
    ridge: f64,
) -> (f64, [f64; NUMERIC_FEATURES.len()]) {
    const D: usize = NUMERIC_FEATURES.len() + 1;
    let total: f64 = sample.iter().sum();
    // Coefficient 0 is the intercept; feature j is coefficient j + 1.
    let mut beta = [0f64; D];
    let row = |x: &[f64; NUMERIC_FEATURES.len()]| -> [f64; D] {
        std::array::from_fn(|j| if j == 0 { 1.0 } else { x[j - 1] })
    };
    for _ in 0..25 {
        let mut gradient = [0f64; D];
        let mut hessian = [[0f64; D]; D];
        for ((x, &t), &s) in x.iter().zip(targets).zip(sample) {
            let r = row(x);
            let p = sigmoid(r.iter().zip(&beta).map(|(a, b)| a * b).sum());
            let (g, h) = (s * (p - t) / total, s * p * (1.0 - p) / total);
            for j in 0..D {
                gradient[j] += g * r[j];
                for k in 0..=j {
                    hessian[j][k] += h * r[j] * r[k];
                }
            }
        }
        for j in 0..D {
            for k in 0..j {
                hessian[k][j] = hessian[j][k];
            }
            if j > 0 {
                gradient[j] += ridge * beta[j];
                hessian[j][j] += ridge;
            }
            // A feature constant in the sample (all zero) has an empty row: keep it solvable.
            hessian[j][j] += 1e-9;
        }
        let step = solve(hessian, gradient);
        let mut moved = 0f64;
        for (b, d) in beta.iter_mut().zip(step) {
            *b -= d;
            moved = moved.max(d.abs());
        }
        if moved < 1e-9 {
            break;
        }
    }
    (beta[0], std::array::from_fn(|j| beta[j + 1]))
}

/// Solves `a · x = b` by Gaussian elimination with partial pivoting (`a` is small and positive
/// definite here).
#[allow(clippy::needless_range_loop)]
fn solve<const D: usize>(mut a: [[f64; D]; D], mut b: [f64; D]) -> [f64; D] {
    for c in 0..D {
        let pivot = (c..D)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .expect("c < D");
        a.swap(c, pivot);
        b.swap(c, pivot);
        for r in c + 1..D {
            let f = a[r][c] / a[c][c];
            for k in c..D {
                a[r][k] -= f * a[c][k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = [0f64; D];
    for r in (0..D).rev() {
        let tail: f64 = (r + 1..D).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - tail) / a[r][r];
    }
    x
}

/// Fits a model on `rows` (panics on an empty sample: the CLI refuses that first).
pub fn train(rows: &[Row], options: &Options) -> ModelFile {
    assert!(!rows.is_empty(), "nothing to train on");
    assert!(
        options.buckets.is_power_of_two(),
        "buckets must be a power of two"
    );
    let examples: Vec<Example> = rows
        .iter()
        .map(|r| example(r, options.buckets, options.bigrams))
        .collect();
    let mut spec = FeatureSpec::new(options.buckets);
    if !options.bigrams {
        spec.ngrams = vec![1];
    }
    if options.ngrams_choices_only {
        spec.ngram_prompts = "multiple-choice".into();
    }
    let n = examples.len() as f64;
    for (i, feature) in spec.numeric.iter_mut().enumerate() {
        let mean = examples.iter().map(|e| e.numeric[i]).sum::<f64>() / n;
        let var = examples
            .iter()
            .map(|e| (e.numeric[i] - mean).powi(2))
            .sum::<f64>()
            / n;
        feature.mean = quantise(mean);
        feature.scale = quantise(if var > 1e-12 { var.sqrt() } else { 1.0 });
    }
    let used: [bool; NUMERIC_FEATURES.len()] =
        std::array::from_fn(|i| options.numeric.iter().any(|f| f == NUMERIC_FEATURES[i]));
    let standard: Vec<[f64; NUMERIC_FEATURES.len()]> = examples
        .iter()
        .map(|e| {
            std::array::from_fn(|i| {
                let f = &spec.numeric[i];
                if used[i] {
                    (e.numeric[i] - f.mean) / f.scale
                } else {
                    0.0
                }
            })
        })
        .collect();

    let choices = examples.iter().filter(|e| e.numeric[CHOICES] > 0.5).count() as f64;
    let shape_weight = |e: &Example| match (options.balance, e.numeric[CHOICES] > 0.5) {
        (false, _) => 1.0,
        (true, true) => n / (2.0 * choices.max(1.0)),
        (true, false) => n / (2.0 * (n - choices).max(1.0)),
    };
    let sample: Vec<f64> = examples.iter().map(shape_weight).collect();
    let targets: Vec<f64> = examples.iter().map(|e| e.target).collect();
    let (bias, numeric) = fit_numeric(&standard, &targets, &sample, options.l2_numeric);

    // The n-gram weights learn what the numeric features leave: SGD with the numeric part as a
    // fixed offset, so a noisy n-gram step cannot drag the numeric weights around.
    let offsets: Vec<f64> = standard
        .iter()
        .map(|x| bias + numeric.iter().zip(x).map(|(w, v)| w * v).sum::<f64>())
        .collect();
    let mut weights = vec![0f64; options.buckets as usize];
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut rng = options.seed;
    for epoch in 0..options.epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, (splitmix(&mut rng) % (i as u64 + 1)) as usize);
        }
        let rate = options.rate / (1.0 + f64::from(epoch));
        for &i in &order {
            let e = &examples[i];
            if options.ngrams_choices_only && e.numeric[CHOICES] < 0.5 {
                continue;
            }
            let z = offsets[i]
                + e.hashed
                    .iter()
                    .map(|&(b, v)| weights[b as usize] * v)
                    .sum::<f64>();
            let gradient = (sigmoid(z) - e.target) * sample[i];
            for &(b, v) in &e.hashed {
                let w = &mut weights[b as usize];
                *w -= rate * (gradient * v + options.l2 * *w);
            }
        }
    }
    for (feature, w) in spec.numeric.iter_mut().zip(numeric) {
        feature.weight = quantise(w);
    }
    // The heuristic feature is `score / 100`, standardised by `scale`: one Heuristic point moves
    // it by `0.01 / scale`.
    let heuristic = &mut spec.numeric[HEURISTIC];
    heuristic.weight = quantise(heuristic.weight + options.anchor * 100.0 * heuristic.scale);
    let mut file = ModelFile {
        format: FORMAT.into(),
        features: spec,
        bias: quantise(bias),
        weights: weights.into_iter().map(quantise).collect(),
        calibration: vec![0.0; CALIBRATION_KNOTS],
        checksum: String::new(),
    };
    file.calibration = knots(&file, rows);
    file.checksum = file.compute_checksum();
    file
}

/// The raw output at each percentile of the training prompts, from the quantised model the file
/// will hold (so that a score reads as a percentile of the training traffic).
fn knots(file: &ModelFile, rows: &[Row]) -> Vec<f64> {
    let mut unchecked = file.clone();
    unchecked.calibration = (0..CALIBRATION_KNOTS).map(|k| k as f64).collect();
    unchecked.checksum = unchecked.compute_checksum();
    let model = super::Model::from_file(unchecked).expect("a freshly trained model is valid");
    let mut raw: Vec<f64> = rows.iter().map(|r| model.raw(&r.prompt)).collect();
    raw.sort_by(f64::total_cmp);
    let last = (raw.len() - 1) as f64;
    let mut knots: Vec<f64> = (0..CALIBRATION_KNOTS)
        .map(|k| {
            let position = last * k as f64 / (CALIBRATION_KNOTS - 1) as f64;
            let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
            quantise(raw[lo] + (raw[hi] - raw[lo]) * (position - lo as f64))
        })
        .collect();
    // Rounding may break monotonicity by one ulp of the sixth digit; restore it.
    for k in 1..knots.len() {
        knots[k] = knots[k].max(knots[k - 1]);
    }
    knots
}

/// K-fold cross-validation inside labelled samples (each sample one file's train split, say):
/// a row's fold is `(group hash / 5) mod folds` ([`super::dataset::group_hash`]), so a subject's
/// rows share a fold. For each fold a model is trained on the other folds of every sample
/// together and scores that fold's rows; each sample's out-of-fold scores are then judged
/// together with `evaluate` (pooled: a fold of one or two subjects has too small a gap for an
/// APGR of its own), next to the Heuristic on the same rows. This is how the shipped [`Options`]
/// were chosen: never on the held-out split.
pub fn cross_validate(samples: &[&[Row]], options: &Options, folds: u64) -> Vec<Validation> {
    assert!(folds >= 2, "cross-validation needs two folds or more");
    let fold = |r: &Row| (super::dataset::group_hash(r) / 5) % folds;
    let mut scores: Vec<Vec<f64>> = samples.iter().map(|s| vec![0.0; s.len()]).collect();
    for k in 0..folds {
        let training: Vec<Row> = samples
            .iter()
            .flat_map(|s| s.iter().filter(|r| fold(r) != k).cloned())
            .collect();
        let model = super::Model::from_file(train(&training, options))
            .expect("a freshly trained model is valid");
        for (scores, sample) in scores.iter_mut().zip(samples) {
            for (score, row) in scores.iter_mut().zip(sample.iter()) {
                if fold(row) == k {
                    *score = f64::from(super::Scorer::score(&model, &row.prompt));
                }
            }
        }
    }
    samples
        .iter()
        .zip(scores)
        .map(|(rows, scores)| Validation {
            prompts: rows.len(),
            model: super::eval::evaluate(&scores, rows).apgr,
            heuristic: super::eval::evaluate(&super::eval::scores(&super::Heuristic, rows), rows)
                .apgr,
        })
        .collect()
}

/// What [`cross_validate`] found on one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Validation {
    pub prompts: usize,
    /// APGR of the out-of-fold model scores.
    pub model: f64,
    /// APGR of the Heuristic on the same prompts.
    pub heuristic: f64,
}
