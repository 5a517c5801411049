//! Where the cron scheduler keeps its entries, the last tick each has
//! handled, and each entry's history of ticks.
//!
//! All under the hash tag `{cron}`, so the scripts that touch several of
//! these keys run on one Redis Cluster slot. The broker stores entries and
//! history records as opaque JSON; the scheduler module owns their shape.
//! Ticks are claimed in the target queue itself (a reserved task id), so a
//! tick's claim and its task are one atomic enqueue.

use std::collections::HashMap;

use super::scripts::SCRIPTS;
use super::{Broker, Error};

/// The HASH of entries: name -> entry (JSON).
pub const ENTRIES: &str = "wasmq:{cron}:entries";
/// The HASH of last handled ticks: name -> unix ms (server clock).
pub const LAST: &str = "wasmq:{cron}:last";
/// The channel that tells schedulers that entries changed.
pub const CHANGED: &str = "wasmq:{cron}:changed";

/// The LIST of an entry's tick records, newest first.
pub fn history_key(name: &str) -> String {
    format!("wasmq:{{cron}}:history:{name}")
}

/// What storing an entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// A new entry.
    Created,
    /// An existing entry was replaced.
    Updated,
    /// The entry was already exactly so.
    Unchanged,
}

impl Broker {
    /// Stores a cron entry (JSON). With `create_only`, an existing name is
    /// refused with [`Error::InvalidTask`].
    pub(crate) async fn cron_put(
        &self,
        name: &str,
        entry_json: &str,
        create_only: bool,
    ) -> Result<PutOutcome, Error> {
        let mut invocation = SCRIPTS.cron_put.prepare_invoke();
        invocation
            .key(ENTRIES)
            .key(LAST)
            .arg(name)
            .arg(entry_json)
            .arg(if create_only { "create" } else { "put" })
            .arg(CHANGED);
        match self.run::<String>("cron", Some(name), &invocation).await {
            Ok(outcome) => match outcome.as_str() {
                "created" => Ok(PutOutcome::Created),
                "updated" => Ok(PutOutcome::Updated),
                _ => Ok(PutOutcome::Unchanged),
            },
            Err(Error::Redis { source, .. })
                if super::script_error_name(&source) == Some("EXISTS") =>
            {
                Err(Error::InvalidTask(format!(
                    "a cron entry named {name:?} already exists: remove it first (`wasmq cron rm {name}`) or pick another name"
                )))
            }
            Err(err) => Err(err),
        }
    }

    /// Removes a cron entry with its state and history. Returns whether it
    /// existed.
    pub(crate) async fn cron_remove(&self, name: &str) -> Result<bool, Error> {
        let mut invocation = SCRIPTS.cron_remove.prepare_invoke();
        invocation
            .key(ENTRIES)
            .key(LAST)
            .key(history_key(name))
            .arg(name)
            .arg(CHANGED);
        Ok(self.run::<i64>("cron", Some(name), &invocation).await? == 1)
    }

    /// Every entry, as (name, JSON).
    pub(crate) async fn cron_entries(&self) -> Result<HashMap<String, String>, Error> {
        self.query(redis::cmd("HGETALL").arg(ENTRIES)).await
    }

    /// The last tick each entry handled (unix ms, server clock).
    pub(crate) async fn cron_last_ticks(&self) -> Result<HashMap<String, i64>, Error> {
        self.query(redis::cmd("HGETALL").arg(LAST)).await
    }

    /// Moves an entry's last handled tick forward to `tick_ms`. Returns the
    /// previous value when this call moved it, `None` when another scheduler
    /// already had.
    pub(crate) async fn cron_advance(
        &self,
        name: &str,
        tick_ms: i64,
    ) -> Result<Option<i64>, Error> {
        let mut invocation = SCRIPTS.cron_advance.prepare_invoke();
        invocation.key(LAST).arg(name).arg(tick_ms);
        let previous: i64 = self.run("cron", Some(name), &invocation).await?;
        Ok((previous >= 0).then_some(previous))
    }

    /// Records a tick in an entry's history, keeping the newest `keep`.
    pub(crate) async fn cron_record(
        &self,
        name: &str,
        record_json: &str,
        keep: usize,
    ) -> Result<(), Error> {
        let key = history_key(name);
        let mut pipe = redis::pipe();
        pipe.lpush(&key, record_json)
            .ignore()
            .ltrim(&key, 0, keep as isize - 1)
            .ignore();
        self.query_pipeline(&pipe).await
    }

    /// The newest `count` tick records of an entry (JSON), newest first.
    pub(crate) async fn cron_history(
        &self,
        name: &str,
        count: usize,
    ) -> Result<Vec<String>, Error> {
        self.query(
            redis::cmd("LRANGE")
                .arg(history_key(name))
                .arg(0)
                .arg(count as isize - 1),
        )
        .await
    }

    /// The Redis server's clock, unix ms.
    pub(crate) async fn server_time_ms(&self) -> Result<i64, Error> {
        let (seconds, micros): (i64, i64) = self.query(&redis::cmd("TIME")).await?;
        Ok(seconds * 1000 + micros / 1000)
    }
}
