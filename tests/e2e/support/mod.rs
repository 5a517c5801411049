//! The harness of the end-to-end tests: a private redis-server per test,
//! `wasmq` processes started the way a user starts them, and waiting for
//! conditions with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use wasmq::Client;
use wasmq::broker::{Broker, QueueCounts, TaskInfo};
use wasmq::dev::{RedisOptions, RedisServer};

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
        self.broker()
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
        loop {
            let counts = self.counts(queue).await;
            if done(&counts) {
                return counts;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last counts of {queue:?}: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One task's record.
    pub async fn task(&self, queue: &str, id: &str) -> Option<TaskInfo> {
        self.broker()
            .task_info(queue, id)
            .await
            .expect("Redis answers")
    }

    /// Starts `wasmq worker` on this Redis with the plugins of `plugins`.
    pub fn worker(&self, plugins: &Path, extra: &[&str]) -> WasmqProcess {
        let mut args = vec![
            "worker".to_string(),
            "--redis".into(),
            self.url(),
            "--plugins".into(),
            plugins.display().to_string(),
        ];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        WasmqProcess::spawn(&args)
    }

    /// Runs a `wasmq` command against this Redis to completion.
    pub fn wasmq(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        all.push("--redis".into());
        all.push(self.url());
        wasmq(&all)
    }
}

/// Runs `wasmq` with `args` to completion.
pub fn wasmq(args: &[String]) -> Output {
    command()
        .args(args)
        .output()
        .expect("the wasmq binary runs")
}

fn command() -> Command {
    let mut command = Command::new(WASMQ);
    command
        .env("WASMQ_CACHE_DIR", wasmq_testkit::component_cache_dir())
        .env_remove("WASMQ_REDIS_URL")
        .env_remove("RUST_LOG")
        .env_remove("WASMQ_LOG");
    command
}

/// A long-running `wasmq` process (a worker), killed when dropped. Its
/// stderr goes to a log file that tests can read.
pub struct WasmqProcess {
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl WasmqProcess {
    /// Starts `wasmq` with `args`.
    pub fn spawn(args: &[String]) -> WasmqProcess {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("wasmq.log");
        let file = std::fs::File::create(&log).expect("the log file can be created");
        let child = command()
            .args(args)
            .env("WASMQ_LOG", "info,wasmq::worker=debug")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("the wasmq binary starts");
        WasmqProcess {
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("the process was started").id() as i32
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let log = &self.log;
        wait_until(
            timeout,
            &format!("the worker to log {needle:?}"),
            || async move {
                std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .contains(needle)
            },
        )
        .await;
    }
}

impl Drop for WasmqProcess {
    fn drop(&mut self) {
        self.kill9();
    }
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
