//! Who handles a task type: a native handler of the embedding program, or
//! the plugin that declares it in the current plugin set. A task is
//! resolved once, when it is leased, and keeps that handler (and that
//! plugin version) for its whole path: admission, attempt and statistics.

use std::sync::Arc;

use super::native::{NativeHandler, NativeHandlers};
use crate::plugins::{Plugin, Plugins};

/// The handler a task was resolved to.
#[derive(Clone)]
pub(crate) enum Handler {
    /// Rust code of the embedding program: trusted, never on probation.
    Native(Arc<dyn NativeHandler>),
    /// The plugin (one version of it) that declares the task's type.
    Plugin(Arc<Plugin>),
    /// Nothing handles the type here: the attempt fails as `no-handler`
    /// with this message.
    Missing(String),
}

/// The task types a worker handles: native handlers first, then the
/// current plugin set.
#[derive(Clone)]
pub(crate) struct Handlers {
    /// The plugins in force, swapped whole on deploys.
    pub plugins: Plugins,
    /// Task types handled in Rust.
    pub native: NativeHandlers,
}

impl Handlers {
    /// Who handles `task_type` now.
    pub fn resolve(&self, task_type: &str) -> Handler {
        if let Some(handler) = self.native.get(task_type) {
            return Handler::Native(handler.clone());
        }
        let plugins = self.plugins.current();
        if let Some(plugin) = plugins.for_type(task_type) {
            return Handler::Plugin(plugin.clone());
        }
        let mut served = plugins.task_types();
        served.extend(self.native.task_types());
        served.sort_unstable();
        Handler::Missing(format!(
            "no plugin handles task type {task_type:?} (this worker serves: {}); deploy a plugin for it, and the retry will pick it up",
            if served.is_empty() {
                "nothing".to_string()
            } else {
                served.join(", ")
            }
        ))
    }

    /// Whether anything here handles `task_type`.
    pub fn handles(&self, task_type: &str) -> bool {
        self.native.get(task_type).is_some() || self.plugins.current().for_type(task_type).is_some()
    }
}
