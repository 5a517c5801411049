//! Plugins: loading components from a directory, reading their manifests,
//! and routing each task type to the plugin that handles it.
//!
//! # Overview
//! A [`Plugin`] is a prepared component with its [`Manifest`], its limits
//! and the digest of its bytes. A [`PluginSet`] maps task types to plugins
//! and refuses two plugins claiming the same type. [`Plugins`] is the
//! worker's current set, swapped atomically when plugins change; a task
//! keeps the plugin it started with.

mod manifest;
pub(crate) mod registry;
mod reload;
pub(crate) mod sections;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

pub use manifest::{
    CapabilitySpec, Ceilings, EnqueueSpec, EnvAccess, HttpSpec, KvSpec, LimitSpec, Manifest,
    SECTION as MANIFEST_SECTION,
};
pub(crate) use reload::{load_deployed, reconcile_deployed, watch_dir};
pub use sections::{BuildInfo, Language, build_info};

use crate::sandbox::{CompileBounds, ComponentCache, Grants, Limits, LoadError, Prepared, Sandbox};

/// How a worker loads plugins: the limits a plugin gets when its manifest
/// sets none, the most it may ask for, and where compiled components are
/// cached.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Limits for plugins whose manifests leave them out. A Python or
    /// JavaScript plugin (its runtime is in its component) gets at least
    /// 256 MiB of memory whatever this says, within `ceilings`.
    pub defaults: Limits,
    /// The most a manifest may ask for.
    pub ceilings: Ceilings,
    /// The largest component accepted, bytes.
    pub max_component_bytes: usize,
    /// The compiled-component cache, if any.
    pub cache: Option<ComponentCache>,
    /// How much compile work a component may cost.
    pub compile: CompileBounds,
    /// Which plugin may read which environment value and secret; `None`
    /// (for `wasmq plugin deploy` and `inspect`, which run no task) checks
    /// nothing.
    pub access: Option<EnvAccess>,
}

/// The least memory a plugin written in a language with a runtime in its
/// component (Python, JavaScript) gets when its manifest sets none: its
/// instance starts at 10 to 15 MiB, and its objects take several times
/// what Rust values do.
pub(crate) const RUNTIME_MEMORY_DEFAULT: u64 = 256 * 1024 * 1024;

impl LoadOptions {
    /// The limits a plugin in `language` gets where its manifest sets
    /// none: the worker's defaults, with at least
    /// [`RUNTIME_MEMORY_DEFAULT`] of memory for Python and JavaScript
    /// (never above the worker's ceiling).
    pub(crate) fn defaults_for(&self, language: Option<Language>) -> Limits {
        let mut limits = self.defaults.clone();
        if matches!(language, Some(Language::Python | Language::JavaScript)) {
            limits.memory_bytes = limits
                .memory_bytes
                .max(RUNTIME_MEMORY_DEFAULT)
                .min(self.ceilings.memory_bytes);
        }
        limits
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            defaults: Limits::default(),
            ceilings: Ceilings::default(),
            max_component_bytes: 64 * 1024 * 1024,
            cache: None,
            compile: CompileBounds::default(),
            access: None,
        }
    }
}

/// Why a plugin cannot be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The component is not loadable.
    #[error("plugin {path}: {source}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// The manifest is missing or wrong.
    #[error("{0}")]
    Manifest(String),
    /// The manifest of a specific file is missing or wrong.
    #[error("plugin {path}: {message}")]
    BadManifest {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The manifest names an environment value or a secret the operator
    /// has not allowed this plugin to read.
    #[error(
        "plugin {plugin:?} asks for the {} {name:?}, which this worker does not allow it to read: allow it ({plugin}={name}), or remove it from the plugin's manifest",
        if *secret { "secret" } else { "environment value" }
    )]
    NotAllowed {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        plugin: String,
        /// Whether it is a secret (else an environment value).
        secret: bool,
        /// The value's name.
        name: String,
    },
    /// Two plugins claim the same task type.
    #[error(
        "task type {task_type:?} is claimed by two plugins, {first} and {second}: remove one, or give them different task types"
    )]
    Conflict {
        /// The task type.
        task_type: String,
        /// The plugin that claimed it first.
        first: String,
        /// The plugin that claimed it again.
        second: String,
    },
    /// Two different plugins use one name.
    #[error(
        "two different plugins are named {name:?}: {first} and {second}; a name belongs to one plugin (its name and task types): rename one, or remove it"
    )]
    NameHeld {
        /// The name.
        name: String,
        /// The plugin that holds it.
        first: String,
        /// The one that claims it too.
        second: String,
    },
    /// The plugin directory is missing or empty.
    #[error("{0}")]
    Directory(String),
}

/// A loaded plugin, ready to run tasks.
pub struct Plugin {
    /// What the plugin declares about itself.
    pub manifest: Manifest,
    /// The linked component.
    pub prepared: Prepared,
    /// The budget each of its tasks gets.
    pub limits: Limits,
    /// What it may do beyond computing.
    pub grants: Arc<Grants>,
    /// SHA-256 of the component's bytes, hex.
    pub digest: String,
    /// Where it was loaded from (a file, or `deployed:<name>@<digest>`).
    pub source: PathBuf,
    /// Whether it came from the registry (`wasmq plugin deploy`) rather
    /// than from the worker's plugin directory.
    pub deployed: bool,
}

impl Plugin {
    /// Checks component bytes (size, manifest, world, imports against the
    /// grants) and compiles and links them into a plugin. Environment
    /// values and secrets the manifest names come from this process's
    /// `WASMQ_PLUGIN_ENV_<NAME>` and `WASMQ_PLUGIN_SECRET_<NAME>`.
    pub fn load(
        sandbox: &Sandbox,
        wasm: &[u8],
        source: &Path,
        options: &LoadOptions,
    ) -> Result<Plugin, PluginError> {
        let load_error = |source_error: LoadError| PluginError::Load {
            path: source.to_path_buf(),
            source: source_error,
        };
        let bad_manifest = |err: PluginError| PluginError::BadManifest {
            path: source.to_path_buf(),
            message: err.to_string(),
        };
        if wasm.len() > options.max_component_bytes {
            return Err(load_error(LoadError::TooLarge {
                size: wasm.len(),
                limit: options.max_component_bytes,
            }));
        }
        // Refused before a compile (most of a minute for a Python or
        // JavaScript component): an import the manifest does not grant.
        if let Ok(manifest) = Manifest::from_component(wasm) {
            let caps = &manifest.capabilities;
            let granted = crate::sandbox::Granted {
                http: caps.http.is_some(),
                kv: caps.kv.is_some(),
                enqueue: caps.enqueue.is_some(),
            };
            sandbox
                .check_import_names(wasm, granted)
                .map_err(load_error)?;
        }
        let component = sandbox
            .compile_bounded(wasm, options.cache.as_ref(), &options.compile)
            .map_err(load_error)?;
        sandbox.check_world(&component).map_err(load_error)?;
        let manifest = Manifest::from_component(wasm).map_err(bad_manifest)?;
        if let Some(access) = &options.access
            && let Some((secret, name)) = manifest.denied_access(access)
        {
            return Err(PluginError::NotAllowed {
                path: source.to_path_buf(),
                plugin: manifest.name.clone(),
                secret,
                name,
            });
        }
        let language = sections::build_info(wasm).map(|info| info.language);
        let limits = manifest
            .limits(&options.defaults_for(language), &options.ceilings)
            .map_err(bad_manifest)?;
        sandbox.check_footprint(wasm, &limits).map_err(load_error)?;
        let grants = manifest
            .grants(|name| std::env::var(name).ok())
            .map_err(bad_manifest)?;
        let prepared = sandbox.prepare(&component, &grants).map_err(load_error)?;
        Ok(Plugin {
            manifest,
            prepared,
            limits,
            grants: Arc::new(grants),
            digest: hex::encode(Sha256::digest(wasm)),
            source: source.to_path_buf(),
            deployed: false,
        })
    }

    /// Reads and loads a component file.
    pub fn load_file(
        sandbox: &Sandbox,
        path: &Path,
        options: &LoadOptions,
    ) -> Result<Plugin, PluginError> {
        let wasm = std::fs::read(path).map_err(|err| PluginError::Read {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?;
        Plugin::load(sandbox, &wasm, path, options)
    }

    /// `name@version`, for messages.
    pub fn display_name(&self) -> String {
        format!("{}@{}", self.manifest.name, self.manifest.version)
    }

    /// `name@version (source, task types a, b)`, for messages about names.
    pub fn described(&self) -> String {
        format!(
            "{} ({}, task types {})",
            self.display_name(),
            self.source.display(),
            self.manifest.type_set().join(", ")
        )
    }

    /// Whether `other` is a version of this plugin: the same name and the
    /// same set of task types.
    pub fn same_plugin(&self, other: &Plugin) -> bool {
        self.manifest.name == other.manifest.name
            && self.manifest.type_set() == other.manifest.type_set()
    }
}

/// The plugins a worker serves, by task type.
#[derive(Default)]
pub(crate) struct PluginSet {
    plugins: Vec<Arc<Plugin>>,
    by_type: HashMap<String, Arc<Plugin>>,
}

impl PluginSet {
    /// A set of the given plugins; fails if two claim one task type.
    pub fn new(plugins: Vec<Plugin>) -> Result<PluginSet, PluginError> {
        PluginSet::from_shared(plugins.into_iter().map(Arc::new).collect())
    }

    /// A set of plugins already shared (kept by running tasks); fails if two
    /// claim one task type or one name.
    pub fn from_shared(plugins: Vec<Arc<Plugin>>) -> Result<PluginSet, PluginError> {
        let mut set = PluginSet::default();
        for plugin in plugins {
            if let Some(first) = set
                .plugins
                .iter()
                .find(|other| other.manifest.name == plugin.manifest.name)
            {
                return Err(PluginError::NameHeld {
                    name: plugin.manifest.name.clone(),
                    first: first.described(),
                    second: plugin.described(),
                });
            }
            for task_type in &plugin.manifest.task_types {
                if let Some(first) = set.by_type.get(task_type) {
                    return Err(PluginError::Conflict {
                        task_type: task_type.clone(),
                        first: format!("{} ({})", first.display_name(), first.source.display()),
                        second: format!("{} ({})", plugin.display_name(), plugin.source.display()),
                    });
                }
                set.by_type.insert(task_type.clone(), plugin.clone());
            }
            set.plugins.push(plugin);
        }
        Ok(set)
    }

    /// Loads every `*.wasm` file of a directory. Any file that fails stops
    /// the load: a worker should not start with half its plugins.
    pub fn load_dir(
        sandbox: &Sandbox,
        dir: &Path,
        options: &LoadOptions,
    ) -> Result<PluginSet, PluginError> {
        let plugins = wasm_files(dir)?
            .iter()
            .map(|path| Plugin::load_file(sandbox, path, options))
            .collect::<Result<Vec<_>, _>>()?;
        PluginSet::new(plugins)
    }

    /// Loads what it can of a directory (for `wasmq dev`, whose directory
    /// is being rebuilt): a file that fails to load, or that claims a task
    /// type an earlier file took, is skipped and returned with the reason.
    pub fn load_dir_skipping(
        sandbox: &Sandbox,
        dir: &Path,
        options: &LoadOptions,
    ) -> Result<(PluginSet, Vec<PluginError>), PluginError> {
        let mut set = PluginSet::default();
        let mut skipped = Vec::new();
        for path in wasm_files(dir)? {
            let plugin = match Plugin::load_file(sandbox, &path, options) {
                Ok(plugin) => Arc::new(plugin),
                Err(err) => {
                    skipped.push(err);
                    continue;
                }
            };
            let mut next = set.plugins.clone();
            next.push(plugin);
            match PluginSet::from_shared(next) {
                Ok(bigger) => set = bigger,
                Err(err) => skipped.push(err),
            }
        }
        Ok((set, skipped))
    }

    /// The plugin that handles `task_type`.
    pub fn for_type(&self, task_type: &str) -> Option<&Arc<Plugin>> {
        self.by_type.get(task_type)
    }

    /// Every plugin, in load order.
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    /// Every task type served, sorted.
    pub fn task_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.by_type.keys().map(String::as_str).collect();
        types.sort();
        types
    }
}

/// A plugin version a worker could not load, reported in its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadFailure {
    /// The component's SHA-256.
    pub digest: String,
    /// Why it was refused.
    pub error: String,
}

/// The worker's current plugin set, replaced as a whole when plugins change,
/// with the plugin versions it failed to load.
#[derive(Clone, Default)]
pub(crate) struct Plugins {
    current: Arc<RwLock<Arc<PluginSet>>>,
    failures: Arc<std::sync::Mutex<HashMap<String, LoadFailure>>>,
    changed: Arc<tokio::sync::Notify>,
    /// Deployed versions being loaded, loaded, or refused, by (name, digest).
    loads: Arc<std::sync::Mutex<reload::Loads>>,
}

impl Plugins {
    /// Starts with `set`.
    pub fn new(set: PluginSet) -> Self {
        Plugins {
            current: Arc::new(RwLock::new(Arc::new(set))),
            ..Plugins::default()
        }
    }

    /// The set in force now. Callers keep the snapshot for a whole task.
    pub fn current(&self) -> Arc<PluginSet> {
        // Readers and writers only clone or replace an Arc: a panic cannot
        // leave the lock's value half-written.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the set; tasks already running keep the one they started with.
    pub fn replace(&self, set: PluginSet) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        self.changed.notify_one();
    }

    /// Replaces every recorded failure at once; tells the heartbeat if they
    /// changed.
    pub fn set_failures(&self, failures: HashMap<String, LoadFailure>) {
        let mut current = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if *current != failures {
            *current = failures;
            drop(current);
            self.changed.notify_one();
        }
    }

    /// The versions this worker could not load, by plugin name.
    pub fn failures(&self) -> HashMap<String, LoadFailure> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The deployed versions being fetched and compiled now: (name, digest,
    /// since when).
    pub fn loading(&self) -> Vec<(String, String, std::time::SystemTime)> {
        let loads = self.loads.lock().unwrap_or_else(|e| e.into_inner());
        let mut loading: Vec<_> = loads
            .iter()
            .filter_map(|((name, digest), load)| match load {
                reload::Load::Pending(since) => Some((name.clone(), digest.clone(), *since)),
                _ => None,
            })
            .collect();
        loading.sort();
        loading
    }

    /// Completes when the set is replaced or a failure is recorded.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

/// The `*.wasm` files of a plugin directory, sorted; an error if there are
/// none.
fn wasm_files(dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
    let entries = std::fs::read_dir(dir).map_err(|err| {
        PluginError::Directory(format!(
            "cannot read the plugin directory {}: {err}; give a directory of .wasm components",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm") && path.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(PluginError::Directory(format!(
            "no .wasm plugins in {}: build some (cargo build --release --target wasm32-wasip2) and copy them there",
            dir.display()
        )));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_with_a_language_runtime_get_more_memory_by_default() {
        let options = LoadOptions::default();
        let worker = options.defaults.memory_bytes;
        assert_eq!(
            options.defaults_for(Some(Language::Rust)).memory_bytes,
            worker
        );
        assert_eq!(options.defaults_for(None).memory_bytes, worker);
        for language in [Language::Python, Language::JavaScript] {
            assert_eq!(
                options.defaults_for(Some(language)).memory_bytes,
                RUNTIME_MEMORY_DEFAULT.max(worker)
            );
        }
        // Never above the worker's ceiling.
        let tight = LoadOptions {
            ceilings: Ceilings {
                memory_bytes: 64 << 20,
                ..Ceilings::default()
            },
            defaults: Limits {
                memory_bytes: 32 << 20,
                ..Limits::default()
            },
            ..LoadOptions::default()
        };
        assert_eq!(
            tight.defaults_for(Some(Language::Python)).memory_bytes,
            64 << 20
        );
    }
}
