//! What a worker's heartbeat says about it, for `wasmq server ls` and the
//! dashboard.

use serde::{Deserialize, Serialize};

use crate::broker::{self, Broker};

/// Every live worker, from its heartbeat; a heartbeat that does not decode
/// (written by an incompatible version) is skipped.
pub async fn live_servers(broker: &Broker) -> Result<Vec<ServerInfo>, broker::Error> {
    Ok(broker
        .servers()
        .await?
        .iter()
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect())
}

/// A live worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The worker's id (`host:pid:nonce`).
    pub id: String,
    /// Its host name.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The wasmq version it runs.
    pub version: String,
    /// When it started (unix ms).
    pub started_at_ms: i64,
    /// Tasks it may run at once.
    pub concurrency: usize,
    /// The queues it serves, with their weights.
    pub queues: Vec<(String, u32)>,
    /// Whether its priorities are strict.
    pub strict: bool,
    /// The tasks it is running.
    pub running: Vec<RunningTaskInfo>,
    /// Tasks of plugins on probation it holds parked, waiting for its
    /// probation lane (leased, but not running yet).
    #[serde(default)]
    pub parked: usize,
    /// The plugins it has loaded.
    pub plugins: Vec<PluginInfo>,
    /// Deployed plugin versions it refused to load.
    #[serde(default)]
    pub plugin_errors: Vec<PluginFailureInfo>,
    /// Deployed plugin versions it is fetching and compiling (in the
    /// background: the previous version serves meanwhile).
    #[serde(default)]
    pub compiling: Vec<PluginCompilingInfo>,
}

/// A deployed plugin version a worker is compiling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginCompilingInfo {
    /// The plugin.
    pub name: String,
    /// The component's SHA-256.
    pub digest: String,
    /// Since when (unix ms).
    pub since_ms: i64,
}

/// A deployed plugin version a worker refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginFailureInfo {
    /// The plugin.
    pub name: String,
    /// The refused component's SHA-256.
    pub digest: String,
    /// Why.
    pub error: String,
}

/// A task a worker is running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningTaskInfo {
    /// The queue.
    pub queue: String,
    /// The task id.
    pub id: String,
    /// The task type.
    pub task_type: String,
    /// When this attempt started (unix ms).
    pub started_at_ms: i64,
}

/// A plugin a worker has loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// The plugin's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of its component, hex.
    pub digest: String,
    /// The task types it handles.
    pub task_types: Vec<String>,
    /// Whether it came from the registry rather than the plugin directory.
    #[serde(default)]
    pub deployed: bool,
    /// Whether this worker has put it on probation (its attempts kept
    /// ending at their limits).
    #[serde(default)]
    pub on_probation: bool,
}
