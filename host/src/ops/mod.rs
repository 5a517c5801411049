//! Operating wasmq: what workers report about themselves (heartbeats,
//! Prometheus metrics, plugin statistics) and the web dashboard.
//!
//! # Layout
//! - [`metrics`]: the Prometheus registry and its `/metrics` endpoint.
//! - [`stats`]: run statistics per plugin and task type.
//! - [`server`]: what a worker's heartbeat says about it.
//! - [`dashboard`]: the web dashboard and its JSON API.

pub mod dashboard;
pub mod metrics;
pub mod server;
pub mod stats;
