//! The one vocabulary of outcomes a worker records for the tasks it leased,
//! and the one call that records them (`scripts/settle.lua`).
//!
//! Whatever happened to an attempt (it completed, failed, ended its task,
//! was put back for a while, or was stopped by a shutdown) becomes one
//! [`Settlement`]; a worker's acker sends every settlement that is ready in
//! one script call per queue, whatever their kinds.

use std::time::Duration;

use redis::ScriptInvocation;

use super::scripts::SCRIPTS;
use super::{ArchiveLimits, Broker, Error, QueueKeys, WaitReplicas, invocation, millis};
use crate::task::{ErrorRecord, TaskMessage};

/// What to record for a leased task.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// The attempt succeeded: the task is completed with this result, kept
    /// for its retention; its unique lock is released.
    Complete {
        /// The handler's result.
        result: Vec<u8>,
    },
    /// The attempt failed and the task will be tried again after `delay`.
    Retry {
        /// How long until the next attempt.
        delay: Duration,
        /// Why the attempt failed.
        error: ErrorRecord,
    },
    /// The attempt failed for good: the task is archived with its error and
    /// its unique lock released.
    Archive {
        /// Why the task ended.
        error: ErrorRecord,
    },
    /// The task goes back to scheduled for `delay`, its attempt not counted,
    /// with `note` as its last error (it could not start now).
    Postpone {
        /// How long until it is due again.
        delay: Duration,
        /// Why, shown as its last error.
        note: ErrorRecord,
    },
    /// The task goes back to the head of pending, its attempt not counted
    /// (the worker is shutting down).
    Requeue,
}

impl Settlement {
    /// The name `settle.lua` knows this kind by.
    fn kind(&self) -> &'static str {
        match self {
            Settlement::Complete { .. } => "complete",
            Settlement::Retry { .. } => "retry",
            Settlement::Archive { .. } => "archive",
            Settlement::Postpone { .. } => "postpone",
            Settlement::Requeue => "requeue",
        }
    }
}

/// One settlement of one leased task, as [`Broker::settle`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct Settle<'a> {
    /// The task's id.
    pub id: &'a str,
    /// The lease token the task is held under.
    pub owner: &'a str,
    /// How long the task is kept once completed (ms; 0: forgotten at once).
    pub retention_ms: u64,
    /// The unique lock the task holds, if any (released when it ends).
    pub unique_key: Option<&'a str>,
    /// What to record.
    pub settlement: &'a Settlement,
    /// Whether the task is a flow child or in a batch, whose end is
    /// reported to its parent or batch.
    pub reports_end: bool,
}

impl<'a> Settle<'a> {
    /// The settlement of a task leased as `message`.
    pub fn of(message: &'a TaskMessage, owner: &'a str, settlement: &'a Settlement) -> Self {
        Settle {
            id: &message.id,
            owner,
            retention_ms: message.retention_ms,
            unique_key: message.unique_key.as_deref(),
            settlement,
            reports_end: message.reports_end(),
        }
    }
}

/// What bounds the writes of a settlement: the archive's caps and the
/// budget of each queue's stored results.
#[derive(Debug, Clone, Copy)]
pub struct SettleLimits {
    /// Caps on the archive, trimmed as tasks are archived.
    pub archive: ArchiveLimits,
    /// The most bytes of results a queue keeps (0: no budget).
    pub result_budget: u64,
}

impl Broker {
    /// Records settlements of leased tasks of `queue`, any mix of kinds, in
    /// one script call. Answers per settlement, in order: `Ok`, or
    /// [`Error::LeaseLost`] when the caller no longer holds that task (it
    /// was left alone).
    pub(crate) async fn settle(
        &self,
        queue: &str,
        settlements: &[Settle<'_>],
        limits: SettleLimits,
    ) -> Result<Vec<Result<(), Error>>, Error> {
        let keys = self.queue_keys(queue);
        let call = settle_call(&keys, settlements, limits);
        let answers: Vec<i64> = self.run(queue, None, &call).await?;
        per_settlement(queue, settlements, answers)
    }

    /// As [`Broker::settle`], then `WAIT` for `wait.replicas` replicas, in
    /// one pipeline on the durable connection (`durable.rs`), so that the
    /// settlements (and every write before them) are on the replicas when
    /// this returns. Also returns the [`Error::NotReplicated`] that says so
    /// when fewer replicas acknowledged them in time; they are recorded on
    /// the master either way.
    pub(crate) async fn settle_durably(
        &self,
        queue: &str,
        settlements: &[Settle<'_>],
        limits: SettleLimits,
        wait: WaitReplicas,
    ) -> Result<(Vec<Result<(), Error>>, Option<Error>), Error> {
        let keys = self.queue_keys(queue);
        let call = settle_call(&keys, settlements, limits);
        let (answers, shortfall) = self.run_durable(queue, &call, wait).await?;
        Ok((per_settlement(queue, settlements, answers)?, shortfall))
    }
}

/// The `settle.lua` call that records `settlements`.
fn settle_call(
    keys: &QueueKeys,
    settlements: &[Settle<'_>],
    limits: SettleLimits,
) -> ScriptInvocation<'static> {
    let mut call = invocation(&SCRIPTS.settle, keys);
    call.arg(limits.result_budget)
        .arg(limits.archive.max_size)
        .arg(millis(limits.archive.max_age));
    for settle in settlements {
        call.arg(settle.settlement.kind())
            .arg(settle.id)
            .arg(settle.owner);
        let unique_key = settle.unique_key.unwrap_or("");
        match settle.settlement {
            Settlement::Complete { result } => {
                // A result nothing keeps (no retention) and nothing hears
                // of (no parent, no batch) is not sent: a 1 MB result would
                // cross the network and be copied and hashed into the
                // script's Lua state for nothing.
                let kept = settle.retention_ms > 0 || settle.reports_end;
                let result: &[u8] = if kept { result } else { b"" };
                call.arg(settle.retention_ms).arg(result).arg(unique_key);
            }
            Settlement::Retry { delay, error } => {
                call.arg(millis(*delay)).arg(encode_error(error)).arg("");
            }
            Settlement::Archive { error } => {
                call.arg("").arg(encode_error(error)).arg(unique_key);
            }
            Settlement::Postpone { delay, note } => {
                call.arg(millis(*delay)).arg(encode_error(note)).arg("");
            }
            Settlement::Requeue => {
                call.arg("").arg("").arg("");
            }
        }
        call.arg(if settle.reports_end { "1" } else { "" });
    }
    call
}

/// `settle.lua`'s answers (1: recorded, 0: not held), one per settlement.
fn per_settlement(
    queue: &str,
    settlements: &[Settle<'_>],
    answers: Vec<i64>,
) -> Result<Vec<Result<(), Error>>, Error> {
    if answers.len() != settlements.len() {
        return Err(Error::Corrupt(format!(
            "settle on {queue:?} answered {} times for {} tasks",
            answers.len(),
            settlements.len()
        )));
    }
    Ok(settlements
        .iter()
        .zip(answers)
        .map(|(settle, answer)| match answer {
            1 => Ok(()),
            _ => Err(Error::LeaseLost {
                queue: queue.to_string(),
                id: settle.id.to_string(),
            }),
        })
        .collect())
}

fn encode_error(error: &ErrorRecord) -> String {
    // ErrorRecord holds only strings and numbers: encoding cannot fail.
    serde_json::to_string(error).expect("an ErrorRecord always encodes")
}

/// The settle script against a real redis-server: each batch records
/// exactly the tasks its caller holds, once each, whatever the mix of
/// kinds.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Client, LeasedTask, NewTask};
    use crate::dev::RedisServer;
    use crate::task::{FailureKind, TaskState};

    const LEASE: Duration = Duration::from_secs(60);

    async fn start() -> (RedisServer, Client) {
        let redis = RedisServer::start().expect("redis-server starts (is it installed?)");
        let client = Client::connect(&redis.url()).await.expect("Redis answers");
        (redis, client)
    }

    fn limits() -> SettleLimits {
        SettleLimits {
            archive: ArchiveLimits::default(),
            result_budget: crate::broker::DEFAULT_RESULT_BUDGET,
        }
    }

    fn error(kind: FailureKind, message: &str) -> ErrorRecord {
        ErrorRecord {
            kind,
            message: message.into(),
            attempt: 1,
            at_ms: 0,
        }
    }

    /// The indexes of the answers that were refused.
    fn refused(answers: &[Result<(), Error>]) -> Vec<usize> {
        answers
            .iter()
            .enumerate()
            .filter(|(_, answer)| answer.is_err())
            .map(|(n, _)| n)
            .collect()
    }

    async fn enqueue(client: &Client, tasks: Vec<NewTask>) {
        for outcome in client.enqueue_batch(tasks).await {
            outcome.expect("enqueued");
        }
    }

    async fn lease(broker: &Broker, max: usize, owner: &str) -> Vec<LeasedTask> {
        broker
            .dequeue("default", max, LEASE, owner)
            .await
            .expect("dequeued")
            .tasks
    }

    /// The message of the task `id` among `tasks`.
    fn leased<'a>(tasks: &'a [LeasedTask], id: &str) -> &'a TaskMessage {
        &tasks
            .iter()
            .find(|task| task.message.id == id)
            .unwrap_or_else(|| panic!("{id} leased"))
            .message
    }

    /// A plain connection to `redis`, to look at what the scripts left.
    async fn raw_connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    async fn state(client: &Client, id: &str) -> (TaskState, u32, Option<ErrorRecord>) {
        let info = client
            .task(id, Some("default"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id} is kept"));
        (info.state, info.attempts, info.last_error)
    }

    #[tokio::test]
    async fn one_batch_records_every_kind_for_the_tasks_its_caller_holds() {
        let (_redis, client) = start().await;
        let broker = client.broker();
        let unique = || {
            NewTask::new("echo", r#"{"unique":true}"#)
                .unwrap()
                .unique(Duration::from_secs(3600))
        };
        let mut tasks: Vec<NewTask> = (0..5)
            .map(|n| NewTask::new("echo", "{}").unwrap().id(format!("t{n}")))
            .collect();
        tasks.push(unique().id("u"));
        enqueue(&client, tasks).await;
        let mine = lease(broker, 6, "me").await;
        enqueue(
            &client,
            vec![NewTask::new("echo", "{}").unwrap().id("theirs")],
        )
        .await;
        let theirs = lease(broker, 1, "them").await;
        let task = |id: &str| leased(&mine, id);

        let complete = Settlement::Complete {
            result: b"done".to_vec(),
        };
        let failed = error(FailureKind::Trap, "wasm trap: unreachable");
        let retry = Settlement::Retry {
            delay: Duration::from_secs(30),
            error: failed.clone(),
        };
        let archive = Settlement::Archive {
            error: failed.clone(),
        };
        let note = error(FailureKind::Probation, "postponed: on probation");
        let postpone = Settlement::Postpone {
            delay: Duration::from_secs(60),
            note: note.clone(),
        };
        let settles = [
            Settle::of(task("t0"), "me", &complete),
            Settle::of(task("t1"), "me", &retry),
            Settle::of(task("t2"), "me", &archive),
            Settle::of(task("t3"), "me", &postpone),
            Settle::of(task("t4"), "me", &Settlement::Requeue),
            Settle::of(task("u"), "me", &archive),
            // A repeat, and a task another worker holds.
            Settle::of(task("t0"), "me", &retry),
            Settle::of(&theirs[0].message, "me", &complete),
        ];
        let answers = broker.settle("default", &settles, limits()).await.unwrap();
        assert_eq!(
            refused(&answers),
            [6, 7],
            "the repeat and theirs are refused"
        );

        let info = client.task("t0", Some("default")).await.unwrap().unwrap();
        assert_eq!(info.state, TaskState::Completed);
        assert_eq!(info.result.as_deref(), Some(&b"done"[..]));
        assert_eq!(
            state(&client, "t1").await,
            (TaskState::Retry, 1, Some(failed.clone()))
        );
        assert_eq!(
            state(&client, "t2").await,
            (TaskState::Archived, 1, Some(failed.clone()))
        );
        assert_eq!(
            state(&client, "t3").await,
            (TaskState::Scheduled, 0, Some(note)),
            "a postponed attempt is not counted"
        );
        assert_eq!(
            state(&client, "t4").await,
            (TaskState::Pending, 0, None),
            "a requeued attempt is not counted"
        );
        assert_eq!(
            state(&client, "theirs").await.0,
            TaskState::Active,
            "theirs still runs"
        );
        // The archived unique task's lock is gone: the same task goes in again.
        client
            .enqueue(unique())
            .await
            .expect("the lock was released");

        // Pending now: the requeued task and the new unique one; nothing
        // else is due before the retry, in 30 s.
        let next = broker.dequeue("default", 10, LEASE, "me").await.unwrap();
        let mut ids: Vec<&str> = next
            .tasks
            .iter()
            .map(|task| task.message.id.as_str())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(ids.contains(&"t4"), "{ids:?}");
        let due_in = next.next_due_ms.unwrap() - next.server_now_ms;
        assert!((29_000..=30_000).contains(&due_in), "{due_in} ms");
    }

    #[tokio::test]
    async fn batch_completions_keep_or_forget_each_task_by_its_retention() {
        let (redis, client) = start().await;
        let broker = client.broker();
        // More tasks than one Redis command of the scripts carries, so that
        // the chunking is used too.
        let tasks: Vec<NewTask> = (0..1200)
            .map(|n| {
                let retention = if n % 2 == 0 { 0 } else { 60 };
                NewTask::new("echo", "{}")
                    .unwrap()
                    .id(format!("t{n}"))
                    .retention(Duration::from_secs(retention))
            })
            .collect();
        enqueue(&client, tasks).await;
        let mine = lease(broker, 1100, "me").await;
        let theirs = lease(broker, 100, "them").await;
        assert_eq!((mine.len(), theirs.len()), (1100, 100));
        assert!(
            mine.iter().chain(&theirs).all(|task| task.attempt == 1),
            "every task is on its first attempt"
        );
        let complete = Settlement::Complete {
            result: b"done".to_vec(),
        };
        let mut settles: Vec<Settle<'_>> = mine
            .iter()
            .map(|task| Settle::of(&task.message, "me", &complete))
            .collect();
        settles.push(Settle::of(&mine[0].message, "me", &complete));
        settles.push(Settle::of(&theirs[0].message, "me", &complete));
        let answers = broker.settle("default", &settles, limits()).await.unwrap();
        assert_eq!(
            refused(&answers),
            [1100, 1101],
            "the repeat and theirs are refused"
        );

        for task in &mine {
            let info = client
                .task(&task.message.id, Some("default"))
                .await
                .unwrap();
            if task.message.retention_ms == 0 {
                assert!(info.is_none(), "{} should be forgotten", task.message.id);
            } else {
                let info = info.expect("a retained task is kept");
                assert_eq!(info.state, TaskState::Completed);
                assert_eq!(info.result.as_deref(), Some(&b"done"[..]));
            }
        }
        // Leases left: their 100 tasks (plus the field that keeps the hash
        // a hashtable); attempts: theirs and my 550 retained tasks (plus it).
        let mut conn = raw_connection(&redis).await;
        let hlen = |key: &'static str| redis::cmd("HLEN").arg(key).clone();
        let owners: i64 = hlen("wasmq:{default}:owner")
            .query_async(&mut conn)
            .await
            .unwrap();
        let attempts: i64 = hlen("wasmq:{default}:attempts")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!((owners, attempts), (101, 651));
    }

    #[tokio::test]
    async fn a_result_nothing_keeps_is_not_sent_and_a_kept_one_is_stored() {
        let (redis, client) = start().await;
        let broker = client.broker();
        enqueue(
            &client,
            vec![
                NewTask::new("echo", "{}")
                    .unwrap()
                    .id("forgotten")
                    .retention(Duration::ZERO),
                NewTask::new("echo", "{}").unwrap().id("kept"),
            ],
        )
        .await;
        let tasks = lease(broker, 2, "me").await;
        let message = |id: &str| leased(&tasks, id);
        let mut conn = raw_connection(&redis).await;
        // What the server has read from all its clients so far, in bytes.
        let mut bytes_in = async || -> u64 {
            let info: String = redis::cmd("INFO")
                .arg("stats")
                .query_async(&mut conn)
                .await
                .unwrap();
            info.lines()
                .find_map(|line| line.strip_prefix("total_net_input_bytes:"))
                .and_then(|n| n.trim().parse().ok())
                .expect("INFO stats names total_net_input_bytes")
        };
        let megabyte = Settlement::Complete {
            result: vec![b'x'; 1 << 20],
        };

        let before = bytes_in().await;
        let forgotten = [Settle::of(message("forgotten"), "me", &megabyte)];
        let answers = broker.settle("default", &forgotten, limits()).await;
        assert!(refused(&answers.unwrap()).is_empty());
        let sent = bytes_in().await - before;
        assert!(sent < 64 * 1024, "{sent} bytes sent to forget a task");
        assert!(
            client
                .task("forgotten", Some("default"))
                .await
                .unwrap()
                .is_none()
        );

        let before = bytes_in().await;
        let kept = [Settle::of(message("kept"), "me", &megabyte)];
        let answers = broker.settle("default", &kept, limits()).await;
        assert!(refused(&answers.unwrap()).is_empty());
        let sent = bytes_in().await - before;
        assert!(sent > 1 << 20, "only {sent} bytes sent with a kept result");
        let info = client.task("kept", Some("default")).await.unwrap().unwrap();
        assert_eq!(info.state, TaskState::Completed);
        assert_eq!(info.result.map(|result| result.len()), Some(1 << 20));
    }

    #[tokio::test]
    async fn a_durable_settle_records_first_then_says_how_many_replicas_have_it() {
        let (_redis, client) = start().await;
        let broker = client.broker();
        enqueue(
            &client,
            vec![
                NewTask::new("echo", "{}").unwrap().id("a"),
                NewTask::new("echo", "{}").unwrap().id("b"),
            ],
        )
        .await;
        let mine = lease(broker, 2, "me").await;
        let complete = Settlement::Complete {
            result: b"done".to_vec(),
        };
        let settles: Vec<Settle<'_>> = mine
            .iter()
            .map(|task| Settle::of(&task.message, "me", &complete))
            .collect();
        // A server with no replica: WAIT answers 0 once its timeout passes.
        let wait = WaitReplicas {
            replicas: 1,
            timeout: Duration::from_millis(50),
        };
        let (answers, shortfall) = broker
            .settle_durably("default", &settles, limits(), wait)
            .await
            .unwrap();
        assert!(refused(&answers).is_empty(), "both recorded");
        match shortfall {
            Some(Error::NotReplicated {
                wanted: 1,
                acknowledged: 0,
                ..
            }) => {}
            other => panic!("the shortfall is reported: {other:?}"),
        }
        for id in ["a", "b"] {
            assert_eq!(
                state(&client, id).await.0,
                TaskState::Completed,
                "{id} is completed on the master all the same"
            );
        }
        // Without replicas to wait for, nothing falls short.
        let none = WaitReplicas {
            replicas: 0,
            timeout: Duration::from_millis(50),
        };
        let (answers, shortfall) = broker
            .settle_durably("default", &settles, limits(), none)
            .await
            .unwrap();
        assert_eq!(refused(&answers), [0, 1], "already settled: refused");
        assert!(shortfall.is_none(), "{shortfall:?}");
    }
}
