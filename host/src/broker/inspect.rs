//! Reading tasks back: one task's full record, found by id.

use redis::Value;

use super::{Broker, Error, keys};
use crate::task::{ErrorRecord, TaskMessage, TaskState};

/// Everything stored about one task.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    /// The task as enqueued.
    pub message: TaskMessage,
    /// Where it is now.
    pub state: TaskState,
    /// Attempts started so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<ErrorRecord>,
    /// The result of the successful attempt, while the task is kept.
    pub result: Option<Vec<u8>>,
    /// The time that goes with the state (server clock, unix ms): when a
    /// scheduled or retry task falls due, when an active task's lease
    /// expires, when a task was archived, when a completed task is
    /// forgotten.
    pub state_time_ms: Option<i64>,
    /// The latest progress its handler reported, if any.
    pub progress: Option<Progress>,
}

/// How far a task's handler said it got (the WIT's `progress.report`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// How far (a percentage, or items done: the plugin's unit), if said.
    #[serde(default)]
    pub done: Option<f64>,
    /// The plugin's note (JSON), if any.
    #[serde(default)]
    pub note: Option<serde_json::Value>,
    /// The attempt that reported it.
    pub attempt: u32,
    /// When (unix ms, the worker's clock): its latest report or heartbeat.
    pub at_ms: i64,
}

/// How many tasks a queue holds in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueCounts {
    /// Waiting to be fetched.
    pub pending: u64,
    /// Leased and running.
    pub active: u64,
    /// Waiting for their time.
    pub scheduled: u64,
    /// Waiting for their next attempt.
    pub retry: u64,
    /// Failed for good.
    pub archived: u64,
    /// Done, kept for their retention.
    pub completed: u64,
    /// Flow parents waiting for their children.
    pub waiting: u64,
}

impl QueueCounts {
    /// Tasks not yet finished: pending, active, scheduled, retry or
    /// waiting.
    pub fn unfinished(&self) -> u64 {
        self.pending + self.active + self.scheduled + self.retry + self.waiting
    }
}

impl TaskInfo {
    /// The task as JSON, for `task show --json` and the dashboard. A result
    /// that is JSON is embedded as JSON; other bytes as text, or a note of
    /// their size when they are not UTF-8. A payload or result too deeply
    /// nested to parse safely (written before the nesting limit, or into
    /// Redis directly) is embedded as its JSON text, in a string, so any
    /// stored task can be shown.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let embed = |text: &str| -> Option<serde_json::Value> {
            if crate::task::json_depth(text) > crate::task::MAX_JSON_DEPTH {
                return None;
            }
            serde_json::from_str(text).ok()
        };
        let result = self
            .result
            .as_deref()
            .map(|bytes| match std::str::from_utf8(bytes) {
                Ok(text) => embed(text).unwrap_or_else(|| serde_json::Value::String(text.into())),
                Err(_) => {
                    serde_json::Value::String(format!("<{} bytes of binary data>", bytes.len()))
                }
            });
        let payload = self.message.payload.get();
        let payload = embed(payload).unwrap_or_else(|| serde_json::Value::String(payload.into()));
        // Every field below is a string, a number, or a type whose encoding
        // cannot fail, so the conversion to a Value cannot panic.
        serde_json::json!({
            "id": self.message.id,
            "queue": self.message.queue,
            "type": self.message.task_type,
            "state": self.state,
            "state_time_ms": self.state_time_ms,
            "attempts": self.attempts,
            "max_retry": self.message.max_retry,
            "payload": payload,
            "timeout_ms": self.message.timeout_ms,
            "deadline_ms": self.message.deadline_ms,
            "retention_ms": self.message.retention_ms,
            "enqueued_at_ms": self.message.enqueued_at_ms,
            "unique_key": self.message.unique_key,
            "limit": self.message.limit,
            "lineage": self.message.ancestry(),
            "parent": self.message.parent,
            "children": self.message.children,
            "batch": self.message.batch,
            "group": self.message.group,
            "progress": self.progress,
            "last_error": self.last_error,
            "result": result,
        })
    }
}

impl Broker {
    /// Keeps `report` (JSON) as the latest progress of task `id` of
    /// `queue`, unless the task is gone (`progress_set.lua`).
    pub(crate) async fn record_progress(
        &self,
        queue: &str,
        id: &str,
        report: &str,
    ) -> Result<(), Error> {
        let keys = self.queue_keys(queue);
        let mut call = super::invocation(&super::scripts::SCRIPTS.progress_set, &keys);
        call.arg(id).arg(report);
        let _: i64 = self.run(queue, Some(id), &call).await?;
        Ok(())
    }

    /// Counts the tasks of a queue in each state.
    pub(crate) async fn queue_counts(&self, queue: &str) -> Result<QueueCounts, Error> {
        let keys = self.queue_keys(queue);
        let mut pipe = redis::pipe();
        pipe.llen(keys.pending())
            .zcard(keys.active())
            .zcard(keys.scheduled())
            .zcard(keys.retry())
            .zcard(keys.archived())
            .zcard(keys.completed())
            .hlen(keys.waiting())
            .get(keys.grouped());
        let (ungrouped, active, scheduled, retry, archived, completed, waiting, grouped): (
            u64,
            u64,
            u64,
            u64,
            u64,
            u64,
            u64,
            Option<i64>,
        ) = self.query_pipeline(&pipe).await?;
        let pending = ungrouped + grouped.unwrap_or(0).max(0).unsigned_abs();
        Ok(QueueCounts {
            pending,
            active,
            scheduled,
            retry,
            archived,
            completed,
            waiting,
        })
    }

    /// Reads one task of `queue`.
    pub(crate) async fn task_info(&self, queue: &str, id: &str) -> Result<Option<TaskInfo>, Error> {
        let keys = self.queue_keys(queue);
        let mut pipe = redis::pipe();
        pipe.hget(keys.msg(), id)
            .hget(keys.state(), id)
            .hget(keys.attempts(), id)
            .hget(keys.error(), id)
            .hget(keys.result(), id)
            .hget(keys.progress(), id);
        for zset in [
            keys.active(),
            keys.scheduled(),
            keys.retry(),
            keys.archived(),
            keys.completed(),
        ] {
            pipe.zscore(zset, id);
        }
        let reply: Vec<Value> = self.query_pipeline(&pipe).await?;
        let [msg, state, attempts, error, result, progress, scores @ ..] = reply.as_slice() else {
            return Err(Error::Corrupt(
                "a task lookup returned too few replies".into(),
            ));
        };
        let Some(msg) = redis::from_redis_value_ref::<Option<Vec<u8>>>(msg)
            .map_err(|err| Error::Corrupt(err.to_string()))?
        else {
            return Ok(None);
        };
        let message: TaskMessage = serde_json::from_slice(&msg).map_err(|err| {
            Error::Corrupt(format!(
                "task {id} in {queue:?} has an unreadable message: {err}"
            ))
        })?;
        let state: String = redis::from_redis_value_ref::<Option<String>>(state)
            .map_err(|err| Error::Corrupt(err.to_string()))?
            .unwrap_or_default();
        let state: TaskState = state.parse().map_err(Error::Corrupt)?;
        let attempts: Option<u32> =
            redis::from_redis_value_ref(attempts).map_err(|err| Error::Corrupt(err.to_string()))?;
        let last_error = redis::from_redis_value_ref::<Option<Vec<u8>>>(error)
            .map_err(|err| Error::Corrupt(err.to_string()))?
            .map(|bytes| serde_json::from_slice::<ErrorRecord>(&bytes))
            .transpose()
            .map_err(|err| Error::Corrupt(format!("task {id} has an unreadable error: {err}")))?;
        let result: Option<Vec<u8>> =
            redis::from_redis_value_ref(result).map_err(|err| Error::Corrupt(err.to_string()))?;
        let state_time_ms = scores
            .iter()
            .filter_map(|score| {
                redis::from_redis_value_ref::<Option<f64>>(score)
                    .ok()
                    .flatten()
            })
            .map(|score| score as i64)
            .next();
        // A report that does not read is shown as none: it is advisory.
        let progress = redis::from_redis_value_ref::<Option<Vec<u8>>>(progress)
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<Progress>(&bytes).ok());
        Ok(Some(TaskInfo {
            message,
            state,
            attempts: attempts.unwrap_or(0),
            last_error,
            result,
            state_time_ms,
            progress,
        }))
    }

    /// Finds a task by id in `queue`, or in every known queue when `None`.
    /// An id found in several queues is an error that lists them.
    pub(crate) async fn find_task(
        &self,
        id: &str,
        queue: Option<&str>,
    ) -> Result<Option<TaskInfo>, Error> {
        if let Some(queue) = queue {
            keys::validate_queue_name(queue)?;
            return self.task_info(queue, id).await;
        }
        let queues = self.queues().await?;
        let found: Vec<bool> = if queues.is_empty() {
            Vec::new()
        } else if self.is_cluster() {
            // Each queue lives in a slot of its own: no pipeline spans them.
            let mut found = Vec::with_capacity(queues.len());
            for queue in &queues {
                found.push(
                    self.query(
                        redis::cmd("HEXISTS")
                            .arg(self.queue_keys(queue).state())
                            .arg(id),
                    )
                    .await?,
                );
            }
            found
        } else {
            let mut pipe = redis::pipe();
            for queue in &queues {
                pipe.hexists(self.queue_keys(queue).state(), id);
            }
            self.query_pipeline(&pipe).await?
        };
        let holders: Vec<&String> = queues
            .iter()
            .zip(found)
            .filter_map(|(queue, found)| found.then_some(queue))
            .collect();
        match holders.as_slice() {
            [] => Ok(None),
            [queue] => self.task_info(queue, id).await,
            several => Err(Error::AmbiguousId {
                id: id.to_string(),
                queues: several.iter().map(|queue| queue.to_string()).collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn info(payload: String, result: Option<Vec<u8>>) -> TaskInfo {
        TaskInfo {
            message: TaskMessage {
                id: "t".into(),
                task_type: "echo".into(),
                queue: "default".into(),
                payload: RawValue::from_string(payload).unwrap(),
                max_retry: 0,
                timeout_ms: Some(u64::MAX),
                deadline_ms: Some(i64::MAX),
                retention_ms: u64::MAX,
                unique_key: None,
                enqueued_at_ms: 0,
                limit: None,
                lineage: None,
                parent: None,
                children: Vec::new(),
                batch: None,
                group: None,
                trace: None,
            },
            state: TaskState::Scheduled,
            attempts: 0,
            last_error: None,
            result,
            state_time_ms: Some(1.8e19 as i64),
            progress: None,
        }
    }

    #[test]
    fn a_deeply_nested_payload_or_result_is_shown_as_text() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let json = info(deep.clone(), Some(deep.clone().into_bytes())).to_json();
        assert_eq!(json["payload"].as_str(), Some(deep.as_str()));
        assert_eq!(json["result"].as_str(), Some(deep.as_str()));
        assert!(json.to_string().len() > 400_000);

        let json = info(r#"{"n":1}"#.into(), Some(b"[2]".to_vec())).to_json();
        assert_eq!(json["payload"]["n"], 1);
        assert_eq!(json["result"][0], 2);
    }
}
