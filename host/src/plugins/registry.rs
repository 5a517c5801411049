//! Deploying plugins to the fleet: checks a component, stores it in the
//! registry (`broker::registry`), switches versions back, removes plugins,
//! and tells which workers run what.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{LoadOptions, Plugin, PluginError};
use crate::broker::{self, Broker};
use crate::ops::server::{ServerInfo, live_servers};
use crate::sandbox::Sandbox;

/// One entry of a plugin's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// What happened: `deploy`, `rollback` or `rm`.
    pub action: String,
    /// The component made current (none for `rm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Its version, from its manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its task types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_types: Vec<String>,
    /// When (unix ms).
    pub at_ms: i64,
    /// Who (`host:pid` of the command).
    pub by: String,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The component was refused.
    #[error(transparent)]
    Refused(#[from] PluginError),
    /// Redis failed or refused.
    #[error(transparent)]
    Broker(#[from] broker::Error),
    /// The plugin has no version to switch to.
    #[error("{0}")]
    Nothing(String),
    /// The registry refused it: nothing changed.
    #[error("{0}")]
    Held(String),
}

/// What a deployment did.
pub struct Deployed {
    /// The plugin as loaded here.
    pub plugin: Plugin,
    /// The digest that was current before.
    pub previous: Option<String>,
    /// The task types of the different plugin that held the name before,
    /// when `replace` let this one take it.
    pub replaced: Option<Vec<String>>,
}

/// The message for a refusal by the registry.
fn refused(name: &str, task_types: &[String], refusal: broker::registry::Refusal) -> RegistryError {
    RegistryError::Held(match refusal {
        broker::registry::Refusal::Held(held) => format!(
            "the name {name:?} belongs to another plugin, with task types {}; this component has task types {}: nothing was deployed. A name belongs to one plugin (its name and task types): rename this one, or, to replace the other plugin (its kv data stays with it), deploy with --replace",
            held.join(", "),
            task_types.join(", ")
        ),
        broker::registry::Refusal::Conflict { task_type, plugin } => format!(
            "task type {task_type:?} is handled by the deployed plugin {plugin:?}: nothing was changed; remove that plugin first (`wasmq plugin rm {plugin}`), or give this one other task types"
        ),
    })
}

fn who() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

fn record(deployment: &Deployment) -> String {
    // Strings and numbers only.
    serde_json::to_string(deployment).expect("a Deployment always encodes")
}

/// Checks a component as a worker would load it and against the registry
/// (its name must not be held by a plugin with other task types, unless
/// `replace`; its task types must not be another deployed plugin's), then
/// makes it its plugin's current version. A refused deployment changes
/// nothing.
pub async fn deploy(
    broker: &Broker,
    sandbox: &Sandbox,
    wasm: &[u8],
    source: &Path,
    options: &LoadOptions,
    replace: bool,
) -> Result<Deployed, RegistryError> {
    let plugin = Plugin::load(sandbox, wasm, source, options)?;
    let task_types = plugin.manifest.type_set();
    let deployment = Deployment {
        action: "deploy".into(),
        digest: Some(plugin.digest.clone()),
        version: Some(plugin.manifest.version.clone()),
        task_types: plugin.manifest.task_types.clone(),
        at_ms: broker::unix_ms(SystemTime::now()),
        by: who(),
    };
    let outcome = broker
        .deploy_plugin(
            &plugin.manifest.name,
            &plugin.digest,
            wasm,
            &record(&deployment),
            &task_types,
            replace,
        )
        .await?
        .map_err(|refusal| refused(&plugin.manifest.name, &task_types, refusal))?;
    Ok(Deployed {
        plugin,
        previous: outcome.previous,
        replaced: outcome.replaced,
    })
}

/// The plugin's history, newest first.
pub async fn history(broker: &Broker, name: &str) -> Result<Vec<Deployment>, broker::Error> {
    Ok(broker
        .plugin_history(name)
        .await?
        .iter()
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect())
}

/// Switches `name` back to an earlier version: with `to`, the newest
/// entry of its history whose version is `to` or whose content hash starts
/// with it; without, the version deployed before its current one (or its
/// last version, after a removal). Returns the deployment made.
pub async fn rollback(
    broker: &Broker,
    name: &str,
    to: Option<&str>,
) -> Result<Deployment, RegistryError> {
    let current = broker.deployed_plugins().await?.remove(name);
    let past = history(broker, name).await?;
    let target = match to {
        None => past
            .iter()
            .find(|entry| entry.digest.is_some() && entry.digest != current)
            .cloned()
            .ok_or_else(|| {
                RegistryError::Nothing(format!(
                    "plugin {name:?} has no earlier version to roll back to (`wasmq plugin ls` shows what is deployed)"
                ))
            })?,
        Some(to) => rollback_target(name, &past, current.as_deref(), to)?,
    };
    let deployment = Deployment {
        action: "rollback".into(),
        at_ms: broker::unix_ms(SystemTime::now()),
        by: who(),
        ..target
    };
    let mut task_types = deployment.task_types.clone();
    task_types.sort();
    task_types.dedup();
    broker
        .switch_plugin(
            name,
            deployment.digest.as_deref(),
            &record(&deployment),
            &task_types,
        )
        .await?
        .map_err(|refusal| refused(name, &task_types, refusal))?;
    Ok(deployment)
}

/// The entry of `past` (newest first) that `to` names: a version, or the
/// start of a content hash (at least 6 hex digits).
fn rollback_target(
    name: &str,
    past: &[Deployment],
    current: Option<&str>,
    to: &str,
) -> Result<Deployment, RegistryError> {
    let stored = || past.iter().filter(|entry| entry.digest.is_some());
    let by_version = stored().find(|entry| entry.version.as_deref() == Some(to));
    let by_hash: Vec<&Deployment> = if to.len() >= 6 && to.chars().all(|c| c.is_ascii_hexdigit()) {
        let prefix = to.to_ascii_lowercase();
        let mut seen = Vec::<&Deployment>::new();
        for entry in stored() {
            if entry
                .digest
                .as_deref()
                .is_some_and(|d| d.starts_with(&prefix))
                && !seen.iter().any(|other| other.digest == entry.digest)
            {
                seen.push(entry);
            }
        }
        seen
    } else {
        Vec::new()
    };
    let target = match (by_version, by_hash.as_slice()) {
        (Some(entry), _) => entry.clone(),
        (None, [entry]) => (*entry).clone(),
        (None, []) => {
            let mut kept: Vec<String> = Vec::new();
            for entry in stored() {
                let line = format!(
                    "{} ({})",
                    entry.version.as_deref().unwrap_or("?"),
                    entry.digest.as_deref().map(short_digest).unwrap_or("?")
                );
                if !kept.contains(&line) {
                    kept.push(line);
                }
            }
            return Err(RegistryError::Nothing(format!(
                "plugin {name:?} has no version or content hash {to:?} in its history{}; name a version or the start of a hash (at least 6 hex digits) from `wasmq plugin history {name}`",
                if kept.is_empty() {
                    String::new()
                } else {
                    format!(" (it keeps {})", kept.join(", "))
                }
            )));
        }
        (None, several) => {
            return Err(RegistryError::Nothing(format!(
                "{to:?} starts {} content hashes in {name:?}'s history ({}); give more of the hash",
                several.len(),
                several
                    .iter()
                    .filter_map(|entry| entry.digest.as_deref().map(short_digest))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    if target.digest.as_deref() == current {
        return Err(RegistryError::Nothing(format!(
            "{name:?} already runs {} ({}); nothing was changed",
            target.version.as_deref().unwrap_or("?"),
            target.digest.as_deref().map(short_digest).unwrap_or("?")
        )));
    }
    Ok(target)
}

/// The first 12 hex digits of a content hash, as listings and logs show it
/// (whole, if a stored one is shorter or not ASCII).
pub fn short_digest(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// Collects the registry's garbage: trims each plugin's history to its
/// newest `keep` versions and deletes every stored component that no
/// current version, no history entry kept and no live worker (running it,
/// or still compiling it) needs. With `dry_run`, says what it would do.
pub async fn collect_garbage(
    broker: &Broker,
    keep: usize,
    dry_run: bool,
) -> Result<broker::registry::Collected, broker::Error> {
    let mut in_use: Vec<String> = Vec::new();
    for server in live_servers(broker).await? {
        in_use.extend(server.plugins.into_iter().map(|plugin| plugin.digest));
        in_use.extend(server.compiling.into_iter().map(|plugin| plugin.digest));
    }
    in_use.sort();
    in_use.dedup();
    broker.collect_plugin_garbage(keep, &in_use, dry_run).await
}

/// Removes a deployed plugin: workers unload it, and its task types wait
/// in retry until a plugin handles them again. Returns the digest removed.
pub async fn remove(broker: &Broker, name: &str) -> Result<String, RegistryError> {
    let deployment = Deployment {
        action: "rm".into(),
        digest: None,
        version: None,
        task_types: Vec::new(),
        at_ms: broker::unix_ms(SystemTime::now()),
        by: who(),
    };
    match broker
        .switch_plugin(name, None, &record(&deployment), &[])
        .await?
        .map_err(|refusal| refused(name, &[], refusal))?
    {
        Some(previous) => Ok(previous),
        None => Err(RegistryError::Nothing(format!(
            "no plugin named {name:?} is deployed"
        ))),
    }
}

/// A deployed plugin and where it runs.
#[derive(Debug, Clone, Serialize)]
pub struct DeployedPlugin {
    /// Its name.
    pub name: String,
    /// The current deployment.
    pub current: Deployment,
    /// Workers running the current version.
    pub running: Vec<String>,
    /// Workers running another version: (worker, version digest).
    pub running_other: Vec<(String, String)>,
    /// Workers that failed to load the current version: (worker, error).
    pub failed: Vec<(String, String)>,
}

/// Every deployed plugin with the workers that run it.
pub async fn list(broker: &Broker) -> Result<Vec<DeployedPlugin>, broker::Error> {
    let deployed = broker.deployed_plugins().await?;
    let servers = live_servers(broker).await?;
    let mut plugins = Vec::new();
    let mut names: Vec<&String> = deployed.keys().collect();
    names.sort();
    for name in names {
        let digest = &deployed[name];
        let current = history(broker, name)
            .await?
            .into_iter()
            .find(|entry| entry.digest.as_ref() == Some(digest))
            .unwrap_or(Deployment {
                action: "deploy".into(),
                digest: Some(digest.clone()),
                version: None,
                task_types: Vec::new(),
                at_ms: 0,
                by: "?".into(),
            });
        let (running, running_other, failed) = where_it_runs(&servers, name, digest);
        plugins.push(DeployedPlugin {
            name: name.clone(),
            current,
            running,
            running_other,
            failed,
        });
    }
    Ok(plugins)
}

type Placement = (Vec<String>, Vec<(String, String)>, Vec<(String, String)>);

/// Which workers run `digest` of `name`, another version, or failed it.
pub fn where_it_runs(servers: &[ServerInfo], name: &str, digest: &str) -> Placement {
    let (mut running, mut other, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for server in servers {
        if let Some(failure) = server
            .plugin_errors
            .iter()
            .find(|failure| failure.name == name && failure.digest == digest)
        {
            failed.push((server.id.clone(), failure.error.clone()));
        } else if let Some(plugin) = server.plugins.iter().find(|plugin| plugin.name == name) {
            if plugin.digest == digest {
                running.push(server.id.clone());
            } else {
                other.push((server.id.clone(), plugin.digest.clone()));
            }
        }
    }
    (running, other, failed)
}
