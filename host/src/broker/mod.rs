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
mod client;
pub mod connection;
pub mod cron;
mod durable;
mod error;
pub mod fleet;
mod inspect;
pub mod keys;
pub mod kv;
pub mod limits;
pub mod lineage;
mod notify;
pub mod registry;
mod scripts;
mod tls;
pub mod topology;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::{Script, ScriptInvocation, Value};

pub use admin::{BulkAction, QueueStats};
pub(crate) use client::unix_ms;
pub use client::{Client, DEFAULT_MAX_RETRY, DEFAULT_QUEUE, DEFAULT_RETENTION, Enqueued, NewTask};
pub use connection::{ConnectOptions, TlsOptions};
pub use durable::WaitReplicas;
pub use error::Error;
pub use inspect::{QueueCounts, TaskInfo};
pub use keys::QueueKeys;
pub use notify::{QueueEvent, listen, subscribe};

use crate::task::{ErrorRecord, TaskMessage, TaskState};
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
    /// The task as enqueued.
    pub message: TaskMessage,
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
    /// Whether the queue is paused.
    pub paused: bool,
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
    /// Connects to the Redis at `url` (`redis://[:PASSWORD@]HOST[:PORT][/DB]`).
    ///
    /// Fails at once with [`Error::Unreachable`] if Redis does not answer;
    /// once connected, the connection comes back by itself after outages.
    pub async fn connect(url: &str) -> Result<Broker, Error> {
        Broker::connect_with(url, &ConnectOptions::default()).await
    }

    /// Connects to the Redis at `url` with options: TLS material, the name
    /// connections carry in `CLIENT LIST`, and whether enqueues and
    /// completions wait for replicas. URLs are
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
    pub fn queue_keys(&self, queue: &str) -> Arc<QueueKeys> {
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
                self.inner
                    .target
                    .connect(self.inner.options.name.as_deref())
                    .await
                    .map_err(|err| self.redis_error(err))
            })
            .await
            .cloned()
    }

    /// How many replicas enqueues and completions wait for, if any.
    pub fn wait_replicas(&self) -> Option<WaitReplicas> {
        self.inner.options.wait_replicas
    }

    /// The name this broker's connections carry (`CLIENT SETNAME`).
    pub fn connection_name(&self) -> Option<&str> {
        self.inner.options.name.as_deref()
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
                Some("NOT_EMPTY") => Err(Error::InvalidTask(format!(
                    "queue {queue:?} still has unfinished tasks: wait for them, or remove it anyway with --force"
                ))),
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
    pub async fn queues(&self) -> Result<Vec<String>, Error> {
        let mut names: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(keys::QUEUES)).await?;
        names.sort();
        Ok(names)
    }

    /// Leases up to `max` tasks of `queue` to the worker whose lease token
    /// is `owner`, first moving due scheduled and retry tasks to pending.
    pub async fn dequeue(
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
        let paused = next_int("the paused flag")? == 1;
        let mut dequeued = Dequeued {
            tasks: Vec::new(),
            server_now_ms,
            next_due_ms: (next_due >= 0).then_some(next_due),
            paused,
        };
        let rest: Vec<Value> = fields.collect();
        for triple in rest.chunks(3) {
            let [id, msg, attempt] = triple else {
                return Err(Error::Corrupt(format!(
                    "dequeue on {queue:?} returned a truncated task entry"
                )));
            };
            let id: String = redis::from_redis_value_ref(id).map_err(|err| {
                Error::Corrupt(format!("dequeue on {queue:?} returned a bad id: {err}"))
            })?;
            let msg: Vec<u8> = redis::from_redis_value_ref(msg).map_err(|err| {
                Error::Corrupt(format!("task {id} in {queue:?} has no message: {err}"))
            })?;
            let attempt: i64 = redis::from_redis_value_ref(attempt).map_err(|err| {
                Error::Corrupt(format!(
                    "task {id} in {queue:?} has a bad attempt count: {err}"
                ))
            })?;
            match serde_json::from_slice::<TaskMessage>(&msg) {
                Ok(message) => dequeued.tasks.push(LeasedTask {
                    message,
                    attempt: u32::try_from(attempt.max(1)).unwrap_or(u32::MAX),
                }),
                Err(err) => {
                    // A message wasmq cannot read can never run: archive it
                    // so it is visible instead of failing forever.
                    let record = ErrorRecord {
                        kind: crate::task::FailureKind::BadPayload,
                        message: format!("the stored task message is unreadable: {err}"),
                        attempt: u32::try_from(attempt.max(1)).unwrap_or(u32::MAX),
                        at_ms: server_now_ms,
                    };
                    tracing::error!(queue, id, %err, "archiving a task whose stored message is unreadable");
                    self.archive(queue, &id, owner, &record, None, ArchiveLimits::default())
                        .await?;
                }
            }
        }
        Ok(dequeued)
    }

    /// Records successful attempts of tasks of `queue`, in one script call.
    /// Returns, per completion in order, `Ok` or `Error::LeaseLost` when the
    /// worker no longer holds that task (it was left alone).
    ///
    /// The queue's stored results are held to `result_budget` bytes (0:
    /// no budget): past it, the completed tasks that expire soonest are
    /// forgotten early, and a result larger than the whole budget is not
    /// stored (the task is kept as completed, with a note).
    pub async fn complete_batch(
        &self,
        queue: &str,
        completions: &[Completion<'_>],
        result_budget: u64,
    ) -> Result<Vec<Result<(), Error>>, Error> {
        let keys = self.queue_keys(queue);
        let mut invocation = invocation(&SCRIPTS.complete, &keys);
        invocation.arg(result_budget);
        for completion in completions {
            invocation
                .arg(completion.id)
                .arg(completion.owner)
                .arg(completion.retention_ms)
                .arg(completion.result)
                .arg(completion.unique_key.unwrap_or(""));
        }
        let recorded: Vec<i64> = match self.wait_replicas() {
            // Durable completions: recorded once replicas have them. A
            // shortfall is logged: the completions are on the master, and
            // nothing the worker could do would make them more durable.
            Some(wait) => {
                let (recorded, shortfall) = self.run_durable(queue, &invocation, wait).await?;
                if let Some(err) = shortfall {
                    tracing::warn!(queue, tasks = completions.len(), "completions: {err}");
                }
                recorded
            }
            None => self.run(queue, None, &invocation).await?,
        };
        Ok(per_task_answers(
            queue,
            completions.iter().map(|completion| completion.id),
            recorded,
        ))
    }

    /// Records a successful attempt, within the default result budget.
    pub async fn complete(
        &self,
        message: &TaskMessage,
        owner: &str,
        result: &[u8],
    ) -> Result<(), Error> {
        let completion = Completion {
            id: &message.id,
            owner,
            retention_ms: message.retention_ms,
            unique_key: message.unique_key.as_deref(),
            result,
        };
        self.complete_batch(&message.queue, &[completion], DEFAULT_RESULT_BUDGET)
            .await?
            .pop()
            .expect("one answer per completion")
    }

    /// Records failed attempts of tasks of `queue` that will be retried,
    /// each after its delay, in one script call. Answers per task, in
    /// order: `LeaseLost` for a task the worker no longer holds.
    pub async fn retry_batch(
        &self,
        queue: &str,
        retries: &[Retry<'_>],
    ) -> Result<Vec<Result<(), Error>>, Error> {
        let keys = self.queue_keys(queue);
        let mut invocation = invocation(&SCRIPTS.retry, &keys);
        for retry in retries {
            invocation
                .arg(retry.id)
                .arg(retry.owner)
                .arg(millis(retry.delay))
                .arg(encode_error(retry.error));
        }
        let recorded: Vec<i64> = self.run(queue, None, &invocation).await?;
        Ok(per_task_answers(
            queue,
            retries.iter().map(|retry| retry.id),
            recorded,
        ))
    }

    /// Records a failed attempt to be retried after `delay`.
    pub async fn retry(
        &self,
        message: &TaskMessage,
        owner: &str,
        delay: Duration,
        error: &ErrorRecord,
    ) -> Result<(), Error> {
        let retry = Retry {
            id: &message.id,
            owner,
            delay,
            error,
        };
        self.retry_batch(&message.queue, &[retry])
            .await?
            .pop()
            .expect("one answer per retry")
    }

    /// Archives tasks of `queue` whose attempts failed for good, in one
    /// script call, then trims the archive to `limits`. Answers per task,
    /// in order: `LeaseLost` for a task the worker no longer holds.
    pub async fn archive_batch(
        &self,
        queue: &str,
        archivals: &[Archival<'_>],
        limits: ArchiveLimits,
    ) -> Result<Vec<Result<(), Error>>, Error> {
        let keys = self.queue_keys(queue);
        let mut invocation = invocation(&SCRIPTS.archive, &keys);
        invocation.arg(limits.max_size).arg(millis(limits.max_age));
        for archival in archivals {
            invocation
                .arg(archival.id)
                .arg(archival.owner)
                .arg(encode_error(archival.error))
                .arg(archival.unique_key.unwrap_or(""));
        }
        let recorded: Vec<i64> = self.run(queue, None, &invocation).await?;
        Ok(per_task_answers(
            queue,
            archivals.iter().map(|archival| archival.id),
            recorded,
        ))
    }

    /// Archives a task whose attempt failed for good.
    pub async fn archive(
        &self,
        queue: &str,
        id: &str,
        owner: &str,
        error: &ErrorRecord,
        unique_key: Option<&str>,
        limits: ArchiveLimits,
    ) -> Result<(), Error> {
        let archival = Archival {
            id,
            owner,
            error,
            unique_key,
        };
        self.archive_batch(queue, &[archival], limits)
            .await?
            .pop()
            .expect("one answer per archival")
    }

    /// Puts leased tasks of one queue back in scheduled, each for its
    /// delay, not counting their attempts, each with its note as its last
    /// error. Answers per task, in order: `LeaseLost` for a task the worker
    /// no longer holds.
    pub async fn postpone_batch(
        &self,
        queue: &str,
        postponements: &[Postponement<'_>],
    ) -> Result<Vec<Result<(), Error>>, Error> {
        let keys = self.queue_keys(queue);
        let mut invocation = invocation(&SCRIPTS.postpone, &keys);
        for postponement in postponements {
            invocation
                .arg(postponement.id)
                .arg(postponement.owner)
                .arg(millis(postponement.delay))
                .arg(encode_error(postponement.note));
        }
        let postponed: Vec<i64> = self.run(queue, None, &invocation).await?;
        Ok(per_task_answers(
            queue,
            postponements.iter().map(|postponement| postponement.id),
            postponed,
        ))
    }

    /// Puts a leased task back in scheduled for `delay`, not counting the
    /// attempt, with `note` as its last error (its concurrency limit had no
    /// free slot).
    pub async fn postpone(
        &self,
        message: &TaskMessage,
        owner: &str,
        delay: Duration,
        note: &ErrorRecord,
    ) -> Result<(), Error> {
        let postponement = Postponement {
            id: &message.id,
            owner,
            delay,
            note,
        };
        self.postpone_batch(&message.queue, &[postponement])
            .await?
            .pop()
            .expect("one answer per postponement")
    }

    /// Puts a leased task back at the head of pending, not counting the
    /// attempt (the worker is shutting down).
    pub async fn requeue(&self, message: &TaskMessage, owner: &str) -> Result<(), Error> {
        let keys = self.queue_keys(&message.queue);
        let mut invocation = invocation(&SCRIPTS.requeue, &keys);
        invocation.arg(&message.id).arg(owner);
        self.run::<i64>(&message.queue, Some(&message.id), &invocation)
            .await
            .map(drop)
    }

    /// Extends by `lease` from now the leases on `held`, pairs of task id
    /// and the lease token it was leased under. Returns the ids no longer
    /// held.
    pub async fn extend_leases(
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
    pub async fn reclaim_expired(
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
    /// retention, drops expired unique locks and trims the archive.
    pub async fn trim(&self, queue: &str, limits: ArchiveLimits) -> Result<(), Error> {
        let keys = self.queue_keys(queue);
        let mut invocation = invocation(&SCRIPTS.trim, &keys);
        invocation
            .arg(TRIM_BATCH)
            .arg(limits.max_size)
            .arg(millis(limits.max_age));
        self.run::<Vec<i64>>(queue, None, &invocation)
            .await
            .map(drop)
    }

    /// Cancels a task that has not finished: it is archived with a
    /// `cancelled` error; if it is running, its worker stops it at once.
    /// Returns the state it was in, or `None` when there is no such task.
    pub async fn cancel(
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
        state.map(|s| s.parse().map_err(Error::Corrupt)).transpose()
    }

    /// Pauses a queue: workers stop leasing from it; enqueues still work.
    pub async fn pause(&self, queue: &str) -> Result<(), Error> {
        let keys = self.queue_keys(queue);
        self.query(redis::cmd("SET").arg(keys.paused()).arg(1))
            .await
    }

    /// Resumes a paused queue.
    pub async fn resume(&self, queue: &str) -> Result<(), Error> {
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

/// Turns a batch script's answer per task (1: written, 0: the caller no
/// longer holds the task) into a result per task.
fn per_task_answers<'a>(
    queue: &str,
    ids: impl Iterator<Item = &'a str>,
    answers: Vec<i64>,
) -> Vec<Result<(), Error>> {
    ids.zip(answers)
        .map(|(id, answer)| match answer {
            1 => Ok(()),
            _ => Err(Error::LeaseLost {
                queue: queue.to_string(),
                id: id.to_string(),
            }),
        })
        .collect()
}

fn encode_error(error: &ErrorRecord) -> String {
    // ErrorRecord holds only strings and numbers: encoding cannot fail.
    serde_json::to_string(error).expect("an ErrorRecord always encodes")
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

/// A leased task to put back for a while with [`Broker::postpone_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Postponement<'a> {
    /// The task's id.
    pub id: &'a str,
    /// The lease token the task is held under.
    pub owner: &'a str,
    /// How long until it is due again.
    pub delay: Duration,
    /// Why, shown as its last error.
    pub note: &'a ErrorRecord,
}

/// A failed attempt to record with [`Broker::retry_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Retry<'a> {
    /// The task's id.
    pub id: &'a str,
    /// The lease token the attempt ran under.
    pub owner: &'a str,
    /// How long until the next attempt.
    pub delay: Duration,
    /// Why the attempt failed.
    pub error: &'a ErrorRecord,
}

/// A failed attempt that ends its task, to record with
/// [`Broker::archive_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Archival<'a> {
    /// The task's id.
    pub id: &'a str,
    /// The lease token the attempt ran under.
    pub owner: &'a str,
    /// Why the attempt failed.
    pub error: &'a ErrorRecord,
    /// The unique lock the task holds, if any.
    pub unique_key: Option<&'a str>,
}

/// A successful attempt to record with [`Broker::complete_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    /// The task's id.
    pub id: &'a str,
    /// The lease token the attempt ran under.
    pub owner: &'a str,
    /// How long the task and its result are kept (0: forgotten at once).
    pub retention_ms: u64,
    /// The unique lock the task holds, if any.
    pub unique_key: Option<&'a str>,
    /// The handler's result.
    pub result: &'a [u8],
}
