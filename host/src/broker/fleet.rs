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

/// The key of one worker's description.
pub fn server_key(id: &str) -> String {
    format!("wasmq:{{fleet}}:server:{id}")
}

/// The HASH of a plugin's run statistics.
pub fn plugin_stats_key(plugin: &str) -> String {
    format!("wasmq:{{fleet}}:plugin-stats:{plugin}")
}

impl Broker {
    /// Records a worker as alive for `ttl`, with its description (JSON).
    pub async fn heartbeat(
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

    /// Forgets a worker that stopped.
    pub async fn forget_server(&self, id: &str) -> Result<(), Error> {
        let mut pipe = redis::pipe();
        pipe.del(server_key(id)).ignore().zrem(SERVERS, id).ignore();
        self.query_pipeline(&pipe).await
    }

    /// The descriptions (JSON) of every live worker.
    pub async fn servers(&self) -> Result<Vec<String>, Error> {
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
    pub async fn add_plugin_stats(
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
    pub async fn plugin_stats(&self) -> Result<HashMap<String, HashMap<String, u64>>, Error> {
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
