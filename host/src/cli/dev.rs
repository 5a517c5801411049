//! `wasmq dev`: a private Redis, a worker and (with --demo) a stream of
//! example tasks, in one command.

use std::path::PathBuf;
use std::time::Duration;

use crate::broker::ConnectOptions;
use crate::dev::RedisServer;
use crate::{Client, NewTask};
use anyhow::Context;
use clap::Args;

use super::parse::Failure;
use super::worker::{ServeArgs, connect, serve, shutdown_on_signal, worker_error};

/// Arguments of `wasmq dev`.
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Use the Redis at URL instead of starting a private redis-server.
    #[arg(long = "redis", value_name = "URL")]
    pub(crate) redis: Option<String>,
    #[command(flatten)]
    pub(crate) tls: super::TlsArgs,
    /// A directory of plugins: every `*.wasm` component in it that loads is
    /// served (the others are skipped with a warning), and reloaded when
    /// its file changes.
    #[arg(
        long,
        default_value = "plugins/target/wasm32-wasip2/release",
        value_name = "DIR"
    )]
    pub(crate) plugins: PathBuf,
    /// Enqueue example tasks for the loaded plugins every second.
    #[arg(long)]
    pub(crate) demo: bool,
    /// Where the dashboard listens (a free port is picked if this one is
    /// taken).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub(crate) dashboard: std::net::SocketAddr,
    /// Do not serve the dashboard.
    #[arg(long = "no-dashboard")]
    pub(crate) no_dashboard: bool,
    #[command(flatten)]
    pub(crate) access: super::dashboard::AccessArgs,
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
}

/// Runs `wasmq dev`.
pub(crate) async fn run(mut args: DevArgs) -> Result<(), Failure> {
    if args.serve.retry_delay.is_none() {
        // Retries within seconds, so a newcomer sees them happen.
        args.serve.retry_delay = Some(Duration::from_secs(1));
    }
    let shutdown = shutdown_on_signal();
    if !args.plugins.is_dir() {
        return Err(anyhow::anyhow!(
            "the plugin directory {} does not exist; build the example plugins with `cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml`, or pass --plugins DIR",
            args.plugins.display()
        )
        .into());
    }
    args.serve.check()?;

    // The private server must outlive the worker: it is dropped (and
    // stopped) when this function returns.
    let (_server, url) = match &args.redis {
        Some(url) => (None, url.clone()),
        None => {
            let server = RedisServer::start().context("starting a private redis-server")?;
            let url = server.url();
            (Some(server), url)
        }
    };
    // Connections are named after the worker, so its id comes first.
    let worker_id = crate::worker::default_worker_id();
    let options = ConnectOptions {
        name: Some(format!("wasmq:worker:{worker_id}")),
        tls: args.tls.options(),
        wait_replicas: None,
    };
    let Some(broker) = connect(&url, &options, false, &shutdown).await? else {
        return Ok(());
    };

    let dashboard_url = if args.no_dashboard {
        None
    } else {
        let started = super::dashboard::start(
            args.dashboard,
            &args.access,
            broker.clone(),
            shutdown.clone(),
        )
        .await;
        let started = match started {
            Ok(started) => started,
            // The default port may be taken: any free one will do.
            Err(_) => {
                let any = std::net::SocketAddr::new(args.dashboard.ip(), 0);
                super::dashboard::start(any, &args.access, broker.clone(), shutdown.clone()).await?
            }
        };
        Some(format!("http://{}/", started.0))
    };
    // A plugin that does not load is skipped, and reloaded once rebuilt.
    let worker = args
        .serve
        .builder(broker.clone(), Some(&args.plugins), true)?
        .worker_id(worker_id)
        .build()
        .map_err(worker_error)?;
    let types = worker.task_types();
    println!("wasmq dev");
    println!(
        "  redis:    {url}{}",
        if args.redis.is_none() {
            "  (private; stopped on exit)"
        } else {
            ""
        }
    );
    println!("  plugins:  {}", args.plugins.display());
    println!("  types:    {}", types.join(", "));
    println!("  queues:   {}", args.serve.queues);
    if let Some(url) = &dashboard_url {
        println!("  dashboard: {url}");
    }
    let wasmq = invoked_as();
    println!("  try:      {wasmq} enqueue echo '{{\"hello\":\"world\"}}' --redis {url}");
    println!("            {wasmq} task show <ID> --redis {url}");
    println!("  stop:     Ctrl-C");

    if args.demo {
        let client = Client::new(broker.clone());
        let queue = args
            .serve
            .queues
            .split(',')
            .next()
            .and_then(|first| first.split('=').next())
            .unwrap_or("default")
            .trim()
            .to_string();
        tokio::spawn(demo(client, queue, types, shutdown.clone()));
    }
    let summary = serve(worker, shutdown).await?;
    println!(
        "wasmq dev stopped: {} completed, {} failed attempts, {} put back",
        summary.completed, summary.failed, summary.requeued
    );
    Ok(())
}

/// How to run this binary again from a shell, for the `try:` lines: `wasmq`
/// when it was found on PATH, else its absolute path (`.ci/dev` runs
/// target/debug/wasmq, which is not on PATH), quoted when it must be.
fn invoked_as() -> String {
    let on_path = std::env::args_os()
        .next()
        .is_some_and(|arg0| !arg0.to_string_lossy().contains('/'));
    let path = match std::env::current_exe() {
        Ok(path) if !on_path => path.display().to_string(),
        _ => return "wasmq".to_string(),
    };
    if path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    {
        path
    } else {
        format!("'{}'", path.replace('\'', r"'\''"))
    }
}

/// Example tasks for the example plugins, in turn.
fn demo_task(round: u64, types: &[String]) -> Option<NewTask> {
    let examples: [(&str, String); 5] = [
        ("echo", format!(r#"{{"hello":"world","round":{round}}}"#)),
        ("greet", format!(r#"{{"name":"demo {round}"}}"#)),
        ("flaky", r#"{"fail_times":2}"#.to_string()),
        ("burn", r#"{"ms":50}"#.to_string()),
        (
            "thumbnail:make",
            r#"{"width":64,"generate":{"width":640,"height":480}}"#.to_string(),
        ),
    ];
    let available: Vec<&(&str, String)> = examples
        .iter()
        .filter(|(task_type, _)| types.iter().any(|t| t == task_type))
        .collect();
    let (task_type, payload) = available.get(round as usize % available.len().max(1))?;
    NewTask::new(*task_type, payload.clone()).ok()
}

/// Enqueues an example task every second until shutdown.
async fn demo(
    client: Client,
    queue: String,
    types: Vec<String>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let Some(task) = demo_task(round, &types) else {
            tracing::warn!(
                "--demo has no example task for the loaded plugins (echo, greet, flaky, burn, thumbnail:make)"
            );
            return;
        };
        let task_type = task.task_type().to_string();
        match client.enqueue(task.queue(&queue)).await {
            Ok(enqueued) => tracing::info!(task_type, id = enqueued.id, "demo task enqueued"),
            Err(err) => tracing::warn!(%err, "demo enqueue failed"),
        }
        round += 1;
    }
}
