//! `traces`: what tracing costs a worker per task. Runs `drain` (no-op
//! `echo` tasks, each carrying a producer's trace context) in child
//! processes, alternately with tracing off and exporting over OTLP to the
//! test kit's receiver in this process (so the receiver's own work is not
//! counted), and compares the worker's CPU per task; checks that every
//! span arrived.

use std::fmt::Write as _;

use anyhow::Context;
use serde_json::Value;
use wasmq_testkit::otlp::Receiver;

/// A producer's context every task carries.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[derive(Debug, clap::Args)]
pub struct TracesArgs {
    /// Tasks per run.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// Worker concurrency.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Runs of each (off, on, off, on, ...); the medians are compared.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
}

/// One `drain` run in a child process; its JSON report.
async fn drain(args: &TracesArgs, endpoint: Option<&str>) -> anyhow::Result<Value> {
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command.args([
        "drain",
        "--tasks",
        &args.tasks.to_string(),
        "--concurrency",
        &args.concurrency.to_string(),
        "--traceparent",
        TRACEPARENT,
    ]);
    if let Some(endpoint) = endpoint {
        command.args(["--otlp-endpoint", endpoint]);
    }
    let output = command
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .output()
        .await
        .context("running wasmq-bench drain")?;
    anyhow::ensure!(
        output.status.success(),
        "drain failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rfind(|line| line.starts_with('{'))
        .context("drain printed no report")?;
    Ok(serde_json::from_str(line)?)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub async fn run(args: &TracesArgs) -> anyhow::Result<()> {
    let receiver = Receiver::counting().await;
    let endpoint = receiver.endpoint();
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let (mut off_rate, mut on_rate) = (Vec::new(), Vec::new());
    let mut spans_per_run = Vec::new();
    for _ in 0..args.repeats.max(1) {
        let report = drain(args, None).await?;
        println!("{report}");
        off.push(report["worker_cpu_us_per_task"].as_f64().unwrap_or(0.0));
        off_rate.push(report["processed_per_s"].as_f64().unwrap_or(0.0));
        let before = receiver.span_count();
        let report = drain(args, Some(&endpoint)).await?;
        println!("{report}");
        on.push(report["worker_cpu_us_per_task"].as_f64().unwrap_or(0.0));
        on_rate.push(report["processed_per_s"].as_f64().unwrap_or(0.0));
        // The worker exports what is left as it stops, before the run ends.
        spans_per_run.push(receiver.span_count() - before);
    }
    let expected = 2 * args.tasks as u64;
    let (off_cpu, on_cpu) = (median(off), median(on));
    let mut report = String::new();
    writeln!(
        report,
        "| tracing | worker CPU per task (µs, median of {}) | tasks/s (median) | spans received per run |",
        args.repeats
    )?;
    writeln!(report, "| --- | ---: | ---: | ---: |")?;
    writeln!(
        report,
        "| off | {off_cpu:.1} | {:.0} | 0 |",
        median(off_rate)
    )?;
    writeln!(
        report,
        "| on (OTLP/HTTP to a local receiver) | {on_cpu:.1} | {:.0} | {} of {expected} |",
        median(on_rate),
        spans_per_run
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(
        report,
        "\non ÷ off, worker CPU per task: {:.2} ({} tasks, concurrency {})",
        on_cpu / off_cpu.max(f64::MIN_POSITIVE),
        args.tasks,
        args.concurrency
    )?;
    print!("{report}");
    Ok(())
}
