//! `compare`: wasmq against BullMQ on the same machine, against the same
//! redis-server, in the same run, so that ratios mean something on a noisy
//! shared machine.
//!
//! Each measurement runs in a child process of its own (this binary's
//! `drain` and `latency`, or `node bench/bullmq/bench.mjs`), one after
//! another, with Redis flushed in between, so that each peak RSS is that
//! run's alone. Prints Markdown tables (the ones in BENCHMARKS.md) and
//! draws the charts of docs/ (throughput against concurrency, p99 against
//! arrival rate, throughput against payload size).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;
use wasmq::dev::RedisServer;

use crate::chart::{Chart, Scale, Series};

/// Arguments of `compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// No-op tasks per drain run.
    #[arg(long, default_value_t = 20_000)]
    pub tasks: usize,
    /// Worker concurrencies to sweep, comma-separated.
    #[arg(long, default_value = "1,10,50,200", value_delimiter = ',')]
    pub concurrency: Vec<usize>,
    /// Seconds of each fixed-rate latency run.
    #[arg(long, default_value_t = 5)]
    pub latency_seconds: u64,
    /// Payload sizes (bytes) of the large-payload drains, comma-separated;
    /// each run drains at most 256 MB of payloads (and at most
    /// `--tasks`) at concurrency 50, with a handler that returns its
    /// payload as its result.
    #[arg(long, default_value = "1000,64000,1000000", value_delimiter = ',')]
    pub payload_sizes: Vec<usize>,
    /// Times each measurement is repeated (the systems taking turns); each
    /// figure reported is the median of its repeats (peak RSS: the
    /// largest).
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// The directory the charts are written into: bench-throughput.svg
    /// (drain rate against concurrency), bench-latency.svg (p99 against
    /// arrival rate) and bench-payloads.svg (drain rate against payload
    /// size).
    #[arg(long, default_value = "docs")]
    pub charts: PathBuf,
    /// The BullMQ side (package.json and bench.mjs); its npm packages are
    /// installed there if missing.
    #[arg(long, default_value = "bench/bullmq")]
    pub bullmq: PathBuf,
    /// Then also run these benchmarks, comma-separated, each with the same
    /// `--repeats` and its report printed after this one's: `webhook`
    /// (one outgoing HTTP request per task, against BullMQ with `fetch`;
    /// about 10 minutes with three repeats) and `curve` (CPU per task and
    /// RSS against concurrency, queue count and backlog; the backlog sweep
    /// to 5M pending tasks takes most of an hour).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "BENCHMARKS")]
    pub also: Vec<AlsoRun>,
}

/// A benchmark `compare --also` runs after its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AlsoRun {
    /// `wasmq-bench webhook`.
    Webhook,
    /// `wasmq-bench curve`.
    Curve,
}

/// One of the systems measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    WasmqWasm,
    WasmqNative,
    BullMq,
}

/// The systems of the latency runs: wasmq with the Wasm plugin (the goal's
/// figure), with the native handler (the queue's path alone), and BullMQ.
const LATENCY_SYSTEMS: [System; 3] = [System::WasmqWasm, System::WasmqNative, System::BullMq];

impl System {
    const ALL: [System; 3] = [System::WasmqWasm, System::WasmqNative, System::BullMq];

    fn label(self) -> &'static str {
        match self {
            System::WasmqWasm => "wasmq, Wasm plugin",
            System::WasmqNative => "wasmq, native handler",
            System::BullMq => "BullMQ",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            System::WasmqWasm => "#2b6cb0",
            System::WasmqNative => "#38a169",
            System::BullMq => "#c53030",
        }
    }
}

/// What one drain run measured.
#[derive(Debug, Clone, Copy)]
struct Drain {
    processed_per_s: f64,
    enqueue_per_s: f64,
    peak_rss_mb: f64,
}

pub(crate) struct Runner {
    pub(crate) redis: RedisServer,
    pub(crate) exe: PathBuf,
    pub(crate) bullmq: PathBuf,
}

impl Runner {
    /// Starts the private redis-server every measurement runs against;
    /// `bullmq` is the BullMQ side's directory (empty when there is none).
    pub(crate) fn start(bullmq: PathBuf) -> anyhow::Result<Runner> {
        Ok(Runner {
            redis: RedisServer::start().context("starting redis-server")?,
            exe: std::env::current_exe()?,
            bullmq,
        })
    }

    /// Empties the Redis every measurement runs against.
    pub(crate) fn flush(&self) -> anyhow::Result<()> {
        let status = Command::new("redis-cli")
            .args(["-p", &self.redis.port().to_string(), "flushall"])
            .stdout(std::process::Stdio::null())
            .status()
            .context("running redis-cli")?;
        anyhow::ensure!(status.success(), "redis-cli flushall failed");
        Ok(())
    }

    /// Runs one measurement and returns the JSON line it printed last.
    pub(crate) fn measure(&self, command: &mut Command) -> anyhow::Result<Value> {
        self.flush()?;
        let output = command
            .output()
            .with_context(|| format!("running {command:?}"))?;
        if !output.status.success() {
            bail!(
                "{command:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .rev()
            .find(|line| line.starts_with('{'))
            .with_context(|| format!("{command:?} printed no result: {stdout}"))?;
        let value: Value = serde_json::from_str(line)?;
        eprintln!("{value}");
        Ok(value)
    }

    pub(crate) fn ours(&self, subcommand: &str) -> Command {
        let mut command = Command::new(&self.exe);
        command.arg(subcommand).args(["--redis", &self.redis.url()]);
        command
    }

    pub(crate) fn peer(&self, mode: &str) -> Command {
        let mut command = Command::new("node");
        command
            .arg(self.bullmq.join("bench.mjs"))
            .arg(self.redis.port().to_string())
            .arg(mode);
        command
    }

    fn drain(
        &self,
        system: System,
        tasks: usize,
        concurrency: usize,
        payload_bytes: usize,
    ) -> anyhow::Result<Drain> {
        let (tasks, concurrency) = (tasks.to_string(), concurrency.to_string());
        let payload_bytes = payload_bytes.to_string();
        let value = match system {
            System::WasmqWasm | System::WasmqNative => self.measure(
                self.ours("drain")
                    .args(["--tasks", &tasks, "--concurrency", &concurrency])
                    .args(["--payload-bytes", &payload_bytes])
                    .args([
                        "--handler",
                        if system == System::WasmqWasm {
                            "wasm"
                        } else {
                            "native"
                        },
                    ]),
            )?,
            System::BullMq => self.measure(self.peer("drain").args([
                "--tasks",
                &tasks,
                "--concurrency",
                &concurrency,
                "--batch",
                "1000",
                "--payload",
                &payload_bytes,
            ]))?,
        };
        Ok(Drain {
            processed_per_s: number(&value, "processed_per_s")?,
            enqueue_per_s: number(&value, "enqueue_per_s")?,
            peak_rss_mb: number(&value, "peak_rss_mb")?,
        })
    }

    fn latency(
        &self,
        system: System,
        rate: u64,
        seconds: u64,
        concurrency: usize,
    ) -> anyhow::Result<Value> {
        let (rate, seconds) = (rate.to_string(), seconds.to_string());
        let concurrency = concurrency.to_string();
        let args = [
            "--rate",
            &rate,
            "--seconds",
            &seconds,
            "--concurrency",
            &concurrency,
        ];
        match system {
            System::BullMq => self.measure(self.peer("latency").args(args)),
            System::WasmqWasm => {
                self.measure(self.ours("latency").args(args).args(["--handler", "wasm"]))
            }
            System::WasmqNative => self.measure(
                self.ours("latency")
                    .args(args)
                    .args(["--handler", "native"]),
            ),
        }
    }
}

pub(crate) fn install_bullmq(dir: &Path) -> anyhow::Result<()> {
    if dir.join("node_modules/bullmq").exists() {
        return Ok(());
    }
    eprintln!("installing BullMQ in {} (npm install)", dir.display());
    // `npm install` takes the versions package-lock.json pins. Not `npm
    // ci`: npm 11 refuses the lock file it writes itself for BullMQ, whose
    // optional per-platform packages it leaves out of the lock and then
    // reports as missing from it.
    let status = Command::new("npm")
        .args(["install", "--no-save", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .context("running npm (Node.js and npm are needed for the BullMQ side)")?;
    anyhow::ensure!(
        status.success(),
        "npm install failed in {}: is the npm registry reachable?",
        dir.display()
    );
    Ok(())
}

/// The median rates of repeated drain runs, and their largest peak RSS.
fn median_drain(runs: Vec<Drain>) -> Drain {
    Drain {
        processed_per_s: median(runs.iter().map(|run| run.processed_per_s).collect()),
        enqueue_per_s: median(runs.iter().map(|run| run.enqueue_per_s).collect()),
        peak_rss_mb: runs.iter().map(|run| run.peak_rss_mb).fold(0.0, f64::max),
    }
}

/// The number `key` of a measurement's JSON line.
pub(crate) fn number(value: &Value, key: &str) -> anyhow::Result<f64> {
    value[key]
        .as_f64()
        .with_context(|| format!("no {key} in {value}"))
}

/// The median of some figures (the upper middle one for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    install_bullmq(&args.bullmq)?;
    let runner = Runner::start(args.bullmq.clone())?;

    // Drain sweep: the three systems taking turns at each concurrency.
    let repeats = args.repeats.max(1);
    let mut drains: Vec<(usize, [Drain; 3])> = Vec::new();
    for &concurrency in &args.concurrency {
        let mut runs: [Vec<Drain>; 3] = Default::default();
        for _ in 0..repeats {
            for (index, system) in System::ALL.into_iter().enumerate() {
                runs[index].push(runner.drain(system, args.tasks, concurrency, 0)?);
            }
        }
        drains.push((concurrency, runs.map(median_drain)));
    }

    // Large payloads: the Wasm plugin and BullMQ, at concurrency 50.
    let mut payload_drains: Vec<(usize, usize, [Drain; 2])> = Vec::new();
    for &size in &args.payload_sizes {
        let tasks = (256_000_000 / size.max(1)).clamp(200, args.tasks);
        let mut runs: [Vec<Drain>; 2] = Default::default();
        for _ in 0..repeats {
            for (index, system) in [System::WasmqWasm, System::BullMq].into_iter().enumerate() {
                runs[index].push(runner.drain(system, tasks, 50, size)?);
            }
        }
        payload_drains.push((size, tasks, runs.map(median_drain)));
    }
    let best = |index: usize| {
        drains
            .iter()
            .map(|(_, row)| row[index].processed_per_s)
            .fold(0.0, f64::max)
    };
    // The concurrency of a system's best drain rate.
    let best_concurrency = |index: usize| {
        drains
            .iter()
            .max_by(|a, b| {
                a.1[index]
                    .processed_per_s
                    .total_cmp(&b.1[index].processed_per_s)
            })
            .map_or(50, |(concurrency, _)| *concurrency)
    };
    let enqueue = |index: usize| {
        median(
            drains
                .iter()
                .map(|(_, row)| row[index].enqueue_per_s)
                .collect(),
        )
    };

    // Latency at fixed rates: 1k/s, then half and 80% of each system's own
    // best drain rate, at the concurrency that reached it (wasmq's with the
    // Wasm plugin, for both of its handlers).
    let mut latencies = Vec::new();
    for system in LATENCY_SYSTEMS {
        let best_of = if system == System::BullMq { 2 } else { 0 };
        let (max, concurrency) = (best(best_of), best_concurrency(best_of));
        for rate in [1000.0, max * 0.5, max * 0.8] {
            let rate = (rate / 100.0).round() as u64 * 100;
            let mut runs = Vec::new();
            for _ in 0..repeats {
                runs.push(runner.latency(system, rate, args.latency_seconds, concurrency)?);
            }
            // The run with the median p99.
            runs.sort_by(|a, b| {
                let p99 = |run: &Value| run["p99_ms"].as_f64().unwrap_or(f64::INFINITY);
                p99(a).total_cmp(&p99(b))
            });
            latencies.push((system, runs.swap_remove(runs.len() / 2)));
        }
    }

    let mut report = String::new();
    writeln!(
        report,
        "| concurrency | wasmq, Wasm plugin (tasks/s) | wasmq, native handler (tasks/s) | BullMQ (jobs/s) | Wasm ÷ BullMQ | Wasm ÷ native | wasmq Wasm peak RSS | BullMQ peak RSS |"
    )?;
    writeln!(
        report,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    for (concurrency, [wasm, native, bull]) in &drains {
        writeln!(
            report,
            "| {concurrency} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} MB | {:.0} MB |",
            wasm.processed_per_s,
            native.processed_per_s,
            bull.processed_per_s,
            wasm.processed_per_s / bull.processed_per_s,
            wasm.processed_per_s / native.processed_per_s,
            wasm.peak_rss_mb,
            bull.peak_rss_mb,
        )?;
    }
    writeln!(report)?;
    writeln!(
        report,
        "Best drain rate: wasmq with Wasm {:.0}/s, BullMQ {:.0}/s, ratio {:.2}.",
        best(0),
        best(2),
        best(0) / best(2)
    )?;
    writeln!(
        report,
        "Bulk enqueue (batches of 1,000, median over the runs): wasmq {:.0}/s, BullMQ addBulk {:.0}/s, ratio {:.2}.",
        enqueue(0),
        enqueue(2),
        enqueue(0) / enqueue(2)
    )?;
    if !payload_drains.is_empty() {
        writeln!(report)?;
        writeln!(
            report,
            "| payload | tasks | wasmq, Wasm plugin (tasks/s) | BullMQ (jobs/s) | Wasm ÷ BullMQ | wasmq peak RSS | BullMQ peak RSS |"
        )?;
        writeln!(report, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")?;
        for (size, tasks, [wasm, bull]) in &payload_drains {
            writeln!(
                report,
                "| {size} B | {tasks} | {:.0} | {:.0} | {:.2} | {:.0} MB | {:.0} MB |",
                wasm.processed_per_s,
                bull.processed_per_s,
                wasm.processed_per_s / bull.processed_per_s,
                wasm.peak_rss_mb,
                bull.peak_rss_mb,
            )?;
        }
    }
    writeln!(report)?;
    writeln!(
        report,
        "| system | concurrency | rate (tasks/s) | p50 | p99 | max |"
    )?;
    writeln!(report, "| :--- | ---: | ---: | ---: | ---: | ---: |")?;
    for (system, value) in &latencies {
        writeln!(
            report,
            "| {} | {} | {} | {} ms | {} ms | {} ms |",
            system.label(),
            value["concurrency"],
            value["rate"],
            value["p50_ms"],
            value["p99_ms"],
            value["max_ms"],
        )?;
    }
    if let Some((_, half)) = latencies
        .iter()
        .filter(|(system, _)| *system == System::WasmqWasm)
        .nth(1)
    {
        writeln!(report)?;
        writeln!(
            report,
            "Enqueue-to-start p99 at half the best rate, with the Wasm plugin: {} ms at {}/s (goal: under 2 ms).",
            half["p99_ms"], half["rate"]
        )?;
    }
    println!("{report}");

    std::fs::create_dir_all(&args.charts)
        .with_context(|| format!("creating {}", args.charts.display()))?;
    let charts = [
        ("bench-throughput.svg", Some(throughput_chart(&drains))),
        ("bench-latency.svg", Some(latency_chart(&latencies))),
        (
            "bench-payloads.svg",
            (!payload_drains.is_empty()).then(|| payload_chart(&payload_drains)),
        ),
    ];
    for (name, chart) in charts {
        let Some(chart) = chart else { continue };
        let path = args.charts.join(name);
        std::fs::write(&path, chart.svg())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("chart written to {}", path.display());
    }

    for also in &args.also {
        let (subcommand, extra): (&str, &[&std::ffi::OsStr]) = match also {
            AlsoRun::Webhook => ("webhook", &["--bullmq".as_ref(), args.bullmq.as_os_str()]),
            AlsoRun::Curve => ("curve", &[]),
        };
        eprintln!("running {subcommand}");
        let status = Command::new(&runner.exe)
            .arg(subcommand)
            .args(["--repeats", &repeats.to_string()])
            .args(extra)
            .status()
            .with_context(|| format!("running {subcommand}"))?;
        anyhow::ensure!(status.success(), "{subcommand} failed ({status})");
    }
    Ok(())
}

/// Drain rate against concurrency, one line per system.
fn throughput_chart(drains: &[(usize, [Drain; 3])]) -> Chart {
    Chart {
        title: "No-op tasks drained per second against worker concurrency".into(),
        x_label: "concurrency".into(),
        x_scale: Scale::Categories,
        x_categories: drains
            .iter()
            .map(|(concurrency, _)| concurrency.to_string())
            .collect(),
        y_label: "tasks/s".into(),
        y_scale: Scale::Linear,
        series: drain_series(&System::ALL, drains.iter().map(|(_, row)| &row[..])),
    }
}

/// Enqueue-to-start p99 against the arrival rate, one line per system
/// (logarithmic: the p99 of an overloaded queue is hundreds of times that
/// of one keeping up).
fn latency_chart(latencies: &[(System, Value)]) -> Chart {
    Chart {
        title: "Enqueue-to-start p99 against arrival rate".into(),
        x_label: "tasks enqueued per second".into(),
        x_scale: Scale::Linear,
        x_categories: Vec::new(),
        y_label: "p99 (ms)".into(),
        y_scale: Scale::Log,
        series: LATENCY_SYSTEMS
            .iter()
            .map(|system| Series {
                label: system.label().into(),
                colour: system.colour(),
                points: latencies
                    .iter()
                    .filter(|(measured, _)| measured == system)
                    .filter_map(|(_, value)| {
                        Some((value["rate"].as_f64()?, value["p99_ms"].as_f64()?))
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Drain rate against payload size, the Wasm plugin and BullMQ
/// (logarithmic: both rates fall a hundredfold from 1 KB to 1 MB).
fn payload_chart(payload_drains: &[(usize, usize, [Drain; 2])]) -> Chart {
    Chart {
        title: "Tasks drained per second against payload size (concurrency 50)".into(),
        x_label: "payload".into(),
        x_scale: Scale::Categories,
        x_categories: payload_drains
            .iter()
            .map(|(size, _, _)| human_bytes(*size))
            .collect(),
        y_label: "tasks/s".into(),
        y_scale: Scale::Log,
        series: drain_series(
            &[System::WasmqWasm, System::BullMq],
            payload_drains.iter().map(|(_, _, row)| &row[..]),
        ),
    }
}

/// One line per system of drain rates, one point per category: `rows`
/// holds each category's drains, in the order of `systems`.
fn drain_series<'a>(
    systems: &[System],
    rows: impl Iterator<Item = &'a [Drain]> + Clone,
) -> Vec<Series> {
    systems
        .iter()
        .enumerate()
        .map(|(index, system)| Series {
            label: system.label().into(),
            colour: system.colour(),
            points: rows
                .clone()
                .enumerate()
                .map(|(x, row)| (x as f64, row[index].processed_per_s))
                .collect(),
        })
        .collect()
}

/// `1000` as "1 KB", `64000` as "64 KB", `1000000` as "1 MB".
fn human_bytes(bytes: usize) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{} KB", bytes / 1_000),
        _ => format!("{} MB", bytes / 1_000_000),
    }
}
