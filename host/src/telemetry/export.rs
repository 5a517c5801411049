//! The exporter behind a worker's spans: a batch span processor posting
//! OTLP/HTTP protobuf with hyper (already the HTTP stack of plugins'
//! requests), every request run on the worker's tokio runtime, since the
//! batch processor exports from a thread of its own.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use opentelemetry_http::{HttpClient, HttpError, hyper::HyperClient};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::Tracing;
use super::spans::PinnedIds;

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends the exporter's requests with hyper on a tokio runtime, from
/// whichever thread asks.
#[derive(Debug)]
struct RuntimeClient {
    inner: HyperClient,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let inner = self.inner.clone();
        self.runtime
            .spawn(async move { inner.send_bytes(request).await })
            .await
            .map_err(|err| Box::new(err) as HttpError)?
    }
}

/// A tracer provider exporting to `tracing`'s endpoint, its requests run on
/// `runtime`; its span ids come from [`PinnedIds`].
pub(super) fn provider(
    tracing: &Tracing,
    runtime: tokio::runtime::Handle,
) -> Result<SdkTracerProvider, String> {
    let url: http::Uri = tracing.traces_url.parse().map_err(|err| {
        format!(
            "the OTLP endpoint {:?} is not a URL ({err}): give one such as http://localhost:4318",
            tracing.traces_url
        )
    })?;
    if url.scheme_str() != Some("http") {
        return Err(format!(
            "the OTLP endpoint {:?} is not an http:// URL: wasmq exports OTLP over plain HTTP; put a collector beside the worker to forward over TLS",
            tracing.traces_url
        ));
    }
    let client = RuntimeClient {
        inner: HyperClient::with_default_connector(EXPORT_TIMEOUT, None),
        runtime,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(tracing.traces_url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(client)
        .build()
        .map_err(|err| format!("setting up the OTLP exporter: {err}"))?;
    // The SDK's own default name (`unknown_service:...`) is replaced by
    // `wasmq`; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES still name it.
    let resource = match &tracing.service_name {
        Some(name) => Resource::builder().with_service_name(name.clone()).build(),
        None => {
            let detected = Resource::builder().build();
            let unnamed = detected
                .get(&opentelemetry::Key::from_static_str("service.name"))
                .is_none_or(|name| name.as_str().starts_with("unknown_service"));
            if unnamed {
                Resource::builder().with_service_name("wasmq").build()
            } else {
                detected
            }
        }
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_id_generator(PinnedIds::default())
        .with_resource(resource)
        .build())
}
