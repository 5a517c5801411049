//! All Redis access lives here: the queue model and the scripts that move
//! tasks between its states.
//!
//! # The Redis model
//! Each queue `q` owns the keys listed in `scripts/prelude.lua`, all under
//! the hash tag `{q}`: a pending LIST, ZSETs for active (scored by lease
//! expiry), scheduled, retry, archived and completed tasks, and HASHes from
//! task id to the task's message, state, attempt count, lease owner, last
//! error and result. Every state change is one Lua script that receives all
//! of the queue's keys, so the scripts run unchanged on Redis Cluster.
//!
//! # Layout
//! - [`Broker`]: a connection and one method per script.
//! - [`Client`] and [`NewTask`]: the producer's API.
//! - [`keys`]: key names. [`Error`]: what can go wrong.
//! - `notify`: wakes idle workers when their queues get work.

mod admin;
mod aggregate;
mod batches;
mod client;
pub mod connection;
pub mod cron;
mod debounce;
mod durable;
mod error;
pub mod fleet;
mod flows;
pub mod history;
mod inspect;
pub mod keys;
pub mod kv;
pub mod limits;
pub mod lineage;
mod notify;
pub mod rate_limits;
pub mod registry;
mod scripts;
mod settle;
mod tls;
pub mod topology;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::{Script, ScriptInvocation, Value};

pub use admin::BulkAction;
pub use batches::BatchStatus;
pub(crate) use client::unix_ms;
pub use client::{Client, DEFAULT_MAX_RETRY, DEFAULT_QUEUE, DEFAULT_RETENTION, Enqueued, NewTask};
pub use connection::{ConnectOptions, TlsOptions};
pub use durable::WaitReplicas;
pub use error::{Error, TlsFailure};
pub use flows::{
    ChildEnd, ChildOutcome, DEFAULT_MAX_FLOW_DEPTH, DEFAULT_MAX_FLOW_TASKS, EnqueuedFlow, Flow,
    FlowLimits, FlowTree,
};
pub use inspect::{Progress, QueueCounts, TaskInfo};
pub use keys::QueueKeys;
pub use notify::{QueueEvent, listen, subscribe};
pub use settle::{Settle, SettleLimits, Settlement};

use crate::task::{TaskMessage, TaskState};
use scripts::SCRIPTS;

/// The default Redis URL when neither `--redis` nor `WASMQ_REDIS_URL` is set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// How many due tasks one dequeue moves from scheduled and from retry.
const FORWARD_BATCH: usize = 200;

/// The default byte budget of a queue's stored results (the worker's
/// `--result-budget`): past it, the completed tasks that expire soonest are
/// forgotten early.
pub const DEFAULT_RESULT_BUDGET: u64 = 16 << 20;

/// How much one housekeeping call may drop per structure.
const TRIM_BATCH: usize = 500;

/// Most bytes a batched script call carries (enqueues, settlements): a
/// single item larger than this goes alone. Redis runs a script call whole,
/// holding every other client meanwhile, and its Lua reads every byte of
/// every argument: 500 tasks of 1 MB would be one 500 MB command that
/// stalls the server for seconds.
pub(crate) const MAX_CALL_BYTES: usize = 4 * 1024 * 1024;

/// Bounds on the archive, so that Redis memory stays bounded however many
/// tasks fail.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveLimits {
    /// At most this many archived tasks per queue; the oldest go first.
    pub max_size: u64,
    /// Archived tasks older than this are dropped.
    pub max_age: Duration,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_size: 10_000,
            max_age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// A task leased to a worker.
#[derive(Debug, Clone)]
pub struct LeasedTask {
    /// The task as enqueued (shared by every step of its path).
    pub message: Arc<TaskMessage>,
    /// Which attempt this is (1-based).
    pub attempt: u32,
}

/// What one dequeue call returned.
#[derive(Debug, Default)]
pub struct Dequeued {
    /// The tasks now leased to the caller.
    pub tasks: Vec<LeasedTask>,
    /// The Redis server's clock when the call ran, unix ms (0 when the
    /// queue was idle: nothing pending, scheduled or retried).
    pub server_now_ms: i64,
    /// When the queue's earliest scheduled or retry task falls due.
    pub next_due_ms: Option<i64>,
    /// Tasks leased whose stored message does not decode: they can never
    /// run, and the caller archives them.
    pub unreadable: Vec<Unreadable>,
}

/// A leased task whose stored message does not decode.
#[derive(Debug)]
pub struct Unreadable {
    /// The task's id.
    pub id: String,
    /// Which attempt it was leased for.
    pub attempt: u32,
    /// Why the message does not decode.
    pub error: String,
}

/// A connection to the Redis that holds the queues.
///
/// Cheap to clone: clones share one multiplexed connection, which
/// reconnects by itself after Redis restarts.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    /// The multiplexed connection every command goes through (to one
    /// server, or routed over a cluster).
    conn: connection::Connection,
    /// Where the separate pub/sub connections are opened.
    pubsub: Arc<connection::PubSubClients>,
    /// Whether Redis is a cluster.
    cluster: bool,
    /// The URL with any password hidden, for messages.
    url: String,
    /// Where Redis is, to open the durable connection.
    target: connection::Target,
    /// The options connections were opened with.
    options: ConnectOptions,
    /// The connection durable writes (a script, then `WAIT`) go through,
    /// opened on the first one.
    durable: tokio::sync::OnceCell<connection::Connection>,
    /// Key names per queue, built once.
    keys: RwLock<HashMap<String, Arc<QueueKeys>>>,
}

impl Broker {
    /// Connects to the Redis at `url` (`redis://[:PASSWORD@]HOST[:PORT][/DB]`;
    /// see [`Broker::connect_with`] for the others).
    ///
    /// Fails at once with [`Error::Unreachable`] if Redis does not answer;
    /// once connected, the connection comes back by itself after outages.
    pub async fn connect(url: &str) -> Result<Broker, Error> {
        Broker::connect_with(url, &ConnectOptions::default()).await
    }

    /// Connects to the Redis at `url` with options: TLS material, the name
    /// connections carry in `CLIENT LIST`, and whether enqueues wait for
    /// replicas. URLs are
    /// `redis[s]://[:PASSWORD@]HOST[:PORT][/DB]`,
    /// `redis[s]+cluster://[:PASSWORD@]HOST:PORT,…` or
    /// `redis[s]+sentinel://[:PASSWORD@]HOST:PORT,…/MASTER`.
    pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Broker, Error> {
        let shown = redact(url);
        let target = connection::Target::parse(url, &shown, &options.tls)?;
        let conn = target
            .connect(options.name.as_deref())
            .await
            .map_err(|source| Error::connecting(&shown, source))?;
        let pubsub = target
            .pubsub()
            .map_err(|source| Error::from_redis(&shown, source))?;
        Ok(Broker {
            inner: Arc::new(Inner {
                conn,
                pubsub,
                cluster: target.is_cluster(),
                url: shown,
                target,
                options: options.clone(),
                durable: tokio::sync::OnceCell::new(),
                keys: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// Whether Redis is a cluster (`redis+cluster://`).
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    /// The Redis URL, with any password hidden.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The keys of a queue (the name must be valid).
    pub(crate) fn queue_keys(&self, queue: &str) -> Arc<QueueKeys> {
        // A poisoned lock only means a panic elsewhere while inserting a
        // fully built value; the map is still consistent.
        if let Some(keys) = self
            .inner
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)
        {
            return keys.clone();
        }
        let keys = Arc::new(QueueKeys::new(queue));
        self.inner
            .keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.to_string(), keys.clone());
        keys
    }

    fn conn(&self) -> connection::Connection {
        self.inner.conn.clone()
    }

    /// The connection of durable writes, opened on first use.
    async fn durable_conn(&self) -> Result<connection::Connection, Error> {
        self.inner
            .durable
            .get_or_try_init(|| async {
                // Opening a connection is a deeply nested future; behind a
                // `dyn` it does not make every future that may write
                // durably (an enqueue, a settle) too deep for the compiler
                // to prove it `Send` in callers' crates.
                let opening: std::pin::Pin<
                    Box<
                        dyn Future<Output = Result<connection::Connection, redis::RedisError>>
                            + Send
                            + '_,
                    >,
                > = Box::pin(
                    self.inner
                        .target
                        .connect(self.inner.options.name.as_deref()),
                );
                opening.await.map_err(|err| self.redis_error(err))
            })
            .await
            .cloned()
    }

    /// How many replicas enqueues wait for, if any.
    pub(crate) fn wait_replicas(&self) -> Option<WaitReplicas> {
        self.inner.options.wait_replicas
    }

    fn redis_error(&self, err: redis::RedisError) -> Error {
        Error::from_redis(&self.inner.url, err)
    }

    /// Runs a plain command.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, Error> {
        cmd.query_async(&mut self.conn())
            .await
            .map_err(|err| self.redis_error(err))
    }

    /// Runs a pipeline.
    pub(crate) async fn query_pipeline<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, Error> {
        pipe.query_async(&mut self.conn())
            .await
            .map_err(|err| self.redis_error(err))
    }

    /// Runs a script with the queue's keys, turning a `LEASE_LOST` reply into
    /// [`Error::LeaseLost`].
    async fn run<T: redis::FromRedisValue>(
        &self,
        queue: &str,
        id: Option<&str>,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, Error> {
        let task = || (queue.to_string(), id.unwrap_or_default().to_string());
        match invocation.invoke_async(&mut self.conn()).await {
            Ok(value) => Ok(value),
            Err(err) => match script_error_name(&err) {
                Some("LEASE_LOST") => {
                    let (queue, id) = task();
                    Err(Error::LeaseLost { queue, id })
                }
                Some("ACTIVE") => {
                    let (queue, id) = task();
                    Err(Error::TaskActive { queue, id })
                }
                Some("FINISHED") => {
                    let (queue, id) = task();
                    Err(Error::TaskFinished { queue, id })
                }
                Some("NOT_EMPTY") => Err(Error::QueueNotEmpty {
                    queue: queue.to_string(),
                }),
                _ => Err(self.redis_error(err)),
            },
        }
    }

    /// Records a queue in the registry of queue names.
    pub(crate) async fn register_queue(&self, queue: &str) -> Result<(), Error> {
        self.query::<()>(redis::cmd("SADD").arg(keys::QUEUES).arg(queue))
            .await
    }

    /// The names of every queue that was ever enqueued to, sorted.
    pub(crate) async fn queues(&self) -> Result<Vec<String>, Error> {
        let mut names: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(keys::QUEUES)).await?;
        names.sort();
        Ok(names)
    }

    /// Leases up to `max` tasks of `queue` to the worker whose lease token
    /// is `owner`, first moving due scheduled and retry tasks to pending.
    pub(crate) async fn dequeue(
        &self,
        queue: &str,
        max: usize,
        lease: Duration,
        owner: &str,
    ) -> Result<Dequeued, Error> {
        let keys = self.queue_keys(queue);
        let mut invocation = invocation(&SCRIPTS.dequeue, &keys);
        invocation
            .arg(max)
            .arg(millis(lease))
            .arg(owner)
            .arg(FORWARD_BATCH);
        let reply: Vec<Value> = self.run(queue, None, &invocation).await?;
        let mut fields = reply.into_iter();
        let mut next_int = |what: &str| -> Result<i64, Error> {
            match fields.next() {
                Some(Value::Int(n)) => Ok(n),
                other => Err(Error::Corrupt(format!(
                    "dequeue on {queue:?} returned {other:?} for {what}"
                ))),
            }
        };
        let server_now_ms = next_int("the server time")?;
        let next_due = next_int("the next due time")?;
        // The paused flag: a paused queue leases nothing, which is all the
        // fetch loop needs to know.
        next_int("the paused flag")?;
        let mut dequeued = Dequeued {
            tasks: Vec::new(),
            server_now_ms,
            next_due_ms: (next_due >= 0).then_some(next_due),
            unreadable: Vec::new(),
        };
        while let Some(id) = fields.next() {
            let (Some(msg), Some(attempt)) = (fields.next(), fields.next()) else {
                return Err(Error::Corrupt(format!(
                    "dequeue on {queue:?} returned a truncated task entry"
                )));
            };
            let id: String = redis::from_redis_value(id).map_err(|err| {
                Error::Corrupt(format!("dequeue on {queue:?} returned a bad id: {err}"))
            })?;
            // Taken from the reply, not copied: the message holds the
            // payload, which may be a megabyte.
            let msg: Vec<u8> = redis::from_redis_value(msg).map_err(|err| {
                Error::Corrupt(format!("task {id} in {queue:?} has no message: {err}"))
            })?;
            let attempt: i64 = redis::from_redis_value(attempt).map_err(|err| {
                Error::Corrupt(format!(
                    "task {id} in {queue:?} has a bad attempt count: {err}"
                ))
            })?;
            let attempt = u32::try_from(attempt.max(1)).unwrap_or(u32::MAX);
            match serde_json::from_slice::<TaskMessage>(&msg) {
                Ok(message) => dequeued.tasks.push(LeasedTask {
                    message: Arc::new(message),
                    attempt,
                }),
                // A message wasmq cannot read can never run: the caller
                // archives it, so it is visible instead of failing forever.
                Err(err) => dequeued.unreadable.push(Unreadable {
                    id,
                    attempt,
                    error: err.to_string(),
                }),
            }
        }
        Ok(dequeued)
    }

    /// Extends by `lease` from now the leases on `held`, pairs of task id
    /// and the lease token it was leased under. Returns the ids no longer
    /// held.
    pub(crate) async fn extend_leases(
        &self,
        queue: &str,
        lease: Duration,
        held: &[(String, String)],
    ) -> Result<Vec<String>, Error> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.queue_keys(queue);
        let mut invocation = invocation(&SCRIPTS.extend, &keys);
        invocation.arg(millis(lease));
        for (id, owner) in held {
            invocation.arg(id).arg(owner);
        }
        self.run(queue, None, &invocation).await
    }

    /// Takes back up to `max` tasks whose lease expired. Returns their ids.
    pub(crate) async fn reclaim_expired(
        &self,
        queue: &str,
        max: usize,
        limits: ArchiveLimits,
    ) -> Result<Vec<String>, Error> {
        let keys = self.queue_keys(queue);
        let mut invocation = invocation(&SCRIPTS.reclaim, &keys);
        invocation
            .arg(max)
            .arg(limits.max_size)
            .arg(millis(limits.max_age));
        self.run(queue, None, &invocation).await
    }

    /// Housekeeping for one queue: forgets completed tasks past their
    /// retention (and, with a flow's root, the flow's finished tasks),
    /// drops expired unique locks and trims the archive.
    pub(crate) async fn trim(&self, queue: &str, limits: ArchiveLimits) -> Result<(), Error> {
        let keys = self.queue_keys(queue);
        let mut invocation = invocation(&SCRIPTS.trim, &keys);
        invocation
            .arg(TRIM_BATCH)
            .arg(limits.max_size)
            .arg(millis(limits.max_age));
        type Pairs = Vec<(String, Vec<u8>)>;
        type Trimmed = (i64, i64, i64, Vec<String>, Pairs, Pairs);
        let (_, _, _, overdue, leftovers, unfinished): Trimmed =
            self.run(queue, None, &invocation).await?;
        if !overdue.is_empty() {
            self.deliver_flow_reports(queue, &overdue, limits).await?;
        }
        if !leftovers.is_empty() {
            self.forget_flow_leftovers(queue, &leftovers).await?;
        }
        if !unfinished.is_empty() {
            self.settle_unfinished_writes(queue, &unfinished, limits)
                .await?;
        }
        Ok(())
    }

    /// Cancels a task that has not finished: it is archived with a
    /// `cancelled` error; if it is running, its worker stops it at once.
    /// Returns the state it was in, or `None` when there is no such task.
    pub(crate) async fn cancel(
        &self,
        queue: &str,
        id: &str,
        limits: ArchiveLimits,
    ) -> Result<Option<TaskState>, Error> {
        let keys = self.queue_keys(queue);
        let mut invocation = invocation(&SCRIPTS.cancel, &keys);
        invocation
            .arg(id)
            .arg(limits.max_size)
            .arg(millis(limits.max_age));
        let state: Option<String> = self.run(queue, Some(id), &invocation).await?;
        let state = state
            .map(|s| s.parse().map_err(Error::Corrupt))
            .transpose()?;
        if state.is_some() {
            self.deliver_flow_reports(queue, &[id.to_string()], limits)
                .await?;
        }
        Ok(state)
    }

    /// Pauses a queue: workers stop leasing from it; enqueues still work.
    pub(crate) async fn pause(&self, queue: &str) -> Result<(), Error> {
        let keys = self.queue_keys(queue);
        self.query(redis::cmd("SET").arg(keys.paused()).arg(1))
            .await
    }

    /// Resumes a paused queue.
    pub(crate) async fn resume(&self, queue: &str) -> Result<(), Error> {
        let keys = self.queue_keys(queue);
        self.query::<()>(redis::cmd("DEL").arg(keys.paused()))
            .await?;
        self.query::<()>(
            redis::cmd("PUBLISH")
                .arg(keys.notify_channel())
                .arg("resumed"),
        )
        .await
    }

    /// Opens a separate pub/sub connection.
    pub(crate) async fn pubsub(&self) -> Result<redis::aio::PubSub, Error> {
        self.inner
            .pubsub
            .open()
            .await
            .map_err(|err| self.redis_error(err))
    }
}

/// Starts a script call with all of a queue's keys.
pub(crate) fn invocation<'a>(script: &'a Script, keys: &QueueKeys) -> ScriptInvocation<'a> {
    let mut invocation = script.prepare_invoke();
    for key in keys.all() {
        invocation.key(key);
    }
    invocation
}

/// The name of an error a script raised with `redis.error_reply(NAME)`.
/// Redis 7 sends those as `ERR NAME`; older servers as `NAME`.
pub(crate) fn script_error_name(err: &redis::RedisError) -> Option<&str> {
    match err.code() {
        Some(code) if code != "ERR" => Some(code),
        _ => err
            .detail()
            .and_then(|detail| detail.split_whitespace().next()),
    }
}

/// A duration in whole milliseconds, as scripts take them.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Hides the password of a Redis URL.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("redis://:hunter2@example.com:6379/0"),
            "redis://:***@example.com:6379/0"
        );
        assert_eq!(
            redact("redis://alice:hunter2@example.com"),
            "redis://alice:***@example.com"
        );
    }
}
