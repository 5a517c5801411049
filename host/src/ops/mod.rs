//! Operating wasmq: what workers report about themselves (heartbeats,
//! Prometheus metrics, plugin statistics) and the web dashboard.
//!
//! # Layout
//! - [`http`]: the HTTP server under the dashboard and `/metrics`: the
//!   `Host` rule and the security headers of every response.
//! - [`metrics`]: the metrics a worker exports, typed.
//! - [`stats`]: run statistics per plugin and task type.
//! - [`server`]: what a worker's heartbeat says about it.
//! - [`dashboard`]: the web dashboard and its JSON API.

pub mod dashboard;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod server;
pub mod stats;
