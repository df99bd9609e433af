//! The prompt complexity score that `minComplexity` rules compare against, and the tooling that
//! fits and judges it.
//!
//! Every scorer maps prompt text to an integer 0–100 ([`Scorer`]). [`Heuristic`] is the
//! hand-written score; [`Model`] is a learned linear model read from a versioned JSON file
//! ([`ModelFile`]). Both, the file format and the split of the shipped data are documented in
//! docs/reference/complexity.md. The scorers are the same in every sidecar and the operator, which
//! is why they live in this crate.
//!
//! [`dataset`], [`eval`] and [`train`] are the pure cores of `switchyard-sidecar complexity
//! eval|train|calibrate`.

pub mod dataset;
pub mod eval;
mod features;
mod heuristic;
mod model;
pub mod train;

pub use features::{FNV_OFFSET, NUMERIC_FEATURES, WINDOW_BYTES, fnv1a};
pub use heuristic::{Heuristic, score};
pub use model::{
    CALIBRATION_KNOTS, FORMAT, FeatureSpec, MAX_BUCKETS, MAX_MODEL_BYTES, Model, ModelFile,
    NumericFeature,
};

/// The highest score: scores read as a percentage of "as complex as it gets", which is what a
/// rule's `minComplexity` is written against.
pub const MAX_SCORE: u8 = 100;

/// Maps a prompt to a complexity score from 0 (trivial) to [`MAX_SCORE`] (complex).
pub trait Scorer {
    /// The prompt's score, 0–100.
    fn score(&self, prompt: &str) -> u8;
}

#[doc(hidden)]
pub fn numeric_of(prompt: &str) -> [f64; NUMERIC_FEATURES.len()] {
    features::numeric(
        &features::scan(features::window(prompt), false, |_| {}),
        heuristic::score(prompt),
    )
}
