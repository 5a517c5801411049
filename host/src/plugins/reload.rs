//! Changing a worker's plugins while it runs: following the registry
//! (deployed plugins) and, for `wasmq dev`, a plugin directory.
//!
//! A new version is fetched and compiled off the task path (on a blocking
//! thread, through the compiled-component cache), checked like any plugin,
//! and swapped in with the rest of the set at once. Tasks already running
//! keep the version they started with. A version that fails to load leaves
//! the old one serving, and is reported (in the worker's heartbeat) until a
//! new version comes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{LoadFailure, LoadOptions, Plugin, PluginSet, Plugins};
use crate::broker::{self, Broker};
use crate::ops::metrics::Metrics;
use crate::sandbox::Sandbox;

/// How often the registry is read even without a notification, so a missed
/// one (or a worker started later) still converges.
const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// Follows the registry until `shutdown`: serves every deployed plugin's
/// current version, on top of the plugins of the worker's own directory
/// (`local`); a deployed plugin replaces a local one of the same name.
pub async fn reconcile_deployed(
    broker: Broker,
    sandbox: Arc<Sandbox>,
    plugins: Plugins,
    local: Vec<Arc<Plugin>>,
    options: LoadOptions,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let changed = Arc::new(Notify::new());
    let listener = {
        let changed = changed.clone();
        tokio::spawn(broker::subscribe(
            broker.clone(),
            vec![broker::registry::CHANGED.to_string()],
            shutdown.clone(),
            move |_| changed.notify_one(),
        ))
    };
    loop {
        if let Err(err) =
            reconcile_once(&broker, &sandbox, &plugins, &local, &options, &metrics).await
        {
            tracing::debug!(%err, "could not read the plugin registry; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = changed.notified() => {}
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
        }
    }
    listener.abort();
}

/// Brings the set up to date with the registry once: a worker calls it
/// before taking its first task, so it never serves a local copy that a
/// deployed version replaces. An unreadable registry is logged and left to
/// the periodic pass of [`reconcile_deployed`].
pub async fn load_deployed(
    broker: &Broker,
    sandbox: &Arc<Sandbox>,
    plugins: &Plugins,
    local: &[Arc<Plugin>],
    options: &LoadOptions,
    metrics: &Metrics,
) {
    if let Err(err) = reconcile_once(broker, sandbox, plugins, local, options, metrics).await {
        tracing::warn!(%err, "could not read the plugin registry; serving local plugins until it can be read");
    }
}

async fn reconcile_once(
    broker: &Broker,
    sandbox: &Arc<Sandbox>,
    plugins: &Plugins,
    local: &[Arc<Plugin>],
    options: &LoadOptions,
    metrics: &Metrics,
) -> Result<(), broker::Error> {
    let deployed = broker.deployed_plugins().await?;
    let set = plugins.current();
    // The deployed plugins as loaded now, by name.
    let mut chosen: HashMap<String, Arc<Plugin>> = set
        .plugins()
        .iter()
        .filter(|plugin| plugin.deployed && deployed.contains_key(&plugin.manifest.name))
        .map(|plugin| (plugin.manifest.name.clone(), plugin.clone()))
        .collect();
    let failures = plugins.failures();
    let mut names: Vec<&String> = deployed.keys().collect();
    names.sort();
    for name in names {
        let digest = &deployed[name];
        if chosen
            .get(name)
            .is_some_and(|plugin| &plugin.digest == digest)
            || failures
                .get(name)
                .is_some_and(|failure| &failure.digest == digest)
        {
            continue;
        }
        match fetch_and_load(broker, sandbox, name, digest, options).await {
            Ok(plugin) => {
                chosen.insert(name.clone(), Arc::new(plugin));
            }
            Err(err) => {
                tracing::error!(plugin = name, digest, %err, "a deployed version was refused; the previous one keeps serving");
                plugins.record_failure(
                    name,
                    LoadFailure {
                        digest: digest.clone(),
                        error: err,
                    },
                );
            }
        }
    }
    let mut next: Vec<Arc<Plugin>> = local
        .iter()
        .filter(|plugin| !chosen.contains_key(&plugin.manifest.name))
        .cloned()
        .collect();
    let mut deployed_now: Vec<Arc<Plugin>> = chosen.into_values().collect();
    deployed_now.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
    next.extend(deployed_now);
    let unchanged = next.len() == set.plugins().len()
        && next
            .iter()
            .all(|plugin| set.plugins().iter().any(|old| Arc::ptr_eq(old, plugin)));
    if unchanged {
        return Ok(());
    }
    match PluginSet::from_shared(next) {
        Ok(new_set) => {
            for plugin in new_set.plugins() {
                if plugin.deployed && !set.plugins().iter().any(|old| Arc::ptr_eq(old, plugin)) {
                    plugins.clear_failure(&plugin.manifest.name);
                    metrics.inc(
                        "wasmq_plugin_reloads_total",
                        &[("plugin", &plugin.manifest.name)],
                        1.0,
                    );
                    tracing::info!(
                        plugin = plugin.display_name(),
                        digest = &plugin.digest[..12],
                        "deployed version now serving"
                    );
                }
            }
            plugins.replace(new_set);
        }
        Err(err) => {
            // A conflict of task types between plugins: keep what runs.
            tracing::error!(%err, "the deployed plugins conflict; keeping the current set");
            for (name, digest) in &deployed {
                if !set.plugins().iter().any(|plugin| &plugin.digest == digest) {
                    plugins.record_failure(
                        name,
                        LoadFailure {
                            digest: digest.clone(),
                            error: err.to_string(),
                        },
                    );
                }
            }
        }
    }
    Ok(())
}

async fn fetch_and_load(
    broker: &Broker,
    sandbox: &Arc<Sandbox>,
    name: &str,
    digest: &str,
    options: &LoadOptions,
) -> Result<Plugin, String> {
    let wasm = broker
        .plugin_blob(digest)
        .await
        .map_err(|err| err.to_string())?
        .ok_or_else(|| format!("the component {digest} is no longer stored"))?;
    let source = PathBuf::from(format!(
        "deployed:{name}@{}",
        &digest[..12.min(digest.len())]
    ));
    let (sandbox, options) = (sandbox.clone(), options.clone());
    let plugin =
        tokio::task::spawn_blocking(move || Plugin::load(&sandbox, &wasm, &source, &options))
            .await
            .map_err(|err| format!("loading panicked: {err}"))?
            .map_err(|err| err.to_string())?;
    if plugin.manifest.name != name {
        return Err(format!(
            "the component deployed as {name:?} calls itself {:?} in its manifest",
            plugin.manifest.name
        ));
    }
    Ok(Plugin {
        deployed: true,
        ..plugin
    })
}

/// Reloads a plugin when its file in `dir` changes (checked every 250 ms;
/// a file is reloaded once it has not changed for 250 ms), until
/// `shutdown`. A file that fails to load leaves the plugin it replaced
/// serving.
pub async fn watch_dir(
    dir: PathBuf,
    sandbox: Arc<Sandbox>,
    plugins: Plugins,
    options: LoadOptions,
    shutdown: CancellationToken,
) {
    let mut seen = modification_times(&dir);
    let mut settling: HashMap<PathBuf, SystemTime> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let now = modification_times(&dir);
        for (path, modified) in &now {
            if seen.get(path) == Some(modified) {
                settling.remove(path);
                continue;
            }
            // Debounce: a file being written changes again within 250 ms.
            if settling.insert(path.clone(), *modified) != Some(*modified) {
                continue;
            }
            settling.remove(path);
            seen.insert(path.clone(), *modified);
            reload_file(path, &sandbox, &plugins, &options).await;
        }
        seen.retain(|path, _| now.contains_key(path));
    }
}

async fn reload_file(
    path: &Path,
    sandbox: &Arc<Sandbox>,
    plugins: &Plugins,
    options: &LoadOptions,
) {
    let (file, sandbox, options) = (path.to_path_buf(), sandbox.clone(), options.clone());
    let loaded =
        tokio::task::spawn_blocking(move || Plugin::load_file(&sandbox, &file, &options)).await;
    let plugin = match loaded {
        Ok(Ok(plugin)) => Arc::new(plugin),
        Ok(Err(err)) => {
            tracing::error!(%err, "the changed plugin was refused; the previous one keeps serving");
            return;
        }
        Err(err) => {
            tracing::error!(%err, "reloading a plugin panicked");
            return;
        }
    };
    let set = plugins.current();
    // The new plugin replaces the one loaded from the same file, and any
    // of the same name.
    let mut next: Vec<Arc<Plugin>> = set
        .plugins()
        .iter()
        .filter(|old| old.source != plugin.source && old.manifest.name != plugin.manifest.name)
        .cloned()
        .collect();
    next.push(plugin.clone());
    match PluginSet::from_shared(next) {
        Ok(new_set) => {
            plugins.replace(new_set);
            tracing::info!(
                plugin = plugin.display_name(),
                file = %plugin.source.display(),
                task_types = plugin.manifest.task_types.join(","),
                "plugin reloaded"
            );
        }
        Err(err) => {
            tracing::error!(%err, "the changed plugin conflicts with another; keeping the current set");
        }
    }
}

fn modification_times(dir: &Path) -> HashMap<PathBuf, SystemTime> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .filter_map(|path| {
            let modified = std::fs::metadata(&path)
                .and_then(|meta| meta.modified())
                .ok()?;
            Some((path, modified))
        })
        .collect()
}
