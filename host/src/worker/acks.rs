//! The acker: every outcome a worker records goes through it, and the
//! outcomes that are ready at the same moment go to Redis together, in one
//! `settle.lua` call per queue, whatever their kinds.
//!
//! An execution hands its settlement to the acker and waits for the
//! answer, so a task is never acknowledged before it ran, and its slot is
//! not freed before its acknowledgement is written: a crash in between
//! leaves the task leased, and its lease expiring brings it back
//! (at-least-once, as with one call per task). The acker takes whatever
//! settlements wait each time it is free, with no timer: a lone completion
//! goes out at once, and under load the batches grow by themselves.
//!
//! With durable completions ([`WaitReplicas`]), a call that completes tasks
//! is followed by `WAIT` on the broker's durable connection, and answers
//! only once the replicas have it (or the wait timed out: logged, since the
//! completions are on the master and nothing the worker could do would make
//! them more durable). Calls that complete nothing do not wait.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::broker::{self, Broker, Settle, SettleLimits, Settlement, WaitReplicas};
use crate::task::TaskMessage;

/// Most settlements taken in one round.
const MAX_BATCH: usize = 256;

/// The task a settlement is for, and the lease token it is held under.
pub(crate) enum Ticket {
    /// A task leased as its message says.
    Leased {
        message: Arc<TaskMessage>,
        owner: Arc<str>,
    },
    /// A task leased whose stored message does not decode.
    Unreadable {
        queue: String,
        id: String,
        owner: Arc<str>,
    },
}

impl Ticket {
    fn id(&self) -> &str {
        match self {
            Ticket::Leased { message, .. } => &message.id,
            Ticket::Unreadable { id, .. } => id,
        }
    }

    fn queue(&self) -> &str {
        match self {
            Ticket::Leased { message, .. } => &message.queue,
            Ticket::Unreadable { queue, .. } => queue,
        }
    }

    fn settle<'a>(&'a self, settlement: &'a Settlement) -> Settle<'a> {
        match self {
            Ticket::Leased { message, owner } => Settle::of(message, owner, settlement),
            Ticket::Unreadable { id, owner, .. } => Settle {
                id,
                owner,
                retention_ms: 0,
                unique_key: None,
                settlement,
                reports_end: false,
            },
        }
    }
}

/// One settlement waiting for the acker.
struct Pending {
    ticket: Ticket,
    settlement: Settlement,
    answer: oneshot::Sender<Result<(), broker::Error>>,
}

impl Pending {
    /// The bytes of the result this settlement carries, if any.
    fn result_bytes(&self) -> usize {
        match &self.settlement {
            Settlement::Complete { result } => result.len(),
            _ => 0,
        }
    }

    /// Whether this settlement leaves a report in the flow outbox: it ends
    /// a flow child or a batch's task, whose parent or batch must hear of
    /// it, and `settle.lua` did not record it for the parent itself (a
    /// child completing beside its parent, in its queue, outside a batch).
    fn ends_flow_child(&self) -> bool {
        let Ticket::Leased { message, .. } = &self.ticket else {
            return false;
        };
        match self.settlement {
            Settlement::Complete { .. } => {
                message.batch.is_some()
                    || message
                        .parent
                        .as_ref()
                        .is_some_and(|parent| parent.queue != message.queue)
            }
            Settlement::Archive { .. } => message.reports_end(),
            _ => false,
        }
    }
}

/// The handle executions send their settlements through.
#[derive(Clone)]
pub(crate) struct Acker {
    sender: mpsc::UnboundedSender<Pending>,
}

impl Acker {
    /// Starts the acker; it runs until `stop`, writing within `limits`,
    /// and waiting for replicas after completions when `durable` says so.
    pub fn start(
        broker: Broker,
        limits: SettleLimits,
        durable: Option<WaitReplicas>,
        stop: CancellationToken,
    ) -> (Acker, impl Future<Output = ()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let writer = Writer {
            broker,
            limits,
            durable,
        };
        (Acker { sender }, acknowledge(writer, receiver, stop))
    }

    /// Records `settlement` for the task of `ticket`; returns once Redis has
    /// it, or refused it: `LeaseLost` when another worker owns the task now.
    pub async fn settle(
        &self,
        ticket: Ticket,
        settlement: Settlement,
    ) -> Result<(), broker::Error> {
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            ticket,
            settlement,
            answer,
        };
        self.sender
            .send(pending)
            .map_err(|_| broker::Error::Stopped)?;
        answered.await.map_err(|_| broker::Error::Stopped)?
    }
}

/// How the acker writes: on which broker, within which limits, waiting
/// for replicas after completions or not.
struct Writer {
    broker: Broker,
    limits: SettleLimits,
    durable: Option<WaitReplicas>,
}

async fn acknowledge(
    writer: Writer,
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
        // A round also stops once its results reach the broker's bound on a
        // call: 256 results of 1 MB are better sent as several calls.
        let mut bytes = first.result_bytes();
        batch.push(first);
        while batch.len() < MAX_BATCH && bytes < broker::MAX_CALL_BYTES {
            match receiver.try_recv() {
                Ok(pending) => {
                    bytes += pending.result_bytes();
                    batch.push(pending);
                }
                Err(_) => break,
            }
        }
        // Stable: within a queue, settlements keep the order they came in.
        batch.sort_by(|a, b| a.ticket.queue().cmp(b.ticket.queue()));
        while !batch.is_empty() {
            let queue = batch[0].ticket.queue();
            let same = batch
                .iter()
                .take_while(|pending| pending.ticket.queue() == queue)
                .count();
            let group: Vec<Pending> = batch.drain(..same).collect();
            write_group(&writer, group).await;
        }
    }
}

/// Writes the settlements of one queue in one call, and answers each.
async fn write_group(writer: &Writer, group: Vec<Pending>) {
    let queue = group[0].ticket.queue();
    let settles: Vec<Settle<'_>> = group
        .iter()
        .map(|pending| pending.ticket.settle(&pending.settlement))
        .collect();
    let completions = settles
        .iter()
        .filter(|settle| matches!(settle.settlement, Settlement::Complete { .. }))
        .count();
    let answers = match writer.durable.filter(|_| completions > 0) {
        Some(wait) => writer
            .broker
            .settle_durably(queue, &settles, writer.limits, wait)
            .await
            .map(|(answers, shortfall)| {
                if let Some(err) = shortfall {
                    tracing::warn!(queue, completions, "completions: {err}");
                }
                answers
            }),
        None => writer.broker.settle(queue, &settles, writer.limits).await,
    };
    drop(settles);
    match answers {
        Ok(answers) => {
            let flow_ends: Vec<String> = group
                .iter()
                .zip(&answers)
                .filter(|(pending, answer)| answer.is_ok() && pending.ends_flow_child())
                .map(|(pending, _)| pending.ticket.id().to_string())
                .collect();
            if !flow_ends.is_empty() {
                // Their parents hear of it at once, beside the next writes;
                // should this process die first, the queue's trim delivers.
                let (broker, queue) = (writer.broker.clone(), queue.to_string());
                let archive = writer.limits.archive;
                tokio::spawn(async move {
                    if let Err(err) = broker
                        .deliver_flow_reports(&queue, &flow_ends, archive)
                        .await
                    {
                        tracing::warn!(queue, "delivering flow reports (the trim retries): {err}");
                    }
                });
            }
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
