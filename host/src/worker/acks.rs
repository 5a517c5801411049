//! Batched acknowledgements: the completions (and the postponements of
//! tasks of plugins on probation) that are ready at the same moment go to
//! Redis together, in one script call per queue and kind.
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

use crate::broker::{self, Broker, Completion, Postponement};
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
    /// Starts the acker; it runs until `stop`.
    pub fn start(broker: Broker, stop: CancellationToken) -> (Acks, impl Future<Output = ()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Acks { sender }, acknowledge(broker, receiver, stop))
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

async fn acknowledge(
    broker: Broker,
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
        batch.sort_by(|a, b| a.queue.cmp(&b.queue));
        while !batch.is_empty() {
            let same_queue = batch
                .iter()
                .take_while(|pending| pending.queue == batch[0].queue)
                .count();
            let (completions, postponements): (Vec<Pending>, Vec<Pending>) = batch
                .drain(..same_queue)
                .partition(|pending| matches!(pending.write, Write::Complete { .. }));
            if !completions.is_empty() {
                complete(&broker, completions).await;
            }
            if !postponements.is_empty() {
                postpone(&broker, postponements).await;
            }
        }
    }
}

/// Writes the completions of one queue in one call and answers each.
async fn complete(broker: &Broker, group: Vec<Pending>) {
    let completions: Vec<Completion<'_>> = group
        .iter()
        .filter_map(|pending| match &pending.write {
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
            Write::Postpone { .. } => None,
        })
        .collect();
    let answers = broker.complete_batch(&group[0].queue, &completions).await;
    drop(completions);
    answer(group, answers);
}

/// Writes the postponements of one queue in one call and answers each.
async fn postpone(broker: &Broker, group: Vec<Pending>) {
    let postponements: Vec<Postponement<'_>> = group
        .iter()
        .filter_map(|pending| match &pending.write {
            Write::Postpone { delay, note } => Some(Postponement {
                id: &pending.id,
                owner: &pending.owner,
                delay: *delay,
                note,
            }),
            Write::Complete { .. } => None,
        })
        .collect();
    let answers = broker.postpone_batch(&group[0].queue, &postponements).await;
    drop(postponements);
    answer(group, answers);
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
