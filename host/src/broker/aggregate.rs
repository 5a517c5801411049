//! Aggregated enqueues (`NewTask::aggregate`): one `scripts/aggregate.lua`
//! call per task, which appends its payload to the open batch of its
//! aggregation or opens a new one.

use super::scripts::SCRIPTS;
use super::{Broker, Error, invocation};
use crate::task::TaskState;

/// The arguments of one `aggregate.lua` call.
#[derive(Debug, Clone)]
pub(crate) struct AggregateCall {
    pub queue: String,
    /// The member's id: the batch's, if it opens one.
    pub id: String,
    /// The batch's message, should this member open it (payload: `[member]`).
    pub message: String,
    /// How long a new batch collects members, ms.
    pub after_ms: u64,
    /// The aggregation's key in the unique hashes.
    pub key: String,
    /// The most members in a batch.
    pub max_group: u32,
    /// The member's payload (JSON text).
    pub member: String,
    /// The most bytes a batch's message may take.
    pub max_bytes: usize,
    /// How long the key is held, ms.
    pub lock_ttl_ms: u64,
}

impl Broker {
    /// Enqueues a task into its aggregation; returns the id of the batch
    /// it joined and the batch's state (scheduled while it collects,
    /// pending once released).
    pub(crate) async fn enqueue_aggregated(
        &self,
        call: &AggregateCall,
    ) -> Result<(String, TaskState), Error> {
        let keys = self.queue_keys(&call.queue);
        let mut script = invocation(&SCRIPTS.aggregate, &keys);
        script
            .arg(&call.id)
            .arg(&call.message)
            .arg(call.after_ms)
            .arg(&call.key)
            .arg(call.max_group)
            .arg(&call.member)
            .arg(call.max_bytes)
            .arg(call.lock_ttl_ms);
        let reply: Vec<String> = self.run(&call.queue, Some(&call.id), &script).await?;
        match reply.as_slice() {
            [status, id, _, state] if status == "ok" || status == "added" => {
                let state = state.parse().map_err(Error::Corrupt)?;
                Ok((id.clone(), state))
            }
            [status, state] if status == "duplicate-id" => Err(Error::DuplicateId {
                queue: call.queue.clone(),
                id: call.id.clone(),
                state: state.parse().ok(),
                reserved_for: None,
            }),
            other => Err(Error::Corrupt(format!(
                "the aggregated enqueue answered {other:?}"
            ))),
        }
    }
}
