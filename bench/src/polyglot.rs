//! `polyglot`: the same no-op handler written with wasmq's Python SDK
//! against Celery (`-P threads`, its best pool for this), and with the
//! JavaScript SDK against BullMQ: same machine, same redis-server, same
//! run, each measurement in a child process of its own with Redis flushed
//! in between (as `compare` does).
//!
//! wasmq runs each task in a fresh instance of the plugin (a Python or
//! JavaScript runtime restored from its snapshot), held to its limits;
//! Celery and BullMQ run their handler in the worker process itself.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde_json::Value;

use crate::compare::{Runner, install_bullmq, median};

/// Arguments of `polyglot`.
#[derive(Debug, clap::Args)]
pub struct PolyglotArgs {
    /// No-op tasks per drain run.
    #[arg(long, default_value_t = 5_000)]
    pub tasks: usize,
    /// Worker concurrencies to sweep, comma-separated.
    #[arg(long, default_value = "10,50", value_delimiter = ',')]
    pub concurrency: Vec<usize>,
    /// Times each measurement is repeated (the systems taking turns); the
    /// median is reported.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// The BullMQ side (installed there with npm if missing).
    #[arg(long, default_value = "bench/bullmq")]
    pub bullmq: PathBuf,
    /// The Celery side (installed into .venv there with pip if missing).
    #[arg(long, default_value = "bench/celery")]
    pub celery: PathBuf,
}

/// The Python of a virtual environment in `dir` holding Celery and
/// redis-py, made with `python3 -m venv` and pip if missing.
fn install_celery(dir: &Path) -> anyhow::Result<PathBuf> {
    let python = dir.join(".venv/bin/python");
    if python.is_file() {
        return Ok(python);
    }
    eprintln!("installing Celery into {}/.venv (pip)", dir.display());
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(dir.join(".venv"))
        .status()
        .context("running python3 -m venv (Python 3 is needed for the Celery side)")?;
    anyhow::ensure!(status.success(), "python3 -m venv failed");
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "-r"])
        .arg(dir.join("requirements.txt"))
        .status()
        .context("running pip")?;
    anyhow::ensure!(status.success(), "pip install failed: is PyPI reachable?");
    Ok(python)
}

pub fn run(args: &PolyglotArgs) -> anyhow::Result<()> {
    install_bullmq(&args.bullmq)?;
    let python = install_celery(&args.celery)?;
    let runner = Runner::start(args.bullmq.clone())?;
    let tasks = args.tasks.to_string();
    let rate = |value: &Value| value["processed_per_s"].as_f64().unwrap_or(0.0);
    let rss = |value: &Value| value["peak_rss_mb"].as_f64().unwrap_or(0.0);
    let mut report = String::new();
    writeln!(
        report,
        "| concurrency | wasmq Python (tasks/s) | Celery -P threads (tasks/s) | Python ÷ Celery | wasmq JS (tasks/s) | BullMQ (jobs/s) | JS ÷ BullMQ | peak RSS: wasmq Python / Celery / wasmq JS / BullMQ |"
    )?;
    writeln!(
        report,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    for &concurrency in &args.concurrency {
        let c = concurrency.to_string();
        let mut runs: [Vec<Value>; 4] = Default::default();
        for _ in 0..args.repeats.max(1) {
            runs[0].push(runner.measure(runner.ours("drain").args([
                "--tasks",
                &tasks,
                "--concurrency",
                &c,
                "--handler",
                "python",
            ]))?);
            runs[1].push(
                runner.measure(
                    Command::new(&python)
                        .arg(args.celery.join("bench.py"))
                        .arg(runner.redis.port().to_string())
                        .args(["drain", "--tasks", &tasks, "--concurrency", &c]),
                )?,
            );
            runs[2].push(runner.measure(runner.ours("drain").args([
                "--tasks",
                &tasks,
                "--concurrency",
                &c,
                "--handler",
                "js",
            ]))?);
            runs[3].push(runner.measure(runner.peer("drain").args([
                "--tasks",
                &tasks,
                "--concurrency",
                &c,
                "--batch",
                "1000",
            ]))?);
        }
        let [py, celery, js, bull] = runs.map(|values| {
            let rates = median(values.iter().map(rate).collect());
            let peak = values.iter().map(rss).fold(0.0, f64::max);
            (rates, peak)
        });
        writeln!(
            report,
            "| {concurrency} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} | {:.0} / {:.0} / {:.0} / {:.0} MB |",
            py.0,
            celery.0,
            py.0 / celery.0,
            js.0,
            bull.0,
            js.0 / bull.0,
            py.1,
            celery.1,
            js.1,
            bull.1,
        )?;
    }
    println!("{report}");
    Ok(())
}
