//! The limits set on the fleet and how much of each is in use, as `wasmq
//! limit ls` and the dashboard's Limits tab show them.

use serde::Serialize;

use crate::broker::rate_limits::{BucketUse, NO_KEY, WHOLE};
use crate::broker::{Broker, Error};
use crate::rate::{RateLimit, RateTarget};
use crate::task::{ConcurrencyLimit, WhenBusy};

/// At most this many keys of a keyed rate limit are listed.
pub const KEYS_LISTED: usize = 10;

/// Every rate limit, with the use of its buckets (at most
/// [`KEYS_LISTED`] keys of a keyed one).
pub async fn rates(broker: &Broker) -> Result<Vec<(RateTarget, RateLimit, Vec<BucketUse>)>, Error> {
    let mut rows = Vec::new();
    for (target, limit) in broker.rate_limits().await? {
        let uses = broker.rate_use(&target, &limit, KEYS_LISTED).await?;
        rows.push((target, limit, uses));
    }
    Ok(rows)
}

/// Every concurrency limit by task type, sorted, with the tasks holding
/// its slots.
pub async fn concurrency(
    broker: &Broker,
) -> Result<Vec<(String, ConcurrencyLimit, Vec<String>)>, Error> {
    let mut limits: Vec<_> = broker.type_limits().await?.into_iter().collect();
    limits.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rows = Vec::new();
    for (task_type, limit) in limits {
        let holders = broker.slot_holders(&limit.key).await?;
        rows.push((
            task_type,
            limit,
            holders.into_iter().map(|(id, _)| id).collect(),
        ));
    }
    Ok(rows)
}

/// What a bucket of `limit` counts, for people: the key path, and the
/// key's value (or that the payload had nothing there).
pub fn bucket_label(limit: &RateLimit, bucket: &str) -> String {
    let key_path = limit.key.as_ref().map_or("-", |key| key.as_str());
    match bucket {
        WHOLE => key_path.to_string(),
        NO_KEY => format!("{key_path} (nothing there)"),
        // A long key, named by its SHA-256.
        hashed if hashed.starts_with('#') => format!("{key_path} = {hashed}"),
        other => format!("{key_path} = {}", other.get(1..).unwrap_or_default()),
    }
}

/// Whose slots a concurrency limit counts: ` per group`, ` per value of
/// $.path`, both, or all tasks' (empty).
pub fn slots_scope(limit: &ConcurrencyLimit) -> String {
    let mut scope = String::new();
    if limit.per_group {
        scope.push_str(" per group");
    }
    if let Some(path) = &limit.key_path {
        scope.push_str(&format!(" per value of {}", path.as_str()));
    }
    scope
}

/// How a concurrency limit treats a task that finds every slot held.
pub fn when_busy_label(when_busy: WhenBusy) -> String {
    match when_busy {
        WhenBusy::Skip => "skip".into(),
        WhenBusy::Delay(delay) => format!(
            "delay:{}",
            humantime::format_duration(std::time::Duration::from_millis(delay))
        ),
    }
}

/// One row of the dashboard's rate limits: a limit, or one key of it.
#[derive(Debug, Serialize)]
pub struct RateRow {
    /// The task type or queue it limits.
    pub target: String,
    /// `100/s`.
    pub rate: String,
    /// Starts that may go back to back.
    pub burst: u32,
    /// The bucket: the key path and value, or `-`.
    pub key: String,
    /// Starts in the last interval.
    pub used: u64,
    /// Starts allowed per interval.
    pub of: u32,
    /// How far ahead the waiting line's next turn is, ms (0: no line).
    pub waiting_ms: u64,
}

/// One row of the dashboard's concurrency limits.
#[derive(Debug, Serialize)]
pub struct ConcurrencyRow {
    /// The task type.
    pub task_type: String,
    /// Tasks that may run at once (per group with `per_group`).
    pub max_running: u32,
    /// Each group has slots of its own.
    pub per_group: bool,
    /// ` per group`, ` per value of $.path`, or empty: whose slots.
    pub scope: String,
    /// `skip` or `delay:DURATION`.
    pub when_busy: String,
    /// The tasks holding its slots (not per group).
    pub holders: Vec<String>,
}

/// The limits and their use, as the dashboard draws them.
#[derive(Debug, Serialize)]
pub struct LimitsView {
    /// Concurrency limits by task type.
    pub concurrency: Vec<ConcurrencyRow>,
    /// Rate limits, a row per limit or listed key.
    pub rate: Vec<RateRow>,
}

/// Reads every limit and its use.
pub async fn view(broker: &Broker) -> Result<LimitsView, Error> {
    let concurrency = concurrency(broker)
        .await?
        .into_iter()
        .map(|(task_type, limit, holders)| ConcurrencyRow {
            task_type,
            max_running: limit.max_running,
            per_group: limit.per_group,
            scope: slots_scope(&limit),
            when_busy: when_busy_label(limit.when_busy),
            holders,
        })
        .collect();
    let mut rate = Vec::new();
    for (target, limit, uses) in rates(broker).await? {
        let target = match target {
            RateTarget::TaskType(name) => name,
            RateTarget::Queue(name) => format!("queue {name}"),
        };
        let row = |key: String, used: u64, waiting_ms: u64| RateRow {
            target: target.clone(),
            rate: limit.rate.to_string(),
            burst: limit.burst,
            key,
            used,
            of: limit.rate.count,
            waiting_ms,
        };
        if uses.is_empty() {
            rate.push(row(bucket_label(&limit, WHOLE), 0, 0));
        }
        for bucket in uses {
            rate.push(row(
                bucket_label(&limit, &bucket.bucket),
                bucket.used,
                bucket.line_ms,
            ));
        }
    }
    Ok(LimitsView { concurrency, rate })
}
