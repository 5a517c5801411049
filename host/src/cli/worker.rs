//! `wasmq worker`: serve queues with the plugins of a directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::broker::{ArchiveLimits, Broker, ConnectOptions};
use crate::sandbox::{Rate, SandboxConfig};
use crate::scheduler::SchedulerConfig;
use crate::worker::{
    self, Backoff, FollowUpCeilings, ProbationConfig, QueueSelection, Worker, WorkerBuilder,
};
use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::cron::SchedulingArgs;
use super::parse::{self, Failure};
use super::{DurabilityArgs, LimitArgs, RedisArgs};

/// Arguments of `wasmq worker`.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    // --wait-replicas: each completion is recorded only once N replicas
    // have it, so a failover right after cannot undo it and run the task
    // again; a shortfall past --wait-timeout is logged.
    #[command(flatten)]
    pub(crate) durability: DurabilityArgs,
    /// A directory of plugins: every `*.wasm` component in it is loaded.
    /// Optional: a worker also serves every plugin deployed with `wasmq
    /// plugin deploy` (a deployed plugin replaces a local one of the same
    /// name).
    #[arg(long, value_name = "DIR")]
    pub(crate) plugins: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    /// Exit with an error if Redis is unreachable at start, instead of
    /// retrying until it answers.
    #[arg(long = "fail-fast")]
    pub(crate) fail_fast: bool,
}

/// How a worker serves its queues (shared by `worker` and `dev`).
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Tasks run at once.
    #[arg(long, short = 'c', default_value_t = 10, value_name = "N")]
    pub(crate) concurrency: usize,
    /// Queues to serve, with weights: e.g. `critical=6,default=3,low=1`.
    /// Each fetch tries the queues in a random order weighted by these
    /// numbers (see --strict).
    #[arg(long, default_value = "default", value_name = "NAME[=WEIGHT],...")]
    pub(crate) queues: String,
    /// Strict priority: serve a queue only while every queue of higher
    /// weight is empty.
    #[arg(long)]
    pub(crate) strict: bool,
    /// How long a task's lease lasts without renewal: a crashed worker's
    /// tasks are taken back after at most this long.
    #[arg(long, default_value = "30s", value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) lease: Duration,
    /// On SIGINT/SIGTERM, how long running tasks may finish before they are
    /// stopped and put back on their queues.
    #[arg(long = "shutdown-timeout", default_value = "10s", value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) shutdown_timeout: Duration,
    /// Delay before the first retry, doubling each time (capped at 1h).
    /// Default: (n^4 + 15 + up to 30(n+1)) seconds after the n-th failure.
    #[arg(long = "retry-delay", value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) retry_delay: Option<Duration>,
    /// At most this many archived tasks are kept per queue (oldest dropped
    /// first).
    #[arg(long = "archive-max-size", default_value_t = 10_000, value_name = "N")]
    pub(crate) archive_max_size: u64,
    /// Archived tasks older than this are dropped.
    #[arg(long = "archive-max-age", default_value = "90days", value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) archive_max_age: Duration,
    /// The most bytes of completed tasks' results each queue keeps stored
    /// (results are kept for their task's retention): past it, the
    /// completed tasks that expire soonest are forgotten early, and a
    /// result larger than the whole budget is not stored (its task is kept
    /// as completed, with a note), so that results alone cannot fill Redis.
    /// 0: no budget.
    #[arg(long = "result-budget", default_value = "16MiB", value_parser = parse::bytes, value_name = "SIZE")]
    pub(crate) result_budget: u64,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
    /// Let plugin PLUGIN read the worker's WASMQ_PLUGIN_ENV_<NAME> (seen as
    /// NAME), e.g. `--allow-env relay=REGION`; several names may be given
    /// as NAME,NAME, and the flag repeated. A plugin whose manifest asks
    /// for an environment value it is not allowed is refused at load.
    #[arg(long = "allow-env", value_name = "PLUGIN=NAME")]
    pub(crate) allow_env: Vec<String>,
    /// Let plugin PLUGIN read the worker's WASMQ_PLUGIN_SECRET_<NAME> (seen
    /// as NAME), e.g. `--allow-secret relay=TOKEN`; as --allow-env. A
    /// plugin whose manifest asks for a secret it is not allowed is refused
    /// at load, so no plugin reads another's secrets by naming them.
    #[arg(long = "allow-secret", value_name = "PLUGIN=NAME")]
    pub(crate) allow_secret: Vec<String>,
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
    pub(crate) probation_strikes: u32,
    /// Tasks of plugins on probation that run at once, beside (not within)
    /// --concurrency.
    #[arg(long = "probation-lane", default_value_t = ProbationConfig::default().lane_capacity, value_name = "N")]
    pub(crate) probation_lane: usize,
    /// Tasks of plugins on probation this worker holds leased while they
    /// wait for the lane (they take no --concurrency slot, about 3 KB of
    /// memory each plus their payload, 64 MiB of payloads at most; their
    /// leases are renewed; on shutdown they go back to their queues).
    #[arg(long = "probation-park", default_value_t = ProbationConfig::default().park_capacity, value_name = "N")]
    pub(crate) probation_park: usize,
    /// How long a task of a plugin on probation goes back to its queue when
    /// the park is full (no attempt is counted); while it stays full, each
    /// further park-full of tasks waits this much longer.
    #[arg(long = "probation-postpone", default_value = "5s", value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) probation_postpone: Duration,
    /// Instances of one plugin that run at once (default: as many as
    /// --concurrency, so a plugin alone may use the whole worker). A task of
    /// a plugin at its share goes back to its queue for 500 ms, without
    /// counting an attempt.
    #[arg(long = "max-instances-per-plugin", value_name = "N")]
    pub(crate) max_instances_per_plugin: Option<u32>,
    /// Core module instances one plugin instance may create, all nested
    /// components together; a component declaring more is refused at load.
    #[arg(long = "max-component-instances", default_value_t = SandboxConfig::default().max_core_instances_per_component, value_name = "N")]
    pub(crate) max_component_instances: u32,
    /// Linear memories one plugin instance may define, all its core
    /// instances together (their bytes share the instance's memory cap); a
    /// component declaring more is refused at load.
    #[arg(long = "max-component-memories", default_value_t = SandboxConfig::default().max_memories_per_component, value_name = "N")]
    pub(crate) max_component_memories: u32,
    /// Tables one plugin instance may define, all its core instances
    /// together (their elements count, 8 bytes each, against the memory
    /// cap); a component declaring more is refused at load.
    #[arg(long = "max-component-tables", default_value_t = SandboxConfig::default().max_tables_per_component, value_name = "N")]
    pub(crate) max_component_tables: u32,
    /// The deepest generation of follow-up tasks below the task a producer
    /// enqueued: an enqueue deeper is refused and its attempt fails as
    /// `denied`. A manifest's `capabilities.enqueue.max_depth` can only
    /// lower it.
    #[arg(long = "max-follow-up-depth", default_value_t = FollowUpCeilings::default().max_depth, value_name = "N")]
    pub(crate) max_follow_up_depth: u32,
    /// Follow-ups one root task may have in all, across generations,
    /// queues and workers (counted in Redis); past it, enqueues are refused
    /// as `denied`. A manifest's `max_descendants` can only lower it.
    #[arg(long = "max-descendants", default_value_t = FollowUpCeilings::default().max_descendants, value_name = "N")]
    pub(crate) max_descendants: u64,
    /// Follow-ups one plugin may enqueue, fleet-wide (a token bucket in
    /// Redis, on its clock): COUNT per period, such as 1000/s or 50/min.
    /// Past it, enqueues are refused as `denied`. A manifest's `rate` can
    /// only lower it.
    #[arg(long = "max-enqueue-rate", default_value = "1000/s", value_parser = Rate::parse, value_name = "COUNT/PERIOD")]
    pub(crate) max_enqueue_rate: Rate,
    /// Do not run a cron scheduler replica in this worker.
    #[arg(long = "no-scheduler")]
    pub(crate) no_scheduler: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics. Like the
    /// dashboard, the endpoint answers only requests that name ADDR (or a
    /// loopback name with its port; any IP address of this machine when
    /// ADDR is 0.0.0.0), so a web page cannot read it through DNS
    /// rebinding; see --metrics-allow-host.
    #[arg(long = "metrics-addr", value_name = "ADDR")]
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    /// A host name the metrics endpoint also answers to (with any port), for
    /// a Prometheus that scrapes this worker by a DNS name. Repeatable.
    #[arg(
        long = "metrics-allow-host",
        value_name = "NAME",
        requires = "metrics_addr"
    )]
    pub(crate) metrics_allow_host: Vec<String>,
    /// Export traces over OTLP (HTTP/protobuf) to URL, an OpenTelemetry
    /// collector's base URL such as http://localhost:4318 (spans go to
    /// URL/v1/traces): a span per attempt (queue, task id, type, attempt,
    /// plugin, outcome, failure class, fuel), its sandbox run and each
    /// outgoing HTTP request, which carries a traceparent header. Off by
    /// default; also on when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (a full
    /// URL) or OTEL_EXPORTER_OTLP_ENDPOINT (a base URL) is set.
    /// OTEL_SERVICE_NAME names the service (default: wasmq).
    #[arg(long = "otlp-endpoint", value_name = "URL")]
    pub(crate) otlp_endpoint: Option<String>,
    #[command(flatten)]
    pub(crate) scheduling: SchedulingArgs,
}

impl ServeArgs {
    /// Checks every argument, before touching plugins or Redis.
    pub(crate) fn check(&self) -> Result<(), Failure> {
        QueueSelection::parse(&self.queues, self.strict).context("--queues")?;
        if self.concurrency == 0 {
            return Err(anyhow::anyhow!("--concurrency must be at least 1").into());
        }
        if self.probation_lane == 0 {
            return Err(anyhow::anyhow!(
                "--probation-lane must be at least 1 (to turn probation off, use --probation-strikes 0)"
            )
            .into());
        }
        if self.max_follow_up_depth == 0 || self.max_descendants == 0 {
            return Err(anyhow::anyhow!(
                "--max-follow-up-depth and --max-descendants must be at least 1 (to forbid follow-ups, grant no plugin `enqueue`)"
            )
            .into());
        }
        self.limits.load_options()?;
        crate::plugins::EnvAccess::parse(
            &self.allow_env,
            &self.allow_secret,
            ("--allow-env", "--allow-secret"),
        )
        .map_err(|err| anyhow::anyhow!(err))?;
        self.scheduling.check()?;
        if let Some(endpoint) = &self.otlp_endpoint
            && !endpoint
                .parse::<http::Uri>()
                .is_ok_and(|url| url.scheme_str() == Some("http") && url.host().is_some())
        {
            return Err(anyhow::anyhow!(
                "--otlp-endpoint {endpoint:?} is not an http:// URL: give a collector's OTLP/HTTP address such as http://localhost:4318"
            )
            .into());
        }
        Ok(())
    }

    /// Where traces go: --otlp-endpoint, else the OTEL_EXPORTER_OTLP_*
    /// variables; none: no tracing.
    fn tracing(&self) -> Option<crate::Tracing> {
        match &self.otlp_endpoint {
            Some(endpoint) => Some(crate::Tracing::otlp(endpoint)),
            None => crate::Tracing::from_env(),
        }
    }

    /// The worker these arguments describe, on `broker`, serving the
    /// plugins of `plugins` (watched and reloaded as they are rebuilt when
    /// `watch`, as under `wasmq dev`) and every deployed plugin.
    pub(crate) fn builder(
        &self,
        broker: Broker,
        plugins: Option<&Path>,
        watch: bool,
    ) -> Result<WorkerBuilder, Failure> {
        self.check()?;
        let queues = QueueSelection::parse(&self.queues, self.strict).context("--queues")?;
        let mut options = self.limits.load_options()?;
        options.access = Some(
            crate::plugins::EnvAccess::parse(
                &self.allow_env,
                &self.allow_secret,
                ("--allow-env", "--allow-secret"),
            )
            .map_err(|err| anyhow::anyhow!(err))?,
        );
        let mut builder = Worker::builder(broker)
            .queues(queues)
            .concurrency(self.concurrency)
            .lease(self.lease)
            .shutdown_timeout(self.shutdown_timeout)
            .backoff(match self.retry_delay {
                Some(base) => Backoff::Exponential {
                    base,
                    max: Duration::from_secs(3600).max(base),
                },
                None => Backoff::Polynomial,
            })
            .archive(ArchiveLimits {
                max_size: self.archive_max_size,
                max_age: self.archive_max_age,
            })
            .result_budget(self.result_budget)
            .probation(ProbationConfig {
                strikes: self.probation_strikes,
                lane_capacity: self.probation_lane,
                park_capacity: self.probation_park,
                postpone: self.probation_postpone,
                ..ProbationConfig::default()
            })
            .follow_up_ceilings(FollowUpCeilings {
                max_depth: self.max_follow_up_depth,
                max_descendants: self.max_descendants,
                rate: self.max_enqueue_rate,
            })
            .sandbox(SandboxConfig {
                max_core_instances_per_component: self.max_component_instances.max(1),
                max_memories_per_component: self.max_component_memories.max(1),
                max_tables_per_component: self.max_component_tables.max(1),
                max_instances_per_plugin: self.max_instances_per_plugin.map(|n| n.max(1)),
                ..SandboxConfig::default()
            })
            .plugin_options(options)
            .follow_registry();
        builder = match plugins {
            Some(dir) if watch => builder.watch_plugins_dir(dir),
            Some(dir) => builder.plugins_dir(dir),
            None => builder,
        };
        if let Some(address) = self.metrics_addr {
            builder = builder
                .metrics(address, self.metrics_allow_host.clone())
                .metrics_allow_hint("start the worker with --metrics-allow-host NAME");
        }
        if let Some(tracing) = self.tracing() {
            builder = builder.tracing(tracing);
        }
        if !self.no_scheduler {
            let config = SchedulerConfig {
                misfire_grace: self.scheduling.misfire_grace,
                ..SchedulerConfig::default()
            };
            builder = builder.scheduler(config, self.scheduling.schedule.clone());
        }
        Ok(builder)
    }
}

/// Runs a built worker until `shutdown`, with the command line's words
/// for what can stop it from starting.
pub(crate) async fn serve(
    worker: Worker,
    shutdown: CancellationToken,
) -> Result<worker::Summary, Failure> {
    let summary = worker
        .run(shutdown.clone().cancelled_owned())
        .await
        .map_err(worker_error)?;
    shutdown.cancel();
    Ok(summary)
}

/// A worker's refusal to start, with the flag that changes it.
pub(crate) fn worker_error(err: worker::Error) -> Failure {
    let hint = match &err {
        worker::Error::Metrics { .. } => "; pick another --metrics-addr".to_string(),
        worker::Error::Plugins(crate::plugins::PluginError::NotAllowed {
            plugin,
            secret,
            name,
            ..
        }) => format!(
            "; to allow it, start the worker with {} {plugin}={name}",
            if *secret {
                "--allow-secret"
            } else {
                "--allow-env"
            }
        ),
        worker::Error::Plugins(_) => {
            "; fix or remove the plugin, or pass --plugins DIR with other components".to_string()
        }
        _ => String::new(),
    };
    anyhow::anyhow!("{err}{hint}").into()
}

/// Runs `wasmq worker`.
pub(crate) async fn run(args: WorkerArgs) -> Result<(), Failure> {
    // Check every argument before touching plugins or Redis.
    args.serve.check()?;
    let shutdown = shutdown_on_signal();
    // Connections are named after the worker, so its id comes first.
    let worker_id = worker::default_worker_id();
    let options = args.redis.options(format!("wasmq:worker:{worker_id}"));
    let Some(broker) = connect(&args.redis.url, &options, args.fail_fast, &shutdown).await? else {
        return Ok(());
    };
    let mut builder = args
        .serve
        .builder(broker, args.plugins.as_deref(), false)?
        .worker_id(worker_id);
    if let Some(wait) = args.durability.wait_replicas() {
        builder = builder.wait_replicas(wait);
    }
    let worker = builder.build().map_err(worker_error)?;
    serve(worker, shutdown).await?;
    Ok(())
}

/// Connects to Redis, retrying with backoff while it is unreachable (unless
/// `fail_fast`). Returns `None` if shutdown was requested meanwhile.
pub(crate) async fn connect(
    url: &str,
    options: &ConnectOptions,
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
pub(crate) fn shutdown_on_signal() -> CancellationToken {
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
