//! Turns the ways an attempt can fail into classified [`TaskFailure`]s.

use wasmtime::Trap;

use super::Limits;
use super::bindings::wasmq::plugin::types::Failure;
use super::host::{HostState, Stop};
use crate::task::{FailureKind, TaskFailure};

/// Most of a panic message kept in the task's error.
const MAX_PANIC_MESSAGE: usize = 1024;

/// What wasmtime's error says when a guest passes the host more than its
/// hostcall fuel allows (the error type itself is private).
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Whether an instance could not be made, or run, because the instance
/// pool had no room left: the worker's lack of room, not the plugin's doing.
pub fn pool_exhausted(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
    }) || format!("{error:#}").contains("maximum concurrent limit of")
}

/// The failure of an attempt that found no room in the instance pool: it
/// is no attempt at all (the task goes back to its queue).
pub fn worker_busy(error: &wasmtime::Error) -> TaskFailure {
    TaskFailure::new(
        FailureKind::WorkerBusy,
        format!(
            "the worker had no room for another instance ({}); the task goes back to its queue",
            first_line(&format!("{error:#}"))
        ),
    )
}

/// A failure, restated when the host refused the plugin something it was
/// not granted during the attempt: the refusal is the cause to report.
pub fn after_denials(failure: TaskFailure, denials: &[String]) -> TaskFailure {
    let Some(first) = denials.first() else {
        return failure;
    };
    if matches!(
        failure.kind,
        FailureKind::Cancelled | FailureKind::Timeout | FailureKind::OutOfMemory
    ) {
        return failure;
    }
    let more = match denials.len() {
        1 => String::new(),
        n => format!(" (and {} more refusals)", n - 1),
    };
    TaskFailure::new(
        FailureKind::CapabilityDenied,
        format!(
            "denied: {first}{more}; then {}: {}",
            failure.kind, failure.message
        ),
    )
}

/// A failure the handler returned.
pub fn handler_failure(failure: Failure) -> TaskFailure {
    match failure {
        // Messages are cut to the plugin's limit once classified (see
        // `Sandbox::run`).
        Failure::Retry(message) => TaskFailure::new(FailureKind::HandlerError, message),
        Failure::GiveUp(message) => TaskFailure::new(FailureKind::GaveUp, message),
        Failure::BadPayload(message) => TaskFailure::new(FailureKind::BadPayload, message),
    }
}

/// The attempt ran out of time.
pub fn timeout(limits: &Limits) -> TaskFailure {
    TaskFailure::new(
        FailureKind::Timeout,
        format!(
            "the attempt ran past its time limit of {}",
            humantime::format_duration(limits.timeout)
        ),
    )
}

/// A trap (or an instantiation error), classified by what the host saw
/// happen before it: its own decision to stop the instance, the memory cap,
/// then the trap code.
pub fn trap(
    error: &wasmtime::Error,
    state: &HostState,
    limits: &Limits,
    hostcall_bytes: usize,
) -> TaskFailure {
    // A write to stdout or stderr past the log budget fails inside a WASI
    // call, where the host cannot set its stop reason.
    let stop = match state.stop {
        None if state.over_log_budget() => Some(Stop::LogLimit),
        stop => stop,
    };
    match stop {
        Some(Stop::Timeout) => return timeout(limits),
        Some(Stop::LogLimit) => {
            return TaskFailure::new(
                FailureKind::LogLimit,
                format!(
                    "the plugin logged more than its limit of {} bytes per attempt",
                    limits.max_log_bytes
                ),
            );
        }
        Some(Stop::Cancelled) => {
            return TaskFailure::new(
                FailureKind::Cancelled,
                "the task was cancelled while it ran",
            );
        }
        None => {}
    }
    if let Some(desired) = state.limiter.hit {
        return TaskFailure::new(
            FailureKind::OutOfMemory,
            format!(
                "the instance tried to grow its memories and tables (all its core instances together) to {desired} bytes, over its cap of {} bytes",
                limits.memory_bytes
            ),
        );
    }
    if format!("{error:#}").contains(HOSTCALL_FUEL_EXHAUSTED) {
        return TaskFailure::new(
            FailureKind::ResultTooLarge,
            format!(
                "the plugin tried to pass the host more than {hostcall_bytes} bytes in one call, far over the plugin's limit of {} bytes for a result (or its limits for a failure message, log line, key-value entry or follow-up task); it was refused before being copied",
                limits.max_result_bytes
            ),
        );
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => TaskFailure::new(
            FailureKind::OutOfFuel,
            format!(
                "the instance used up its fuel budget of {} units",
                limits.fuel.unwrap_or(u64::MAX)
            ),
        ),
        Some(Trap::StackOverflow) => TaskFailure::new(
            FailureKind::StackOverflow,
            "the instance overflowed its stack (runaway recursion?)",
        ),
        Some(Trap::Interrupt) => timeout(limits),
        Some(code) => match panic_message(&state.stderr_text()) {
            Some(message) => TaskFailure::new(FailureKind::Panic, message),
            None => TaskFailure::new(FailureKind::Trap, format!("the instance trapped: {code}")),
        },
        None => TaskFailure::new(FailureKind::Trap, first_line(&format!("{error:#}"))),
    }
}

/// What the handler's language reported before the trap, from the end of
/// the guest's stderr: a Rust panic, an uncaught Python exception (its
/// traceback) or an uncaught JavaScript error (as the JavaScript SDK
/// writes it).
fn panic_message(stderr: &str) -> Option<String> {
    // componentize-py's runtime panics after the traceback, with a message
    // that names no exception: the traceback says more.
    python_exception(stderr)
        .or_else(|| rust_panic(stderr))
        .or_else(|| javascript_error(stderr))
}

/// `ValueError: boom (app.py, line 12, in resize)` from the last traceback
/// in `stderr`.
fn python_exception(stderr: &str) -> Option<String> {
    let start = stderr.rfind("Traceback (most recent call last):")?;
    let mut location = None;
    for line in stderr[start..].lines().skip(1) {
        if let Some(frame) = line.strip_prefix("  File ") {
            location = Some(frame.trim().to_string());
            continue;
        }
        if line.starts_with(' ') || line.trim().is_empty() {
            continue;
        }
        let exception = line.trim();
        let text = match &location {
            Some(location) => format!("the handler raised {exception} (at {location})"),
            None => format!("the handler raised {exception}"),
        };
        return Some(shorten(text));
    }
    None
}

/// `TypeError: boom (at handle@...)` from the last `Uncaught` line the
/// JavaScript SDK wrote to stderr, with the first frame of its stack.
fn javascript_error(stderr: &str) -> Option<String> {
    let start = stderr.rfind("Uncaught ")?;
    let mut lines = stderr[start..].lines();
    let error = lines.next()?.trim_start_matches("Uncaught ").trim();
    let frame = lines
        .map(str::trim)
        .find(|line| !line.is_empty() && line.contains('@') || line.starts_with("at "));
    let text = match frame {
        Some(frame) => format!("the handler threw {error} (at {frame})"),
        None => format!("the handler threw {error}"),
    };
    Some(shorten(text))
}

fn shorten(mut text: String) -> String {
    if text.len() > MAX_PANIC_MESSAGE {
        let mut cut = MAX_PANIC_MESSAGE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// The message of a Rust panic, from what the guest wrote to stderr.
fn rust_panic(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at")?;
    let text: String = stderr[start..]
        .lines()
        .filter(|line| !line.starts_with("note: run with `RUST_BACKTRACE"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut text = text.trim().to_string();
    if text.len() > MAX_PANIC_MESSAGE {
        let mut cut = MAX_PANIC_MESSAGE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    Some(format!("the handler {text}"))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_panic_message_is_read_from_stderr() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nwidth must be positive\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_message(stderr).unwrap(),
            "the handler panicked at src/lib.rs:12:9: width must be positive"
        );
        assert_eq!(panic_message("just some output\n"), None);
    }

    #[test]
    fn an_uncaught_python_exception_is_read_from_its_traceback() {
        let stderr = "printed first\nTraceback (most recent call last):\n  File \"/0/wasmq/_export.py\", line 30, in handle\n    return _run(task)\n  File \"/1/app.py\", line 9, in fail\n    raise ValueError(\"boom\")\nValueError: boom\n";
        assert_eq!(
            panic_message(stderr).unwrap(),
            "the handler raised ValueError: boom (at \"/1/app.py\", line 9, in fail)"
        );
    }

    #[test]
    fn an_uncaught_javascript_error_is_read_from_its_report() {
        let stderr = "Uncaught TypeError: boom\nhandle@entry.js:12:11\nrun@entry.js:40:3\n";
        assert_eq!(
            panic_message(stderr).unwrap(),
            "the handler threw TypeError: boom (at handle@entry.js:12:11)"
        );
    }
}
