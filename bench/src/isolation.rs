//! `isolation`: how much hostile plugins cost their well-behaved
//! neighbours. The drain rate of a well-behaved plugin's tasks alone; again
//! with benign `greet` tasks making up a quarter of all tasks (what sharing
//! the worker with any other plugin costs); and again with hostile tasks in
//! their place. One worker, every plugin held to the same small budget.
//!
//! The well-behaved plugin is `echo`, which returns at once (the worker's
//! CPU is then the limit), or `relay` calling a webhook: an HTTP GET of a
//! loopback server that answers after a set time (the worker then mostly
//! waits, as it does for handlers that call other services).

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmq::dev::RedisServer;
use wasmq::plugins::LoadOptions;
use wasmq::sandbox::Limits;
use wasmq::{Client, NewTask, ProbationConfig, Summary, Worker};
use wasmq_testkit as kit;

use super::compare::median;
use super::drain::{drain_watching, with_plugins};

/// Arguments of `isolation`.
#[derive(Debug, clap::Args)]
pub struct IsolationArgs {
    /// Tasks of the well-behaved plugin per run (default: 15,000 echo
    /// tasks, 3,000 webhook calls).
    #[arg(long)]
    pub tasks: Option<usize>,
    /// The well-behaved plugin whose rate is measured.
    #[arg(long, value_enum, default_value_t = WellBehaved::Echo)]
    pub well_behaved: WellBehaved,
    /// How long the loopback server takes to answer a webhook call, ms.
    #[arg(long, default_value_t = 20)]
    pub webhook_ms: u64,
    /// Worker concurrency.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Fuel per attempt, for every plugin.
    #[arg(long, default_value_t = 20_000_000)]
    pub fuel: u64,
    /// Linear memory per instance, MiB, for every plugin.
    #[arg(long, default_value_t = 32)]
    pub memory_mib: u64,
    /// Only this hostile task type (default: all of them in turn, except
    /// `hostile:sleep`, which is measured only when named here).
    #[arg(long)]
    pub only: Option<String>,
    /// The worker's `--probation-strikes` (0: no probation, every hostile
    /// task runs beside the measured tasks). When not 0, each turn also runs
    /// the mixed phase without probation, for comparison.
    #[arg(long, default_value_t = ProbationConfig::default().strikes)]
    pub probation_strikes: u32,
    /// Turns (each: alone, with benign neighbours, with hostile ones);
    /// medians are reported.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// The worker's `--probation-lane`.
    #[arg(long, default_value_t = ProbationConfig::default().lane_capacity)]
    pub probation_lane: usize,
    /// The worker's `--probation-park`.
    #[arg(long, default_value_t = ProbationConfig::default().park_capacity)]
    pub probation_park: usize,
    /// Run without trials: a plugin not yet trusted runs with everyone
    /// else until it is on probation (the lane alone).
    #[arg(long)]
    pub no_trial: bool,
    /// End each mixed phase as soon as the measured tasks are done, and drop
    /// the hostile tasks still waiting (for long runs, where waiting for
    /// every hostile task to end would take minutes). Skips the phase
    /// without probation.
    #[arg(long)]
    pub cut_hostile: bool,
}

/// The well-behaved plugin of an `isolation` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WellBehaved {
    /// `echo`: returns its payload at once.
    Echo,
    /// `relay:fetch`: GETs a loopback URL that answers after
    /// `--webhook-ms`, as a handler calling a webhook does.
    Webhook,
}

impl WellBehaved {
    /// The task type measured.
    fn task_type(self) -> &'static str {
        match self {
            WellBehaved::Echo => "echo",
            WellBehaved::Webhook => "relay:fetch",
        }
    }

    /// The plugin's component.
    fn component(self) -> &'static str {
        match self {
            WellBehaved::Echo => kit::ECHO_COMPONENT,
            WellBehaved::Webhook => kit::RELAY_COMPONENT,
        }
    }

    /// Tasks per run unless `--tasks` says otherwise: a few seconds each.
    fn default_tasks(self) -> usize {
        match self {
            WellBehaved::Echo => 15_000,
            WellBehaved::Webhook => 3_000,
        }
    }
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
    (kit::HOSTILE_BIGMESSAGE_COMPONENT, "hostile:hugemessage"),
];

/// Hostile tasks measured only when `--only` names them: a task that
/// sleeps in a host call holds its slot until its timeout.
const ON_REQUEST: &[(&str, &str)] = &[(kit::HOSTILE_SLEEP_COMPONENT, "hostile:sleep")];

/// Runs the phases `repeats` times, prints each turn to stderr and the
/// medians as one JSON line.
pub async fn run(args: &IsolationArgs) -> anyhow::Result<()> {
    let redis = RedisServer::start().context("starting redis-server")?;
    let client = Client::connect(&redis.url()).await?;
    let options = LoadOptions {
        defaults: Limits {
            fuel: Some(args.fuel),
            timeout: Duration::from_millis(500),
            memory_bytes: args.memory_mib << 20,
            max_result_bytes: 64 << 10,
            max_log_bytes: 16 << 10,
            ..Limits::default()
        },
        ..LoadOptions::default()
    };
    let hostile_mix: Vec<(&str, &str)> = match args.only.as_deref() {
        None => HOSTILE.to_vec(),
        Some(only) => HOSTILE
            .iter()
            .chain(ON_REQUEST)
            .filter(|(_, task_type)| *task_type == only)
            .copied()
            .collect(),
    };
    anyhow::ensure!(
        !hostile_mix.is_empty(),
        "no hostile task type matches --only"
    );
    let well_behaved = args.well_behaved;
    let tasks = args.tasks.unwrap_or(well_behaved.default_tasks());
    let mut components = vec![well_behaved.component(), kit::GREETER_COMPONENT];
    components.extend(hostile_mix.iter().map(|(component, _)| *component));

    let webhook_url = match well_behaved {
        WellBehaved::Webhook => {
            let address = serve_webhook(Duration::from_millis(args.webhook_ms)).await?;
            format!("http://{address}/hook")
        }
        WellBehaved::Echo => String::new(),
    };
    let measured = |n: usize| {
        let payload = match well_behaved {
            WellBehaved::Echo => serde_json::json!({ "n": n }),
            WellBehaved::Webhook => serde_json::json!({ "url": webhook_url, "n": n }),
        };
        NewTask::new(well_behaved.task_type(), payload.to_string())
            .map(|task| task.retention(Duration::ZERO))
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

    // One neighbour after every three measured tasks: hostile, or
    // (`benign`) a well-behaved `greet` task that returns at once.
    let mixed = |benign: bool| -> anyhow::Result<(Vec<NewTask>, usize)> {
        let mut list = Vec::new();
        let mut neighbours = 0usize;
        for n in 0..tasks {
            list.push(measured(n)?);
            if n % 3 == 2 {
                let neighbour = if benign {
                    NewTask::new("greet", r#"{"name":"neighbour"}"#)?
                } else {
                    let (_, task_type) = hostile_mix[neighbours % hostile_mix.len()];
                    NewTask::new(task_type, "{}")?
                };
                list.push(neighbour.max_retry(0).retention(Duration::ZERO));
                neighbours += 1;
            }
        }
        Ok((list, neighbours))
    };
    let rate = |took: Duration| tasks as f64 / took.as_secs_f64();
    let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);

    // Each turn: alone, then mixed with the given probation rules,
    // then (when those put plugins on probation) mixed without probation.
    let mut strikes = vec![args.probation_strikes];
    if args.probation_strikes > 0 && !args.cut_hostile {
        strikes.push(0);
    }
    let mut alone_rates = Vec::new();
    let mut benign_rates = Vec::new();
    let mut mixed_rates = vec![Vec::new(); strikes.len()];
    // Per turn: with hostile over alone, and with hostile over with benign
    // (paired within a turn, so that a slow minute affects both sides).
    let mut ratios = vec![Vec::new(); strikes.len()];
    let mut ratios_to_benign = vec![Vec::new(); strikes.len()];
    let mut benign_ratios = Vec::new();
    let mut ended = vec![Vec::new(); strikes.len()];
    let mut hostile = 0;
    for turn in 1..=args.repeats {
        enqueue((0..tasks).map(measured).collect::<Result<_, _>>()?).await?;
        let (alone, _, summary) = drain(&client, &components, &options, args, tasks, 0).await?;
        anyhow::ensure!(summary.completed as usize == tasks, "alone: {summary:?}");
        alone_rates.push(rate(alone));

        let (list, benign) = mixed(true)?;
        enqueue(list).await?;
        let (with_benign, _, summary) =
            drain(&client, &components, &options, args, tasks, 0).await?;
        anyhow::ensure!(
            summary.completed as usize == tasks + benign,
            "with benign neighbours: {summary:?}"
        );
        benign_rates.push(rate(with_benign));
        benign_ratios.push(rate(with_benign) / rate(alone));
        let mut line = serde_json::json!({
            "turn": turn,
            "per_s_alone": rate(alone).round(),
            "per_s_with_benign": rate(with_benign).round(),
        });
        for (i, &strikes) in strikes.iter().enumerate() {
            let (list, count) = mixed(false)?;
            hostile = count;
            enqueue(list).await?;
            let (with_hostile, everything, summary) =
                drain(&client, &components, &options, args, tasks, strikes).await?;
            anyhow::ensure!(
                summary.completed as usize == tasks
                    && (args.cut_hostile || summary.failed as usize == hostile),
                "mixed: {summary:?}, expected {tasks} completed and {hostile} failed"
            );
            mixed_rates[i].push(rate(with_hostile));
            ratios[i].push(rate(with_hostile) / rate(alone));
            ratios_to_benign[i].push(rate(with_hostile) / rate(with_benign));
            ended[i].push(everything.as_secs_f64());
            line[format!("strikes_{strikes}")] = serde_json::json!({
                "per_s_with_hostile": rate(with_hostile).round(),
                "ratio": round(rate(with_hostile) / rate(alone), 3),
                "ratio_to_benign": round(rate(with_hostile) / rate(with_benign), 3),
                "all_ended_after_s": round(everything.as_secs_f64(), 2),
            });
        }
        eprintln!("{line}");
    }

    let alone = median(alone_rates);
    let with_benign = median(benign_rates);
    let mut results = serde_json::Map::new();
    for (i, strikes) in strikes.iter().enumerate() {
        let with_hostile = median(mixed_rates[i].clone());
        results.insert(
            format!("strikes_{strikes}"),
            serde_json::json!({
                "per_s_with_hostile": with_hostile.round(),
                "ratio": round(median(ratios[i].clone()), 3),
                "ratio_to_benign": round(median(ratios_to_benign[i].clone()), 3),
                "all_ended_after_s": round(median(ended[i].clone()), 2),
            }),
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "well_behaved": well_behaved.task_type(),
            "webhook_ms": (well_behaved == WellBehaved::Webhook).then_some(args.webhook_ms),
            "tasks": tasks,
            "hostile_tasks": hostile,
            "concurrency": args.concurrency,
            "fuel": args.fuel,
            "memory_mib": args.memory_mib,
            "hostile_types": hostile_mix.iter().map(|(_, task_type)| *task_type).collect::<Vec<_>>(),
            "repeats": args.repeats,
            "probation_park": args.probation_park,
            "probation_lane": args.probation_lane,
            "trial": !args.no_trial,
            "per_s_alone": alone.round(),
            "per_s_with_benign": with_benign.round(),
            "ratio_benign_to_alone": round(median(benign_ratios), 3),
            "with_hostile": results,
            "peak_rss_mb": super::drain::peak_rss_mb(),
        })
    );
    Ok(())
}

/// Runs a worker on queue `default` until it has no unfinished task.
/// Returns how long the `tasks` measured tasks took to complete (the rate
/// measured), how long everything took to end, and what the worker did.
async fn drain(
    client: &Client,
    components: &[&str],
    options: &LoadOptions,
    args: &IsolationArgs,
    tasks: usize,
    probation_strikes: u32,
) -> anyhow::Result<(Duration, Duration, Summary)> {
    let worker = Worker::builder(client.broker().clone())
        .concurrency(args.concurrency)
        .probation(ProbationConfig {
            strikes: probation_strikes,
            park_capacity: args.probation_park,
            lane_capacity: args.probation_lane,
            trial: !args.no_trial,
            ..ProbationConfig::default()
        });
    let (worker, _plugins) = with_plugins(worker, components, options.clone());
    let worker = worker.build()?;
    let metrics = worker.metrics().clone();
    let measured_completed =
        || metrics.processed_count("default", args.well_behaved.task_type()) as usize;
    // With --cut-hostile, the drain ends with the measured tasks and the
    // hostile tasks left are dropped.
    let cut = args.cut_hostile && probation_strikes > 0;
    let mut measured_took = None;
    let watching = drain_watching(client, worker, !cut, |elapsed| {
        if measured_took.is_none() && measured_completed() >= tasks {
            measured_took = Some(elapsed);
        }
        measured_took.is_some()
    });
    let (everything, summary) = watching.await?;
    if cut {
        super::drain::remove_queue(client, "default").await?;
    }
    let measured_took = measured_took.expect("set before the drain ends");
    Ok((measured_took, everything, summary))
}

/// Starts a loopback HTTP server that answers every request with `200 ok`
/// after `delay` (one request per connection, as the sandbox's HTTP client
/// makes them); returns its address. It runs until the process ends.
async fn serve_webhook(delay: Duration) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read up to the end of the request's head (a GET has no
                // body), then answer.
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match connection.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                tokio::time::sleep(delay).await;
                let response =
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = connection.write_all(response).await;
            });
        }
    });
    Ok(address)
}
