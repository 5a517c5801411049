//! A small OTLP/HTTP receiver: `POST /v1/traces` with a protobuf
//! `ExportTraceServiceRequest`, as a collector takes it; it decodes every
//! span (with the `opentelemetry-proto` types) and keeps it for the test to
//! read. For the tracing tests and the tracing benchmark, which can also
//! have it only count what arrives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
pub use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// A span as received, with the service that sent it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The `service.name` of its resource.
    pub service: String,
    /// The span.
    pub span: Span,
}

impl Received {
    /// The span's trace id, in lowercase hex.
    pub fn trace_id(&self) -> String {
        hex::encode(&self.span.trace_id)
    }

    /// The span's id, in lowercase hex.
    pub fn span_id(&self) -> String {
        hex::encode(&self.span.span_id)
    }

    /// Its parent span's id, in lowercase hex (empty for a root).
    pub fn parent_span_id(&self) -> String {
        hex::encode(&self.span.parent_span_id)
    }

    /// The attribute `key`, as text (numbers written out), if present.
    pub fn attribute(&self, key: &str) -> Option<String> {
        let value = self
            .span
            .attributes
            .iter()
            .find(|attribute| attribute.key == key)?
            .value
            .as_ref()?
            .value
            .as_ref()?;
        Some(match value {
            Value::StringValue(text) => text.clone(),
            Value::IntValue(n) => n.to_string(),
            Value::DoubleValue(x) => x.to_string(),
            Value::BoolValue(b) => b.to_string(),
            other => format!("{other:?}"),
        })
    }

    /// The (trace id, span id) of each span this one links to, in hex.
    pub fn links(&self) -> Vec<(String, String)> {
        self.span
            .links
            .iter()
            .map(|link| (hex::encode(&link.trace_id), hex::encode(&link.span_id)))
            .collect()
    }
}

/// What the receiver has taken in.
#[derive(Default)]
struct Taken {
    spans: Vec<Received>,
    requests: u64,
    count: u64,
}

/// The receiver: listening on loopback until dropped.
pub struct Receiver {
    address: SocketAddr,
    taken: Arc<Mutex<Taken>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    /// Starts a receiver on a free loopback port that keeps every span.
    pub async fn start() -> Receiver {
        Receiver::start_with(true).await
    }

    /// Starts a receiver that only counts spans (for a benchmark that
    /// sends many).
    pub async fn counting() -> Receiver {
        Receiver::start_with(false).await
    }

    /// Starts a receiver that keeps every span on `address`, if it is free.
    pub async fn start_at(address: &str) -> Option<Receiver> {
        let listener = tokio::net::TcpListener::bind(address).await.ok()?;
        Some(Receiver::serve(listener, true))
    }

    async fn start_with(keep: bool) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port is free");
        Receiver::serve(listener, keep)
    }

    fn serve(listener: tokio::net::TcpListener, keep: bool) -> Receiver {
        let address = listener.local_addr().expect("a bound address");
        let taken = Arc::new(Mutex::new(Taken::default()));
        let into = taken.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| {
                let into = into.clone();
                async move { receive(&into, keep, &body) }
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Receiver {
            address,
            taken,
            stop: Some(stop),
        }
    }

    /// The base URL to give a worker (`--otlp-endpoint`,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Received> {
        self.lock().spans.clone()
    }

    /// How many spans arrived (kept or only counted).
    pub fn span_count(&self) -> u64 {
        self.lock().count
    }

    /// How many export requests arrived.
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// Waits until `enough` holds for the spans received, or `timeout`
    /// passes (then panics naming `what` and listing what arrived).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        enough: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if enough(&spans) {
                return spans;
            }
            if Instant::now() > deadline {
                let names: Vec<&str> = spans.iter().map(|s| s.span.name.as_str()).collect();
                panic!("timed out waiting for {what}; received spans: {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Taken> {
        self.taken.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Decodes one export request into `taken`.
fn receive(taken: &Mutex<Taken>, keep: bool, body: &[u8]) -> (StatusCode, Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (
            StatusCode::BAD_REQUEST,
            b"not an ExportTraceServiceRequest".to_vec(),
        );
    };
    let mut taken = taken.lock().unwrap_or_else(|e| e.into_inner());
    taken.requests += 1;
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(
                |attribute| match attribute.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(name) => Some(name.clone()),
                    _ => None,
                },
            )
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            taken.count += scope_spans.spans.len() as u64;
            if keep {
                for span in scope_spans.spans {
                    taken.spans.push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
    }
    (
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}
