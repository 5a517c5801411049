//! How cron entries are doing, for `wasmq cron ls`, `wasmq cron history`
//! and the dashboard: next ticks, and what became of each tick's task.

use serde::Serialize;

use super::{CronEntry, Schedule, TickRecord};
use crate::broker::{self, Broker};

/// An entry with its next tick and its newest tick's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct EntryStatus {
    /// The entry.
    pub entry: CronEntry,
    /// Its next tick (unix ms), if it has one.
    pub next_tick_ms: Option<i64>,
    /// Its newest tick, if it ticked yet.
    pub last: Option<TickStatus>,
}

/// A tick and what became of its task.
#[derive(Debug, Clone, Serialize)]
pub struct TickStatus {
    /// What the scheduler recorded.
    pub tick: TickRecord,
    /// The task's state now, with its last error when it did not complete;
    /// or what happened to the tick when it had no task.
    pub task_state: String,
}

/// Every entry, sorted by name, with its next tick and last outcome.
pub async fn entries(broker: &Broker) -> Result<Vec<EntryStatus>, broker::Error> {
    let now = broker.server_time_ms().await?;
    let mut entries: Vec<CronEntry> = broker
        .cron_entries()
        .await?
        .into_values()
        .filter_map(|json| serde_json::from_str(&json).ok())
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut statuses = Vec::with_capacity(entries.len());
    for entry in entries {
        let next_tick_ms = Schedule::parse(&entry.schedule, &entry.tz)
            .ok()
            .and_then(|schedule| schedule.next_after(now));
        let last = history_of(broker, &entry, 1).await?.into_iter().next();
        statuses.push(EntryStatus {
            entry,
            next_tick_ms,
            last,
        });
    }
    Ok(statuses)
}

/// The newest `count` ticks of the entry `name`, newest first; `None` when
/// there is no such entry.
pub async fn history(
    broker: &Broker,
    name: &str,
    count: usize,
) -> Result<Option<Vec<TickStatus>>, broker::Error> {
    let Some(json) = broker.cron_entries().await?.remove(name) else {
        return Ok(None);
    };
    let entry: CronEntry = serde_json::from_str(&json).map_err(|err| {
        broker::Error::Corrupt(format!("cron entry {name:?} is unreadable: {err}"))
    })?;
    history_of(broker, &entry, count).await.map(Some)
}

async fn history_of(
    broker: &Broker,
    entry: &CronEntry,
    count: usize,
) -> Result<Vec<TickStatus>, broker::Error> {
    let records: Vec<TickRecord> = broker
        .cron_history(&entry.name, count)
        .await?
        .iter()
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect();
    let mut statuses = Vec::with_capacity(records.len());
    for tick in records {
        let queue = tick.queue.as_deref().unwrap_or(&entry.queue);
        let task_state = task_state(broker, queue, &tick).await?;
        statuses.push(TickStatus { tick, task_state });
    }
    Ok(statuses)
}

async fn task_state(
    broker: &Broker,
    queue: &str,
    record: &TickRecord,
) -> Result<String, broker::Error> {
    let Some(id) = &record.task_id else {
        return Ok(record.outcome.to_string());
    };
    Ok(match broker.task_info(queue, id).await? {
        Some(info) => match info.last_error {
            Some(error) if info.state != crate::TaskState::Completed => {
                format!("{} ({}: {})", info.state, error.kind, error.message)
            }
            _ => info.state.to_string(),
        },
        None => "gone (completed and past its retention, or deleted)".into(),
    })
}
