//! `isolation`: how much hostile plugins cost their well-behaved
//! neighbours. The drain rate of `echo` tasks alone, and again with hostile
//! tasks making up a quarter of all tasks, on one worker, every plugin held
//! to the same small budget.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use wasmq::dev::RedisServer;
use wasmq::plugins::LoadOptions;
use wasmq::sandbox::{Limits, Sandbox, SandboxConfig};
use wasmq::worker::{QueueSelection, WorkerConfig};
use wasmq::{Client, NewTask};
use wasmq_testkit as kit;

use super::drain::{drain, load};

/// Arguments of `isolation`.
#[derive(Debug, clap::Args)]
pub struct IsolationArgs {
    /// Echo tasks per run.
    #[arg(long, default_value_t = 15_000)]
    pub tasks: usize,
    /// Worker concurrency.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Fuel per attempt, for every plugin.
    #[arg(long, default_value_t = 20_000_000)]
    pub fuel: u64,
    /// Linear memory per instance, MiB, for every plugin.
    #[arg(long, default_value_t = 32)]
    pub memory_mib: u64,
    /// Only this hostile task type (default: all of them in turn).
    #[arg(long)]
    pub only: Option<String>,
}

/// The hostile tasks mixed in: each fails fast against its budget (the
/// sleeping and fan-out ones are left out: they hold a slot for their
/// timeout, or add tasks of their own).
const HOSTILE: &[(&str, &str)] = &[
    (kit::HOSTILE_SPIN_COMPONENT, "hostile:spin"),
    (kit::HOSTILE_MEMBOMB_COMPONENT, "hostile:membomb"),
    (kit::HOSTILE_RECURSE_COMPONENT, "hostile:recurse"),
    (kit::HOSTILE_PANIC_COMPONENT, "hostile:panic"),
    (kit::HOSTILE_BIGRESULT_COMPONENT, "hostile:bigresult"),
    (kit::HOSTILE_LOGFLOOD_COMPONENT, "hostile:logflood"),
    (kit::HOSTILE_SNOOP_COMPONENT, "hostile:snoop"),
    (kit::HOSTILE_SOCKET_COMPONENT, "hostile:socket"),
    (kit::HOSTILE_HTTP_COMPONENT, "hostile:http"),
    (kit::HOSTILE_INITBOMB_COMPONENT, "hostile:initbomb"),
];

/// Runs both phases and prints one JSON line.
pub async fn run(args: &IsolationArgs) -> anyhow::Result<()> {
    let redis = RedisServer::start().context("starting redis-server")?;
    let client = Client::connect(&redis.url()).await?;
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        max_instances: u32::try_from(args.concurrency + 16)?,
        ..SandboxConfig::default()
    })?);
    let options = LoadOptions {
        defaults: Limits {
            fuel: Some(args.fuel),
            timeout: Duration::from_millis(500),
            memory_bytes: args.memory_mib << 20,
            max_result_bytes: 64 << 10,
            max_log_bytes: 16 << 10,
        },
        ..LoadOptions::default()
    };
    let hostile_mix: Vec<(&str, &str)> = HOSTILE
        .iter()
        .filter(|(_, task_type)| args.only.as_deref().is_none_or(|only| only == *task_type))
        .copied()
        .collect();
    anyhow::ensure!(
        !hostile_mix.is_empty(),
        "no hostile task type matches --only"
    );
    let mut components = vec![kit::ECHO_COMPONENT];
    components.extend(hostile_mix.iter().map(|(component, _)| *component));

    let echo = |n: usize| {
        NewTask::new("echo", format!(r#"{{"n":{n}}}"#)).map(|task| task.retention(Duration::ZERO))
    };
    let enqueue = |tasks: Vec<NewTask>| {
        let client = client.clone();
        async move {
            for chunk in tasks.chunks(1000) {
                for outcome in client.enqueue_batch(chunk.to_vec()).await {
                    outcome?;
                }
            }
            anyhow::Ok(())
        }
    };

    // Alone.
    enqueue((0..args.tasks).map(echo).collect::<Result<_, _>>()?).await?;
    let plugins = load(&sandbox, &components, &options)?;
    let (alone, summary) = drain(
        &client,
        sandbox.clone(),
        plugins,
        worker_config(args.concurrency),
    )
    .await?;
    anyhow::ensure!(
        summary.completed as usize == args.tasks,
        "echo alone: {summary:?}"
    );

    // A quarter hostile: one hostile task after every three echo tasks.
    let mut mixed = Vec::new();
    let mut hostile = 0usize;
    for n in 0..args.tasks {
        mixed.push(echo(n)?);
        if n % 3 == 2 {
            let (_, task_type) = hostile_mix[hostile % hostile_mix.len()];
            mixed.push(
                NewTask::new(task_type, "{}")?
                    .max_retry(0)
                    .retention(Duration::ZERO),
            );
            hostile += 1;
        }
    }
    enqueue(mixed).await?;
    let plugins = load(&sandbox, &components, &options)?;
    let (with_hostile, summary) =
        drain(&client, sandbox, plugins, worker_config(args.concurrency)).await?;
    anyhow::ensure!(
        summary.completed as usize == args.tasks && summary.failed as usize == hostile,
        "mixed: {summary:?}, expected {} completed and {hostile} failed",
        args.tasks
    );

    let rate = |took: Duration| args.tasks as f64 / took.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "echo_tasks": args.tasks,
            "hostile_tasks": hostile,
            "concurrency": args.concurrency,
            "fuel": args.fuel,
            "memory_mib": args.memory_mib,
            "hostile_types": hostile_mix.iter().map(|(_, task_type)| *task_type).collect::<Vec<_>>(),
            "echo_per_s_alone": rate(alone).round(),
            "echo_per_s_with_hostile": rate(with_hostile).round(),
            "ratio": (rate(with_hostile) / rate(alone) * 1000.0).round() / 1000.0,
        })
    );
    Ok(())
}

fn worker_config(concurrency: usize) -> WorkerConfig {
    let mut config = WorkerConfig::new(QueueSelection::single("default"));
    config.concurrency = concurrency;
    config
}
