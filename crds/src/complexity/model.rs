//! `Model`: a logistic model over hashed word n-grams and a few numeric features, read from a
//! versioned JSON file (docs/reference/complexity.md, "Model file").

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::features::{CHOICES, NUMERIC_FEATURES, numeric, scan, window};
use super::{MAX_SCORE, Scorer};
use crate::{Error, Result};

/// The `format` a model file of this build carries; any other, older versions included, is
/// refused: v3 reads the last 4 KiB of a prompt (`features::WINDOW_BYTES`) where v2 read all of
/// it, so a v2 model fitted on longer prompts would mean something else; v2 added the `heuristic`
/// and `:open` numeric features and `features.ngram_prompts`.
pub const FORMAT: &str = "switchyard.complexity/v3";
/// The largest model file loaded: what one ConfigMap can hold.
pub const MAX_MODEL_BYTES: usize = 1 << 20;
/// The most hash buckets a file may declare.
pub const MAX_BUCKETS: u32 = 1 << 18;
/// Calibration knots: the raw model output at each percentile 0, 1, …, 100 of the training data.
pub const CALIBRATION_KNOTS: usize = 101;
const TOKENS: &str = "alnum-runs-lowercase+symbols";
const HASHING: &str = "fnv1a-64";
/// The values `features.ngram_prompts` may take.
const NGRAM_PROMPTS: [&str; 2] = ["all", "multiple-choice"];

/// A model file as stored: what `train` writes and [`Model::load`] reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// How the text becomes features.
    pub features: FeatureSpec,
    /// The intercept of the linear model.
    pub bias: f64,
    /// One weight per hash bucket.
    pub weights: Vec<f64>,
    /// Raw model output at each percentile of the training data: the score is the interpolated
    /// percentile, so `minComplexity: 70` sends about the top 30 % of such traffic.
    pub calibration: Vec<f64>,
    /// `sha256:<hex>` of the canonical content (this document without `checksum`, compact JSON).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub checksum: String,
}

/// The feature spec a model file carries, checked against what this build computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Tokenisation rule; v3 knows `alnum-runs-lowercase+symbols`.
    pub tokens: String,
    /// Hash of a token; v3 knows `fnv1a-64`.
    pub hashing: String,
    /// Number of hash buckets, a power of two up to [`MAX_BUCKETS`] (a key's bucket is
    /// `key & (buckets - 1)`: a mask, not a division, on the scoring path).
    pub buckets: u32,
    /// N-gram orders: `[1]` or `[1, 2]`.
    pub ngrams: Vec<u8>,
    /// Which prompts the n-gram term scores: `all`, or `multiple-choice` (the term is 0 on open
    /// prompts, which then rest on the numeric features alone).
    pub ngram_prompts: String,
    /// How the summed n-gram weights are scaled; v3 knows `inverse-sqrt-count`.
    pub normalisation: String,
    /// The numeric features, exactly [`NUMERIC_FEATURES`] in that order.
    pub numeric: Vec<NumericFeature>,
}

/// One numeric feature: standardised as `(x - mean) / scale`, then weighted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericFeature {
    pub name: String,
    pub mean: f64,
    pub scale: f64,
    pub weight: f64,
}

impl FeatureSpec {
    /// The spec this build writes ([`FORMAT`]), with numeric features not yet fitted.
    pub fn new(buckets: u32) -> FeatureSpec {
        FeatureSpec {
            tokens: TOKENS.into(),
            hashing: HASHING.into(),
            buckets,
            ngrams: vec![1, 2],
            ngram_prompts: NGRAM_PROMPTS[0].into(),
            normalisation: "inverse-sqrt-count".into(),
            numeric: NUMERIC_FEATURES
                .iter()
                .map(|name| NumericFeature {
                    name: (*name).into(),
                    mean: 0.0,
                    scale: 1.0,
                    weight: 0.0,
                })
                .collect(),
        }
    }
}

impl ModelFile {
    /// The canonical content the checksum covers.
    fn canonical(&self) -> Vec<u8> {
        let mut content = self.clone();
        content.checksum.clear();
        serde_json::to_vec(&content).expect("a model file serialises")
    }

    /// `sha256:<hex>` of the canonical content.
    pub fn compute_checksum(&self) -> String {
        let digest = Sha256::digest(self.canonical());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// Sets the checksum and returns the file's text (compact JSON and a newline).
    pub fn to_json(&mut self) -> String {
        self.checksum = self.compute_checksum();
        let mut text = serde_json::to_string(self).expect("a model file serialises");
        text.push('\n');
        text
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Model(what));
        if self.format != FORMAT {
            return bad(format!(
                "format is {:?}; this build reads {FORMAT:?} (retrain with `switchyard-sidecar complexity train`)",
                self.format
            ));
        }
        let spec = &self.features;
        if spec.tokens != TOKENS || spec.hashing != HASHING {
            return bad(format!(
                "features.tokens {:?} / features.hashing {:?}: this build computes {TOKENS:?} / {HASHING:?}",
                spec.tokens, spec.hashing
            ));
        }
        if spec.normalisation != "inverse-sqrt-count" {
            return bad(format!(
                "features.normalisation {:?} is unknown",
                spec.normalisation
            ));
        }
        if spec.ngrams != [1] && spec.ngrams != [1, 2] {
            return bad(format!(
                "features.ngrams {:?}: expected [1] or [1, 2]",
                spec.ngrams
            ));
        }
        if !NGRAM_PROMPTS.contains(&spec.ngram_prompts.as_str()) {
            return bad(format!(
                "features.ngram_prompts {:?}: expected one of {NGRAM_PROMPTS:?}",
                spec.ngram_prompts
            ));
        }
        if !spec.buckets.is_power_of_two() || spec.buckets > MAX_BUCKETS {
            return bad(format!(
                "features.buckets {} is not a power of two up to {MAX_BUCKETS}",
                spec.buckets
            ));
        }
        let names: Vec<&str> = spec.numeric.iter().map(|f| f.name.as_str()).collect();
        if names != NUMERIC_FEATURES {
            return bad(format!(
                "features.numeric are {names:?}; this build computes {NUMERIC_FEATURES:?}"
            ));
        }
        if self.weights.len() != spec.buckets as usize {
            return bad(format!(
                "{} weights for {} buckets",
                self.weights.len(),
                spec.buckets
            ));
        }
        if self.calibration.len() != CALIBRATION_KNOTS {
            return bad(format!(
                "{} calibration knots; expected {CALIBRATION_KNOTS}",
                self.calibration.len()
            ));
        }
        let finite = |name: &str, values: &[f64]| match values.iter().position(|v| !v.is_finite()) {
            Some(i) => bad(format!("{name}[{i}] is not a finite number")),
            None => Ok(()),
        };
        finite("weights", &self.weights)?;
        finite("calibration", &self.calibration)?;
        finite("bias", &[self.bias])?;
        for f in &spec.numeric {
            finite(&f.name, &[f.mean, f.scale, f.weight])?;
            if f.scale <= 0.0 {
                return bad(format!("features.numeric {}: scale must be > 0", f.name));
            }
        }
        if self.calibration.windows(2).any(|w| w[0] > w[1]) {
            return bad("calibration knots must not decrease".into());
        }
        let actual = self.compute_checksum();
        if self.checksum != actual {
            return bad(format!(
                "checksum mismatch: the file says {:?}, its content hashes to {actual:?}",
                self.checksum
            ));
        }
        Ok(())
    }
}

/// The learned scorer, ready to score: weights as `f32` (half the cache footprint).
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    bigrams: bool,
    /// Whether the n-gram term is 0 on open (not multiple-choice) prompts.
    ngrams_choices_only: bool,
    weights: Vec<f32>,
    bias: f64,
    numeric: Vec<NumericFeature>,
    calibration: Vec<f64>,
    checksum: String,
}

impl Model {
    /// Parses and checks a model file: size, format, feature spec, weight count, finite numbers and
    /// checksum, each refused with a message naming what is wrong.
    pub fn load(text: &[u8]) -> Result<Model> {
        if text.len() > MAX_MODEL_BYTES {
            return Err(Error::Model(format!(
                "the file is {} bytes; the limit is {MAX_MODEL_BYTES}",
                text.len()
            )));
        }
        let file: ModelFile = serde_json::from_slice(text)
            .map_err(|e| Error::Model(format!("not a model file: {e}")))?;
        Model::from_file(file)
    }

    /// Checks an in-memory file as [`Model::load`] does.
    pub fn from_file(file: ModelFile) -> Result<Model> {
        file.validate()?;
        Ok(Model {
            bigrams: file.features.ngrams.contains(&2),
            ngrams_choices_only: file.features.ngram_prompts == NGRAM_PROMPTS[1],
            weights: file.weights.iter().map(|&w| w as f32).collect(),
            bias: file.bias,
            numeric: file.features.numeric,
            calibration: file.calibration,
            checksum: file.checksum,
        })
    }

    /// The file's checksum, `sha256:<hex>`: names the model in logs and status.
    pub fn checksum(&self) -> &str {
        &self.checksum
    }

    /// The linear model's output `w·x + b` before calibration.
    pub fn raw(&self, prompt: &str) -> f64 {
        let mask = self.weights.len() as u64 - 1;
        let mut sum = 0f64;
        let counts = scan(window(prompt), self.bigrams, |key| {
            sum += f64::from(self.weights[(key & mask) as usize]);
        });
        let open = counts.numeric[CHOICES] < 0.5;
        let text = if open && self.ngrams_choices_only {
            0.0
        } else {
            sum / f64::from(counts.ngrams.max(1)).sqrt()
        };
        let numeric: f64 = self
            .numeric
            .iter()
            .zip(numeric(&counts, super::heuristic::score(prompt)))
            .map(|(f, x)| f.weight * (x - f.mean) / f.scale)
            .sum();
        self.bias + text + numeric
    }
}

/// The percentile of `raw` among the calibration knots, interpolated and rounded.
pub(super) fn calibrated(knots: &[f64], raw: f64) -> u8 {
    let last = knots.len() - 1;
    if raw.is_nan() || raw <= knots[0] {
        return 0;
    }
    if raw >= knots[last] {
        return MAX_SCORE;
    }
    // knots[k] <= raw < knots[k + 1], so the gap is positive.
    let k = knots.partition_point(|&x| x <= raw) - 1;
    let fraction = (raw - knots[k]) / (knots[k + 1] - knots[k]);
    let percent = (k as f64 + fraction) * f64::from(MAX_SCORE) / last as f64;
    percent.round().clamp(0.0, f64::from(MAX_SCORE)) as u8
}

impl Scorer for Model {
    fn score(&self, prompt: &str) -> u8 {
        calibrated(&self.calibration, self.raw(prompt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny valid file: 8 buckets, bucket of "hard" weighted up, calibration 0..=100 around 0.
    fn tiny() -> ModelFile {
        let mut features = FeatureSpec::new(8);
        features.numeric[0].weight = 0.5;
        let mut weights = vec![0.0; 8];
        weights[(super::super::fnv1a(super::super::FNV_OFFSET, b"hard") % 8) as usize] = 2.0;
        let mut file = ModelFile {
            format: FORMAT.into(),
            features,
            bias: 0.0,
            weights,
            calibration: (0..CALIBRATION_KNOTS)
                .map(|k| (k as f64 - 50.0) / 25.0)
                .collect(),
            checksum: String::new(),
        };
        file.checksum = file.compute_checksum();
        file
    }

    fn load_error(file: &ModelFile) -> String {
        let text = serde_json::to_vec(file).unwrap();
        Model::load(&text).unwrap_err().to_string()
    }

    #[test]
    fn a_model_file_round_trips_through_its_json() {
        let mut file = tiny();
        let text = file.to_json();
        let model = Model::load(text.as_bytes()).unwrap();
        assert_eq!(model.checksum(), file.checksum);
        assert!(model.checksum().starts_with("sha256:"));
        let reread: ModelFile = serde_json::from_str(&text).unwrap();
        assert_eq!(reread, file);
    }

    #[test]
    fn weights_of_any_value_keep_their_checksum() {
        // Values like i/10 - 5 parse one ulp off without serde_json's `float_roundtrip`: a
        // freshly trained file would then fail its own checksum.
        let mut file = tiny();
        file.weights = (0..128).map(|i| f64::from(i) / 10.0 - 5.0).collect();
        file.features.buckets = 128;
        let text = file.to_json();
        let model = Model::load(text.as_bytes()).expect("a written model loads");
        assert_eq!(model.checksum(), file.checksum);
    }

    #[test]
    fn the_score_is_the_calibrated_percentile_of_the_raw_output() {
        let model = Model::from_file(tiny()).unwrap();
        assert!(model.score("a hard hard question") > model.score("a plain question"));
        assert_eq!(calibrated(&model.calibration, -100.0), 0);
        assert_eq!(calibrated(&model.calibration, 100.0), 100);
        assert_eq!(calibrated(&model.calibration, 0.0), 50);
        assert_eq!(calibrated(&model.calibration, 0.03), 51);
        assert_eq!(calibrated(&model.calibration, f64::NAN), 0);
        assert_eq!(calibrated(&[1.0; CALIBRATION_KNOTS], 1.0), 0);
    }

    #[test]
    fn load_refuses_other_format_versions() {
        for version in [
            "switchyard.complexity/v1",
            "switchyard.complexity/v2",
            "switchyard.complexity/v4",
            "",
        ] {
            let mut file = tiny();
            file.format = version.into();
            file.checksum = file.compute_checksum();
            let e = load_error(&file);
            assert!(
                e.contains(&format!(
                    "format is {version:?}; this build reads {FORMAT:?}"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn only_the_last_4_kib_is_tokenised() {
        let model = Model::from_file(tiny()).unwrap();
        assert_eq!(model.numeric[super::super::features::HEURISTIC].weight, 0.0);
        let tail = "a hard question ".repeat(200);
        let shorter = format!("{}{tail}", "x ".repeat(3000));
        let longer = format!("{}{tail}", "x ".repeat(9000));
        assert_eq!(model.raw(&shorter), model.raw(&longer));
        // Within the window every word counts.
        assert_ne!(model.raw(&tail), model.raw(&format!("x x {tail}")));
    }

    #[test]
    fn ngram_prompts_multiple_choice_leaves_open_prompts_to_the_numeric_features() {
        let mut file = tiny();
        file.features.numeric[0].weight = 0.0;
        file.features.ngram_prompts = "multiple-choice".into();
        file.checksum = file.compute_checksum();
        let model = Model::from_file(file.clone()).unwrap();
        let choices = "\nA. x\nB. y\nC. z\nD. w";
        assert_eq!(
            model.raw("a hard hard question"),
            model.raw("a plain question")
        );
        assert!(
            model.raw(&format!("a hard question{choices}"))
                > model.raw(&format!("a plain question{choices}"))
        );
        file.features.ngram_prompts = "some".into();
        file.checksum = file.compute_checksum();
        assert!(load_error(&file).contains("features.ngram_prompts \"some\""));
    }

    #[test]
    fn load_refuses_a_checksum_mismatch() {
        let mut file = tiny();
        file.bias = 1.0;
        let e = load_error(&file);
        assert!(e.contains("checksum mismatch"), "{e}");
    }

    #[test]
    fn load_refuses_a_weight_count_that_does_not_match_the_buckets() {
        let mut file = tiny();
        file.weights.pop();
        file.checksum = file.compute_checksum();
        assert!(load_error(&file).contains("7 weights for 8 buckets"));
    }

    #[test]
    fn load_refuses_numbers_that_are_not_finite() {
        let mut file = tiny();
        file.weights[3] = f64::NAN;
        let e = Model::from_file(file).unwrap_err().to_string();
        assert!(e.contains("weights[3] is not a finite number"), "{e}");
        let text = serde_json::to_string(&tiny())
            .unwrap()
            .replace("\"bias\":0.0", "\"bias\":1e999");
        let e = Model::load(text.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("not a model file"), "{e}");
    }

    #[test]
    fn load_refuses_unknown_features_and_fields() {
        let mut file = tiny();
        file.features.numeric.swap(0, 1);
        file.checksum = file.compute_checksum();
        assert!(load_error(&file).contains("features.numeric are"));
        let text = serde_json::to_string(&tiny())
            .unwrap()
            .replacen('{', "{\"extra\":1,", 1);
        let e = Model::load(text.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("unknown field `extra`"), "{e}");
    }

    #[test]
    fn load_refuses_a_file_over_the_size_cap() {
        let text = vec![b' '; MAX_MODEL_BYTES + 1];
        let e = Model::load(&text).unwrap_err().to_string();
        assert!(e.contains("the limit is 1048576"), "{e}");
    }
}
