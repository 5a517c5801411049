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
    match state.stop {
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

/// The message of a Rust panic, from what the guest wrote to stderr.
fn panic_message(stderr: &str) -> Option<String> {
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
}
