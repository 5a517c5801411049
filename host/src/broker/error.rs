//! The errors of the broker: the cases callers branch on (a duplicate, a
//! lost lease, Redis out of reach) each have their own variant.

use std::time::Duration;

use crate::task::TaskState;

/// A broker error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Redis URL could not be parsed.
    #[error(
        "invalid Redis URL {url:?}: {reason}; expected redis://[:PASSWORD@]HOST[:PORT][/DB], redis+cluster://HOST:PORT,HOST:PORT,… or redis+sentinel://HOST:PORT,…/MASTER (rediss:// and rediss+… for TLS)"
    )]
    InvalidUrl {
        /// The URL, with any password hidden.
        url: String,
        /// What was wrong with it.
        reason: String,
    },

    /// Redis did not answer, or the connection broke.
    #[error(
        "Redis at {url} is unreachable: {source}; check that redis-server is running there and that the URL names it"
    )]
    Unreachable {
        /// The URL, with any password hidden.
        url: String,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },

    /// Redis is at its `maxmemory` and refuses writes (the `noeviction`
    /// policy, which wasmq needs so that no task is evicted).
    #[error(
        "Redis at {url} is out of memory: it is at its maxmemory and refuses writes (policy noeviction), so nothing was written; free memory (delete finished tasks, e.g. `wasmq task deleteall --queue Q --state completed`; keep results for less time; give workers a smaller result budget) or raise maxmemory"
    )]
    OutOfMemory {
        /// The URL, with any password hidden.
        url: String,
    },

    /// Redis refused to serve without the right password.
    #[error("{}", auth_message(url, *missing))]
    Auth {
        /// The URL, with any password hidden.
        url: String,
        /// True when no password was given (`NOAUTH`); false when the one
        /// given was refused (`WRONGPASS`).
        missing: bool,
    },

    /// A TLS connection could not be made: the server's certificate was
    /// refused (say why), or the TLS options are unusable.
    #[error("TLS connection to Redis at {url} failed: {problem}")]
    Tls {
        /// The URL, with any password hidden.
        url: String,
        /// Which kind of failure it is.
        kind: TlsFailure,
        /// What went wrong and what to do about it.
        problem: String,
    },

    /// A write reached the master but fewer replicas than asked for
    /// acknowledged it in time ([`WaitReplicas`](super::WaitReplicas)): it
    /// is in Redis, but a failover now could lose it.
    #[error(
        "the write is on the master of {url} but only {acknowledged} of the {wanted} replica(s) asked for acknowledged it within {}: a failover now could lose it; check the replicas (`INFO replication`), or wait for fewer replicas or longer",
        humantime::format_duration(*timeout)
    )]
    NotReplicated {
        /// The URL, with any password hidden.
        url: String,
        /// Replicas asked for.
        wanted: u32,
        /// Replicas that acknowledged the write.
        acknowledged: u32,
        /// How long the wait lasted.
        timeout: Duration,
    },

    /// Redis answered with an error.
    #[error("Redis at {url} refused a command: {source}")]
    Redis {
        /// The URL, with any password hidden.
        url: String,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },

    /// A task with this id already exists in the queue, or its id is still
    /// reserved.
    #[error("{}", duplicate_id_message(queue, id, *state, *reserved_for))]
    DuplicateId {
        /// The queue.
        queue: String,
        /// The id that is taken.
        id: String,
        /// The state of the task that holds it; `None` when the task is gone
        /// but its id is still reserved.
        state: Option<TaskState>,
        /// How long the id stays reserved, when it is.
        reserved_for: Option<Duration>,
    },

    /// An equal task holds the unique lock.
    #[error(
        "duplicate task: an equal {task_type:?} task (same queue and payload) is already held by task {holder} in queue {queue:?} for {} more; wait for it to finish or its lock to expire, or delete it with `wasmq task delete {holder} --queue {queue}`",
        humantime::format_duration(*remaining)
    )]
    DuplicateUnique {
        /// The queue.
        queue: String,
        /// The task type.
        task_type: String,
        /// The id of the task holding the lock.
        holder: String,
        /// How long the lock still holds.
        remaining: Duration,
    },

    /// A queue still has unfinished tasks, and was not removed.
    #[error("queue {queue:?} still has unfinished tasks: wait for them, or remove it with them")]
    QueueNotEmpty {
        /// The queue.
        queue: String,
    },

    /// A task id names tasks in several queues, and no queue was given.
    #[error("task id {id:?} exists in several queues ({}): name the queue", queues.join(", "))]
    AmbiguousId {
        /// The id.
        id: String,
        /// The queues that hold a task of that id.
        queues: Vec<String>,
    },

    /// The worker no longer holds the task's lease: it expired and the task
    /// was taken back (or deleted). The attempt's outcome is dropped.
    #[error(
        "the lease on task {id} in queue {queue:?} was lost: it expired and the task was taken back"
    )]
    LeaseLost {
        /// The queue.
        queue: String,
        /// The task.
        id: String,
    },

    /// The task is running, so it cannot be changed that way.
    #[error(
        "task {id} in queue {queue:?} is running; cancel it first with `wasmq task cancel {id}`"
    )]
    TaskActive {
        /// The queue.
        queue: String,
        /// The task.
        id: String,
    },

    /// The task already finished (archived or completed).
    #[error(
        "task {id} in queue {queue:?} has already finished (archived or completed): nothing to cancel"
    )]
    TaskFinished {
        /// The queue.
        queue: String,
        /// The task.
        id: String,
    },

    /// The task (or its options) is not acceptable.
    #[error("{0}")]
    InvalidTask(String),
    /// A flow was refused whole, before anything of it was enqueued.
    #[error("the flow was refused, nothing of it was enqueued: {path}: {reason}")]
    InvalidFlow {
        /// Where in the tree: `children[3].children[0].id` (`root` for the
        /// top node).
        path: String,
        /// What is wrong there.
        reason: String,
    },

    /// The worker stopped before it could record an outcome.
    #[error(
        "the worker stopped before the outcome was recorded; the task's lease will expire and it runs again"
    )]
    Stopped,

    /// Data read from Redis is not what wasmq wrote.
    #[error("unexpected data in Redis: {0}")]
    Corrupt(String),
}

/// What kind of TLS failure an [`Error::Tls`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate is signed by no CA this client trusts.
    UnknownIssuer,
    /// The server's certificate has expired.
    Expired,
    /// The server's certificate is not valid yet.
    NotValidYet,
    /// The server's certificate does not name the host connected to.
    WrongName,
    /// The server requires a client certificate, and none was given.
    ClientCertificateRequired,
    /// The server's certificate was refused for another reason.
    Refused,
    /// The server does not speak TLS there.
    NotTls,
    /// A certificate, key or CA file cannot be read, or a client
    /// certificate was given without its key (or the other way round).
    Files,
}

impl Error {
    /// True when Redis refused a write because it is at its memory limit:
    /// retrying once memory is freed may succeed.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, Error::OutOfMemory { .. })
    }

    /// True when the error is about reaching Redis rather than about the
    /// request: retrying later may succeed.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }

    /// Wraps an error met while connecting: a refused password or a full
    /// Redis is named as such, anything else is Redis out of reach.
    pub(crate) fn connecting(url: &str, source: redis::RedisError) -> Self {
        refusal(url, &source).unwrap_or_else(|| Error::Unreachable {
            url: url.to_string(),
            source,
        })
    }

    /// Wraps a Redis error, telling connection trouble from refusals.
    pub(crate) fn from_redis(url: &str, source: redis::RedisError) -> Self {
        if let Some(refusal) = refusal(url, &source) {
            return refusal;
        }
        if source.is_io_error()
            || source.is_connection_dropped()
            || source.is_connection_refusal()
            || source.is_timeout()
            || source.is_unrecoverable_error()
            || source.code() == Some("LOADING")
            // A cluster between a master's failure and its replica's
            // promotion: transient, like an outage.
            || source.is_cluster_error()
            || matches!(source.code(), Some("MASTERDOWN" | "READONLY"))
        {
            Error::Unreachable {
                url: url.to_string(),
                source,
            }
        } else {
            Error::Redis {
                url: url.to_string(),
                source,
            }
        }
    }
}

/// The refusals that have a variant of their own: out of memory, and a
/// password missing or wrong. Matched on the code and, for errors wrapped
/// by a script or by the client, on the text.
fn refusal(url: &str, source: &redis::RedisError) -> Option<Error> {
    let text = source.to_string();
    let url = url.to_string();
    if let Some((kind, problem)) = super::tls::explain(&text) {
        return Some(Error::Tls { url, kind, problem });
    }
    if is_oom(source) || text.contains("OOM command not allowed") {
        return Some(Error::OutOfMemory { url });
    }
    if source.code() == Some("NOAUTH") || text.contains("NOAUTH") {
        return Some(Error::Auth { url, missing: true });
    }
    if source.code() == Some("WRONGPASS")
        || text.contains("WRONGPASS")
        || source.kind() == redis::ErrorKind::AuthenticationFailed
    {
        return Some(Error::Auth {
            url,
            missing: false,
        });
    }
    None
}

fn auth_message(url: &str, missing: bool) -> String {
    if missing {
        format!(
            "Redis at {url} requires a password and none was given: put it in the URL, redis://:PASSWORD@HOST:PORT (or redis://USER:PASSWORD@… for an ACL user)"
        )
    } else {
        format!(
            "Redis at {url} refused the password in the URL: it is wrong (or that user does not exist, or that Redis has no password set); check the server's requirepass or ACL users and fix the URL"
        )
    }
}

/// Whether Redis refused a command (or one of a pipeline's) for want of
/// memory: `OOM command not allowed when used memory > 'maxmemory'`.
fn is_oom(source: &redis::RedisError) -> bool {
    source.code() == Some("OOM")
        || source
            .clone()
            .into_server_errors()
            .is_some_and(|errors| errors.iter().any(|(_, error)| error.code() == "OOM"))
}

fn duplicate_id_message(
    queue: &str,
    id: &str,
    state: Option<TaskState>,
    reserved_for: Option<Duration>,
) -> String {
    let Some(state) = state else {
        let left = reserved_for.map_or_else(String::new, |d| {
            format!(
                " for {} more",
                humantime::format_duration(Duration::from_secs(d.as_secs().max(1)))
            )
        });
        return format!(
            "duplicate task id {id:?}: its task in queue {queue:?} has finished, but the id stays reserved{left} (it was enqueued with a reservation)"
        );
    };
    let how = match state {
        TaskState::Active => format!(
            "it is running; cancel it (`wasmq task cancel {id}`) and delete it (`wasmq task delete {id} --queue {queue}`) to reuse the id"
        ),
        _ => format!("delete it with `wasmq task delete {id} --queue {queue}` to reuse the id"),
    };
    format!("duplicate task id {id:?}: queue {queue:?} already holds it as a {state} task; {how}")
}
