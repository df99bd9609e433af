//! Simulated LLM providers for demos, integration tests and benchmarks.
//!
//! Each provider module serves one provider's real wire format on a loopback port and lets the
//! caller script faults (error statuses, resets, hangs, broken streams), so the sidecar's
//! failover, timeout, stream handling and format translation can be exercised without network
//! access or API keys: [`openai`] (Chat Completions), [`azure`] (Azure OpenAI's Chat
//! Completions, both URL shapes), [`anthropic`] (Messages), [`gemini`] (`generateContent`) and
//! [`vertex`] (Gemini and Anthropic models on Vertex AI, with its OAuth2
//! token endpoint). They share one server, fault queue and recorder, in [`server`].

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod embeddings;
pub mod gemini;
pub mod openai;
pub mod responses;
pub mod server;
pub mod vertex;

mod content;

#[cfg(test)]
mod testing;

pub use openai::{Behavior, Fault, MockProvider, Recorded};
