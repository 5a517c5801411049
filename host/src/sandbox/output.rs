//! What a task writes to the host's log: its `log` calls and, line by line,
//! its stdout and stderr (Python's `print`, JavaScript's `console.log`, a
//! Rust panic message), all tagged with the plugin and the task and all
//! counted against one log budget per attempt.
//!
//! A write past the budget traps the instance, which is then classified
//! `log-limit`: a plugin printing megabytes fails its own task and costs
//! the host no more than its budget.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use super::host::TaskLabel;
use super::limits;

/// How important a line is; the guest's `log` levels, and stdout (info) and
/// stderr (warn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `trace`.
    Trace,
    /// `debug`.
    Debug,
    /// `info`, and stdout.
    Info,
    /// `warn`, and stderr.
    Warn,
    /// `error`.
    Error,
}

/// The log of one attempt: where its lines go, and what is left of its
/// budget.
pub struct TaskLog {
    label: Arc<TaskLabel>,
    /// The attempt's budget, bytes.
    limit: usize,
    /// The longest line written; the rest is cut with a note (all of it
    /// counts against the budget).
    max_line: usize,
    /// Bytes the attempt may still write.
    left: Mutex<usize>,
    /// Set when a write went past the budget.
    exceeded: AtomicBool,
}

/// A write went past the attempt's log budget.
#[derive(Debug, Clone, Copy)]
pub struct OverBudget {
    /// The budget, bytes.
    pub limit: usize,
}

impl TaskLog {
    /// A log for the attempt `label`, holding it to `limit` bytes and lines
    /// to `max_line` bytes.
    pub fn new(label: Arc<TaskLabel>, limit: usize, max_line: usize) -> TaskLog {
        TaskLog {
            label,
            limit,
            max_line,
            left: Mutex::new(limit),
            exceeded: AtomicBool::new(false),
        }
    }

    /// Whether a write went past the budget.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget, or refuses them all (and remembers
    /// that) when fewer are left.
    fn spend(&self, bytes: usize) -> Result<(), OverBudget> {
        let mut left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        if bytes > *left {
            *left = 0;
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(OverBudget { limit: self.limit });
        }
        *left -= bytes;
        Ok(())
    }

    /// Writes one line from the guest's `log` call.
    pub fn line(&self, level: Level, message: String) -> Result<(), OverBudget> {
        self.spend(message.len())?;
        self.emit(level, None, message);
        Ok(())
    }

    /// Writes one line of the guest's stdout or stderr (already counted).
    fn output_line(&self, stream: Stream, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            return;
        }
        self.emit(stream.level(), Some(stream.name()), text.to_string());
    }

    fn emit(&self, level: Level, stream: Option<&'static str>, message: String) {
        let message = limits::cut(message, self.max_line);
        let TaskLabel {
            plugin,
            task_id,
            task_type,
            attempt,
            ..
        } = &*self.label;
        // `stream` is only present for stdout and stderr.
        macro_rules! event {
            ($level:ident) => {
                match stream {
                    Some(stream) => tracing::$level!(target: "wasmq::plugin", plugin, task_id, task_type, attempt, stream, "{message}"),
                    None => tracing::$level!(target: "wasmq::plugin", plugin, task_id, task_type, attempt, "{message}"),
                }
            };
        }
        match level {
            Level::Trace => event!(trace),
            Level::Debug => event!(debug),
            Level::Info => event!(info),
            Level::Warn => event!(warn),
            Level::Error => event!(error),
        }
    }
}

/// Which of the guest's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout, logged at info.
    Stdout,
    /// stderr, logged at warn.
    Stderr,
}

impl Stream {
    fn level(self) -> Level {
        match self {
            Stream::Stdout => Level::Info,
            Stream::Stderr => Level::Warn,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The most a guest may write in one call to a stream (what `check-write`
/// permits).
const WRITE_PERMIT: usize = 64 * 1024;

/// A guest's stdout or stderr: cut into lines, each written to the task
/// log, every byte counted against the log budget. The end of stderr is
/// also kept, to explain a trap (a Rust panic, a Python traceback, a
/// JavaScript error).
#[derive(Clone)]
pub struct OutputPipe {
    log: Arc<TaskLog>,
    stream: Stream,
    /// The line being written, until its newline.
    partial: Arc<Mutex<Vec<u8>>>,
    /// Where the end of the stream is kept, if it is.
    kept: Option<Tail>,
}

/// The last bytes written to a stream.
#[derive(Clone)]
pub struct Tail {
    bytes: Arc<Mutex<Vec<u8>>>,
    capacity: usize,
}

impl Tail {
    /// Keeps the last `capacity` bytes.
    pub fn new(capacity: usize) -> Tail {
        Tail {
            bytes: Arc::default(),
            capacity,
        }
    }

    fn push(&self, more: &[u8]) {
        let mut bytes = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        let more = &more[more.len().saturating_sub(self.capacity)..];
        let overflow = (bytes.len() + more.len()).saturating_sub(self.capacity);
        bytes.drain(..overflow);
        bytes.extend_from_slice(more);
    }

    /// What is kept, lossily decoded.
    pub fn text(&self) -> String {
        let bytes = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl OutputPipe {
    /// A pipe writing `stream` to `log`, keeping its end in `kept`.
    pub fn new(log: Arc<TaskLog>, stream: Stream, kept: Option<Tail>) -> OutputPipe {
        OutputPipe {
            log,
            stream,
            partial: Arc::default(),
            kept,
        }
    }

    fn write_bytes(&self, bytes: &[u8]) -> Result<(), OverBudget> {
        self.log.spend(bytes.len())?;
        if let Some(kept) = &self.kept {
            kept.push(bytes);
        }
        let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            partial.extend_from_slice(&rest[..newline]);
            self.log.output_line(self.stream, &partial);
            partial.clear();
            rest = &rest[newline + 1..];
        }
        partial.extend_from_slice(rest);
        // A line without end is written in pieces of the longest line.
        if partial.len() >= self.log.max_line {
            self.log.output_line(self.stream, &partial);
            partial.clear();
        }
        Ok(())
    }

    /// Writes what is left of a line without its newline (at the end of
    /// the attempt).
    pub fn finish(&self) {
        let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        if !partial.is_empty() {
            self.log.output_line(self.stream, &partial);
            partial.clear();
        }
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for OutputPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes).map_err(|over| {
            StreamError::Trap(wasmtime::format_err!(
                "the plugin wrote more than its log limit of {} bytes",
                over.limit
            ))
        })
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for OutputPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = self.write_bytes(buf).map(|()| buf.len()).map_err(|over| {
            io::Error::other(format!(
                "the plugin wrote more than its log limit of {} bytes",
                over.limit
            ))
        });
        Poll::Ready(written)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for OutputPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}
