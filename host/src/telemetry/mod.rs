//! Traces over OpenTelemetry (feature `otel`): where a worker exports them
//! ([`Tracing`], OTLP over HTTP/protobuf), and the spans it opens (one per
//! attempt, its sandbox run, each outgoing HTTP request: `spans.rs`).
//!
//! Tracing is off unless a worker is given a [`Tracing`]: then the task's
//! path holds `None` and does no span work at all.

mod export;
mod spans;

use opentelemetry::trace::TraceContextExt;

use crate::TraceContext;

pub(crate) use spans::{AttemptSpan, Runner, Tracer};

/// The OTLP/HTTP path of traces under a base endpoint.
const TRACES_PATH: &str = "/v1/traces";

/// Where a worker sends its traces: an OTLP receiver over HTTP/protobuf
/// (an OpenTelemetry Collector, Jaeger, Tempo, ...), as a service name.
///
/// [`Tracing::from_env`] reads the standard variables; the command line
/// uses it, and `--otlp-endpoint` sets the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracing {
    /// The full URL traces are posted to.
    traces_url: String,
    service_name: Option<String>,
}

impl Tracing {
    /// Exports to the receiver at `endpoint`, a base URL such as
    /// `http://localhost:4318` (traces go to its `/v1/traces`, as with
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; a URL ending in `/v1/traces` is taken
    /// as it is).
    pub fn otlp(endpoint: impl Into<String>) -> Tracing {
        let endpoint = endpoint.into();
        let endpoint = endpoint.trim();
        let traces_url = if endpoint.trim_end_matches('/').ends_with(TRACES_PATH) {
            endpoint.to_string()
        } else {
            format!("{}{TRACES_PATH}", endpoint.trim_end_matches('/'))
        };
        Tracing {
            traces_url,
            service_name: None,
        }
    }

    /// The tracing the environment asks for: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// (the full URL) or else `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL);
    /// `None` when neither is set (or both are empty): tracing stays off.
    /// `OTEL_SERVICE_NAME` names the service (default `wasmq`).
    pub fn from_env() -> Option<Tracing> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|value| value.trim().to_string())
                .filter(|value| !value.is_empty())
        };
        let tracing = match var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(url) => Tracing {
                traces_url: url,
                service_name: None,
            },
            None => Tracing::otlp(var("OTEL_EXPORTER_OTLP_ENDPOINT")?),
        };
        Some(tracing)
    }

    /// The service name spans are exported under (default:
    /// `OTEL_SERVICE_NAME`, else `wasmq`).
    pub fn service_name(mut self, name: impl Into<String>) -> Tracing {
        self.service_name = Some(name.into());
        self
    }

    /// The URL traces are posted to.
    pub fn traces_url(&self) -> &str {
        &self.traces_url
    }
}

/// The span of the current OpenTelemetry context, if one is active and
/// valid: what a task enqueued under it descends from.
pub(crate) fn current_context() -> Option<TraceContext> {
    let context = opentelemetry::Context::current();
    let span = context.span();
    spans::trace_context_of(span.span_context())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_endpoint_gets_the_traces_path() {
        for (given, url) in [
            ("http://localhost:4318", "http://localhost:4318/v1/traces"),
            ("http://localhost:4318/", "http://localhost:4318/v1/traces"),
            ("http://c:4318/otlp", "http://c:4318/otlp/v1/traces"),
            ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
        ] {
            assert_eq!(Tracing::otlp(given).traces_url(), url, "{given}");
        }
    }

    #[test]
    fn only_an_http_endpoint_starts() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = Tracer::start(&Tracing::otlp("https://c:4318"), runtime.handle().clone())
            .err()
            .unwrap();
        assert!(err.contains("not an http:// URL"), "{err}");
        let err = Tracer::start(&Tracing::otlp("not a url"), runtime.handle().clone())
            .err()
            .unwrap();
        assert!(
            err.contains("not a URL") || err.contains("http://"),
            "{err}"
        );
    }
}
