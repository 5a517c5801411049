//! The producer's API: describe a task with [`NewTask`], enqueue it with
//! [`Client`].

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::keys::validate_queue_name;
use super::scripts::SCRIPTS;
use super::{Broker, ConnectOptions, Error, QueueCounts, TaskInfo, invocation, millis};
use crate::TraceContext;
use crate::task::{
    ConcurrencyLimit, Lineage, MAX_JSON_DEPTH, TaskMessage, TaskState, WhenBusy, check_duration,
    check_time, json_depth,
};

/// The queue a task goes to when none is named.
pub const DEFAULT_QUEUE: &str = "default";
/// Retries after the first attempt, unless the task says otherwise.
pub const DEFAULT_MAX_RETRY: u32 = 25;
/// How long a completed task and its result are kept, unless the task says
/// otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(10 * 60);
/// The largest payload a client accepts, unless configured otherwise.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// The longest task id accepted.
const MAX_ID_BYTES: usize = 256;

/// The longest group name accepted.
const MAX_GROUP_BYTES: usize = 128;
/// Most tasks one script call of a batch enqueue carries.
const BATCH_CHUNK: usize = 500;

/// Splits `items` into consecutive chunks of at most `max_items` items and,
/// unless one item alone is larger, at most `max_bytes` bytes (`size` of
/// each item).
fn bounded_chunks<T>(
    items: &[T],
    max_items: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, item) in items.iter().enumerate() {
        let item_bytes = size(item);
        let full = index - start == max_items || (index > start && bytes + item_bytes > max_bytes);
        if full {
            chunks.push(&items[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += item_bytes;
    }
    if start < items.len() {
        chunks.push(&items[start..]);
    }
    chunks
}

/// When a task becomes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Now,
    In(Duration),
    At(SystemTime),
}

/// A task to enqueue: its type, its JSON payload and its options.
///
/// ```
/// # use std::time::Duration;
/// # use wasmq::NewTask;
/// let task = NewTask::new("thumbnail:make", r#"{"width": 64}"#)
///     .unwrap()
///     .queue("images")
///     .max_retry(5)
///     .timeout(Duration::from_secs(30));
/// ```
#[derive(Debug, Clone)]
pub struct NewTask {
    task_type: String,
    payload: Box<RawValue>,
    queue: String,
    id: Option<String>,
    due: Due,
    max_retry: u32,
    timeout: Option<Duration>,
    deadline: Option<SystemTime>,
    retention: Duration,
    unique: Option<Duration>,
    reserve_id: Option<Duration>,
    limit: Option<ConcurrencyLimit>,
    lineage: Option<Lineage>,
    debounce: Option<String>,
    trace: Option<TraceContext>,
    batch: Option<String>,
    group: Option<String>,
    unique_extends: bool,
    aggregate: Option<Aggregation>,
}

/// How a task joins an aggregation ([`NewTask::aggregate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Aggregation {
    key: String,
    after: Duration,
    max_group: u32,
}

/// The most tasks one aggregated batch may hold.
pub const MAX_AGGREGATE_GROUP: u32 = 100_000;

impl NewTask {
    /// A task of `task_type` with a payload given as JSON text. Fails if the
    /// payload is not JSON or the type is empty.
    pub fn new(
        task_type: impl Into<String>,
        payload_json: impl Into<String>,
    ) -> Result<Self, Error> {
        let task_type = task_type.into();
        let payload = RawValue::from_string(payload_json.into()).map_err(|err| {
            Error::InvalidTask(format!(
                "the payload of a {task_type:?} task is not JSON: {err}; quote it for the shell, e.g. '{{\"to\": \"a@b\"}}'"
            ))
        })?;
        Self::with_payload(task_type, payload)
    }

    /// A task of `task_type` whose payload is `value` encoded as JSON.
    pub fn from_value(task_type: impl Into<String>, value: &impl Serialize) -> Result<Self, Error> {
        let task_type = task_type.into();
        let payload = serde_json::value::to_raw_value(value).map_err(|err| {
            Error::InvalidTask(format!(
                "the payload of a {task_type:?} task does not encode as JSON: {err}"
            ))
        })?;
        Self::with_payload(task_type, payload)
    }

    fn with_payload(task_type: String, payload: Box<RawValue>) -> Result<Self, Error> {
        crate::task::check_task_type(&task_type).map_err(Error::InvalidTask)?;
        Ok(NewTask {
            task_type,
            payload,
            queue: DEFAULT_QUEUE.to_string(),
            id: None,
            due: Due::Now,
            max_retry: DEFAULT_MAX_RETRY,
            timeout: None,
            deadline: None,
            retention: DEFAULT_RETENTION,
            unique: None,
            reserve_id: None,
            limit: None,
            lineage: None,
            debounce: None,
            batch: None,
            group: None,
            unique_extends: false,
            aggregate: None,
            trace: None,
        })
    }

    /// The queue to put the task on (default: `default`).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// A task id of the producer's choosing; enqueuing a second task with
    /// the same id in the same queue fails while the first is kept.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Makes the task due `delay` from now (by the Redis server's clock).
    pub fn process_in(mut self, delay: Duration) -> Self {
        self.due = if delay.is_zero() {
            Due::Now
        } else {
            Due::In(delay)
        };
        self
    }

    /// Makes the task due at `at`.
    pub fn process_at(mut self, at: SystemTime) -> Self {
        self.due = Due::At(at);
        self
    }

    /// Retries allowed after the first attempt (default 25).
    pub fn max_retry(mut self, retries: u32) -> Self {
        self.max_retry = retries;
        self
    }

    /// How long one attempt may run. The plugin's own limit still applies;
    /// the shorter wins.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A time after which no attempt may still be running. With a timeout
    /// too, whichever comes first ends the attempt.
    pub fn deadline(mut self, deadline: SystemTime) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// How long the completed task and its result are kept (default 10
    /// minutes; zero forgets it at once).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Refuses to enqueue this task while an equal one (same queue, type and
    /// payload) enqueued less than `ttl` ago is still held. The lock is
    /// released early when that task completes, is archived or is deleted.
    pub fn unique(mut self, ttl: Duration) -> Self {
        self.unique = Some(ttl);
        self
    }

    /// As [`NewTask::unique`], and each duplicate refused also holds the
    /// lock `ttl` from its own arrival: a steady stream of duplicates keeps
    /// it held, and the next equal task is accepted only after `ttl` of
    /// quiet (or once the holder ends).
    pub fn unique_extending(mut self, ttl: Duration) -> Self {
        self.unique = Some(ttl);
        self.unique_extends = true;
        self
    }

    /// Keeps the task's id reserved for `ttl` from now, even after the task
    /// completes and is forgotten or is deleted: a second enqueue with the
    /// same id within `ttl` is refused. Makes enqueues idempotent (the cron
    /// scheduler reserves the id of each tick this way).
    pub fn reserve_id(mut self, ttl: Duration) -> Self {
        self.reserve_id = Some(ttl);
        self
    }

    /// Makes the task a follow-up with this ancestry (the worker sets it
    /// for tasks a plugin enqueues).
    pub fn lineage(mut self, lineage: Lineage) -> Self {
        self.lineage = Some(lineage);
        self
    }

    /// Attaches the W3C trace context of the span this task descends from
    /// (`TraceContext::new(traceparent, tracestate)`): a worker's spans for
    /// its attempts are children of that span. Without it, and with the
    /// `otel` feature, the task takes the current OpenTelemetry context's
    /// span, if one is active when it is enqueued.
    pub fn trace(mut self, context: TraceContext) -> Self {
        self.trace = Some(context);
        self
    }

    /// Debounces the task under `key` (per queue and type): it runs `delay`
    /// from now, and a task enqueued under the same key before it starts
    /// replaces its payload (keeping its id) and waits `delay` again, so a
    /// burst of duplicates makes one run, with the last payload. Once the
    /// task has started, the next one under the key is a new task.
    pub fn debounce(mut self, key: impl Into<String>, delay: Duration) -> Self {
        self.debounce = Some(key.into());
        self.due = Due::In(delay);
        self.unique = Some(delay.saturating_add(Duration::from_secs(86_400)));
        self
    }

    /// Puts the task in a group of its queue (a tenant, a customer): a
    /// worker takes pending tasks from each group in turn (the tasks
    /// without a group taking their turn as one more), so that one group's
    /// backlog cannot starve another's. 1 to 128 bytes, no control
    /// characters.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Collects the task into an aggregation under `key` (per queue and
    /// type), as Asynq's task aggregation does: the first task opens a
    /// batch due `after` from now, and the tasks enqueued under the key
    /// until then join it; the handler runs once for the batch, its payload
    /// the JSON array of the members' payloads in order of arrival. A batch
    /// goes at once when it holds `max_group` tasks (or would outgrow the
    /// payload limit). The id returned is the batch's (the first member's).
    pub fn aggregate(mut self, key: impl Into<String>, after: Duration, max_group: u32) -> Self {
        self.aggregate = Some(Aggregation {
            key: key.into(),
            after,
            max_group,
        });
        self
    }

    /// Subjects the task to a fleet-wide concurrency limit.
    pub fn limit(mut self, limit: ConcurrencyLimit) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Makes the task a member of a batch (set by [`Client::add_to_batch`]).
    pub(super) fn in_batch(mut self, batch: &str) -> Self {
        self.batch = Some(batch.to_string());
        self
    }

    /// The task's type.
    pub fn task_type(&self) -> &str {
        &self.task_type
    }

    /// The payload's JSON text.
    pub fn payload(&self) -> &str {
        self.payload.get()
    }

    /// The id the producer chose, if any.
    pub(super) fn id_ref(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The queue it goes to.
    pub(crate) fn queue_ref(&self) -> &str {
        &self.queue
    }

    /// Whether it asks for a unique lock, a debounce or an id reservation.
    pub(super) fn has_unique_options(&self) -> bool {
        self.unique.is_some()
            || self.debounce.is_some()
            || self.reserve_id.is_some()
            || self.aggregate.is_some()
    }

    /// Whether it is due later than now.
    pub(super) fn is_delayed(&self) -> bool {
        self.due != Due::Now
    }

    pub(super) fn validate(&self, max_payload_bytes: usize) -> Result<(), Error> {
        validate_queue_name(&self.queue)?;
        if let Some(id) = &self.id
            && (id.is_empty()
                || id.len() > MAX_ID_BYTES
                || id.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Error::InvalidTask(format!(
                "task id {id:?} must be 1 to {MAX_ID_BYTES} bytes with no whitespace"
            )));
        }
        if let Some(trace) = &self.trace {
            trace.check().map_err(Error::InvalidTask)?;
        }
        if let Some(group) = &self.group
            && (group.is_empty()
                || group.len() > MAX_GROUP_BYTES
                || group.chars().any(char::is_control))
        {
            return Err(Error::InvalidTask(format!(
                "group {group:?} must be 1 to {MAX_GROUP_BYTES} bytes with no control characters"
            )));
        }
        let size = self.payload.get().len();
        if size > max_payload_bytes {
            return Err(Error::InvalidTask(format!(
                "the payload of this {:?} task is {size} bytes, over the {max_payload_bytes}-byte limit; store large data elsewhere and enqueue a reference to it",
                self.task_type
            )));
        }
        if let Some(key) = &self.debounce {
            if key.is_empty() || key.len() > 256 || key.chars().any(char::is_control) {
                return Err(Error::InvalidTask(format!(
                    "debounce key {key:?} must be 1 to 256 bytes with no control characters"
                )));
            }
            if !matches!(self.due, Due::In(delay) if delay >= Duration::from_millis(1)) {
                return Err(Error::InvalidTask(
                    "a debounced task waits a delay of at least 1ms (during which duplicates replace it)".into(),
                ));
            }
            if self.id.is_some() {
                return Err(Error::InvalidTask(
                    "a debounced task takes no id of its own: duplicates keep the first one's"
                        .into(),
                ));
            }
        }
        if let Some(aggregation) = &self.aggregate {
            let key = &aggregation.key;
            if key.is_empty() || key.len() > 256 || key.chars().any(char::is_control) {
                return Err(Error::InvalidTask(format!(
                    "aggregation key {key:?} must be 1 to 256 bytes with no control characters"
                )));
            }
            if aggregation.max_group == 0 || aggregation.max_group > MAX_AGGREGATE_GROUP {
                return Err(Error::InvalidTask(format!(
                    "an aggregation's batches hold 1 to {MAX_AGGREGATE_GROUP} tasks, not {}",
                    aggregation.max_group
                )));
            }
            if aggregation.after < Duration::from_millis(1) {
                return Err(Error::InvalidTask(
                    "an aggregation waits at least 1ms for its batch to fill".into(),
                ));
            }
            if self.id.is_some()
                || self.unique.is_some()
                || self.debounce.is_some()
                || !matches!(self.due, Due::Now)
            {
                return Err(Error::InvalidTask(
                    "an aggregated task takes no id, unique lock, debounce or delay of its own: its batch has them".into(),
                ));
            }
        }
        if matches!(self.unique, Some(ttl) if ttl < Duration::from_millis(1)) {
            return Err(Error::InvalidTask(
                "a unique lock needs a time to live of at least 1ms".into(),
            ));
        }
        let depth = json_depth(self.payload.get());
        if depth > MAX_JSON_DEPTH {
            return Err(Error::InvalidTask(format!(
                "the payload of this {:?} task nests {depth} levels deep, over the limit of {MAX_JSON_DEPTH}; flatten it",
                self.task_type
            )));
        }
        self.check_times().map_err(Error::InvalidTask)
    }

    /// Every delay, duration and time within the 100-year ceiling, so no
    /// stored time overflows what readers can show.
    fn check_times(&self) -> Result<(), String> {
        match self.due {
            Due::Now => {}
            Due::In(delay) => check_duration("a process-in delay", delay)?,
            Due::At(at) => check_time("the process-at time", at)?,
        }
        if let Some(timeout) = self.timeout {
            check_duration("a timeout", timeout)?;
        }
        if let Some(deadline) = self.deadline {
            check_time("the deadline", deadline)?;
        }
        check_duration("a retention", self.retention)?;
        if let Some(ttl) = self.unique {
            check_duration("a unique lock", ttl)?;
        }
        if let Some(ttl) = self.reserve_id {
            check_duration("an id reservation", ttl)?;
        }
        if let Some(limit) = &self.limit {
            let delay = match limit.when_busy {
                WhenBusy::Delay(ms) => ms,
                WhenBusy::Skip => 0,
            };
            for (what, ms) in [
                ("a limit's lock-at-most-for", limit.lock_at_most_for_ms),
                ("a limit's lock-at-least-for", limit.lock_at_least_for_ms),
                ("a limit's busy delay", delay),
            ] {
                check_duration(what, Duration::from_millis(ms))?;
            }
        }
        Ok(())
    }

    /// The stored message and the script arguments for this task.
    /// The `aggregate.lua` call that enqueues this task (checked, with
    /// [`NewTask::aggregate`]) into its aggregation.
    fn into_aggregate_call(mut self, max_payload_bytes: usize) -> super::aggregate::AggregateCall {
        let aggregation = self.aggregate.take().expect("an aggregated task");
        let member = self.payload.get().to_string();
        let task_type = self.task_type.clone();
        // The batch's payload is the array of its members' payloads.
        self.payload = RawValue::from_string(format!("[{member}]"))
            .expect("an array of one JSON value is JSON");
        let (mut message, _) = self.into_message();
        message.unique_key = Some(format!("aggregate:{task_type}:{}", aggregation.key));
        // A TaskMessage holds only strings, numbers and raw JSON.
        let encoded = serde_json::to_string(&message).expect("a TaskMessage always encodes");
        let overhead = encoded.len() - member.len() - 2;
        super::aggregate::AggregateCall {
            queue: message.queue.clone(),
            id: message.id.clone(),
            message: encoded,
            after_ms: millis(aggregation.after),
            key: message.unique_key.clone().unwrap_or_default(),
            max_group: aggregation.max_group,
            member,
            max_bytes: max_payload_bytes + overhead,
            lock_ttl_ms: millis(
                aggregation
                    .after
                    .saturating_add(Duration::from_secs(86_400)),
            ),
        }
    }

    pub(super) fn into_message(self) -> (TaskMessage, [String; 7]) {
        let id = self.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let debounce_key = self
            .debounce
            .as_ref()
            .map(|key| format!("debounce:{}:{key}", self.task_type));
        let unique_key = debounce_key.or_else(|| {
            self.unique.map(|_| {
                let digest = Sha256::new()
                    .chain_update(self.task_type.as_bytes())
                    .chain_update([0])
                    .chain_update(self.payload.get().as_bytes())
                    .finalize();
                format!("{}:{}", self.task_type, hex::encode(&digest[..16]))
            })
        });
        let (delay_ms, due_at_ms) = match self.due {
            Due::Now => (0, 0),
            Due::In(delay) => (millis(delay), 0),
            // A time in the past means "now": 1 ms after the epoch is due.
            Due::At(at) => (0, unix_ms(at).max(1)),
        };
        let message = TaskMessage {
            id,
            task_type: self.task_type,
            queue: self.queue,
            payload: self.payload,
            max_retry: self.max_retry,
            timeout_ms: self.timeout.map(millis),
            deadline_ms: self.deadline.map(unix_ms),
            retention_ms: millis(self.retention),
            unique_key,
            enqueued_at_ms: unix_ms(SystemTime::now()),
            limit: self.limit,
            lineage: self.lineage,
            parent: None,
            children: Vec::new(),
            batch: self.batch,
            group: self.group,
            trace: self.trace.or_else(current_trace_context),
        };
        // TaskMessage holds only strings, numbers and raw JSON.
        let encoded = serde_json::to_string(&message).expect("a TaskMessage always encodes");
        let args = [
            message.id.clone(),
            encoded,
            delay_ms.to_string(),
            due_at_ms.to_string(),
            message.unique_key.clone().unwrap_or_default(),
            // A negative time to live asks enqueue.lua to extend the lock on
            // each duplicate.
            match (self.unique, self.unique_extends && self.debounce.is_none()) {
                (Some(ttl), true) => format!("-{}", millis(ttl)),
                (ttl, _) => ttl.map_or(0, millis).to_string(),
            },
            self.reserve_id.map_or(0, millis).to_string(),
        ];
        (message, args)
    }
}

/// A task the queue accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The task's id.
    pub id: String,
    /// The queue it went to.
    pub queue: String,
    /// `Pending` or `Scheduled`.
    pub state: TaskState,
}

/// Enqueues tasks and looks them up.
#[derive(Clone)]
pub struct Client {
    pub(super) broker: Broker,
    pub(super) max_payload_bytes: usize,
    pub(super) flow_limits: super::FlowLimits,
    /// Queues this client has already put in the registry of queue names.
    registered: std::sync::Arc<Mutex<HashSet<String>>>,
}

impl Client {
    /// Connects to the Redis at `url`, naming its connections
    /// `wasmq:client:rust:<host>:<pid>`.
    pub async fn connect(url: &str) -> Result<Client, Error> {
        Client::connect_with(url, &ConnectOptions::default()).await
    }

    /// Connects to the Redis at `url` with options: TLS, a connection name
    /// (default `wasmq:client:rust:<host>:<pid>`), and
    /// [`wait_replicas`](ConnectOptions::wait_replicas), which makes every
    /// enqueue return only once that many replicas have it.
    pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Client, Error> {
        let mut options = options.clone();
        if options.name.is_none() {
            options.name = Some(default_connection_name());
        }
        Ok(Client::new(Broker::connect_with(url, &options).await?))
    }

    /// A client sharing an existing connection.
    pub fn new(broker: Broker) -> Client {
        Client {
            broker,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            flow_limits: super::FlowLimits::default(),
            registered: Default::default(),
        }
    }

    /// Sets the largest payload this client accepts (default 1 MiB).
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> Client {
        self.max_payload_bytes = bytes;
        self
    }

    /// Sets the caps flows are held to (default: 32 levels, 10,000 tasks).
    pub fn with_flow_limits(mut self, limits: super::FlowLimits) -> Client {
        self.flow_limits = limits;
        self
    }

    /// The underlying connection.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Enqueues one task.
    pub async fn enqueue(&self, task: NewTask) -> Result<Enqueued, Error> {
        self.enqueue_batch(vec![task])
            .await
            .pop()
            .expect("a batch of one yields one outcome")
    }

    /// Enqueues many tasks, a few hundred per round trip. Each task is
    /// accepted or refused on its own; the outcomes come back in order.
    pub async fn enqueue_batch(&self, tasks: Vec<NewTask>) -> Vec<Result<Enqueued, Error>> {
        let mut outcomes: Vec<Option<Result<Enqueued, Error>>> = Vec::with_capacity(tasks.len());
        // Tasks grouped by queue (each script call serves one queue), with
        // their positions in the input.
        let mut by_queue: BTreeMap<String, Vec<(usize, TaskMessage, [String; 7])>> =
            BTreeMap::new();
        let mut debounced = Vec::new();
        let mut aggregated = Vec::new();
        for (index, task) in tasks.into_iter().enumerate() {
            match task.validate(self.max_payload_bytes) {
                Ok(()) if task.aggregate.is_some() => {
                    aggregated.push((index, task.into_aggregate_call(self.max_payload_bytes)));
                    outcomes.push(None);
                }
                Ok(()) if task.debounce.is_some() => {
                    let (message, args) = task.into_message();
                    debounced.push((index, message, args));
                    outcomes.push(None);
                }
                Ok(()) => {
                    let (message, args) = task.into_message();
                    by_queue
                        .entry(message.queue.clone())
                        .or_default()
                        .push((index, message, args));
                    outcomes.push(None);
                }
                Err(err) => outcomes.push(Some(Err(err))),
            }
        }
        for (queue, entries) in by_queue {
            if let Err(err) = self.ensure_registered(&queue).await {
                for (index, ..) in entries {
                    outcomes[index] = Some(Err(err.clone()));
                }
                continue;
            }
            let arguments_bytes = |(_, _, args): &(usize, TaskMessage, [String; 7])| {
                args.iter().map(String::len).sum::<usize>()
            };
            for chunk in bounded_chunks(
                &entries,
                BATCH_CHUNK,
                super::MAX_CALL_BYTES,
                arguments_bytes,
            ) {
                match self.enqueue_chunk(&queue, chunk).await {
                    Ok(replies) => {
                        for ((index, message, _), reply) in chunk.iter().zip(replies) {
                            outcomes[*index] = Some(reply.map(|state| Enqueued {
                                id: message.id.clone(),
                                queue: queue.clone(),
                                state,
                            }));
                        }
                    }
                    Err(err) => {
                        for (index, ..) in chunk {
                            outcomes[*index] = Some(Err(err.clone()));
                        }
                    }
                }
            }
        }
        for (index, message, args) in debounced {
            let outcome = match self.ensure_registered(&message.queue).await {
                Ok(()) => self.broker.enqueue_debounced(&message.queue, &args).await,
                Err(err) => Err(err),
            };
            outcomes[index] = Some(outcome.map(|id| Enqueued {
                id,
                queue: message.queue.clone(),
                state: TaskState::Scheduled,
            }));
        }
        for (index, call) in aggregated {
            let outcome = match self.ensure_registered(&call.queue).await {
                Ok(()) => self.broker.enqueue_aggregated(&call).await,
                Err(err) => Err(err),
            };
            outcomes[index] = Some(outcome.map(|(id, state)| Enqueued {
                id,
                queue: call.queue.clone(),
                state,
            }));
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every task got an outcome"))
            .collect()
    }

    pub(super) async fn ensure_registered(&self, queue: &str) -> Result<(), Error> {
        // The lock guards a plain set; a panic while holding it cannot leave
        // it half-updated.
        if self
            .registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(queue)
        {
            return Ok(());
        }
        self.broker.register_queue(queue).await?;
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.to_string());
        Ok(())
    }

    pub(super) async fn enqueue_chunk(
        &self,
        queue: &str,
        chunk: &[(usize, TaskMessage, [String; 7])],
    ) -> Result<Vec<Result<TaskState, Error>>, Error> {
        let keys = self.broker.queue_keys(queue);
        let mut invocation = invocation(&SCRIPTS.enqueue, &keys);
        for (_, _, args) in chunk {
            for arg in args {
                invocation.arg(arg);
            }
        }
        let (replies, shortfall): (Vec<Vec<Value>>, _) = match self.broker.wait_replicas() {
            Some(wait) => self.broker.run_durable(queue, &invocation, wait).await?,
            None => (self.broker.run(queue, None, &invocation).await?, None),
        };
        if replies.len() != chunk.len() {
            return Err(Error::Corrupt(format!(
                "enqueue on {queue:?} answered {} of {} tasks",
                replies.len(),
                chunk.len()
            )));
        }
        Ok(chunk
            .iter()
            .zip(replies)
            .map(|((_, message, _), reply)| {
                // An accepted task that replicas did not confirm in time is
                // reported as such: it is on the master.
                match (decode_enqueue_reply(message, reply), &shortfall) {
                    (Ok(_), Some(err)) => Err(err.clone()),
                    (outcome, _) => outcome,
                }
            })
            .collect())
    }

    /// Looks a task up by id, in `queue` or (when `None`) in every known
    /// queue.
    pub async fn task(&self, id: &str, queue: Option<&str>) -> Result<Option<TaskInfo>, Error> {
        self.broker.find_task(id, queue).await
    }

    /// How many tasks `queue` holds in each state.
    pub async fn queue_counts(&self, queue: &str) -> Result<QueueCounts, Error> {
        validate_queue_name(queue)?;
        self.broker.queue_counts(queue).await
    }
}

fn decode_enqueue_reply(message: &TaskMessage, reply: Vec<Value>) -> Result<TaskState, Error> {
    let text = |value: &Value| -> String { redis::from_redis_value_ref(value).unwrap_or_default() };
    match reply.as_slice() {
        [status, state] if text(status) == "ok" => text(state).parse().map_err(Error::Corrupt),
        [status, state] if text(status) == "duplicate-id" => Err(Error::DuplicateId {
            queue: message.queue.clone(),
            id: message.id.clone(),
            state: Some(text(state).parse().map_err(Error::Corrupt)?),
            reserved_for: None,
        }),
        [status, _, remaining] if text(status) == "duplicate-id" => {
            let remaining: u64 = redis::from_redis_value_ref(remaining).unwrap_or_default();
            Err(Error::DuplicateId {
                queue: message.queue.clone(),
                id: message.id.clone(),
                state: None,
                reserved_for: Some(Duration::from_millis(remaining)),
            })
        }
        [status, holder, remaining] if text(status) == "duplicate-unique" => {
            let remaining: u64 = redis::from_redis_value_ref(remaining).unwrap_or_default();
            Err(Error::DuplicateUnique {
                queue: message.queue.clone(),
                task_type: message.task_type.clone(),
                holder: text(holder),
                remaining: Duration::from_millis(remaining),
            })
        }
        other => Err(Error::Corrupt(format!("enqueue answered {other:?}"))),
    }
}

/// `wasmq:client:rust:<host>:<pid>`: the name a [`Client`]'s connections
/// carry unless told otherwise.
fn default_connection_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("wasmq:client:rust:{host}:{}", std::process::id())
}

/// A time as unix milliseconds.
pub(crate) fn unix_ms(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The span of the current OpenTelemetry context, for a task enqueued
/// with no context of its own.
#[cfg(feature = "otel")]
fn current_trace_context() -> Option<TraceContext> {
    crate::telemetry::current_context()
}

/// Without the `otel` feature there is no current context.
#[cfg(not(feature = "otel"))]
fn current_trace_context() -> Option<TraceContext> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_that_is_not_json_is_refused_with_a_hint() {
        let err = NewTask::new("email:send", "{to: x}").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("not JSON"), "{message}");
        assert!(message.contains("email:send"), "{message}");
    }

    #[test]
    fn batch_chunks_are_bounded_by_count_and_by_bytes_keeping_every_task_once() {
        let lengths = |chunks: Vec<&[usize]>| chunks.iter().map(|c| c.len()).collect::<Vec<_>>();
        let small = vec![10; 1200];
        assert_eq!(
            lengths(bounded_chunks(&small, 500, 4096, |n| *n)),
            vec![409, 409, 382]
        );
        assert_eq!(
            lengths(bounded_chunks(&small, 500, usize::MAX, |n| *n)),
            vec![500, 500, 200]
        );
        // A task larger than the byte bound goes alone; nothing is dropped
        // or repeated, and the order is kept.
        let mixed = [1, 5000, 2, 3, 4095, 100];
        let chunks = bounded_chunks(&mixed, 500, 4096, |n| *n);
        assert_eq!(chunks, vec![&[1][..], &[5000], &[2, 3], &[4095], &[100]]);
        assert!(bounded_chunks(&[] as &[usize], 500, 4096, |n| *n).is_empty());
    }

    #[test]
    fn an_oversized_payload_is_refused_naming_the_limit() {
        let big = format!("\"{}\"", "x".repeat(2000));
        let task = NewTask::new("echo", big).unwrap();
        let message = task.validate(1000).unwrap_err().to_string();
        assert!(message.contains("over the 1000-byte limit"), "{message}");
    }

    #[test]
    fn deep_payloads_and_far_times_are_refused() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let task = NewTask::new("echo", deep).unwrap();
        let message = task.validate(usize::MAX).unwrap_err().to_string();
        assert!(message.contains("100000 levels deep"), "{message}");
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(
            NewTask::new("echo", ok)
                .unwrap()
                .validate(usize::MAX)
                .is_ok()
        );

        let task = NewTask::new("echo", "{}").unwrap();
        for bad in [
            task.clone().process_in(Duration::from_millis(u64::MAX)),
            task.clone().timeout(Duration::from_secs(u64::MAX)),
            task.clone().retention(Duration::from_secs_f64(1e12)),
            task.clone().unique(Duration::from_secs(u64::MAX)),
            task.clone()
                .process_at(SystemTime::now() + Duration::from_secs(200 * 31_557_600)),
            task.clone()
                .deadline(SystemTime::now() + Duration::from_secs(200 * 31_557_600)),
        ] {
            let message = bad.validate(usize::MAX).unwrap_err().to_string();
            assert!(message.contains("100 years"), "{message}");
        }
        assert!(
            task.process_in(Duration::from_secs(3600))
                .validate(usize::MAX)
                .is_ok()
        );
    }

    #[test]
    fn task_types_with_control_characters_are_refused() {
        let err = NewTask::new("a\u{1b}[2Jb", "{}").unwrap_err().to_string();
        assert!(err.contains("control character"), "{err}");
        assert!(NewTask::new("t".repeat(100_000), "{}").is_err());
    }

    #[test]
    fn equal_tasks_share_a_unique_key_and_different_payloads_do_not() {
        let key = |payload: &str| {
            NewTask::new("email:send", payload)
                .unwrap()
                .unique(Duration::from_secs(60))
                .into_message()
                .0
                .unique_key
                .unwrap()
        };
        assert_eq!(key(r#"{"to":"x"}"#), key(r#"{"to":"x"}"#));
        assert_ne!(key(r#"{"to":"x"}"#), key(r#"{"to":"y"}"#));
        assert!(key("{}").starts_with("email:send:"));
    }
}
