//! The `standalone_*` cases: the real sidecar, started in-process from YAML manifests, against
//! simulated providers on loopback (mostly OpenAI ones). Each file covers one theme of
//! docs/reference/sidecar.md and docs/reference/api.md.

mod standalone_anthropic_clients;
mod standalone_azure;
mod standalone_bad_input;
mod standalone_bedrock;
mod standalone_breaker;
mod standalone_budgets;
mod standalone_cache;
mod standalone_clouds;
mod standalone_complexity;
mod standalone_config;
mod standalone_embeddings;
mod standalone_failover;
mod standalone_fleet_limits;
mod standalone_listeners;
mod standalone_otel;
mod standalone_recording;
mod standalone_responses;
mod standalone_routing;
mod standalone_shutdown;
mod standalone_strategies;
mod standalone_streaming;
mod standalone_templates;
mod standalone_upstream_auth;
mod standalone_vertex;
mod translation_robustness;
mod translation_schema;
mod translation_schema_bedrock;
