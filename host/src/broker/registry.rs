//! The plugin registry: deployed components, content-addressed, with each
//! plugin's current version and its history of deployments.
//!
//! All under the hash tag `{plugins}`, so a deployment is one atomic script
//! on one Redis Cluster slot. The registry stores opaque bytes and JSON
//! records; the plugins module checks components and owns the records'
//! shape.

use std::collections::HashMap;

use super::scripts::SCRIPTS;
use super::{Broker, Error, script_error_name};

/// The HASH of current versions: plugin name -> SHA-256 of its component.
pub const CURRENT: &str = "wasmq:{plugins}:current";
/// The channel that tells workers plugins changed.
pub const CHANGED: &str = "wasmq:{plugins}:changed";
/// Deployments kept per plugin.
const HISTORY_KEPT: usize = 50;

/// The LIST of a plugin's deployments, newest first.
pub fn history_key(name: &str) -> String {
    format!("wasmq:{{plugins}}:history:{name}")
}

/// The key of a stored component.
pub fn blob_key(digest: &str) -> String {
    format!("wasmq:{{plugins}}:blob:{digest}")
}

impl Broker {
    /// Stores a component and makes it `name`'s current version. Returns
    /// the digest that was current before.
    pub async fn deploy_plugin(
        &self,
        name: &str,
        digest: &str,
        wasm: &[u8],
        record_json: &str,
    ) -> Result<Option<String>, Error> {
        let mut invocation = SCRIPTS.plugin_deploy.prepare_invoke();
        invocation
            .key(CURRENT)
            .key(history_key(name))
            .key(blob_key(digest))
            .arg(name)
            .arg(digest)
            .arg(wasm)
            .arg(record_json)
            .arg(HISTORY_KEPT)
            .arg(CHANGED);
        self.run("plugins", Some(name), &invocation).await
    }

    /// Makes a stored component `name`'s current version, or removes the
    /// plugin when `digest` is `None`. Returns the digest that was current.
    pub async fn switch_plugin(
        &self,
        name: &str,
        digest: Option<&str>,
        record_json: &str,
    ) -> Result<Option<String>, Error> {
        let mut invocation = SCRIPTS.plugin_switch.prepare_invoke();
        invocation
            .key(CURRENT)
            .key(history_key(name))
            .key(blob_key(digest.unwrap_or("none")))
            .arg(name)
            .arg(digest.unwrap_or(""))
            .arg(record_json)
            .arg(HISTORY_KEPT)
            .arg(CHANGED);
        match self.run("plugins", Some(name), &invocation).await {
            Err(Error::Redis { source, .. }) if script_error_name(&source) == Some("NO_BLOB") => {
                Err(Error::InvalidTask(format!(
                    "the component to switch {name} to is no longer stored; deploy it again"
                )))
            }
            other => other,
        }
    }

    /// Every deployed plugin's current digest.
    pub async fn deployed_plugins(&self) -> Result<HashMap<String, String>, Error> {
        self.query(redis::cmd("HGETALL").arg(CURRENT)).await
    }

    /// A stored component's bytes.
    pub async fn plugin_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, Error> {
        self.query(redis::cmd("GET").arg(blob_key(digest))).await
    }

    /// A plugin's deployment records (JSON), newest first.
    pub async fn plugin_history(&self, name: &str) -> Result<Vec<String>, Error> {
        self.query(redis::cmd("LRANGE").arg(history_key(name)).arg(0).arg(-1))
            .await
    }
}
