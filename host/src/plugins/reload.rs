//! Changing a worker's plugins while it runs: following the registry
//! (deployed plugins) and, for `wasmq dev`, a plugin directory.
//!
//! A new version is fetched and compiled off the task path (each on a
//! blocking thread of its own, through the compiled-component cache, so
//! plugins load independently), checked like any plugin, and swapped in as
//! soon as it is ready. Tasks already running keep the version they started
//! with. A version that fails to load leaves the old one serving, and is
//! reported (in the worker's heartbeat) until a new version comes. A
//! version that conflicts with another plugin (a task type, or a name held
//! by a different plugin) is reported and left out while the conflict
//! lasts: the worker serves every other plugin, and takes it as soon as
//! the conflict is gone (e.g. after `wasmq plugin rm` of the other).

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

/// What a worker knows of one deployed version: being loaded, ready, or
/// refused for a reason of its own (it is not loaded again).
#[derive(Clone)]
pub(super) enum Load {
    /// Being fetched and compiled since then.
    Pending(SystemTime),
    Ready(Arc<Plugin>),
    Refused(String),
}

/// Deployed versions by (name, digest).
pub(super) type Loads = HashMap<(String, String), Load>;

/// Follows the registry until `shutdown`: serves every deployed plugin's
/// current version it can, on top of the plugins of the worker's own
/// directory (`local`); a deployed plugin replaces a local one of the same
/// plugin (same name and task types). Each version is loaded on its own
/// task, so a slow compile delays no other plugin.
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
    let context = Context {
        broker: &broker,
        sandbox: &sandbox,
        plugins: &plugins,
        local: &local,
        options: &options,
        metrics: &metrics,
        loaded: &changed,
    };
    loop {
        if let Err(err) = context.reconcile_once().await {
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

/// Brings the set up to date with the registry once, waiting for the
/// deployed versions to load: a worker calls it before taking its first
/// task, so it never serves a local copy that a deployed version replaces.
/// An unreadable registry is logged and left to the periodic pass of
/// [`reconcile_deployed`].
pub async fn load_deployed(
    broker: &Broker,
    sandbox: &Arc<Sandbox>,
    plugins: &Plugins,
    local: &[Arc<Plugin>],
    options: &LoadOptions,
    metrics: &Metrics,
) {
    let loaded = Arc::new(Notify::new());
    let context = Context {
        broker,
        sandbox,
        plugins,
        local,
        options,
        metrics,
        loaded: &loaded,
    };
    match context.reconcile_once().await {
        Ok(loading) => {
            for handle in loading {
                let _ = handle.await;
            }
            if let Err(err) = context.reconcile_once().await {
                tracing::warn!(%err, "could not read the plugin registry; serving local plugins until it can be read");
            }
        }
        Err(err) => {
            tracing::warn!(%err, "could not read the plugin registry; serving local plugins until it can be read")
        }
    }
}

struct Context<'a> {
    broker: &'a Broker,
    sandbox: &'a Arc<Sandbox>,
    plugins: &'a Plugins,
    local: &'a [Arc<Plugin>],
    options: &'a LoadOptions,
    metrics: &'a Metrics,
    /// Told when a version finishes loading.
    loaded: &'a Arc<Notify>,
}

impl Context<'_> {
    /// One pass: starts loading the deployed versions not yet known, then
    /// serves every ready one that fits beside the others and reports the
    /// rest. Returns the loads it started.
    async fn reconcile_once(&self) -> Result<Vec<tokio::task::JoinHandle<()>>, broker::Error> {
        let deployed = self.broker.deployed_plugins().await?;
        let set = self.plugins.current();
        let started = self.start_loads(&deployed);
        let loads = self
            .plugins
            .loads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let serving_deployed = |name: &str| {
            set.plugins()
                .iter()
                .find(|plugin| plugin.deployed && plugin.manifest.name == name)
                .cloned()
        };
        let mut failures: HashMap<String, LoadFailure> = HashMap::new();
        // The version each deployed plugin would serve: its current one if
        // ready, else the one serving now (while the new one loads, or
        // after it was refused).
        let mut candidates: Vec<Arc<Plugin>> = Vec::new();
        let mut names: Vec<&String> = deployed.keys().collect();
        names.sort();
        for name in names {
            let digest = &deployed[name];
            match loads.get(&(name.clone(), digest.clone())) {
                Some(Load::Ready(plugin)) => candidates.push(plugin.clone()),
                other => {
                    if let Some(Load::Refused(error)) = other {
                        failures.insert(
                            name.clone(),
                            LoadFailure {
                                digest: digest.clone(),
                                error: error.clone(),
                            },
                        );
                    }
                    if let Some(plugin) = serving_deployed(name) {
                        candidates.push(plugin);
                    }
                }
            }
        }
        // Plugins serving now go first: a newcomer that conflicts with one
        // of them is the one refused, so nothing that runs is displaced.
        candidates.sort_by_key(|plugin| {
            let serving = set.plugins().iter().any(|old| Arc::ptr_eq(old, plugin));
            (!serving, plugin.manifest.name.clone())
        });
        let mut next: Vec<Arc<Plugin>> = self.local.to_vec();
        for candidate in candidates {
            match fit(&next, &candidate) {
                Ok(replaced) => {
                    if let Some(index) = replaced {
                        next.remove(index);
                    }
                    next.push(candidate);
                }
                Err(error) => {
                    failures.insert(
                        candidate.manifest.name.clone(),
                        LoadFailure {
                            digest: candidate.digest.clone(),
                            error,
                        },
                    );
                }
            }
        }
        let before = self.plugins.failures();
        for (name, failure) in &failures {
            if before.get(name) != Some(failure) {
                tracing::error!(
                    plugin = name,
                    digest = failure.digest,
                    error = failure.error,
                    "a deployed version is refused on this worker; the others keep serving"
                );
            }
        }
        self.plugins.set_failures(failures);
        let unchanged = next.len() == set.plugins().len()
            && next
                .iter()
                .all(|plugin| set.plugins().iter().any(|old| Arc::ptr_eq(old, plugin)));
        if unchanged {
            return Ok(started);
        }
        match PluginSet::from_shared(next) {
            Ok(new_set) => {
                for plugin in new_set.plugins() {
                    if plugin.deployed && !set.plugins().iter().any(|old| Arc::ptr_eq(old, plugin))
                    {
                        self.metrics.plugin_reloaded(&plugin.manifest.name);
                        tracing::info!(
                            plugin = plugin.display_name(),
                            digest = super::registry::short_digest(&plugin.digest),
                            "deployed version now serving"
                        );
                    }
                }
                self.plugins.replace(new_set);
            }
            // `fit` admitted each plugin, so the set cannot conflict.
            Err(err) => tracing::error!(%err, "the plugins conflict; keeping the current set"),
        }
        Ok(started)
    }

    /// Starts loading, each on its own task, the deployed versions neither
    /// serving nor known; forgets versions no longer deployed.
    fn start_loads(&self, deployed: &HashMap<String, String>) -> Vec<tokio::task::JoinHandle<()>> {
        let set = self.plugins.current();
        let mut loads = self.plugins.loads.lock().unwrap_or_else(|e| e.into_inner());
        loads.retain(|(name, digest), _| deployed.get(name) == Some(digest));
        let mut started = Vec::new();
        for (name, digest) in deployed {
            let key = (name.clone(), digest.clone());
            if let Some(plugin) = set.plugins().iter().find(|plugin| {
                plugin.deployed && &plugin.manifest.name == name && &plugin.digest == digest
            }) {
                loads
                    .entry(key)
                    .or_insert_with(|| Load::Ready(plugin.clone()));
                continue;
            }
            if loads.contains_key(&key) {
                continue;
            }
            loads.insert(key.clone(), Load::Pending(SystemTime::now()));
            // The heartbeat says at once that this worker is compiling it.
            self.plugins.changed.notify_one();
            let (broker, sandbox, options) = (
                self.broker.clone(),
                self.sandbox.clone(),
                self.options.clone(),
            );
            let (all, loaded) = (self.plugins.loads.clone(), self.loaded.clone());
            started.push(tokio::spawn(async move {
                let outcome = fetch_and_load(&broker, &sandbox, &key.0, &key.1, &options).await;
                let mut loads = all.lock().unwrap_or_else(|e| e.into_inner());
                match outcome {
                    Ok(plugin) => {
                        loads.insert(key, Load::Ready(Arc::new(plugin)));
                    }
                    Err(Fetch::Refused(error)) => {
                        loads.insert(key, Load::Refused(error));
                    }
                    Err(Fetch::Unreadable(error)) => {
                        tracing::warn!(plugin = key.0, %error, "could not fetch a deployed version; retrying");
                        loads.remove(&key);
                    }
                }
                drop(loads);
                loaded.notify_one();
            }));
        }
        started
    }
}

/// Whether `plugin` fits beside `set`: `Ok(Some(i))` when it replaces
/// `set[i]`, a local version of the same plugin; an error naming the
/// plugin that holds its name or one of its task types.
fn fit(set: &[Arc<Plugin>], plugin: &Plugin) -> Result<Option<usize>, String> {
    let mut replaced = None;
    for (index, other) in set.iter().enumerate() {
        if other.manifest.name == plugin.manifest.name {
            if !other.deployed && other.same_plugin(plugin) {
                replaced = Some(index);
                continue;
            }
            return Err(format!(
                "the name {:?} is held on this worker by another plugin, {}; this one has task types {}: a name belongs to one plugin (its name and task types)",
                plugin.manifest.name,
                other.described(),
                plugin.manifest.type_set().join(", ")
            ));
        }
    }
    for (index, other) in set.iter().enumerate() {
        if Some(index) == replaced {
            continue;
        }
        if let Some(task_type) = plugin
            .manifest
            .task_types
            .iter()
            .find(|task_type| other.manifest.task_types.contains(task_type))
        {
            return Err(format!(
                "task type {task_type:?} is already handled on this worker by {}: remove one of them, or give them different task types",
                other.described()
            ));
        }
    }
    Ok(replaced)
}

/// Why a deployed version was not loaded.
enum Fetch {
    /// The version itself was refused: not tried again.
    Refused(String),
    /// Redis could not be read: tried again on the next pass.
    Unreadable(String),
}

async fn fetch_and_load(
    broker: &Broker,
    sandbox: &Arc<Sandbox>,
    name: &str,
    digest: &str,
    options: &LoadOptions,
) -> Result<Plugin, Fetch> {
    let wasm = broker
        .plugin_blob(digest)
        .await
        .map_err(|err| Fetch::Unreadable(err.to_string()))?
        // Tried again on the next pass, not remembered as refused: the copy
        // read may have just been collected while the same component was
        // deployed again under a new copy.
        .ok_or_else(|| Fetch::Unreadable(format!("the component {digest} is not stored")))?;
    let source = PathBuf::from(format!(
        "deployed:{name}@{}",
        super::registry::short_digest(digest)
    ));
    let (sandbox, options) = (sandbox.clone(), options.clone());
    let plugin =
        tokio::task::spawn_blocking(move || Plugin::load(&sandbox, &wasm, &source, &options))
            .await
            .map_err(|err| Fetch::Refused(format!("loading panicked: {err}")))?
            .map_err(|err| Fetch::Refused(err.to_string()))?;
    if plugin.manifest.name != name {
        return Err(Fetch::Refused(format!(
            "the component deployed as {name:?} calls itself {:?} in its manifest",
            plugin.manifest.name
        )));
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
