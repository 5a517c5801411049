//! The worker: claims tasks from Redis and runs each in the sandbox of its
//! plugin (or a native handler), until its shutdown future completes.
//!
//! # Overview
//! [`Worker::builder`] takes a [`Broker`] and everything a worker may do
//! besides serving queues: plugins from a directory, the plugin registry
//! followed as it changes, native handlers, a metrics endpoint, a cron
//! scheduler replica. [`WorkerBuilder::run`] builds it and runs it; `wasmq
//! worker`, `wasmq dev`, the tests and embedding programs all run this one
//! worker.
//!
//! While it runs:
//! - the fetch loop (`fetch.rs`) leases as many tasks as there are free
//!   slots (`concurrency`), trying the queues in [`QueueSelection`] order;
//!   when every queue is empty it sleeps until a queue notification, the
//!   next due time, or `idle_poll`;
//! - each task takes one path (`task.rs`): resolved once to its handler,
//!   admitted (its plugin's standing, its concurrency limit), attempted,
//!   decided (`decide.rs`, a pure function) and settled through the acker
//!   (`acks.rs`), one `settle.lua` call per queue for whatever is ready;
//! - the lease keeper (`lease.rs`) extends the leases of running tasks and
//!   stops the ones whose lease was lost;
//! - housekeeping takes back tasks whose worker died (expired leases),
//!   trims completed tasks, unique locks and the archive, and writes the
//!   heartbeat.
//!
//! The path of a plugin's task, and with it its Wasm instance, runs on a
//! tokio runtime of its own, so that guests burning CPU can never starve
//! the loops above (a lease that is not renewed in time would hand a
//! healthy task to another worker), and so that its attempt starts and
//! ends without a hop between threads. A native handler is the embedding
//! program's own async code and runs with the rest of the worker. Plugins whose
//! attempts keep ending at their limits run on a third, at the lowest OS
//! priority, a few at a time, their other tasks parked (`probation`).
//!
//! On shutdown the worker stops fetching, lets running tasks finish for up
//! to `shutdown_timeout`, then stops the rest and puts them back at the head
//! of their queues: nothing is lost. If Redis is unreachable then, their
//! leases expire and another worker takes them back.

mod acks;
mod attempt;
mod backoff;
mod decide;
mod fetch;
mod handlers;
mod housekeeping;
mod lease;
mod native;
mod observe;
mod outage;
mod probation;
mod queues;
mod rate;
mod run;
mod services;
mod task;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use backoff::Backoff;
pub use native::{NativeHandler, NativeTask};
pub use probation::ProbationConfig;
pub use queues::QueueSelection;
pub use services::FollowUpCeilings;

use crate::broker::{self, ArchiveLimits, Broker, WaitReplicas};
use crate::ops::metrics::Metrics;
use crate::plugins::{LoadOptions, PluginError, PluginSet, Plugins};
use crate::sandbox::{LoadError, Sandbox, SandboxConfig};
use crate::scheduler::SchedulerConfig;
use native::NativeHandlers;

/// What a worker did, reported when it stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Attempts that completed.
    pub completed: u64,
    /// Attempts that failed (retried or archived).
    pub failed: u64,
    /// Tasks put back at the head of their queue without an attempt: on
    /// shutdown, or when Redis was out of reach as they were admitted.
    pub requeued: u64,
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Wasm engine could not be set up.
    #[error("setting up the Wasm engine: {0}")]
    Sandbox(#[source] LoadError),
    /// A plugin of the plugin directory does not load.
    #[error("loading plugins: {0}")]
    Plugins(#[source] PluginError),
    /// The metrics endpoint cannot listen on its address.
    #[error("cannot listen on {address} for metrics: {source}")]
    Metrics {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The schedule file does not exist.
    #[error("the schedule file {0} does not exist")]
    ScheduleFile(PathBuf),
    /// The worker's threads could not be started.
    #[error("starting the worker's threads: {0}")]
    Threads(#[source] std::io::Error),
    /// The trace exporter could not be set up (its endpoint is not an
    /// http:// URL, say).
    #[error("{0}")]
    Tracing(String),
}

/// How a worker serves its queues.
#[derive(Debug, Clone)]
struct Settings {
    queues: QueueSelection,
    concurrency: usize,
    lease: Duration,
    shutdown_timeout: Duration,
    backoff: Backoff,
    archive: ArchiveLimits,
    result_budget: u64,
    idle_poll: Duration,
    worker_id: String,
    sandbox_threads: usize,
    probation: ProbationConfig,
    follow_ups: FollowUpCeilings,
    wait_replicas: Option<WaitReplicas>,
}

/// Where the plugins of a directory come from, and what to do with one
/// that does not load.
#[derive(Debug, Clone)]
struct PluginDir {
    path: PathBuf,
    /// Skip (and log) a plugin that does not load instead of refusing to
    /// start; for a directory being rebuilt.
    skip_refused: bool,
    /// Reload a plugin whenever its file changes.
    watch: bool,
}

/// The metrics endpoint.
#[derive(Debug, Clone)]
struct MetricsEndpoint {
    address: SocketAddr,
    allowed_hosts: Vec<String>,
    allow_hint: String,
}

/// Builds a [`Worker`]: [`Worker::builder`], then options, then
/// [`WorkerBuilder::run`] (or [`WorkerBuilder::build`] and
/// [`Worker::run`]).
#[must_use = "a worker builder does nothing until it is run"]
pub struct WorkerBuilder {
    broker: Broker,
    settings: Settings,
    sandbox: SandboxConfig,
    load: LoadOptions,
    plugin_dir: Option<PluginDir>,
    follow_registry: bool,
    native: NativeHandlers,
    metrics: Option<MetricsEndpoint>,
    scheduler: Option<(SchedulerConfig, Option<PathBuf>)>,
    #[cfg(feature = "otel")]
    tracing: Option<crate::Tracing>,
}

/// A worker ready to run: its sandbox is set up and its plugin directory
/// loaded.
pub struct Worker {
    broker: Broker,
    settings: Settings,
    sandbox: Arc<Sandbox>,
    plugins: Plugins,
    load: LoadOptions,
    plugin_dir: Option<PluginDir>,
    follow_registry: bool,
    native: NativeHandlers,
    metrics: Option<MetricsEndpoint>,
    scheduler: Option<(SchedulerConfig, Option<PathBuf>)>,
    /// What it records, served at `/metrics` when an endpoint is set.
    recorded: Metrics,
    /// Where its spans go, when it traces.
    #[cfg(feature = "otel")]
    tracing: Option<crate::Tracing>,
}

impl Worker {
    /// A worker on `broker` serving the queue `default` with concurrency
    /// 10, 30 s leases, 10 s to shut down and polynomial backoff, with no
    /// plugins until some are given.
    pub fn builder(broker: Broker) -> WorkerBuilder {
        WorkerBuilder {
            broker,
            settings: Settings {
                queues: QueueSelection::single(broker::DEFAULT_QUEUE),
                concurrency: 10,
                lease: Duration::from_secs(30),
                shutdown_timeout: Duration::from_secs(10),
                backoff: Backoff::default(),
                archive: ArchiveLimits::default(),
                result_budget: broker::DEFAULT_RESULT_BUDGET,
                idle_poll: Duration::from_secs(30),
                worker_id: default_worker_id(),
                sandbox_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
                probation: ProbationConfig::default(),
                follow_ups: FollowUpCeilings::default(),
                wait_replicas: None,
            },
            sandbox: SandboxConfig::default(),
            load: LoadOptions::default(),
            plugin_dir: None,
            follow_registry: false,
            native: NativeHandlers::default(),
            metrics: None,
            scheduler: None,
            #[cfg(feature = "otel")]
            tracing: None,
        }
    }

    /// Every task type this worker handles now, sorted.
    pub fn task_types(&self) -> Vec<String> {
        let mut types: Vec<String> = self
            .plugins
            .current()
            .task_types()
            .into_iter()
            .chain(self.native.task_types())
            .map(str::to_string)
            .collect();
        types.sort();
        types.dedup();
        types
    }

    /// The metrics this worker records (its endpoint, when set, serves
    /// them), for a program that reads or serves them itself.
    pub fn metrics(&self) -> &Metrics {
        &self.recorded
    }

    /// This worker's name (the prefix of its lease tokens, and its name in
    /// `wasmq server ls`).
    pub fn id(&self) -> &str {
        &self.settings.worker_id
    }

    /// Runs the worker until `shutdown` completes, then shuts it down
    /// gracefully (see the module documentation) and says what it did.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Summary, Error> {
        run::run(self, shutdown).await
    }
}

impl WorkerBuilder {
    /// The queues to serve and their priorities (default: `default`).
    pub fn queues(mut self, queues: QueueSelection) -> Self {
        self.settings.queues = queues;
        self
    }

    /// How many tasks run at once (default 10; at least 1). The sandbox's
    /// instance pool is sized from it.
    pub fn concurrency(mut self, tasks: usize) -> Self {
        self.settings.concurrency = tasks.max(1);
        self
    }

    /// How long a lease lasts without renewal (default 30 s; at least
    /// 300 ms): a worker that dies holding tasks delays them by at most
    /// this long.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.settings.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// How long running tasks may go on after shutdown is requested before
    /// they are stopped and put back (default 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// The delay before retries (default [`Backoff::Polynomial`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.settings.backoff = backoff;
        self
    }

    /// Caps on each queue's archive (default 10,000 tasks, 90 days).
    pub fn archive(mut self, limits: ArchiveLimits) -> Self {
        self.settings.archive = limits;
        self
    }

    /// The most bytes of results each queue keeps stored (default 16 MiB;
    /// 0: no budget): past it, the completed tasks that expire soonest are
    /// forgotten early, so that results alone cannot fill Redis.
    pub fn result_budget(mut self, bytes: u64) -> Self {
        self.settings.result_budget = bytes;
        self
    }

    /// The longest an idle worker sleeps without a notification (default
    /// 30 s). Every change an idle worker must act on is published: this is
    /// a safety net, and an idle worker's only cost per queue.
    pub fn idle_poll(mut self, poll: Duration) -> Self {
        self.settings.idle_poll = poll;
        self
    }

    /// This worker's name (default `host:pid:random`).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.settings.worker_id = id.into();
        self
    }

    /// Threads that run Wasm instances (default: one per CPU), apart from
    /// the threads that talk to Redis, so that busy guests never delay
    /// lease renewals.
    pub fn sandbox_threads(mut self, threads: usize) -> Self {
        self.settings.sandbox_threads = threads.max(1);
        self
    }

    /// When a plugin whose attempts keep ending at their limits is moved to
    /// the background lane.
    pub fn probation(mut self, config: ProbationConfig) -> Self {
        self.settings.probation = config;
        self
    }

    /// Ceilings on the follow-up tasks plugins enqueue; manifests can only
    /// lower them.
    pub fn follow_up_ceilings(mut self, ceilings: FollowUpCeilings) -> Self {
        self.settings.follow_ups = ceilings;
        self
    }

    /// Records completions durably: each `settle.lua` call that completes
    /// tasks is followed by `WAIT` for `wait.replicas` replicas (within
    /// `wait.timeout`), so that a failover right after cannot undo a
    /// completion and run its task again (default: no waiting). Fewer
    /// replicas in time is logged: the completions are on the master
    /// all the same.
    pub fn wait_replicas(mut self, wait: WaitReplicas) -> Self {
        self.settings.wait_replicas = Some(wait);
        self
    }

    /// The sandbox's per-component caps and per-plugin instance share. Its
    /// instance count is always sized from the concurrency, and its memory
    /// ceiling from the plugin options.
    pub fn sandbox(mut self, config: SandboxConfig) -> Self {
        self.sandbox = config;
        self
    }

    /// How plugins are loaded: default limits, ceilings, the compiled
    /// component cache, compile bounds, environment access.
    pub fn plugin_options(mut self, options: LoadOptions) -> Self {
        self.load = options;
        self
    }

    /// Serves every `*.wasm` component of `dir`; the worker refuses to
    /// start if one does not load.
    pub fn plugins_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plugin_dir = Some(PluginDir {
            path: dir.into(),
            skip_refused: false,
            watch: false,
        });
        self
    }

    /// Serves the components of `dir` that load (the others are logged and
    /// skipped) and reloads each whenever its file changes: for a
    /// directory being rebuilt, as under `wasmq dev`.
    pub fn watch_plugins_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plugin_dir = Some(PluginDir {
            path: dir.into(),
            skip_refused: true,
            watch: true,
        });
        self
    }

    /// Also serves every plugin deployed with `wasmq plugin deploy`, and
    /// follows the registry as plugins are deployed, rolled back or
    /// removed (a deployed plugin replaces a local one of the same name).
    pub fn follow_registry(mut self) -> Self {
        self.follow_registry = true;
        self
    }

    /// Handles `task_type` with Rust code of this program (replacing an
    /// earlier handler of that type). Native handlers are trusted: no fuel
    /// or memory cap, but the task's timeout, deadline, retries and
    /// cancellation hold. A native handler wins over a plugin declaring the
    /// same type.
    pub fn native(mut self, task_type: impl Into<String>, handler: impl NativeHandler) -> Self {
        self.native.register(task_type, handler);
        self
    }

    /// Serves Prometheus metrics at `http://ADDRESS/metrics`, answering
    /// only requests that name that address (or `allowed_hosts`, for
    /// scrapers that use a DNS name).
    pub fn metrics(mut self, address: SocketAddr, allowed_hosts: Vec<String>) -> Self {
        self.metrics = Some(MetricsEndpoint {
            address,
            allowed_hosts,
            allow_hint: "allow the name in the worker's metrics options".into(),
        });
        self
    }

    /// What a refused `Host` at the metrics endpoint is told to do (the
    /// command line names its flag).
    pub fn metrics_allow_hint(mut self, hint: impl Into<String>) -> Self {
        if let Some(metrics) = &mut self.metrics {
            metrics.allow_hint = hint.into();
        }
        self
    }

    /// Runs a cron scheduler replica beside the worker, applying the
    /// entries of `schedule_file` (TOML) at start and whenever it changes.
    pub fn scheduler(mut self, config: SchedulerConfig, schedule_file: Option<PathBuf>) -> Self {
        self.scheduler = Some((config, schedule_file));
        self
    }

    /// Traces every attempt over OTLP (feature `otel`): a span per attempt,
    /// child of the context its task carries, with its sandbox run and each
    /// outgoing HTTP request under it (default: no tracing, and no span work
    /// on the task path). [`Tracing::from_env`](crate::Tracing::from_env)
    /// reads the standard `OTEL_EXPORTER_OTLP_*` variables.
    #[cfg(feature = "otel")]
    pub fn tracing(mut self, tracing: crate::Tracing) -> Self {
        self.tracing = Some(tracing);
        self
    }

    /// Sets up the sandbox and loads the plugin directory.
    pub fn build(self) -> Result<Worker, Error> {
        if let Some((_, Some(file))) = &self.scheduler
            && !file.is_file()
        {
            return Err(Error::ScheduleFile(file.clone()));
        }
        let instances = self.settings.concurrency + self.settings.probation.lane_capacity.max(1);
        let sandbox = Sandbox::new(SandboxConfig {
            max_instances: u32::try_from(instances).unwrap_or(u32::MAX),
            max_memory_bytes: self.load.ceilings.memory_bytes,
            ..self.sandbox
        })
        .map_err(Error::Sandbox)?;
        let set = match &self.plugin_dir {
            Some(dir) if dir.skip_refused => {
                let (set, skipped) = PluginSet::load_dir_skipping(&sandbox, &dir.path, &self.load)
                    .map_err(Error::Plugins)?;
                for err in skipped {
                    tracing::warn!("skipped: {err}");
                }
                set
            }
            Some(dir) => {
                PluginSet::load_dir(&sandbox, &dir.path, &self.load).map_err(Error::Plugins)?
            }
            None => PluginSet::default(),
        };
        for plugin in set.plugins() {
            tracing::info!(
                plugin = plugin.display_name(),
                task_types = plugin.manifest.task_types.join(","),
                file = %plugin.source.display(),
                "plugin loaded"
            );
        }
        Ok(Worker {
            broker: self.broker,
            settings: self.settings,
            sandbox: Arc::new(sandbox),
            plugins: Plugins::new(set),
            load: self.load,
            plugin_dir: self.plugin_dir,
            follow_registry: self.follow_registry,
            native: self.native,
            metrics: self.metrics,
            scheduler: self.scheduler,
            recorded: Metrics::new(),
            #[cfg(feature = "otel")]
            tracing: self.tracing,
        })
    }

    /// Builds the worker and runs it until `shutdown` completes (see
    /// [`Worker::run`]).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Summary, Error> {
        self.build()?.run(shutdown).await
    }
}

/// `host:pid:random`, unique per worker process.
pub(crate) fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let nonce = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{host}:{}:{nonce}", std::process::id())
}

/// `duration` without its part below a millisecond, for messages.
fn whole_ms(duration: Duration) -> Duration {
    Duration::from_millis(broker::millis(duration))
}
