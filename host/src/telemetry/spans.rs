//! The spans of a task's attempts: one per attempt (a consumer span, child
//! of the context the task carries), the sandbox run under it, and each
//! outgoing HTTP request under that (a client span, whose context the
//! request carries as `traceparent`).
//!
//! Every attempt after the first links to the first. The first attempt's
//! span id is derived from the task (its trace and id), and so is the trace
//! id of a task that carries no context, so any later attempt, on any
//! worker, names the first without anything being stored: [`PinnedIds`]
//! hands the SDK these ids when the first attempt's span starts.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Arc;

use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};
use sha2::{Digest, Sha256};

use super::Tracing;
use crate::TraceContext;
use crate::sandbox::{HttpSpan, HttpTracing};
use crate::task::{TaskFailure, TaskMessage};

thread_local! {
    /// The ids the next span started on this thread takes, if set.
    static PINNED_TRACE: Cell<Option<TraceId>> = const { Cell::new(None) };
    static PINNED_SPAN: Cell<Option<SpanId>> = const { Cell::new(None) };
}

/// Random ids, except those pinned for the span being started on this
/// thread (see the module docs).
#[derive(Debug, Default)]
pub(super) struct PinnedIds(RandomIdGenerator);

impl IdGenerator for PinnedIds {
    fn new_trace_id(&self) -> TraceId {
        PINNED_TRACE.take().unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        PINNED_SPAN.take().unwrap_or_else(|| self.0.new_span_id())
    }
}

/// Runs `start` (which starts one span) with these ids pinned.
fn pinned<T>(trace: Option<TraceId>, span: Option<SpanId>, start: impl FnOnce() -> T) -> T {
    PINNED_TRACE.set(trace);
    PINNED_SPAN.set(span);
    let started = start();
    PINNED_TRACE.set(None);
    PINNED_SPAN.set(None);
    started
}

/// The first 8 or 16 bytes of a SHA-256 of `parts`, never zero.
fn digest(parts: &[&str]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize().into()
}

/// The trace of a task that carries no context: all its attempts share it.
fn derived_trace_id(message: &TaskMessage) -> TraceId {
    let hash = digest(&[
        "wasmq trace",
        &message.queue,
        &message.id,
        &message.enqueued_at_ms.to_string(),
    ]);
    let id = u128::from_be_bytes(hash[..16].try_into().expect("16 bytes"));
    TraceId::from(id.max(1))
}

/// The span id of the task's first attempt in `trace`.
fn first_attempt_span_id(trace: TraceId, message: &TaskMessage) -> SpanId {
    let hash = digest(&[
        "wasmq first attempt",
        &trace.to_string(),
        &message.queue,
        &message.id,
    ]);
    let id = u64::from_be_bytes(hash[..8].try_into().expect("8 bytes"));
    SpanId::from(id.max(1))
}

/// A stored context as a remote parent, if it is well formed.
fn span_context_of(context: &TraceContext) -> Option<SpanContext> {
    context.check().ok()?;
    let trace = TraceId::from_hex(context.trace_id()).ok()?;
    let span = SpanId::from_hex(context.span_id()).ok()?;
    let state = context
        .tracestate()
        .and_then(|state| state.parse::<TraceState>().ok())
        .unwrap_or_default();
    let flags = TraceFlags::new(context.flags() & TraceFlags::SAMPLED.to_u8());
    Some(SpanContext::new(trace, span, flags, true, state))
}

/// A span's context as a task or a request carries it.
pub(super) fn trace_context_of(span: &SpanContext) -> Option<TraceContext> {
    if !span.is_valid() {
        return None;
    }
    let state = span.trace_state().header();
    TraceContext::from_ids(
        &span.trace_id().to_string(),
        &span.span_id().to_string(),
        span.is_sampled(),
    )
    .ok()?
    .with_tracestate(Some(state))
    .ok()
}

/// What runs an attempt, as its span names it.
pub(crate) enum Runner<'a> {
    /// A plugin, by name and version.
    Plugin { name: &'a str, version: &'a str },
    /// A native handler of the embedding program.
    Native,
    /// Nothing handles the task's type.
    Missing,
}

/// A worker's tracer: where its spans are made and exported.
#[derive(Clone)]
pub(crate) struct Tracer {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Tracer {
    /// Starts exporting as `tracing` says, each export run on `runtime`.
    pub fn start(tracing: &Tracing, runtime: tokio::runtime::Handle) -> Result<Tracer, String> {
        let provider = super::export::provider(tracing, runtime)?;
        let tracer = provider.tracer("wasmq");
        Ok(Tracer { provider, tracer })
    }

    /// Exports what is left and stops (off the async threads: the exports
    /// run on the runtime this waits on).
    pub async fn shutdown(self) {
        let provider = self.provider;
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(err)) = flushed {
            tracing::warn!(%err, "could not export the last spans");
        }
    }

    /// Opens the span of attempt `attempt` of `message`, run by `runner`.
    pub fn attempt(&self, message: &TaskMessage, attempt: u32, runner: Runner<'_>) -> AttemptSpan {
        let producer = message.trace.as_ref().and_then(span_context_of);
        let parent = match &producer {
            Some(span) => Context::new().with_remote_span_context(span.clone()),
            None => Context::new(),
        };
        let trace = producer
            .as_ref()
            .map_or_else(|| derived_trace_id(message), SpanContext::trace_id);
        let first = first_attempt_span_id(trace, message);
        let mut attributes = vec![
            KeyValue::new("messaging.system", "wasmq"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.name", message.queue.clone()),
            KeyValue::new("messaging.message.id", message.id.clone()),
            KeyValue::new("wasmq.task.type", message.task_type.clone()),
            KeyValue::new("wasmq.task.attempt", i64::from(attempt)),
            KeyValue::new("wasmq.task.max_retry", i64::from(message.max_retry)),
        ];
        match runner {
            Runner::Plugin { name, version } => {
                attributes.push(KeyValue::new("wasmq.plugin.name", name.to_string()));
                attributes.push(KeyValue::new("wasmq.plugin.version", version.to_string()));
            }
            Runner::Native => attributes.push(KeyValue::new("wasmq.handler", "native")),
            Runner::Missing => attributes.push(KeyValue::new("wasmq.handler", "none")),
        }
        let mut builder = self
            .tracer
            .span_builder(format!("attempt {}", message.task_type))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes);
        if attempt > 1 {
            let first_attempt =
                SpanContext::new(trace, first, TraceFlags::SAMPLED, true, TraceState::NONE);
            builder = builder.with_links(vec![Link::with_context(first_attempt)]);
        }
        let span = pinned(
            producer.is_none().then_some(trace),
            (attempt == 1).then_some(first),
            || builder.start_with_context(&self.tracer, &parent),
        );
        AttemptSpan {
            context: parent.with_span(span),
            tracer: self.tracer.clone(),
        }
    }
}

/// The span of one attempt.
pub(crate) struct AttemptSpan {
    context: Context,
    tracer: SdkTracer,
}

impl AttemptSpan {
    /// This span as a context a follow-up task carries.
    pub fn trace_context(&self) -> Option<TraceContext> {
        trace_context_of(self.context.span().span_context())
    }

    /// Opens the span of the attempt's run in a sandbox instance of
    /// `plugin`.
    pub fn sandbox(&self, plugin: &str) -> SandboxSpan {
        let span = self
            .tracer
            .span_builder(format!("sandbox {plugin}"))
            .with_kind(SpanKind::Internal)
            .start_with_context(&self.tracer, &self.context);
        SandboxSpan {
            context: self.context.with_span(span),
            tracer: self.tracer.clone(),
        }
    }

    /// Ends the span: what became of the task (`outcome`), why the attempt
    /// failed if it did, and the fuel it burned.
    pub fn end(self, outcome: &'static str, failure: Option<&TaskFailure>, fuel: Option<u64>) {
        let span = self.context.span();
        span.set_attribute(KeyValue::new("wasmq.outcome", outcome));
        if let Some(fuel) = fuel {
            span.set_attribute(KeyValue::new(
                "wasmq.fuel.used",
                i64::try_from(fuel).unwrap_or(i64::MAX),
            ));
        }
        if let Some(failure) = failure {
            set_failure(&span, failure);
        }
        span.end();
    }
}

/// Marks a span failed with `failure`'s class and message.
fn set_failure(span: &opentelemetry::trace::SpanRef<'_>, failure: &TaskFailure) {
    span.set_attribute(KeyValue::new("wasmq.failure.class", failure.kind.as_str()));
    span.set_attribute(KeyValue::new("error.type", failure.kind.as_str()));
    span.set_status(Status::error(failure.message.clone()));
}

/// The span of an attempt's run in a sandbox instance.
pub(crate) struct SandboxSpan {
    context: Context,
    tracer: SdkTracer,
}

impl SandboxSpan {
    /// What traces the run's outgoing requests, under this span.
    pub fn http(&self) -> Arc<dyn HttpTracing> {
        Arc::new(RequestTracer {
            context: self.context.clone(),
            tracer: self.tracer.clone(),
        })
    }

    /// Ends the span with what the run measured.
    pub fn end(
        self,
        failure: Option<&TaskFailure>,
        fuel: Option<u64>,
        instantiate: Option<std::time::Duration>,
    ) {
        let span = self.context.span();
        if let Some(fuel) = fuel {
            span.set_attribute(KeyValue::new(
                "wasmq.fuel.used",
                i64::try_from(fuel).unwrap_or(i64::MAX),
            ));
        }
        if let Some(instantiate) = instantiate {
            span.set_attribute(KeyValue::new(
                "wasmq.instantiate_ms",
                instantiate.as_secs_f64() * 1000.0,
            ));
        }
        if let Some(failure) = failure {
            set_failure(&span, failure);
        }
        span.end();
    }
}

/// Opens a client span per outgoing request, under a sandbox span.
struct RequestTracer {
    context: Context,
    tracer: SdkTracer,
}

impl HttpTracing for RequestTracer {
    fn request(&self, method: &http::Method, uri: &http::Uri) -> Box<dyn HttpSpan> {
        let scheme = uri.scheme_str().unwrap_or("http");
        let host = uri.host().unwrap_or_default();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        // The query is left out: it may carry secrets.
        let url = format!("{scheme}://{host}:{port}{}", uri.path());
        let span = self
            .tracer
            .span_builder(Cow::Owned(method.as_str().to_string()))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", method.as_str().to_string()),
                KeyValue::new("url.full", url),
                KeyValue::new("server.address", host.to_string()),
                KeyValue::new("server.port", i64::from(port)),
            ])
            .start_with_context(&self.tracer, &self.context);
        Box::new(RequestSpan {
            context: self.context.with_span(span),
        })
    }
}

/// The span of one outgoing request.
struct RequestSpan {
    context: Context,
}

impl HttpSpan for RequestSpan {
    fn traceparent(&self) -> String {
        let span = self.context.span();
        let context = span.span_context();
        format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8() & TraceFlags::SAMPLED.to_u8()
        )
    }

    fn tracestate(&self) -> Option<String> {
        let state = self.context.span().span_context().trace_state().header();
        (!state.is_empty()).then_some(state)
    }

    fn end(self: Box<Self>, status: Result<u16, String>) {
        let span = self.context.span();
        match status {
            Ok(code) => {
                span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
                if code >= 400 {
                    span.set_attribute(KeyValue::new("error.type", code.to_string()));
                    span.set_status(Status::error(format!("HTTP {code}")));
                }
            }
            Err(err) => {
                span.set_attribute(KeyValue::new("error.type", "request-failed"));
                span.set_status(Status::error(err));
            }
        }
        span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_goes_to_a_span_context_and_back() {
        let context = TraceContext::new(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("vendor=x"),
        )
        .unwrap();
        let span = span_context_of(&context).unwrap();
        assert!(span.is_remote() && span.is_sampled());
        assert_eq!(trace_context_of(&span), Some(context));
    }

    #[test]
    fn pinned_ids_are_taken_once() {
        let ids = PinnedIds::default();
        let (trace, span) = (TraceId::from(7u128), SpanId::from(9u64));
        let taken = pinned(Some(trace), Some(span), || {
            (ids.new_trace_id(), ids.new_span_id(), ids.new_span_id())
        });
        assert_eq!((taken.0, taken.1), (trace, span));
        assert_ne!(taken.2, span);
        assert_ne!(ids.new_trace_id(), trace);
    }
}
