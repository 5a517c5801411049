//! Durable writes: an enqueue or a completion that returns only once
//! replicas have it.
//!
//! Redis replicates asynchronously: a master that acknowledged a write and
//! died a moment later can leave its replica, once promoted, without it
//! (RELIABILITY.md). With [`WaitReplicas`] set (for a client's enqueues,
//! [`ConnectOptions::wait_replicas`](super::connection::ConnectOptions);
//! for a worker's completions, `WorkerBuilder::wait_replicas`, through
//! [`Broker::settle_durably`]), the script and a `WAIT replicas timeout`
//! go to the master in one pipeline, on a connection of their own, and the
//! write counts as done only when enough replicas acknowledged it. `WAIT`
//! covers the writes of the connection it is sent on and blocks that
//! connection while it waits, hence the separate connection: the broker's
//! other commands (lease renewals, fetches) never queue behind it.

use std::time::Duration;

use redis::{ScriptInvocation, Value};

use super::{Broker, Error, script_error_name};

/// How many replicas must acknowledge a write, and how long to wait for
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitReplicas {
    /// Replicas that must have the write.
    pub replicas: u32,
    /// The longest to wait for them; past it the write is reported as not
    /// replicated (it is on the master all the same).
    pub timeout: Duration,
}

impl WaitReplicas {
    /// `replicas` replicas within 5 s.
    pub fn new(replicas: u32) -> WaitReplicas {
        WaitReplicas {
            replicas,
            timeout: Duration::from_secs(5),
        }
    }

    /// The timeout as `WAIT` takes it: whole milliseconds, at least 1 (0
    /// would wait for ever).
    pub(crate) fn timeout_ms(&self) -> u64 {
        super::millis(self.timeout).max(1)
    }
}

impl Broker {
    /// Runs a script of `queue` then `WAIT`s for the configured replicas,
    /// in one pipeline on the durable connection. Returns the script's
    /// reply and, when fewer replicas than asked acknowledged it in time,
    /// the [`Error::NotReplicated`] that says so (the script's writes are
    /// on the master either way).
    pub(crate) async fn run_durable<T: redis::FromRedisValue>(
        &self,
        queue: &str,
        invocation: &ScriptInvocation<'_>,
        wait: WaitReplicas,
    ) -> Result<(T, Option<Error>), Error> {
        let mut conn = self.durable_conn().await?;
        let mut pipe = redis::pipe();
        // Errors come back as values, so that NOSCRIPT can be told apart.
        pipe.ignore_errors()
            .invoke_script(invocation)
            .cmd("WAIT")
            .arg(wait.replicas)
            .arg(wait.timeout_ms());
        let mut loaded = false;
        let replies: Vec<Value> = loop {
            let replies: Vec<Value> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|err| self.redis_error(err))?;
            // A script the server does not know yet (or forgot in a
            // restart): load it and send the pipeline again; the failed
            // EVALSHA wrote nothing.
            let unknown = matches!(replies.first(), Some(Value::ServerError(err)) if err.code() == "NOSCRIPT");
            if unknown && !loaded {
                invocation
                    .load_async(&mut conn)
                    .await
                    .map_err(|err| self.redis_error(err))?;
                loaded = true;
                continue;
            }
            break replies;
        };
        let [reply, acknowledged] = <[Value; 2]>::try_from(replies).map_err(|replies| {
            Error::Corrupt(format!(
                "a script and WAIT on {queue:?} answered {} replies",
                replies.len()
            ))
        })?;
        let reply: T = match reply {
            Value::ServerError(err) => {
                let err = redis::RedisError::from(err);
                return Err(match script_error_name(&err) {
                    Some("LEASE_LOST") => Error::LeaseLost {
                        queue: queue.to_string(),
                        id: String::new(),
                    },
                    _ => self.redis_error(err),
                });
            }
            reply => redis::from_redis_value(reply)
                .map_err(|err| Error::Corrupt(format!("a script on {queue:?} answered: {err}")))?,
        };
        let acknowledged: i64 = redis::from_redis_value(acknowledged)
            .map_err(|err| Error::Corrupt(format!("WAIT answered: {err}")))?;
        let acknowledged = u32::try_from(acknowledged.max(0)).unwrap_or(u32::MAX);
        let shortfall = (acknowledged < wait.replicas).then(|| Error::NotReplicated {
            url: self.url().to_string(),
            wanted: wait.replicas,
            acknowledged,
            timeout: wait.timeout,
        });
        Ok((reply, shortfall))
    }
}
