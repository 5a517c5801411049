//! Batched acknowledgements: the completions that are ready at the same
//! moment go to Redis together, in one script call per queue.
//!
//! An execution hands its completion to the acker and waits for the answer,
//! so a task is never acknowledged before it ran, and its slot is not freed
//! before its acknowledgement is written: a crash in between leaves the task
//! leased, and its lease expiring brings it back (at-least-once, as with
//! one call per task). The acker takes whatever completions wait each time
//! it is free, with no timer: a lone completion goes out at once, and under
//! load the batches grow by themselves.

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::broker::{self, Broker, Completion};
use crate::task::TaskMessage;

/// Most completions in one script call.
const MAX_BATCH: usize = 256;

/// One completion waiting for the acker.
struct Pending {
    queue: String,
    id: String,
    owner: String,
    retention_ms: u64,
    unique_key: Option<String>,
    result: Vec<u8>,
    answer: oneshot::Sender<Result<(), broker::Error>>,
}

/// The handle executions send completions through.
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
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            queue: message.queue.clone(),
            id: message.id.clone(),
            owner: owner.to_string(),
            retention_ms: message.retention_ms,
            unique_key: message.unique_key.clone(),
            result: result.to_vec(),
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
            let group: Vec<Pending> = batch.drain(..same_queue).collect();
            let completions: Vec<Completion<'_>> = group
                .iter()
                .map(|pending| Completion {
                    id: &pending.id,
                    owner: &pending.owner,
                    retention_ms: pending.retention_ms,
                    unique_key: pending.unique_key.as_deref(),
                    result: &pending.result,
                })
                .collect();
            let answers = broker.complete_batch(&group[0].queue, &completions).await;
            drop(completions);
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
    }
}
