//! Simulated LLM providers for demos, integration tests and benchmarks.
//!
//! Each submodule serves one provider's real wire format on a loopback port and lets the caller
//! script faults (error statuses, resets, hangs, broken streams), so the sidecar's failover,
//! timeout and stream handling can be exercised without network access or API keys. Only the
//! OpenAI Chat Completions API exists so far; Anthropic and Gemini simulators belong beside it as
//! `anthropic` and `gemini`.

pub mod openai;

pub use openai::{Behavior, Fault, MockProvider, Recorded};
