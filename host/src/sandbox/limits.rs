//! The budget one task gets inside its sandbox.

use std::time::Duration;

/// Per-task limits. Every one is finite by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Units of fuel (roughly, Wasm instructions) an attempt may burn;
    /// `None` means unmetered (only when the sandbox meters no fuel).
    pub fuel: Option<u64>,
    /// Wall-clock time an attempt may run, instantiation included.
    pub timeout: Duration,
    /// Bytes of linear memory the instance may hold.
    pub memory_bytes: u64,
    /// Bytes the result may have.
    pub max_result_bytes: usize,
    /// Bytes of log lines an attempt may write; further lines are dropped
    /// and counted.
    pub max_log_bytes: usize,
    /// Bytes of one log line kept; the rest of a longer line is cut (with a
    /// note saying how much), though all of it counts against the budget.
    pub max_log_line_bytes: usize,
    /// Bytes of a failure message kept (a `give-up` or `retry` message, a
    /// trap's description): the worker's log, the task's last error and
    /// `task show` all get the cut text.
    pub max_message_bytes: usize,
    /// Bytes of the payload of one follow-up task.
    pub max_enqueue_payload_bytes: usize,
    /// Bytes of an outgoing HTTP request body.
    pub max_http_request_bytes: u64,
}

/// The longest task id, task type or queue name a plugin may pass when it
/// enqueues a follow-up.
pub const MAX_NAME_BYTES: usize = 256;

/// What a plugin may pass to the host in one call beyond the largest value
/// its limits allow (the other arguments: names, ids, keys).
const HOSTCALL_HEADROOM: usize = 64 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: Some(100_000_000_000),
            timeout: Duration::from_secs(60),
            memory_bytes: 128 * 1024 * 1024,
            max_result_bytes: 1024 * 1024,
            max_log_bytes: 64 * 1024,
            max_log_line_bytes: 8 * 1024,
            max_message_bytes: 4 * 1024,
            max_enqueue_payload_bytes: 1024 * 1024,
            max_http_request_bytes: 1024 * 1024,
        }
    }
}

impl Limits {
    /// The most bytes the guest may hand the host in one call (wasmtime's
    /// "hostcall fuel", which also bounds the result and failure lifted
    /// from the handler): enough for the largest result, log budget, kv
    /// value or follow-up payload these limits allow, with headroom for
    /// the other arguments. Anything larger traps before it is copied.
    pub fn hostcall_bytes(&self, kv_value_bytes: usize) -> usize {
        self.max_result_bytes
            .max(self.max_log_bytes)
            .max(self.max_enqueue_payload_bytes)
            .max(self.max_message_bytes)
            .max(kv_value_bytes)
            .saturating_add(HOSTCALL_HEADROOM)
    }

    /// These limits narrowed for one attempt: the attempt may not run past
    /// `timeout` nor past `remaining` (time left before the task's deadline).
    pub fn narrowed(&self, timeout: Option<Duration>, remaining: Option<Duration>) -> Limits {
        let mut limits = self.clone();
        for bound in [timeout, remaining].into_iter().flatten() {
            limits.timeout = limits.timeout.min(bound);
        }
        limits
    }
}

/// `text` cut to at most `max` bytes (at a character boundary), with a
/// note saying how many bytes were cut; unchanged when it fits.
pub fn cut(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut at = max;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.truncate(at);
    text.push_str(&format!("... [{} of {total} bytes cut]", total - at));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_with_a_note() {
        assert_eq!(cut("short".into(), 16), "short");
        assert_eq!(cut("abcdef".into(), 4), "abcd... [2 of 6 bytes cut]");
        // Never inside a character.
        assert_eq!(cut("aé".into(), 2), "a... [2 of 3 bytes cut]");
    }

    #[test]
    fn the_earliest_of_timeout_deadline_and_plugin_limit_wins() {
        let plugin = Limits {
            timeout: Duration::from_secs(60),
            ..Limits::default()
        };
        let secs = |n| Some(Duration::from_secs(n));
        assert_eq!(plugin.narrowed(None, None).timeout, Duration::from_secs(60));
        assert_eq!(
            plugin.narrowed(secs(30), None).timeout,
            Duration::from_secs(30)
        );
        assert_eq!(
            plugin.narrowed(secs(30), secs(5)).timeout,
            Duration::from_secs(5)
        );
        assert_eq!(
            plugin.narrowed(secs(5), secs(30)).timeout,
            Duration::from_secs(5)
        );
        assert_eq!(
            plugin.narrowed(secs(600), None).timeout,
            Duration::from_secs(60)
        );
    }
}
