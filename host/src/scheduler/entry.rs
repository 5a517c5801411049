//! Cron entries (what to enqueue, and when) and the records of their ticks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use super::Schedule;
use crate::broker::keys::validate_queue_name;
use crate::task::ConcurrencyLimit;

/// A cron entry: enqueue a task of `task_type` on `queue` at every tick of
/// `schedule` in `tz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronEntry {
    /// The entry's name; part of each tick's task id.
    pub name: String,
    /// The cron spec: `[second] minute hour day-of-month month day-of-week`.
    pub schedule: String,
    /// The IANA time zone the spec is read in.
    #[serde(default = "utc")]
    pub tz: String,
    /// The task type to enqueue.
    #[serde(rename = "type")]
    pub task_type: String,
    /// The payload of every tick's task.
    #[serde(default = "empty_object")]
    pub payload: Box<RawValue>,
    /// The queue to enqueue on.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Retries of each tick's task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retry: Option<u32>,
    /// Timeout of each tick's task, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retention of each tick's completed task, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<u64>,
    /// What to do about ticks no scheduler was alive for.
    #[serde(default)]
    pub misfire: MisfirePolicy,
    /// A concurrency limit for the entry's tasks (a singleton when 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<ConcurrencyLimit>,
    /// Where the entry comes from: `cli`, or `file:<path>` for entries a
    /// schedule file manages.
    #[serde(default = "cli")]
    pub source: String,
}

fn utc() -> String {
    "UTC".to_string()
}

fn cli() -> String {
    "cli".to_string()
}

fn default_queue() -> String {
    crate::broker::DEFAULT_QUEUE.to_string()
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_string()).expect("{} is JSON")
}

impl CronEntry {
    /// Checks the entry and returns its schedule.
    pub fn check(&self) -> Result<Schedule, String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 100
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if !name_ok {
            return Err(format!(
                "cron entry name {:?} must be 1 to 100 letters, digits or - _ . :",
                self.name
            ));
        }
        if self.task_type.trim().is_empty() {
            return Err(format!("cron entry {:?} has an empty task type", self.name));
        }
        validate_queue_name(&self.queue).map_err(|err| err.to_string())?;
        Schedule::parse(&self.schedule, &self.tz).map_err(|err| err.to_string())
    }

    /// The JSON stored in Redis.
    pub fn to_json(&self) -> String {
        // Strings, numbers and raw JSON only.
        serde_json::to_string(self).expect("a CronEntry always encodes")
    }
}

/// What a scheduler does about ticks that passed while no scheduler was
/// alive (found more than the misfire grace after their time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MisfirePolicy {
    /// Fire none of them; record that they were skipped.
    Skip,
    /// Fire once, for the most recent missed tick.
    #[default]
    Once,
    /// Fire each missed tick, the most recent ones, at most this many.
    All(u32),
}

impl fmt::Display for MisfirePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MisfirePolicy::Skip => f.write_str("skip"),
            MisfirePolicy::Once => f.write_str("once"),
            MisfirePolicy::All(limit) => write!(f, "all:{limit}"),
        }
    }
}

impl FromStr for MisfirePolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "skip" => Ok(MisfirePolicy::Skip),
            "once" => Ok(MisfirePolicy::Once),
            "all" => Ok(MisfirePolicy::All(100)),
            _ => match text.strip_prefix("all:").map(str::parse::<u32>) {
                Some(Ok(limit)) if limit > 0 => Ok(MisfirePolicy::All(limit)),
                _ => Err(format!(
                    "misfire policy {text:?} is not one of skip, once, all:N (fire each missed tick, at most N)"
                )),
            },
        }
    }
}

impl Serialize for MisfirePolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MisfirePolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What happened at one tick of an entry, kept in its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickRecord {
    /// The tick (unix ms).
    pub tick_ms: i64,
    /// When it was handled (unix ms, Redis's clock).
    pub at_ms: i64,
    /// The scheduler that handled it (`host:pid`).
    pub host: String,
    /// What happened.
    pub outcome: TickOutcome,
    /// The task enqueued for it, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The queue that task went to (the entry's queue at the tick; ticks
    /// recorded before queues were recorded have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// For skipped misfires: how many ticks were skipped (this tick is the
    /// most recent of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<u64>,
}

/// What happened at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TickOutcome {
    /// Its task was enqueued on time.
    Fired,
    /// Its task was enqueued late, after no scheduler was alive at its time.
    FiredLate,
    /// It passed while no scheduler was alive and the policy skips it.
    Skipped,
}

impl fmt::Display for TickOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TickOutcome::Fired => "fired",
            TickOutcome::FiredLate => "fired late (missed)",
            TickOutcome::Skipped => "skipped (missed)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misfire_policies_read_and_print_alike() {
        for text in ["skip", "once", "all:5"] {
            assert_eq!(text.parse::<MisfirePolicy>().unwrap().to_string(), text);
        }
        assert_eq!("all".parse::<MisfirePolicy>(), Ok(MisfirePolicy::All(100)));
        assert!("all:0".parse::<MisfirePolicy>().is_err());
        assert!(
            "sometimes"
                .parse::<MisfirePolicy>()
                .unwrap_err()
                .contains("skip, once, all:N")
        );
    }

    #[test]
    fn entries_are_checked() {
        let entry = |name: &str, schedule: &str, queue: &str| CronEntry {
            name: name.into(),
            schedule: schedule.into(),
            tz: "UTC".into(),
            task_type: "report:daily".into(),
            payload: empty_object(),
            queue: queue.into(),
            max_retry: None,
            timeout_ms: None,
            retention_ms: None,
            misfire: MisfirePolicy::Once,
            limit: None,
            source: cli(),
        };
        assert!(
            entry("nightly-report", "0 0 3 * * *", "low")
                .check()
                .is_ok()
        );
        assert!(entry("bad name", "0 0 3 * * *", "low").check().is_err());
        assert!(entry("ok", "0 0 3 * *", "low").check().is_ok());
        assert!(
            entry("ok", "0 0 3 *", "low")
                .check()
                .unwrap_err()
                .contains("5 fields")
        );
        assert!(entry("ok", "* * * * *", "a{b}").check().is_err());
    }
}
