//! The `wasmq` command line: argument definitions and dispatch. Each command
//! lives in a file of its own; errors carry context here and are turned
//! into exit codes by `main`.

mod batch;
mod build;
mod cron;
mod dashboard;
mod dev;
mod enqueue;
mod enqueue_file;
mod flow;
mod format;
mod limit;
mod parse;
mod plugin;
mod plugin_deploy;
mod plugin_gc;
mod plugin_inspect;
mod queue;
mod scaffold;
mod server;
mod stats;
mod table;
mod task;
mod worker;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::broker::{Broker, ConnectOptions, TlsOptions, WaitReplicas};

/// Run background tasks from Redis queues in sandboxed WebAssembly plugins.
///
/// Producers enqueue tasks; workers lease them and run each in a fresh
/// instance of the plugin (a Wasm component) that handles its type, with
/// fuel, memory and time limits. Start with `wasmq dev`, which runs a
/// private Redis and a worker for you.
#[derive(Debug, Parser)]
#[command(
    name = "wasmq",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(after_help = "Examples:\n  \
    wasmq dev --plugins plugins/target/wasm32-wasip2/release --demo\n  \
    wasmq worker --redis redis://127.0.0.1:6379 --plugins ./plugins --concurrency 50\n  \
    wasmq enqueue thumbnail:make '{\"width\":64,\"generate\":{\"width\":800,\"height\":600}}' --queue images\n  \
    wasmq task show 0b6f4c1e-...\n\n\
    Exit codes: 0 success, 1 error, 2 bad usage, 3 refused as a duplicate, 4 Redis unreachable, 5 not found.")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,

    /// Log filter, as in RUST_LOG: e.g. `info`, `wasmq=debug`.
    #[arg(long, global = true, env = "WASMQ_LOG", value_name = "FILTER")]
    pub(crate) log: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a private Redis and a worker with your plugins: the quickest way
    /// to try wasmq.
    ///
    /// Starts a redis-server of its own on a free loopback port (unless
    /// --redis points at one), loads the plugins, and runs a worker serving
    /// every queue it is asked to. With --demo it also enqueues example
    /// tasks every second. Stop it with Ctrl-C; the private Redis goes with
    /// it.
    Dev(dev::DevArgs),
    /// Run a worker: lease tasks from Redis and run them in their plugins.
    ///
    /// Runs until SIGINT or SIGTERM, then stops taking tasks, lets running
    /// ones finish for up to --shutdown-timeout and puts the rest back at
    /// the head of their queues.
    Worker(worker::WorkerArgs),
    /// Put a task on a queue.
    ///
    /// Prints the new task's id. Refuses (exit code 3) a task whose --id is
    /// taken, or an equal --unique task still held.
    Enqueue(enqueue::EnqueueArgs),
    /// Every queue's sizes by state, processed and failed today, latency,
    /// memory.
    Stats(stats::StatsArgs),
    /// Batches: tasks on any queues with callbacks once all succeeded or
    /// all ended.
    #[command(subcommand)]
    Batch(batch::BatchCommand),
    /// Flows: tasks that run after their children, with their results;
    /// chains.
    #[command(subcommand)]
    Flow(flow::FlowCommand),
    /// Look at and manage tasks: list, show, run, archive, delete, cancel.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Look at and manage queues: list, inspect, pause, resume, remove.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// The live workers.
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// Plugins across the fleet: run statistics.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Periodic tasks: each tick enqueued exactly once across every
    /// scheduler replica, with no leader.
    #[command(subcommand)]
    Cron(cron::CronCommand),
    /// Run a cron scheduler replica alone (workers run one too, unless
    /// --no-scheduler). Any number may run; each tick fires once.
    Scheduler(cron::SchedulerArgs),
    /// Fleet-wide concurrency limits per task type (singletons).
    #[command(subcommand)]
    Limit(limit::LimitCommand),
    /// Serve the web dashboard: queues, tasks, workers, cron, plugins.
    Dashboard(dashboard::DashboardArgs),
    /// Create things: `wasmq new plugin NAME` scaffolds a plugin crate.
    #[command(subcommand)]
    New(scaffold::NewCommand),
}

/// How to reach Redis; every command that talks to Redis takes it.
#[derive(Debug, Clone, Args)]
pub(crate) struct RedisArgs {
    /// The Redis holding the queues: redis://[:PASSWORD@]HOST[:PORT][/DB] for
    /// one server; redis+cluster://[:PASSWORD@]HOST:PORT,HOST:PORT,… for a
    /// Redis Cluster (any reachable nodes of it: the rest are discovered);
    /// redis+sentinel://[:PASSWORD@]HOST:PORT,HOST:PORT,…/MASTER for the
    /// master that the listed Sentinels know as MASTER. Over TLS: rediss://,
    /// rediss+cluster://, rediss+sentinel:// (see the --tls-* options).
    #[arg(long = "redis", env = "WASMQ_REDIS_URL", default_value = crate::broker::DEFAULT_URL, value_name = "URL")]
    pub(crate) url: String,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

impl RedisArgs {
    /// Connects as `wasmq:cli:<command>` (its name in `CLIENT LIST`).
    pub(crate) async fn broker(&self, command: &str) -> Result<Broker, crate::broker::Error> {
        Broker::connect_with(&self.url, &self.options(cli_name(command))).await
    }

    /// The connection options: these TLS settings and `name`.
    pub(crate) fn options(&self, name: String) -> ConnectOptions {
        ConnectOptions {
            name: Some(name),
            tls: self.tls.options(),
            wait_replicas: None,
        }
    }
}

/// The name a CLI command's connections carry: `wasmq:cli:<command>`.
pub(crate) fn cli_name(command: &str) -> String {
    format!("wasmq:cli:{command}")
}

/// TLS settings for rediss://, rediss+cluster:// and rediss+sentinel://
/// URLs (without --tls-ca, the system's trusted roots are used).
#[derive(Debug, Clone, Args)]
pub(crate) struct TlsArgs {
    /// A PEM file of the CA certificate(s) that sign the Redis server's
    /// certificate, instead of the system's trusted roots.
    #[arg(long = "tls-ca", env = "WASMQ_TLS_CA", value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// A PEM file of this client's certificate, for a Redis that requires
    /// client certificates (tls-auth-clients yes); with --tls-key.
    #[arg(
        long = "tls-cert",
        env = "WASMQ_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The PEM file of the private key of --tls-cert.
    #[arg(
        long = "tls-key",
        env = "WASMQ_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub(crate) tls_key: Option<PathBuf>,
    /// Accept a server certificate that does not name the host connected
    /// to (it must still be signed by a trusted CA and be valid): for
    /// cluster or Sentinel nodes announced by addresses their certificates
    /// do not list. The rest of the check still holds.
    #[arg(long = "tls-skip-hostname-check", env = "WASMQ_TLS_SKIP_HOSTNAME_CHECK", value_parser = clap::builder::FalseyValueParser::new(), default_value_t = false, num_args = 0, default_missing_value = "true")]
    pub(crate) tls_skip_hostname_check: bool,
}

impl TlsArgs {
    /// The library's TLS options.
    pub(crate) fn options(&self) -> TlsOptions {
        TlsOptions {
            ca_file: self.tls_ca.clone(),
            cert_file: self.tls_cert.clone(),
            key_file: self.tls_key.clone(),
            skip_hostname_check: self.tls_skip_hostname_check,
        }
    }
}

/// Durable writes: wait until replicas have them.
#[derive(Debug, Clone, Args)]
pub(crate) struct DurabilityArgs {
    /// Return only once N replicas have the write (Redis `WAIT`), so a
    /// failover right after cannot lose it. If fewer confirm within
    /// --wait-timeout, the command says so (the write is on the master).
    #[arg(long = "wait-replicas", env = "WASMQ_WAIT_REPLICAS", value_name = "N")]
    pub(crate) wait_replicas: Option<u32>,
    /// How long to wait for --wait-replicas.
    #[arg(long = "wait-timeout", default_value = "5s", value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) wait_timeout: Duration,
}

impl DurabilityArgs {
    /// The library's setting.
    pub(crate) fn wait_replicas(&self) -> Option<WaitReplicas> {
        self.wait_replicas
            .filter(|replicas| *replicas > 0)
            .map(|replicas| WaitReplicas {
                replicas,
                timeout: self.wait_timeout,
            })
    }
}

/// The per-task limits loaded plugins get when their manifests set none,
/// and the most a manifest may ask for.
#[derive(Debug, Clone, Args)]
pub(crate) struct LimitArgs {
    /// Fuel per attempt (about one unit per Wasm instruction).
    #[arg(long, default_value_t = 100_000_000_000, value_name = "UNITS")]
    pub(crate) fuel: u64,
    /// The longest an attempt may run (a task's own --timeout can only
    /// shorten it).
    #[arg(long = "task-timeout", default_value = "60s", value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) task_timeout: Duration,
    /// Linear memory per instance, e.g. 128MiB.
    #[arg(long, default_value = "128MiB", value_parser = parse::bytes, value_name = "SIZE")]
    pub(crate) memory: u64,
    /// The largest result a task may return, e.g. 1MiB.
    #[arg(long = "max-result", default_value = "1MiB", value_parser = parse::bytes, value_name = "SIZE")]
    pub(crate) max_result: u64,
    /// Log volume an attempt may write; past it the attempt fails
    /// (log-limit).
    #[arg(long = "max-log", default_value = "64KiB", value_parser = parse::bytes, value_name = "SIZE")]
    pub(crate) max_log: u64,
    /// The most linear memory any plugin may ask for in its manifest.
    #[arg(long = "max-memory", default_value = "512MiB", value_parser = parse::bytes, value_name = "SIZE")]
    pub(crate) max_memory: u64,
    /// The most time any plugin may ask for per attempt in its manifest.
    #[arg(long = "max-task-timeout", default_value = "1h", value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) max_task_timeout: Duration,
    /// Plugin components larger than this are refused.
    #[arg(long = "max-plugin-size", default_value = "64MiB", value_parser = parse::bytes, value_name = "SIZE")]
    pub(crate) max_plugin_size: u64,
    /// Plugin components with a function body larger than this (in any of
    /// their core modules) are refused before compiling: compile time grows
    /// faster than a function's size. The default admits CPython's
    /// interpreter loop (427 KB in componentize-py 0.25) with room to spare.
    #[arg(long = "max-function-size", default_value = "1MiB", value_parser = parse::bytes, value_name = "SIZE")]
    pub(crate) max_function_size: u64,
    /// The longest compiling one plugin may take; past it the plugin is
    /// refused (a compiled plugin found in the cache costs nothing).
    #[arg(long = "compile-timeout", default_value = "5m", value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) compile_timeout: Duration,
    /// Where compiled plugins are cached (default: ~/.cache/wasmq/components,
    /// or $WASMQ_CACHE_DIR).
    #[arg(long = "cache-dir", value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Compile plugins afresh instead of using the cache.
    #[arg(long = "no-cache")]
    pub(crate) no_cache: bool,
}

impl LimitArgs {
    /// How plugins are loaded with these flags.
    pub(crate) fn load_options(&self) -> Result<crate::plugins::LoadOptions, parse::Failure> {
        let ceilings = crate::plugins::Ceilings {
            memory_bytes: self.max_memory,
            timeout: self.max_task_timeout,
            ..crate::plugins::Ceilings::default()
        };
        if self.memory > self.max_memory {
            return Err(anyhow::anyhow!(
                "--memory ({} bytes) is above --max-memory ({} bytes)",
                self.memory,
                self.max_memory
            )
            .into());
        }
        let cache = if self.no_cache {
            None
        } else {
            self.cache_dir
                .clone()
                .or_else(crate::sandbox::ComponentCache::default_dir)
                .map(crate::sandbox::ComponentCache::new)
        };
        Ok(crate::plugins::LoadOptions {
            defaults: crate::sandbox::Limits {
                fuel: Some(self.fuel),
                timeout: self.task_timeout.min(self.max_task_timeout),
                memory_bytes: self.memory,
                max_result_bytes: usize::try_from(self.max_result).unwrap_or(usize::MAX),
                max_log_bytes: usize::try_from(self.max_log).unwrap_or(usize::MAX),
                ..crate::sandbox::Limits::default()
            },
            ceilings,
            max_component_bytes: usize::try_from(self.max_plugin_size).unwrap_or(usize::MAX),
            cache,
            compile: crate::sandbox::CompileBounds {
                max_function_bytes: usize::try_from(self.max_function_size).unwrap_or(usize::MAX),
                timeout: self.compile_timeout,
            },
            access: None,
        })
    }
}

/// Runs the parsed command.
pub(crate) async fn run(cli: Cli) -> Result<(), parse::Failure> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Enqueue(args) => enqueue::run(args).await,
        Command::Stats(args) => stats::run(args).await,
        Command::Task(command) => task::run(command).await,
        Command::Flow(command) => flow::run(command).await,
        Command::Batch(command) => batch::run(command).await,
        Command::Server(command) => server::run(command).await,
        Command::Plugin(command) => plugin::run(command).await,
        Command::Queue(command) => queue::run(command).await,
        Command::Cron(command) => cron::run(command).await,
        Command::Scheduler(args) => cron::run_scheduler(args).await,
        Command::Limit(command) => limit::run(command).await,
        Command::Dashboard(args) => dashboard::run(args).await,
        Command::New(command) => scaffold::run(command).await,
    }
}

/// The `wasmq` binary's whole life: parses the arguments, sets up logging,
/// runs the command and turns its outcome into an exit code.
pub fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    if !matches!(args.command, Command::Worker(_) | Command::Scheduler(_)) {
        // Output piped into `head` or a pager that quits ends the command
        // quietly, as Unix tools do, instead of a panic in println!. Rust
        // ignores SIGPIPE by default; restore the default action. Workers
        // and schedulers print nothing to stdout and keep ignoring it, so a
        // closed log pipe never stops them (Redis sockets never raise it).
        // SAFETY: setting a signal disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let default_filter = match &args.command {
        Command::Dev(_) => "info",
        Command::Worker(_) => "info",
        _ => "warn",
    };
    let filter = args
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default_filter.to_string());
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        // Colours only for people: logs written to files stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => {
            // The error and its causes, each cause once: most of them are
            // already part of the message above them.
            let mut message = failure.error.to_string();
            for cause in failure.error.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message.push_str(": ");
                    message.push_str(&cause);
                }
            }
            if let Some(hint) = failure.hint {
                message.push_str("; ");
                message.push_str(hint);
            }
            eprintln!("error: {message}");
            std::process::ExitCode::from(failure.code as u8)
        }
    }
}
