//! Cron entries kept in a TOML file (`--schedule cron.toml`), reconciled
//! into Redis when a worker or scheduler starts and whenever the file
//! changes.
//!
//! ```toml
//! [[entry]]
//! name = "nightly-report"
//! schedule = "0 0 3 * * *"        # [second] minute hour day-of-month month day-of-week
//! tz = "Asia/Seoul"               # default UTC
//! type = "report:daily"
//! payload = { region = "kr" }     # any TOML value, sent as JSON; default {}
//! queue = "low"                   # default "default"
//! misfire = "once"                # skip | once | all:N
//! max_retry = 3
//! timeout = "10m"
//! retention = "1d"
//! max_running = 1                 # a singleton; with the lock options below
//! lock_at_most_for = "30m"
//! lock_at_least_for = "1m"
//! when_busy = "skip"              # skip | delay:DURATION
//! ```
//!
//! The file owns the entries it names (their `source` is `file:<path>`):
//! an entry removed from the file is removed from Redis. Entries added with
//! `wasmq cron add` are left alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::{CronEntry, MisfirePolicy};
use crate::broker::cron::PutOutcome;
use crate::broker::{self, Broker};
use crate::task::{ConcurrencyLimit, WhenBusy};

/// A schedule file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    /// Its entries.
    #[serde(default)]
    pub entry: Vec<FileEntry>,
}

/// One entry of a schedule file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    name: String,
    schedule: String,
    tz: Option<String>,
    #[serde(rename = "type")]
    task_type: String,
    payload: Option<toml::Value>,
    queue: Option<String>,
    misfire: Option<String>,
    max_retry: Option<u32>,
    timeout: Option<String>,
    retention: Option<String>,
    max_running: Option<u32>,
    lock_at_most_for: Option<String>,
    lock_at_least_for: Option<String>,
    when_busy: Option<String>,
}

/// The options of a concurrency limit, as the CLI and files give them.
#[derive(Debug, Clone, Default)]
pub struct LimitOptions {
    /// Tasks that may run at once (1: a singleton).
    pub max_running: Option<u32>,
    /// `lock-at-most-for` (default 15 minutes).
    pub lock_at_most_for: Option<Duration>,
    /// `lock-at-least-for` (default 0).
    pub lock_at_least_for: Option<Duration>,
    /// `skip`, `delay` or `delay:DURATION` (default skip).
    pub when_busy: Option<String>,
}

impl LimitOptions {
    /// The limit these options describe for `key`, if any (`max_running`
    /// unset means no limit; lock options without it are an error).
    pub fn into_limit(self, key: String) -> Result<Option<ConcurrencyLimit>, String> {
        let Some(max_running) = self.max_running else {
            if self.lock_at_most_for.is_some()
                || self.lock_at_least_for.is_some()
                || self.when_busy.is_some()
            {
                return Err(
                    "lock and when-busy options need a limit: add max_running (1 for a singleton)"
                        .into(),
                );
            }
            return Ok(None);
        };
        if max_running == 0 {
            return Err("max_running must be at least 1".into());
        }
        let at_most = self
            .lock_at_most_for
            .unwrap_or(Duration::from_secs(15 * 60));
        let at_least = self.lock_at_least_for.unwrap_or_default();
        if at_least > at_most {
            return Err(format!(
                "lock-at-least-for ({}) is longer than lock-at-most-for ({})",
                humantime::format_duration(at_least),
                humantime::format_duration(at_most)
            ));
        }
        let when_busy = match self.when_busy.as_deref().unwrap_or("skip") {
            "skip" => WhenBusy::Skip,
            "delay" => WhenBusy::Delay(1000),
            other => match other.strip_prefix("delay:").map(humantime::parse_duration) {
                Some(Ok(delay)) if !delay.is_zero() => WhenBusy::Delay(delay.as_millis() as u64),
                _ => {
                    return Err(format!(
                        "when-busy {other:?} is not skip, delay or delay:DURATION"
                    ));
                }
            },
        };
        Ok(Some(ConcurrencyLimit {
            key,
            max_running,
            lock_at_most_for_ms: at_most.as_millis() as u64,
            lock_at_least_for_ms: at_least.as_millis() as u64,
            when_busy,
            per_group: false,
            key_path: None,
        }))
    }
}

fn duration(field: &str, text: &Option<String>) -> Result<Option<Duration>, String> {
    text.as_deref()
        .map(|text| {
            humantime::parse_duration(text)
                .map_err(|err| format!("{field} {text:?}: {err}; write e.g. 30s, 10m, 1h"))
        })
        .transpose()
}

impl FileEntry {
    /// The cron entry, owned by the file at `source`.
    fn into_entry(self, source: &str) -> Result<CronEntry, String> {
        let payload = match &self.payload {
            Some(value) => serde_json::to_string(value).map_err(|err| err.to_string())?,
            None => "{}".to_string(),
        };
        let limit = LimitOptions {
            max_running: self.max_running,
            lock_at_most_for: duration("lock_at_most_for", &self.lock_at_most_for)?,
            lock_at_least_for: duration("lock_at_least_for", &self.lock_at_least_for)?,
            when_busy: self.when_busy.clone(),
        }
        .into_limit(format!("cron:{}", self.name))?;
        let entry = CronEntry {
            schedule: self.schedule,
            tz: self.tz.unwrap_or_else(|| "UTC".into()),
            task_type: self.task_type,
            payload: RawValue::from_string(payload).map_err(|err| err.to_string())?,
            queue: self
                .queue
                .unwrap_or_else(|| broker::DEFAULT_QUEUE.to_string()),
            max_retry: self.max_retry,
            timeout_ms: duration("timeout", &self.timeout)?.map(|d| d.as_millis() as u64),
            retention_ms: duration("retention", &self.retention)?.map(|d| d.as_millis() as u64),
            misfire: self
                .misfire
                .as_deref()
                .map(str::parse::<MisfirePolicy>)
                .transpose()?
                .unwrap_or_default(),
            limit,
            source: source.to_string(),
            name: self.name,
        };
        entry.check()?;
        Ok(entry)
    }
}

/// What a reconciliation changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Entries added.
    pub created: Vec<String>,
    /// Entries changed.
    pub updated: Vec<String>,
    /// Entries removed (no longer in the file).
    pub removed: Vec<String>,
}

/// Why a schedule file was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The file is unreadable or wrong; nothing was changed.
    #[error("{0}")]
    File(String),
    /// Redis failed midway; try again.
    #[error(transparent)]
    Redis(#[from] broker::Error),
}

/// Reads a schedule file and makes Redis hold exactly its entries (among the
/// entries it owns). A file with any error changes nothing: the error names
/// the entry and what is wrong.
pub async fn reconcile_file(broker: &Broker, path: &Path) -> Result<Reconciled, ReconcileError> {
    let file_error = ReconcileError::File;
    let text = std::fs::read_to_string(path)
        .map_err(|err| file_error(format!("cannot read {}: {err}", path.display())))?;
    let file: ScheduleFile =
        toml::from_str(&text).map_err(|err| file_error(format!("{}: {err}", path.display())))?;
    let source = format!(
        "file:{}",
        std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
    );
    let mut entries = Vec::new();
    for (index, entry) in file.entry.into_iter().enumerate() {
        let name = entry.name.clone();
        let entry = entry.into_entry(&source).map_err(|err| {
            file_error(format!(
                "{}: entry {} ({name:?}): {err}",
                path.display(),
                index + 1
            ))
        })?;
        if entries
            .iter()
            .any(|existing: &CronEntry| existing.name == entry.name)
        {
            return Err(file_error(format!(
                "{}: entry name {name:?} appears twice",
                path.display()
            )));
        }
        entries.push(entry);
    }
    let mut reconciled = Reconciled::default();
    let existing = broker.cron_entries().await?;
    for entry in &entries {
        if let Some(current) = existing.get(&entry.name)
            && let Ok(current) = serde_json::from_str::<CronEntry>(current)
            && current.source != source
        {
            return Err(file_error(format!(
                "{}: entry {:?} already exists in Redis from {}; rename one of them",
                path.display(),
                entry.name,
                current.source
            )));
        }
        match broker
            .cron_put(&entry.name, &entry.to_json(), false)
            .await?
        {
            PutOutcome::Created => reconciled.created.push(entry.name.clone()),
            PutOutcome::Updated => reconciled.updated.push(entry.name.clone()),
            PutOutcome::Unchanged => {}
        }
    }
    for (name, json) in existing {
        let owned =
            serde_json::from_str::<CronEntry>(&json).is_ok_and(|entry| entry.source == source);
        if owned && !entries.iter().any(|entry| entry.name == name) {
            broker.cron_remove(&name).await?;
            reconciled.removed.push(name);
        }
    }
    Ok(reconciled)
}

/// Reconciles `path` now and again whenever it changes, until `shutdown`.
pub async fn watch_file(broker: Broker, path: PathBuf, shutdown: CancellationToken) {
    let modified = |path: &Path| -> Option<SystemTime> {
        std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok()
    };
    let mut seen: Option<SystemTime> = None;
    let mut first = true;
    loop {
        let now = modified(&path);
        if first || now != seen {
            let initial = first;
            match reconcile_file(&broker, &path).await {
                Ok(changes) => {
                    seen = now;
                    first = false;
                    if initial || changes != Reconciled::default() {
                        tracing::info!(
                            file = %path.display(),
                            created = ?changes.created,
                            updated = ?changes.updated,
                            removed = ?changes.removed,
                            "schedule file reconciled"
                        );
                    }
                }
                // A broken file keeps the entries as they were; it is read
                // again when it changes.
                Err(ReconcileError::File(err)) => {
                    seen = now;
                    first = false;
                    tracing::error!("schedule file not applied: {err}");
                }
                // Redis is away: try again next round.
                Err(ReconcileError::Redis(err)) => {
                    tracing::warn!(%err, file = %path.display(), "schedule file not applied yet; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
