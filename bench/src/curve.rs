//! `curve`: how wasmq's cost grows along three axes, one sweep each.
//!
//! - Concurrency: the `echo` Wasm plugin drained (`drain --handler wasm`)
//!   at each worker concurrency: tasks/s, the worker's and Redis's CPU per
//!   task, the worker's peak RSS.
//! - Queues: the same drain with the tasks spread evenly over N queues and
//!   the worker serving all N: tasks/s, CPU per task, Redis commands per
//!   task.
//! - Backlog: Redis filled with a pending backlog of echo tasks (batches of
//!   1,000): the enqueue rate over the whole fill, Redis memory per pending
//!   task, then the rate of a drain of 20,000 tasks off the top, at that
//!   depth.
//!
//! The drains of the first two sweeps each run in a child process of their
//! own (this binary's `drain`), so that each peak RSS is that run's alone;
//! the backlog sweep runs its worker in this process. Everything runs
//! against one private redis-server (no persistence, no memory limit),
//! flushed before each measurement. Prints one JSON line per point, then a
//! Markdown table per sweep.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use wasmq::plugins::LoadOptions;
use wasmq::{Client, DEFAULT_QUEUE, NewTask, Worker};

use crate::compare::{Runner, median, number};
use crate::drain::{
    drain_watching, enqueue_all, own_cpu_seconds, redis_cpu_seconds, redis_info, with_plugins,
};

/// Tasks per enqueue call when filling a backlog.
const ENQUEUE_BATCH: usize = 1000;

/// Tasks drained off the top of each backlog.
const DRAINED_OFF_THE_TOP: usize = 20_000;

/// Above this much Redis memory per pending task, the report says so.
const LARGE_TASK_BYTES: f64 = 1024.0;

/// Arguments of `curve`.
#[derive(Debug, clap::Args)]
pub struct CurveArgs {
    /// Worker concurrencies of the concurrency sweep, comma-separated.
    #[arg(long, default_value = "1,10,100,500,1000,2000", value_delimiter = ',')]
    pub concurrency: Vec<usize>,
    /// Queue counts of the queue sweep, comma-separated.
    #[arg(long, default_value = "1,10,100,1000", value_delimiter = ',')]
    pub queues: Vec<usize>,
    /// Pending backlogs of the backlog sweep, in tasks, comma-separated.
    #[arg(
        long,
        default_value = "10000,100000,1000000,5000000",
        value_delimiter = ','
    )]
    pub backlogs: Vec<usize>,
    /// Tasks per drain of the concurrency and queue sweeps.
    #[arg(long, default_value_t = 20_000)]
    pub tasks: usize,
    /// Worker concurrency of the queue and backlog sweeps.
    #[arg(long, default_value_t = 50)]
    pub fixed_concurrency: usize,
    /// Times each point is measured; each figure is the median of its
    /// repeats (peak RSS: the largest).
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// Run this sweep alone.
    #[arg(long, value_enum)]
    pub only: Option<Sweep>,
}

/// One of the sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sweep {
    /// Worker concurrency.
    Concurrency,
    /// Queues one worker serves.
    Queues,
    /// Pending tasks waiting in Redis.
    Backlog,
}

/// What a drain in a child process measured (over repeats: the medians,
/// and the largest peak RSS).
#[derive(Debug, Clone, Copy, Default)]
struct DrainPoint {
    per_s: f64,
    worker_cpu_us: f64,
    redis_cpu_us: f64,
    redis_commands: f64,
    peak_rss_mb: f64,
}

/// What one backlog measured (over repeats: the medians).
#[derive(Debug, Clone, Copy, Default)]
struct BacklogPoint {
    enqueue_per_s: f64,
    bytes_per_task: f64,
    drained: usize,
    drain_per_s: f64,
    worker_cpu_us: f64,
    redis_cpu_us: f64,
}

pub async fn run(args: &CurveArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.tasks > 0, "--tasks must be at least 1");
    anyhow::ensure!(
        args.backlogs.iter().all(|&backlog| backlog > 0),
        "every backlog of --backlogs must be at least 1 task"
    );
    // No BullMQ side here.
    let runner = Runner::start(PathBuf::new())?;
    let runs = |sweep| args.only.is_none_or(|only| only == sweep);
    let mut report = String::new();
    if runs(Sweep::Concurrency) {
        let points = concurrency_sweep(&runner, args)?;
        report += &concurrency_table(args, &points);
    }
    if runs(Sweep::Queues) {
        let points = queue_sweep(&runner, args)?;
        report += &queue_table(args, &points);
    }
    if runs(Sweep::Backlog) {
        let (points, notes) = backlog_sweep(&runner, args).await?;
        report += &backlog_table(args, &points, &notes);
    }
    print!("{report}");
    Ok(())
}

/// The concurrency sweep: one point per `--concurrency`.
fn concurrency_sweep(
    runner: &Runner,
    args: &CurveArgs,
) -> anyhow::Result<Vec<(usize, DrainPoint)>> {
    let mut points = Vec::new();
    for &concurrency in &args.concurrency {
        let point = drain_point(runner, args, concurrency, 1)?;
        print_point("concurrency", &[("concurrency", concurrency)], args, &point);
        points.push((concurrency, point));
    }
    Ok(points)
}

/// The queue sweep: one point per `--queues`, at `--fixed-concurrency`.
fn queue_sweep(runner: &Runner, args: &CurveArgs) -> anyhow::Result<Vec<(usize, DrainPoint)>> {
    let mut points = Vec::new();
    for &queues in &args.queues {
        let point = drain_point(runner, args, args.fixed_concurrency, queues)?;
        let at = [("queues", queues), ("concurrency", args.fixed_concurrency)];
        print_point("queues", &at, args, &point);
        points.push((queues, point));
    }
    Ok(points)
}

/// `--repeats` drains of `--tasks` echo tasks spread over `queues` queues,
/// each in a child `drain` process.
fn drain_point(
    runner: &Runner,
    args: &CurveArgs,
    concurrency: usize,
    queues: usize,
) -> anyhow::Result<DrainPoint> {
    let mut runs = Vec::new();
    for _ in 0..args.repeats.max(1) {
        let value = runner.measure(runner.ours("drain").args([
            "--handler",
            "wasm",
            "--tasks",
            &args.tasks.to_string(),
            "--concurrency",
            &concurrency.to_string(),
            "--queues",
            &queues.to_string(),
        ]))?;
        runs.push(DrainPoint {
            per_s: number(&value, "processed_per_s")?,
            worker_cpu_us: number(&value, "worker_cpu_us_per_task")?,
            redis_cpu_us: number(&value, "redis_cpu_us_per_task")?,
            redis_commands: number(&value, "redis_commands_per_task")?,
            peak_rss_mb: number(&value, "peak_rss_mb")?,
        });
    }
    let of = |pick: fn(&DrainPoint) -> f64| median(runs.iter().map(pick).collect());
    Ok(DrainPoint {
        per_s: of(|run| run.per_s),
        worker_cpu_us: of(|run| run.worker_cpu_us),
        redis_cpu_us: of(|run| run.redis_cpu_us),
        redis_commands: of(|run| run.redis_commands),
        peak_rss_mb: runs.iter().map(|run| run.peak_rss_mb).fold(0.0, f64::max),
    })
}

/// Prints a drain point's JSON line: `sweep`, what identifies the point
/// (`at`), and what it measured.
fn print_point(sweep: &str, at: &[(&str, usize)], args: &CurveArgs, point: &DrainPoint) {
    let mut line = json!({
        "sweep": sweep,
        "tasks": args.tasks,
        "repeats": args.repeats.max(1),
        "processed_per_s": point.per_s,
        "worker_cpu_us_per_task": point.worker_cpu_us,
        "redis_cpu_us_per_task": point.redis_cpu_us,
        "redis_commands_per_task": point.redis_commands,
        "peak_rss_mb": point.peak_rss_mb,
    });
    for (key, value) in at {
        line[*key] = json!(value);
    }
    println!("{line}");
}

/// The backlog sweep: one point per `--backlogs`, with notes on backlogs
/// left out because Redis would not have the memory for them.
async fn backlog_sweep(
    runner: &Runner,
    args: &CurveArgs,
) -> anyhow::Result<(Vec<(usize, BacklogPoint)>, Vec<String>)> {
    let url = runner.redis.url();
    no_memory_limit(&url).await?;
    let (mut points, mut notes) = (Vec::new(), Vec::new());
    let mut bytes_per_task: Option<f64> = None;
    for &backlog in &args.backlogs {
        if let Some(note) = bytes_per_task.and_then(|bytes| too_large(backlog, bytes)) {
            eprintln!("{note}");
            notes.push(note);
            continue;
        }
        let mut runs = Vec::new();
        for _ in 0..args.repeats.max(1) {
            runs.push(backlog_once(runner, backlog, args.fixed_concurrency).await?);
        }
        let of = |pick: fn(&BacklogPoint) -> f64| median(runs.iter().map(pick).collect());
        let point = BacklogPoint {
            enqueue_per_s: of(|run| run.enqueue_per_s),
            bytes_per_task: of(|run| run.bytes_per_task),
            drained: runs[0].drained,
            drain_per_s: of(|run| run.drain_per_s),
            worker_cpu_us: of(|run| run.worker_cpu_us),
            redis_cpu_us: of(|run| run.redis_cpu_us),
        };
        bytes_per_task = Some(bytes_per_task.map_or(point.bytes_per_task, |bytes| {
            bytes.max(point.bytes_per_task)
        }));
        println!(
            "{}",
            json!({
                "sweep": "backlog",
                "backlog": backlog,
                "concurrency": args.fixed_concurrency,
                "repeats": args.repeats.max(1),
                "enqueue_per_s": point.enqueue_per_s,
                "redis_bytes_per_task": point.bytes_per_task,
                "redis_memory_mb": (point.bytes_per_task * backlog as f64 / 1e6).round(),
                "drained": point.drained,
                "processed_per_s": point.drain_per_s,
                "worker_cpu_us_per_task": point.worker_cpu_us,
                "redis_cpu_us_per_task": point.redis_cpu_us,
            })
        );
        points.push((backlog, point));
    }
    runner.flush()?;
    Ok((points, notes))
}

/// Fills a flushed Redis with `backlog` pending echo tasks, then drains
/// [`DRAINED_OFF_THE_TOP`] of them (all, for a smaller backlog) with a
/// worker in this process.
async fn backlog_once(
    runner: &Runner,
    backlog: usize,
    concurrency: usize,
) -> anyhow::Result<BacklogPoint> {
    runner.flush()?;
    let url = runner.redis.url();
    // A new client for each fill: one remembers the queues it registered,
    // which the flush forgot.
    let client = Client::connect(&url).await?;
    let memory_before = used_memory(&url)?;
    let fill_time = enqueue_all(&client, backlog, ENQUEUE_BATCH, |_| {
        Ok(NewTask::new("echo", "{}")?
            .retention(Duration::ZERO)
            .max_retry(0))
    })
    .await
    .with_context(|| format!("filling a backlog of {backlog} tasks"))?;
    let memory = used_memory(&url)?.saturating_sub(memory_before);
    let pending = client.queue_counts(DEFAULT_QUEUE).await?.pending;
    anyhow::ensure!(
        pending == backlog as u64,
        "{pending} tasks pending after enqueuing {backlog}: did Redis evict keys?"
    );

    let drained = backlog.min(DRAINED_OFF_THE_TOP);
    let worker = Worker::builder(client.broker().clone()).concurrency(concurrency);
    let (worker, _plugins) = with_plugins(
        worker,
        &[wasmq_testkit::ECHO_COMPONENT],
        LoadOptions::default(),
    );
    let worker = worker.build()?;
    let metrics = worker.metrics().clone();
    let (redis_cpu_before, cpu_before) = (redis_cpu_seconds(&url), own_cpu_seconds());
    let (took, _) = drain_watching(&client, worker, false, |_| {
        metrics.processed_count(DEFAULT_QUEUE, "echo") as usize >= drained
    })
    .await?;
    let per_task_us = |seconds: f64| (seconds * 1e6 / drained as f64 * 10.0).round() / 10.0;
    Ok(BacklogPoint {
        enqueue_per_s: (backlog as f64 / fill_time.as_secs_f64()).round(),
        bytes_per_task: (memory as f64 / backlog as f64).round(),
        drained,
        drain_per_s: (drained as f64 / took.as_secs_f64()).round(),
        worker_cpu_us: per_task_us(own_cpu_seconds() - cpu_before),
        redis_cpu_us: per_task_us(redis_cpu_seconds(&url) - redis_cpu_before),
    })
}

/// Makes sure Redis has no `maxmemory`, so that a large backlog is never
/// evicted.
async fn no_memory_limit(url: &str) -> anyhow::Result<()> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query_async::<()>(&mut conn)
        .await
        .context("CONFIG SET maxmemory 0")?;
    let (_, limit): (String, u64) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut conn)
        .await
        .context("CONFIG GET maxmemory")?;
    anyhow::ensure!(limit == 0, "Redis kept maxmemory {limit}");
    Ok(())
}

/// Redis's `used_memory` (bytes), from `INFO memory`.
fn used_memory(url: &str) -> anyhow::Result<u64> {
    redis_info(url, "memory")
        .into_iter()
        .find(|(name, _)| name == "used_memory")
        .and_then(|(_, value)| value.parse().ok())
        .with_context(|| format!("no used_memory in INFO memory of {url}"))
}

/// Why a backlog of `backlog` tasks at `bytes_per_task` should not be
/// filled: it would take more than half the memory available now. `None`
/// when it fits.
fn too_large(backlog: usize, bytes_per_task: f64) -> Option<String> {
    let available = memory_available_bytes()?;
    let needed = backlog as f64 * bytes_per_task;
    (needed > available as f64 / 2.0).then(|| {
        format!(
            "backlog {} left out: at {bytes_per_task:.0} B per task it needs {:.1} GB of Redis memory, more than half the {:.1} GB available",
            grouped(backlog),
            needed / 1e9,
            available as f64 / 1e9
        )
    })
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn memory_available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn concurrency_table(args: &CurveArgs, points: &[(usize, DrainPoint)]) -> String {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\nConcurrency: {} echo tasks (Wasm plugin, a fresh instance each), one worker process per point.\n",
        grouped(args.tasks)
    );
    let _ = writeln!(
        table,
        "| concurrency | tasks/s | worker CPU/task | Redis CPU/task | worker peak RSS |"
    );
    let _ = writeln!(table, "| ---: | ---: | ---: | ---: | ---: |");
    for (concurrency, point) in points {
        let _ = writeln!(
            table,
            "| {concurrency} | {:.0} | {:.0} µs | {:.0} µs | {:.0} MB |",
            point.per_s, point.worker_cpu_us, point.redis_cpu_us, point.peak_rss_mb
        );
    }
    table
}

fn queue_table(args: &CurveArgs, points: &[(usize, DrainPoint)]) -> String {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\nQueues: {} echo tasks spread evenly over N queues, one worker serving all N at concurrency {}.\n",
        grouped(args.tasks),
        args.fixed_concurrency
    );
    let _ = writeln!(
        table,
        "| queues | tasks/s | worker CPU/task | Redis CPU/task | Redis commands/task |"
    );
    let _ = writeln!(table, "| ---: | ---: | ---: | ---: | ---: |");
    for (queues, point) in points {
        let _ = writeln!(
            table,
            "| {queues} | {:.0} | {:.0} µs | {:.0} µs | {:.1} |",
            point.per_s, point.worker_cpu_us, point.redis_cpu_us, point.redis_commands
        );
    }
    table
}

fn backlog_table(args: &CurveArgs, points: &[(usize, BacklogPoint)], notes: &[String]) -> String {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\nBacklog: pending echo tasks enqueued in batches of {}, then {} drained off the top at concurrency {} (worker in the benchmark's process).\n",
        grouped(ENQUEUE_BATCH),
        grouped(DRAINED_OFF_THE_TOP),
        args.fixed_concurrency
    );
    let _ = writeln!(
        table,
        "| backlog | enqueue (tasks/s) | Redis memory per task | Redis memory | drain at this depth (tasks/s) | worker CPU/task | Redis CPU/task |"
    );
    let _ = writeln!(table, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (backlog, point) in points {
        let _ = writeln!(
            table,
            "| {} | {:.0} | {:.0} B | {:.0} MB | {:.0} | {:.0} µs | {:.0} µs |",
            grouped(*backlog),
            point.enqueue_per_s,
            point.bytes_per_task,
            point.bytes_per_task * *backlog as f64 / 1e6,
            point.drain_per_s,
            point.worker_cpu_us,
            point.redis_cpu_us,
        );
    }
    for note in notes.iter().chain(&backlog_notes(points)) {
        let _ = writeln!(table, "\n{note}");
    }
    table
}

/// What a reader should notice in the backlog sweep: memory per task
/// above [`LARGE_TASK_BYTES`], and rates at the deepest backlog more than
/// 20% below those at the shallowest.
fn backlog_notes(points: &[(usize, BacklogPoint)]) -> Vec<String> {
    let mut notes = Vec::new();
    let largest = points
        .iter()
        .max_by(|(_, a), (_, b)| a.bytes_per_task.total_cmp(&b.bytes_per_task));
    if let Some((backlog, point)) = largest
        && point.bytes_per_task > LARGE_TASK_BYTES
    {
        notes.push(format!(
            "Memory per pending task is large: {:.0} B at a backlog of {} (a `{{}}` payload), {:.1} GB for 5,000,000 tasks.",
            point.bytes_per_task,
            grouped(*backlog),
            point.bytes_per_task * 5e6 / 1e9
        ));
    }
    if let (Some((shallow, first)), Some((deep, last))) = (points.first(), points.last()) {
        for (what, before, after) in [
            ("enqueue", first.enqueue_per_s, last.enqueue_per_s),
            ("drain", first.drain_per_s, last.drain_per_s),
        ] {
            if after < before * 0.8 {
                notes.push(format!(
                    "The {what} rate falls with the backlog: {after:.0}/s at {} against {before:.0}/s at {}.",
                    grouped(*deep),
                    grouped(*shallow)
                ));
            }
        }
    }
    notes
}

/// `n` with commas between groups of three digits.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
