//! The plugin registry: deployed components, content-addressed, with each
//! plugin's current version and its history of deployments.
//!
//! The index (current versions, histories, names, and which copy holds
//! each stored component) lives under the hash tag `{plugins}`, so a
//! deployment is one atomic script on one Redis Cluster slot. The bytes of
//! each component live under a tag of their own
//! (`wasmq:{blob:<sha256>}:<copy>`), so on a Cluster they spread over the
//! masters instead of filling one. A copy is written once, before the
//! script that records it, and never rewritten: the index says which copy
//! holds a component, and garbage collection drops a component from the
//! index before deleting its copy, so no deletion can reach bytes that a
//! deployment relies on (see plugin_deploy.lua). The registry stores opaque
//! bytes and JSON records; the plugins module checks components and owns
//! the records' shape.

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
/// The HASH of stored components: SHA-256 -> the copy holding its bytes.
pub const STORED: &str = "wasmq:{plugins}:stored";
/// The versions per plugin the fleet keeps (STRING, a count; absent: keep
/// everything). Workers collect the registry's garbage by it.
pub const RETENTION: &str = "wasmq:{plugins}:retention";
/// Deployments kept per plugin.
const HISTORY_KEPT: usize = 50;

/// The LIST of a plugin's deployments, newest first.
pub fn history_key(name: &str) -> String {
    format!("wasmq:{{plugins}}:history:{name}")
}

/// The key of one copy of a component's bytes (a slot of its own).
pub fn blob_key(digest: &str, copy: &str) -> String {
    format!("wasmq:{{blob:{digest}}}:{copy}")
}

/// Where registries from before the index of stored components kept a
/// component's bytes (in the `{plugins}` slot); still read, and collected.
pub fn legacy_blob_key(digest: &str) -> String {
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

/// What a garbage collection of the registry did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// History entries trimmed.
    pub trimmed: u64,
    /// Components deleted: (digest, bytes).
    pub deleted: Vec<(String, u64)>,
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
        // A copy of its own, written before the index names it: nothing
        // else ever writes or deletes this key unless the index held it.
        let copy = uuid::Uuid::new_v4().simple().to_string();
        let key = blob_key(digest, &copy);
        self.query::<()>(redis::cmd("SET").arg(&key).arg(wasm))
            .await?;
        let mut invocation = SCRIPTS.plugin_deploy.prepare_invoke();
        invocation
            .key(CURRENT)
            .key(history_key(name))
            .key(STORED)
            .key(TYPES)
            .arg(name)
            .arg(digest)
            .arg(&copy)
            .arg(record_json)
            .arg(HISTORY_KEPT)
            .arg(CHANGED)
            .arg(&types)
            .arg(if replace { "1" } else { "0" });
        let outcome = self
            .run::<(Option<String>, Option<String>, i64)>("plugins", Some(name), &invocation)
            .await;
        // Unless the index now names this copy, nothing ever will.
        if !matches!(outcome, Ok((_, _, 1))) {
            let _ = self.query::<i64>(redis::cmd("DEL").arg(&key)).await;
        }
        match outcome {
            Ok((previous, replaced, _)) => Ok(Ok(Deployed {
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
            .key(legacy_blob_key(digest.unwrap_or("none")))
            .key(TYPES)
            .key(STORED)
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

    /// A stored component's bytes: the copy the index names, or where
    /// registries from before the index kept it.
    pub(crate) async fn plugin_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, Error> {
        let copy: Option<String> = self
            .query(redis::cmd("HGET").arg(STORED).arg(digest))
            .await?;
        let key = match copy {
            Some(copy) => blob_key(digest, &copy),
            None => legacy_blob_key(digest),
        };
        self.query(redis::cmd("GET").arg(key)).await
    }

    /// A plugin's deployment records (JSON), newest first.
    pub(crate) async fn plugin_history(&self, name: &str) -> Result<Vec<String>, Error> {
        self.query(redis::cmd("LRANGE").arg(history_key(name)).arg(0).arg(-1))
            .await
    }

    /// Trims each plugin's history to its newest `keep` versions and
    /// deletes the components nothing needs any more: no plugin's current
    /// version, no history entry kept, none of `in_use` (what live workers
    /// run or compile). With `dry_run`, changes nothing and says what it
    /// would do.
    pub(crate) async fn collect_plugin_garbage(
        &self,
        keep: usize,
        in_use: &[String],
        dry_run: bool,
    ) -> Result<Collected, Error> {
        let keep = keep.max(1);
        // The script refuses (STALE) if a name or component appeared since
        // they were read; a few tries outlast any burst of deploys.
        for _ in 0..5 {
            let mut names: Vec<String> = self.query(redis::cmd("HKEYS").arg(TYPES)).await?;
            let current: HashMap<String, String> = self.deployed_plugins().await?;
            names.extend(current.keys().cloned());
            names.sort();
            names.dedup();
            // Copies from before the index are known by the records that
            // name them.
            let mut digests: Vec<String> = current.into_values().collect();
            for name in &names {
                for json in self.plugin_history(name).await? {
                    if let Ok(record) = serde_json::from_str::<serde_json::Value>(&json)
                        && let Some(digest) = record["digest"].as_str()
                    {
                        digests.push(digest.to_string());
                    }
                }
            }
            digests.sort();
            digests.dedup();
            let mut invocation = SCRIPTS.plugin_gc.prepare_invoke();
            invocation.key(CURRENT).key(TYPES).key(STORED);
            invocation
                .arg(keep)
                .arg(if dry_run { "1" } else { "0" })
                .arg(names.len());
            for name in &names {
                invocation.key(history_key(name)).arg(name);
            }
            invocation.arg(digests.len());
            for digest in &digests {
                invocation.key(legacy_blob_key(digest)).arg(digest);
            }
            for digest in in_use {
                invocation.arg(digest);
            }
            match self
                .run::<Vec<redis::Value>>("plugins", None, &invocation)
                .await
            {
                Ok(reply) => return self.delete_dropped_copies(&reply, dry_run).await,
                Err(Error::Redis { source, .. }) if script_error_name(&source) == Some("STALE") => {
                    continue;
                }
                Err(err) => return Err(err),
            }
        }
        Err(Error::Corrupt(
            "the plugin registry kept changing while its garbage was collected; try again".into(),
        ))
    }

    /// The versions per plugin the fleet keeps, if set.
    pub(crate) async fn plugin_retention(&self) -> Result<Option<usize>, Error> {
        let kept: Option<String> = self.query(redis::cmd("GET").arg(RETENTION)).await?;
        Ok(kept.and_then(|kept| kept.parse().ok()))
    }

    /// Sets (or, with `None`, clears) the versions per plugin the fleet
    /// keeps.
    pub(crate) async fn set_plugin_retention(&self, keep: Option<usize>) -> Result<(), Error> {
        match keep {
            Some(keep) => self.query(redis::cmd("SET").arg(RETENTION).arg(keep)).await,
            None => self
                .query::<i64>(redis::cmd("DEL").arg(RETENTION))
                .await
                .map(drop),
        }
    }
}

impl Broker {
    /// Deletes the copies plugin_gc.lua dropped from the index (they live
    /// in slots of their own), and says what went: its reply is {trimmed,
    /// then digest, copy ('' for an old-style copy it deleted), bytes}.
    async fn delete_dropped_copies(
        &self,
        reply: &[redis::Value],
        dry_run: bool,
    ) -> Result<Collected, Error> {
        let number = |value: &redis::Value| match value {
            redis::Value::Int(n) => (*n).max(0) as u64,
            _ => 0,
        };
        let text = |value: &redis::Value| match value {
            redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            redis::Value::SimpleString(text) => text.clone(),
            _ => String::new(),
        };
        let Some((trimmed, rest)) = reply.split_first() else {
            return Ok(Collected::default());
        };
        let mut deleted = Vec::new();
        for dropped in rest.chunks(3).filter(|entry| entry.len() == 3) {
            let (digest, copy) = (text(&dropped[0]), text(&dropped[1]));
            let mut bytes = number(&dropped[2]);
            if !copy.is_empty() {
                let key = blob_key(&digest, &copy);
                bytes = self.query(redis::cmd("STRLEN").arg(&key)).await?;
                if !dry_run {
                    self.query::<i64>(redis::cmd("DEL").arg(&key)).await?;
                }
            }
            deleted.push((digest, bytes));
        }
        deleted.sort();
        Ok(Collected {
            trimmed: number(trimmed),
            deleted,
        })
    }
}
