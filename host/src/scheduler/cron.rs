//! Cron entries as a program manages them: add, replace, remove, list, and
//! read what each tick did. The entries live in Redis, where every
//! scheduler replica reads them; `wasmq cron` is the same calls from the
//! shell.

use tokio_util::sync::CancellationToken;

use super::SchedulerConfig;
use super::entry::{CronEntry, TickRecord};
use crate::broker::{Broker, Error};

/// The cron entries of the Redis a [`Broker`] reaches.
#[derive(Clone)]
pub struct Cron {
    broker: Broker,
}

impl Cron {
    /// The cron entries on `broker`'s Redis.
    pub fn new(broker: Broker) -> Self {
        Cron { broker }
    }

    /// Adds `entry`, or replaces the entry of its name when `replace`;
    /// refused ([`Error::InvalidTask`]) if its schedule, time zone or task
    /// is wrong, or (without `replace`) if an entry of that name exists.
    /// Schedulers pick it up at once.
    pub async fn put(&self, entry: &CronEntry, replace: bool) -> Result<(), Error> {
        entry.check().map_err(|err| {
            Error::InvalidTask(format!("cron entry {:?} refused: {err}", entry.name))
        })?;
        self.broker
            .cron_put(&entry.name, &entry.to_json(), !replace)
            .await
            .map(drop)
    }

    /// Removes the entry `name`; returns whether there was one.
    pub async fn remove(&self, name: &str) -> Result<bool, Error> {
        self.broker.cron_remove(name).await
    }

    /// Every entry, by name; entries that cannot be read are left out.
    pub async fn entries(&self) -> Result<Vec<CronEntry>, Error> {
        let mut entries: Vec<CronEntry> = self
            .broker
            .cron_entries()
            .await?
            .values()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// The last `limit` ticks of the entry `name`, newest first; records
    /// that cannot be read are left out.
    pub async fn history(&self, name: &str, limit: usize) -> Result<Vec<TickRecord>, Error> {
        Ok(self
            .broker
            .cron_history(name, limit)
            .await?
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect())
    }

    /// Runs a scheduler replica until `shutdown` completes: it enqueues
    /// each tick of each entry exactly once across every replica running,
    /// with no leader (as `wasmq scheduler` does, and every worker built
    /// with [`WorkerBuilder::scheduler`](crate::WorkerBuilder::scheduler)).
    pub async fn run_replica(&self, config: SchedulerConfig, shutdown: impl Future<Output = ()>) {
        let stop = CancellationToken::new();
        let replica = super::run(self.broker.clone(), config, stop.clone());
        tokio::pin!(replica);
        tokio::select! {
            _ = &mut replica => return,
            _ = shutdown => stop.cancel(),
        }
        replica.await;
    }
}
