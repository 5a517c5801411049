//! `wasmq worker`: serve queues with the plugins of a directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use wasmq::broker::{ArchiveLimits, Broker};
use wasmq::plugins::{PluginSet, Plugins};
use wasmq::sandbox::{Rate, Sandbox, SandboxConfig};
use wasmq::worker::{
    self, Backoff, FollowUpCeilings, ProbationConfig, QueueSelection, WorkerConfig,
};

use super::cron::SchedulingArgs;
use super::parse::{self, Failure};
use super::{DurabilityArgs, LimitArgs, RedisArgs};

/// A sandbox with the plugins of the worker's directory.
pub struct Loaded {
    /// The sandbox.
    pub sandbox: Arc<Sandbox>,
    /// The plugins in force (the directory's, then the registry's too).
    pub plugins: Plugins,
    /// The directory's plugins, as loaded at start.
    pub local: Vec<Arc<wasmq::plugins::Plugin>>,
    /// How plugins are loaded.
    pub options: wasmq::plugins::LoadOptions,
}

/// Arguments of `wasmq worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    // --wait-replicas: each completion is recorded only once N replicas
    // have it, so a failover right after cannot undo it and run the task
    // again; a shortfall past --wait-timeout is logged.
    #[command(flatten)]
    pub durability: DurabilityArgs,
    /// A directory of plugins: every `*.wasm` component in it is loaded.
    /// Optional: a worker also serves every plugin deployed with `wasmq
    /// plugin deploy` (a deployed plugin replaces a local one of the same
    /// name).
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Exit with an error if Redis is unreachable at start, instead of
    /// retrying until it answers.
    #[arg(long = "fail-fast")]
    pub fail_fast: bool,
}

/// How a worker serves its queues (shared by `worker` and `dev`).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Tasks run at once.
    #[arg(long, short = 'c', default_value_t = 10, value_name = "N")]
    pub concurrency: usize,
    /// Queues to serve, with weights: e.g. `critical=6,default=3,low=1`.
    /// Each fetch tries the queues in a random order weighted by these
    /// numbers (see --strict).
    #[arg(long, default_value = "default", value_name = "NAME[=WEIGHT],...")]
    pub queues: String,
    /// Strict priority: serve a queue only while every queue of higher
    /// weight is empty.
    #[arg(long)]
    pub strict: bool,
    /// How long a task's lease lasts without renewal: a crashed worker's
    /// tasks are taken back after at most this long.
    #[arg(long, default_value = "30s", value_parser = parse::duration, value_name = "DURATION")]
    pub lease: Duration,
    /// On SIGINT/SIGTERM, how long running tasks may finish before they are
    /// stopped and put back on their queues.
    #[arg(long = "shutdown-timeout", default_value = "10s", value_parser = parse::duration, value_name = "DURATION")]
    pub shutdown_timeout: Duration,
    /// Delay before the first retry, doubling each time (capped at 1h).
    /// Default: (n^4 + 15 + up to 30(n+1)) seconds after the n-th failure.
    #[arg(long = "retry-delay", value_parser = parse::duration, value_name = "DURATION")]
    pub retry_delay: Option<Duration>,
    /// At most this many archived tasks are kept per queue (oldest dropped
    /// first).
    #[arg(long = "archive-max-size", default_value_t = 10_000, value_name = "N")]
    pub archive_max_size: u64,
    /// Archived tasks older than this are dropped.
    #[arg(long = "archive-max-age", default_value = "90days", value_parser = parse::duration, value_name = "DURATION")]
    pub archive_max_age: Duration,
    /// The most bytes of completed tasks' results each queue keeps stored
    /// (results are kept for their task's retention): past it, the
    /// completed tasks that expire soonest are forgotten early, and a
    /// result larger than the whole budget is not stored (its task is kept
    /// as completed, with a note), so that results alone cannot fill Redis.
    /// 0: no budget.
    #[arg(long = "result-budget", default_value = "16MiB", value_parser = parse::bytes, value_name = "SIZE")]
    pub result_budget: u64,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Let plugin PLUGIN read the worker's WASMQ_PLUGIN_ENV_<NAME> (seen as
    /// NAME), e.g. `--allow-env relay=REGION`; several names may be given
    /// as NAME,NAME, and the flag repeated. A plugin whose manifest asks
    /// for an environment value it is not allowed is refused at load.
    #[arg(long = "allow-env", value_name = "PLUGIN=NAME")]
    pub allow_env: Vec<String>,
    /// Let plugin PLUGIN read the worker's WASMQ_PLUGIN_SECRET_<NAME> (seen
    /// as NAME), e.g. `--allow-secret relay=TOKEN`; as --allow-env. A
    /// plugin whose manifest asks for a secret it is not allowed is refused
    /// at load, so no plugin reads another's secrets by naming them.
    #[arg(long = "allow-secret", value_name = "PLUGIN=NAME")]
    pub allow_secret: Vec<String>,
    /// Put a plugin on probation after this many attempts in a row ended at
    /// a limit (fuel, memory, time, stack, result or log size, a capability
    /// not granted, a trap or a panic): its tasks then run in a background
    /// lane at the lowest OS priority, where they take little from other
    /// plugins, until one of its attempts succeeds or a new version is
    /// deployed. Until a plugin's last attempt on this worker ended within
    /// its limits (a plugin not run here yet, or one that just struck), at
    /// most as many of its attempts run at once as it has strikes left; its
    /// other tasks wait in their slots for the outcome, or, once none of
    /// those attempts has ended for 100 ms, go back to their queue (no
    /// attempt counted) for as long as they have been running, up to the
    /// plugin's timeout. 0 turns probation (and this) off.
    #[arg(long = "probation-strikes", default_value_t = ProbationConfig::default().strikes, value_name = "N")]
    pub probation_strikes: u32,
    /// Tasks of plugins on probation that run at once, beside (not within)
    /// --concurrency.
    #[arg(long = "probation-lane", default_value_t = ProbationConfig::default().lane_capacity, value_name = "N")]
    pub probation_lane: usize,
    /// Tasks of plugins on probation this worker holds leased while they
    /// wait for the lane (they take no --concurrency slot, about 3 KB of
    /// memory each plus their payload, 64 MiB of payloads at most; their
    /// leases are renewed; on shutdown they go back to their queues).
    #[arg(long = "probation-park", default_value_t = ProbationConfig::default().park_capacity, value_name = "N")]
    pub probation_park: usize,
    /// How long a task of a plugin on probation goes back to its queue when
    /// the park is full (no attempt is counted); while it stays full, each
    /// further park-full of tasks waits this much longer.
    #[arg(long = "probation-postpone", default_value = "5s", value_parser = parse::duration, value_name = "DURATION")]
    pub probation_postpone: Duration,
    /// Instances of one plugin that run at once (default: as many as
    /// --concurrency, so a plugin alone may use the whole worker). A task of
    /// a plugin at its share goes back to its queue for 500 ms, without
    /// counting an attempt.
    #[arg(long = "max-instances-per-plugin", value_name = "N")]
    pub max_instances_per_plugin: Option<u32>,
    /// Core module instances one plugin instance may create, all nested
    /// components together; a component declaring more is refused at load.
    #[arg(long = "max-component-instances", default_value_t = SandboxConfig::default().max_core_instances_per_component, value_name = "N")]
    pub max_component_instances: u32,
    /// Linear memories one plugin instance may define, all its core
    /// instances together (their bytes share the instance's memory cap); a
    /// component declaring more is refused at load.
    #[arg(long = "max-component-memories", default_value_t = SandboxConfig::default().max_memories_per_component, value_name = "N")]
    pub max_component_memories: u32,
    /// Tables one plugin instance may define, all its core instances
    /// together (their elements count, 8 bytes each, against the memory
    /// cap); a component declaring more is refused at load.
    #[arg(long = "max-component-tables", default_value_t = SandboxConfig::default().max_tables_per_component, value_name = "N")]
    pub max_component_tables: u32,
    /// The deepest generation of follow-up tasks below the task a producer
    /// enqueued: an enqueue deeper is refused and its attempt fails as
    /// `denied`. A manifest's `capabilities.enqueue.max_depth` can only
    /// lower it.
    #[arg(long = "max-follow-up-depth", default_value_t = FollowUpCeilings::default().max_depth, value_name = "N")]
    pub max_follow_up_depth: u32,
    /// Follow-ups one root task may have in all, across generations,
    /// queues and workers (counted in Redis); past it, enqueues are refused
    /// as `denied`. A manifest's `max_descendants` can only lower it.
    #[arg(long = "max-descendants", default_value_t = FollowUpCeilings::default().max_descendants, value_name = "N")]
    pub max_descendants: u64,
    /// Follow-ups one plugin may enqueue, fleet-wide (a token bucket in
    /// Redis, on its clock): COUNT per period, such as 1000/s or 50/min.
    /// Past it, enqueues are refused as `denied`. A manifest's `rate` can
    /// only lower it.
    #[arg(long = "max-enqueue-rate", default_value = "1000/s", value_parser = Rate::parse, value_name = "COUNT/PERIOD")]
    pub max_enqueue_rate: Rate,
    /// Do not run a cron scheduler replica in this worker.
    #[arg(long = "no-scheduler")]
    pub no_scheduler: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long = "metrics-addr", value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub scheduling: SchedulingArgs,
    /// The worker's id, when the caller chose it (to name its Redis
    /// connections `wasmq:worker:<id>`); otherwise one is made.
    #[arg(skip)]
    pub worker_id: Option<String>,
}

impl ServeArgs {
    fn worker_config(&self) -> Result<WorkerConfig, Failure> {
        let queues = QueueSelection::parse(&self.queues, self.strict).context("--queues")?;
        if self.concurrency == 0 {
            return Err(anyhow::anyhow!("--concurrency must be at least 1").into());
        }
        let mut config = WorkerConfig::new(queues);
        if let Some(id) = &self.worker_id {
            config.worker_id = id.clone();
        }
        config.concurrency = self.concurrency;
        config.lease = self.lease.max(Duration::from_millis(300));
        config.shutdown_timeout = self.shutdown_timeout;
        config.backoff = match self.retry_delay {
            Some(base) => Backoff::Exponential {
                base,
                max: Duration::from_secs(3600).max(base),
            },
            None => Backoff::Polynomial,
        };
        config.archive = ArchiveLimits {
            max_size: self.archive_max_size,
            max_age: self.archive_max_age,
        };
        config.result_budget = self.result_budget;
        config.queue_gauges = self.metrics_addr.is_some();
        if self.probation_lane == 0 {
            return Err(anyhow::anyhow!(
                "--probation-lane must be at least 1 (to turn probation off, use --probation-strikes 0)"
            )
            .into());
        }
        config.probation = ProbationConfig {
            strikes: self.probation_strikes,
            lane_capacity: self.probation_lane,
            park_capacity: self.probation_park,
            postpone: self.probation_postpone,
        };
        if self.max_follow_up_depth == 0 || self.max_descendants == 0 {
            return Err(anyhow::anyhow!(
                "--max-follow-up-depth and --max-descendants must be at least 1 (to forbid follow-ups, grant no plugin `enqueue`)"
            )
            .into());
        }
        config.follow_ups = FollowUpCeilings {
            max_depth: self.max_follow_up_depth,
            max_descendants: self.max_descendants,
            rate: self.max_enqueue_rate,
        };
        Ok(config)
    }

    /// Builds the sandbox and loads the plugins of `dir`, if given: all of
    /// them or an error, or (`skip_refused`, for `wasmq dev`) those that
    /// load, with a warning for each one skipped.
    pub fn load(&self, dir: Option<&Path>, skip_refused: bool) -> Result<Loaded, Failure> {
        let mut options = self.limits.load_options()?;
        options.access = Some(
            wasmq::plugins::EnvAccess::parse(&self.allow_env, &self.allow_secret)
                .map_err(|err| anyhow::anyhow!(err))?,
        );
        let sandbox = Sandbox::new(SandboxConfig {
            max_instances: u32::try_from(self.concurrency + 16).unwrap_or(u32::MAX),
            max_memory_bytes: options.ceilings.memory_bytes,
            max_core_instances_per_component: self.max_component_instances.max(1),
            max_memories_per_component: self.max_component_memories.max(1),
            max_tables_per_component: self.max_component_tables.max(1),
            max_instances_per_plugin: self.max_instances_per_plugin.map(|n| n.max(1)),
            ..SandboxConfig::default()
        })
        .context("setting up the Wasm engine")?;
        let set = match dir {
            Some(dir) if skip_refused => {
                let (set, skipped) = PluginSet::load_dir_skipping(&sandbox, dir, &options)
                    .context("loading plugins")?;
                for err in skipped {
                    tracing::warn!("skipped: {err}");
                }
                set
            }
            Some(dir) => PluginSet::load_dir(&sandbox, dir, &options).context("loading plugins")?,
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
        let local = set.plugins().to_vec();
        Ok(Loaded {
            sandbox: Arc::new(sandbox),
            plugins: Plugins::new(set),
            local,
            options,
        })
    }

    /// Runs a worker on `broker` until `shutdown` fires, following the
    /// plugin registry as it goes.
    pub async fn serve(
        &self,
        broker: Broker,
        loaded: Loaded,
        shutdown: CancellationToken,
    ) -> Result<worker::Summary, Failure> {
        let Loaded {
            sandbox,
            plugins,
            local,
            options,
        } = loaded;
        let config = self.worker_config()?;
        wasmq::plugins::load_deployed(
            &broker,
            &sandbox,
            &plugins,
            &local,
            &options,
            &config.metrics,
        )
        .await;
        tracing::info!(
            redis = broker.url(),
            queues = config.queues.names().join(","),
            strict = config.queues.is_strict(),
            concurrency = config.concurrency,
            worker = config.worker_id,
            "worker started"
        );
        self.scheduling.check()?;
        for plugin in plugins.current().plugins() {
            config.metrics.inc(
                "wasmq_plugin_loads_total",
                &[
                    ("plugin", &plugin.manifest.name),
                    ("version", &plugin.manifest.version),
                ],
                1.0,
            );
        }
        if let Some(address) = self.metrics_addr {
            let (metrics, stop) = (config.metrics.clone(), shutdown.clone());
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|err| {
                    anyhow::anyhow!(
                        "cannot listen on {address} for metrics: {err}; pick another --metrics-addr"
                    )
                })?;
            tokio::spawn(async move {
                if let Err(err) = wasmq::ops::metrics::serve(listener, metrics, stop).await {
                    tracing::error!(%err, "the metrics endpoint stopped");
                }
            });
        }
        let mut scheduling = if self.no_scheduler {
            tokio::task::JoinSet::new()
        } else {
            self.scheduling.spawn(&broker, &shutdown)
        };
        scheduling.spawn(wasmq::plugins::reconcile_deployed(
            broker.clone(),
            sandbox.clone(),
            plugins.clone(),
            local,
            options,
            config.metrics.clone(),
            shutdown.clone(),
        ));
        let summary = worker::run(
            broker,
            sandbox,
            plugins,
            config,
            shutdown.clone().cancelled_owned(),
        )
        .await;
        shutdown.cancel();
        while scheduling.join_next().await.is_some() {}
        Ok(summary)
    }
}

/// Runs `wasmq worker`.
pub async fn run(mut args: WorkerArgs) -> Result<(), Failure> {
    // Check every argument before touching plugins or Redis.
    args.serve.worker_config()?;
    let shutdown = shutdown_on_signal();
    let loaded = args.serve.load(args.plugins.as_deref(), false)?;
    let worker_id = worker::default_worker_id();
    let mut options = args.redis.options(format!("wasmq:worker:{worker_id}"));
    options.wait_replicas = args.durability.wait_replicas();
    args.serve.worker_id = Some(worker_id);
    let Some(broker) = connect(&args.redis.url, &options, args.fail_fast, &shutdown).await? else {
        return Ok(());
    };
    args.serve.serve(broker, loaded, shutdown).await?;
    Ok(())
}

/// Connects to Redis, retrying with backoff while it is unreachable (unless
/// `fail_fast`). Returns `None` if shutdown was requested meanwhile.
pub async fn connect(
    url: &str,
    options: &wasmq::broker::ConnectOptions,
    fail_fast: bool,
    shutdown: &CancellationToken,
) -> Result<Option<Broker>, Failure> {
    let mut delay = Duration::from_millis(500);
    loop {
        // A connection can open without a command having run: ask the
        // server's time, so that a missing or wrong password (or a Redis
        // still loading) shows now, before the worker says it started.
        let connected = match Broker::connect_with(url, options).await {
            Ok(broker) => broker.server_time_ms().await.map(|_| broker),
            Err(err) => Err(err),
        };
        match connected {
            Ok(broker) => return Ok(Some(broker)),
            Err(err) if err.is_unreachable() && !fail_fast => {
                tracing::warn!(
                    "{err}; retrying in {} (pass --fail-fast to exit instead)",
                    humantime::format_duration(delay)
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// A token cancelled on the first SIGINT or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(err) => {
                    tracing::error!(%err, "cannot listen for SIGTERM");
                    return;
                }
            };
        let which = tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!("{which} received: shutting down gracefully");
        cancel.cancel();
    });
    token
}
