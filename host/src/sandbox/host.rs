//! What one task's Store holds: its WASI context (with no ambient
//! authority), its memory limiter, and the host side of the imports the
//! plugin was given (logging).

use std::time::Instant;

use tokio_util::sync::CancellationToken;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::wasmq::plugin::log;

/// Bytes of stdout and of stderr kept from one attempt (for panic messages
/// and debugging); writes beyond fail in the guest.
const CAPTURED_OUTPUT_BYTES: usize = 16 * 1024;

/// Which task an instance is running, for the log lines it writes.
#[derive(Debug, Clone)]
pub struct TaskLabel {
    /// The plugin's name.
    pub plugin: String,
    /// The task id.
    pub task_id: String,
    /// The task type.
    pub task_type: String,
    /// The attempt number.
    pub attempt: u32,
}

/// Why the host stopped an instance, recorded before it traps so the trap
/// can be classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The attempt's time ran out.
    Timeout,
    /// The task was cancelled (or the worker is shutting down).
    Cancelled,
}

/// The data of one task's Store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Enforces the memory cap and remembers that it was hit.
    pub limiter: MemoryLimiter,
    /// Which task this is.
    pub label: TaskLabel,
    /// Log bytes the task may still write.
    log_budget: usize,
    /// Log lines dropped over the budget.
    pub logs_dropped: u64,
    /// The guest's stderr, kept to explain panics.
    pub stderr: MemoryOutputPipe,
    /// When the attempt must end.
    pub deadline: Instant,
    /// Fires when the task is cancelled.
    pub cancel: CancellationToken,
    /// Set when the host decided to stop the instance.
    pub stop: Option<Stop>,
}

impl HostState {
    /// A fresh state for one attempt: no args, no environment, no preopened
    /// directories, no sockets, empty stdin, and captured stdout/stderr.
    pub fn new(
        label: TaskLabel,
        memory_bytes: u64,
        max_log_bytes: usize,
        deadline: Instant,
        cancel: CancellationToken,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(CAPTURED_OUTPUT_BYTES);
        let wasi = WasiCtx::builder()
            .stdout(MemoryOutputPipe::new(CAPTURED_OUTPUT_BYTES))
            .stderr(stderr.clone())
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_bytes),
            label,
            log_budget: max_log_bytes,
            logs_dropped: 0,
            stderr,
            deadline,
            cancel,
            stop: None,
        }
    }

    /// What the guest wrote to stderr, lossily decoded.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).into_owned()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        if message.len() > self.log_budget {
            self.logs_dropped += 1;
            return;
        }
        self.log_budget -= message.len();
        let TaskLabel {
            plugin,
            task_id,
            task_type,
            attempt,
        } = &self.label;
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "wasmq::plugin", plugin, task_id, task_type, attempt, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "wasmq::plugin", plugin, task_id, task_type, attempt, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: "wasmq::plugin", plugin, task_id, task_type, attempt, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: "wasmq::plugin", plugin, task_id, task_type, attempt, "{message}")
            }
            log::Level::Error => {
                tracing::error!(target: "wasmq::plugin", plugin, task_id, task_type, attempt, "{message}")
            }
        }
    }
}

/// Caps an instance's linear memory and remembers when the cap was hit, so
/// the resulting trap is reported as out-of-memory.
pub struct MemoryLimiter {
    /// The cap, in bytes.
    max_bytes: u64,
    /// Set when a growth past the cap was refused.
    pub hit: Option<u64>,
}

/// Tables beyond this many elements are refused (a table bomb).
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl MemoryLimiter {
    fn new(max_bytes: u64) -> Self {
        MemoryLimiter {
            max_bytes,
            hit: None,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.max_bytes {
            self.hit = Some(desired as u64);
            wasmtime::bail!(
                "memory cap of {} bytes reached: the instance asked for {desired} bytes",
                self.max_bytes
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            wasmtime::bail!(
                "table cap of {MAX_TABLE_ELEMENTS} elements reached: the instance asked for {desired}"
            );
        }
        Ok(true)
    }
}
