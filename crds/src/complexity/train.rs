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
use super::features::{NUMERIC_FEATURES, scan};
use super::model::{CALIBRATION_KNOTS, FORMAT, FeatureSpec, ModelFile};

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
    let c = scan(&row.prompt, bigrams, |key| {
        *counts
            .entry((key & u64::from(buckets - 1)) as u32)
            .or_default() += 1.0;
    });
    let scale = 1.0 / f64::from(c.ngrams.max(1)).sqrt();
    Example {
        hashed: counts.into_iter().map(|(b, n)| (b, n * scale)).collect(),
        numeric: c.numeric,
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
    let mut spec = FeatureSpec::v1(options.buckets);
    if !options.bigrams {
        spec.ngrams = vec![1];
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
    let standard: Vec<[f64; NUMERIC_FEATURES.len()]> = examples
        .iter()
        .map(|e| {
            std::array::from_fn(|i| (e.numeric[i] - spec.numeric[i].mean) / spec.numeric[i].scale)
        })
        .collect();

    let mut weights = vec![0f64; options.buckets as usize];
    let mut numeric = [0f64; NUMERIC_FEATURES.len()];
    let mut bias = 0f64;
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut rng = options.seed;
    for epoch in 0..options.epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, (splitmix(&mut rng) % (i as u64 + 1)) as usize);
        }
        let rate = options.rate / (1.0 + f64::from(epoch));
        for &i in &order {
            let (e, x) = (&examples[i], &standard[i]);
            let z = bias
                + e.hashed
                    .iter()
                    .map(|&(b, v)| weights[b as usize] * v)
                    .sum::<f64>()
                + numeric.iter().zip(x).map(|(w, v)| w * v).sum::<f64>();
            let gradient = sigmoid(z) - e.target;
            bias -= rate * gradient;
            for &(b, v) in &e.hashed {
                let w = &mut weights[b as usize];
                *w -= rate * (gradient * v + options.l2 * *w);
            }
            for (w, v) in numeric.iter_mut().zip(x) {
                *w -= rate * (gradient * v + options.l2_numeric * *w);
            }
        }
    }
    for (feature, w) in spec.numeric.iter_mut().zip(numeric) {
        feature.weight = quantise(w);
    }
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
