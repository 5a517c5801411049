//! What the fleet tells about itself: worker heartbeats, and the run
//! statistics workers keep per plugin and task type.
//!
//! Heartbeats: each worker writes `wasmq:server:<id>` (its description,
//! JSON) with a time to live and scores itself in the `wasmq:servers` ZSET
//! by when that expires; readers drop the expired. Plugin statistics:
//! workers add their counts to `wasmq:plugin-stats:<plugin>` (a HASH of
//! `<type>|<counter>` fields) every few seconds. These keys span the fleet,
//! so they are only used by single commands and pipelines, never scripts.

use std::collections::HashMap;
use std::time::Duration;

use super::{Broker, Error, millis};

/// The ZSET of live workers: id -> when their heartbeat expires (unix ms).
pub const SERVERS: &str = "wasmq:servers";

/// The key of one worker's description.
pub fn server_key(id: &str) -> String {
    format!("wasmq:server:{id}")
}

/// The HASH of a plugin's run statistics.
pub fn plugin_stats_key(plugin: &str) -> String {
    format!("wasmq:plugin-stats:{plugin}")
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
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(plugin_stats_key("*"))
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let mut stats = HashMap::new();
        for key in keys {
            let fields: HashMap<String, u64> = self.query(redis::cmd("HGETALL").arg(&key)).await?;
            let plugin = key.trim_start_matches(&plugin_stats_key("")).to_string();
            stats.insert(plugin, fields);
        }
        Ok(stats)
    }
}
