//! The harness of the end-to-end tests: a private redis-server per test,
//! `wasmq` processes started the way a user starts them, and waiting for
//! conditions with a deadline.

#![allow(dead_code)]

pub mod cluster;
pub mod sentinel;
pub mod tls;

use std::future::Future;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use wasmq::dev::{RedisOptions, RedisServer};
use wasmq::{Broker, Client, QueueCounts, TaskInfo};
pub use wasmq_testkit::WasmqProcess;

/// The freshly built `wasmq` binary.
pub const WASMQ: &str = env!("CARGO_BIN_EXE_wasmq");

/// One test's world: its own Redis and a client to it.
pub struct Env {
    pub redis: RedisServer,
    pub client: Client,
}

impl Env {
    /// A fresh Redis (no persistence) and a client.
    pub async fn start() -> Env {
        Env::start_with(RedisOptions::default()).await
    }

    /// A fresh Redis with options, and a client.
    pub async fn start_with(options: RedisOptions) -> Env {
        let redis =
            RedisServer::start_with(options).expect("redis-server starts (is it installed?)");
        let client = Client::connect(&redis.url())
            .await
            .expect("the new Redis answers");
        Env { redis, client }
    }

    /// The Redis URL.
    pub fn url(&self) -> String {
        self.redis.url()
    }

    /// The broker behind the client.
    pub fn broker(&self) -> &Broker {
        self.client.broker()
    }

    /// Counts of a queue's tasks by state.
    pub async fn counts(&self, queue: &str) -> QueueCounts {
        self.client
            .queue_counts(queue)
            .await
            .expect("Redis answers")
    }

    /// Waits until the queue's counts satisfy `done`; on timeout, panics
    /// showing the last counts seen.
    pub async fn wait_for_counts(
        &self,
        queue: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&QueueCounts) -> bool,
    ) -> QueueCounts {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            // Redis may be restarting: an error only means "not yet".
            if let Ok(counts) = self.client.queue_counts(queue).await {
                if done(&counts) {
                    return counts;
                }
                last = Some(counts);
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last counts of {queue:?}: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A queue's statistics, as `wasmq queue inspect NAME --json` prints
    /// them (`counts`, `paused`, `processed_today`, ...).
    pub fn queue_stats(&self, queue: &str) -> serde_json::Value {
        let output = self.wasmq(&["queue", "inspect", queue, "--json"]);
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_str(&stdout(&output)).expect("queue inspect prints JSON")
    }

    /// Every queue name, as `wasmq queue ls --json` lists them.
    pub fn queue_names(&self) -> Vec<String> {
        let output = self.wasmq(&["queue", "ls", "--json"]);
        assert!(output.status.success(), "{}", stderr(&output));
        let listed: serde_json::Value =
            serde_json::from_str(&stdout(&output)).expect("queue ls prints JSON");
        listed
            .as_array()
            .expect("a list")
            .iter()
            .map(|queue| queue["queue"].as_str().expect("a name").to_string())
            .collect()
    }

    /// The deployed plugins' current versions (`wasmq:{plugins}:current`,
    /// name → digest).
    pub async fn deployed_plugins(&self) -> std::collections::BTreeMap<String, String> {
        redis::cmd("HGETALL")
            .arg("wasmq:{plugins}:current")
            .query_async(&mut self.redis_connection().await)
            .await
            .expect("Redis answers")
    }

    /// A raw connection to this test's Redis, to look at keys directly.
    pub async fn redis_connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("Redis answers")
    }

    /// One task's record.
    pub async fn task(&self, queue: &str, id: &str) -> Option<TaskInfo> {
        self.client
            .task(id, Some(queue))
            .await
            .expect("Redis answers")
    }

    /// Waits until task `id` of `queue` is in `state`; returns its record.
    pub async fn wait_for_state(
        &self,
        queue: &str,
        id: &str,
        state: wasmq::TaskState,
        timeout: Duration,
    ) -> TaskInfo {
        wait_until(
            timeout,
            &format!("task {id} of {queue} to be {state:?}"),
            || async {
                self.task(queue, id)
                    .await
                    .is_some_and(|info| info.state == state)
            },
        )
        .await;
        self.task(queue, id).await.expect("the task is kept")
    }

    /// Starts `wasmq worker` on this Redis with the plugins of `plugins`;
    /// returns once it serves its queues (or has exited: a test of a
    /// refusal then reads how).
    pub fn worker(&self, plugins: &Path, extra: &[&str]) -> WasmqProcess {
        self.worker_wrapped(&[], plugins, extra)
    }

    /// Starts `wasmq worker` on this Redis with the plugins of `plugins`,
    /// and returns at once, before it serves (for a worker that waits for
    /// Redis).
    pub fn spawn_worker(&self, plugins: &Path, extra: &[&str]) -> WasmqProcess {
        let mut command = WasmqProcess::command(Path::new(WASMQ));
        command
            .arg("worker")
            .args(["--redis", &self.url()])
            .arg("--plugins")
            .arg(plugins)
            .args(extra);
        WasmqProcess::spawn(command)
    }

    /// Starts `wasmq worker` under a wrapper command (e.g. `faketime
    /// +1h`); returns once it serves (or has exited).
    pub fn worker_wrapped(&self, wrapper: &[&str], plugins: &Path, extra: &[&str]) -> WasmqProcess {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = WasmqProcess::command(Path::new(program));
                command.args(args).arg(WASMQ);
                command
            }
            None => WasmqProcess::command(Path::new(WASMQ)),
        };
        command
            .arg("worker")
            .args(["--redis", &self.url()])
            .arg("--plugins")
            .arg(plugins)
            .args(extra);
        serving(WasmqProcess::spawn(command))
    }

    /// Starts `wasmq worker` on this Redis with no plugin directory: it
    /// serves the deployed plugins only. Returns once it serves (or has
    /// exited).
    pub fn bare_worker(&self, extra: &[&str]) -> WasmqProcess {
        let mut command = WasmqProcess::command(Path::new(WASMQ));
        command
            .arg("worker")
            .args(["--redis", &self.url()])
            .args(extra);
        serving(WasmqProcess::spawn(command))
    }

    /// The workers whose heartbeat is alive (`wasmq:{fleet}:servers`, a
    /// ZSET from worker id to when its heartbeat expires, in unix ms).
    pub async fn live_workers(&self) -> Vec<String> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        redis::cmd("ZRANGEBYSCORE")
            .arg("wasmq:{fleet}:servers")
            .arg(now_ms)
            .arg("+inf")
            .query_async(&mut self.redis_connection().await)
            .await
            .unwrap_or_default()
    }

    /// Waits until `count` workers send heartbeats.
    pub async fn wait_for_workers(&self, count: usize) {
        wait_until(
            Duration::from_secs(30),
            &format!("{count} workers to send heartbeats"),
            || async { self.live_workers().await.len() == count },
        )
        .await;
    }

    /// Waits until the worker named `id` sends heartbeats: it has loaded
    /// its plugins and serves its queues.
    pub async fn wait_for_worker(&self, id: &str) {
        wait_until(
            Duration::from_secs(30),
            &format!("worker {id} to send heartbeats"),
            || async { self.live_workers().await.iter().any(|live| live == id) },
        )
        .await;
    }

    /// Runs a `wasmq` command against this Redis to completion.
    pub fn wasmq(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        all.push("--redis".into());
        all.push(self.url());
        wasmq(&all)
    }
}

/// What a worker logs once it has loaded its plugins and serves its queues.
pub const WORKER_STARTED: &str = "worker started";

/// `worker` once it serves its queues, or has exited (blocking: plugins
/// may take a while to compile the first time).
pub fn serving(mut worker: WasmqProcess) -> WasmqProcess {
    worker.wait_ready_blocking(WORKER_STARTED, Duration::from_secs(120));
    worker
}

/// Runs `wasmq` with `args` to completion.
pub fn wasmq(args: &[String]) -> Output {
    WasmqProcess::command(Path::new(WASMQ))
        .args(args)
        .output()
        .expect("the wasmq binary runs")
}

/// Polls `condition` every 20ms until it holds; panics after `timeout`
/// naming what was awaited.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Text of a command's stdout.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Text of a command's stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_string()
}

/// A free loopback port (for a server a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A minimal HTTP/1.1 request over loopback: (status, body).
pub fn http(
    method: &str,
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Waits until an HTTP server answers on `address`.
pub async fn wait_for_http(address: &str, path: &str) {
    wait_until(
        Duration::from_secs(30),
        &format!("http://{address}{path} to answer"),
        || async { matches!(http("GET", address, path, &[]), Ok((200, _))) },
    )
    .await;
}

/// `n` distinct free loopback ports (all held open until all are found),
/// for tests that start several servers at once.
pub fn distinct_free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("a bound address").port())
        .collect()
}

/// Runs `redis-cli -p PORT ARGS…`; its stdout, or None if it failed.
pub fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Polls `done` every 50 ms (blocking) until it holds; panics after 30 s
/// naming what was awaited.
pub fn wait_blocking(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
