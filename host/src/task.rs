//! The shared vocabulary of tasks: the stored message, the states a task
//! moves through and the classes of failure. The broker stores these, the
//! sandbox and the worker produce them, the CLI prints them.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The deepest nesting of arrays and objects a payload may have. The
/// tools that show tasks (`task show --json`, the dashboard) parse payloads
/// with a recursion limit of 128; 64 leaves room for the envelope.
pub const MAX_JSON_DEPTH: usize = 64;
/// The longest task type accepted, in bytes.
pub const MAX_TASK_TYPE_BYTES: usize = 256;
/// The ceiling on every delay, timeout, retention and lock time, and on how
/// far in the future a process-at time or deadline may lie: 100 years.
pub const MAX_DELAY: Duration = Duration::from_secs(100 * 31_557_600);

/// How deeply arrays and objects nest in the JSON text (0 for a scalar).
/// Scans the text without recursion, so any input is safe to measure.
pub fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Checks a task type: 1 to [`MAX_TASK_TYPE_BYTES`] bytes, no control
/// characters (they would reach terminals raw), not only whitespace.
pub fn check_task_type(task_type: &str) -> Result<(), String> {
    if task_type.trim().is_empty() {
        return Err("the task type is empty: name one, such as email:send".into());
    }
    if task_type.len() > MAX_TASK_TYPE_BYTES {
        return Err(format!(
            "the task type {:?}... is {} bytes long, over the {MAX_TASK_TYPE_BYTES}-byte limit; use a short name such as email:send",
            task_type.chars().take(32).collect::<String>(),
            task_type.len()
        ));
    }
    if let Some(bad) = task_type.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the task type {task_type:?} contains the control character {bad:?}: use letters, digits and punctuation"
        ));
    }
    Ok(())
}

/// Checks a duration against [`MAX_DELAY`]; `what` names it in the error.
pub fn check_duration(what: &str, duration: Duration) -> Result<(), String> {
    if duration > MAX_DELAY {
        return Err(format!(
            "{what} of {} is over the ceiling of 100 years",
            humantime::format_duration(Duration::from_secs(duration.as_secs()))
        ));
    }
    Ok(())
}

/// Checks that a time lies no further than [`MAX_DELAY`] from now.
pub fn check_time(what: &str, at: SystemTime) -> Result<(), String> {
    let too_far = SystemTime::now()
        .checked_add(MAX_DELAY)
        .is_none_or(|ceiling| at > ceiling);
    if too_far {
        return Err(format!(
            "{what} is more than 100 years from now; give a nearer time"
        ));
    }
    Ok(())
}

/// A task as stored in Redis when it is enqueued. It never changes
/// afterwards; what changes (state, attempts, errors, result) is kept beside
/// it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskMessage {
    /// Unique within the queue: generated, or given by the producer.
    pub id: String,
    /// The task type, which selects the plugin that handles it.
    #[serde(rename = "type")]
    pub task_type: String,
    /// The queue the task lives in.
    pub queue: String,
    /// The payload: always valid JSON.
    pub payload: Box<RawValue>,
    /// Retries allowed after the first attempt.
    pub max_retry: u32,
    /// How long one attempt may run, if the producer limited it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The time (unix ms) after which no attempt may still run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
    /// How long the task and its result are kept once completed (0: deleted
    /// on completion).
    pub retention_ms: u64,
    /// The unique lock this task holds, if it was enqueued with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// When the producer enqueued it (unix ms, producer's clock).
    pub enqueued_at_ms: i64,
    /// A fleet-wide cap on how many tasks sharing its key run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<ConcurrencyLimit>,
    /// Where a follow-up task comes from; absent for a task a producer
    /// enqueued, which is the root of its own tree at depth 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Lineage>,
    /// The flow parent this task reports its end to, if it is a child in a
    /// flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<FlowParent>,
    /// This task's children in a flow, in order: it waits until every one
    /// has ended, then runs with their outcomes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<FlowChild>,
    /// The batch this task belongs to, which counts its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// The group the task takes turns in (a tenant, a customer): a worker
    /// takes pending tasks from each group of a queue in turn, so that one
    /// group's backlog cannot starve another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The W3C trace context the task descends from (its producer's span,
    /// or the attempt that enqueued it), parent of the worker's spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::TraceContext>,
}

impl TaskMessage {
    /// Whether the task's end is reported beyond its queue: to its flow
    /// parent or its batch.
    pub fn reports_end(&self) -> bool {
        self.parent.is_some() || self.batch.is_some()
    }

    /// The task's ancestry: its own, or that of a root (itself, depth 0).
    pub fn ancestry(&self) -> Lineage {
        self.lineage.clone().unwrap_or_else(|| Lineage {
            root: TaskRef::new(&self.queue, &self.id),
            parent: None,
            depth: 0,
        })
    }
}

/// The parent a flow child reports to when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowParent {
    /// The parent's queue.
    pub queue: String,
    /// The parent's id.
    pub id: String,
    /// This child's place among the parent's children (from 0).
    pub index: u32,
    /// What this child's failure does to the parent.
    #[serde(default)]
    pub on_failure: OnChildFailure,
}

/// A flow parent's child, as the parent's message lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowChild {
    /// The child's queue.
    pub queue: String,
    /// The child's id.
    pub id: String,
    /// The child's task type.
    #[serde(rename = "type")]
    pub task_type: String,
}

/// What a flow child's failure (archived, deleted, cancelled or lost) does
/// to its parent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnChildFailure {
    /// The parent fails at once (archived with the child's error), and
    /// never runs.
    #[default]
    FailParent,
    /// The parent runs when the others end, without this child's outcome.
    Ignore,
    /// The parent runs when the others end, with this child's error among
    /// the outcomes.
    Continue,
}

impl OnChildFailure {
    /// The name used in flow files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            OnChildFailure::FailParent => "fail-parent",
            OnChildFailure::Ignore => "ignore",
            OnChildFailure::Continue => "continue",
        }
    }
}

/// A task named by its queue and id (ids are unique within a queue).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskRef {
    /// The queue.
    pub queue: String,
    /// The id within it.
    pub id: String,
}

impl TaskRef {
    /// `id` in `queue`.
    pub fn new(queue: &str, id: &str) -> Self {
        TaskRef {
            queue: queue.to_string(),
            id: id.to_string(),
        }
    }
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.queue, self.id)
    }
}

/// The ancestry of a task in a tree of follow-ups: the task a producer
/// enqueued at its root, the task that enqueued it, and how many
/// generations lie between it and the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// The task at the root of the tree.
    pub root: TaskRef,
    /// The task whose attempt enqueued this one (none for a root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<TaskRef>,
    /// Generations below the root (0: the root itself).
    pub depth: u32,
}

impl Lineage {
    /// The ancestry of a follow-up that `parent` (with this ancestry)
    /// enqueues.
    pub fn child_of(&self, parent: TaskRef) -> Lineage {
        Lineage {
            root: self.root.clone(),
            parent: Some(parent),
            depth: self.depth.saturating_add(1),
        }
    }
}

/// A fleet-wide concurrency limit: at most `max_running` tasks holding the
/// same `key` run at once across every worker (a singleton when 1). A slot
/// is held from the start of an attempt until it ends, but at least
/// `lock_at_least_for` (minimum spacing) and at most `lock_at_most_for`
/// (so a crashed holder cannot block the key forever), as in ShedLock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyLimit {
    /// What the slots are shared by: `type:<task type>` or `cron:<entry>`.
    pub key: String,
    /// Tasks that may run at once.
    pub max_running: u32,
    /// The longest a slot is held, even if its holder never releases it.
    pub lock_at_most_for_ms: u64,
    /// The shortest a slot is held, even if its task ends sooner.
    pub lock_at_least_for_ms: u64,
    /// What a task does when every slot is held.
    pub when_busy: WhenBusy,
    /// Each group of tasks (a tenant: [`crate::NewTask::group`]) gets
    /// `max_running` slots of its own; tasks without a group share one set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_group: bool,
    /// Each value at this path of the payload gets `max_running` slots of
    /// its own; tasks with nothing there share one set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<crate::rate::KeyPath>,
}

impl ConcurrencyLimit {
    /// The limit `message` is held to: a per-group limit's slots are keyed
    /// by the task's group, a keyed limit's by the value at its path of the
    /// payload.
    pub fn for_task(mut self, message: &TaskMessage) -> ConcurrencyLimit {
        if self.per_group
            && let Some(group) = &message.group
        {
            self.key = format!("{}:group:{group}", self.key);
        }
        if let Some(path) = &self.key_path {
            let value = serde_json::from_str::<serde_json::Value>(message.payload.get())
                .ok()
                .and_then(|payload| path.key_of(&payload));
            let bucket = crate::broker::rate_limits::bucket_of(value.as_deref());
            self.key = format!("{}:key:{bucket}", self.key);
        }
        self
    }
}

/// What a task that finds no free slot does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenBusy {
    /// It is not run: archived with a `slot-busy` error.
    Skip,
    /// It waits (in scheduled) and tries again after this many ms.
    Delay(u64),
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting in the queue's pending list to be fetched.
    Pending,
    /// Leased by a worker and running.
    Active,
    /// Waiting for its process-at time.
    Scheduled,
    /// Failed; waiting for its next attempt.
    Retry,
    /// Failed for good (or given up); kept for inspection.
    Archived,
    /// Done; kept with its result for its retention.
    Completed,
    /// A flow parent waiting for its children to end.
    Waiting,
}

impl TaskState {
    /// Every state, in the order a task usually meets them.
    pub const ALL: [TaskState; 7] = [
        TaskState::Waiting,
        TaskState::Pending,
        TaskState::Active,
        TaskState::Scheduled,
        TaskState::Retry,
        TaskState::Archived,
        TaskState::Completed,
    ];

    /// The name used in Redis, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Active => "active",
            TaskState::Scheduled => "scheduled",
            TaskState::Retry => "retry",
            TaskState::Archived => "archived",
            TaskState::Completed => "completed",
            TaskState::Waiting => "waiting",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown task state {s:?}: expected one of waiting, pending, active, scheduled, retry, archived, completed"
                )
            })
    }
}

/// Why an attempt failed. Each class is counted and shown separately, and
/// decides whether the task is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The handler returned a failure and asked for a retry.
    HandlerError,
    /// The handler gave up: no retry can help.
    GaveUp,
    /// The payload did not decode into what the handler expects.
    BadPayload,
    /// The instance used up its fuel.
    OutOfFuel,
    /// The attempt ran past its timeout or the task's deadline.
    Timeout,
    /// The instance tried to grow its memory past its cap.
    OutOfMemory,
    /// The instance overflowed its stack.
    StackOverflow,
    /// The handler panicked.
    Panic,
    /// Any other trap of the instance.
    Trap,
    /// The result was larger than the plugin may return.
    ResultTooLarge,
    /// No loaded plugin handles the task's type.
    NoHandler,
    /// The worker holding the task stopped renewing its lease (it crashed,
    /// froze or lost Redis), so the task was taken back.
    LeaseExpired,
    /// The task was cancelled while it ran.
    Cancelled,
    /// Every slot of its concurrency limit was held, and its policy is to
    /// skip (or, as a note on a delayed task, to wait).
    SlotBusy,
    /// The plugin tried something its manifest does not grant (a host not
    /// on its HTTP allow list, a socket, enqueuing past its quota...).
    #[serde(rename = "denied")]
    CapabilityDenied,
    /// The plugin logged more than its log budget.
    LogLimit,
    /// A note on a postponed task, never an attempt's failure: its plugin
    /// is on probation (its attempts kept ending at their limits) and the
    /// worker's lane for such plugins was full.
    Probation,
    /// A note on a postponed task, never an attempt's failure: the worker
    /// had no room for another instance of its plugin (the plugin's share
    /// of instances was in use, or the instance pool was full), so the task
    /// went back to its queue without counting an attempt.
    WorkerBusy,
    /// A note on a postponed task, never an attempt's failure: a fleet-wide
    /// rate limit had no start free, so the task went back until its turn.
    RateLimited,
    /// A flow parent that never ran: one of its children failed (archived,
    /// cancelled, deleted) under the `fail-parent` policy.
    ChildFailed,
}

impl FailureKind {
    /// Whether a failure of this class may be retried. Classes where the
    /// same input can only fail again the same way are archived at once.
    pub fn is_retryable(self) -> bool {
        !matches!(
            self,
            FailureKind::GaveUp
                | FailureKind::BadPayload
                | FailureKind::ResultTooLarge
                | FailureKind::Cancelled
                | FailureKind::SlotBusy
                | FailureKind::CapabilityDenied
                | FailureKind::LogLimit
                | FailureKind::ChildFailed
        )
    }

    /// The kebab-case name used in Redis, metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::HandlerError => "handler-error",
            FailureKind::GaveUp => "gave-up",
            FailureKind::BadPayload => "bad-payload",
            FailureKind::OutOfFuel => "out-of-fuel",
            FailureKind::Timeout => "timeout",
            FailureKind::OutOfMemory => "out-of-memory",
            FailureKind::StackOverflow => "stack-overflow",
            FailureKind::Panic => "panic",
            FailureKind::Trap => "trap",
            FailureKind::ResultTooLarge => "result-too-large",
            FailureKind::NoHandler => "no-handler",
            FailureKind::LeaseExpired => "lease-expired",
            FailureKind::Cancelled => "cancelled",
            FailureKind::SlotBusy => "slot-busy",
            FailureKind::CapabilityDenied => "denied",
            FailureKind::LogLimit => "log-limit",
            FailureKind::Probation => "probation",
            FailureKind::WorkerBusy => "worker-busy",
            FailureKind::RateLimited => "rate-limited",
            FailureKind::ChildFailed => "child-failed",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed attempt: what failed and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// The class of failure.
    pub kind: FailureKind,
    /// What happened, for people.
    pub message: String,
}

impl TaskFailure {
    /// A failure of the given class.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        TaskFailure {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// The last error of a task, as stored with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The class of failure.
    pub kind: FailureKind,
    /// What happened.
    pub message: String,
    /// The attempt that failed.
    pub attempt: u32,
    /// When it failed (unix ms).
    pub at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_depth_counts_nesting_outside_strings() {
        assert_eq!(json_depth("1"), 0);
        assert_eq!(json_depth(r#"{"a": [1, {"b": 2}]}"#), 3);
        assert_eq!(json_depth(r#"{"a": "[[[[\"[[["}"#), 1);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(json_depth(&deep), 100_000);
    }

    #[test]
    fn task_types_are_bounded_and_printable() {
        assert!(check_task_type("email:send").is_ok());
        assert!(check_task_type(" ").is_err());
        assert!(check_task_type("a\nb").unwrap_err().contains("control"));
        assert!(check_task_type("\u{1b}[31mred").is_err());
        let long = "t".repeat(MAX_TASK_TYPE_BYTES + 1);
        assert!(check_task_type(&long).unwrap_err().contains("256-byte"));
    }

    #[test]
    fn delays_and_times_have_a_ceiling() {
        assert!(check_duration("a delay", Duration::from_secs(3600)).is_ok());
        assert!(check_duration("a delay", MAX_DELAY).is_ok());
        let err = check_duration("a delay", Duration::from_millis(u64::MAX)).unwrap_err();
        assert!(err.contains("100 years"), "{err}");
        assert!(check_time("the deadline", SystemTime::now()).is_ok());
        let far = SystemTime::now() + MAX_DELAY + Duration::from_secs(86_400);
        assert!(check_time("the deadline", far).is_err());
    }
}
