//! Batched acknowledgements: the outcomes that are ready at the same moment
//! (completions, retries, archivals, and the postponements of tasks of
//! plugins on probation) go to Redis together, in one script call per queue
//! and kind.
//!
//! An execution hands its write to the acker and waits for the answer, so
//! a task is never acknowledged before it ran, and its slot is not freed
//! before its acknowledgement is written: a crash in between leaves the task
//! leased, and its lease expiring brings it back (at-least-once, as with
//! one call per task). The acker takes whatever writes wait each time it is
//! free, with no timer: a lone completion goes out at once, and under load
//! the batches grow by themselves.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::broker::{self, Archival, ArchiveLimits, Broker, Completion, Postponement, Retry};
use crate::task::{ErrorRecord, TaskMessage};

/// Most writes taken in one round.
const MAX_BATCH: usize = 256;

/// What to record for one task.
enum Write {
    /// A successful attempt, with its result.
    Complete {
        retention_ms: u64,
        unique_key: Option<String>,
        result: Vec<u8>,
    },
    /// Back to scheduled for `delay`, the attempt not counted.
    Postpone { delay: Duration, note: ErrorRecord },
    /// A failed attempt, tried again after `delay`.
    Retry { delay: Duration, error: ErrorRecord },
    /// A failed attempt that ends the task.
    Archive {
        error: ErrorRecord,
        unique_key: Option<String>,
    },
}

impl Write {
    /// Writes of the same kind (and queue) go in one call.
    fn kind(&self) -> u8 {
        match self {
            Write::Complete { .. } => 0,
            Write::Postpone { .. } => 1,
            Write::Retry { .. } => 2,
            Write::Archive { .. } => 3,
        }
    }
}

/// One write waiting for the acker.
struct Pending {
    queue: String,
    id: String,
    owner: String,
    write: Write,
    answer: oneshot::Sender<Result<(), broker::Error>>,
}

/// The handle executions send their writes through.
#[derive(Clone)]
pub struct Acks {
    sender: mpsc::UnboundedSender<Pending>,
}

impl Acks {
    /// Starts the acker; it runs until `stop`. Archivals trim the archive
    /// to `archive`; completions hold each queue's stored results to
    /// `result_budget` bytes.
    pub fn start(
        broker: Broker,
        archive: ArchiveLimits,
        result_budget: u64,
        stop: CancellationToken,
    ) -> (Acks, impl Future<Output = ()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let limits = Limits {
            archive,
            result_budget,
        };
        (Acks { sender }, acknowledge(broker, limits, receiver, stop))
    }

    /// Records a successful attempt; returns once Redis has it (or refused
    /// it: `LeaseLost` when another worker owns the task now).
    pub async fn complete(
        &self,
        message: &TaskMessage,
        owner: &str,
        result: &[u8],
    ) -> Result<(), broker::Error> {
        let write = Write::Complete {
            retention_ms: message.retention_ms,
            unique_key: message.unique_key.clone(),
            result: result.to_vec(),
        };
        self.send(message, owner, write).await
    }

    /// Puts a leased task back in scheduled for `delay` without counting
    /// the attempt, with `note` as its last error; returns once Redis has
    /// it (or refused it, as above).
    pub async fn postpone(
        &self,
        message: &TaskMessage,
        owner: &str,
        delay: Duration,
        note: &ErrorRecord,
    ) -> Result<(), broker::Error> {
        let write = Write::Postpone {
            delay,
            note: note.clone(),
        };
        self.send(message, owner, write).await
    }

    /// Records a failed attempt to be tried again after `delay`; returns
    /// once Redis has it (or refused it, as above).
    pub async fn retry(
        &self,
        message: &TaskMessage,
        owner: &str,
        delay: Duration,
        error: &ErrorRecord,
    ) -> Result<(), broker::Error> {
        let write = Write::Retry {
            delay,
            error: error.clone(),
        };
        self.send(message, owner, write).await
    }

    /// Archives a task whose attempt failed for good; returns once Redis
    /// has it (or refused it, as above).
    pub async fn archive(
        &self,
        message: &TaskMessage,
        owner: &str,
        error: &ErrorRecord,
    ) -> Result<(), broker::Error> {
        let write = Write::Archive {
            error: error.clone(),
            unique_key: message.unique_key.clone(),
        };
        self.send(message, owner, write).await
    }

    async fn send(
        &self,
        message: &TaskMessage,
        owner: &str,
        write: Write,
    ) -> Result<(), broker::Error> {
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            queue: message.queue.clone(),
            id: message.id.clone(),
            owner: owner.to_string(),
            write,
            answer,
        };
        self.sender
            .send(pending)
            .map_err(|_| broker::Error::Stopped)?;
        answered.await.map_err(|_| broker::Error::Stopped)?
    }
}

/// What bounds the writes: the archive's caps, the results' budget.
#[derive(Clone, Copy)]
struct Limits {
    archive: ArchiveLimits,
    result_budget: u64,
}

async fn acknowledge(
    broker: Broker,
    limits: Limits,
    mut receiver: mpsc::UnboundedReceiver<Pending>,
    stop: CancellationToken,
) {
    let mut batch: Vec<Pending> = Vec::new();
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            pending = receiver.recv() => match pending {
                Some(pending) => pending,
                None => return,
            },
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        // Stable: within a group, writes keep the order they came in.
        batch.sort_by(|a, b| (&a.queue, a.write.kind()).cmp(&(&b.queue, b.write.kind())));
        while !batch.is_empty() {
            let (queue, kind) = (&batch[0].queue, batch[0].write.kind());
            let same = batch
                .iter()
                .take_while(|pending| &pending.queue == queue && pending.write.kind() == kind)
                .count();
            let group: Vec<Pending> = batch.drain(..same).collect();
            write_group(&broker, limits, group).await;
        }
    }
}

/// Writes a group of writes of one queue and one kind in one call, and
/// answers each.
async fn write_group(broker: &Broker, limits: Limits, group: Vec<Pending>) {
    let queue = group[0].queue.as_str();
    let answers = match &group[0].write {
        Write::Complete { .. } => {
            let completions: Vec<Completion<'_>> = each(&group, |pending| match &pending.write {
                Write::Complete {
                    retention_ms,
                    unique_key,
                    result,
                } => Some(Completion {
                    id: &pending.id,
                    owner: &pending.owner,
                    retention_ms: *retention_ms,
                    unique_key: unique_key.as_deref(),
                    result,
                }),
                _ => None,
            });
            broker
                .complete_batch(queue, &completions, limits.result_budget)
                .await
        }
        Write::Postpone { .. } => {
            let postponements: Vec<Postponement<'_>> =
                each(&group, |pending| match &pending.write {
                    Write::Postpone { delay, note } => Some(Postponement {
                        id: &pending.id,
                        owner: &pending.owner,
                        delay: *delay,
                        note,
                    }),
                    _ => None,
                });
            broker.postpone_batch(queue, &postponements).await
        }
        Write::Retry { .. } => {
            let retries: Vec<Retry<'_>> = each(&group, |pending| match &pending.write {
                Write::Retry { delay, error } => Some(Retry {
                    id: &pending.id,
                    owner: &pending.owner,
                    delay: *delay,
                    error,
                }),
                _ => None,
            });
            broker.retry_batch(queue, &retries).await
        }
        Write::Archive { .. } => {
            let archivals: Vec<Archival<'_>> = each(&group, |pending| match &pending.write {
                Write::Archive { error, unique_key } => Some(Archival {
                    id: &pending.id,
                    owner: &pending.owner,
                    error,
                    unique_key: unique_key.as_deref(),
                }),
                _ => None,
            });
            broker
                .archive_batch(queue, &archivals, limits.archive)
                .await
        }
    };
    answer(group, answers);
}

/// The group's writes as the broker takes them (a group holds one kind, so
/// `view` answers every write).
fn each<'a, T>(group: &'a [Pending], view: impl Fn(&'a Pending) -> Option<T>) -> Vec<T> {
    let items: Vec<T> = group.iter().filter_map(view).collect();
    debug_assert_eq!(items.len(), group.len(), "a group holds one kind of write");
    items
}

/// Tells each execution how its write went.
fn answer(group: Vec<Pending>, answers: Result<Vec<Result<(), broker::Error>>, broker::Error>) {
    match answers {
        Ok(answers) => {
            for (pending, answer) in group.into_iter().zip(answers) {
                // The execution may have gone (shutdown): nothing to tell.
                let _ = pending.answer.send(answer);
            }
        }
        Err(err) => {
            for pending in group {
                let _ = pending.answer.send(Err(err.clone()));
            }
        }
    }
}
