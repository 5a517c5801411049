//! What the fleet tells about itself: worker heartbeats, and the run
//! statistics workers keep per plugin and task type.
//!
//! Heartbeats: each worker writes `wasmq:{fleet}:server:<id>` (its
//! description, JSON) with a time to live and scores itself in the
//! `wasmq:{fleet}:servers` ZSET by when that expires; readers drop the
//! expired. Plugin statistics: workers add their counts to
//! `wasmq:{fleet}:plugin-stats:<plugin>` (a HASH of `<type>|<counter>`
//! fields) every few seconds, and name the plugin in the
//! `wasmq:{fleet}:plugin-stats` SET. All of these share the `{fleet}` hash
//! tag, so every pipeline here stays in one slot of a cluster.

use std::collections::HashMap;
use std::time::Duration;

use super::{Broker, Error, millis};

/// The ZSET of live workers: id -> when their heartbeat expires (unix ms).
pub const SERVERS: &str = "wasmq:{fleet}:servers";

/// The SET of plugins that have statistics.
pub const PLUGIN_STATS: &str = "wasmq:{fleet}:plugin-stats";

/// How a heartbeat was written.
#[derive(Debug)]
pub enum Heartbeat {
    /// As any write.
    Written,
    /// Redis refused the plain write (this error) because it is at its
    /// memory limit; the heartbeat was written anyway.
    OutOfMemory(Error),
}

/// The key of one worker's description.
pub fn server_key(id: &str) -> String {
    format!("wasmq:{{fleet}}:server:{id}")
}

/// The STRING held (for `period`) by the worker whose turn it is to do
/// upkeep `what` for a set of queues: named by the sorted queue names'
/// digest and the period, so that workers serving other queues, or
/// renewing leases at another pace, keep their own turns.
pub fn upkeep_key(what: &str, queues: &[String], period: Duration) -> String {
    use sha2::Digest;
    let mut names: Vec<&str> = queues.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let digest = sha2::Sha256::digest(names.join("\n").as_bytes());
    format!(
        "wasmq:{{fleet}}:upkeep:{what}:{}:{}",
        &hex::encode(digest)[..16],
        millis(period)
    )
}

/// The HASH of a plugin's run statistics.
pub fn plugin_stats_key(plugin: &str) -> String {
    format!("wasmq:{{fleet}}:plugin-stats:{plugin}")
}

impl Broker {
    /// Records a worker as alive for `ttl`, with its description (JSON).
    ///
    /// When Redis is at its memory limit the plain writes are refused:
    /// the heartbeat is then written by `heartbeat.lua`, which may write
    /// anyway (it takes no more memory than the heartbeat it replaces), and
    /// the refusal is returned as [`Heartbeat::OutOfMemory`] so the caller
    /// knows Redis refuses other writes.
    pub(crate) async fn heartbeat(
        &self,
        id: &str,
        description: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Heartbeat, Error> {
        match self.plain_heartbeat(id, description, ttl, now_ms).await {
            Ok(()) => Ok(Heartbeat::Written),
            Err(refused) if refused.is_out_of_memory() => {
                let mut invocation = super::scripts::SCRIPTS.heartbeat.prepare_invoke();
                invocation
                    .key(SERVERS)
                    .key(server_key(id))
                    .arg(id)
                    .arg(description)
                    .arg(millis(ttl))
                    .arg(now_ms);
                invocation
                    .invoke_async::<i64>(&mut self.conn())
                    .await
                    .map_err(|err| self.redis_error(err))?;
                Ok(Heartbeat::OutOfMemory(refused))
            }
            Err(err) => Err(err),
        }
    }

    async fn plain_heartbeat(
        &self,
        id: &str,
        description: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<(), Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(server_key(id))
            .arg(description)
            .arg("PX")
            .arg(millis(ttl))
            .ignore()
            .zadd(SERVERS, id, now_ms + millis(ttl) as i64)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(SERVERS)
            .arg("-inf")
            .arg(now_ms)
            .ignore();
        self.query_pipeline(&pipe).await
    }

    /// Takes the turn of upkeep `what` (e.g. reclaiming expired leases) of
    /// a set of queues for `period`, if no worker has it: true when this
    /// worker does the work this period. Workers serving the same queues
    /// share one upkeep between them, so an idle fleet's upkeep costs
    /// Redis the same however many workers it has.
    pub(crate) async fn take_upkeep_turn(
        &self,
        what: &str,
        queues: &[String],
        worker_id: &str,
        period: Duration,
    ) -> Result<bool, Error> {
        let taken: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(upkeep_key(what, queues, period))
                    .arg(worker_id)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(period).max(1)),
            )
            .await?;
        Ok(taken.is_some())
    }

    /// Forgets a worker that stopped.
    pub(crate) async fn forget_server(&self, id: &str) -> Result<(), Error> {
        let mut pipe = redis::pipe();
        pipe.del(server_key(id)).ignore().zrem(SERVERS, id).ignore();
        self.query_pipeline(&pipe).await
    }

    /// The descriptions (JSON) of every live worker.
    pub(crate) async fn servers(&self) -> Result<Vec<String>, Error> {
        let ids: Vec<String> = self
            .query(redis::cmd("ZRANGE").arg(SERVERS).arg(0).arg(-1))
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| server_key(id)).collect();
        let descriptions: Vec<Option<String>> = self.query(redis::cmd("MGET").arg(&keys)).await?;
        Ok(descriptions.into_iter().flatten().collect())
    }

    /// Adds counts to plugins' statistics: plugin -> (field -> increment).
    pub(crate) async fn add_plugin_stats(
        &self,
        counts: &HashMap<String, HashMap<String, u64>>,
    ) -> Result<(), Error> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (plugin, fields) in counts {
            pipe.sadd(PLUGIN_STATS, plugin).ignore();
            let key = plugin_stats_key(plugin);
            for (field, increment) in fields {
                pipe.hincr(&key, field, *increment).ignore();
            }
        }
        self.query_pipeline(&pipe).await
    }

    /// The statistics of every plugin that ever ran: plugin -> (field ->
    /// count).
    pub(crate) async fn plugin_stats(
        &self,
    ) -> Result<HashMap<String, HashMap<String, u64>>, Error> {
        let plugins: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(PLUGIN_STATS)).await?;
        let keys: Vec<String> = plugins
            .iter()
            .map(|plugin| plugin_stats_key(plugin))
            .collect();
        let mut stats = HashMap::new();
        for key in keys {
            let fields: HashMap<String, u64> = self.query(redis::cmd("HGETALL").arg(&key)).await?;
            let plugin = key.trim_start_matches(&plugin_stats_key("")).to_string();
            stats.insert(plugin, fields);
        }
        Ok(stats)
    }
}
