//! `webhook`: the load most users have, tasks that wait on someone else's
//! API. Each wasmq task is the `relay` plugin's `relay:fetch` (one outgoing
//! `wasi:http` GET, in a fresh instance, under the plugin's allow-list);
//! each BullMQ job runs the same GET with `fetch` in its processor. The
//! server is `slow-server`, a child process of this binary on loopback
//! that answers every request after `--delay-ms`. Same redis-server, same
//! server, same run; each drain in a child process of its own, so that
//! each peak RSS is that run's alone.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpListener;

use crate::compare::{Runner, install_bullmq, median, number};

/// Arguments of `webhook`.
#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    /// Tasks per drain run.
    #[arg(long, default_value_t = 10_000)]
    pub tasks: usize,
    /// Worker concurrencies to sweep (both systems), comma-separated.
    #[arg(long, default_value = "100,500,1000", value_delimiter = ',')]
    pub concurrency: Vec<usize>,
    /// How long the server takes to answer each request, ms.
    #[arg(long, default_value_t = 100)]
    pub delay_ms: u64,
    /// Times each measurement is repeated (the systems taking turns); each
    /// figure is the median of its repeats (peak RSS: the largest).
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// The BullMQ side (package.json and bench.mjs).
    #[arg(long, default_value = "bench/bullmq")]
    pub bullmq: std::path::PathBuf,
}

/// Arguments of `slow-server`.
#[derive(Debug, clap::Args)]
pub struct SlowServerArgs {
    /// How long to wait before answering each request, ms.
    #[arg(long, default_value_t = 100)]
    pub delay_ms: u64,
}

/// Serves HTTP/1.1 on a free loopback port, printed first on stdout as
/// `port N`: every request (its body, if any, is not read) is answered
/// `200 ok` after `delay_ms`, keeping the connection open for the next.
pub async fn slow_server(args: &SlowServerArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("port {}", listener.local_addr()?.port());
    let delay = Duration::from_millis(args.delay_ms);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let (reader, mut writer) = stream.into_split();
            let mut reader = AsyncBufReader::new(reader);
            let mut line = String::new();
            loop {
                // A request's head ends with an empty line.
                line.clear();
                match reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line == "\r\n" || line == "\n" => {
                        tokio::time::sleep(delay).await;
                        let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
                        if writer.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                }
            }
        });
    }
}

/// The slow server, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(delay_ms: u64) -> anyhow::Result<Server> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["slow-server", "--delay-ms", &delay_ms.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .context("starting slow-server")?;
        let stdout = child.stdout.take().context("slow-server's stdout")?;
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first)?;
        let port = first
            .trim()
            .strip_prefix("port ")
            .and_then(|port| port.parse().ok())
            .with_context(|| format!("slow-server printed {first:?}, not its port"))?;
        Ok(Server { child, port })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one webhook drain measured.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    per_s: f64,
    peak_rss_mb: f64,
    cpu_us_per_task: f64,
}

pub fn run(args: &WebhookArgs) -> anyhow::Result<()> {
    install_bullmq(&args.bullmq)?;
    let runner = Runner::start(args.bullmq.clone())?;
    let server = Server::start(args.delay_ms)?;
    let url = format!("http://127.0.0.1:{}/hook", server.port);
    let tasks = args.tasks.to_string();
    let mut rows = Vec::new();
    for &concurrency in &args.concurrency {
        let concurrency_arg = concurrency.to_string();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..args.repeats.max(1) {
            let value = runner.measure(
                runner
                    .ours("drain")
                    .args(["--handler", "fetch", "--fetch-url", &url])
                    .args(["--tasks", &tasks, "--concurrency", &concurrency_arg]),
            )?;
            ours.push(Run {
                per_s: number(&value, "processed_per_s")?,
                peak_rss_mb: number(&value, "peak_rss_mb")?,
                cpu_us_per_task: number(&value, "worker_cpu_us_per_task")?,
            });
            let value = runner.measure(runner.peer("webhook").args([
                "--tasks",
                &tasks,
                "--concurrency",
                &concurrency_arg,
                "--batch",
                "1000",
                "--port",
                &server.port.to_string(),
            ]))?;
            theirs.push(Run {
                per_s: number(&value, "processed_per_s")?,
                peak_rss_mb: number(&value, "peak_rss_mb")?,
                cpu_us_per_task: number(&value, "cpu_us_per_task")?,
            });
        }
        rows.push((concurrency, median_run(&ours), median_run(&theirs)));
    }

    println!(
        "| concurrency | wasmq, relay:fetch (tasks/s) | BullMQ, fetch (jobs/s) | wasmq ÷ BullMQ | wasmq peak RSS | BullMQ peak RSS | wasmq CPU/task | BullMQ CPU/task |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (concurrency, ours, theirs) in &rows {
        println!(
            "| {concurrency} | {:.0} | {:.0} | {:.2} | {:.0} MB | {:.0} MB | {:.0} µs | {:.0} µs |",
            ours.per_s,
            theirs.per_s,
            ours.per_s / theirs.per_s,
            ours.peak_rss_mb,
            theirs.peak_rss_mb,
            ours.cpu_us_per_task,
            theirs.cpu_us_per_task,
        );
    }
    let best = |pick: fn(&(usize, Run, Run)) -> f64| rows.iter().map(pick).fold(0.0, f64::max);
    let (ours, theirs) = (best(|row| row.1.per_s), best(|row| row.2.per_s));
    println!(
        "\nBest rates: wasmq {ours:.0}/s, BullMQ {theirs:.0}/s, ratio {:.2} (server delay {} ms, ideal at concurrency C: C × {:.0}/s).",
        ours / theirs,
        args.delay_ms,
        1000.0 / args.delay_ms.max(1) as f64
    );
    Ok(())
}

/// The median rate and CPU of repeated runs, and their largest peak RSS.
fn median_run(runs: &[Run]) -> Run {
    Run {
        per_s: median(runs.iter().map(|run| run.per_s).collect()),
        peak_rss_mb: runs.iter().map(|run| run.peak_rss_mb).fold(0.0, f64::max),
        cpu_us_per_task: median(runs.iter().map(|run| run.cpu_us_per_task).collect()),
    }
}
