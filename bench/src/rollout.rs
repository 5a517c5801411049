//! `rollout`: how long a deploy takes to reach a fleet, from `wasmq plugin
//! deploy` starting to every worker serving the new version (what the
//! command itself waits for and reports). Starts a private redis-server and
//! `--workers` worker processes sharing one compile cache (as worker
//! processes on one host do), then, for each `--component`, deploys a fresh
//! build of it (a custom section with a random tag appended: another
//! content hash, so nothing is cached and every worker must fetch and
//! compile it), and rolls back and forth once (versions the workers have
//! compiled before: fetched again, loaded from the cache). Prints one JSON
//! line per step.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmq::Client;
use wasmq::dev::RedisServer;
use wasmq_testkit::WasmqProcess;

#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    /// The wasmq binary that runs the workers and the deploys.
    #[arg(long, default_value = "target/release/wasmq")]
    pub wasmq: PathBuf,
    /// Worker processes.
    #[arg(long, default_value_t = 10)]
    pub workers: usize,
    /// A plugin component to deploy (repeatable), e.g. one built with
    /// `wasmq plugin build plugins/python/example`.
    #[arg(long, required = true)]
    pub component: Vec<PathBuf>,
}

/// Runs the fleet and times each deploy.
pub async fn run(args: &RolloutArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.wasmq.exists(),
        "no wasmq binary at {} (build it with `cargo build --release -p wasmq`, or pass --wasmq)",
        args.wasmq.display()
    );
    let redis = RedisServer::start().context("starting redis-server")?;
    let url = redis.url();
    let client = Client::connect(&url).await?;
    let scratch =
        std::env::temp_dir().join(format!("wasmq-rollout-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&scratch)?;
    let cache = scratch.join("cache");
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        let mut command = WasmqProcess::command(&args.wasmq);
        command
            .arg("worker")
            .args(["--redis", &url])
            .arg("--cache-dir")
            .arg(&cache)
            .arg("--no-scheduler");
        workers.push(WasmqProcess::spawn(command));
    }
    let started = Instant::now();
    while super::drain::live_workers(&client).await? < args.workers {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "not every worker sent a heartbeat within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for component in &args.component {
        let tag = format!("{:x}", unique());
        let built =
            std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
        let bytes =
            wasmq_testkit::with_custom_section(&built, "wasmq-bench-rollout", tag.as_bytes());
        let fresh = scratch.join(format!("fresh-{tag}.wasm"));
        std::fs::write(&fresh, &bytes)?;
        let megabytes = bytes.len() as f64 / (1024.0 * 1024.0);
        let label = component.display().to_string();
        let first = timed(
            &args.wasmq,
            &url,
            &["plugin", "deploy", fresh.to_str().unwrap_or_default()],
        )?;
        report(
            &label,
            megabytes,
            "deploy (fresh: fetched and compiled)",
            args.workers,
            &first,
        );
        let name = plugin_name(&first.1).unwrap_or_default();
        if name.is_empty() {
            continue;
        }
        let second = timed(
            &args.wasmq,
            &url,
            &["plugin", "deploy", component.to_str().unwrap_or_default()],
        )?;
        report(
            &label,
            megabytes,
            "deploy (second version: fetched and compiled)",
            args.workers,
            &second,
        );
        let back = timed(&args.wasmq, &url, &["plugin", "rollback", &name])?;
        report(
            &label,
            megabytes,
            "rollback (compiled before: from the cache)",
            args.workers,
            &back,
        );
        let removed = timed(&args.wasmq, &url, &["plugin", "rm", &name])?;
        report(&label, megabytes, "rm", args.workers, &removed);
    }
    for mut worker in workers {
        worker.terminate(Duration::from_secs(10)).await;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// A number no other run of this bench uses (nanoseconds since the epoch).
fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or(0)
}

/// Runs a `wasmq` command (waiting up to 30 minutes for the fleet); returns
/// its wall-clock time and its output.
fn timed(wasmq: &PathBuf, url: &str, args: &[&str]) -> anyhow::Result<(Duration, String, bool)> {
    let started = Instant::now();
    let output = std::process::Command::new(wasmq)
        .args(args)
        .args(["--wait", "30m", "--redis", url])
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((started.elapsed(), text, output.status.success()))
}

/// The plugin's name from `deployed NAME@VERSION`.
fn plugin_name(output: &str) -> Option<String> {
    let after = output.split("deployed ").nth(1)?;
    Some(after.split('@').next()?.trim().to_string())
}

fn report(
    component: &str,
    megabytes: f64,
    step: &str,
    workers: usize,
    outcome: &(Duration, String, bool),
) {
    let (took, output, ok) = outcome;
    let summary = output
        .lines()
        .rfind(|line| line.contains("worker(s)"))
        .unwrap_or_default()
        .trim();
    println!(
        "{}",
        serde_json::json!({
            "bench": "rollout",
            "component": component,
            "megabytes": (megabytes * 10.0).round() / 10.0,
            "workers": workers,
            "step": step,
            "seconds": (took.as_secs_f64() * 100.0).round() / 100.0,
            "ok": ok,
            "fleet": summary,
        })
    );
}
