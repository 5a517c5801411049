//! Batches: a group of tasks on any queues, added until the batch is
//! closed, with callbacks enqueued once when every task succeeded
//! (`on_success`) or every task ended (`on_complete`), given the batch's
//! counts.
//!
//! A batch's keys live under the hash tag `{batch:<id>}`, apart from every
//! queue. A task is counted in the batch before it is enqueued
//! (`batch_count.lua`, taken back if its queue refuses it); its end is
//! noted in its queue's flow outbox by the script that ends it and
//! delivered to the batch (`batch_member_ended.lua`, once per task), like a
//! flow child's (`flows.rs`). The delivery that finds the batch closed and
//! every task ended enqueues the callbacks under ids of their own
//! (`<batch>.on-success`, `<batch>.on-complete`, reserved for a week, so a
//! repeated delivery cannot enqueue them twice) and then marks the batch
//! done; a delivery cut short before that is finished by the next one (the
//! report stays in the outbox until delivered).

use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

use super::scripts::SCRIPTS;
use super::{Broker, Client, Enqueued, Error, NewTask};
use crate::task::TaskMessage;

/// How long a batch's callbacks' ids stay reserved.
const CALLBACK_RESERVATION: Duration = Duration::from_secs(7 * 24 * 3600);

fn info_key(batch: &str) -> String {
    format!("wasmq:{{batch:{batch}}}:info")
}

fn members_key(batch: &str) -> String {
    format!("wasmq:{{batch:{batch}}}:members")
}

/// A batch's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchStatus {
    /// The batch's id.
    pub id: String,
    /// Tasks added.
    pub total: u64,
    /// Tasks that completed.
    pub succeeded: u64,
    /// Tasks that failed for good, were cancelled or deleted.
    pub failed: u64,
    /// Whether tasks may no longer be added.
    pub closed: bool,
    /// Whether its callbacks were enqueued.
    pub done: bool,
}

/// The counts a callback receives, beside its own payload: its payload is
/// `{"batch": <these>, "payload": <the callback's payload>}`.
#[derive(Debug, Serialize)]
struct CallbackBatch<'a> {
    id: &'a str,
    total: u64,
    succeeded: u64,
    failed: u64,
}

impl Client {
    /// Opens a batch (with `id`, or a new one) with its callbacks; returns
    /// its id. Add tasks with [`Client::add_to_batch`], then
    /// [`Client::close_batch`]: the callbacks run once every task added has
    /// ended, `on_success` only if all completed. A callback's payload is
    /// `{"batch": {"id", "total", "succeeded", "failed"}, "payload": <its
    /// own payload>}`.
    pub async fn open_batch(
        &self,
        id: Option<&str>,
        on_success: Option<NewTask>,
        on_complete: Option<NewTask>,
    ) -> Result<String, Error> {
        let id = match id {
            Some(id) => {
                check_batch_id(id)?;
                id.to_string()
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let mut encoded = Vec::new();
        for callback in [on_success, on_complete] {
            encoded.push(match callback {
                Some(task) => {
                    task.validate(self.max_payload_bytes)?;
                    if task.has_unique_options() || task.id_ref().is_some() {
                        return Err(Error::InvalidTask(
                            "a batch's callback takes no id, unique or debounce option: its id is the batch's".into(),
                        ));
                    }
                    let (message, _) = task.into_message();
                    serde_json::to_string(&message).expect("a TaskMessage always encodes")
                }
                None => String::new(),
            });
        }
        let mut call = SCRIPTS.batch_open.prepare_invoke();
        call.key(info_key(&id))
            .key(members_key(&id))
            .arg(&encoded[0])
            .arg(&encoded[1]);
        let answer: String = self.broker.run(&id, None, &call).await?;
        if answer == "exists" {
            return Err(Error::InvalidTask(format!(
                "batch {id:?} exists already: choose another id, or leave it out"
            )));
        }
        Ok(id)
    }

    /// Adds tasks to an open batch; each is accepted or refused on its own,
    /// as in [`Client::enqueue_batch`]. Refused whole once the batch is
    /// closed.
    pub async fn add_to_batch(
        &self,
        batch: &str,
        tasks: Vec<NewTask>,
    ) -> Result<Vec<Result<Enqueued, Error>>, Error> {
        check_batch_id(batch)?;
        let count = tasks.len();
        let status = self.broker.batch_count(batch, "add", count).await?;
        match status.0.as_str() {
            "no-batch" => return Err(Error::InvalidTask(format!("there is no batch {batch:?}"))),
            "closed" => {
                return Err(Error::InvalidTask(format!(
                    "batch {batch:?} is closed: it takes no more tasks"
                )));
            }
            _ => {}
        }
        let tasks = tasks.into_iter().map(|task| task.in_batch(batch)).collect();
        let outcomes = self.enqueue_batch(tasks).await;
        let refused = outcomes
            .iter()
            .filter(|outcome| !matches!(outcome, Ok(_) | Err(Error::NotReplicated { .. })))
            .count();
        if refused > 0 {
            let status = self.broker.batch_count(batch, "take-back", refused).await?;
            if status.0 == "due" {
                self.broker.enqueue_callbacks(batch, &status).await?;
            }
        }
        Ok(outcomes)
    }

    /// Closes a batch: it takes no more tasks, and its callbacks run once
    /// every task added has ended (at once, if all have).
    pub async fn close_batch(&self, batch: &str) -> Result<BatchStatus, Error> {
        check_batch_id(batch)?;
        let status = self.broker.batch_count(batch, "close", 0).await?;
        if status.0 == "no-batch" {
            return Err(Error::InvalidTask(format!("there is no batch {batch:?}")));
        }
        if status.0 == "due" {
            self.broker.enqueue_callbacks(batch, &status).await?;
        }
        self.batch(batch)
            .await?
            .ok_or_else(|| Error::InvalidTask(format!("there is no batch {batch:?}")))
    }

    /// A batch's state, or `None` when there is no such batch.
    pub async fn batch(&self, batch: &str) -> Result<Option<BatchStatus>, Error> {
        check_batch_id(batch)?;
        let fields: Vec<Option<String>> = self
            .broker
            .query(redis::cmd("HMGET").arg(info_key(batch)).arg(&[
                "total",
                "succeeded",
                "failed",
                "closed",
                "done",
            ]))
            .await?;
        let number = |n: usize| -> u64 {
            fields
                .get(n)
                .cloned()
                .flatten()
                .and_then(|text| text.parse().ok())
                .unwrap_or(0)
        };
        if fields.first().is_none_or(Option::is_none) {
            return Ok(None);
        }
        Ok(Some(BatchStatus {
            id: batch.to_string(),
            total: number(0),
            succeeded: number(1),
            failed: number(2),
            closed: number(3) == 1,
            done: number(4) == 1,
        }))
    }
}

fn check_batch_id(id: &str) -> Result<(), Error> {
    if id.is_empty()
        || id.len() > 128
        || id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
    {
        return Err(Error::InvalidTask(format!(
            "batch id {id:?} must be 1 to 128 bytes with no whitespace or braces"
        )));
    }
    Ok(())
}

/// A `batch_count.lua` or `batch_member_ended.lua` answer: status, total,
/// succeeded, failed.
type Counts = (String, u64, u64, u64);

impl Broker {
    async fn batch_count(&self, batch: &str, op: &str, n: usize) -> Result<Counts, Error> {
        let mut call = SCRIPTS.batch_count.prepare_invoke();
        call.key(info_key(batch))
            .key(members_key(batch))
            .arg(op)
            .arg(n);
        self.run(batch, None, &call).await
    }

    /// Records how a batch's task ended, and enqueues the batch's callbacks
    /// when that makes them due.
    pub(crate) async fn batch_member_ended(
        &self,
        batch: &str,
        queue: &str,
        id: &str,
        ended: super::ChildEnd,
    ) -> Result<(), Error> {
        let mut call = SCRIPTS.batch_member_ended.prepare_invoke();
        call.key(info_key(batch))
            .key(members_key(batch))
            .arg(format!("{queue} {id}"))
            .arg(ended.as_str());
        let counts: Counts = self.run(batch, None, &call).await?;
        if counts.0 == "due" {
            self.enqueue_callbacks(batch, &counts).await?;
        }
        Ok(())
    }

    /// Enqueues the callbacks of a batch whose tasks all ended, under their
    /// reserved ids (a second call finds them taken and changes nothing),
    /// then marks the batch done.
    async fn enqueue_callbacks(&self, batch: &str, counts: &Counts) -> Result<(), Error> {
        let (_, total, succeeded, failed) = *counts;
        let callbacks: Vec<Option<String>> = self
            .query(
                redis::cmd("HMGET")
                    .arg(info_key(batch))
                    .arg(&["on_success", "on_complete"]),
            )
            .await?;
        let client = Client::new(self.clone());
        for (which, stored) in ["on-success", "on-complete"].iter().zip(callbacks) {
            let Some(stored) = stored.filter(|text| !text.is_empty()) else {
                continue;
            };
            if *which == "on-success" && failed > 0 {
                continue;
            }
            let mut message: TaskMessage = serde_json::from_str(&stored).map_err(|err| {
                Error::Corrupt(format!(
                    "batch {batch}'s {which} callback is unreadable: {err}"
                ))
            })?;
            message.id = format!("{batch}.{which}");
            let payload = serde_json::json!({
                "batch": CallbackBatch { id: batch, total, succeeded, failed },
                "payload": message.payload,
            });
            message.payload =
                RawValue::from_string(payload.to_string()).expect("serde_json writes JSON");
            let encoded = serde_json::to_string(&message).expect("a TaskMessage always encodes");
            let args = [
                message.id.clone(),
                encoded,
                "0".to_string(),
                "0".to_string(),
                String::new(),
                "0".to_string(),
                super::millis(CALLBACK_RESERVATION).to_string(),
            ];
            let queue = message.queue.clone();
            client.ensure_registered(&queue).await?;
            let replies = client.enqueue_chunk(&queue, &[(0, message, args)]).await?;
            match replies.into_iter().next() {
                Some(Ok(_)) | Some(Err(Error::DuplicateId { .. })) => {}
                Some(Err(err)) => return Err(err),
                None => {}
            }
        }
        self.query::<()>(redis::cmd("HSET").arg(info_key(batch)).arg("done").arg(1))
            .await?;
        // A finished batch's record goes a week later.
        for key in [info_key(batch), members_key(batch)] {
            self.query::<()>(
                redis::cmd("PEXPIRE")
                    .arg(key)
                    .arg(super::millis(CALLBACK_RESERVATION)),
            )
            .await?;
        }
        Ok(())
    }
}
