//! `compare`: wasmq against BullMQ on the same machine, against the same
//! redis-server, in the same run, so that ratios mean something on a noisy
//! shared machine.
//!
//! Each measurement runs in a child process of its own (this binary's
//! `drain` and `latency`, or `node bench/bullmq/bench.mjs`), one after
//! another, with Redis flushed in between, so that each peak RSS is that
//! run's alone. Prints Markdown tables (the ones in BENCHMARKS.md) and
//! draws throughput against concurrency as an SVG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;
use wasmq::dev::RedisServer;

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
    /// Where to draw throughput against concurrency.
    #[arg(long, default_value = "docs/bench-throughput.svg")]
    pub chart: PathBuf,
    /// The BullMQ side (package.json and bench.mjs); its npm packages are
    /// installed there if missing.
    #[arg(long, default_value = "bench/bullmq")]
    pub bullmq: PathBuf,
}

/// One of the systems measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    WasmqWasm,
    WasmqNative,
    BullMq,
}

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

    fn latency(&self, system: System, rate: u64, seconds: u64) -> anyhow::Result<Value> {
        let (rate, seconds) = (rate.to_string(), seconds.to_string());
        let args = [
            "--rate",
            &rate,
            "--seconds",
            &seconds,
            "--concurrency",
            "50",
        ];
        match system {
            System::BullMq => self.measure(self.peer("latency").args(args)),
            _ => self.measure(self.ours("latency").args(args)),
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
    let enqueue = |index: usize| {
        median(
            drains
                .iter()
                .map(|(_, row)| row[index].enqueue_per_s)
                .collect(),
        )
    };

    // Latency at fixed rates: 1k/s, then half and 80% of each system's own
    // best drain rate (wasmq's with Wasm plugins).
    let mut latencies = Vec::new();
    for (system, max) in [(System::WasmqNative, best(0)), (System::BullMq, best(2))] {
        for rate in [1000.0, max * 0.5, max * 0.8] {
            let rate = (rate / 100.0).round() as u64 * 100;
            let mut runs = Vec::new();
            for _ in 0..repeats {
                runs.push(runner.latency(system, rate, args.latency_seconds)?);
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
    writeln!(report, "| system | rate (tasks/s) | p50 | p99 | max |")?;
    writeln!(report, "| :--- | ---: | ---: | ---: | ---: |")?;
    for (system, value) in &latencies {
        writeln!(
            report,
            "| {} | {} | {} ms | {} ms | {} ms |",
            if *system == System::BullMq {
                "BullMQ"
            } else {
                "wasmq"
            },
            value["rate"],
            value["p50_ms"],
            value["p99_ms"],
            value["max_ms"],
        )?;
    }
    println!("{report}");

    if let Some(parent) = args.chart.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.chart, chart(&drains))
        .with_context(|| format!("writing {}", args.chart.display()))?;
    eprintln!("chart written to {}", args.chart.display());
    Ok(())
}

/// Throughput against concurrency, one line per system, as an SVG.
fn chart(drains: &[(usize, [Drain; 3])]) -> String {
    let (width, height) = (640.0, 360.0);
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 50.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let max = drains
        .iter()
        .flat_map(|(_, row)| row.iter().map(|drain| drain.processed_per_s))
        .fold(1.0, f64::max);
    // A round top for the y axis: 1, 2 or 5 times a power of ten.
    let magnitude = 10f64.powf(max.log10().floor());
    let y_top = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|top| *top >= max)
        .unwrap_or(max);
    let x = |index: usize| {
        left + if drains.len() > 1 {
            plot_w * index as f64 / (drains.len() - 1) as f64
        } else {
            plot_w / 2.0
        }
    };
    let y = |value: f64| top + plot_h * (1.0 - value / y_top);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/><text x="{}" y="22" text-anchor="middle" font-size="14">No-op tasks drained per second against worker concurrency</text>"##,
        width / 2.0
    );
    for step in 0..=5 {
        let value = y_top * step as f64 / 5.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e2e8f0"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            width - right,
            left - 8.0,
            y(value) + 4.0,
            value as u64,
            y = y(value)
        );
    }
    for (index, (concurrency, _)) in drains.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{concurrency}</text>"#,
            x(index),
            height - bottom + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">concurrency</text>"#,
        left + plot_w / 2.0,
        height - 10.0
    );
    for (series, system) in System::ALL.iter().enumerate() {
        let points: Vec<String> = drains
            .iter()
            .enumerate()
            .map(|(index, (_, row))| {
                format!("{:.1},{:.1}", x(index), y(row[series].processed_per_s))
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2.5" points="{}"/>"#,
            system.colour(),
            points.join(" ")
        );
        for point in &points {
            let (px, py) = point.split_once(',').expect("x,y");
            let _ = writeln!(
                svg,
                r#"<circle cx="{px}" cy="{py}" r="3.5" fill="{}"/>"#,
                system.colour()
            );
        }
        let legend_y = top + 8.0 + 18.0 * series as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{:.1}" width="14" height="4" fill="{}"/><text x="{}" y="{:.1}">{}</text>"#,
            left + 12.0,
            legend_y - 4.0,
            system.colour(),
            left + 32.0,
            legend_y + 2.0,
            system.label()
        );
    }
    svg.push_str("</svg>\n");
    svg
}
