//! Traces over OTLP, received by the test kit's receiver: a task enqueued
//! under a producer's span yields one span per attempt under that span (the
//! retry linked to the first attempt), a sandbox span under each and a span
//! per outgoing HTTP request under the sandbox span, whose context the
//! upstream server sees as `traceparent`; a follow-up carries its attempt's
//! context; a worker told nothing exports nothing.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmq::{NewTask, TaskState, TraceContext};
use wasmq_testkit::otlp::{Received, Receiver};
use wasmq_testkit::*;

use crate::support::{Env, WASMQ};

const PRODUCER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

/// An HTTP server on loopback that answers 200 and keeps the head of every
/// request it gets.
fn upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = heads.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 8192];
            let read = stream.read(&mut request).unwrap_or(0);
            kept.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&request[..read]).to_string());
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    (port, heads)
}

/// The value of header `name` in a request head.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// A worker exporting to `receiver`, quickly (a short batch delay) and
/// retrying quickly.
fn traced_worker(env: &Env, plugins: &Path, receiver: &Receiver) -> WasmqProcess {
    let mut command = WasmqProcess::command(Path::new(WASMQ));
    command
        .args(["worker", "--redis", &env.url(), "--no-scheduler"])
        .args(["--retry-delay", "50ms", "--allow-env", "relay=REGION"])
        .args(["--allow-secret", "relay=TOKEN", "--plugins"])
        .arg(plugins)
        .args(["--otlp-endpoint", &receiver.endpoint()])
        .env("OTEL_SERVICE_NAME", "traces-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let worker = WasmqProcess::spawn(command);
    crate::support::serving(worker)
}

/// The one span named `name` with attribute `key` = `value`.
fn find<'a>(spans: &'a [Received], name: &str, key: &str, value: &str) -> &'a Received {
    let found: Vec<&Received> = spans
        .iter()
        .filter(|span| span.span.name == name && span.attribute(key).as_deref() == Some(value))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {name} span with {key}={value}; received: {spans:#?}"
    );
    found[0]
}

/// A task that fails once, then makes one HTTP call and succeeds, yields
/// two attempt spans under the producer's span (the second linked to the
/// first), a sandbox span under each, and the request's span under the
/// second sandbox span; the upstream server sees that span as the
/// request's `traceparent`, whatever the guest sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_task_with_a_request_yields_its_tree_of_spans() {
    let env = Env::start().await;
    let receiver = Receiver::start().await;
    let (port, heads) = upstream();
    let plugins = PluginDir::with(&[RELAY_COMPONENT, ECHO_COMPONENT]);
    let mut worker = traced_worker(&env, plugins.path(), &receiver);

    let producer = TraceContext::from_ids(PRODUCER_TRACE, PRODUCER_SPAN, true).unwrap();
    let task = NewTask::new(
        "relay:fetch",
        format!(r#"{{"url":"http://127.0.0.1:{port}/hook?secret=1","fail_attempts":1}}"#),
    )
    .unwrap()
    .max_retry(3)
    .trace(producer);
    let id = env.client.enqueue(task).await.unwrap().id;
    let info = env
        .wait_for_state(
            "default",
            &id,
            TaskState::Completed,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(info.attempts, 2, "failed once, then succeeded");
    assert_eq!(
        info.message.trace.as_ref().map(TraceContext::trace_id),
        Some(PRODUCER_TRACE),
        "the stored message keeps the producer's context"
    );

    let spans = receiver
        .wait_for(Duration::from_secs(30), "five spans", |spans| {
            spans.len() >= 5
        })
        .await;
    assert!(spans.iter().all(|span| span.service == "traces-test"));
    assert!(
        spans.iter().all(|span| span.trace_id() == PRODUCER_TRACE),
        "every span is in the producer's trace: {spans:#?}"
    );
    let first = find(&spans, "attempt relay:fetch", "wasmq.task.attempt", "1");
    let second = find(&spans, "attempt relay:fetch", "wasmq.task.attempt", "2");
    for attempt in [first, second] {
        assert_eq!(attempt.parent_span_id(), PRODUCER_SPAN);
        assert_eq!(
            attempt.attribute("messaging.message.id").as_deref(),
            Some(id.as_str())
        );
        assert_eq!(
            attempt.attribute("messaging.destination.name").as_deref(),
            Some("default")
        );
        assert_eq!(
            attempt.attribute("wasmq.task.type").as_deref(),
            Some("relay:fetch")
        );
        assert_eq!(
            attempt.attribute("wasmq.plugin.name").as_deref(),
            Some("relay")
        );
        assert!(attempt.attribute("wasmq.plugin.version").is_some());
        assert!(attempt.attribute("wasmq.fuel.used").is_some());
    }
    assert_eq!(first.attribute("wasmq.outcome").as_deref(), Some("retry"));
    assert_eq!(
        first.attribute("wasmq.failure.class").as_deref(),
        Some("handler-error")
    );
    assert_eq!(
        second.attribute("wasmq.outcome").as_deref(),
        Some("completed")
    );
    assert_eq!(second.attribute("wasmq.failure.class"), None);
    assert!(first.links().is_empty());
    assert_eq!(
        second.links(),
        vec![(PRODUCER_TRACE.to_string(), first.span_id())],
        "the retry links to the first attempt"
    );

    let sandboxes: Vec<&Received> = spans
        .iter()
        .filter(|span| span.span.name == "sandbox relay")
        .collect();
    assert_eq!(sandboxes.len(), 2, "{spans:#?}");
    let mut parents: Vec<String> = sandboxes.iter().map(|s| s.parent_span_id()).collect();
    parents.sort();
    let mut attempts = vec![first.span_id(), second.span_id()];
    attempts.sort();
    assert_eq!(parents, attempts, "one sandbox span under each attempt");
    let second_sandbox = sandboxes
        .iter()
        .find(|span| span.parent_span_id() == second.span_id())
        .unwrap();

    let request = spans
        .iter()
        .find(|span| span.span.name == "GET")
        .expect("the request's span");
    assert_eq!(request.parent_span_id(), second_sandbox.span_id());
    assert_eq!(
        request.attribute("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        request.attribute("url.full"),
        Some(format!("http://127.0.0.1:{port}/hook")),
        "the query is left out of the span"
    );
    assert_eq!(spans.len(), 5, "nothing else: {spans:#?}");

    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "one request reached upstream");
    assert_eq!(
        header(&heads[0], "traceparent"),
        Some(format!("00-{PRODUCER_TRACE}-{}-01", request.span_id())),
        "the request carries its span's context: {}",
        heads[0]
    );
    worker.terminate(Duration::from_secs(20)).await;
}

/// A follow-up enqueued by a plugin carries the context of the attempt
/// that enqueued it; a task with no context gets a trace of its own, and
/// its follow-up continues it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_descends_from_the_attempt_that_enqueued_it() {
    let env = Env::start().await;
    let receiver = Receiver::start().await;
    let plugins = PluginDir::with(&[RELAY_COMPONENT, ECHO_COMPONENT]);
    let mut worker = traced_worker(&env, plugins.path(), &receiver);

    let id = env
        .client
        .enqueue(NewTask::new("relay:fanout", r#"{"n":1}"#).unwrap())
        .await
        .unwrap()
        .id;
    let info = env
        .wait_for_state(
            "default",
            &id,
            TaskState::Completed,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(info.message.trace, None, "enqueued with no context");
    let result: serde_json::Value =
        serde_json::from_slice(info.result.as_deref().unwrap()).unwrap();
    let child = result["enqueued"][0].as_str().unwrap().to_string();
    let child_info = env
        .wait_for_state(
            "default",
            &child,
            TaskState::Completed,
            Duration::from_secs(60),
        )
        .await;

    let spans = receiver
        .wait_for(Duration::from_secs(30), "both attempts", |spans| {
            spans
                .iter()
                .filter(|s| s.span.name.starts_with("attempt "))
                .count()
                >= 2
        })
        .await;
    let parent = find(&spans, "attempt relay:fanout", "messaging.message.id", &id);
    assert_eq!(
        parent.parent_span_id(),
        "",
        "a task with no context is a root"
    );
    let carried = child_info
        .message
        .trace
        .expect("the follow-up carries a context");
    assert_eq!(
        (carried.trace_id(), carried.span_id()),
        (parent.trace_id().as_str(), parent.span_id().as_str()),
        "the follow-up's context is its parent's attempt"
    );
    let child_span = find(&spans, "attempt echo", "messaging.message.id", &child);
    assert_eq!(child_span.trace_id(), parent.trace_id());
    assert_eq!(child_span.parent_span_id(), parent.span_id());
    worker.terminate(Duration::from_secs(20)).await;
}

/// Without --otlp-endpoint or an OTEL_EXPORTER_OTLP_* endpoint (an empty
/// one is none) a worker exports nothing, not even to the OTLP default
/// address (127.0.0.1:4318, watched by a receiver when the port is free),
/// though its tasks carry sampled contexts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_nothing_exports_nothing() {
    let env = Env::start().await;
    let default_address = Receiver::start_at("127.0.0.1:4318").await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let mut command = WasmqProcess::command(Path::new(WASMQ));
    command
        .args([
            "worker",
            "--redis",
            &env.url(),
            "--no-scheduler",
            "--plugins",
        ])
        .arg(plugins.path())
        .env("OTEL_SERVICE_NAME", "traces-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "");
    let mut worker = crate::support::serving(WasmqProcess::spawn(command));
    for _ in 0..3 {
        let producer = TraceContext::from_ids(PRODUCER_TRACE, PRODUCER_SPAN, true).unwrap();
        let id = env
            .client
            .enqueue(NewTask::new("echo", "{}").unwrap().trace(producer))
            .await
            .unwrap()
            .id;
        env.wait_for_state(
            "default",
            &id,
            TaskState::Completed,
            Duration::from_secs(60),
        )
        .await;
    }
    // Shutting down flushes whatever an exporter would hold.
    worker.terminate(Duration::from_secs(20)).await;
    let log = worker.log();
    assert!(!log.contains("OTLP"), "no exporter was set up: {log}");
    match default_address {
        Some(receiver) => assert_eq!(receiver.requests(), 0, "nothing reached 127.0.0.1:4318"),
        None => eprintln!("127.0.0.1:4318 is taken here: only the worker's log was checked"),
    }
}
