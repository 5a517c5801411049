//! A long-running `wasmq` process (a worker, a scheduler), killed when
//! dropped, with its stderr kept in a log file the caller can read.
//!
//! Each runs in a process group of its own, and signals go to the whole
//! group: a `wasmq` started through a wrapper (`faketime`) that forks it
//! instead of replacing itself is signalled, and killed, with the wrapper.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A `wasmq` child process.
pub struct WasmqProcess {
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl WasmqProcess {
    /// Starts `command` (a `wasmq` binary with its arguments and
    /// environment), logging at info (debug for the worker) to a file.
    pub fn spawn(mut command: Command) -> WasmqProcess {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("wasmq.log");
        let file = std::fs::File::create(&log).expect("the log file can be created");
        let child = command
            .env("WASMQ_LOG", "info,wasmq::worker=debug")
            .stdout(Stdio::null())
            .stderr(file)
            .process_group(0)
            .spawn()
            .expect("the wasmq binary starts");
        WasmqProcess {
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    /// A `wasmq` command with a test-friendly environment: the shared
    /// compiled-component cache, and no inherited Redis URL, log filter,
    /// trace export or trace context.
    pub fn command(binary: &Path) -> Command {
        let mut command = Command::new(binary);
        command
            .env("WASMQ_CACHE_DIR", crate::component_cache_dir())
            .env_remove("WASMQ_REDIS_URL")
            .env_remove("RUST_LOG")
            .env_remove("WASMQ_LOG")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("TRACEPARENT")
            .env_remove("TRACESTATE");
        command
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("the process was started").id() as i32
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (to the process and anything it started).
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling the process group of our own child process.
        unsafe {
            libc::kill(-self.pid(), signal);
        }
    }

    /// Kills the process (and anything it started) with SIGKILL and reaps
    /// it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling the process group of our own child process.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
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

    /// Asks the process to shut down (SIGTERM) and waits up to `timeout`
    /// for it to exit; panics, showing the log, if it does not.
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        match self.wait_exit(timeout).await {
            Some(status) => status,
            None => panic!(
                "the process did not exit within {timeout:?} of SIGTERM; log:\n{}",
                self.log()
            ),
        }
    }

    /// Blocks until the log contains `needle` or the process has exited
    /// (then a caller checks how it ended); panics after `timeout` showing
    /// the log. For starting processes from synchronous helpers: it blocks
    /// the calling thread.
    pub fn wait_ready_blocking(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return;
            }
            match self.child.as_mut().map(|child| child.try_wait()) {
                Some(Ok(Some(_))) | None => return,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for the process to log {needle:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the log contains `needle`; panics after `timeout`
    /// showing the log.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for the log to show {needle:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WasmqProcess {
    fn drop(&mut self) {
        // A stopped process cannot die of SIGKILL until continued.
        if self.child.is_some() {
            self.signal(libc::SIGCONT);
        }
        self.kill9();
    }
}
