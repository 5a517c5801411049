//! What one task's Store holds: its WASI context (with no ambient
//! authority: only what the plugin's grants allow; no preopened
//! directories, sockets refused, stdout and stderr into the task log), its
//! memory limiter, and the host side of the plugin's imports (logging, the
//! key-value store, enqueuing, outgoing HTTP), each checked against the
//! grants.

use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::wasmq::plugin::{enqueue, flow, kv, log};
use super::grants::{
    EnqueueError, FlowRequest, FollowUpRequest, Grants, HttpGrant, HttpTracing, Services,
};
use super::limits::{Limits, MAX_NAME_BYTES};
use super::output::{self, OutputPipe, Stream, Tail, TaskLog};

/// Bytes kept of the end of an attempt's stderr, to explain a trap (a Rust
/// panic message, a Python traceback, a JavaScript error).
const KEPT_STDERR_BYTES: usize = 16 * 1024;

/// Handles (resources) one task may hold at once, in wasmtime's component
/// tables and in the host's table of WASI resources.
pub const MAX_HANDLES: usize = 10_000;

/// Which task an instance is running, for the log lines it writes.
#[derive(Debug, Clone)]
pub struct TaskLabel {
    /// The plugin's name.
    pub plugin: String,
    /// The task id.
    pub task_id: String,
    /// The task type.
    pub task_type: String,
    /// The attempt number.
    pub attempt: u32,
    /// The queue the task came from (follow-ups go there by default).
    pub queue: String,
}

/// Why the host stopped an instance, recorded before it traps so the trap
/// can be classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The attempt's time ran out.
    Timeout,
    /// The task was cancelled (or the worker is shutting down).
    Cancelled,
    /// The plugin logged more than its log budget.
    LogLimit,
}

/// Attempts the host refused because the plugin's grants did not allow
/// them, shared with the hooks that refuse them.
pub type Denials = Arc<Mutex<Vec<String>>>;

fn deny(denials: &Denials, what: String) {
    tracing::debug!(denied = what, "capability denied");
    denials.lock().unwrap_or_else(|e| e.into_inner()).push(what);
}

/// The data of one task's Store.
pub struct HostState {
    /// Built on the first WASI call (see [`wasi_context`]): most tasks
    /// make none, and building one costs more than a no-op task's call.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: HttpHooks,
    /// Enforces the memory cap and remembers that it was hit.
    pub limiter: MemoryLimiter,
    /// Which task this is (shared with its log).
    pub label: Arc<TaskLabel>,
    /// What the plugin may do.
    grants: Arc<Grants>,
    /// Where the key-value store and enqueuing go.
    pub(super) services: Arc<dyn Services>,
    /// The attempt's progress reports.
    pub(super) progress: super::progress::ProgressReports,
    /// The attempt's log and the guest's stdout and stderr, made on the
    /// first `log` call or WASI call (a no-op task makes neither).
    output: Option<TaskOutput>,
    /// The plugin's limits, for the caps on what it passes the host.
    limits: Limits,
    /// Follow-up tasks enqueued by this attempt.
    enqueued: u32,
    /// What the host refused.
    pub denials: Denials,
    /// When the attempt must end.
    pub deadline: Instant,
    /// Fires when the task is cancelled.
    pub cancel: CancellationToken,
    /// Set when the host decided to stop the instance.
    pub stop: Option<Stop>,
}

/// An attempt's log and the guest's stdout and stderr, which write into it.
struct TaskOutput {
    /// `log` calls, stdout and stderr, under one budget.
    log: Arc<TaskLog>,
    stdout: OutputPipe,
    stderr_pipe: OutputPipe,
    /// The end of the guest's stderr, kept to explain traps.
    stderr: Tail,
}

impl TaskOutput {
    fn new(label: &Arc<TaskLabel>, limits: &Limits) -> TaskOutput {
        let stderr = Tail::new(KEPT_STDERR_BYTES);
        let log = Arc::new(TaskLog::new(
            label.clone(),
            limits.max_log_bytes,
            limits.max_log_line_bytes,
        ));
        TaskOutput {
            stdout: OutputPipe::new(log.clone(), Stream::Stdout, None),
            stderr_pipe: OutputPipe::new(log.clone(), Stream::Stderr, Some(stderr.clone())),
            log,
            stderr,
        }
    }
}

/// What a new [`HostState`] needs.
pub struct HostSetup {
    /// Which task this is.
    pub label: TaskLabel,
    /// What the plugin may do.
    pub grants: Arc<Grants>,
    /// Where the key-value store and enqueuing go.
    pub services: Arc<dyn Services>,
    /// Caps the instance's memories, tables and instances.
    pub limiter: MemoryLimiter,
    /// The plugin's limits (log, message, payload and body sizes).
    pub limits: Limits,
    /// When the attempt must end.
    pub deadline: Instant,
    /// Fires when the task is cancelled.
    pub cancel: CancellationToken,
}

impl HostState {
    /// A fresh state for one attempt. Its WASI context is made on the
    /// attempt's first WASI call, as [`wasi_context`] describes.
    pub fn new(setup: HostSetup) -> Self {
        let HostSetup {
            label,
            grants,
            services,
            limiter,
            limits,
            deadline,
            cancel,
        } = setup;
        let denials: Denials = Arc::default();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        HostState {
            wasi: None,
            table,
            http: WasiHttpCtx::new(),
            hooks: HttpHooks {
                grant: grants.http.clone(),
                denials: denials.clone(),
                max_request_bytes: limits.max_http_request_bytes,
                tracing: services.http_tracing(),
            },
            limiter,
            label: Arc::new(label),
            grants,
            services,
            progress: Default::default(),
            output: None,
            limits,
            enqueued: 0,
            denials,
            deadline,
            cancel,
            stop: None,
        }
    }

    /// The attempt's log and output pipes, made on first use.
    fn output(&mut self) -> &TaskOutput {
        let (label, limits) = (&self.label, &self.limits);
        self.output
            .get_or_insert_with(|| TaskOutput::new(label, limits))
    }

    /// The end of what the guest wrote to stderr, lossily decoded.
    pub fn stderr_text(&self) -> String {
        self.output
            .as_ref()
            .map_or_else(String::new, |output| output.stderr.text())
    }

    /// Writes the last lines of stdout and stderr that had no newline.
    pub fn finish_output(&self) {
        if let Some(output) = &self.output {
            output.stdout.finish();
            output.stderr_pipe.finish();
        }
    }

    /// Whether the attempt wrote more than its log budget.
    pub fn over_log_budget(&self) -> bool {
        self.stop == Some(Stop::LogLimit)
            || self
                .output
                .as_ref()
                .is_some_and(|output| output.log.exceeded())
    }

    /// What the host refused, in order.
    pub fn denied(&self) -> Vec<String> {
        self.denials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn refuse(&self, what: String) -> String {
        deny(&self.denials, what.clone());
        what
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        if self.wasi.is_none() {
            let output = self.output();
            let pipes = (output.stdout.clone(), output.stderr_pipe.clone());
            self.wasi = Some(wasi_context(
                &self.grants,
                &self.denials,
                pipes,
                &self.label,
                MAX_RANDOM_BYTES,
            ));
        }
        let ctx = self.wasi.as_mut().expect("made above");
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

/// The WASI context of one attempt: no arguments, no preopened
/// directories, empty stdin, stdout and stderr into the task log, no sockets
/// (every address is refused and recorded in `denials`), only the
/// environment values granted, and real clocks and randomness only when
/// granted (else a fixed clock and randomness seeded from the task id).
fn wasi_context(
    grants: &Grants,
    denials: &Denials,
    (stdout, stderr): (OutputPipe, OutputPipe),
    label: &TaskLabel,
    max_random_bytes: u64,
) -> WasiCtx {
    let mut builder = WasiCtx::builder();
    builder
        .stdout(stdout)
        .stderr(stderr)
        .allow_ip_name_lookup(false)
        .allow_tcp(true)
        .allow_udp(true);
    let socket_denials = denials.clone();
    builder.socket_addr_check(move |address, usage| {
        use wasmtime_wasi::sockets::SocketAddrUse;
        let what = match usage {
            SocketAddrUse::TcpBind => "binding a TCP socket to",
            SocketAddrUse::TcpListen => "listening on",
            SocketAddrUse::TcpAccept => "accepting on",
            SocketAddrUse::TcpConnect => "connecting a TCP socket to",
            SocketAddrUse::UdpBind => "binding a UDP socket to",
            SocketAddrUse::UdpSend => "sending a UDP datagram to",
            SocketAddrUse::UdpReceive => "receiving a UDP datagram from",
        };
        deny(
            &socket_denials,
            format!(
                "{what} {address} (plugins get no sockets; HTTP goes through the http capability)"
            ),
        );
        Box::pin(async { false })
    });
    // Random bytes are made on the host for each call: no more than a
    // plugin could pass back in one call anyway.
    builder.max_random_size(max_random_bytes);
    for (name, value) in &grants.env {
        builder.env(name, value);
    }
    if !grants.clocks {
        builder
            .wall_clock(FixedWallClock)
            .monotonic_clock(StepClock::default());
    }
    if !grants.random {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        label.task_id.hash(&mut hasher);
        let seed = hasher.finish();
        // Seeded from the task id, these bytes are no secret whatever the
        // generator: a fast one (CPython alone asks for 2.5 KB per task, to
        // seed `random`, which took a ChaCha generator a tenth of a task).
        builder
            .secure_random(rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed))
            .insecure_random(rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed ^ 1))
            .insecure_random_seed(u128::from(seed));
    }
    builder.build()
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => output::Level::Trace,
            log::Level::Debug => output::Level::Debug,
            log::Level::Info => output::Level::Info,
            log::Level::Warn => output::Level::Warn,
            log::Level::Error => output::Level::Error,
        };
        // All of a long line counts against the budget; only its start is
        // written.
        if let Err(over) = self.output().log.line(level, message) {
            self.stop = Some(Stop::LogLimit);
            wasmtime::bail!(
                "the plugin logged more than its limit of {} bytes",
                over.limit
            );
        }
        Ok(())
    }
}

/// The most random bytes one WASI call may ask for (wasmtime's default is
/// 64 MiB, made on the host at once).
const MAX_RANDOM_BYTES: u64 = 1024 * 1024;

/// The longest key of the key-value store.
const MAX_KV_KEY: usize = 512;

impl HostState {
    fn kv_grant(&self, call: &str) -> Result<super::grants::KvGrant, String> {
        match &self.grants.kv {
            Some(grant) => Ok(grant.clone()),
            None => Err(self.refuse(format!(
                "kv.{call}: the plugin's manifest does not grant `kv`"
            ))),
        }
    }

    fn kv_key(&self, key: &str) -> Result<(), String> {
        if key.is_empty() || key.len() > MAX_KV_KEY {
            return Err(format!("kv keys are 1 to {MAX_KV_KEY} bytes"));
        }
        Ok(())
    }
}

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
        let grant = match self
            .kv_grant("get")
            .and_then(|grant| self.kv_key(&key).map(|()| grant))
        {
            Ok(grant) => grant,
            Err(err) => return Ok(Err(err)),
        };
        Ok(self.services.kv_get(grant.store, key).await)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        let grant = match self
            .kv_grant("set")
            .and_then(|grant| self.kv_key(&key).map(|()| grant))
        {
            Ok(grant) => grant,
            Err(err) => return Ok(Err(err)),
        };
        if value.len() > grant.max_value_bytes {
            return Ok(Err(self.refuse(format!(
                "kv.set: a value of {} bytes is over the plugin's cap of {} bytes",
                value.len(),
                grant.max_value_bytes
            ))));
        }
        Ok(self
            .services
            .kv_set(grant.store, key, value, grant.max_keys)
            .await)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, String>> {
        let grant = match self
            .kv_grant("delete")
            .and_then(|grant| self.kv_key(&key).map(|()| grant))
        {
            Ok(grant) => grant,
            Err(err) => return Ok(Err(err)),
        };
        Ok(self.services.kv_delete(grant.store, key).await)
    }

    async fn increment(&mut self, key: String, by: i64) -> wasmtime::Result<Result<i64, String>> {
        let grant = match self
            .kv_grant("increment")
            .and_then(|grant| self.kv_key(&key).map(|()| grant))
        {
            Ok(grant) => grant,
            Err(err) => return Ok(Err(err)),
        };
        Ok(self
            .services
            .kv_increment(grant.store, key, by, grant.max_keys)
            .await)
    }
}

impl enqueue::Host for HostState {
    async fn enqueue(
        &mut self,
        task: enqueue::FollowUp,
    ) -> wasmtime::Result<Result<String, String>> {
        let Some(grant) = self.grants.enqueue.clone() else {
            return Ok(Err(self.refuse(
                "enqueue: the plugin's manifest does not grant `enqueue`".into(),
            )));
        };
        if self.enqueued >= grant.max_per_task {
            return Ok(Err(self.refuse(format!(
                "enqueue: the quota of {} follow-up tasks per attempt is used up",
                grant.max_per_task
            ))));
        }
        for (what, text) in [
            ("task type", Some(&task.task_type)),
            ("queue name", task.queue.as_ref()),
            ("task id", task.id.as_ref()),
        ] {
            if let Some(text) = text
                && text.len() > MAX_NAME_BYTES
            {
                return Ok(Err(self.refuse(format!(
                    "enqueue: a {what} of {} bytes is over the limit of {MAX_NAME_BYTES} bytes",
                    text.len()
                ))));
            }
        }
        if task.payload.len() > self.limits.max_enqueue_payload_bytes {
            return Ok(Err(self.refuse(format!(
                "enqueue: a payload of {} bytes is over the plugin's limit of {} bytes",
                task.payload.len(),
                self.limits.max_enqueue_payload_bytes
            ))));
        }
        if !grant.task_types.is_empty() && !grant.task_types.contains(&task.task_type) {
            return Ok(Err(self.refuse(format!(
                "enqueue: task type {:?} is not one the manifest grants ({})",
                task.task_type,
                grant.task_types.join(", ")
            ))));
        }
        let queue = task.queue.unwrap_or_else(|| self.label.queue.clone());
        if !grant.queues.is_empty() && !grant.queues.contains(&queue) {
            return Ok(Err(self.refuse(format!(
                "enqueue: queue {queue:?} is not one the manifest grants ({})",
                grant.queues.join(", ")
            ))));
        }
        let payload = match String::from_utf8(task.payload) {
            Ok(payload) => payload,
            Err(_) => return Ok(Err("enqueue: the payload is not UTF-8 JSON text".into())),
        };
        self.enqueued += 1;
        let request = FollowUpRequest {
            task_type: task.task_type,
            payload,
            queue,
            delay: task.delay_ms.map(Duration::from_millis),
            id: task.id,
        };
        match self.services.enqueue(request).await {
            Ok(id) => Ok(Ok(id)),
            Err(EnqueueError::Failed(message)) => Ok(Err(message)),
            // Past a cap on follow-ups the attempt ends here, failing as
            // `denied`: a plugin that ignored the refusal would go on
            // trying (and succeed, so that nothing noticed).
            Err(EnqueueError::Denied(message)) => {
                self.refuse(format!("enqueue: {message}"));
                Err(wasmtime::Error::msg(
                    "the host ended the attempt at a refused follow-up",
                ))
            }
        }
    }
}

impl flow::Host for HostState {
    async fn children(&mut self) -> wasmtime::Result<Vec<flow::ChildOutcome>> {
        Ok(self
            .services
            .children()
            .into_iter()
            .map(|child| {
                let (completed, result, error) = match child.outcome {
                    Ok(result) => (true, result, None),
                    Err(error) => (false, Vec::new(), Some(error)),
                };
                flow::ChildOutcome {
                    id: child.id,
                    queue: child.queue,
                    task_type: child.task_type,
                    completed,
                    output: result,
                    error,
                }
            })
            .collect())
    }

    async fn start_flow(&mut self, text: Vec<u8>) -> wasmtime::Result<Result<String, String>> {
        let request = match self.flow_request("start-flow", text) {
            Ok(request) => request,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let started = self.services.start_flow(request).await;
        Ok(self.counted("start-flow", started)?.map(|(id, _)| id))
    }

    async fn add_children(&mut self, text: Vec<u8>) -> wasmtime::Result<Result<u32, String>> {
        let request = match self.flow_request("add-children", text) {
            Ok(request) => request,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let added = self
            .services
            .add_children(request)
            .await
            .map(|tasks| ((), tasks));
        Ok(self
            .counted("add-children", added)?
            .map(|((), tasks)| tasks))
    }
}

impl HostState {
    /// The request for a flow's tasks (`what`: the import asking), or why
    /// the plugin may not enqueue them: no `enqueue` grant, its quota used
    /// up, a text larger than the quota's worth of payloads, not UTF-8.
    fn flow_request(&mut self, what: &str, text: Vec<u8>) -> Result<FlowRequest, String> {
        let Some(grant) = self.grants.enqueue.clone() else {
            return Err(self.refuse(format!(
                "{what}: the plugin's manifest does not grant `enqueue`"
            )));
        };
        let left = grant.max_per_task.saturating_sub(self.enqueued);
        if left == 0 {
            return Err(self.refuse(format!(
                "{what}: the quota of {} follow-up tasks per attempt is used up",
                grant.max_per_task
            )));
        }
        // A flow's text holds many payloads: the cap is the quota's worth.
        let most = self
            .limits
            .max_enqueue_payload_bytes
            .saturating_mul(left as usize);
        if text.len() > most {
            return Err(self.refuse(format!(
                "{what}: {} bytes of tasks are over the {most} bytes the plugin may enqueue now",
                text.len()
            )));
        }
        let Ok(json) = String::from_utf8(text) else {
            return Err(format!("{what}: the tasks are not UTF-8 JSON text"));
        };
        Ok(FlowRequest {
            json,
            default_queue: self.label.queue.clone(),
            task_types: grant.task_types.clone(),
            queues: grant.queues.clone(),
            max_tasks: left,
        })
    }

    /// Counts the tasks a flow request enqueued against the attempt's
    /// quota; a refusal the host denied (not granted, over a cap) ends the
    /// attempt, one that merely failed is the plugin's to handle.
    fn counted<T>(
        &mut self,
        what: &str,
        outcome: Result<(T, u32), EnqueueError>,
    ) -> wasmtime::Result<Result<(T, u32), String>> {
        match outcome {
            Ok((value, tasks)) => {
                self.enqueued = self.enqueued.saturating_add(tasks);
                Ok(Ok((value, tasks)))
            }
            Err(EnqueueError::Failed(message)) => Ok(Err(format!("{what}: {message}"))),
            Err(EnqueueError::Denied(message)) => {
                self.refuse(format!("{what}: {message}"));
                Err(wasmtime::Error::msg(
                    "the host ended the attempt at a refused flow",
                ))
            }
        }
    }
}

/// Outgoing HTTP for one attempt: only to the granted hosts, with the
/// granted timeouts, and response bodies cut at the granted size.
struct HttpHooks {
    grant: Option<HttpGrant>,
    denials: Denials,
    /// The largest request body sent.
    max_request_bytes: u64,
    /// A span per request, when the worker traces.
    tracing: Option<Arc<dyn HttpTracing>>,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let uri = request.uri().clone();
        let host = uri.host().unwrap_or_default().to_string();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let Some(grant) = self.grant.clone() else {
            deny(
                &self.denials,
                format!("HTTP to {host}:{port}: the plugin's manifest does not grant `http`"),
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        };
        if !grant
            .allow
            .iter()
            .any(|pattern| pattern.matches(&host, port))
        {
            let allowed: Vec<String> = grant.allow.iter().map(ToString::to_string).collect();
            deny(
                &self.denials,
                format!(
                    "HTTP to {host}:{port}, which is not in the plugin's allow list ({})",
                    allowed.join(", ")
                ),
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let denials = self.denials.clone();
        let mut request = request;
        // The request's span: its context replaces any the guest sent.
        let span = self.tracing.as_ref().map(|tracing| {
            let span = tracing.request(request.method(), &uri);
            let headers = request.headers_mut();
            if let Ok(value) = http::HeaderValue::from_str(&span.traceparent()) {
                headers.insert("traceparent", value);
            }
            headers.remove("tracestate");
            if let Some(value) = span
                .tracestate()
                .and_then(|state| http::HeaderValue::from_str(&state).ok())
            {
                headers.insert("tracestate", value);
            }
            span
        });
        let request = request.map(|body| {
            LimitedBody {
                inner: body,
                left: self.max_request_bytes,
                limit: self.max_request_bytes,
                denials: denials.clone(),
                direction: Direction::Request,
            }
            .boxed_unsync()
        });
        Box::new(async move {
            let sent = grant.client.send(request).await;
            if let Some(span) = span {
                span.end(match &sent {
                    Ok(response) => Ok(response.status().as_u16()),
                    Err(err) => Err(err.to_string()),
                });
            }
            let response = sent?;
            let limited = response.map(|body| {
                LimitedBody {
                    inner: body.boxed_unsync(),
                    left: grant.max_response_bytes,
                    limit: grant.max_response_bytes,
                    denials,
                    direction: Direction::Response,
                }
                .boxed_unsync()
            });
            // The pool drives the connection; nothing is left to await.
            let io = async { Ok(()) };
            Ok((
                limited,
                Box::new(io)
                    as Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
            ))
        })
    }
}

/// A request or response body that fails once it exceeds its cap.
struct LimitedBody {
    inner: wasmtime_wasi_http::WasiBody,
    left: u64,
    limit: u64,
    denials: Denials,
    direction: Direction,
}

/// Which way a [`LimitedBody`] goes.
#[derive(Clone, Copy)]
enum Direction {
    /// The plugin's request, capped by its limits.
    Request,
    /// The response, capped by its grant.
    Response,
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let size = data.len() as u64;
            if size > self.left {
                let limit = self.limit;
                let (what, error) = match self.direction {
                    Direction::Request => (
                        "request body",
                        wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit)),
                    ),
                    Direction::Response => (
                        "response",
                        wasmtime_wasi_http::Error::HttpResponseBodySize(Some(limit)),
                    ),
                };
                deny(
                    &self.denials,
                    format!("an HTTP {what} over the plugin's limit of {limit} bytes"),
                );
                return Poll::Ready(Some(Err(error)));
            }
            self.left -= size;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The wall clock of a plugin without the `clocks` capability: always
/// 2000-01-01T00:00:00Z.
struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::from_secs(946_684_800)
    }
}

/// The monotonic clock of a plugin without the `clocks` capability: it
/// moves forward 1 µs each time it is read, and tells nothing of real time.
#[derive(Default)]
struct StepClock {
    reads: AtomicU64,
}

impl HostMonotonicClock for StepClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::Relaxed) * 1_000
    }
}

/// Caps everything one task's instance allocates, all its core instances
/// together: the bytes of every linear memory and every table (counted at
/// [`TABLE_ELEMENT_BYTES`] an element) add up against one cap, and the
/// numbers of core instances, memories and tables are capped too. Remembers
/// when the byte cap was hit, so the resulting trap is reported as
/// out-of-memory.
pub struct MemoryLimiter {
    /// The cap on memories and tables together, bytes.
    max_bytes: u64,
    /// What the instance holds now, bytes.
    used: u64,
    /// The growth last allowed, taken back if wasmtime could not make it.
    pending: u64,
    /// The most elements of one table.
    max_table_elements: usize,
    /// The most core instances, memories and tables.
    counts: ComponentCounts,
    /// Set (to the total asked for) when a growth past the cap was refused.
    pub hit: Option<u64>,
}

/// What one task's instance may hold of each kind.
#[derive(Debug, Clone, Copy)]
pub struct ComponentCounts {
    /// Core instances.
    pub core_instances: usize,
    /// Linear memories.
    pub memories: usize,
    /// Tables.
    pub tables: usize,
}

/// What one table element costs the host (a pointer), for the byte cap.
pub const TABLE_ELEMENT_BYTES: u64 = 8;

impl MemoryLimiter {
    /// A limiter holding an instance to `max_bytes` of memories and tables
    /// together, `max_table_elements` per table and `counts`.
    pub fn new(max_bytes: u64, max_table_elements: usize, counts: ComponentCounts) -> Self {
        MemoryLimiter {
            max_bytes,
            used: 0,
            pending: 0,
            max_table_elements,
            counts,
            hit: None,
        }
    }

    fn grow(&mut self, current: u64, desired: u64, what: &str) -> wasmtime::Result<bool> {
        let delta = desired.saturating_sub(current);
        let total = self.used.saturating_add(delta);
        if total > self.max_bytes {
            self.hit = Some(total);
            wasmtime::bail!(
                "memory cap of {} bytes reached: growing a {what} would bring the instance's memories and tables to {total} bytes",
                self.max_bytes
            );
        }
        self.used = total;
        self.pending = delta;
        Ok(true)
    }

    fn grow_failed(&mut self) {
        self.used = self.used.saturating_sub(std::mem::take(&mut self.pending));
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current as u64, desired as u64, "memory")
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            wasmtime::bail!(
                "table cap of {} elements reached: the instance asked for {desired}",
                self.max_table_elements
            );
        }
        let bytes = |elements: usize| (elements as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow(bytes(current), bytes(desired), "table")
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn instances(&self) -> usize {
        self.counts.core_instances
    }

    fn memories(&self) -> usize {
        self.counts.memories
    }

    fn tables(&self) -> usize {
        self.counts.tables
    }
}
