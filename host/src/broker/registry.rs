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
/// The HASH of names held: plugin name -> its task types (JSON array,
/// sorted). A name stays held after its plugin is removed.
pub const TYPES: &str = "wasmq:{plugins}:types";
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

/// Why the registry refused a deployment or a rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The name is held by a plugin with these task types.
    Held(Vec<String>),
    /// Another deployed plugin handles this task type.
    Conflict {
        /// The task type.
        task_type: String,
        /// The plugin handling it.
        plugin: String,
    },
}

/// What a deployment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    /// The digest that was current before.
    pub previous: Option<String>,
    /// The task types the name held before, when the deployment replaced a
    /// different plugin.
    pub replaced: Option<Vec<String>>,
}

/// A script's refusal, if the error is one.
fn refusal(err: &Error) -> Option<Refusal> {
    let Error::Redis { source, .. } = err else {
        return None;
    };
    let detail = source.detail().unwrap_or_default();
    match script_error_name(source) {
        Some("HELD") => Some(Refusal::Held(
            serde_json::from_str(detail).unwrap_or_default(),
        )),
        Some("CONFLICT") => {
            let value: serde_json::Value = serde_json::from_str(detail).unwrap_or_default();
            let field = |name: &str| value[name].as_str().unwrap_or("?").to_string();
            Some(Refusal::Conflict {
                task_type: field("task_type"),
                plugin: field("plugin"),
            })
        }
        _ => None,
    }
}

impl Broker {
    /// Stores a component and makes it `name`'s current version, unless
    /// the name is held by a plugin with other task types (and `replace`
    /// is false) or another deployed plugin handles one of `task_types`
    /// (sorted): then nothing changes and the refusal says why.
    pub(crate) async fn deploy_plugin(
        &self,
        name: &str,
        digest: &str,
        wasm: &[u8],
        record_json: &str,
        task_types: &[String],
        replace: bool,
    ) -> Result<Result<Deployed, Refusal>, Error> {
        self.backfill_types().await?;
        let types = serde_json::to_string(task_types).unwrap_or_else(|_| "[]".into());
        let mut invocation = SCRIPTS.plugin_deploy.prepare_invoke();
        invocation
            .key(CURRENT)
            .key(history_key(name))
            .key(blob_key(digest))
            .key(TYPES)
            .arg(name)
            .arg(digest)
            .arg(wasm)
            .arg(record_json)
            .arg(HISTORY_KEPT)
            .arg(CHANGED)
            .arg(&types)
            .arg(if replace { "1" } else { "0" });
        match self
            .run::<(Option<String>, Option<String>)>("plugins", Some(name), &invocation)
            .await
        {
            Ok((previous, replaced)) => Ok(Ok(Deployed {
                previous,
                replaced: replaced.map(|json| serde_json::from_str(&json).unwrap_or_default()),
            })),
            Err(err) => match refusal(&err) {
                Some(refusal) => Ok(Err(refusal)),
                None => Err(err),
            },
        }
    }

    /// Records the task types of plugins deployed before the registry
    /// recorded them (from their newest history entry), so that checks
    /// cover them too.
    async fn backfill_types(&self) -> Result<(), Error> {
        let current: HashMap<String, String> = self.deployed_plugins().await?;
        let known: HashMap<String, String> = self.query(redis::cmd("HGETALL").arg(TYPES)).await?;
        for name in current.keys().filter(|name| !known.contains_key(*name)) {
            let newest: Option<String> = self
                .query(redis::cmd("LINDEX").arg(history_key(name)).arg(0))
                .await?;
            let types = newest
                .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
                .and_then(|record| {
                    serde_json::from_value::<Vec<String>>(record["task_types"].clone()).ok()
                })
                .filter(|types| !types.is_empty());
            if let Some(mut types) = types {
                types.sort();
                types.dedup();
                let json = serde_json::to_string(&types).unwrap_or_else(|_| "[]".into());
                let _: i64 = self
                    .query(redis::cmd("HSETNX").arg(TYPES).arg(name).arg(json))
                    .await?;
            }
        }
        Ok(())
    }

    /// Makes a stored component `name`'s current version, or removes the
    /// plugin when `digest` is `None`. A switch to a version with
    /// `task_types` (sorted; empty when unknown) is refused, changing
    /// nothing, if another deployed plugin handles one of them. Returns the
    /// digest that was current.
    pub(crate) async fn switch_plugin(
        &self,
        name: &str,
        digest: Option<&str>,
        record_json: &str,
        task_types: &[String],
    ) -> Result<Result<Option<String>, Refusal>, Error> {
        if digest.is_some() {
            self.backfill_types().await?;
        }
        let types = if task_types.is_empty() || digest.is_none() {
            String::new()
        } else {
            serde_json::to_string(task_types).unwrap_or_default()
        };
        let mut invocation = SCRIPTS.plugin_switch.prepare_invoke();
        invocation
            .key(CURRENT)
            .key(history_key(name))
            .key(blob_key(digest.unwrap_or("none")))
            .key(TYPES)
            .arg(name)
            .arg(digest.unwrap_or(""))
            .arg(record_json)
            .arg(HISTORY_KEPT)
            .arg(CHANGED)
            .arg(types);
        match self.run("plugins", Some(name), &invocation).await {
            Ok(previous) => Ok(Ok(previous)),
            Err(Error::Redis { source, .. }) if script_error_name(&source) == Some("NO_BLOB") => {
                Err(Error::InvalidTask(format!(
                    "the component to switch {name} to is no longer stored; deploy it again"
                )))
            }
            Err(err) => match refusal(&err) {
                Some(refusal) => Ok(Err(refusal)),
                None => Err(err),
            },
        }
    }

    /// Every deployed plugin's current digest.
    pub(crate) async fn deployed_plugins(&self) -> Result<HashMap<String, String>, Error> {
        self.query(redis::cmd("HGETALL").arg(CURRENT)).await
    }

    /// A stored component's bytes.
    pub(crate) async fn plugin_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, Error> {
        self.query(redis::cmd("GET").arg(blob_key(digest))).await
    }

    /// A plugin's deployment records (JSON), newest first.
    pub(crate) async fn plugin_history(&self, name: &str) -> Result<Vec<String>, Error> {
        self.query(redis::cmd("LRANGE").arg(history_key(name)).arg(0).arg(-1))
            .await
    }
}
