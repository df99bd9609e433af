//! Format conversions between client and provider protocols, one module per direction
//! (`openai_anthropic.rs`, `anthropic_openai.rs`, `openai_gemini.rs`, ...).
//!
//! Empty for now: with OpenAI-format clients and `api: OpenAI` providers every request passes
//! through. The translation issue fills this in; the request path already routes every body
//! through [`crate::providers::Provider`], which is where these conversions plug in.
