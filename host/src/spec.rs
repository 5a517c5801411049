//! Tasks as people write them in JSON: one object per task, the shape
//! `wasmq enqueue --file` reads line by line and a flow file nests (with
//! `children`). Plugins starting a flow hand the host the same shape.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::broker::NewTask;
use crate::task::OnChildFailure;

/// One task object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskSpec {
    #[serde(rename = "type")]
    pub(crate) task_type: String,
    pub(crate) payload: Option<Box<RawValue>>,
    pub(crate) queue: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) process_in: Option<Seconds>,
    pub(crate) process_at: Option<String>,
    pub(crate) max_retry: Option<u32>,
    pub(crate) timeout: Option<Seconds>,
    pub(crate) deadline: Option<String>,
    pub(crate) retention: Option<Seconds>,
    pub(crate) unique: Option<Seconds>,
    /// The group the task takes turns in (a tenant, a customer).
    pub(crate) group: Option<String>,
    /// A flow node's children (flow files only).
    pub(crate) children: Option<Vec<serde_json::Value>>,
    /// What a flow child's failure does to its parent (flow files only).
    pub(crate) on_failure: Option<OnChildFailure>,
}

/// A duration as text (`"10s"`) or a number of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Seconds {
    Number(f64),
    Text(String),
}

impl Seconds {
    fn duration(&self, field: &str) -> Result<Duration, String> {
        match self {
            Seconds::Number(seconds) => {
                crate::units::seconds(*seconds).map_err(|err| format!("`{field}` {err}"))
            }
            Seconds::Text(text) => {
                crate::units::duration(text).map_err(|err| format!("`{field}`: {err}"))
            }
        }
    }
}

impl TaskSpec {
    /// The task this object describes, built on `defaults` (which receives
    /// the task with only its type and payload set, and may add options
    /// the object's own fields then override).
    pub(crate) fn into_task(
        self,
        defaults: impl FnOnce(NewTask) -> NewTask,
    ) -> Result<NewTask, String> {
        let payload = self
            .payload
            .map_or_else(|| "{}".to_string(), |raw| raw.get().to_string());
        let mut task =
            defaults(NewTask::new(&self.task_type, payload).map_err(|err| err.to_string())?);
        if let Some(queue) = self.queue {
            task = task.queue(queue);
        }
        if let Some(id) = self.id {
            task = task.id(id);
        }
        if let Some(group) = self.group {
            task = task.group(group);
        }
        if let Some(delay) = self.process_in {
            task = task.process_in(delay.duration("process_in")?);
        }
        if let Some(at) = self.process_at {
            task = task.process_at(time(&at, "process_at")?);
        }
        if let Some(retries) = self.max_retry {
            task = task.max_retry(retries);
        }
        if let Some(timeout) = self.timeout {
            task = task.timeout(timeout.duration("timeout")?);
        }
        if let Some(deadline) = self.deadline {
            task = task.deadline(time(&deadline, "deadline")?);
        }
        if let Some(retention) = self.retention {
            task = task.retention(retention.duration("retention")?);
        }
        if let Some(ttl) = self.unique {
            task = task.unique(ttl.duration("unique")?);
        }
        Ok(task)
    }
}

fn time(text: &str, field: &str) -> Result<SystemTime, String> {
    crate::units::time(text).map_err(|err| format!("`{field}`: {err}"))
}
